"""The spec's cost model of one SE block ("Computational Cost").

For an input of C channels and P spatial positions (``P = H*W`` for images, any rank allowed) and
the layer's own hidden width h (the spec's C/r, ``excitation_width``'s rounding):

- squeeze (global average pooling): ``C*P`` FLOPs;
- excitation, two FCs ``C -> h -> C``: ``2*C*h`` FLOPs each (2 FLOPs per multiply-add), ``4*C*h``;
- reweighting ``Y = s * X``: ``C*P`` multiplications.

Total ``F_SE = 2*C*P + 4*C*h``, which is ``2CHW + 4C^2/r`` when r divides C. FC biases (``C + h``
additions) and the gate non-linearities are not counted, as in the spec. Parameters: ``2*C*h`` weights
plus ``h + C`` biases when the FCs have them.

The FCs are at least half of ``F_SE`` when ``4*C*h >= 2*C*P``, i.e. ``h >= P/2``; with ``h = C/r`` and a
square map of side S this is the spec's crossover ``C >= r*S^2/2``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from senet.layers.checks import check_positive_int, excitation_width

__all__ = ["se_flops", "se_params", "se_fc_flops", "crossover_channels", "fc_share", "check_spatial_shape"]


def check_spatial_shape(spatial_shape: object, *, name: str = "spatial_shape") -> tuple[int, ...]:
    """``spatial_shape`` as a non-empty tuple of positive ints (``(L,)``, ``(H, W)``, ``(D, H, W)``, ...)."""
    if isinstance(spatial_shape, (str, bytes)) or not isinstance(spatial_shape, Sequence) or len(spatial_shape) == 0:
        raise TypeError(f"{name} must be a non-empty sequence of positive ints such as (H, W), got {spatial_shape!r}")
    for size in spatial_shape:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"{name} must contain positive ints only, got {tuple(spatial_shape)!r}")
    return tuple(spatial_shape)


def se_fc_flops(channels: int, *, reduction: int = 16, hidden_channels: int | None = None) -> int:
    """FLOPs of the excitation's two FCs, ``4*C*h`` (2 per multiply-add, biases excluded)."""
    hidden = excitation_width(channels, reduction, hidden_channels)
    return 4 * channels * hidden


def se_flops(
    channels: int, spatial_shape: Sequence[int], *, reduction: int = 16, hidden_channels: int | None = None
) -> int:
    """The spec's ``F_SE = 2*C*P + 4*C*h`` for one example of shape ``(C, *spatial_shape)``.

    ``P = prod(spatial_shape)``; ``h = channels // reduction`` (or ``hidden_channels``), exactly the width
    :class:`~senet.layers.SqueezeExcite` uses. Equals ``SqueezeExcite(channels, reduction=r).flops(spatial_shape)``
    for the default average squeeze. FC biases and the gate non-linearities are not counted.
    """
    fc = se_fc_flops(channels, reduction=reduction, hidden_channels=hidden_channels)  # validates channels, r, h
    positions = math.prod(check_spatial_shape(spatial_shape))
    return 2 * channels * positions + fc


def se_params(channels: int, *, reduction: int = 16, hidden_channels: int | None = None, bias: bool = True) -> int:
    """Parameters of an SE block: ``2*C*h`` weights (W1 ``(h, C)``, W2 ``(C, h)``) plus ``h + C`` biases if ``bias``."""
    if not isinstance(bias, bool):
        raise TypeError(f"bias must be a bool, got {type(bias).__name__} {bias!r}")
    hidden = excitation_width(channels, reduction, hidden_channels)
    return 2 * channels * hidden + ((hidden + channels) if bias else 0)


def crossover_channels(spatial_shape: Sequence[int], *, reduction: int = 16) -> float:
    """The spec's crossover width ``r*P/2`` (``r*S^2/2`` for an S x S map): from this many channels on, the two
    FCs are at least half of ``F_SE`` (exactly so when r divides C; :func:`fc_share` uses the rounded width)."""
    positions = math.prod(check_spatial_shape(spatial_shape))
    return check_positive_int("reduction", reduction) * positions / 2


def fc_share(
    channels: int, spatial_shape: Sequence[int], *, reduction: int = 16, hidden_channels: int | None = None
) -> float:
    """The fraction ``4*C*h / F_SE`` of an SE block's FLOPs spent in its FCs (>= 0.5 past the crossover)."""
    fc = se_fc_flops(channels, reduction=reduction, hidden_channels=hidden_channels)
    return fc / se_flops(channels, spatial_shape, reduction=reduction, hidden_channels=hidden_channels)
