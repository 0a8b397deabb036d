"""Pieces shared by the MobileNet, VGG, GoogLeNet and pre-activation families: ``ConvNormAct`` with an SE slot,
``make_conv``, the spec-table count of an attention layer, and two argument checks.

The SENet paper (Section 4) integrates SE into non-residual networks such as VGGNet by inserting it
after the non-linearity that follows each convolution. :class:`ConvNormAct` is that unit: a
convolution, batch norm and activation, with an optional attention block ``se`` either after the
activation (``placement="after_act"``, the paper's) or between the norm and the activation
(``placement="before_act"``). Every class comes from :mod:`senet.layers.nd`, so one code path
serves ranks 1, 2 and 3.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from senet.layers.checks import excitation_width
from senet.layers.nd import conv_nd, norm_nd
from senet.models.integration import BlockAttention, check_placement

__all__ = ["ConvNormAct", "make_conv", "attention_params", "check_num_classes", "check_drop_rate"]


def make_conv(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    stride: int = 1,
    groups: int = 1,
    bias: bool = False,
) -> nn.Module:
    """A convolution of rank ``spatial_dims`` with padding ``kernel_size // 2`` (bias-free unless ``bias``),
    initialised as torchvision does (He-normal weights, fan_out; zero bias). Attention blocks keep their own
    initialisation."""
    conv = conv_nd(spatial_dims)(
        in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, groups=groups, bias=bias
    )
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def attention_params(attention: BlockAttention, channels: int, spatial_dims: int) -> int:
    """Parameters of one attention layer at ``channels`` channels, for the spec-table counts: SE's
    ``2*C*h + h + C`` with h the paper's ``C // r`` (or the divisor's rounding); any other layer is built
    alone and counted, since its parameters are its own to define."""
    if attention.name == "se":
        hidden = excitation_width(channels, attention.reduction, None, attention.divisor)
        return 2 * channels * hidden + hidden + channels
    return sum(p.numel() for p in attention.build(channels, spatial_dims).parameters())


class ConvNormAct(nn.Module):
    """``conv -> norm -> act`` of any rank, with an optional attention block ``se``.

    ``placement="after_act"``: ``se(act(norm(conv(x))))`` (the SENet paper's placement);
    ``placement="before_act"``: ``act(se(norm(conv(x))))``. Padding is ``kernel_size // 2`` ("same"
    for odd kernels at stride 1). The convolution has no bias (the norm has one) unless ``bias=True``
    (torchvision's ``vgg16_bn`` keeps them); ``eps`` is the norm's (torchvision's GoogLeNet: 0.001).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        groups: int = 1,
        activation: type[nn.Module] = nn.ReLU,
        se: nn.Module | None = None,
        placement: str = "after_act",
        bias: bool = False,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.placement = check_placement(placement)
        self.conv = make_conv(
            spatial_dims, in_channels, out_channels, kernel_size, stride=stride, groups=groups, bias=bias
        )
        self.bn = norm_nd(spatial_dims)(out_channels, eps=eps)
        self.act = activation()
        self.se = se

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))  # (N, C_in, *S) -> (N, C_out, *S/stride)
        if self.se is not None and self.placement == "before_act":
            x = self.se(x)
        x = self.act(x)
        if self.se is not None and self.placement == "after_act":
            x = self.se(x)
        return x


def check_num_classes(num_classes: object) -> int:
    """``num_classes`` as an int >= 0 (0 builds the model without a classifier)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
    return num_classes


def check_drop_rate(name: str, value: object) -> float:
    """``value`` as a float in [0, 1), or a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a float in [0, 1), got {value!r}")
    return float(value)
