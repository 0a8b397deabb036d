"""Global Context (GC) block, N-d.

Cao, Xu, Lin, Wei, Hu, "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond",
ICCV Workshops 2019 (arXiv:1904.11492), Eq. 4:

    z_i = x_i + W_v2 ReLU(LN(W_v1 sum_j alpha_j x_j)),   alpha_j = softmax_j(W_k x_j)

context modelling by attention pooling (a 1x1 convolution W_k to one logit per position, softmax over
all positions), a bottleneck transform W_v1 (C -> C/r), LayerNorm, ReLU, W_v2 (C/r -> C), and fusion
by addition (the paper's default) or by scaling ``x * sigmoid(transform)`` (the paper's ablation).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn as nn

from senet.layers.checks import check_choice, check_input, excitation_width

__all__ = ["GlobalContext"]

# For each fusion: the module that turns the transform into the fusion term, and how it meets x.
_FUSION_GATES: dict[str, type[nn.Module]] = {"add": nn.Identity, "scale": nn.Sigmoid}


class GlobalContext(nn.Module):
    """GC block: ``Y = X + t`` (``fusion="add"``) or ``Y = X * sigmoid(t)`` (``"scale"``), t from attention pooling.

    Any rank: input ``(N, C, *spatial)`` with 1, 2 or 3 spatial dims.

    Args (paper symbols in brackets):
        channels: number of channels [C].
        reduction: bottleneck ratio [r] (16 in the paper; timm's default ratio is 1/8); hidden width ``C // r``.
        hidden_channels: the bottleneck width [C/r] given directly.
        fusion: ``"add"`` (default; the paper's choice) or ``"scale"``.
        activation: the transform's hidden non-linearity (ReLU).

    Submodules: ``conv_attn`` [W_k] (``nn.Linear(C, 1)`` along the channel axis, numerically a 1x1 conv
    of any rank); ``mlp`` with ``fc1`` [W_v1], ``norm`` (``LayerNorm(C/r, eps=1e-6)`` as timm; the authors'
    ``LayerNorm([C/r, 1, 1])`` uses eps 1e-5), ``act``, ``fc2`` [W_v2] (``nn.Linear`` on the context vector);
    ``gate``, whose forward-hook output is the fusion term ``(N, C, 1, ..., 1)`` as used: the sigmoid gate for
    ``"scale"``, the added transform itself (``gate`` is an identity) for ``"add"``.

    Initialisation as the authors' code: for ``"add"`` the last layer W_v2 (weight and bias) is zero, so a
    fresh block is the identity.
    """

    def __init__(
        self,
        channels: int,
        *,
        reduction: int = 16,
        hidden_channels: int | None = None,
        fusion: str = "add",
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.hidden_channels = excitation_width(channels, reduction, hidden_channels)
        self.channels = channels
        self.fusion = check_choice("fusion", fusion, _FUSION_GATES)
        h = self.hidden_channels
        self.conv_attn = nn.Linear(channels, 1)  # W_k
        self.mlp = nn.Sequential(
            OrderedDict(
                fc1=nn.Linear(channels, h),  # W_v1
                norm=nn.LayerNorm(h, eps=1e-6),
                act=activation(),
                fc2=nn.Linear(h, channels),  # W_v2
            )
        )
        self.gate = _FUSION_GATES[fusion]()
        if fusion == "add":
            nn.init.zeros_(self.mlp.fc2.weight)
            nn.init.zeros_(self.mlp.fc2.bias)

    def context(self, x: torch.Tensor) -> torch.Tensor:
        """The attention-pooled context ``sum_j alpha_j x_j``: ``(N, C, *spatial) -> (N, C)``."""
        flat = x.flatten(2)  # (N, C, P)
        logits = self.conv_attn(flat.transpose(1, 2))  # (N, P, C) -> (N, P, 1)
        alpha = logits.softmax(dim=1)  # over the P positions
        return torch.bmm(flat, alpha).squeeze(-1)  # (N, C, P) @ (N, P, 1) -> (N, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.channels)
        t = self.mlp(self.context(x))  # (N, C) -> (N, C/r) -> (N, C)
        term = self.gate(t.view(*t.shape, *([1] * (x.ndim - 2))))  # (N, C, 1, ..., 1)
        return x + term if self.fusion == "add" else x * term

    def flops(self, spatial_shape: tuple[int, ...]) -> int:
        """Analytic FLOPs for one example (2 per multiply-add, biases, softmax and gate not counted, LayerNorm
        as its affine, 2 per element): attention logits ``2*C*P``, weighted sum ``2*C*P``, transform
        ``4*C*h + 2*h``, fusion ``C*P``."""
        positions = math.prod(spatial_shape)
        c, h = self.channels, self.hidden_channels
        return 4 * c * positions + 4 * c * h + 2 * h + c * positions

    def extra_repr(self) -> str:
        return f"channels={self.channels}, hidden={self.hidden_channels}, fusion={self.fusion!r}"
