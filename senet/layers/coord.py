"""Coordinate attention, generalised to N-d.

Hou, Zhou, Feng, "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021
(arXiv:2103.02907). For 2-D input the pooling is factorised into two 1-D poolings: along each
axis, average over the other one (Eq. 4-5, z^h and z^w). Both are concatenated and transformed
together (Eq. 6, ``f = delta(F_1([z^h, z^w]))``: a shared 1x1 convolution, BN, h-swish), split
back, and each part gives one gate per axis (Eq. 7-8, ``g^h = sigmoid(F_h(f^h))``); the output is
``y = x * g^h * g^w`` (Eq. 9).

N-d: for d spatial axes, axis i's descriptor averages over every other axis, giving d gates whose
product reweights x. With d = 1 there is nothing to average over, so the descriptor is x itself and
the block is a position-wise channel gate.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from senet.layers.checks import check_input, excitation_width
from senet.layers.nd import check_spatial_dims, conv_nd, norm_nd

__all__ = ["CoordinateAttention"]


class CoordinateAttention(nn.Module):
    """Coordinate attention: ``Y = X * g_1 * ... * g_d``, gate g_i varying along spatial axis i only.

    Args (paper symbols in brackets):
        channels: number of channels [C].
        spatial_dims: number of spatial dims d (1, 2 or 3).
        reduction: reduction ratio [r] (16 here; the paper uses 32); hidden width ``max(min_channels, C // r)``.
        hidden_channels: the hidden width given directly.
        min_channels: lower bound on the hidden width (8, as in the authors' code).
        activation: the non-linearity [delta] (h-swish, ``nn.Hardswish``, as in the paper).

    Submodules (rank 2 maps to the authors' ``CoordAtt``: ``convs.0`` is ``conv_h``, ``convs.1`` is ``conv_w``):
    ``conv1`` [F_1] (shared 1x1 ConvNd, C -> h), ``bn1``, ``act``, ``convs`` [F_h, F_w, ...] (one 1x1 ConvNd
    h -> C per axis), ``gate`` (sigmoid). ``gate`` runs once per spatial axis; its i-th forward-hook output is
    g_i, of shape ``(N, C, 1, .., L_i, .., 1)``, exactly as used for reweighting.
    """

    def __init__(
        self,
        channels: int,
        *,
        spatial_dims: int = 2,
        reduction: int = 16,
        hidden_channels: int | None = None,
        min_channels: int = 8,
        activation: type[nn.Module] = nn.Hardswish,
    ) -> None:
        super().__init__()
        self.hidden_channels = excitation_width(channels, reduction, hidden_channels, min_channels=min_channels)
        self.channels = channels
        self.spatial_dims = check_spatial_dims(spatial_dims)
        conv, h = conv_nd(spatial_dims), self.hidden_channels
        self.conv1 = conv(channels, h, 1)  # F_1
        self.bn1 = norm_nd(spatial_dims)(h)
        self.act = activation()  # delta
        self.convs = nn.ModuleList(conv(h, channels, 1) for _ in range(spatial_dims))  # F_h, F_w, ...
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.channels, ranks=(self.spatial_dims,))
        n, c, *sizes = x.shape
        axes = range(2, x.ndim)
        # Axis i's descriptor z^i: average over every other spatial axis, (N, C, L_i).
        pooled = [x.mean([a for a in axes if a != i]) if x.ndim > 3 else x for i in axes]
        y = torch.cat(pooled, dim=2).view(n, c, sum(sizes), *([1] * (len(sizes) - 1)))  # (N, C, sum L, 1, ...)
        f = self.act(self.bn1(self.conv1(y)))  # (N, h, sum L, 1, ...)
        out = x
        for i, (part, conv) in enumerate(zip(f.split(sizes, dim=2), self.convs)):  # part: (N, h, L_i, 1, ...)
            shape = [n, c] + [1] * len(sizes)
            shape[2 + i] = sizes[i]
            out = out * self.gate(conv(part).reshape(shape))  # g_i: (N, C, 1, .., L_i, .., 1)
        return out

    def flops(self, spatial_shape: tuple[int, ...]) -> int:
        """Analytic FLOPs for one example (2 per multiply-add, biases and gates not counted, BN as its
        inference affine, 2 per element): the d poolings ``d*C*P`` (none for d=1), F_1 ``2*C*h*sum(L)``,
        BN ``2*h*sum(L)``, the per-axis convolutions ``2*h*C*sum(L)``, reweighting by d gates ``d*C*P``."""
        positions, length, d = math.prod(spatial_shape), sum(spatial_shape), len(spatial_shape)
        c, h = self.channels, self.hidden_channels
        pool = d * c * positions if d > 1 else 0
        return pool + 4 * c * h * length + 2 * h * length + d * c * positions

    def extra_repr(self) -> str:
        return f"channels={self.channels}, spatial_dims={self.spatial_dims}, hidden={self.hidden_channels}"
