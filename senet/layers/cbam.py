"""Convolutional Block Attention Module (CBAM), N-d.

Woo, Park, Lee, Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018 (arXiv:1807.06521).
Channel attention (Eq. 2) then spatial attention (Eq. 3), applied in sequence (Eq. 1):

    F'  = M_c(F) * F,    M_c(F)  = sigmoid(MLP(AvgPool(F)) + MLP(MaxPool(F)))
    F'' = M_s(F') * F',  M_s(F') = sigmoid(f^{k x k}([AvgPool_c(F'); MaxPool_c(F')]))

The spatial convolution is k^d for d spatial dims (k=7 in the paper). Like the authors' code and
``timm.layers.cbam.CbamModule``, a BatchNorm follows that convolution (``norm=True``); the paper's
Eq. 3 has none, ``norm=False`` gives it.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from senet.layers.checks import check_input, check_positive_int, excitation_width
from senet.layers.nd import check_spatial_dims, conv_nd, norm_nd

__all__ = ["ChannelAttention", "SpatialAttention", "CBAM"]


class ChannelAttention(nn.Module):
    """CBAM's channel attention M_c: a shared MLP over the average- and max-pooled descriptors, summed.

    Any rank. Args (paper symbols in brackets):
        channels: number of channels [C].
        reduction: reduction ratio [r]; hidden width ``C // r`` (:func:`~senet.layers.excitation_width`;
            timm rounds ``C / r`` to the nearest int instead, the same for C a multiple of r).
        hidden_channels: the hidden width [C/r] given directly.
        bias: biases in the MLP (the paper's W0, W1 have none, nor has timm; the authors' code has them).
        activation: the hidden non-linearity (ReLU in the paper).

    Submodules: ``fc1`` [W0] ``(h, C)``, ``act``, ``fc2`` [W1] ``(C, h)`` (``nn.Linear``; timm stores them
    as 1x1 convs), ``gate`` (sigmoid), whose forward-hook output is M_c ``(N, C, 1, ..., 1)``, uniform over space.
    """

    def __init__(
        self,
        channels: int,
        *,
        reduction: int = 16,
        hidden_channels: int | None = None,
        bias: bool = False,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.hidden_channels = excitation_width(channels, reduction, hidden_channels)
        self.channels = channels
        self.fc1 = nn.Linear(channels, self.hidden_channels, bias=bias)  # W0
        self.act = activation()
        self.fc2 = nn.Linear(self.hidden_channels, channels, bias=bias)  # W1
        self.gate = nn.Sigmoid()

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """M_c ``(N, C, 1, ..., 1)``."""
        dims = tuple(range(2, x.ndim))
        avg = self.fc2(self.act(self.fc1(x.mean(dims))))  # (N, C, *S) -> (N, C) -> (N, h) -> (N, C)
        peak = self.fc2(self.act(self.fc1(x.amax(dims))))  # the same MLP on the max-pooled descriptor
        v = avg + peak
        return self.gate(v.view(*v.shape, *([1] * len(dims))))  # (N, C, 1, ..., 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.channels)
        return x * self.gates(x)

    def flops(self, spatial_shape: tuple[int, ...]) -> int:
        """Analytic FLOPs for one example (convention of ``SqueezeExcite.flops``): two poolings ``2*C*P``,
        the MLP twice ``2 * 4*C*h``, the sum ``C``, reweighting ``C*P``."""
        positions = math.prod(spatial_shape)
        c, h = self.channels, self.hidden_channels
        return 2 * c * positions + 8 * c * h + c + c * positions

    def extra_repr(self) -> str:
        return f"channels={self.channels}, hidden={self.hidden_channels}"


class SpatialAttention(nn.Module):
    """CBAM's spatial attention M_s: a k^d convolution over the channel-wise mean and max maps.

    Args (paper symbols in brackets):
        channels: number of channels [C] (only checked against the input; M_s has no per-channel weights).
        spatial_dims: number of spatial dims d of the input (1, 2 or 3).
        kernel_size: the convolution's size k [f^{7x7}: k=7], odd, padding ``k // 2``.
        norm: BatchNorm after the convolution (the authors' code and timm: True; the paper's Eq. 3: False).

    Submodules: ``conv`` (``ConvNd(2, 1, k, bias=False)``; input channel 0 is the mean map, 1 the max map,
    timm's order), ``bn`` (``BatchNormNd(1)`` or identity), ``gate`` (sigmoid), whose forward-hook output
    is M_s ``(N, 1, *spatial)``, uniform over channels.
    """

    def __init__(self, channels: int, *, spatial_dims: int = 2, kernel_size: int = 7, norm: bool = True) -> None:
        super().__init__()
        self.channels = check_positive_int("channels", channels)
        self.spatial_dims = check_spatial_dims(spatial_dims)
        if check_positive_int("kernel_size", kernel_size) % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.kernel_size = kernel_size
        self.norm = norm
        self.conv = conv_nd(spatial_dims)(2, 1, kernel_size, padding=kernel_size // 2, bias=False)  # f^{k^d}
        self.bn = norm_nd(spatial_dims)(1) if norm else nn.Identity()
        self.gate = nn.Sigmoid()

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """M_s ``(N, 1, *spatial)``."""
        maps = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)  # (N, C, *S) -> (N, 2, *S)
        return self.gate(self.bn(self.conv(maps)))  # (N, 2, *S) -> (N, 1, *S)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.channels, ranks=(self.spatial_dims,))
        return x * self.gates(x)

    def flops(self, spatial_shape: tuple[int, ...]) -> int:
        """Analytic FLOPs for one example (2 per multiply-add, BatchNorm as its inference affine, 2 per
        element, gate not counted): channel mean and max ``2*C*P``, convolution ``2 * 2*k^d * P``,
        BatchNorm ``2*P``, reweighting ``C*P``."""
        positions = math.prod(spatial_shape)
        norm = 2 * positions if self.norm else 0
        conv = 2 * 2 * self.kernel_size**self.spatial_dims * positions
        return 2 * self.channels * positions + conv + norm + self.channels * positions

    def extra_repr(self) -> str:
        return f"channels={self.channels}, spatial_dims={self.spatial_dims}, kernel_size={self.kernel_size}"


class CBAM(nn.Module):
    """CBAM: :class:`ChannelAttention` then :class:`SpatialAttention` (the paper's sequential order).

    Args (paper symbols in brackets): ``channels`` [C], ``spatial_dims`` (d), ``reduction`` [r],
    ``hidden_channels`` [C/r], ``kernel_size`` [k], ``bias`` (MLP biases), ``norm`` (BN after the
    spatial conv), ``activation`` (the MLP's hidden non-linearity); see the two halves.

    Submodules: ``channel`` and ``spatial`` (the names of timm's ``CbamModule``); the gate tensors are
    the forward-hook outputs of ``channel.gate`` (M_c, ``(N, C, 1, ..., 1)``) and ``spatial.gate``
    (M_s, ``(N, 1, *spatial)``), in that order.
    """

    def __init__(
        self,
        channels: int,
        *,
        spatial_dims: int = 2,
        reduction: int = 16,
        hidden_channels: int | None = None,
        kernel_size: int = 7,
        bias: bool = False,
        norm: bool = True,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.channel = ChannelAttention(
            channels, reduction=reduction, hidden_channels=hidden_channels, bias=bias, activation=activation
        )
        self.spatial = SpatialAttention(channels, spatial_dims=spatial_dims, kernel_size=kernel_size, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.channel.channels, ranks=(self.spatial.spatial_dims,))
        return self.spatial(self.channel(x))  # F -> F' -> F''

    def flops(self, spatial_shape: tuple[int, ...]) -> int:
        """The sum of the two halves' FLOPs."""
        return self.channel.flops(spatial_shape) + self.spatial.flops(spatial_shape)
