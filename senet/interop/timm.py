"""timm's ResNet family: ``timm/models/resnet.py`` (``resnet*``, ``resnext*``, ``seresnet*``, ``seresnext*``)
and the Caffe-release port ``timm/models/senet.py`` (``legacy_seresnet*``, ``legacy_seresnext*``,
``legacy_senet154``).

- ``resnet.py`` names its modules as senet does; only the SE weights change shape: timm's ``se.fc1``/``se.fc2``
  are 1x1 convolutions ``(h, C, 1, 1)``, senet's are ``nn.Linear`` ``(h, C)``. Its SE hidden width is rounded
  to a multiple of 8 (``seresnet18``: 8), which the checkpoint's shapes carry.
- ``senet.py`` (legacy) keeps the stem in ``layer0`` (``conv1``/``bn1``; SENet-154: ``conv1..3``/``bn1..3``),
  calls SE ``se_module`` and the classifier ``last_linear``. Its SE width is ``C // 16`` (``legacy_seresnet18``:
  4). It computes in the Caffe layout (:func:`senet.interop.common.expected_layout`), so it maps onto
  senet's ``legacy_*`` models only.

timm itself is never imported: the conversion works on state dicts.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn

from senet.interop.common import (
    PeerFormat,
    Style,
    check_attention,
    check_peer_modules,
    check_rank,
    check_se_everywhere,
    expected_layout,
    fill_num_batches_tracked,
    layout_of,
    se_to_conv,
    se_to_linear,
)
from senet.interop.keys import CAFFE_DEEP_STEM, CAFFE_STEM, SENET_DEEP_STEM, SENET_STEM, KeyTable, rename, same
from senet.models.resnet import ResNet

__all__ = ["TIMM"]

# timm/models/resnet.py: senet's names (ResNet-D shortcut: downsample.0 pool, .1 conv, .2 BN).
RESNET_KEYS = (
    SENET_STEM
    + SENET_DEEP_STEM
    + same(
        "{block}.conv{k}.weight",
        "{block}.bn{k}.{bn}",
        "{block}.downsample.{d}.{bn}",
        "{block}.se.fc1.{wb}",
        "{block}.se.fc2.{wb}",
        "fc.{wb}",
    )
)

# timm/models/senet.py (legacy_*): the units as senet names them, except SE and the classifier.
LEGACY_UNITS = same("{block}.conv{k}.weight", "{block}.bn{k}.{bn}", "{block}.downsample.{d}.{bn}") + KeyTable(
    (
        ("{block}.se.fc1.{wb}", "{block}.se_module.fc1.{wb}"),
        ("{block}.se.fc2.{wb}", "{block}.se_module.fc2.{wb}"),
        ("fc.{wb}", "last_linear.{wb}"),
    )
)

_RESNET = "timm ResNet (timm/models/resnet.py)"
_LEGACY = "timm legacy SENet (timm/models/senet.py, legacy_*)"


def _to_senet(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], Style]:
    if any(key.startswith(("layer0.", "last_linear.")) for key in state):
        stem = CAFFE_DEEP_STEM if "layer0.conv2.weight" in state else CAFFE_STEM
        out, style = rename(state, stem + LEGACY_UNITS, to_senet=True, what=_LEGACY), "caffe"
    else:
        out, style = rename(state, RESNET_KEYS, to_senet=True, what=_RESNET), "v1.5"
    return fill_num_batches_tracked(se_to_linear(out, "timm")), style


def _from_senet(state: Mapping[str, torch.Tensor], model: ResNet) -> dict[str, torch.Tensor]:
    check_rank(model, (2,), "timm")
    check_attention(model, "timm")
    state = se_to_conv(dict(state), 2)  # (h, C) -> (h, C, 1, 1), before the keys are renamed
    layout = layout_of(model.spec)
    if layout == expected_layout("v1.5", model.spec):
        out = rename(state, RESNET_KEYS, to_senet=False, what="senet")
    elif layout == expected_layout("caffe", model.spec):
        check_se_everywhere(model, "timm legacy_*")
        stem = CAFFE_DEEP_STEM if "conv1.0.weight" in state else CAFFE_STEM
        out = rename(state, stem + LEGACY_UNITS, to_senet=False, what="senet")
    else:
        raise ValueError(
            f"no timm network computes like the senet model ({model.spec.name}, {layout}): timm's resnet.py "
            f"needs {expected_layout('v1.5', model.spec)}, its legacy_* models {expected_layout('caffe', model.spec)}"
        )
    return out


_MODULES = frozenset(
    {
        # resnet.py
        "ResNet", "BasicBlock", "Bottleneck", "SEModule", "SelectAdaptivePool2d", "Flatten",
        # senet.py (legacy)
        "SENet", "SEResNetBlock", "SEResNetBottleneck", "SEResNeXtBottleneck", "SEBottleneck",
        # torch
        "Sequential", "Conv2d", "BatchNorm2d", "ReLU", "Sigmoid", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
        "Identity", "Linear", "Dropout",
    }
)  # fmt: skip


def _configured(name: str, module: nn.Module) -> str | None:
    if getattr(module, "add_maxpool", False):
        return "SE squeezes by avg + max pooling"
    if type(module).__name__ == "SelectAdaptivePool2d" and getattr(module, "pool_type", "avg") != "avg":
        return f"global pool {module.pool_type!r}"
    return None


def _check_module(module: nn.Module) -> None:
    check_peer_modules(module, _MODULES, "timm", _configured)


TIMM = PeerFormat(name="timm", to_senet=_to_senet, from_senet=_from_senet, check_module=_check_module)
