"""Style-based Recalibration Module (SRM).

Lee, Kim, Nam, "SRM: A Style-based Recalibration Module for Convolutional Neural Networks",
ICCV 2019 (arXiv:1903.10829). Style pooling (Eq. 1-2) gives each channel its style vector
``t_c = [mu_c, sigma_c]`` (mean and standard deviation over positions); style integration (Eq. 3-5)
gives ``z_c = w_c . t_c`` (a channel-wise fully connected layer: two weights per channel, no mixing of
channels), ``g_c = sigmoid(BN(z_c))``; the output is ``g * X``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from senet.layers.checks import check_input, check_positive_int
from senet.layers.nd import norm_nd

__all__ = ["SRM"]


class SRM(nn.Module):
    """SRM: ``Y = sigmoid(BN(w_c . [mu_c, sigma_c])) * X``. Any rank (1, 2 or 3 spatial dims).

    Args (paper symbols in brackets):
        channels: number of channels [C].

    As the authors' code: sigma is ``sqrt(var + 1e-5)`` with the unbiased variance (with a single spatial
    position the population variance, 0, is used instead of NaN); the channel-wise weights start at zero,
    so a fresh block gates every channel by ``sigmoid(BN bias) = 0.5``. The BatchNorm normalises z over
    the batch, so in training mode a batch needs at least 2 examples.

    Submodules and parameters: ``cfc`` [W, shape ``(C, 2)``: column 0 weighs the mean, column 1 the std],
    ``bn`` (BatchNorm over the ``(N, C)`` descriptor z), ``gate`` (sigmoid), whose forward-hook output is
    the gate tensor g ``(N, C, 1, ..., 1)`` used for reweighting.
    """

    eps: float = 1e-5

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = check_positive_int("channels", channels)
        self.cfc = nn.Parameter(torch.zeros(channels, 2))  # W: (C, 2)
        self.bn = norm_nd(1)(channels)  # BatchNorm1d over z (N, C)
        self.gate = nn.Sigmoid()

    def style(self, x: torch.Tensor) -> torch.Tensor:
        """Style pooling: ``(N, C, *spatial) -> (N, C, 2)``, the mean and std of each channel."""
        flat = x.flatten(2)  # (N, C, P)
        var, mean = torch.var_mean(flat, dim=2, correction=1 if flat.shape[2] > 1 else 0)  # (N, C) each
        return torch.stack([mean, (var + self.eps).sqrt()], dim=-1)  # (N, C, 2)

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """The gates g ``(N, C, 1, ..., 1)``."""
        z = (self.style(x) * self.cfc).sum(-1)  # (N, C, 2) * (C, 2) -> (N, C)
        z = self.bn(z)
        return self.gate(z.view(*z.shape, *([1] * (x.ndim - 2))))  # (N, C, 1, ..., 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.channels)
        return x * self.gates(x)

    def flops(self, spatial_shape: tuple[int, ...]) -> int:
        """Analytic FLOPs for one example (2 per multiply-add, BN as its inference affine, 2 per element,
        gate not counted): mean ``C*P``, std ``3*C*P`` (subtract, square, accumulate), channel-wise FC
        ``4*C``, BN ``2*C``, reweighting ``C*P``."""
        positions = math.prod(spatial_shape)
        return 5 * self.channels * positions + 6 * self.channels

    def extra_repr(self) -> str:
        return f"channels={self.channels}"
