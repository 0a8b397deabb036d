"""Spec tables of the ResNet family, written like Table 1 of the SENet paper (Hu et al., 2018).

A network is an :class:`ArchSpec`: a stem (:class:`StemSpec`), then stages (:class:`StageSpec`, one row
of Table 1 each), then global average pooling and a fully connected classifier. Variants differ by rows
and fields, not by subclasses. The SE block itself is not part of the table: the same spec builds the
plain network (``attention=None``) and the SE network (``attention="se"``), so ResNet-50 and SE-ResNet-50
share :data:`RESNET50`, exactly as the paper's Table 1 lists them side by side.

Output sizes in the comments are for a 224x224 input (32x32 for the CIFAR tables).

Where each variant comes from:

- ``RESNET*``, ``RESNEXT*``: He et al. 2016 / Xie et al. 2017, torchvision's "v1.5" stride placement
  (the stride of a bottleneck is on its 3x3 convolution), as torchvision and timm ``resnet*.py``.
- ``RESNEXT26D_32X4D``: the "D" variant of Bag of Tricks (He et al. 2019): a deep 3x3 stem of widths
  32-32-64 and an average-pooled projection shortcut, as timm's ``seresnext26d_32x4d``.
- ``SENET154``: the paper's winning model (Table 1, right column): deep 3x3 stem 64-64-128, bottleneck
  widths 2x/4x the ResNet ones with 64 groups, 3x3 projection convolutions in stages 2-4, dropout 0.2.
- ``LEGACY_*``: the Caffe-style models of the original SENet release as ported by Cadene (timm's
  ``legacy_*``, MONAI's SENet family): max pool with ``ceil_mode=True`` and no padding, dropout 0.2,
  in SE-ResNet-50/101/152 the stride on the first 1x1 convolution, and in Cadene's SE-ResNet-18/34 basic
  block a ReLU at the end of the residual branch (before SE).
- ``CIFAR_RESNET*``: He et al. 2016, Sec. 4.2: a 3x3 stem of 16 channels, three stages of 2n 3x3 layers of
  16/32/64 channels on 32x32 inputs (depth 6n + 2), and the parameter-free option-A shortcut (strided
  identity padded with zero channels), so ResNet-20 has 0.27M parameters as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, TypeAlias

from senet.layers.checks import check_choice, check_positive_int

__all__ = [
    "Block",
    "StemPool",
    "Shortcut",
    "StrideOn",
    "StemSpec",
    "StageSpec",
    "ArchSpec",
    "RESNET18",
    "RESNET34",
    "RESNET50",
    "RESNET101",
    "RESNET152",
    "RESNEXT50_32X4D",
    "RESNEXT101_32X4D",
    "RESNEXT101_32X8D",
    "RESNEXT26D_32X4D",
    "SENET154",
    "LEGACY_SENET154",
    "LEGACY_SERESNET18",
    "LEGACY_SERESNET34",
    "LEGACY_SERESNET50",
    "LEGACY_SERESNET101",
    "LEGACY_SERESNET152",
    "LEGACY_SERESNEXT26_32X4D",
    "LEGACY_SERESNEXT50_32X4D",
    "LEGACY_SERESNEXT101_32X4D",
    "cifar_resnet",
    "CIFAR_RESNET20",
    "CIFAR_RESNET32",
    "CIFAR_RESNET44",
    "CIFAR_RESNET56",
    "CIFAR_RESNET110",
]

Block: TypeAlias = Literal["basic", "bottleneck"]
StemPool: TypeAlias = Literal["max", "max_ceil", "none"]
Shortcut: TypeAlias = Literal["conv", "avg", "pad"]
StrideOn: TypeAlias = Literal["3x3", "1x1"]

BLOCKS: tuple[str, ...] = ("basic", "bottleneck")
STEM_POOLS: tuple[str, ...] = ("max", "max_ceil", "none")
SHORTCUTS: tuple[str, ...] = ("conv", "avg", "pad")
STRIDES_ON: tuple[str, ...] = ("3x3", "1x1")


@dataclass(frozen=True)
class StemSpec:
    """The stem (Table 1, "conv1" and the max pool of "conv2_x").

    Args:
        widths: output channels of each stem convolution: ``(64,)`` is one 7x7 convolution, ``(32, 32, 64)``
            a deep stem of three 3x3 convolutions (each followed by BN and ReLU).
        kernel_size: kernel size of every stem convolution (7 or 3).
        stride: stride of the first stem convolution (2 on ImageNet, 1 on CIFAR).
        pool: ``"max"`` 3x3 max pool, stride 2, padding 1 (torchvision, timm); ``"max_ceil"`` the same pool
            without padding and with ``ceil_mode=True`` (Caffe, Cadene, MONAI); ``"none"`` (CIFAR).
    """

    widths: tuple[int, ...]
    kernel_size: int
    stride: int
    pool: StemPool

    def __post_init__(self) -> None:
        if not isinstance(self.widths, tuple) or not self.widths:
            raise ValueError(f"StemSpec.widths must be a non-empty tuple of ints, got {self.widths!r}")
        for width in self.widths:
            check_positive_int("StemSpec.widths[i]", width)
        check_positive_int("StemSpec.kernel_size", self.kernel_size)
        check_positive_int("StemSpec.stride", self.stride)
        check_choice("StemSpec.pool", self.pool, STEM_POOLS)

    @property
    def out_channels(self) -> int:
        return self.widths[-1]


@dataclass(frozen=True)
class StageSpec:
    """One row of Table 1: ``depth`` residual blocks.

    Args:
        name: the paper's row name (``"conv2_x"``).
        depth: number of blocks.
        width: channels of the 3x3 convolution (in a basic block: of its first 3x3 convolution).
        out_channels: channels of each block's output (the last convolution).
        stride: stride of the first block (the others have stride 1).
        groups: cardinality C of the grouped 3x3 convolution (ResNeXt), 1 otherwise.
        first_width: channels of a bottleneck's first 1x1 convolution when they differ from ``width``
            (SENet-154 halves them); ``None`` means ``width``. Basic blocks have no 1x1 convolution.
    """

    name: str
    depth: int
    width: int
    out_channels: int
    stride: int
    groups: int = 1
    first_width: int | None = None

    def __post_init__(self) -> None:
        for field in ("depth", "width", "out_channels", "stride", "groups"):
            check_positive_int(f"StageSpec.{field}", getattr(self, field))
        if self.first_width is not None:
            check_positive_int("StageSpec.first_width", self.first_width)
        if self.width % self.groups:
            raise ValueError(f"StageSpec.width={self.width} must be divisible by groups={self.groups} ({self.name})")

    @property
    def conv1_width(self) -> int:
        """Channels of a bottleneck's first 1x1 convolution."""
        return self.width if self.first_width is None else self.first_width


