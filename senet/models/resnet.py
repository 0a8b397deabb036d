"""ResNet, ResNeXt, SE-ResNet, SE-ResNeXt, SENet-154 and the CIFAR ResNets: one code path for all of them.

``ResNet(spec, ...)`` builds any :class:`~senet.models.specs.ArchSpec` for 1-, 2- or 3-D inputs, plain
(``attention=None``) or with an attention layer on every block of the chosen stages, placed by one of the
paper's integration strategies (:mod:`senet.models.integration`). The builders at the bottom register
timm's names.

Module and parameter names follow timm's ``timm/models/resnet.py`` (and torchvision's) where the
architecture is the same, so that their weights map by renaming only the SE keys and reshaping them:

- stem: ``conv1`` (one conv; a deep stem is ``conv1.0`` conv, ``conv1.1`` BN, ``conv1.3`` conv, ``conv1.4`` BN,
  ``conv1.6`` conv), ``bn1``, ``act1``, ``maxpool`` (``nn.Identity`` for CIFAR);
- stages: ``layer1`` ... ``layer4`` (CIFAR: ``layer1`` ... ``layer3``), blocks ``layerS.B``;
- block: ``conv1, bn1, conv2, bn2[, conv3, bn3]``, ``se.fc1``/``se.fc2`` (``nn.Linear`` weights ``(h, C)`` and
  ``(C, h)``; timm stores 1x1 convolutions ``(h, C, 1, 1)``), ``downsample.0``/``.1`` (conv, BN; ResNet-D:
  ``.0`` average pool, ``.1`` conv, ``.2`` BN);
- classifier: ``fc``.

Renames for the other layouts (not done here): timm ``legacy_*``/Cadene use ``layer0.conv1`` (deep stem:
``layer0.conv1/bn1/conv2/bn2/conv3/bn3``) for ``conv1``/``bn1``, ``se_module`` for ``se`` and ``last_linear``
for ``fc``; MONAI uses ``convK.conv``/``convK.adn.N``, ``se_layer.fc.0``/``fc.2`` and ``project``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn as nn

from senet.layers.checks import check_positive_int
from senet.layers.nd import check_spatial_dims, conv_nd, max_pool_nd, norm_nd
from senet.models.base import ClassifierModel
from senet.models.blocks import BasicBlock, Bottleneck, make_shortcut
from senet.models.conv_block import attention_params, check_drop_rate, check_num_classes
from senet.models.integration import BlockAttention, Integration, Placement, block_attention
from senet.models.registry import register_model
from senet.models.specs import (
    CIFAR_RESNET20,
    CIFAR_RESNET32,
    CIFAR_RESNET44,
    CIFAR_RESNET56,
    CIFAR_RESNET110,
    LEGACY_SENET154,
    LEGACY_SERESNET18,
    LEGACY_SERESNET34,
    LEGACY_SERESNET50,
    LEGACY_SERESNET101,
    LEGACY_SERESNET152,
    LEGACY_SERESNEXT26_32X4D,
    LEGACY_SERESNEXT50_32X4D,
    LEGACY_SERESNEXT101_32X4D,
    RESNET18,
    RESNET34,
    RESNET50,
    RESNET101,
    RESNET152,
    RESNEXT26D_32X4D,
    RESNEXT50_32X4D,
    RESNEXT101_32X4D,
    RESNEXT101_32X8D,
    SENET154,
    ArchSpec,
    StageSpec,
    StemSpec,
)

__all__ = ["ResNet", "count_params"]


def _stem_pool(stem: StemSpec, spatial_dims: int) -> nn.Module:
    pools = {
        "max": lambda: max_pool_nd(spatial_dims)(kernel_size=3, stride=2, padding=1),
        "max_ceil": lambda: max_pool_nd(spatial_dims)(kernel_size=3, stride=2, ceil_mode=True),
        "none": nn.Identity,
    }
    return pools[stem.pool]()


def _stem_conv(stem: StemSpec, in_channels: int, spatial_dims: int) -> nn.Module:
    """One kxk convolution, or a deep stem: (conv, BN, ReLU) for every width but the last, then a conv."""
    conv, norm = conv_nd(spatial_dims), norm_nd(spatial_dims)
    k = stem.kernel_size
    if len(stem.widths) == 1:
        return conv(in_channels, stem.widths[0], k, stride=stem.stride, padding=k // 2, bias=False)
    layers: list[nn.Module] = []
    channels = in_channels
    for i, width in enumerate(stem.widths):
        layers.append(conv(channels, width, k, stride=stem.stride if i == 0 else 1, padding=k // 2, bias=False))
        if i < len(stem.widths) - 1:
            layers += [norm(width), nn.ReLU(inplace=True)]
        channels = width
    return nn.Sequential(*layers)


def _check_options(spatial_dims: int, in_channels: int, num_classes: int, integration: str, placement: str) -> None:
    check_spatial_dims(spatial_dims)
    check_positive_int("in_channels", in_channels)
    check_num_classes(num_classes)
    if placement != "after_act" and integration not in ("post", "inside"):
        raise ValueError(
            f"placement={placement!r} needs integration 'post' or 'inside' (the only positions next to an "
            f"activation); integration={integration!r} has no choice, use placement='after_act'"
        )


class ResNet(ClassifierModel):
    """A residual network from an :class:`ArchSpec`: stem -> stages -> global average pool -> dropout -> ``fc``.

    Args (SENet paper symbols in brackets):
        spec: the architecture table (:mod:`senet.models.specs`).
        spatial_dims: rank of the input: 1 ``(N, C, L)``, 2 ``(N, C, H, W)``, 3 ``(N, C, D, H, W)``.
        in_channels: input channels.
        num_classes: classifier outputs; 0 leaves ``fc`` an identity (the model returns pooled features).
        attention: attention layer on each block, a key of ``senet.layers.ATTENTION_LAYERS``; ``None``: plain.
        reduction: the reduction ratio [r], one for all stages or one per stage.
        integration: where the block goes [Fig. 5]: ``"standard"``, ``"pre"``, ``"post"``, ``"identity"``,
            ``"inside"`` (:mod:`senet.models.integration`).
        placement: for ``"post"`` and ``"inside"``: SE ``"after_act"`` (default) or ``"before_act"`` the
            adjacent ReLU; any other integration accepts only ``"after_act"``.
        se_stages: 0-based indices of the stages with attention, ``None`` for all.
        se_divisor: hidden width [C/r] rounding: 1 the paper's floor, 8 timm's multiple of 8 (at least 8).
        drop_rate: dropout before ``fc``; ``None`` takes the spec's.
    """

    def __init__(
        self,
        spec: ArchSpec,
        *,
        spatial_dims: int = 2,
        in_channels: int = 3,
        num_classes: int = 1000,
        attention: str | None = None,
        reduction: int | tuple[int, ...] = 16,
        integration: Integration = "standard",
        placement: Placement = "after_act",
        se_stages: Iterable[int] | None = None,
        se_divisor: int = 1,
        drop_rate: float | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(spec, ArchSpec):
            raise TypeError(f"spec must be an ArchSpec, got {type(spec).__name__}")
        attentions = block_attention(
            attention,
            num_stages=len(spec.stages),
            reduction=reduction,
            se_stages=se_stages,
            integration=integration,
            placement=placement,
            divisor=se_divisor,
        )
        _check_options(spatial_dims, in_channels, num_classes, integration, placement)
        drop_rate = check_drop_rate("drop_rate", spec.drop_rate if drop_rate is None else drop_rate)
        self.spec = spec
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.attention, self.reduction, self.integration, self.placement = attention, reduction, integration, placement
        self.se_stages = None if se_stages is None else tuple(se_stages)
        self.se_divisor = se_divisor

        # Stem: (N, in_channels, *S) -> (N, C0, *S/4) on ImageNet, (N, 16, *S) on CIFAR.
        self.conv1 = _stem_conv(spec.stem, in_channels, spatial_dims)
        self.bn1 = norm_nd(spatial_dims)(spec.stem.out_channels)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = _stem_pool(spec.stem, spatial_dims)

        channels = spec.stem.out_channels
        self.stage_names: tuple[str, ...] = tuple(f"layer{i + 1}" for i in range(len(spec.stages)))
        for name, stage, stage_attention in zip(self.stage_names, spec.stages, attentions):
            blocks = []
            for index in range(stage.depth):
                stride = stage.stride if index == 0 else 1
                blocks.append(self._make_block(channels, stage, stride, stage_attention))
                channels = stage.out_channels
            self.add_module(name, nn.Sequential(*blocks))
        self.stage_channels = tuple(stage.out_channels for stage in spec.stages)
        self.num_features = channels
        self.fc = nn.Linear(channels, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _make_block(
        self, in_channels: int, stage: StageSpec, stride: int, attention: BlockAttention | None
    ) -> BasicBlock | Bottleneck:
        spec, dims = self.spec, self.spatial_dims
        out = stage.out_channels
        downsample = make_shortcut(
            spec.shortcut, in_channels, out, stride=stride, kernel_size=spec.shortcut_kernel, spatial_dims=dims
        )
        if spec.block == "basic":
            return BasicBlock(
                in_channels,
                stage,
                stride=stride,
                spatial_dims=dims,
                downsample=downsample,
                attention=attention,
                branch_act=spec.branch_act,
            )
        return Bottleneck(
            in_channels,
            stage,
            stride=stride,
            spatial_dims=dims,
            downsample=downsample,
            attention=attention,
            stride_on=spec.stride_on,
        )

    def _init_weights(self) -> None:
        """He (fan-out) normal initialisation of every convolution, as torchvision and timm; BN gamma=1, beta=0.
        A model built on the meta device (for counting or sharding) has no values to initialise."""
        conv = conv_nd(self.spatial_dims)
        for module in self.modules():
            if isinstance(module, conv) and not module.weight.is_meta:
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))  # (N, in_channels, *S) -> (N, C0, *S/2)
        return self.maxpool(x)  # -> (N, C0, *S/4)

    def stage_modules(self) -> list[nn.Module]:
        return [getattr(self, name) for name in self.stage_names]

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
            se_divisor=self.se_divisor,
        )


def _conv_params(cin: int, cout: int, kernel_size: int, spatial_dims: int, groups: int = 1) -> int:
    return kernel_size**spatial_dims * (cin // groups) * cout


def count_params(
    spec: ArchSpec,
    *,
    spatial_dims: int = 2,
    in_channels: int = 3,
    num_classes: int = 1000,
    attention: str | None = None,
    reduction: int | tuple[int, ...] = 16,
    integration: str = "standard",
    se_stages: Iterable[int] | None = None,
    se_divisor: int = 1,
) -> int:
    """The number of parameters of ``ResNet(spec, ...)``, computed from the table alone (no model is built).

    Convolutions have ``k^d * C_in / groups * C_out`` weights and no bias, BN layers ``2 * C``, the
    classifier ``C * num_classes + num_classes``.
    """
    attentions = block_attention(
        attention,
        num_stages=len(spec.stages),
        reduction=reduction,
        se_stages=se_stages,
        integration=integration,
        divisor=se_divisor,
    )
    d = spatial_dims
    total, channels = 0, in_channels
    for width in spec.stem.widths:  # stem convolutions, each followed by BN
        total += _conv_params(channels, width, spec.stem.kernel_size, d) + 2 * width
        channels = width
    for stage, block_attention_ in zip(spec.stages, attentions):
        for index in range(stage.depth):
            stride = stage.stride if index == 0 else 1
            out, width = stage.out_channels, stage.width
            if spec.block == "basic":
                total += _conv_params(channels, width, 3, d) + 2 * width
                total += _conv_params(width, out, 3, d, stage.groups) + 2 * out
            else:
                first = stage.conv1_width
                total += _conv_params(channels, first, 1, d) + 2 * first
                total += _conv_params(first, width, 3, d, stage.groups) + 2 * width
                total += _conv_params(width, out, 1, d) + 2 * out
            if (stride > 1 or channels != out) and spec.shortcut != "pad":
                kernel = spec.shortcut_kernel if spec.shortcut == "conv" and stride > 1 else 1
                total += _conv_params(channels, out, kernel, d) + 2 * out
            if block_attention_ is not None:
                se_channels = block_attention_.channels_at(in_channels=channels, inner_channels=width, out_channels=out)
                total += attention_params(block_attention_, se_channels, d)
            channels = out
    return total + (channels * num_classes + num_classes if num_classes > 0 else 0)


# ---------------------------------------------------------------------------------------------------------
# Builders: timm's names, one line per model. Every builder has the same keyword-only, typed options; only
# the defaults (attention, se_divisor, num_classes, drop_rate) differ, as the table says.

_ARGS_DOC = """
Keyword arguments (SENet paper symbols in brackets):
    spatial_dims: rank of the input: 1 ``(N, C, L)`` (audio, text), 2 ``(N, C, H, W)``, 3 ``(N, C, D, H, W)``
        (video, volumes); the same table builds every rank.
    in_channels: input channels.
    num_classes: classifier outputs; 0 for none (the model returns the pooled features).
    attention: the attention layer of each block, a key of ``senet.layers.ATTENTION_LAYERS`` (``"se"``: the
        SE block); ``None`` gives the plain network with the same layer names.
    reduction: the reduction ratio [r]: one int, or one per stage.
    integration: where the block goes [Fig. 5, Table 14]: ``"standard"``, ``"pre"``, ``"post"``,
        ``"identity"`` or ``"inside"`` (after the 3x3 convolution; see ``senet.models.integration``).
    placement: ``"after_act"`` or ``"before_act"``: SE after or before the adjacent ReLU, for ``"post"``
        and ``"inside"`` only.
    se_stages: 0-based indices of the stages that carry attention (``(3,)``: only the last); ``None``: all.
    se_divisor: rounding of the hidden width [C/r]: 1 is the paper's ``floor(C / r)``, 8 is timm's
        ``SEModule`` rule (nearest multiple of 8, at least 8).
    drop_rate: dropout probability before the classifier.
