"""Effective Squeeze-and-Excitation (eSE), from CenterMask / VoVNetV2.

Lee & Park, "CenterMask: Real-Time Anchor-Free Instance Segmentation", CVPR 2020
(arXiv:1911.06667), Sec. 3.3: SE with its two FC layers replaced by one FC layer that keeps the
C channels, so no channel information is lost to the bottleneck, and a hard-sigmoid gate.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from senet.layers.checks import check_choice, check_input, check_positive_int
from senet.layers.se import GATES, SQUEEZES, global_pool

__all__ = ["EffectiveSE"]


class EffectiveSE(nn.Module):
    """eSE: ``Y = s * X`` with ``s = hsigmoid(W_C z + b)``, one FC C -> C, no reduction.

    Any rank: input ``(N, C, *spatial)`` with 1, 2 or 3 spatial dims.

    Args (paper symbols in brackets):
        channels: number of channels [C].
        squeeze: the pooling giving z [F_gap]: ``"avg"`` (the paper), ``"max"``, ``"avgmax"``
            (timm's ``add_maxpool``), as in :class:`~senet.layers.SqueezeExcite`.
        gate: the non-linearity [sigma, hsigmoid in the paper]; a name from ``senet.layers.GATES``.
        bias: whether the FC has a bias [b].

    Submodules: ``fc`` (``nn.Linear(C, C)`` on the squeezed vector, the paper's W_C; timm stores the
    same numbers as a 1x1 ``Conv2d`` named ``fc``); ``gate``, whose forward-hook output is the gate
    tensor s ``(N, C, 1, ..., 1)`` used for reweighting. Matches ``timm.layers.EffectiveSEModule``.
    """

    def __init__(self, channels: int, *, squeeze: str = "avg", gate: str = "hard_sigmoid", bias: bool = True) -> None:
        super().__init__()
        self.channels = check_positive_int("channels", channels)
        self.squeeze = check_choice("squeeze", squeeze, SQUEEZES)
        self.gate_name = check_choice("gate", gate, GATES)
        self.fc = nn.Linear(channels, channels, bias=bias)  # W_C, b
        self.gate = GATES[gate]()

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """The gates s ``(N, C, 1, ..., 1)``."""
        z = global_pool(x, self.squeeze)  # (N, C, *S) -> (N, C)
        v = self.fc(z)  # (N, C) -> (N, C)
        return self.gate(v.view(*v.shape, *([1] * (x.ndim - 2))))  # (N, C, 1, ..., 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.channels)
        return x * self.gates(x)

    def flops(self, spatial_shape: tuple[int, ...]) -> int:
        """Analytic FLOPs for one example (convention of ``SqueezeExcite.flops``: 2 per multiply-add,
        biases and gate non-linearity not counted): squeeze ``C*P`` (``2*C*P + 2*C`` for avgmax),
        FC ``2*C*C``, reweighting ``C*P``; P is the number of spatial positions."""
        positions = math.prod(spatial_shape)
        c = self.channels
        pool = c * positions if self.squeeze != "avgmax" else 2 * c * (positions + 1)
        return pool + 2 * c * c + c * positions

    def extra_repr(self) -> str:
        return f"channels={self.channels}, squeeze={self.squeeze!r}, gate={self.gate_name!r}"