@dataclass(frozen=True)
class ArchSpec:
    """A residual network: stem, stages, global average pool, fully connected classifier.

    Args:
        name: the paper's name of the architecture (``"ResNet-50"``).
        block: ``"basic"`` (two 3x3 convolutions) or ``"bottleneck"`` (1x1, 3x3, 1x1).
        stem: the stem.
        stages: the rows of Table 1, first to last.
        stride_on: where a strided bottleneck puts its stride: ``"3x3"`` (torchvision "v1.5", timm) or
            ``"1x1"`` (the first 1x1 convolution, Caffe style: Cadene/timm ``legacy_seresnet*``, MONAI).
        shortcut: the projection shortcut where shapes change: ``"conv"`` 1x1 convolution + BN (option B);
            ``"avg"`` average pool then 1x1 convolution + BN (ResNet-D); ``"pad"`` parameter-free strided
            identity with zero-padded channels (option A, the CIFAR ResNets).
        shortcut_kernel: kernel size of a strided ``"conv"`` projection (3 in SENet-154, else 1).
        branch_act: a ReLU at the end of the residual branch, before SE and the addition (only Cadene's
            SE-ResNet-18/34 basic block, ``legacy_seresnet18/34``).
        drop_rate: dropout probability before the classifier (0.2 in the SENet release).
    """

    name: str
    block: Block
    stem: StemSpec
    stages: tuple[StageSpec, ...]
    stride_on: StrideOn = "3x3"
    shortcut: Shortcut = "conv"
    shortcut_kernel: int = 1
    branch_act: bool = False
    drop_rate: float = 0.0

    def __post_init__(self) -> None:
        check_choice("ArchSpec.block", self.block, BLOCKS)
        check_choice("ArchSpec.stride_on", self.stride_on, STRIDES_ON)
        check_choice("ArchSpec.shortcut", self.shortcut, SHORTCUTS)
        check_positive_int("ArchSpec.shortcut_kernel", self.shortcut_kernel)
        if not isinstance(self.stages, tuple) or not self.stages:
            raise ValueError(f"ArchSpec.stages must be a non-empty tuple of StageSpec, got {self.stages!r}")
        if not 0.0 <= self.drop_rate < 1.0:
            raise ValueError(f"ArchSpec.drop_rate must be in [0, 1), got {self.drop_rate}")
        if self.block == "basic" and any(s.first_width is not None for s in self.stages):
            raise ValueError(f"ArchSpec {self.name}: basic blocks have no first 1x1 convolution (first_width)")
        if self.shortcut == "pad":
            channels = self.stem.out_channels
            for stage in self.stages:
                if stage.out_channels < channels:
                    raise ValueError(f"ArchSpec {self.name}: the 'pad' shortcut cannot reduce channels ({stage.name})")
                channels = stage.out_channels

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(stage.depth for stage in self.stages)

    def with_depths(self, name: str, depths: tuple[int, ...]) -> ArchSpec:
        """The same table with other block counts per stage (ResNet-50 -> ResNet-101: (3, 4, 23, 3))."""
        if len(depths) != len(self.stages):
            raise ValueError(f"depths must have {len(self.stages)} entries, got {depths!r}")
        return replace(self, name=name, stages=tuple(replace(s, depth=d) for s, d in zip(self.stages, depths)))