"""


def _builder(
    name: str, spec: ArchSpec, summary: str, attention: str | None, se_divisor: int = 1, *, num_classes: int = 1000
) -> Callable[..., ResNet]:
    """Define and register the builder ``name`` of ``spec`` with these defaults (a row of the list below)."""
    default_attention, default_divisor, default_classes = attention, se_divisor, num_classes
    default_drop = spec.drop_rate

    def builder(
        *,
        spatial_dims: int = 2,
        in_channels: int = 3,
        num_classes: int = default_classes,
        attention: str | None = default_attention,
        reduction: int | tuple[int, ...] = 16,
        integration: Integration = "standard",
        placement: Placement = "after_act",
        se_stages: tuple[int, ...] | None = None,
        se_divisor: int = default_divisor,
        drop_rate: float = default_drop,
    ) -> ResNet:
        return ResNet(
            spec,
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            num_classes=num_classes,
            attention=attention,
            reduction=reduction,
            integration=integration,
            placement=placement,
            se_stages=se_stages,
            se_divisor=se_divisor,
            drop_rate=drop_rate,
        )

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = f"{summary}\n{_ARGS_DOC}"
    return register_model(builder)


# One row per registered model: name, table, summary (with the peer it matches), attention, SE rounding.
_b = _builder
_TIMM8 = "As timm's, with the SE hidden width rounded to a multiple of 8 (``se_divisor=8``)."
_CAFFE = "The Caffe-style SENet release (Cadene's port)."

resnet18 = _b("resnet18", RESNET18, "ResNet-18 (He et al. 2016), as torchvision's/timm's ``resnet18``.", None)
resnet34 = _b("resnet34", RESNET34, "ResNet-34, as torchvision's/timm's ``resnet34``.", None)
resnet50 = _b("resnet50", RESNET50, "ResNet-50 (SENet Table 1, left), as torchvision's/timm's.", None)
resnet101 = _b("resnet101", RESNET101, "ResNet-101, as torchvision's/timm's ``resnet101``.", None)
resnet152 = _b("resnet152", RESNET152, "ResNet-152, as torchvision's/timm's ``resnet152``.", None)
resnext50_32x4d = _b("resnext50_32x4d", RESNEXT50_32X4D, "ResNeXt-50 32x4d (Table 1, middle), as torchvision's.", None)
resnext101_32x4d = _b("resnext101_32x4d", RESNEXT101_32X4D, "ResNeXt-101 32x4d, as timm's.", None)
resnext101_32x8d = _b("resnext101_32x8d", RESNEXT101_32X8D, "ResNeXt-101 32x8d, as torchvision's/timm's.", None)

seresnet18 = _b("seresnet18", RESNET18, "SE-ResNet-18. " + _TIMM8, "se", 8)
seresnet34 = _b("seresnet34", RESNET34, "SE-ResNet-34. " + _TIMM8, "se", 8)
seresnet50 = _b("seresnet50", RESNET50, "SE-ResNet-50 (SENet Table 1, left). " + _TIMM8, "se", 8)
seresnet101 = _b("seresnet101", RESNET101, "SE-ResNet-101. " + _TIMM8, "se", 8)
seresnet152 = _b("seresnet152", RESNET152, "SE-ResNet-152. " + _TIMM8, "se", 8)
seresnext50_32x4d = _b("seresnext50_32x4d", RESNEXT50_32X4D, "SE-ResNeXt-50 32x4d (Table 1). " + _TIMM8, "se", 8)
seresnext101_32x4d = _b("seresnext101_32x4d", RESNEXT101_32X4D, "SE-ResNeXt-101 32x4d. " + _TIMM8, "se", 8)
seresnext101_32x8d = _b("seresnext101_32x8d", RESNEXT101_32X8D, "SE-ResNeXt-101 32x8d. " + _TIMM8, "se", 8)
seresnext26d_32x4d = _b(
    "seresnext26d_32x4d", RESNEXT26D_32X4D, "SE-ResNeXt-26-D 32x4d (deep stem, avg-pool shortcut), as timm's.", "se", 8
)
senet154 = _b("senet154", SENET154, "SENet-154 (Table 1, right) in timm's ResNet layout. " + _TIMM8, "se", 8)

legacy_seresnet18 = _b("legacy_seresnet18", LEGACY_SERESNET18, "SE-ResNet-18 (ReLU before SE). " + _CAFFE, "se")
legacy_seresnet34 = _b("legacy_seresnet34", LEGACY_SERESNET34, "SE-ResNet-34 (ReLU before SE). " + _CAFFE, "se")
legacy_seresnet50 = _b("legacy_seresnet50", LEGACY_SERESNET50, "SE-ResNet-50, MONAI's SEResNet50. " + _CAFFE, "se")
legacy_seresnet101 = _b("legacy_seresnet101", LEGACY_SERESNET101, "SE-ResNet-101, MONAI's SEResNet101. " + _CAFFE, "se")
legacy_seresnet152 = _b("legacy_seresnet152", LEGACY_SERESNET152, "SE-ResNet-152, MONAI's SEResNet152. " + _CAFFE, "se")
legacy_seresnext26_32x4d = _b("legacy_seresnext26_32x4d", LEGACY_SERESNEXT26_32X4D, "SE-ResNeXt-26. " + _CAFFE, "se")
legacy_seresnext50_32x4d = _b(
    "legacy_seresnext50_32x4d", LEGACY_SERESNEXT50_32X4D, "SE-ResNeXt-50, MONAI's SEResNext50. " + _CAFFE, "se"
)
legacy_seresnext101_32x4d = _b(
    "legacy_seresnext101_32x4d", LEGACY_SERESNEXT101_32X4D, "SE-ResNeXt-101, MONAI's SEResNext101. " + _CAFFE, "se"
)
legacy_senet154 = _b("legacy_senet154", LEGACY_SENET154, "SENet-154 (the winner), MONAI's SENet154. " + _CAFFE, "se")

# CIFAR: 32x32 inputs, 10 classes by default, depth 6n + 2, option-A shortcuts (specs.cifar_resnet).
_CIFAR = "for CIFAR (He et al. 2016, Sec. 4.2; option-A shortcuts)."
resnet20_cifar = _b("resnet20_cifar", CIFAR_RESNET20, "ResNet-20 " + _CIFAR, None, num_classes=10)
resnet32_cifar = _b("resnet32_cifar", CIFAR_RESNET32, "ResNet-32 " + _CIFAR, None, num_classes=10)
resnet44_cifar = _b("resnet44_cifar", CIFAR_RESNET44, "ResNet-44 " + _CIFAR, None, num_classes=10)
resnet56_cifar = _b("resnet56_cifar", CIFAR_RESNET56, "ResNet-56 " + _CIFAR, None, num_classes=10)
resnet110_cifar = _b("resnet110_cifar", CIFAR_RESNET110, "ResNet-110 (SENet Table 4) " + _CIFAR, None, num_classes=10)
seresnet20_cifar = _b("seresnet20_cifar", CIFAR_RESNET20, "SE-ResNet-20 " + _CIFAR, "se", num_classes=10)
seresnet32_cifar = _b("seresnet32_cifar", CIFAR_RESNET32, "SE-ResNet-32 " + _CIFAR, "se", num_classes=10)
seresnet44_cifar = _b("seresnet44_cifar", CIFAR_RESNET44, "SE-ResNet-44 " + _CIFAR, "se", num_classes=10)
seresnet56_cifar = _b("seresnet56_cifar", CIFAR_RESNET56, "SE-ResNet-56 " + _CIFAR, "se", num_classes=10)
seresnet110_cifar = _b("seresnet110_cifar", CIFAR_RESNET110, "SE-ResNet-110 (Table 4) " + _CIFAR, "se", num_classes=10)
