"""Channel gating as statistical estimation ("Theoretical Underpinnings of Channel Gating").

Two closed-form models from the spec, as functions that tests check by Monte Carlo simulation.

**Bias-variance of a gated sum.** Channels ``x_i = mu_i + n_i`` with independent zero-mean noise of variance
``sigma_i^2``; fixed (data-independent) gates ``g_i``; the estimator ``T = sum_i g_i x_i`` of ``sum_i mu_i``:

- bias ``E[T] - sum mu_i = sum_i (g_i - 1) mu_i``,
- variance ``sum_i g_i^2 sigma_i^2``,
- MSE = bias^2 + variance.

**Gating as adaptive regularisation.** ``Z = beta*X + eps`` with ``E[X] = 0``, ``Var X = sigma_x^2``, eps
zero-mean with variance ``sigma_eps^2`` and independent of X; the gate g minimises
``J(g) = E[(Z - g X)^2] + lam*g^2 = (beta - g)^2 sigma_x^2 + sigma_eps^2 + lam*g^2``, giving the ridge solution
``g* = beta * sigma_x^2 / (sigma_x^2 + lam)``. **Spec erratum 2:** the shrinkage factor
``sigma_x^2 / (sigma_x^2 + lam)`` *grows* towards 1 with ``sigma_x^2``: under this model a higher-variance
feature is shrunk *less* (its signal dominates the fixed penalty), not more as the spec's prose says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "GatedEstimate",
    "gated_sum_stats",
    "noise_gates",
    "optimal_noise_gamma",
    "optimal_free_gates",
    "shrinkage_factor",
    "shrinkage_gate",
    "shrinkage_objective",
]


def _vector(name: str, values: object, *, nonnegative: bool = False) -> np.ndarray:
    try:
        array = np.atleast_1d(np.asarray(values, dtype=float))
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or a sequence of numbers, got {values!r}") from None
    if array.ndim != 1 or not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be a finite 1-D sequence, got {values!r}")
    if nonnegative and np.any(array < 0):
        raise ValueError(f"{name} must be >= 0, got {array.tolist()}")
    return array


def _scalar(name: str, value: object, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if not positive and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return float(value)


def _channels(mu: object, sigma2: object) -> tuple[np.ndarray, np.ndarray]:
    mu, sigma2 = _vector("mu", mu), _vector("sigma2", sigma2, nonnegative=True)
    if mu.shape != sigma2.shape:
        raise ValueError(f"mu and sigma2 must have the same length, got {mu.size} and {sigma2.size}")
    return mu, sigma2


@dataclass(frozen=True)
class GatedEstimate:
    """Bias, variance and MSE of the gated sum ``sum_i g_i x_i`` as an estimator of ``sum_i mu_i``."""

    bias: float
    variance: float

    @property
    def bias2(self) -> float:
        return self.bias**2

    @property
    def mse(self) -> float:
        return self.bias**2 + self.variance


def gated_sum_stats(gates: object, mu: object, sigma2: object) -> GatedEstimate:
    """Exact bias, variance and MSE of ``T = sum_i g_i x_i`` for ``x_i = mu_i + n_i``.

    Assumptions: the noises n_i are independent, zero-mean, with variances ``sigma2[i]``; the gates are fixed
    numbers (not computed from the same x). Then ``bias = sum (g_i - 1) mu_i`` and ``variance = sum g_i^2 sigma_i^2``.
    """
    mu, sigma2 = _channels(mu, sigma2)
    g = _vector("gates", gates)
    if g.shape != mu.shape:
        raise ValueError(f"gates must have one entry per channel ({mu.size}), got {g.size}")
    return GatedEstimate(bias=float(np.sum((g - 1.0) * mu)), variance=float(np.sum(g**2 * sigma2)))


def noise_gates(sigma2: object, gamma: float) -> np.ndarray:
    """The spec's gate family ``g_i = 1 / (1 + gamma * sigma_i^2)``: 1 for noiseless channels, -> 0 as noise grows.

    ``gamma >= 0`` (``math.inf`` closes every noisy channel)."""
    sigma2 = _vector("sigma2", sigma2, nonnegative=True)
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or math.isnan(gamma) or gamma < 0:
        raise ValueError(f"gamma must be a number >= 0, got {gamma!r}")
    if math.isinf(gamma):
        return np.where(sigma2 > 0, 0.0, 1.0)
    return 1.0 / (1.0 + gamma * sigma2)


def _family_mse(gammas: np.ndarray, mu: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
    g = 1.0 / (1.0 + gammas[:, None] * sigma2[None, :])  # (G, n)
    return ((g - 1.0) @ mu) ** 2 + (g**2) @ sigma2


def optimal_noise_gamma(mu: object, sigma2: object, *, tol: float = 1e-10) -> float:
    """The ``gamma >= 0`` minimising the MSE of ``sum_i g_i x_i`` over the family ``g_i = 1/(1 + gamma*sigma_i^2)``.

    Same assumptions as :func:`gated_sum_stats`. No closed form in general (for one channel it is the Wiener gate,
    ``gamma = 1/mu^2``, i.e. ``g = mu^2/(mu^2 + sigma^2)``), so the MSE is scanned on a log grid of gamma reaching
    six decades beyond ``1/mean(sigma^2)`` and ``1/(sum |mu|)^2``, and the best cell is refined by golden-section
    search on log(gamma) to tolerance ``tol``. Returns 0 when no channel is noisy, ``math.inf`` when closing every
    noisy channel is best (e.g. all ``mu = 0``).
    """
    mu, sigma2 = _channels(mu, sigma2)
    if not np.any(sigma2 > 0):
        return 0.0
    # gamma* lies near 1/sigma^2 (noise scale) or 1/(sum |mu|)^2 (signal scale; one channel: 1/mu^2)
    scales = (1.0 / float(np.mean(sigma2[sigma2 > 0])), 1.0 / max(float(np.sum(np.abs(mu))) ** 2, 1e-300))
    grid = np.logspace(math.log10(min(scales)) - 6, math.log10(max(scales)) + 6, 1201)
    mse = _family_mse(grid, mu, sigma2)
    best = int(np.argmin(mse))
    closed = noise_gates(sigma2, math.inf)
    limit = float(np.sum((closed - 1.0) * mu) ** 2 + np.sum(closed**2 * sigma2))
    if limit <= float(mse[best]):  # closing every noisy channel is at least as good as any grid point
        return math.inf
    lo, hi = math.log(grid[max(best - 1, 0)]), math.log(grid[min(best + 1, grid.size - 1)])
    inv_phi = (math.sqrt(5.0) - 1.0) / 2.0

    def f(log_gamma: float) -> float:
        return float(_family_mse(np.array([math.exp(log_gamma)]), mu, sigma2)[0])

    a, b = lo, hi
    c, d = b - inv_phi * (b - a), a + inv_phi * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - inv_phi * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + inv_phi * (b - a)
            fd = f(d)
    return math.exp((a + b) / 2)


def optimal_free_gates(mu: object, sigma2: object) -> np.ndarray:
    """The unconstrained MSE-optimal gates for ``sum_i g_i x_i`` (every ``sigma_i^2 > 0``).

    Minimising ``(sum (g_i - 1) mu_i)^2 + sum g_i^2 sigma_i^2`` is the linear system ``(mu mu^T + D) g = mu (1^T mu)``,
    ``D = diag(sigma^2)``; by Sherman-Morrison
    ``g_i = (sum_j mu_j) (mu_i / sigma_i^2) / (1 + sum_j mu_j^2 / sigma_j^2)``.
    The optimal gate is proportional to the channel's signal-to-noise ``mu_i / sigma_i^2``; the spec's family
    ``1/(1 + gamma*sigma_i^2)`` is the best it can do with one shared gamma.
    """
    mu, sigma2 = _channels(mu, sigma2)
    if np.any(sigma2 <= 0):
        raise ValueError(f"sigma2 must be > 0 for every channel, got {sigma2.tolist()}")
    snr = mu / sigma2
    return float(np.sum(mu)) * snr / (1.0 + float(np.sum(mu * snr)))


def shrinkage_factor(sigma_x2: float, lam: float) -> float:
    """The ridge shrinkage ``sigma_x^2 / (sigma_x^2 + lam)`` in ``[0, 1)``; increasing in ``sigma_x^2`` (erratum 2)."""
    sigma_x2, lam = _scalar("sigma_x2", sigma_x2), _scalar("lam", lam)
    if sigma_x2 + lam == 0:
        raise ValueError("sigma_x2 and lam cannot both be 0 (the objective is flat in g)")
    return sigma_x2 / (sigma_x2 + lam)


def shrinkage_gate(beta: float, sigma_x2: float, lam: float) -> float:
    """The minimiser ``g* = beta * sigma_x^2 / (sigma_x^2 + lam)`` of :func:`shrinkage_objective`.

    Assumptions: ``Z = beta*X + eps``, X zero-mean with variance ``sigma_x2``, eps zero-mean and independent of X,
    ``lam >= 0``. Setting ``dJ/dg = -2(beta - g) sigma_x^2 + 2 lam g`` to zero gives g*. Erratum 2: for fixed lam
    the factor grows towards 1 with ``sigma_x2``, so higher-variance features are shrunk less under this model.
    """
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta):
        raise TypeError(f"beta must be a finite number, got {beta!r}")
    return float(beta) * shrinkage_factor(sigma_x2, lam)


def shrinkage_objective(gate: float, *, beta: float, sigma_x2: float, lam: float, noise_var: float) -> float:
    """``J(g) = E[(Z - g X)^2] + lam*g^2 = (beta - g)^2 sigma_x^2 + sigma_eps^2 + lam*g^2`` under the assumptions of
    :func:`shrinkage_gate` (``noise_var`` is ``sigma_eps^2``)."""
    sigma_x2, lam, noise_var = _scalar("sigma_x2", sigma_x2), _scalar("lam", lam), _scalar("noise_var", noise_var)
    return (beta - gate) ** 2 * sigma_x2 + noise_var + lam * gate**2
