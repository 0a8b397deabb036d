"""MobileNet v1 and MobileNetV2, plain or with SE, for 1-, 2- and 3-D data.

**MobileNet v1** (Howard et al., 2017, Table 1), "1.0-224": a 3x3/2 stem and 13 depthwise-separable
blocks (3x3 depthwise conv-BN-act, 1x1 pointwise conv-BN-act). **SE-MobileNet** is the SENet paper's
Table 3 setting: one SE block after each block's pointwise convolution (after its activation, the
paper's rule for non-residual networks: after the non-linearity that follows a convolution; the
depthwise convolutions carry none). Parameters at 1000 classes: plain 4,231,976 (as timm's
``mobilenetv1_100``); with SE at r=16, 13 blocks of ``2*C*(C//16) + C//16 + C``: 4,718,044, the
paper's "4.7M" (Table 3: 4.2M -> 4.7M). SE after the depthwise convolutions as well would give about
5.07M, which is why only the pointwise ones carry it.

**MobileNetV2** (Sandler et al., 2018, Table 2): inverted residual blocks (1x1 expansion by t,
3x3 depthwise, linear 1x1 projection; identity shortcut where stride 1 and widths match). With SE,
the block is placed on the expanded depthwise output (after its activation, before the projection),
as in MnasNet, EfficientNet and MobileNetV3. Its hidden width is taken from the **block input**
channels, ``h = C_in // r`` (MnasNet/EfficientNet's ``se_ratio`` on the input; MobileNetV3 uses the
expanded width instead), so the default ``r = 4`` is EfficientNet's ``se_ratio=0.25``. It is built as
``create_attention(..., reduction=r * t)`` on the ``t * C_in`` expanded channels, which gives exactly
``C_in // r``. Plain ``mobilenetv2_100``: 3,504,872 parameters, as torchvision's ``mobilenet_v2``.

Both use ReLU6 (as TF-slim, torchvision and timm; the v1 paper writes ReLU). Deviation for ranks 1
and 3: every 3x3 kernel becomes 3 or 3x3x3, every stride applies along each spatial dimension.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from senet.layers.checks import check_positive_int
from senet.layers.nd import check_spatial_dims, norm_nd
from senet.models.base import ClassifierModel
from senet.models.conv_block import ConvNormAct, attention_params, check_drop_rate, check_num_classes, make_conv
from senet.models.integration import BlockAttention, Placement, block_attention
from senet.models.registry import register_model

__all__ = [
    "SeparableStageSpec",
    "MobileNetV1Spec",
    "MOBILENETV1_100",
    "InvertedResidualStageSpec",
    "MobileNetV2Spec",
    "MOBILENETV2_100",
    "DepthwiseSeparable",
    "MobileNetV1",
    "InvertedResidual",
    "MobileNetV2",
    "count_params_v1",
    "count_params_v2",
    "mobilenetv1_100",
    "semobilenetv1_100",
    "mobilenetv2_100",
    "semobilenetv2_100",
]


# ---------------------------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class SeparableStageSpec:
    """Consecutive rows of MobileNet v1's Table 1: ``depth`` depthwise-separable blocks to
    ``out_channels``; the first block's depthwise conv has ``stride``."""

    name: str
    depth: int
    out_channels: int
    stride: int


@dataclass(frozen=True)
class MobileNetV1Spec:
    stem_channels: int  # conv 3x3/2
    stages: tuple[SeparableStageSpec, ...]


# MobileNet 1.0-224 (output size at a 224 x 224 input in the comments).
MOBILENETV1_100 = MobileNetV1Spec(
    stem_channels=32,  # 112 x 112
    stages=(
        SeparableStageSpec("conv2", depth=1, out_channels=64, stride=1),  # 112 x 112
        SeparableStageSpec("conv3", depth=2, out_channels=128, stride=2),  # 56 x 56
        SeparableStageSpec("conv4", depth=2, out_channels=256, stride=2),  # 28 x 28
        SeparableStageSpec("conv5", depth=6, out_channels=512, stride=2),  # 14 x 14
        SeparableStageSpec("conv6", depth=2, out_channels=1024, stride=2),  # 7 x 7 (the table's last "s2" is a typo)
    ),
)


@dataclass(frozen=True)
class InvertedResidualStageSpec:
    """A row of MobileNetV2's Table 2: ``depth`` (n) inverted residual blocks with expansion ``expansion`` (t)
    to ``out_channels`` (c); the first block has ``stride`` (s)."""

    name: str
    expansion: int
    out_channels: int
    depth: int
    stride: int


