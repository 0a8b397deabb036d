"""VGG-16 with batch norm, plain or with SE (SENet paper, Table 2: VGG-16 27.02 -> SE-VGG-16 25.22 top-1 error).

VGG-16 is configuration D of Simonyan & Zisserman (2015, Table 1): thirteen 3x3 convolutions in five
stages, each stage closed by a 2x2/2 max pool, then three FC layers. As in the SENet paper (which adds
batch normalization after each convolution to train it from scratch) and torchvision's ``vgg16_bn``,
every convolution is followed by BN and ReLU; the convolutions keep their biases (redundant before BN,
but torchvision's ``vgg16_bn`` has them, so parameter counts and weights match).

SE placement: the SENet paper (Section 4) integrates SE into standard architectures such as VGGNet by
inserting it after the non-linearity that follows each convolution, so ``sevgg16_bn`` has 13 SE blocks,
one after every conv-BN-ReLU (``placement="before_act"`` moves each between the BN and the ReLU).
With r = 16 they add 2*sum(C * (C // 16)) weights + sum(C // 16 + C) biases = 230,792 parameters.

Head: at ``spatial_dims=2`` it is torchvision's: adaptive average pool to 7 x 7, FC 25088 -> 4096
(fc6), ReLU, dropout, FC 4096 -> 4096 (fc7), ReLU, dropout, FC 4096 -> K (``fc``): 138,365,992 parameters
at K = 1000, exactly torchvision's ``vgg16_bn``. At ranks 1 and 3 the features are pooled globally
(to 1 position, since a 7^3 grid would make fc6 720M parameters) and fc6 is 512 -> 4096; fc7 and ``fc``
are unchanged. Five max pools need every spatial size >= 32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from senet.layers.checks import check_positive_int
from senet.layers.nd import adaptive_avg_pool_nd, check_spatial_dims, max_pool_nd
from senet.models.base import ClassifierModel
from senet.models.conv_block import ConvNormAct, attention_params, check_drop_rate, check_num_classes
from senet.models.integration import Placement, block_attention
from senet.models.registry import register_model

__all__ = ["VGGStageSpec", "VGGSpec", "VGG16", "VGG", "count_params", "vgg16_bn", "sevgg16_bn"]


@dataclass(frozen=True)
class VGGStageSpec:
    """``depth`` 3x3 conv-BN-ReLU layers to ``out_channels``, then a 2x2/2 max pool."""

    name: str
    depth: int
    out_channels: int


@dataclass(frozen=True)
class VGGSpec:
    stages: tuple[VGGStageSpec, ...]
    hidden_features: int = 4096  # width of fc6 and fc7
    pool_size_2d: int = 7  # the 2-D head pools to 7 x 7 (torchvision); ranks 1 and 3 pool to 1


# Configuration D, 224 x 224 input (output sizes after each stage's max pool).
VGG16 = VGGSpec(
    stages=(
        VGGStageSpec("conv1", depth=2, out_channels=64),  # 112 x 112
        VGGStageSpec("conv2", depth=2, out_channels=128),  # 56 x 56
        VGGStageSpec("conv3", depth=3, out_channels=256),  # 28 x 28
        VGGStageSpec("conv4", depth=3, out_channels=512),  # 14 x 14
        VGGStageSpec("conv5", depth=3, out_channels=512),  # 7 x 7
    ),
)


def _linear(in_features: int, out_features: int) -> nn.Linear:
    """An FC initialised as torchvision's VGG (weights N(0, 0.01), zero bias); ``skip_init`` avoids
    initialising fc6's 103M weights twice."""
    linear = torch.nn.utils.skip_init(nn.Linear, in_features, out_features, device=torch.get_default_device())
    nn.init.normal_(linear.weight, 0.0, 0.01)
    nn.init.zeros_(linear.bias)
    return linear


