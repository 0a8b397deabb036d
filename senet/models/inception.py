"""GoogLeNet (Inception v1) with BN, plain or with SE-Inception modules (SENet paper, Fig. 2), any rank.

For non-residual networks the SENet paper takes the transformation F_tr to be an entire Inception
module: the SE-Inception module gates the concatenated output of the module's four branches,
``Y = SE(concat(b1(x), b2(x), b3(x), b4(x)))`` (:class:`Inception`, attribute ``se``). The paper's own
SE-Inception network is SE-BN-Inception (Inception v2); this is the Inception v1 layout of Szegedy et
al. (2015, Table 1) as torchvision's ``googlenet`` builds it, so the plain model matches it exactly:

- every convolution is followed by BN (eps 0.001) and ReLU, the max pools use ``ceil_mode=True``;
- the "5x5" branch uses a 3x3 convolution (``branch3_kernel=3``: torchvision's "known bug", kept for
  its weights; the paper's is 5);
- no auxiliary classifiers; dropout 0.2 before the classifier.

6,624,904 parameters at 1000 classes (torchvision's ``googlenet(aux_logits=False)``); with SE (r = 16)
on all nine Inception modules 7,105,007 (+480,103). Convolutions are He-initialised
(torchvision: truncated normal, std 0.01).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn as nn

from senet.layers.checks import check_positive_int
from senet.layers.nd import check_spatial_dims, max_pool_nd
from senet.models.base import ClassifierModel
from senet.models.conv_block import ConvNormAct, attention_params, check_drop_rate, check_num_classes
from senet.models.integration import block_attention
from senet.models.registry import register_model

__all__ = [
    "InceptionSpec",
    "InceptionStageSpec",
    "GoogLeNetSpec",
    "GOOGLENET",
    "Inception",
    "GoogLeNet",
    "count_params",
    "googlenet",
    "segooglenet",
]

_EPS = 0.001  # torchvision's BasicConv2d


@dataclass(frozen=True)
class InceptionSpec:
    """One row of GoogLeNet's Table 1: the widths of an Inception module's four branches."""

    name: str
    ch1x1: int  # branch 1: 1x1
    ch3x3_reduce: int  # branch 2: 1x1 -> 3x3
    ch3x3: int
    ch5x5_reduce: int  # branch 3: 1x1 -> "5x5"
    ch5x5: int
    pool_proj: int  # branch 4: 3x3 max pool -> 1x1

    @property
    def out_channels(self) -> int:
        return self.ch1x1 + self.ch3x3 + self.ch5x5 + self.pool_proj


@dataclass(frozen=True)
class InceptionStageSpec:
    """Inception modules at one resolution, after a max pool (stride 2, ``pool_kernel``; 0: none)."""

    name: str
    pool_kernel: int
    modules: tuple[InceptionSpec, ...]


@dataclass(frozen=True)
class GoogLeNetSpec:
    stem_channels: tuple[int, int, int]  # conv1 7x7/2, (max pool 3/2), conv2 1x1, conv3 3x3, (max pool 3/2)
    stages: tuple[InceptionStageSpec, ...]
    branch3_kernel: int  # the "5x5" branch's kernel
    drop_rate: float


# Output sizes for a 224 x 224 input.
GOOGLENET = GoogLeNetSpec(
    stem_channels=(64, 64, 192),  # 112 -> 56 -> 56 -> 28
    stages=(
        InceptionStageSpec(
            "inception3",
            pool_kernel=0,
            modules=(
                InceptionSpec("inception3a", 64, 96, 128, 16, 32, 32),  # 28 x 28 x 256
                InceptionSpec("inception3b", 128, 128, 192, 32, 96, 64),  # 28 x 28 x 480
            ),
        ),
        InceptionStageSpec(
            "inception4",
            pool_kernel=3,
            modules=(
                InceptionSpec("inception4a", 192, 96, 208, 16, 48, 64),  # 14 x 14 x 512
                InceptionSpec("inception4b", 160, 112, 224, 24, 64, 64),  # 14 x 14 x 512
                InceptionSpec("inception4c", 128, 128, 256, 24, 64, 64),  # 14 x 14 x 512
                InceptionSpec("inception4d", 112, 144, 288, 32, 64, 64),  # 14 x 14 x 528
                InceptionSpec("inception4e", 256, 160, 320, 32, 128, 128),  # 14 x 14 x 832
            ),
        ),
        InceptionStageSpec(
            "inception5",
            pool_kernel=2,
            modules=(
                InceptionSpec("inception5a", 256, 160, 320, 32, 128, 128),  # 7 x 7 x 832
                InceptionSpec("inception5b", 384, 192, 384, 48, 128, 128),  # 7 x 7 x 1024
            ),
        ),
    ),
    branch3_kernel=3,  # torchvision's; the paper's is 5
    drop_rate=0.2,
)


class Inception(nn.Module):
    """Four parallel branches concatenated along the channels, then the optional SE block ``se``."""

    def __init__(
        self, spatial_dims: int, in_channels: int, row: InceptionSpec, *, branch3_kernel: int, se: nn.Module | None
    ) -> None:
        super().__init__()
        d = spatial_dims
        self.branch1 = ConvNormAct(d, in_channels, row.ch1x1, 1, eps=_EPS)
        self.branch2 = nn.Sequential(
            ConvNormAct(d, in_channels, row.ch3x3_reduce, 1, eps=_EPS),
            ConvNormAct(d, row.ch3x3_reduce, row.ch3x3, 3, eps=_EPS),
        )
        self.branch3 = nn.Sequential(
            ConvNormAct(d, in_channels, row.ch5x5_reduce, 1, eps=_EPS),
            ConvNormAct(d, row.ch5x5_reduce, row.ch5x5, branch3_kernel, eps=_EPS),
        )
        self.branch4 = nn.Sequential(
            max_pool_nd(d)(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            ConvNormAct(d, in_channels, row.pool_proj, 1, eps=_EPS),
        )
        self.se = se

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x))
        y = torch.cat(branches, dim=1)  # 4 x (N, C_i, *S) -> (N, sum C_i, *S)
        return y if self.se is None else self.se(y)


class GoogLeNet(ClassifierModel):
    """GoogLeNet from a :class:`GoogLeNetSpec`; SE on every Inception module of the stages in ``se_stages``.

    Stages: ``inception3`` (stride 8), ``inception4`` (its max pool, stride 16), ``inception5`` (stride 32).
    """

    def __init__(
        self,
        spec: GoogLeNetSpec,
        *,
        spatial_dims: int = 2,
        in_channels: int = 3,
        num_classes: int = 1000,
        attention: str | None = None,
        reduction: int | tuple[int, ...] = 16,
        se_stages: tuple[int, ...] | None = None,
        drop_rate: float | None = None,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        check_positive_int("in_channels", in_channels)
        check_num_classes(num_classes)
        drop_rate = check_drop_rate("drop_rate", spec.drop_rate if drop_rate is None else drop_rate)
        attentions = block_attention(attention, num_stages=len(spec.stages), reduction=reduction, se_stages=se_stages)
        self.spec = spec
        self.spatial_dims, self.in_channels, self.num_classes = spatial_dims, in_channels, num_classes
        self.drop_rate = drop_rate
        self.attention, self.reduction = attention, reduction
        self.se_stages = None if se_stages is None else tuple(se_stages)

        d, (c1, c2, c3) = spatial_dims, spec.stem_channels
        self.conv1 = ConvNormAct(d, in_channels, c1, 7, stride=2, eps=_EPS)
        self.maxpool1 = max_pool_nd(d)(kernel_size=3, stride=2, ceil_mode=True)
        self.conv2 = ConvNormAct(d, c1, c2, 1, eps=_EPS)
        self.conv3 = ConvNormAct(d, c2, c3, 3, eps=_EPS)
        self.maxpool2 = max_pool_nd(d)(kernel_size=3, stride=2, ceil_mode=True)

        stages, channels = [], c3
        for stage, stage_attention in zip(spec.stages, attentions):
            layers: OrderedDict[str, nn.Module] = OrderedDict()
            if stage.pool_kernel > 0:
                layers["pool"] = max_pool_nd(d)(kernel_size=stage.pool_kernel, stride=2, ceil_mode=True)
            for row in stage.modules:
                se = None if stage_attention is None else stage_attention.build(row.out_channels, d)
                layers[row.name] = Inception(d, channels, row, branch3_kernel=spec.branch3_kernel, se=se)
                channels = row.out_channels
            stages.append(nn.Sequential(layers))
        self.stages = nn.ModuleList(stages)
        self.stage_channels = tuple(stage.modules[-1].out_channels for stage in spec.stages)
        self.num_features = channels
        self.fc = nn.Linear(channels, num_classes) if num_classes > 0 else nn.Identity()

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool1(self.conv1(x))  # (N, in_channels, *S) -> (N, 64, *S/4)
        x = self.conv3(self.conv2(x))  # -> (N, 192, *S/4)
        return self.maxpool2(x)  # -> (N, 192, *S/8)

    def stage_modules(self) -> list[nn.Module]:
        return list(self.stages)

    def num_params_from_spec(self) -> int:
        """The parameter count computed from the spec table and the build options (:func:`count_params`)."""
        return count_params(
            self.spec,
            spatial_dims=self.spatial_dims,
            in_channels=self.in_channels,
            num_classes=self.num_classes,
            attention=self.attention,
            reduction=self.reduction,
            se_stages=self.se_stages,
        )


def count_params(
    spec: GoogLeNetSpec,
    *,
    spatial_dims: int = 2,
    in_channels: int = 3,
    num_classes: int = 1000,
    attention: str | None = None,
    reduction: int | tuple[int, ...] = 16,
    se_stages: tuple[int, ...] | None = None,
) -> int:
    """Parameters of ``GoogLeNet(spec, ...)`` from the table alone: bias-free ``k^d * C_in * C_out``
    convolutions each with a BN (``2 * C``), attention on each module's output, FC ``C * K + K``."""
    attentions = block_attention(attention, num_stages=len(spec.stages), reduction=reduction, se_stages=se_stages)
    d = spatial_dims

    def conv(cin: int, cout: int, k: int) -> int:
        return k**d * cin * cout + 2 * cout

    c1, c2, c3 = spec.stem_channels
    total, channels = conv(in_channels, c1, 7) + conv(c1, c2, 1) + conv(c2, c3, 3), c3
    for stage, stage_attention in zip(spec.stages, attentions):
        for row in stage.modules:
            total += conv(channels, row.ch1x1, 1)
            total += conv(channels, row.ch3x3_reduce, 1) + conv(row.ch3x3_reduce, row.ch3x3, 3)
            total += conv(channels, row.ch5x5_reduce, 1) + conv(row.ch5x5_reduce, row.ch5x5, spec.branch3_kernel)
            total += conv(channels, row.pool_proj, 1)
            if stage_attention is not None:
                total += attention_params(stage_attention, row.out_channels, d)
            channels = row.out_channels
    return total + (channels * num_classes + num_classes if num_classes > 0 else 0)


