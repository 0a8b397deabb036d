"""Spatial SE (sSE) and concurrent spatial and channel SE (scSE).

Roy, Navab, Wachinger, "Concurrent Spatial and Channel 'Squeeze & Excitation' in Fully
Convolutional Networks", MICCAI 2018 (arXiv:1803.02579), and the journal version "Recalibrating
Fully Convolutional Networks with Spatial and Channel 'Squeeze and Excitation' Blocks", IEEE TMI
2019 (arXiv:1808.08127), which compares the aggregations max, addition and multiplication.

- sSE: ``q = W_sq * U`` (a 1x1 convolution C -> 1), ``U_sSE = sigmoid(q) * U``: one gate per position.
- cSE: the SE block (:class:`~senet.layers.SqueezeExcite`).
- scSE: ``U_scSE = fuse(U_cSE, U_sSE)`` with fuse = addition (MICCAI paper), max (the authors'
  code and fvcore) or multiplication.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn

from senet.layers.checks import check_choice, check_input, check_positive_int
from senet.layers.se import SqueezeExcite

__all__ = ["SpatialSE", "ChannelSpatialSE", "FUSIONS"]

# How scSE combines U_cSE and U_sSE, by name.
FUSIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "add": torch.add,
    "max": torch.maximum,
    "mul": torch.mul,
}


class SpatialSE(nn.Module):
    """sSE: ``Y = sigmoid(W_sq * X) * X``, a spatial gate shared by all channels. Any rank.

    Args (paper symbols in brackets):
        channels: number of channels [C].
        bias: whether the 1x1 convolution has a bias (the authors' code: yes).

    Submodules: ``fc`` (``nn.Linear(C, 1)`` applied along the channel axis, numerically the 1x1
    convolution W_sq of any rank, weight ``(1, C)``); ``gate`` (sigmoid), whose forward-hook output is the
    gate tensor ``(N, 1, *spatial)`` used for reweighting.
    """

    def __init__(self, channels: int, *, bias: bool = True) -> None:
        super().__init__()
        self.channels = check_positive_int("channels", channels)
        self.fc = nn.Linear(channels, 1, bias=bias)  # W_sq
        self.gate = nn.Sigmoid()

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """The spatial gates ``(N, 1, *spatial)``."""
        q = self.fc(x.movedim(1, -1))  # (N, C, *S) -> (N, *S, C) -> (N, *S, 1)
        return self.gate(q.movedim(-1, 1))  # (N, 1, *S)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.channels)
        return x * self.gates(x)

    def flops(self, spatial_shape: tuple[int, ...]) -> int:
        """Analytic FLOPs for one example (convention of ``SqueezeExcite.flops``): the 1x1 convolution
        ``2*C*P``, reweighting ``C*P``."""
        return 3 * self.channels * math.prod(spatial_shape)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class ChannelSpatialSE(nn.Module):
    """scSE: ``Y = fuse(cSE(X), sSE(X))``. Any rank.

    Args (paper symbols in brackets):
        channels: number of channels [C].
        reduction: the cSE reduction ratio [r] (16 here as in SENet; the authors' code defaults to 2).
        hidden_channels: the cSE hidden width [C/r] given directly.
        fusion: ``"add"`` (MICCAI paper, default), ``"max"`` (authors' code, fvcore; best in the TMI
            paper) or ``"mul"``, applied element-wise to U_cSE and U_sSE.

    Submodules: ``cse`` (:class:`~senet.layers.SqueezeExcite`) and ``sse`` (:class:`SpatialSE`); the gate
    tensors are the forward-hook outputs of ``cse.gate`` ``(N, C, 1, ..., 1)`` and ``sse.gate``
    ``(N, 1, *spatial)``, in that order.
    """

    def __init__(
        self, channels: int, *, reduction: int = 16, hidden_channels: int | None = None, fusion: str = "add"
    ) -> None:
        super().__init__()
        self.fusion = check_choice("fusion", fusion, FUSIONS)
        self.cse = SqueezeExcite(channels, reduction=reduction, hidden_channels=hidden_channels)
        self.sse = SpatialSE(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.sse.channels)
        return FUSIONS[self.fusion](self.cse(x), self.sse(x))  # U_cSE, U_sSE: (N, C, *S) each

    def flops(self, spatial_shape: tuple[int, ...]) -> int:
        """cSE's and sSE's FLOPs plus ``C*P`` for the element-wise fusion."""
        fuse = self.sse.channels * math.prod(spatial_shape)
        return self.cse.flops(spatial_shape) + self.sse.flops(spatial_shape) + fuse

    def extra_repr(self) -> str:
        return f"fusion={self.fusion!r}"
