"""Where to put the gate, and what the two non-linearities of the excitation do ("Architectural Placement",
"two-stage gating").

**Placement, stated precisely.** For a *fixed* gate vector ``s >= 0``, positive homogeneity gives
``ReLU(s*x) = s*ReLU(x)`` (also LeakyReLU); SiLU and GELU are not positively homogeneous, so the two orders
differ (:func:`homogeneity_gap` measures by how much). **Spec erratum 3:** a real SE block computes its gates from
its own input, so SE before the ReLU (gates ``s(x)``) and SE after it (gates ``s(ReLU(x))``) are different
functions: ``ReLU(SE(x)) = s(x)*ReLU(x)`` but ``SE(ReLU(x)) = s(ReLU(x))*ReLU(x)``. They agree when the gate is held
fixed; :func:`se_placement_gap` measures both cases on a real block.

**Two-stage gating.** In ``s = sigmoid(W2 ReLU(W1 z + b1) + b2)`` the ReLU is a hard gate that prunes the hidden
units with a negative pre-activation and the sigmoid a soft gate in (0, 1); :func:`two_stage_gating` reports the
fraction pruned and how saturated the final gates are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from senet.layers.checks import check_input
from senet.layers.se import SqueezeExcite, global_pool

__all__ = [
    "homogeneity_gap",
    "PlacementGap",
    "se_placement_gap",
    "GateSaturation",
    "gate_saturation",
    "TwoStageGating",
    "two_stage_gating",
]


def _check_tensor(name: str, value: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point torch.Tensor, got {type(value).__name__}")
    return value


def homogeneity_gap(
    activation: Callable[[torch.Tensor], torch.Tensor], gates: torch.Tensor, x: torch.Tensor
) -> float:
    """``max |act(s*x) - s*act(x)|`` for fixed non-negative gates ``s`` broadcastable to ``x``.

    0 for ReLU (exactly) and LeakyReLU (up to rounding): both are positively homogeneous of degree 1. Positive for
    SiLU, GELU, ... : for them SE before and after the activation differ even with a fixed gate.
    """
    s, x = _check_tensor("gates", gates), _check_tensor("x", x)
    if not callable(activation):
        raise TypeError(f"activation must be callable (e.g. nn.ReLU()), got {type(activation).__name__}")
    if bool((s < 0).any()):
        raise ValueError("gates must be >= 0: positive homogeneity says nothing about negative scales")
    try:
        torch.broadcast_shapes(s.shape, x.shape)
    except RuntimeError:
        raise ValueError(f"gates of shape {tuple(s.shape)} do not broadcast to x of shape {tuple(x.shape)}") from None
    with torch.no_grad():
        return float((activation(s * x) - s * activation(x)).abs().max())


@dataclass(frozen=True)
class PlacementGap:
    """SE before vs after an activation on one batch (max absolute differences)."""

    adaptive: float  # |act(SE(x)) - SE(act(x))|: gates from x vs from act(x), a real SE block
    fixed: float  # |act(s*x) - s*act(x)| with s = s(x) held fixed in both orders
    gate_change: float  # |s(x) - s(act(x))|: how much the gates themselves move


def se_placement_gap(se: nn.Module, x: torch.Tensor, *, activation: nn.Module | None = None) -> PlacementGap:
    """Measure on a real SE block how much "SE then activation" and "activation then SE" differ (erratum 3).

    ``se`` is a module with ``gates(x)`` and ``forward(x) = gates(x) * x`` (``SqueezeExcite``); ``activation``
    defaults to ``nn.ReLU()``. With ReLU, ``fixed`` is exactly 0 while ``adaptive`` is in general not, because the
    pooled descriptor of ``ReLU(x)`` differs from that of x whenever x has negative entries.
    """
    if not callable(getattr(se, "gates", None)):
        raise TypeError(f"se must have a gates(x) method (e.g. SqueezeExcite), got {type(se).__name__}")
    x = _check_tensor("x", x)
    act = nn.ReLU() if activation is None else activation
    with torch.no_grad():
        s_x, s_act = se.gates(x), se.gates(act(x))  # (N, C, 1, ..., 1) each
        before, after = act(se(x)), se(act(x))
        return PlacementGap(
            adaptive=float((before - after).abs().max()),
            fixed=float((act(s_x * x) - s_x * act(x)).abs().max()),
            gate_change=float((s_x - s_act).abs().max()),
        )


@dataclass(frozen=True)
class GateSaturation:
    """Summary of a set of gate values: mean, spread, and the fractions near 0 (closed) and near 1 (open)."""

    mean: float
    std: float
    near_zero: float  # fraction < low
    near_one: float  # fraction > high
    count: int


def gate_saturation(gates: torch.Tensor, *, low: float = 0.05, high: float = 0.95) -> GateSaturation:
    """Saturation statistics of a gate tensor of any shape (fractions ``< low`` and ``> high``)."""
    gates = _check_tensor("gates", gates)
    if not 0 <= low < high:
        raise ValueError(f"need 0 <= low < high, got low={low}, high={high}")
    if gates.numel() == 0:
        raise ValueError("gates is empty")
    g = gates.detach().double().flatten()
    return GateSaturation(
        mean=float(g.mean()),
        std=float(g.std(unbiased=False)),
        near_zero=float((g < low).double().mean()),
        near_one=float((g > high).double().mean()),
        count=g.numel(),
    )


@dataclass(frozen=True)
class TwoStageGating:
    """The hard (ReLU) and soft (gate) stages of an SE excitation on one batch."""

    pruned_fraction: float  # fraction of (example, hidden unit) pairs that the activation sets to exactly 0
    pruned_per_unit: torch.Tensor  # (h,) fraction of examples for which each hidden unit is pruned
    dead_units: int  # hidden units pruned for every example of the batch
    saturation: GateSaturation  # of the final gates s


def two_stage_gating(se: SqueezeExcite, x: torch.Tensor, *, low: float = 0.05, high: float = 0.95) -> TwoStageGating:
    """How many hidden units the ReLU prunes for the inputs ``x``, and how saturated the gates are."""
    if not isinstance(se, SqueezeExcite):
        raise TypeError(f"se must be a SqueezeExcite, got {type(se).__name__}")
    check_input(x, se.channels)
    with torch.no_grad():
        z = global_pool(x, se.squeeze)  # (N, C, *S) -> (N, C)
        hidden = se.act(se.fc1(z))  # (N, h)
        pruned = (hidden == 0).double()
        per_unit = pruned.mean(0)  # (h,)
        return TwoStageGating(
            pruned_fraction=float(pruned.mean()),
            pruned_per_unit=per_unit.float(),
            dead_units=int((per_unit == 1).sum()),
            saturation=gate_saturation(se.gates(x), low=low, high=high),
        )
