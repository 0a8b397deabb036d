"""Residual units of the ResNet family (post-activation, conv-BN-ReLU), for any rank, with SE anywhere.

A unit computes ``out = act(branch(x) + shortcut(x))``; its SE block is the attribute ``se`` (``None``
without attention) and sits where ``attention.integration`` says (see :mod:`senet.models.integration`):

- ``standard``: ``act(SE(branch(x)) + shortcut(x))``; SE sees ``out_channels``.
- ``pre``: ``act(branch(SE(x)) + shortcut(x))``; SE sees ``in_channels``, the shortcut the un-gated x.
- ``post``: ``SE(act(branch(x) + shortcut(x)))`` (``placement="before_act"``: ``act(SE(...))``); ``out_channels``.
- ``identity``: ``act(branch(x) + SE(shortcut(x)))``, after the projection if there is one; ``out_channels``.
- ``inside``: after the 3x3 convolution's BN and ReLU (``"before_act"``: between them), in a basic block
  after the first 3x3 convolution; SE sees the 3x3 width ``width``.

With ``standard`` integration the unit's tail ``relu(SE(bn(conv(h))) + shortcut)`` runs through
:func:`senet.layers.fused.conv_bn_se_add_relu`: the same values and gradients in fewer memory passes, and no
full-size activation saved for backward beyond the plain unit's (see :mod:`senet.layers.fused`). The fused
tail does not call the SE block's or the norm's ``forward``, so a unit whose SE block or last norm carries
forward hooks (analysis, mask plumbing) takes the plain path; hooks on ``se.gate`` still fire either way.
Where the branch ends in its norm, the residual addition is written over the norm's output (``out +=
shortcut``, as timm's and torchvision's units do): autograd does not keep that tensor; without autograd
the addition and the ReLU run as one pass (:func:`senet.layers.se_ops.add_relu_`).

Module names follow timm's ``timm/models/resnet.py``: ``conv1, bn1, act1, conv2, bn2, act2, conv3, bn3,
act3`` (basic block: ``conv1, bn1, act1, conv2, bn2, act2``), ``se`` (``fc1``/``fc2``), ``downsample``
(``.0`` conv, ``.1`` BN; ResNet-D: ``.0`` average pool, ``.1`` conv, ``.2`` BN).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from senet.layers.fused import conv_bn_add_relu, conv_bn_se_add_relu
from senet.layers.se_ops import add_relu_
from senet.layers.nd import avg_pool_nd, conv_nd, norm_nd
from senet.models.integration import BlockAttention
from senet.models.specs import StageSpec

__all__ = ["BasicBlock", "Bottleneck", "ZeroPadShortcut", "make_shortcut"]


class ZeroPadShortcut(nn.Module):
    """Option-A shortcut (He et al. 2016): the strided identity with zero channels added, no parameters.

    ``(N, C_in, *S) -> (N, C_out, *ceil(S / stride))``; the ``C_out - C_in`` new channels are split between
    the front and the back (as the common CIFAR implementations do).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[(slice(None), slice(None)) + (slice(None, None, self.stride),) * (x.ndim - 2)]  # (N, C_in, *S/s)
        extra = self.out_channels - self.in_channels
        return F.pad(x, (0, 0) * (x.ndim - 2) + (extra // 2, extra - extra // 2))  # (N, C_out, *S/s)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


def _conv_shortcut(cin: int, cout: int, stride: int, kernel_size: int, spatial_dims: int) -> nn.Module:
    kernel_size = kernel_size if stride > 1 else 1  # timm: a 3x3 projection only where it strides (SENet-154)
    conv = conv_nd(spatial_dims)(cin, cout, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
    return nn.Sequential(conv, norm_nd(spatial_dims)(cout))


def _avg_shortcut(cin: int, cout: int, stride: int, kernel_size: int, spatial_dims: int) -> nn.Module:
    pool = (
        avg_pool_nd(spatial_dims)(2, stride, ceil_mode=True, count_include_pad=False) if stride > 1 else nn.Identity()
    )
    conv = conv_nd(spatial_dims)(cin, cout, 1, bias=False)
    return nn.Sequential(pool, conv, norm_nd(spatial_dims)(cout))


def _pad_shortcut(cin: int, cout: int, stride: int, kernel_size: int, spatial_dims: int) -> nn.Module:
    return ZeroPadShortcut(cin, cout, stride)


_SHORTCUTS: dict[str, Callable[[int, int, int, int, int], nn.Module]] = {
    "conv": _conv_shortcut,
    "avg": _avg_shortcut,
    "pad": _pad_shortcut,
}


def make_shortcut(
    kind: str, in_channels: int, out_channels: int, *, stride: int, kernel_size: int, spatial_dims: int
) -> nn.Module | None:
    """The projection shortcut of kind ``"conv"``, ``"avg"`` or ``"pad"``, or ``None`` (identity) where shapes agree."""
    if stride == 1 and in_channels == out_channels:
        return None
    return _SHORTCUTS[kind](in_channels, out_channels, stride, kernel_size, spatial_dims)


class _ResidualUnit(nn.Module):
    """What both units share: the shortcut, the SE positions outside the branch, and the final activation.

    Subclasses build the branch and define ``branch(x)`` (the residual function F) and ``final_act`` (the
    ReLU after the addition, timm's ``act2``/``act3``); they call :meth:`_inside` after the 3x3 conv's BN,
    which applies SE there for ``integration="inside"``.
    """

    se: nn.Module | None
    downsample: nn.Module | None
    branch: Callable[[torch.Tensor], torch.Tensor]
    final_act: nn.Module

    def _setup(
        self, attention: BlockAttention | None, downsample: nn.Module | None, branch_ends_in_norm: bool = True
    ) -> None:
        self.integration = attention.integration if attention is not None else "standard"
        self.placement = attention.placement if attention is not None else "after_act"
        self.downsample = downsample
        # branch(x) returns the last norm's fresh output (no ReLU after it): the residual addition may
        # overwrite it, and a tail conv -> BN -> SE -> add -> ReLU is what senet.layers.fused computes
        self.branch_ends_in_norm = branch_ends_in_norm
        self.fused_tail = attention is not None and self.integration == "standard" and branch_ends_in_norm

    def _use_fused_tail(self) -> bool:
        if not self.fused_tail:
            return False
        observed = (m._forward_hooks or m._forward_pre_hooks for m in (self.se, self.tail_modules()[1]))
        return not any(observed)

    def _use_plain_tail(self) -> bool:
        """Whether the unit ends ``relu(bn(conv(h)) + shortcut)`` with no SE in the tail and no hooks on the norm,
        so that :func:`~senet.layers.fused.conv_bn_add_relu` may compute it (in eval, the norm written over the
        convolution's output, as the SE tail does)."""
        if self.fused_tail or not self.branch_ends_in_norm or not self._relu_follows_addition():
            return False
        if self.se is not None and self.integration == "standard":
            return False
        bn = self.tail_modules()[1]
        return not (bn._forward_hooks or bn._forward_pre_hooks)

    def _relu_follows_addition(self) -> bool:
        """Whether ``final_act(out + shortcut)`` is a plain ReLU right after the addition (no ``post`` SE, no
        hooks), so that both may run as one pass (:func:`~senet.layers.se_ops.add_relu_`)."""
        act = self.final_act
        observed = act._forward_hooks or act._forward_pre_hooks
        return type(act) is nn.ReLU and not observed and (self.se is None or self.integration != "post")

    def _inside(self, x: torch.Tensor, act: nn.Module) -> torch.Tensor:
        """The activation after the 3x3 conv's BN, with SE before or after it for ``integration="inside"``."""
        if self.se is None or self.integration != "inside":
            return act(x)
        if self.placement == "before_act":
            return act(self.se(x))
        return self.se(act(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        se = self.se
        shortcut = x if self.downsample is None else self.downsample(x)  # (N, C_out, *S_out)
        if se is not None and self.integration == "identity":
            shortcut = se(shortcut)
        if se is not None and self.integration == "pre":
            x = se(x)  # (N, C_in, *S): the branch sees the gated input, the shortcut the raw one
        if self._use_fused_tail():
            conv, bn = self.tail_modules()
            return conv_bn_se_add_relu(self.branch_body(x), conv, bn, se, shortcut)  # relu(SE(bn(conv(h))) + shortcut)
        if self._use_plain_tail():
            conv, bn = self.tail_modules()
            return conv_bn_add_relu(self.branch_body(x), conv, bn, shortcut)  # relu(bn(conv(h)) + shortcut)
        out = self.branch(x)  # (N, C_in, *S) -> (N, C_out, *S_out)
        if se is not None and self.integration == "standard":
            out = se(out) + shortcut  # the attention block's output may be saved by autograd
        elif self.branch_ends_in_norm:
            if self._relu_follows_addition():
                return add_relu_(out, shortcut)  # relu(out + shortcut) written over the norm's fresh output
            out += shortcut  # the norm's fresh output, not saved for backward (as timm and torchvision do)
        else:
            out = out + shortcut
        if se is not None and self.integration == "post":
            return self.final_act(se(out)) if self.placement == "before_act" else se(self.final_act(out))
        return self.final_act(out)


class BasicBlock(_ResidualUnit):
    """Two 3x3 convolutions (ResNet-18/34, the CIFAR ResNets); the stride is on the first.

    ``inside`` puts SE after the first 3x3 convolution (``width`` channels). ``branch_act`` adds a ReLU at
    the end of the branch, before SE (Cadene's SE-ResNet-18/34 block).
    """

    def __init__(
        self,
        in_channels: int,
        stage: StageSpec,
        *,
        stride: int,
        spatial_dims: int,
        downsample: nn.Module | None,
        attention: BlockAttention | None,
        branch_act: bool = False,
    ) -> None:
        super().__init__()
        conv, norm = conv_nd(spatial_dims), norm_nd(spatial_dims)
        width, out = stage.width, stage.out_channels
        self.conv1 = conv(in_channels, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm(width)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = conv(width, out, 3, padding=1, groups=stage.groups, bias=False)
        self.bn2 = norm(out)
        self.act_branch = nn.ReLU(inplace=True) if branch_act else None
        self.se = None
        if attention is not None:
            channels = attention.channels_at(in_channels=in_channels, inner_channels=width, out_channels=out)
            self.se = attention.build(channels, spatial_dims)
        self.act2 = nn.ReLU(inplace=True)
        self._setup(attention, downsample, branch_ends_in_norm=not branch_act)

    def branch_body(self, x: torch.Tensor) -> torch.Tensor:
        """The branch up to its last convolution's input."""
        return self._inside(self.bn1(self.conv1(x)), self.act1)  # (N, C_in, *S) -> (N, width, *S/s)

    def tail_modules(self) -> tuple[nn.Module, nn.Module]:
        """The branch's last convolution and norm."""
        return self.conv2, self.bn2

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn2(self.conv2(self.branch_body(x)))  # (N, C_in, *S) -> (N, C_out, *S/s)
        return x if self.act_branch is None else self.act_branch(x)

    @property
    def final_act(self) -> nn.Module:
        """The activation after the residual addition."""
        return self.act2


class Bottleneck(_ResidualUnit):
    """1x1 (``first_width``), 3x3 (``width``, ``groups``), 1x1 (``out_channels``) convolutions.

    ``stride_on="3x3"`` strides the 3x3 convolution (torchvision "v1.5", timm); ``"1x1"`` the first 1x1
    convolution (Caffe style). ``inside`` puts SE after the 3x3 convolution (``width`` channels).
    """

    def __init__(
        self,
        in_channels: int,
        stage: StageSpec,
        *,
        stride: int,
        spatial_dims: int,
        downsample: nn.Module | None,
        attention: BlockAttention | None,
        stride_on: str = "3x3",
    ) -> None:
        super().__init__()
        conv, norm = conv_nd(spatial_dims), norm_nd(spatial_dims)
        first, width, out = stage.conv1_width, stage.width, stage.out_channels
        stride1, stride3 = (stride, 1) if stride_on == "1x1" else (1, stride)
        self.conv1 = conv(in_channels, first, 1, stride=stride1, bias=False)
        self.bn1 = norm(first)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = conv(first, width, 3, stride=stride3, padding=1, groups=stage.groups, bias=False)
        self.bn2 = norm(width)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = conv(width, out, 1, bias=False)
        self.bn3 = norm(out)
        self.se = None
        if attention is not None:
            channels = attention.channels_at(in_channels=in_channels, inner_channels=width, out_channels=out)
            self.se = attention.build(channels, spatial_dims)
        self.act3 = nn.ReLU(inplace=True)
        self._setup(attention, downsample)

    def branch_body(self, x: torch.Tensor) -> torch.Tensor:
        """The branch up to its last convolution's input."""
        x = self.act1(self.bn1(self.conv1(x)))  # (N, C_in, *S) -> (N, first_width, *S')
        return self._inside(self.bn2(self.conv2(x)), self.act2)  # -> (N, width, *S/s)

    def tail_modules(self) -> tuple[nn.Module, nn.Module]:
        """The branch's last convolution and norm."""
        return self.conv3, self.bn3

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn3(self.conv3(self.branch_body(x)))  # (N, C_in, *S) -> (N, C_out, *S/s)

    @property
    def final_act(self) -> nn.Module:
        """The activation after the residual addition."""
        return self.act3