class VGG(ClassifierModel):
    """VGG with BN from a :class:`VGGSpec`; attention after every conv-BN-ReLU of the stages in ``se_stages``.

    ``forward_head(x, pre_logits=True)`` returns the fc7 output, ``head_hidden_size`` (4096) features;
    ``reset_classifier`` replaces the last FC only.
    """

    def __init__(
        self,
        spec: VGGSpec,
        *,
        spatial_dims: int = 2,
        in_channels: int = 3,
        num_classes: int = 1000,
        attention: str | None = None,
        reduction: int | tuple[int, ...] = 16,
        se_stages: tuple[int, ...] | None = None,
        placement: Placement = "after_act",
        drop_rate: float = 0.5,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        check_positive_int("in_channels", in_channels)
        check_num_classes(num_classes)
        drop_rate = check_drop_rate("drop_rate", drop_rate)
        attentions = block_attention(
            attention, num_stages=len(spec.stages), reduction=reduction, se_stages=se_stages, placement=placement
        )
        self.spec = spec
        self.spatial_dims, self.in_channels, self.num_classes = spatial_dims, in_channels, num_classes
        self.drop_rate = drop_rate
        self.attention, self.reduction = attention, reduction
        self.se_stages = None if se_stages is None else tuple(se_stages)
        stages, channels = [], in_channels
        for row, row_attention in zip(spec.stages, attentions):
            layers: list[nn.Module] = []
            for _ in range(row.depth):
                se_layer = None if row_attention is None else row_attention.build(row.out_channels, spatial_dims)
                conv = ConvNormAct(
                    spatial_dims, channels, row.out_channels, 3, se=se_layer, placement=placement, bias=True
                )
                layers.append(conv)
                channels = row.out_channels
            layers.append(max_pool_nd(spatial_dims)(kernel_size=2, stride=2))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.stage_channels = tuple(row.out_channels for row in spec.stages)
        self.num_features = channels
        self.min_input_size = 2 ** len(spec.stages)

        pool_size = spec.pool_size_2d if spatial_dims == 2 else 1
        hidden = spec.hidden_features
        self.head_hidden_size = hidden
        self.pool = adaptive_avg_pool_nd(spatial_dims)(pool_size)
        self.pre_logits = nn.Sequential(
            _linear(channels * pool_size**spatial_dims, hidden),  # fc6
            nn.ReLU(),
            nn.Dropout(drop_rate),
            _linear(hidden, hidden),  # fc7
            nn.ReLU(),
            nn.Dropout(drop_rate),
        )
        self.fc = _linear(hidden, num_classes) if num_classes > 0 else nn.Identity()  # fc8

    def check_input(self, x: torch.Tensor) -> None:
        super().check_input(x)
        if min(x.shape[2:]) < self.min_input_size:
            raise ValueError(
                f"x must have every spatial size >= {self.min_input_size} for {len(self.stages)} max pools, "
                f"got shape {tuple(x.shape)}"
            )

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return x  # VGG has no stem: conv1 is the first stage

    def stage_modules(self) -> list[nn.Module]:
        return list(self.stages)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x).flatten(1)  # (N, 512, *S') -> (N, 512, 7, 7) -> (N, 25088) at rank 2; (N, 512) otherwise
        x = self.pre_logits(x)  # fc6, fc7: -> (N, 4096)
        return x if pre_logits else self.fc(x)  # fc8: -> (N, K)

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

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last FC (fc8) by a fresh one for ``num_classes`` (0 removes it)."""
        super().reset_classifier(num_classes)  # validates and sets num_classes
        self.fc = _linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()


def count_params(
    spec: VGGSpec,
    *,
    spatial_dims: int = 2,
    in_channels: int = 3,
    num_classes: int = 1000,
    attention: str | None = None,
    reduction: int | tuple[int, ...] = 16,
    se_stages: tuple[int, ...] | None = None,
) -> int:
    """Parameters of ``VGG(spec, ...)`` from the table alone: 3x3 convolutions with bias
    (``3^d * C_in * C_out + C_out``), BN ``2 * C``, attention after each, fc6/fc7/fc8 with biases."""
    attentions = block_attention(attention, num_stages=len(spec.stages), reduction=reduction, se_stages=se_stages)
    d, channels, total = spatial_dims, in_channels, 0
    for row, row_attention in zip(spec.stages, attentions):
        for _ in range(row.depth):
            total += 3**d * channels * row.out_channels + row.out_channels + 2 * row.out_channels
            if row_attention is not None:
                total += attention_params(row_attention, row.out_channels, d)
            channels = row.out_channels
    pooled = channels * (spec.pool_size_2d**2 if spatial_dims == 2 else 1)
    hidden = spec.hidden_features
    total += pooled * hidden + hidden + hidden * hidden + hidden
    return total + (hidden * num_classes + num_classes if num_classes > 0 else 0)


@register_model
def vgg16_bn(
    *,
    spatial_dims: int = 2,
    in_channels: int = 3,
    num_classes: int = 1000,
    attention: str | None = None,
    reduction: int | tuple[int, ...] = 16,
    se_stages: tuple[int, ...] | None = None,
    placement: Placement = "after_act",
    drop_rate: float = 0.5,
) -> VGG:
    """VGG-16 with BN (configuration D), 138,365,992 parameters at 1000 classes and rank 2 (torchvision's ``vgg16_bn``).

    Args:
        spatial_dims: 1, 2 or 3; at 1 and 3 the head pools globally (see the module docstring).
        in_channels: channels of the input.
        num_classes: classes K of the last FC (0: no classifier).
        attention: ``None`` (plain, the default here) or a registered attention name, placed after every
            conv-BN-ReLU of the stages in ``se_stages``.
        reduction: the ratio r, one for all five stages or one per stage (hidden width ``C // r``).
        se_stages: 0-based indices of the stages (conv1..conv5) that carry attention; ``None``: all.
        placement: ``"after_act"`` (after each ReLU, the paper's) or ``"before_act"`` (between BN and ReLU).
        drop_rate: dropout after fc6 and fc7 (0.5 as in the VGG paper).
    """
    return VGG(
        VGG16,
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
def sevgg16_bn(
    *,
    spatial_dims: int = 2,
    in_channels: int = 3,
    num_classes: int = 1000,
    attention: str | None = "se",
    reduction: int | tuple[int, ...] = 16,
    se_stages: tuple[int, ...] | None = None,
    placement: Placement = "after_act",
    drop_rate: float = 0.5,
) -> VGG:
    """SE-VGG-16 (SENet paper, Table 2): VGG-16-BN with an SE block (r = 16) after each of its 13
    conv-BN-ReLU units; 138,596,784 parameters at 1000 classes and rank 2. Arguments as :func:`vgg16_bn`,
    with ``attention="se"``."""
    return VGG(
        VGG16,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        attention=attention,
        reduction=reduction,
        se_stages=se_stages,
        placement=placement,
        drop_rate=drop_rate,
    )
