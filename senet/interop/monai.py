"""MONAI's SENet family (``monai.networks.nets``: ``SEResNet50/101/152``, ``SEResNext50/101``, ``SENet154``) at
``spatial_dims`` 1, 2 and 3.

MONAI ports the Caffe release (Cadene's code) to N-d, so its networks compute in the Caffe layout and map
onto senet's ``legacy_*`` models: ``legacy_seresnet50`` <-> ``SEResNet50``, ``legacy_seresnext50_32x4d`` <->
``SEResNext50``, ``legacy_senet154`` <-> ``SENet154``. Keys:

=====================================  ==========================================
senet                                  MONAI
=====================================  ==========================================
``conv1``, ``bn1`` (deep: ``conv1.N``)  ``layer0.conv1``, ``layer0.bn1`` (deep: ``layer0.conv1..3``/``bn1..3``)
``layerS.B.convK``                     ``layerS.B.convK.conv``
``layerS.B.bnK``                       ``layerS.B.convK.adn.N``
``layerS.B.se.fc1`` / ``fc2``          ``layerS.B.se_layer.fc.0`` / ``fc.2`` (both ``nn.Linear``: no reshape)
``layerS.B.downsample.0`` / ``.1``     ``layerS.B.project.conv`` / ``project.adn.N``
``fc``                                 ``last_linear``
=====================================  ==========================================

The SE hidden width is MONAI's ``C // reduction``; ``ChannelSELayer`` defaults to ``r=2`` when built alone,
so widths are read from the checkpoint, never assumed to be ``C // 16``. ``ResidualSELayer`` (``x + SE(x)``
with a ReLU gate) has the same keys as ``ChannelSELayer`` but another function: a state dict cannot show it,
so pass the MONAI network itself to :func:`senet.interop.convert_state_dict` to have it rejected. MONAI is
never imported.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn

from senet.interop.common import (
    PeerFormat,
    Style,
    check_attention,
    check_layout,
    check_peer_modules,
    check_se_everywhere,
    fill_num_batches_tracked,
)
from senet.interop.keys import CAFFE_DEEP_STEM, CAFFE_STEM, KeyTable, rename
from senet.models.resnet import ResNet

__all__ = ["MONAI"]

UNITS = KeyTable(
    (
        ("{block}.conv{k}.weight", "{block}.conv{k}.conv.weight"),
        ("{block}.bn{k}.{bn}", "{block}.conv{k}.adn.N.{bn}"),
        ("{block}.se.fc1.{wb}", "{block}.se_layer.fc.0.{wb}"),
        ("{block}.se.fc2.{wb}", "{block}.se_layer.fc.2.{wb}"),
        ("{block}.downsample.0.weight", "{block}.project.conv.weight"),
        ("{block}.downsample.1.{bn}", "{block}.project.adn.N.{bn}"),
        ("fc.{wb}", "last_linear.{wb}"),
    )
)
_WHAT = "MONAI SENet"


def _to_senet(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], Style]:
    stem = CAFFE_DEEP_STEM if "layer0.conv2.weight" in state else CAFFE_STEM
    out = rename(state, stem + UNITS, to_senet=True, what=_WHAT)
    for key, value in out.items():
        if key.endswith((".se.fc1.weight", ".se.fc2.weight")) and value.ndim != 2:
            raise ValueError(
                f"MONAI SE weight {key!r} must be an nn.Linear matrix (h, C), got shape {tuple(value.shape)}"
            )
    return fill_num_batches_tracked(out), "caffe"


def _from_senet(state: Mapping[str, torch.Tensor], model: ResNet) -> dict[str, torch.Tensor]:
    if model.spec.block != "bottleneck" or model.spec.shortcut != "conv" or model.num_classes == 0:
        raise ValueError(
            "MONAI's SENets are bottleneck networks with convolution shortcuts and a classifier; the senet model has "
            f"block={model.spec.block!r}, shortcut={model.spec.shortcut!r}, num_classes={model.num_classes}"
        )
    check_se_everywhere(model, "MONAI")
    check_attention(model, "MONAI")
    check_layout(model, "caffe", "MONAI")
    stem = CAFFE_DEEP_STEM if "conv1.0.weight" in state else CAFFE_STEM
    return rename(state, stem + UNITS, to_senet=False, what="senet (as a MONAI SENet)")


_MODULES = frozenset(
    {"SENet", "SENet154", "SEResNet50", "SEResNet101", "SEResNet152", "SEResNext50", "SEResNext101",
     "SEBottleneck", "SEResNetBottleneck", "SEResNeXtBottleneck", "Convolution", "ADN", "ChannelSELayer",
     "Sequential", "Conv1d", "Conv2d", "Conv3d", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "ReLU", "Sigmoid",
     "MaxPool1d", "MaxPool2d", "MaxPool3d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d",
     "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "Identity", "Linear"}
)  # fmt: skip


def _configured(name: str, module: nn.Module) -> str | None:
    if getattr(module, "add_residual", False):
        return "SE with a residual add, x + SE(x)"
    if type(module).__name__ == "ChannelSELayer":
        kinds = [type(m).__name__ for m in module.fc]
        if kinds != ["Linear", "ReLU", "Linear", "Sigmoid"]:
            return f"SE excitation {kinds}, senet's is Linear, ReLU, Linear, Sigmoid"
    return None


def _check_module(module: nn.Module) -> None:
    check_peer_modules(module, _MODULES, "MONAI", _configured)


MONAI = PeerFormat(name="monai", to_senet=_to_senet, from_senet=_from_senet, check_module=_check_module)
