"""torchvision's ResNet and ResNeXt (``resnet18`` ... ``resnet152``, ``resnext50_32x4d``, ``resnext101_32x8d``).

torchvision names every module as senet does, has no SE block and computes in the "v1.5" layout (stride on
the 3x3 convolution, padded stem max pool), so the conversion renames nothing; it checks that every key is a
torchvision ResNet key and that the senet model computes the same function. torchvision itself is never
imported.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn

from senet.interop.common import (
    PeerFormat,
    Style,
    check_layout,
    check_peer_modules,
    check_rank,
    fill_num_batches_tracked,
)
from senet.interop.keys import SENET_STEM, rename, same
from senet.models.resnet import ResNet

__all__ = ["TORCHVISION"]

KEYS = SENET_STEM + same(
    "{block}.conv{k}.weight",
    "{block}.bn{k}.{bn}",
    "{block}.downsample.0.weight",
    "{block}.downsample.1.{bn}",
    "fc.{wb}",
)
_WHAT = "torchvision ResNet"


def _to_senet(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], Style]:
    return fill_num_batches_tracked(rename(state, KEYS, to_senet=True, what=_WHAT)), "v1.5"


def _from_senet(state: Mapping[str, torch.Tensor], model: ResNet) -> dict[str, torch.Tensor]:
    check_rank(model, (2,), "torchvision")
    if model.attention is not None:
        raise ValueError(
            f"torchvision's ResNets have no attention blocks; the senet model has attention={model.attention!r}"
        )
    check_layout(model, "v1.5", "torchvision")
    return rename(state, KEYS, to_senet=False, what="senet (as a torchvision ResNet)")


_MODULES = frozenset(
    {"ResNet", "BasicBlock", "Bottleneck", "Sequential", "Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d",
     "AdaptiveAvgPool2d", "Linear"}
)  # fmt: skip


def _check_module(module: nn.Module) -> None:
    check_peer_modules(module, _MODULES, "torchvision", lambda name, sub: None)


TORCHVISION = PeerFormat(name="torchvision", to_senet=_to_senet, from_senet=_from_senet, check_module=_check_module)