# Stems. Output sizes for a 224x224 input.
STEM_7X7 = StemSpec(widths=(64,), kernel_size=7, stride=2, pool="max")  # 112x112 -> pool 56x56
STEM_DEEP_32 = StemSpec(widths=(32, 32, 64), kernel_size=3, stride=2, pool="max")  # 112x112 -> 56x56
STEM_DEEP_64 = StemSpec(widths=(64, 64, 128), kernel_size=3, stride=2, pool="max")  # 112x112 -> 56x56
STEM_CIFAR = StemSpec(widths=(16,), kernel_size=3, stride=1, pool="none")  # 32x32

# ResNet-18/34 (basic blocks): two 3x3 convolutions per block.
RESNET18 = ArchSpec(
    name="ResNet-18",
    block="basic",
    stem=STEM_7X7,
    stages=(
        StageSpec("conv2_x", depth=2, width=64, out_channels=64, stride=1),  # 56x56
        StageSpec("conv3_x", depth=2, width=128, out_channels=128, stride=2),  # 28x28
        StageSpec("conv4_x", depth=2, width=256, out_channels=256, stride=2),  # 14x14
        StageSpec("conv5_x", depth=2, width=512, out_channels=512, stride=2),  # 7x7
    ),
)
RESNET34 = RESNET18.with_depths("ResNet-34", (3, 4, 6, 3))

# Table 1, left column: ResNet-50 / SE-ResNet-50, [1x1, 64; 3x3, 64; 1x1, 256] x 3, ...
RESNET50 = ArchSpec(
    name="ResNet-50",
    block="bottleneck",
    stem=STEM_7X7,
    stages=(
        StageSpec("conv2_x", depth=3, width=64, out_channels=256, stride=1),  # 56x56
        StageSpec("conv3_x", depth=4, width=128, out_channels=512, stride=2),  # 28x28
        StageSpec("conv4_x", depth=6, width=256, out_channels=1024, stride=2),  # 14x14
        StageSpec("conv5_x", depth=3, width=512, out_channels=2048, stride=2),  # 7x7
    ),
)
RESNET101 = RESNET50.with_depths("ResNet-101", (3, 4, 23, 3))
RESNET152 = RESNET50.with_depths("ResNet-152", (3, 8, 36, 3))

# Table 1, middle column: ResNeXt-50 (32x4d) / SE-ResNeXt-50, [1x1, 128; 3x3, 128, C=32; 1x1, 256] x 3, ...
RESNEXT50_32X4D = ArchSpec(
    name="ResNeXt-50 (32x4d)",
    block="bottleneck",
    stem=STEM_7X7,
    stages=(
        StageSpec("conv2_x", depth=3, width=128, out_channels=256, stride=1, groups=32),  # 56x56
        StageSpec("conv3_x", depth=4, width=256, out_channels=512, stride=2, groups=32),  # 28x28
        StageSpec("conv4_x", depth=6, width=512, out_channels=1024, stride=2, groups=32),  # 14x14
        StageSpec("conv5_x", depth=3, width=1024, out_channels=2048, stride=2, groups=32),  # 7x7
    ),
)
RESNEXT101_32X4D = RESNEXT50_32X4D.with_depths("ResNeXt-101 (32x4d)", (3, 4, 23, 3))
RESNEXT101_32X8D = ArchSpec(
    name="ResNeXt-101 (32x8d)",
    block="bottleneck",
    stem=STEM_7X7,
    stages=(
        StageSpec("conv2_x", depth=3, width=256, out_channels=256, stride=1, groups=32),  # 56x56
        StageSpec("conv3_x", depth=4, width=512, out_channels=512, stride=2, groups=32),  # 28x28
        StageSpec("conv4_x", depth=23, width=1024, out_channels=1024, stride=2, groups=32),  # 14x14
        StageSpec("conv5_x", depth=3, width=2048, out_channels=2048, stride=2, groups=32),  # 7x7
    ),
)