@dataclass(frozen=True)
class MobileNetV2Spec:
    stem_channels: int  # conv 3x3/2
    stages: tuple[InvertedResidualStageSpec, ...]
    head_channels: int  # the final conv 1x1, run as the last stage


# MobileNetV2 1.0 (width multiplier 1, 224 x 224 input): Table 2 row by row.
MOBILENETV2_100 = MobileNetV2Spec(
    stem_channels=32,  # 112 x 112
    stages=(
        InvertedResidualStageSpec("bottleneck1", expansion=1, out_channels=16, depth=1, stride=1),  # 112 x 112
        InvertedResidualStageSpec("bottleneck2", expansion=6, out_channels=24, depth=2, stride=2),  # 56 x 56
        InvertedResidualStageSpec("bottleneck3", expansion=6, out_channels=32, depth=3, stride=2),  # 28 x 28
        InvertedResidualStageSpec("bottleneck4", expansion=6, out_channels=64, depth=4, stride=2),  # 14 x 14
        InvertedResidualStageSpec("bottleneck5", expansion=6, out_channels=96, depth=3, stride=1),  # 14 x 14
        InvertedResidualStageSpec("bottleneck6", expansion=6, out_channels=160, depth=3, stride=2),  # 7 x 7
        InvertedResidualStageSpec("bottleneck7", expansion=6, out_channels=320, depth=1, stride=1),  # 7 x 7
    ),
    head_channels=1280,  # 7 x 7
)


def _check_common(spatial_dims: int, in_channels: int, num_classes: int, drop_rate: float) -> float:
    check_spatial_dims(spatial_dims)
    check_positive_int("in_channels", in_channels)
    check_num_classes(num_classes)
    return check_drop_rate("drop_rate", drop_rate)


