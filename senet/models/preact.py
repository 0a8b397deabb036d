"""Pre-activation ResNet-164 and Wide ResNet-16-8 for CIFAR, plain or with SE, for 1-, 2- and 3-D data.

The SENet paper's CIFAR table (Tables 4 and 5) has ResNet-164 (5.46 -> 4.39 % error on CIFAR-10) and
WRN-16-8 (4.27 -> 3.88 %). Both are pre-activation networks (He et al., "Identity Mappings in Deep
Residual Networks", 2016): each unit is ``out = branch(x) + shortcut(x)`` where the branch *starts* with
BN-ReLU and ends with a convolution, and nothing follows the addition. The network ends with BN-ReLU
(in :meth:`PreActResNet.forward_features`), global average pooling and the classifier.

- **ResNet-164**: a 3x3 stem of 16 channels, then three stages of 18 bottleneck units (BN-ReLU-conv1x1,
  BN-ReLU-conv3x3, BN-ReLU-conv1x1) of widths 16/32/64 and outputs 64/128/256 (x4). As in Kaiming He's
  reference code (``resnet-1k-layers/resnet-pre-act.lua``) the stride is on the first 1x1 convolution,
  and the first unit of each stage (where the width changes) shares its first BN-ReLU between the branch
  and its 1x1 projection shortcut ("both_preact"); the other units have an identity shortcut on the raw
  ``x``. 1,703,258 parameters at 10 classes.
- **WRN-16-8** (Zagoruyko & Komodakis, 2016): depth 16 = 6n + 4 with n = 2 basic units (BN-ReLU-conv3x3,
  BN-ReLU-[dropout]-conv3x3) per stage, widths 16k/32k/64k = 128/256/512 for k = 8, stride on the first
  3x3; projection shortcuts as above. ``dropout`` is the WRN paper's dropout between the two convolutions.
  10,961,370 parameters at 10 classes.

Integration strategies (``integration``; the SE block is the unit's attribute ``se``). Pre-activation
units put the BN-ReLU at the start of the branch and nothing after the addition, so the positions are:

=============  ============================================================================  ===============
integration    forward (``pre = relu(bn1(x))``, the branch's pre-activation)                  SE channels
=============  ============================================================================  ===============
``standard``   ``SE(F(pre)) + shortcut``: SE on the branch's last conv output                ``out_channels``
``pre``        ``F(SE(pre)) + shortcut``: SE on the branch input after its BN-ReLU           ``in_channels``
               (``before_act``: ``F(relu(SE(bn1(x))))``); the shortcut keeps the un-gated
               ``x`` (identity) or ``pre`` (projection)
``post``       ``SE(F(pre) + shortcut)``: after the addition (no activation follows it)      ``out_channels``
``identity``   ``F(pre) + SE(shortcut)``: on the identity / projection branch                ``out_channels``
``inside``     after the 3x3 conv's following BN-ReLU, before the next conv (``before_act``:  ``width``
               between that BN and ReLU); in a WRN unit after the first 3x3 conv
=============  ============================================================================  ===============

``placement`` only has a choice for ``"pre"`` and ``"inside"`` (the positions next to a ReLU); with any
other integration only ``"after_act"`` is accepted. With every gate equal to 1 each strategy computes the
plain network exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, TypeAlias

import torch
import torch.nn as nn

from senet.layers.checks import check_choice, check_positive_int
from senet.layers.nd import check_spatial_dims, norm_nd
from senet.models.base import ClassifierModel
from senet.models.conv_block import attention_params, check_drop_rate, check_num_classes, make_conv
from senet.models.integration import BlockAttention, Integration, Placement, block_attention
from senet.models.registry import register_model

__all__ = [
    "PreActStageSpec",
    "PreActSpec",
    "PREACT_RESNET164",
    "WRN16_8",
    "PreActBottleneck",
    "PreActBasic",
    "PreActResNet",
    "count_params",
    "preact_resnet164_cifar",
    "sepreact_resnet164_cifar",
    "wrn16_8_cifar",
    "sewrn16_8_cifar",
]

PreActBlock: TypeAlias = Literal["bottleneck", "basic"]


@dataclass(frozen=True)
class PreActStageSpec:
    """One stage: ``depth`` units; ``width`` is the channels of the 3x3 convolutions, ``out_channels`` the
    unit output; the first unit has ``stride``."""

    name: str
    depth: int
    width: int
    out_channels: int
    stride: int


@dataclass(frozen=True)
class PreActSpec:
    name: str
    block: PreActBlock
    stem_channels: int  # one 3x3 convolution, stride 1, no BN-ReLU (the first unit pre-activates it)
    stages: tuple[PreActStageSpec, ...]

    def __post_init__(self) -> None:
        check_choice("PreActSpec.block", self.block, ("bottleneck", "basic"))


# ResNet-164 = 9n + 2 with n = 18 (output sizes for a 32 x 32 input).
PREACT_RESNET164 = PreActSpec(
    name="PreAct-ResNet-164",
    block="bottleneck",
    stem_channels=16,  # 32 x 32
    stages=(
        PreActStageSpec("conv2_x", depth=18, width=16, out_channels=64, stride=1),  # 32 x 32
        PreActStageSpec("conv3_x", depth=18, width=32, out_channels=128, stride=2),  # 16 x 16
        PreActStageSpec("conv4_x", depth=18, width=64, out_channels=256, stride=2),  # 8 x 8
    ),
)

# WRN-16-8 = 6n + 4 with n = 2, widening factor k = 8.
WRN16_8 = PreActSpec(
    name="WRN-16-8",
    block="basic",
    stem_channels=16,  # 32 x 32
    stages=(
        PreActStageSpec("conv2", depth=2, width=16 * 8, out_channels=16 * 8, stride=1),  # 32 x 32
        PreActStageSpec("conv3", depth=2, width=32 * 8, out_channels=32 * 8, stride=2),  # 16 x 16
        PreActStageSpec("conv4", depth=2, width=64 * 8, out_channels=64 * 8, stride=2),  # 8 x 8
    ),
)


class _PreActUnit(nn.Module):
    """What both units share: the pre-activation, the shortcut and the SE positions.

    Subclasses build ``bn1``/``act1`` (the pre-activation), the branch after it (``branch(pre)``, calling
    :meth:`_inside` after the 3x3 conv's following BN), ``shortcut`` (``None``: identity) and ``se``.
    """

    bn1: nn.Module
    act1: nn.Module
    shortcut: nn.Module | None
    se: nn.Module | None
    branch: Callable[[torch.Tensor], torch.Tensor]  # the residual function F after the pre-activation

    def _setup_attention(
        self, attention: BlockAttention | None, in_channels: int, width: int, out: int, dims: int
    ) -> None:
        self.integration = attention.integration if attention is not None else "standard"
        self.placement = attention.placement if attention is not None else "after_act"
        self.se = None
        if attention is not None:
            channels = attention.channels_at(in_channels=in_channels, inner_channels=width, out_channels=out)
            self.se = attention.build(channels, dims)

    def _at(self, integration: str) -> bool:
        return self.se is not None and self.integration == integration

    def _inside(self, x: torch.Tensor, act: nn.Module) -> torch.Tensor:
        """The ReLU after the 3x3 conv's following BN, with SE after (or before) it for ``"inside"``."""
        if not self._at("inside"):
            return act(x)
        return act(self.se(x)) if self.placement == "before_act" else self.se(act(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn1(x)  # (N, C_in, *S)
        pre = self.act1(y)  # the pre-activation, shared with a projection shortcut
        shortcut = x if self.shortcut is None else self.shortcut(pre)  # (N, C_out, *S/stride)
        if self._at("identity"):
            shortcut = self.se(shortcut)
        if self._at("pre"):
            pre = self.act1(self.se(y)) if self.placement == "before_act" else self.se(pre)
        out = self.branch(pre)  # (N, C_in, *S) -> (N, C_out, *S/stride)
        if self._at("standard"):
            out = self.se(out)
        out = out + shortcut
        if self._at("post"):
            out = self.se(out)
        return out


def _shortcut(spatial_dims: int, in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    """A 1x1 projection (no BN: its output goes straight into the addition) where the shape changes."""
    if stride == 1 and in_channels == out_channels:
        return None
    return make_conv(spatial_dims, in_channels, out_channels, 1, stride=stride)


class PreActBottleneck(_PreActUnit):
    """BN-ReLU-conv1x1 (``width``, stride), BN-ReLU-conv3x3 (``width``), BN-ReLU-conv1x1 (``out_channels``)."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        stage: PreActStageSpec,
        *,
        stride: int,
        attention: BlockAttention | None,
    ) -> None:
        super().__init__()
        norm, width, out = norm_nd(spatial_dims), stage.width, stage.out_channels
        self.bn1, self.act1 = norm(in_channels), nn.ReLU()
        self.conv1 = make_conv(spatial_dims, in_channels, width, 1, stride=stride)
        self.bn2, self.act2 = norm(width), nn.ReLU()
        self.conv2 = make_conv(spatial_dims, width, width, 3)
        self.bn3, self.act3 = norm(width), nn.ReLU()
        self.conv3 = make_conv(spatial_dims, width, out, 1)
        self.shortcut = _shortcut(spatial_dims, in_channels, out, stride)
        self._setup_attention(attention, in_channels, width, out, spatial_dims)

    def branch(self, pre: torch.Tensor) -> torch.Tensor:
        x = self.conv1(pre)  # (N, C_in, *S) -> (N, width, *S/stride)
        x = self.conv2(self.act2(self.bn2(x)))  # 3x3: (N, width, *S')
        x = self._inside(self.bn3(x), self.act3)
        return self.conv3(x)  # (N, width, *S') -> (N, C_out, *S')


class PreActBasic(_PreActUnit):
    """WRN unit: BN-ReLU-conv3x3 (``width``, stride), BN-ReLU-dropout-conv3x3 (``out_channels``)."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        stage: PreActStageSpec,
        *,
        stride: int,
        attention: BlockAttention | None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        norm, width, out = norm_nd(spatial_dims), stage.width, stage.out_channels
        self.bn1, self.act1 = norm(in_channels), nn.ReLU()
        self.conv1 = make_conv(spatial_dims, in_channels, width, 3, stride=stride)
        self.bn2, self.act2 = norm(width), nn.ReLU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = make_conv(spatial_dims, width, out, 3)
        self.shortcut = _shortcut(spatial_dims, in_channels, out, stride)
        self._setup_attention(attention, in_channels, width, out, spatial_dims)

    def branch(self, pre: torch.Tensor) -> torch.Tensor:
        x = self.conv1(pre)  # (N, C_in, *S) -> (N, width, *S/stride)
        x = self._inside(self.bn2(x), self.act2)
        return self.conv2(self.dropout(x))  # (N, width, *S') -> (N, C_out, *S')


def _check_placement(integration: str, placement: str) -> None:
    if placement != "after_act" and integration not in ("pre", "inside"):
        raise ValueError(
            f"placement={placement!r} needs integration 'pre' or 'inside' (the only positions next to a ReLU in a "
            f"pre-activation unit); integration={integration!r} has no choice, use placement='after_act'"
        )


class PreActResNet(ClassifierModel):
    """A pre-activation residual network from a :class:`PreActSpec`: 3x3 stem -> stages -> BN-ReLU ->
    global average pool -> ``fc``.

    Args (SENet paper symbols in brackets):
        spec: the table (:data:`PREACT_RESNET164`, :data:`WRN16_8`).
        spatial_dims: rank of the input (1, 2 or 3).
        in_channels: input channels.
        num_classes: classifier outputs; 0 leaves ``fc`` an identity.
        attention: attention layer on each unit (a key of ``senet.layers.ATTENTION_LAYERS``); ``None``: plain.
        reduction: the reduction ratio [r], one for all stages or one per stage.
        integration: where the block goes (see the module docstring).
        placement: ``"after_act"`` or ``"before_act"`` the adjacent ReLU, for ``"pre"`` and ``"inside"`` only.
        se_stages: 0-based indices of the stages with attention, ``None`` for all.
        dropout: dropout between the two 3x3 convolutions of a basic (WRN) unit; bottleneck units have none.
        drop_rate: dropout before ``fc``.

    ``forward_intermediates`` returns the raw stage outputs (the sums); ``forward_features`` adds the final BN-ReLU.
    """

    def __init__(
        self,
        spec: PreActSpec,
        *,
        spatial_dims: int = 2,
        in_channels: int = 3,
        num_classes: int = 10,
        attention: str | None = None,
        reduction: int | tuple[int, ...] = 16,
        integration: Integration = "standard",
        placement: Placement = "after_act",
        se_stages: Iterable[int] | None = None,
        dropout: float = 0.0,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if not isinstance(spec, PreActSpec):
            raise TypeError(f"spec must be a PreActSpec, got {type(spec).__name__}")
        attentions = block_attention(
            attention,
            num_stages=len(spec.stages),
            reduction=reduction,
            se_stages=se_stages,
            integration=integration,
            placement=placement,
        )
        _check_placement(integration, placement)
        check_spatial_dims(spatial_dims)
        check_positive_int("in_channels", in_channels)
        check_num_classes(num_classes)
        dropout = check_drop_rate("dropout", dropout)
        if dropout > 0 and spec.block != "basic":
            raise ValueError(f"dropout needs basic (WRN) units; {spec.name} has {spec.block} units, use dropout=0.0")
        self.spec = spec
        self.spatial_dims, self.in_channels, self.num_classes = spatial_dims, in_channels, num_classes
        self.drop_rate = check_drop_rate("drop_rate", drop_rate)
        self.attention, self.reduction, self.integration, self.placement = attention, reduction, integration, placement
        self.se_stages = None if se_stages is None else tuple(se_stages)
        self.dropout = dropout

        self.conv1 = make_conv(spatial_dims, in_channels, spec.stem_channels, 3)  # (N, in_channels, *S) -> (N, 16, *S)
        stages, channels = [], spec.stem_channels
        for stage, stage_attention in zip(spec.stages, attentions):
            units = []
            for index in range(stage.depth):
                stride = stage.stride if index == 0 else 1
                if spec.block == "basic":
                    unit = PreActBasic(
                        spatial_dims, channels, stage, stride=stride, attention=stage_attention, dropout=dropout
                    )
                else:
                    unit = PreActBottleneck(spatial_dims, channels, stage, stride=stride, attention=stage_attention)
                units.append(unit)
                channels = stage.out_channels
            stages.append(nn.Sequential(*units))
        self.stages = nn.ModuleList(stages)
        self.bn = norm_nd(spatial_dims)(channels)  # the final pre-activation
        self.act = nn.ReLU()
        self.stage_channels = tuple(stage.out_channels for stage in spec.stages)
        self.num_features = channels
        self.fc = nn.Linear(channels, num_classes) if num_classes > 0 else nn.Identity()

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1(x)  # (N, in_channels, *S) -> (N, 16, *S)

    def stage_modules(self) -> list[nn.Module]:
        return list(self.stages)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward_features(x)  # (N, C, *S')
        return self.act(self.bn(x))  # the last unit's sum is pre-activated once more before pooling

    def num_params_from_spec(self) -> int:
        """The parameter count computed from the spec table and the build options (see :func:`count_params`)."""
        return count_params(
            self.spec,
            spatial_dims=self.spatial_dims,
            in_channels=self.in_channels,
            num_classes=self.num_classes,
            attention=self.attention,
            reduction=self.reduction,
            integration=self.integration,
            se_stages=self.se_stages,
        )


def count_params(
    spec: PreActSpec,
    *,
    spatial_dims: int = 2,
    in_channels: int = 3,
    num_classes: int = 10,
    attention: str | None = None,
    reduction: int | tuple[int, ...] = 16,
    integration: str = "standard",
    se_stages: Iterable[int] | None = None,
) -> int:
    """The number of parameters of ``PreActResNet(spec, ...)`` from the table alone (no model is built).

    Convolutions have ``k^d * C_in * C_out`` weights and no bias, BN layers ``2 * C``, the classifier
    ``C * K + K``. Each unit: BN on its input, then its convolutions with a BN before each but the first,
    plus a 1x1 projection where the shape changes.
    """
    attentions = block_attention(
        attention, num_stages=len(spec.stages), reduction=reduction, se_stages=se_stages, integration=integration
    )
    d = spatial_dims
    total, channels = 3**d * in_channels * spec.stem_channels, spec.stem_channels
    for stage, stage_attention in zip(spec.stages, attentions):
        for index in range(stage.depth):
            stride = stage.stride if index == 0 else 1
            width, out = stage.width, stage.out_channels
            total += 2 * channels  # bn1
            if spec.block == "basic":
                total += 3**d * channels * width + 2 * width + 3**d * width * out
            else:
                total += channels * width + 2 * width + 3**d * width * width + 2 * width + width * out
            if stride != 1 or channels != out:
                total += channels * out
            if stage_attention is not None:
                se_channels = stage_attention.channels_at(in_channels=channels, inner_channels=width, out_channels=out)
                total += attention_params(stage_attention, se_channels, d)
            channels = out
    total += 2 * channels  # the final BN
    return total + (channels * num_classes + num_classes if num_classes > 0 else 0)


_ARGS_DOC = """
Args:
    spatial_dims: rank of the input: 1 ``(N, C, L)``, 2 ``(N, C, H, W)`` (32x32 CIFAR images), 3 ``(N, C, D, H, W)``.
    in_channels: input channels.
    num_classes: classifier outputs (10 for CIFAR-10, 100 for CIFAR-100); 0 for none.
    attention: attention layer on every unit of ``se_stages`` (``"se"``), ``None`` for the plain network.
    reduction: the SE reduction ratio r (the paper: 16), one for all three stages or one per stage.
    integration: ``"standard"``, ``"pre"``, ``"post"``, ``"identity"`` or ``"inside"`` (see :mod:`senet.models.preact`).
    placement: ``"after_act"`` or ``"before_act"``, only for ``"pre"`` and ``"inside"``.
    se_stages: 0-based indices of the stages with attention, ``None`` for all three.
    drop_rate: dropout before the classifier.
"""


def _build(
    spec: PreActSpec,
    *,
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    attention: str | None,
    reduction: int | tuple[int, ...],
    integration: Integration,
    placement: Placement,
    se_stages: tuple[int, ...] | None,
    dropout: float,
    drop_rate: float,
) -> PreActResNet:
    return PreActResNet(
        spec,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        attention=attention,
        reduction=reduction,
        integration=integration,
        placement=placement,
        se_stages=se_stages,
        dropout=dropout,
        drop_rate=drop_rate,
    )


@register_model
def preact_resnet164_cifar(
    *,
    spatial_dims: int = 2,
    in_channels: int = 3,
    num_classes: int = 10,
    attention: str | None = None,
    reduction: int | tuple[int, ...] = 16,
    integration: Integration = "standard",
    placement: Placement = "after_act",
    se_stages: tuple[int, ...] | None = None,
    drop_rate: float = 0.0,
) -> PreActResNet:
    """Pre-activation ResNet-164 for CIFAR (He et al. 2016, identity mappings), 1,703,258 parameters at 10 classes."""
    return _build(
        PREACT_RESNET164,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        attention=attention,
        reduction=reduction,
        integration=integration,
        placement=placement,
        se_stages=se_stages,
        dropout=0.0,
        drop_rate=drop_rate,
    )


@register_model
def sepreact_resnet164_cifar(
    *,
    spatial_dims: int = 2,
    in_channels: int = 3,
    num_classes: int = 10,
    attention: str | None = "se",
    reduction: int | tuple[int, ...] = 16,
    integration: Integration = "standard",
    placement: Placement = "after_act",
    se_stages: tuple[int, ...] | None = None,
    drop_rate: float = 0.0,
) -> PreActResNet:
    """SE-ResNet-164 (SENet paper, Tables 4 and 5): pre-activation ResNet-164 with SE (r = 16) on every unit."""
    return _build(
        PREACT_RESNET164,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        attention=attention,
        reduction=reduction,
        integration=integration,
        placement=placement,
        se_stages=se_stages,
        dropout=0.0,
        drop_rate=drop_rate,
    )


@register_model
def wrn16_8_cifar(
    *,
    spatial_dims: int = 2,
    in_channels: int = 3,
    num_classes: int = 10,
    attention: str | None = None,
    reduction: int | tuple[int, ...] = 16,
    integration: Integration = "standard",
    placement: Placement = "after_act",
    se_stages: tuple[int, ...] | None = None,
    dropout: float = 0.0,
    drop_rate: float = 0.0,
) -> PreActResNet:
    """Wide ResNet-16-8 for CIFAR (Zagoruyko & Komodakis 2016), 10,961,370 parameters at 10 classes.
    ``dropout``: between the two 3x3 convolutions of each unit (the WRN paper uses 0.3 on CIFAR)."""
    return _build(
        WRN16_8,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        attention=attention,
        reduction=reduction,
        integration=integration,
        placement=placement,
        se_stages=se_stages,
        dropout=dropout,
        drop_rate=drop_rate,
    )


@register_model
def sewrn16_8_cifar(
    *,
    spatial_dims: int = 2,
    in_channels: int = 3,
    num_classes: int = 10,
    attention: str | None = "se",
    reduction: int | tuple[int, ...] = 16,
    integration: Integration = "standard",
    placement: Placement = "after_act",
    se_stages: tuple[int, ...] | None = None,
    dropout: float = 0.0,
    drop_rate: float = 0.0,
) -> PreActResNet:
    """SE-WRN-16-8 (SENet paper, Tables 4 and 5): WRN-16-8 with SE (r = 16) on every unit. ``dropout`` as
    :func:`wrn16_8_cifar`."""
    return _build(
        WRN16_8,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        attention=attention,
        reduction=reduction,
        integration=integration,
        placement=placement,
        se_stages=se_stages,
        dropout=dropout,
        drop_rate=drop_rate,
    )


for _builder in (preact_resnet164_cifar, sepreact_resnet164_cifar, wrn16_8_cifar, sewrn16_8_cifar):
    _builder.__doc__ = f"{_builder.__doc__}\n{_ARGS_DOC}"