# ResNeXt-26-D (32x4d): deep 32-32-64 stem, average-pooled projection shortcut (Bag of Tricks "D").
RESNEXT26D_32X4D = replace(
    RESNEXT50_32X4D.with_depths("ResNeXt-26-D (32x4d)", (2, 2, 2, 2)), stem=STEM_DEEP_32, shortcut="avg"
)

# Table 1, right column: SENet-154, [1x1, 128; 3x3, 256, C=64; 1x1, 256] x 3, ...
SENET154 = ArchSpec(
    name="SENet-154",
    block="bottleneck",
    stem=STEM_DEEP_64,
    stages=(
        StageSpec("conv2_x", depth=3, width=256, out_channels=256, stride=1, groups=64, first_width=128),  # 56x56
        StageSpec("conv3_x", depth=8, width=512, out_channels=512, stride=2, groups=64, first_width=256),  # 28x28
        StageSpec("conv4_x", depth=36, width=1024, out_channels=1024, stride=2, groups=64, first_width=512),  # 14x14
        StageSpec("conv5_x", depth=3, width=2048, out_channels=2048, stride=2, groups=64, first_width=1024),  # 7x7
    ),
    shortcut_kernel=3,
    drop_rate=0.2,
)

# The Caffe-style SENet release (Cadene's port; timm legacy_*, MONAI SENet): ceil-mode max pool, dropout 0.2.
_CAFFE_STEM_7X7 = replace(STEM_7X7, pool="max_ceil")
_CAFFE = {"stem": _CAFFE_STEM_7X7, "drop_rate": 0.2}
LEGACY_SENET154 = replace(SENET154, name="SENet-154 (Caffe)", stem=replace(STEM_DEEP_64, pool="max_ceil"))
LEGACY_SERESNET18 = replace(RESNET18, name="ResNet-18 (Caffe)", branch_act=True, **_CAFFE)
LEGACY_SERESNET34 = replace(RESNET34, name="ResNet-34 (Caffe)", branch_act=True, **_CAFFE)
LEGACY_SERESNET50 = replace(RESNET50, name="ResNet-50 (Caffe)", stride_on="1x1", **_CAFFE)
LEGACY_SERESNET101 = replace(RESNET101, name="ResNet-101 (Caffe)", stride_on="1x1", **_CAFFE)
LEGACY_SERESNET152 = replace(RESNET152, name="ResNet-152 (Caffe)", stride_on="1x1", **_CAFFE)
LEGACY_SERESNEXT26_32X4D = replace(RESNEXT50_32X4D.with_depths("ResNeXt-26 (32x4d, Caffe)", (2, 2, 2, 2)), **_CAFFE)
LEGACY_SERESNEXT50_32X4D = replace(RESNEXT50_32X4D, name="ResNeXt-50 (32x4d, Caffe)", **_CAFFE)
LEGACY_SERESNEXT101_32X4D = replace(RESNEXT101_32X4D, name="ResNeXt-101 (32x4d, Caffe)", **_CAFFE)


def cifar_resnet(depth: int) -> ArchSpec:
    """The CIFAR ResNet of ``depth = 6n + 2`` layers (He et al. 2016, Sec. 4.2): n basic blocks per stage."""
    check_positive_int("depth", depth)
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110, ...), got {depth}")
    n = (depth - 2) // 6
    return ArchSpec(
        name=f"ResNet-{depth} (CIFAR)",
        block="basic",
        stem=STEM_CIFAR,
        stages=(
            StageSpec("conv2_x", depth=n, width=16, out_channels=16, stride=1),  # 32x32
            StageSpec("conv3_x", depth=n, width=32, out_channels=32, stride=2),  # 16x16
            StageSpec("conv4_x", depth=n, width=64, out_channels=64, stride=2),  # 8x8
        ),
        shortcut="pad",
    )


CIFAR_RESNET20 = cifar_resnet(20)  # n = 3
CIFAR_RESNET32 = cifar_resnet(32)  # n = 5
CIFAR_RESNET44 = cifar_resnet(44)  # n = 7
CIFAR_RESNET56 = cifar_resnet(56)  # n = 9
CIFAR_RESNET110 = cifar_resnet(110)  # n = 18