def _conv_norm_params(cin: int, cout: int, kernel_size: int, spatial_dims: int, groups: int = 1) -> int:
    return kernel_size**spatial_dims * (cin // groups) * cout + 2 * cout


def _init_classifier(fc: nn.Module) -> None:
    if isinstance(fc, nn.Linear):  # torchvision's MobileNet initialisation
        nn.init.normal_(fc.weight, 0.0, 0.01)
        nn.init.zeros_(fc.bias)


# ---------------------------------------------------------------------------------------------- v1


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv-BN-ReLU6, then 1x1 pointwise conv-BN-ReLU6, then the optional SE block ``se``."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        stride: int,
        se: nn.Module | None,
        placement: str,
    ) -> None:
        super().__init__()
        self.conv_dw = ConvNormAct(
            spatial_dims, in_channels, in_channels, 3, stride=stride, groups=in_channels, activation=nn.ReLU6
        )
        self.conv_pw = ConvNormAct(
            spatial_dims, in_channels, out_channels, 1, activation=nn.ReLU6, se=se, placement=placement
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_pw(self.conv_dw(x))  # (N, C_in, *S) -> (N, C_in, *S/stride) -> (N, C_out, *S/stride)


class MobileNetV1(ClassifierModel):
    """MobileNet v1 from a :class:`MobileNetV1Spec`; SE after each pointwise conv of the stages in ``se_stages``."""

    def __init__(
        self,
        spec: MobileNetV1Spec,
        *,
        spatial_dims: int = 2,
        in_channels: int = 3,
        num_classes: int = 1000,
        attention: str | None = None,
        reduction: int | tuple[int, ...] = 16,
        se_stages: tuple[int, ...] | None = None,
        placement: Placement = "after_act",
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        drop_rate = _check_common(spatial_dims, in_channels, num_classes, drop_rate)
        attentions = block_attention(  # one per stage (None without attention), every option validated
            attention, num_stages=len(spec.stages), reduction=reduction, se_stages=se_stages, placement=placement
        )
        self.spec = spec
        self.spatial_dims, self.in_channels, self.num_classes = spatial_dims, in_channels, num_classes
        self.drop_rate = drop_rate
        self.attention, self.reduction = attention, reduction
        self.se_stages = None if se_stages is None else tuple(se_stages)
        self.stem = ConvNormAct(spatial_dims, in_channels, spec.stem_channels, 3, stride=2, activation=nn.ReLU6)
        stages, channels = [], spec.stem_channels
        for row, row_attention in zip(spec.stages, attentions):
            blocks = []
            for i in range(row.depth):
                se_layer = None if row_attention is None else row_attention.build(row.out_channels, spatial_dims)
                blocks.append(
                    DepthwiseSeparable(
                        spatial_dims,
                        channels,
                        row.out_channels,
                        stride=row.stride if i == 0 else 1,
                        se=se_layer,
                        placement=placement,
                    )
                )
                channels = row.out_channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.stage_channels = tuple(row.out_channels for row in spec.stages)
        self.num_features = channels
        self.fc = nn.Linear(channels, num_classes) if num_classes > 0 else nn.Identity()
        _init_classifier(self.fc)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)  # (N, in_channels, *S) -> (N, 32, *S/2)

    def stage_modules(self) -> list[nn.Module]:
        return list(self.stages)

    def num_params_from_spec(self) -> int:
        """The parameter count computed from the spec table and the build options (:func:`count_params_v1`)."""
        return count_params_v1(
            self.spec,
            spatial_dims=self.spatial_dims,
            in_channels=self.in_channels,
            num_classes=self.num_classes,
            attention=self.attention,
            reduction=self.reduction,
            se_stages=self.se_stages,
        )


def count_params_v1(
    spec: MobileNetV1Spec,
    *,
    spatial_dims: int = 2,
    in_channels: int = 3,
    num_classes: int = 1000,
    attention: str | None = None,
    reduction: int | tuple[int, ...] = 16,
    se_stages: tuple[int, ...] | None = None,
) -> int:
    """Parameters of ``MobileNetV1(spec, ...)`` from the table alone: bias-free convolutions
    (``k^d * C_in / groups * C_out``), BN ``2 * C``, attention after each pointwise conv, FC ``C * K + K``."""
    attentions = block_attention(attention, num_stages=len(spec.stages), reduction=reduction, se_stages=se_stages)
    d, channels = spatial_dims, spec.stem_channels
    total = _conv_norm_params(in_channels, channels, 3, d)
    for row, row_attention in zip(spec.stages, attentions):
        for _ in range(row.depth):
            total += _conv_norm_params(channels, channels, 3, d, groups=channels)  # depthwise
            total += _conv_norm_params(channels, row.out_channels, 1, d)  # pointwise
            if row_attention is not None:
                total += attention_params(row_attention, row.out_channels, d)
            channels = row.out_channels
    return total + (channels * num_classes + num_classes if num_classes > 0 else 0)


# ---------------------------------------------------------------------------------------------- v2


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expansion conv-BN-ReLU6 (absent when t = 1), 3x3 depthwise conv-BN-ReLU6
    followed by the optional SE block ``se`` on the ``t * C_in`` expanded channels, then a linear 1x1
    projection conv-BN; ``x +`` that when ``stride == 1`` and ``C_in == C_out``."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        expansion: int,
        stride: int,
        se: nn.Module | None,
        placement: str,
    ) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.conv_pw = (
            ConvNormAct(spatial_dims, in_channels, hidden, 1, activation=nn.ReLU6) if expansion != 1 else None
        )
        self.conv_dw = ConvNormAct(
            spatial_dims,
            hidden,
            hidden,
            3,
            stride=stride,
            groups=hidden,
            activation=nn.ReLU6,
            se=se,
            placement=placement,
        )
        self.conv_pwl = make_conv(spatial_dims, hidden, out_channels, 1)
        self.bn = norm_nd(spatial_dims)(out_channels)
        self.has_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.conv_pw is None else self.conv_pw(x)  # (N, C_in, *S) -> (N, t*C_in, *S)
        y = self.conv_dw(y)  # (N, t*C_in, *S) -> (N, t*C_in, *S/stride), SE inside
        y = self.bn(self.conv_pwl(y))  # -> (N, C_out, *S/stride), no activation (linear bottleneck)
        return x + y if self.has_residual else y