_ARGS_DOC = """
Args:
    spatial_dims: 1, 2 or 3 (the rank of the input ``(N, C, *S)``).
    in_channels: channels of the input.
    num_classes: classes K of the final FC (0: no classifier).
    attention: attention on every Inception module's output in ``se_stages`` (``"se"``: the SE-Inception
        module of the SENet paper's Fig. 2); ``None`` for the plain network.
    reduction: the ratio r, one for all three stages (inception3, 4, 5) or one per stage.
    se_stages: 0-based indices of the stages with attention; ``None``: all.
    drop_rate: dropout before the classifier (``None``: the spec's 0.2).
"""


@register_model
def googlenet(
    *,
    spatial_dims: int = 2,
    in_channels: int = 3,
    num_classes: int = 1000,
    attention: str | None = None,
    reduction: int | tuple[int, ...] = 16,
    se_stages: tuple[int, ...] | None = None,
    drop_rate: float | None = None,
) -> GoogLeNet:
    """GoogLeNet with BN (Inception v1) as torchvision's ``googlenet(aux_logits=False)``: 6,624,904 parameters."""
    return GoogLeNet(
        GOOGLENET,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        attention=attention,
        reduction=reduction,
        se_stages=se_stages,
        drop_rate=drop_rate,
    )


@register_model
def segooglenet(
    *,
    spatial_dims: int = 2,
    in_channels: int = 3,
    num_classes: int = 1000,
    attention: str | None = "se",
    reduction: int | tuple[int, ...] = 16,
    se_stages: tuple[int, ...] | None = None,
    drop_rate: float | None = None,
) -> GoogLeNet:
    """SE-GoogLeNet: SE-Inception modules (SENet paper, Fig. 2), SE (r = 16) on all nine modules' outputs;
    7,105,007 parameters."""
    return GoogLeNet(
        GOOGLENET,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        attention=attention,
        reduction=reduction,
        se_stages=se_stages,
        drop_rate=drop_rate,
    )


for _builder in (googlenet, segooglenet):
    _builder.__doc__ = f"{_builder.__doc__}\n{_ARGS_DOC}"
