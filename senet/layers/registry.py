"""The single registry of attention layers, used by the models and the command line to swap them.

Every registered class is constructible as ``cls(channels)``. :func:`create_attention` passes the
keywords ``spatial_dims`` and ``reduction`` to a class only when its ``__init__`` accepts them (ECA,
for instance, has no reduction ratio), so callers can build any layer through one path.
"""

from __future__ import annotations

import inspect
from functools import cache

import torch.nn as nn

from senet.layers.cbam import CBAM
from senet.layers.coord import CoordinateAttention
from senet.layers.eca import ECA
from senet.layers.ese import EffectiveSE
from senet.layers.gather_excite import GatherExcite
from senet.layers.global_context import GlobalContext
from senet.layers.scse import ChannelSpatialSE, SpatialSE
from senet.layers.se import SqueezeExcite
from senet.layers.srm import SRM

__all__ = ["ATTENTION_LAYERS", "get_attention", "create_attention"]

ATTENTION_LAYERS: dict[str, type[nn.Module]] = {
    "se": SqueezeExcite,
    "ese": EffectiveSE,
    "eca": ECA,
    "cbam": CBAM,
    "sse": SpatialSE,
    "scse": ChannelSpatialSE,
    "ge": GatherExcite,
    "gc": GlobalContext,
    "srm": SRM,
    "coord": CoordinateAttention,
}


def get_attention(name: str) -> type[nn.Module]:
    """The attention class registered under ``name``; a ValueError lists the valid names otherwise."""
    if not isinstance(name, str) or name not in ATTENTION_LAYERS:
        raise ValueError(f"attention must be one of {sorted(ATTENTION_LAYERS)}, got {name!r}")
    return ATTENTION_LAYERS[name]


@cache
def _accepted_keywords(cls: type[nn.Module]) -> frozenset[str]:
    return frozenset(inspect.signature(cls.__init__).parameters)


def create_attention(
    name: str, channels: int, *, spatial_dims: int = 2, reduction: int | None = None, divisor: int | None = None
) -> nn.Module:
    """Build the attention layer ``name`` for ``channels`` channels.

    ``spatial_dims`` is passed where the layer needs the rank (e.g. CBAM's k^d spatial convolution);
    ``reduction`` (the ratio r) where the layer has one; ``None`` keeps the layer's default.
    ``divisor`` (round the hidden width C/r to a multiple of it, timm's rule) where the layer has one.
    """
    cls = get_attention(name)
    accepted = _accepted_keywords(cls)
    options: dict[str, int] = {}
    if "spatial_dims" in accepted:
        options["spatial_dims"] = spatial_dims
    if reduction is not None and "reduction" in accepted:
        options["reduction"] = reduction
    if divisor is not None and "divisor" in accepted:
        options["divisor"] = divisor
    return cls(channels, **options)