class MobileNetV2(ClassifierModel):
    """MobileNetV2 from a :class:`MobileNetV2Spec`. Stages: one per table row, then the 1x1 head conv
    (so ``stage_channels`` ends with ``head_channels``, and ``forward_intermediates`` returns 8 maps)."""

    def __init__(
        self,
        spec: MobileNetV2Spec,
        *,
        spatial_dims: int = 2,
        in_channels: int = 3,
        num_classes: int = 1000,
        attention: str | None = None,
        reduction: int | tuple[int, ...] = 4,
        se_stages: tuple[int, ...] | None = None,
        placement: Placement = "after_act",
        drop_rate: float = 0.2,
    ) -> None:
        super().__init__()
        drop_rate = _check_common(spatial_dims, in_channels, num_classes, drop_rate)
        attentions = block_attention(  # one per stage (None without attention), every option validated
            attention, num_stages=len(spec.stages), reduction=reduction, se_stages=se_stages, placement=placement
        )
        self.spec = spec
        self.spatial_dims, self.in_channels, self.num_classes = spatial_dims, in_channels, num_classes
        self.drop_rate = drop_rate
        self.attention, self.reduction = attention, reduction
        self.se_stages = None if se_stages is None else tuple(se_stages)
        self.stem = ConvNormAct(spatial_dims, in_channels, spec.stem_channels, 3, stride=2, activation=nn.ReLU6)
        stages, channels = [], spec.stem_channels
        for row, row_attention in zip(spec.stages, attentions):
            blocks = []
            for i in range(row.depth):
                se_layer = None
                if row_attention is not None:
                    expanded_attention = _expanded(row_attention, row, channels)
                    se_layer = expanded_attention.build(channels * row.expansion, spatial_dims)
                blocks.append(
                    InvertedResidual(
                        spatial_dims,
                        channels,
                        row.out_channels,
                        expansion=row.expansion,
                        stride=row.stride if i == 0 else 1,
                        se=se_layer,
                        placement=placement,
                    )
                )
                channels = row.out_channels
            stages.append(nn.Sequential(*blocks))
        stages.append(ConvNormAct(spatial_dims, channels, spec.head_channels, 1, activation=nn.ReLU6))
        self.stages = nn.ModuleList(stages)
        self.stage_channels = (*(row.out_channels for row in spec.stages), spec.head_channels)
        self.num_features = spec.head_channels
        self.fc = nn.Linear(spec.head_channels, num_classes) if num_classes > 0 else nn.Identity()
        _init_classifier(self.fc)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)  # (N, in_channels, *S) -> (N, 32, *S/2)

    def stage_modules(self) -> list[nn.Module]:
        return list(self.stages)

    def num_params_from_spec(self) -> int:
        """The parameter count computed from the spec table and the build options (:func:`count_params_v2`)."""
        return count_params_v2(
            self.spec,
            spatial_dims=self.spatial_dims,
            in_channels=self.in_channels,
            num_classes=self.num_classes,
            attention=self.attention,
            reduction=self.reduction,
            se_stages=self.se_stages,
        )


def _expanded(attention: BlockAttention, row: InvertedResidualStageSpec, in_channels: int) -> BlockAttention:
    """The block's attention on ``t * C_in`` expanded channels with hidden width ``C_in // r``: ratio ``r * t``,
    since ``(t * C_in) // (t * r) == C_in // r``."""
    if attention.reduction > in_channels:
        raise ValueError(
            f"reduction for {row.name} must be in [1, block input channels={in_channels}] "
            f"(the hidden width is C_in // r), got {attention.reduction}"
        )
    return replace(attention, reduction=attention.reduction * row.expansion)


def count_params_v2(
    spec: MobileNetV2Spec,
    *,
    spatial_dims: int = 2,
    in_channels: int = 3,
    num_classes: int = 1000,
    attention: str | None = None,
    reduction: int | tuple[int, ...] = 4,
    se_stages: tuple[int, ...] | None = None,
) -> int:
    """Parameters of ``MobileNetV2(spec, ...)`` from the table alone: bias-free convolutions, BN ``2 * C``,
    attention on each block's ``t * C_in`` expanded channels, the 1x1 head conv, FC ``C * K + K``."""
    attentions = block_attention(attention, num_stages=len(spec.stages), reduction=reduction, se_stages=se_stages)
    d, channels = spatial_dims, spec.stem_channels
    total = _conv_norm_params(in_channels, channels, 3, d)
    for row, row_attention in zip(spec.stages, attentions):
        for _ in range(row.depth):
            hidden = channels * row.expansion
            if row.expansion != 1:
                total += _conv_norm_params(channels, hidden, 1, d)  # expansion
            total += _conv_norm_params(hidden, hidden, 3, d, groups=hidden)  # depthwise
            total += _conv_norm_params(hidden, row.out_channels, 1, d)  # linear projection
            if row_attention is not None:
                total += attention_params(_expanded(row_attention, row, channels), hidden, d)
            channels = row.out_channels
    total += _conv_norm_params(channels, spec.head_channels, 1, d)
    return total + (spec.head_channels * num_classes + num_classes if num_classes > 0 else 0)


# ---------------------------------------------------------------------------------------------- builders


