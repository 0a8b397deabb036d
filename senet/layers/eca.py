"""Efficient Channel Attention (ECA).

Wang, Wu, Zhu, Li, Zuo, Hu, "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural
Networks", CVPR 2020 (arXiv:1910.03151). The SE excitation is replaced by a 1-D convolution of
kernel size k across the channel axis of the pooled descriptor: no dimensionality reduction, and
each channel's gate sees exactly its k nearest channels (local cross-channel interaction).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from senet.layers.checks import check_input, check_positive_int
from senet.layers.nd import conv_nd

__all__ = ["ECA", "eca_kernel_size"]


def eca_kernel_size(channels: int, gamma: float = 2.0, beta: float = 1.0) -> int:
    """The paper's adaptive kernel size ``k = psi(C)`` (Eq. 12, as in the authors' code and timm).

    ``t = int(|log2(C) + b| / gamma)``; ``k = t`` if t is odd else ``t + 1``; at least 3.
    C=64 -> 3, 256 -> 5, 512 -> 5, 2048 -> 7.
    """
    check_positive_int("channels", channels)
    _check_positive_float("gamma", gamma)
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta):
        raise TypeError(f"beta must be a finite number, got {type(beta).__name__} {beta!r}")
    t = int(abs(math.log2(channels) + beta) / gamma)
    return max(t if t % 2 else t + 1, 3)


def _check_positive_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__} {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value}")
    return float(value)


class ECA(nn.Module):
    """ECA: ``s = sigmoid(conv1d_k(z))`` over the channel axis of ``z = GAP(X)``; ``Y = s * X``.

    Any rank: input ``(N, C, *spatial)`` with 1, 2 or 3 spatial dims.

    Args (paper symbols in brackets):
        channels: number of channels [C].
        kernel_size: the kernel size [k], odd; ``None`` (default) uses ``k = psi(C)``
            (:func:`eca_kernel_size`).
        gamma, beta: the constants of psi [gamma = 2, b = 1].

    Submodules: ``conv`` (``Conv1d(1, 1, k, padding=(k-1)//2, bias=False)`` sliding over the channels,
    the paper's weights w, shape ``(1, 1, k)``, same key and shape as ``timm.layers.EcaModule``); ``gate``
    (sigmoid), whose forward-hook output is the gate tensor s ``(N, C, 1, ..., 1)`` used for reweighting.
    """

    def __init__(
        self, channels: int, *, kernel_size: int | None = None, gamma: float = 2.0, beta: float = 1.0
    ) -> None:
        super().__init__()
        self.channels = check_positive_int("channels", channels)
        if kernel_size is None:
            kernel_size = eca_kernel_size(channels, gamma, beta)
        elif check_positive_int("kernel_size", kernel_size) % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.kernel_size = kernel_size
        self.conv = conv_nd(1)(1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)  # w
        self.gate = nn.Sigmoid()

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """The gates s ``(N, C, 1, ..., 1)``."""
        n, c = x.shape[:2]
        z = x.mean(tuple(range(2, x.ndim)))  # (N, C, *S) -> (N, C)
        v = self.conv(z.view(n, 1, c))  # (N, 1, C): the channels are the conv's length axis
        return self.gate(v.view(n, c, *([1] * (x.ndim - 2))))  # (N, C, 1, ..., 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.channels)
        return x * self.gates(x)

    def flops(self, spatial_shape: tuple[int, ...]) -> int:
        """Analytic FLOPs for one example (convention of ``SqueezeExcite.flops``): squeeze ``C*P``,
        the channel convolution ``2*k*C`` (2 per multiply-add, zero padding counted), reweighting ``C*P``."""
        positions = math.prod(spatial_shape)
        return 2 * self.channels * positions + 2 * self.kernel_size * self.channels

    def extra_repr(self) -> str:
        return f"channels={self.channels}, kernel_size={self.kernel_size}"
