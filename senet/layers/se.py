"""The Squeeze-and-Excitation block (Hu et al., 2018) for 1-, 2- and 3-D inputs.

Spec symbols: the input X has C channels; the squeeze gives the descriptor z (one number
per channel); the excitation ``s = gate(W2 phi(W1 z + b1) + b2)`` gives the gates s; the
output is ``Y = s * X`` with s broadcast over every spatial position.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from senet.layers.checks import check_choice, check_input, check_mask, excitation_width
from senet.layers.fused import scale_add_relu
from senet.layers.se_ops import squeeze_excite, squeeze_mean

__all__ = ["SqueezeExcite", "LocalChannelGate", "OnePlusTanh", "GATES", "SQUEEZES", "global_pool", "lengths_to_mask"]


class OnePlusTanh(nn.Module):
    """The spec's amplifying gate ``1 + tanh(v)``: range (0, 2), maximal slope 1 (sigmoid's is 1/4)."""

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return 1.0 + torch.tanh(v)


# The gate sigma of the excitation, by name. "tanh" and "relu" are the SENet paper's ablation
# alternatives (Table 13); "hard_sigmoid" is MobileNetV3's relu6(v + 3) / 6.
GATES: dict[str, type[nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "one_plus_tanh": OnePlusTanh,
    "hard_sigmoid": nn.Hardsigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
}

SQUEEZES: tuple[str, ...] = ("avg", "max", "avgmax")


def lengths_to_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """Boolean mask ``(N, max_length)``, True at the first ``lengths[n]`` positions of example n.

    For padded 1-D batches (audio, text): pass it as ``mask`` so that the squeeze ignores padding.
    """
    if not isinstance(lengths, torch.Tensor) or lengths.ndim != 1 or lengths.is_floating_point():
        raise TypeError(f"lengths must be a 1-D integer tensor, got {lengths!r}")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"max_length must be a positive int, got {max_length!r}")
    if lengths.numel() and (int(lengths.min()) < 1 or int(lengths.max()) > max_length):
        raise ValueError(f"lengths must lie in [1, max_length={max_length}], got {lengths.tolist()}")
    positions = torch.arange(max_length, device=lengths.device)  # (L,)
    return positions[None, :] < lengths[:, None]  # (N, L)


def global_pool(x: torch.Tensor, squeeze: str = "avg", mask: torch.Tensor | None = None) -> torch.Tensor:
    """The squeeze: ``(N, C, *spatial) -> (N, C)`` by global average, max, or their mean ("avgmax").

    With a validity ``mask`` ``(N, *spatial)`` only valid positions are pooled (an example with no
    valid position gets z = 0 for the average).
    """
    dims = tuple(range(2, x.ndim))
    if mask is None:
        avg = squeeze_mean(x) if squeeze != "max" else None  # x.mean(dims), layout-aware
        peak = x.amax(dims) if squeeze != "avg" else None
    else:
        valid = mask.unsqueeze(1)  # (N, 1, *spatial)
        avg = None
        if squeeze != "max":
            count = valid.sum(dims).clamp_min(1).to(x.dtype)  # (N, 1)
            avg = torch.where(valid, x, 0.0).sum(dims) / count
        peak = torch.where(valid, x, float("-inf")).amax(dims) if squeeze != "avg" else None
    if squeeze == "avg":
        return avg
    if squeeze == "max":
        return peak
    return 0.5 * (avg + peak)


class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation: ``Y = s(X) * X`` with one gate per example and channel.

    Works for any rank: input ``(N, C, L)``, ``(N, C, H, W)`` or ``(N, C, D, H, W)``.

    Args (spec symbols in brackets):
        channels: number of channels [C].
        reduction: reduction ratio [r]; the hidden width is ``h = C // r`` (the paper's floor).
        hidden_channels: the hidden width [C/r] given directly; overrides ``reduction``, which is
            then not checked against ``channels``.
        divisor: round h to the nearest multiple of ``divisor`` instead of flooring (timm's
            ``SEModule`` uses 8, with a minimum of 8).
        min_channels: lower bound on h (default 1, or ``divisor`` when rounding).
        squeeze: the squeeze giving z [z_c]: ``"avg"`` global average pooling (the paper),
            ``"max"`` global max pooling, ``"avgmax"`` the mean of both (timm's ``add_maxpool``).
        gate: the final non-linearity [sigma]: ``"sigmoid"`` (0, 1); ``"one_plus_tanh"`` (0, 2),
            which can amplify; ``"hard_sigmoid"``; ``"tanh"``; ``"relu"``.
        bias: whether the FC layers have biases [b1, b2].
        activation: the hidden non-linearity [phi], a module class (default ``nn.ReLU``).

    Submodules: ``fc1`` holds W1 ``(h, C)`` and b1, ``fc2`` holds W2 ``(C, h)`` and b2 (``nn.Linear``
    on the squeezed vector, numerically the same as two 1x1 convolutions); ``gate`` is the final
    non-linearity, whose output (seen by a forward hook) is the gate tensor s of shape
    ``(N, C, 1, ..., 1)`` exactly as used for reweighting.

    ``forward(x, mask=None)``: ``mask`` ``(N, *spatial)``, True at valid positions, restricts the
    squeeze to them (padded audio or text); see :func:`lengths_to_mask`.
    """

    def __init__(
        self,
        channels: int,
        *,
        reduction: int = 16,
        hidden_channels: int | None = None,
        divisor: int = 1,
        min_channels: int | None = None,
        squeeze: str = "avg",
        gate: str = "sigmoid",
        bias: bool = True,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        hidden = excitation_width(channels, reduction, hidden_channels, divisor, min_channels)
        self.channels = channels
        self.hidden_channels = hidden
        self.squeeze = check_choice("squeeze", squeeze, SQUEEZES)
        self.gate_name = check_choice("gate", gate, GATES)
        self.fc1 = nn.Linear(channels, hidden, bias=bias)  # W1, b1
        self.act = activation()  # phi
        self.fc2 = nn.Linear(hidden, channels, bias=bias)  # W2, b2
        self.gate = GATES[gate]()  # sigma

    def gates(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The gates s ``(N, C, 1, ..., 1)`` for input x (squeeze then excitation)."""
        z = global_pool(x, self.squeeze, mask)  # (N, C, *S) -> (N, C)
        return self.excite(z, x.ndim - 2)

    def excite(self, z: torch.Tensor, spatial_dims: int) -> torch.Tensor:
        """The excitation: gates s ``(N, C, 1, ..., 1)`` (``spatial_dims`` ones) from the descriptor z ``(N, C)``."""
        v = self.fc2(self.act(self.fc1(z)))  # (N, C) -> (N, h) -> (N, C)
        v = v.view(*v.shape, *([1] * spatial_dims))  # (N, C, 1, ..., 1)
        return self.gate(v)

    def scale_add_relu(self, x: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        """``relu(self(x) + identity)`` fused (SE at the end of a residual unit); same values and gradients.

        See :mod:`senet.layers.fused`; :func:`~senet.layers.fused.bn_se_add_relu` also fuses the norm
        before SE and keeps no extra activation for backward.
        """
        check_input(x, self.channels)
        return scale_add_relu(x, self.gates(x), identity)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None and self.squeeze == "avg":  # the paper's block, with a lean backward
            return squeeze_excite(x, self)  # x * excite(mean_p(x))
        check_input(x, self.channels)
        if mask is not None:
            check_mask(mask, x)
        return x * self.gates(x, mask)  # (N, C, *S) * (N, C, 1, ..., 1)

    def flops(self, spatial_shape: tuple[int, ...]) -> int:
        """Analytic FLOPs for one example: squeeze ``C*P`` (``2*C*P + 2*C`` for avgmax), excitation
        ``4*C*h`` (two FCs, 2 FLOPs per multiply-add, biases excluded), reweighting ``C*P``, where P
        is the number of spatial positions. The gate non-linearities are not counted (as in the spec)."""
        positions = math.prod(spatial_shape)
        pool = self.channels * positions if self.squeeze != "avgmax" else 2 * self.channels * (positions + 1)
        return pool + 4 * self.channels * self.hidden_channels + self.channels * positions

    def extra_repr(self) -> str:
        return f"channels={self.channels}, hidden={self.hidden_channels}, squeeze={self.squeeze!r}, gate={self.gate_name!r}"


class LocalChannelGate(nn.Module):
    """The spatially-variant alternative to SE (the spec's "SE vs. 1x1 Convolutions").

    Two 1x1 convolutions applied to the full map, no squeeze: the gate of channel c at position p is
    computed from the local feature vector ``X[:, p]`` only, ``s[:, c, p] = gate(W2 phi(W1 X[:, p] + b1) + b2)``,
    a local channel attention. Arguments are those of :class:`SqueezeExcite` that apply.

    ``fc1``/``fc2`` are ``nn.Linear`` applied along the channel axis (numerically a 1x1 convolution of
    any rank, weights ``(h, C)`` and ``(C, h)``); ``gate``'s output is the gate tensor ``(N, C, *spatial)``.
    """

    def __init__(
        self,
        channels: int,
        *,
        reduction: int = 16,
        hidden_channels: int | None = None,
        divisor: int = 1,
        min_channels: int | None = None,
        gate: str = "sigmoid",
        bias: bool = True,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        hidden = excitation_width(channels, reduction, hidden_channels, divisor, min_channels)
        self.channels = channels
        self.hidden_channels = hidden
        self.gate_name = check_choice("gate", gate, GATES)
        self.fc1 = nn.Linear(channels, hidden, bias=bias)
        self.act = activation()
        self.fc2 = nn.Linear(hidden, channels, bias=bias)
        self.gate = GATES[gate]()

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """The position-dependent gates ``(N, C, *spatial)``."""
        v = x.movedim(1, -1)  # (N, C, *S) -> (N, *S, C)
        v = self.fc2(self.act(self.fc1(v)))  # (N, *S, C) -> (N, *S, h) -> (N, *S, C)
        return self.gate(v.movedim(-1, 1))  # (N, C, *S)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.channels)
        return x * self.gates(x)

    def flops(self, spatial_shape: tuple[int, ...]) -> int:
        """Analytic FLOPs for one example: ``4*C*h`` per position for the two 1x1 convolutions plus ``C``
        per position for the reweighting (biases and gate non-linearities excluded)."""
        return math.prod(spatial_shape) * (4 * self.channels * self.hidden_channels + self.channels)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, hidden={self.hidden_channels}, gate={self.gate_name!r}"

