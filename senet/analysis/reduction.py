"""Choosing the reduction ratio r ("The Reduction Ratio Hyperparameter").

The spec's model: validation loss grows quadratically with r (less capacity) and the complexity penalty
falls like the parameter count, ``C^2/r``::

    J(r) = kappa * r^2 / 2 + lam * C^2 / r        (kappa > 0: loss curvature, lam > 0: penalty strength)

``dJ/dr = kappa*r - lam*C^2/r^2`` vanishes at ``r* = (lam*C^2/kappa)^(1/3)``, the unique minimiser on r > 0
(J is convex there). **Spec erratum 1:** the spec prints ``r* = (2*lam*C^2/kappa)^(1/3)``, which is larger by
``2^(1/3) ~ 1.26`` and is not a stationary point of its own J. The qualitative reading holds: r* grows with C
and lam and falls with kappa.

:func:`fit_reduction` fits that model, plus a constant, to the validation losses of an r-sweep.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from senet.layers.checks import check_positive_int

__all__ = [
    "reduction_objective",
    "optimal_reduction",
    "spec_printed_reduction",
    "ReductionFit",
    "fit_reduction",
]


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def reduction_objective(
    reduction: float | np.ndarray, *, kappa: float, lam: float, channels: int
) -> float | np.ndarray:
    """The spec's ``J(r) = kappa*r^2/2 + lam*C^2/r`` (r may be an array)."""
    kappa, lam = _positive("kappa", kappa), _positive("lam", lam)
    channels = check_positive_int("channels", channels)
    r = np.asarray(reduction, dtype=float)
    if np.any(r <= 0):
        raise ValueError(f"reduction must be > 0, got {reduction!r}")
    value = kappa * r**2 / 2 + lam * channels**2 / r
    return float(value) if value.ndim == 0 else value


def optimal_reduction(*, kappa: float, lam: float, channels: int) -> float:
    """The true minimiser ``r* = (lam*C^2/kappa)^(1/3)`` of ``J(r) = kappa*r^2/2 + lam*C^2/r`` over r > 0.

    Args (spec symbols): ``kappa`` [kappa] curvature of the validation loss in r, ``lam`` [lambda] weight of
    the complexity penalty, ``channels`` [C].

    Spec erratum 1: the spec prints ``(2*lam*C^2/kappa)^(1/3)`` (see :func:`spec_printed_reduction`), which does
    not solve ``dJ/dr = kappa*r - lam*C^2/r^2 = 0``; it overshoots the minimiser by the factor ``2^(1/3)``.
    The result is a real number; round it to a divisor of C (or to a power of 2) to use it as a ratio.
    """
    kappa, lam = _positive("kappa", kappa), _positive("lam", lam)
    channels = check_positive_int("channels", channels)
    return (lam * channels**2 / kappa) ** (1.0 / 3.0)


def spec_printed_reduction(*, kappa: float, lam: float, channels: int) -> float:
    """The value the spec prints, ``(2*lam*C^2/kappa)^(1/3)`` = ``2^(1/3) * optimal_reduction(...)``; kept only to
    show the erratum (it is not the minimiser of J)."""
    return 2.0 ** (1.0 / 3.0) * optimal_reduction(kappa=kappa, lam=lam, channels=channels)


@dataclass(frozen=True)
class ReductionFit:
    """Least-squares fit of ``loss(r) ~ offset + kappa*r^2/2 + lam*C^2/r`` to an r-sweep.

    ``r_star`` is :func:`optimal_reduction` of the fitted ``kappa`` and ``lam`` (it depends only on their ratio
    ``lam*C^2/kappa``, not on the C chosen). ``rms_residual`` is the root-mean-square misfit of the losses.
    """

    channels: int
    kappa: float
    lam: float
    offset: float
    r_star: float
    reductions: tuple[float, ...]
    losses: tuple[float, ...]
    rms_residual: float

    def predict(self, reduction: float | Sequence[float] | np.ndarray) -> float | np.ndarray:
        """The fitted curve ``offset + kappa*r^2/2 + lam*C^2/r`` at ``reduction`` (a number or an array)."""
        r = np.asarray(reduction, dtype=float)
        if np.any(r <= 0):
            raise ValueError(f"reduction must be > 0, got {reduction!r}")
        value = self.offset + self.kappa * r**2 / 2 + self.lam * self.channels**2 / r
        return float(value) if value.ndim == 0 else value

    @property
    def min_loss(self) -> float:
        """The fitted loss at ``r_star``."""
        return float(self.predict(self.r_star))

    def to_dict(self) -> dict[str, object]:
        return {
            "channels": self.channels,
            "kappa": self.kappa,
            "lam": self.lam,
            "offset": self.offset,
            "r_star": self.r_star,
            "min_loss": self.min_loss,
            "rms_residual": self.rms_residual,
            "reductions": list(self.reductions),
            "losses": list(self.losses),
        }


def _finite_vector(name: str, values: object) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of numbers, got {values!r}") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got {array.tolist()}")
    return array


def fit_reduction(reductions: Sequence[float], losses: Sequence[float], *, channels: int) -> ReductionFit:
    """Fit the spec's J(r) plus a constant to validation ``losses`` measured at ``reductions``; return r*.

    Model: ``loss(r) = offset + kappa*r^2/2 + lam*C^2/r``, linear in (offset, kappa, lam), solved by ordinary
    least squares (columns scaled for conditioning). ``channels`` is the C of J (e.g. the widest stage's width;
    it scales ``lam`` only, r* does not depend on it).

    Raises ValueError for mismatched lengths, fewer than 3 distinct positive reductions (three unknowns), non-finite
    values, or a degenerate fit: ``kappa <= 0`` or ``lam <= 0`` means the losses do not have the U shape the model
    assumes, so J has no interior minimum and r* is undefined.
    """
    channels = check_positive_int("channels", channels)
    r = _finite_vector("reductions", reductions)
    y = _finite_vector("losses", losses)
    if r.shape != y.shape:
        raise ValueError(f"reductions and losses must have the same length, got {r.size} and {y.size}")
    if np.any(r <= 0):
        raise ValueError(f"reductions must be > 0, got {r.tolist()}")
    if np.unique(r).size < 3:
        raise ValueError(
            f"fit_reduction needs losses at >= 3 distinct reductions (3 unknowns: offset, kappa, lam), got {r.tolist()}"
        )
    design = np.stack([np.ones_like(r), r**2 / 2, channels**2 / r], axis=1)  # (n, 3)
    scale = np.abs(design).max(axis=0)
    solution, _, rank, _ = np.linalg.lstsq(design / scale, y, rcond=None)
    if rank < 3:
        raise ValueError(f"degenerate fit: the design for reductions {r.tolist()} has rank {rank} < 3")
    offset, kappa, lam = (solution / scale).tolist()
    if kappa <= 0 or lam <= 0:
        raise ValueError(
            f"degenerate fit: kappa={kappa:.4g}, lam={lam:.4g}; both must be > 0 for J(r) to have a minimum "
            f"(losses {y.tolist()} at reductions {r.tolist()} are not U-shaped in r)"
        )
    residual = y - design @ np.array([offset, kappa, lam])
    return ReductionFit(
        channels=channels,
        kappa=kappa,
        lam=lam,
        offset=offset,
        r_star=optimal_reduction(kappa=kappa, lam=lam, channels=channels),
        reductions=tuple(r.tolist()),
        losses=tuple(y.tolist()),
        rms_residual=float(np.sqrt(np.mean(residual**2))),
    )