@register_model
def mobilenetv1_100(
    *,
    spatial_dims: int = 2,
    in_channels: int = 3,
    num_classes: int = 1000,
    attention: str | None = None,
    reduction: int | tuple[int, ...] = 16,
    se_stages: tuple[int, ...] | None = None,
    placement: Placement = "after_act",
    drop_rate: float = 0.0,
) -> MobileNetV1:
    """MobileNet v1 1.0 (Howard et al., 2017), 4,231,976 parameters at 1000 classes (timm's ``mobilenetv1_100``).

    Args:
        spatial_dims: 1, 2 or 3 (the rank of the input ``(N, C, *S)``).
        in_channels: channels of the input (3 for RGB).
        num_classes: classes K of the final FC (0: no classifier).
        attention: ``None`` (plain, the default here) or a registered attention name (``"se"``), placed after
            the pointwise conv of every depthwise-separable block of the stages in ``se_stages``.
        reduction: the ratio r, one for all five stages or one per stage (hidden width ``C // r``).
        se_stages: 0-based indices of the stages (conv2..conv6) that carry attention; ``None``: all.
        placement: ``"after_act"`` (after the pointwise conv's ReLU6, the paper's) or ``"before_act"``.
        drop_rate: dropout before the classifier.
    """
    return MobileNetV1(
        MOBILENETV1_100,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        attention=attention,
        reduction=reduction,
        se_stages=se_stages,
        placement=placement,
        drop_rate=drop_rate,
    )


@register_model
def semobilenetv1_100(
    *,
    spatial_dims: int = 2,
    in_channels: int = 3,
    num_classes: int = 1000,
    attention: str | None = "se",
    reduction: int | tuple[int, ...] = 16,
    se_stages: tuple[int, ...] | None = None,
    placement: Placement = "after_act",
    drop_rate: float = 0.0,
) -> MobileNetV1:
    """SE-MobileNet 1.0 (SENet paper, Table 3): MobileNet v1 with an SE block (r = 16) after every
    block's pointwise conv; 4,718,044 parameters at 1000 classes (the paper: 4.7M). Arguments as
    :func:`mobilenetv1_100`, with ``attention="se"``."""
    return MobileNetV1(
        MOBILENETV1_100,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        attention=attention,
        reduction=reduction,
        se_stages=se_stages,
        placement=placement,
        drop_rate=drop_rate,
    )


@register_model
def mobilenetv2_100(
    *,
    spatial_dims: int = 2,
    in_channels: int = 3,
    num_classes: int = 1000,
    attention: str | None = None,
    reduction: int | tuple[int, ...] = 4,
    se_stages: tuple[int, ...] | None = None,
    placement: Placement = "after_act",
    drop_rate: float = 0.2,
) -> MobileNetV2:
    """MobileNetV2 1.0 (Sandler et al., 2018), 3,504,872 parameters at 1000 classes (torchvision's
    ``mobilenet_v2``, timm's ``mobilenetv2_100``).

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: channels of the input.
        num_classes: classes K of the final FC (0: no classifier).
        attention: ``None`` (plain, the default here) or a registered attention name, placed on the expanded
            depthwise output of every inverted residual block of the stages in ``se_stages``.
        reduction: the ratio r between the **block input** channels and the hidden width, ``h = C_in // r``
            (4 = EfficientNet's ``se_ratio=0.25``); one for all seven rows or one per row.
        se_stages: 0-based indices of the table rows (bottleneck1..7) that carry attention; ``None``: all.
        placement: ``"after_act"`` (after the depthwise conv's ReLU6) or ``"before_act"``.
        drop_rate: dropout before the classifier (torchvision: 0.2).
    """
    return MobileNetV2(
        MOBILENETV2_100,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        attention=attention,
        reduction=reduction,
        se_stages=se_stages,
        placement=placement,
        drop_rate=drop_rate,
    )


@register_model
def semobilenetv2_100(
    *,
    spatial_dims: int = 2,
    in_channels: int = 3,
    num_classes: int = 1000,
    attention: str | None = "se",
    reduction: int | tuple[int, ...] = 4,
    se_stages: tuple[int, ...] | None = None,
    placement: Placement = "after_act",
    drop_rate: float = 0.2,
) -> MobileNetV2:
    """MobileNetV2 1.0 with SE on every block's expanded depthwise output, hidden width ``C_in // 4``
    (MnasNet/EfficientNet style). Arguments as :func:`mobilenetv2_100`, with ``attention="se"``."""
    return MobileNetV2(
        MOBILENETV2_100,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        attention=attention,
        reduction=reduction,
        se_stages=se_stages,
        placement=placement,
        drop_rate=drop_rate,
    )
