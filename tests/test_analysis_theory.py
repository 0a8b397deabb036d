"""senet.analysis theory: gated-sum bias-variance and ridge shrinkage (erratum 2), checked by Monte Carlo.

Simulations use ``numpy.random.default_rng(0)``; tolerances are stated at each check (a few standard errors).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize, minimize_scalar

from senet.analysis import (
    gated_sum_stats,
    noise_gates,
    optimal_free_gates,
    optimal_noise_gamma,
    shrinkage_factor,
    shrinkage_gate,
    shrinkage_objective,
)

MU = np.array([1.0, 2.0, 0.5, -1.0, 3.0])
SIGMA2 = np.array([0.25, 4.0, 1.0, 9.0, 0.5])
SAMPLES = 200_000


def _simulate(gates: np.ndarray, seed: int = 0) -> np.ndarray:
    """SAMPLES draws of sum_i g_i x_i with x_i = mu_i + n_i, n_i ~ N(0, sigma_i^2) independent."""
    rng = np.random.default_rng(seed)
    x = MU + rng.standard_normal((SAMPLES, MU.size)) * np.sqrt(SIGMA2)
    return x @ gates


@pytest.mark.parametrize("gates", [np.ones(5), np.array([0.9, 0.2, 0.6, 0.1, 1.0]), noise_gates(SIGMA2, 0.7)])
def test_gated_sum_stats_match_monte_carlo(gates):
    stats = gated_sum_stats(gates, MU, SIGMA2)
    assert stats.bias == pytest.approx(np.sum((gates - 1) * MU))
    assert stats.variance == pytest.approx(np.sum(gates**2 * SIGMA2))
    estimates = _simulate(gates)
    errors = estimates - MU.sum()
    # bias: within 4 standard errors; variance and MSE: within 2% (their standard error is about 0.3%)
    assert abs(errors.mean() - stats.bias) < 4 * math.sqrt(stats.variance / SAMPLES)
    assert estimates.var() == pytest.approx(stats.variance, rel=0.02)
    assert np.mean(errors**2) == pytest.approx(stats.mse, rel=0.02)
    assert stats.mse == pytest.approx(stats.bias2 + stats.variance)


def test_noise_gate_family():
    g = noise_gates([0.0, 0.5, 2.0, 10.0], 1.0)
    assert g.tolist() == pytest.approx([1.0, 1 / 1.5, 1 / 3, 1 / 11])
    assert np.all(np.diff(g) < 0)  # noisier channel, smaller gate
    assert noise_gates(SIGMA2, 0.0).tolist() == [1.0] * 5
    assert noise_gates([0.0, 1.0], math.inf).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="gamma"):
        noise_gates(SIGMA2, -1.0)
    with pytest.raises(ValueError, match="sigma2"):
        noise_gates([-1.0], 1.0)


def test_optimal_noise_gamma_one_channel_is_wiener():
    # one channel: MSE(g) = (g-1)^2 mu^2 + g^2 sigma^2 is minimal at g = mu^2/(mu^2+sigma^2), i.e. gamma = 1/mu^2
    for mu, sigma2 in ((2.0, 1.0), (0.1, 5.0), (30.0, 0.01)):
        gamma = optimal_noise_gamma([mu], [sigma2])
        assert gamma == pytest.approx(1 / mu**2, rel=1e-6)
        assert noise_gates([sigma2], gamma)[0] == pytest.approx(mu**2 / (mu**2 + sigma2), rel=1e-6)


def test_optimal_noise_gamma_minimises_mse_numerically_and_in_simulation():
    gamma = optimal_noise_gamma(MU, SIGMA2)

    def mse(log_gamma: float) -> float:
        return gated_sum_stats(noise_gates(SIGMA2, math.exp(log_gamma)), MU, SIGMA2).mse

    numeric = minimize_scalar(mse, bounds=(-15, 15), method="bounded", options={"xatol": 1e-10})
    assert gamma == pytest.approx(math.exp(numeric.x), rel=1e-4)
    assert mse(math.log(gamma)) <= numeric.fun + 1e-12
    # simulation, with common random numbers: gamma* beats gamma*/3, 3*gamma*, no gating and closing everything
    truth = MU.sum()

    def simulated(g: float) -> float:
        return float(np.mean((_simulate(noise_gates(SIGMA2, g)) - truth) ** 2))

    best = simulated(gamma)
    assert best == pytest.approx(mse(math.log(gamma)), rel=0.02)
    for other in (gamma / 3, 3 * gamma, 0.0, 1e6):
        assert best < simulated(other)


def test_optimal_noise_gamma_edge_cases():
    assert optimal_noise_gamma([1.0, 2.0], [0.0, 0.0]) == 0.0  # nothing to suppress
    assert optimal_noise_gamma([0.0, 0.0], [1.0, 2.0]) == math.inf  # pure noise: close every gate
    with pytest.raises(ValueError, match="same length"):
        optimal_noise_gamma([1.0], [1.0, 2.0])


def test_optimal_free_gates():
    g = optimal_free_gates(MU, SIGMA2)
    # the normal equations (mu mu^T + D) g = mu (1^T mu)
    assert np.allclose((np.outer(MU, MU) + np.diag(SIGMA2)) @ g, MU * MU.sum())
    numeric = minimize(lambda v: gated_sum_stats(v, MU, SIGMA2).mse, np.ones(5), method="BFGS", options={"gtol": 1e-10})
    assert np.allclose(g, numeric.x, atol=1e-5)
    # proportional to the signal-to-noise mu_i / sigma_i^2, and at least as good as the one-gamma family
    assert np.allclose(g / (MU / SIGMA2), g[0] / (MU[0] / SIGMA2[0]))
    family = gated_sum_stats(noise_gates(SIGMA2, optimal_noise_gamma(MU, SIGMA2)), MU, SIGMA2).mse
    assert gated_sum_stats(g, MU, SIGMA2).mse <= family
    with pytest.raises(ValueError, match="sigma2"):
        optimal_free_gates(MU, np.zeros(5))


@pytest.mark.parametrize(
    ("beta", "sigma_x2", "lam", "noise_var"), [(1.0, 2.0, 0.5, 1.0), (-0.7, 0.3, 1.0, 0.2), (2.0, 5.0, 0.0, 1.0)]
)
def test_shrinkage_gate_minimises_objective_and_simulation(beta, sigma_x2, lam, noise_var):
    g_star = shrinkage_gate(beta, sigma_x2, lam)
    assert g_star == pytest.approx(beta * sigma_x2 / (sigma_x2 + lam))
    J = lambda g: shrinkage_objective(g, beta=beta, sigma_x2=sigma_x2, lam=lam, noise_var=noise_var)  # noqa: E731
    numeric = minimize_scalar(J, bounds=(-10, 10), method="bounded", options={"xatol": 1e-10})
    assert numeric.x == pytest.approx(g_star, abs=1e-6)
    # simulation: X ~ N(0, sigma_x2), eps ~ N(0, noise_var) independent, Z = beta X + eps
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, math.sqrt(sigma_x2), SAMPLES)
    z = beta * x + rng.normal(0.0, math.sqrt(noise_var), SAMPLES)
    sample_g = np.mean(x * z) / (np.mean(x * x) + lam)  # minimiser of the sample objective
    assert sample_g == pytest.approx(g_star, abs=0.01)  # about 5 standard errors
    sample_J = np.mean((z - g_star * x) ** 2) + lam * g_star**2
    assert sample_J == pytest.approx(J(g_star), rel=0.02)


def test_shrinkage_direction_erratum_2():
    # The factor sigma_x^2 / (sigma_x^2 + lam) GROWS towards 1 with the variance: higher-variance features are
    # shrunk LESS under the spec's model, contrary to its prose.
    variances = [0.01, 0.1, 1.0, 10.0, 100.0, 1e4]
    factors = [shrinkage_factor(v, 1.0) for v in variances]
    assert all(a < b for a, b in zip(factors, factors[1:]))
    assert factors[-1] == pytest.approx(1.0, abs=1e-3) and factors[0] < 0.01
    low, high = shrinkage_gate(1.0, 0.25, 1.0), shrinkage_gate(1.0, 4.0, 1.0)
    assert (low, high) == pytest.approx((0.2, 0.8))
    assert 1 - high < 1 - low  # the high-variance feature loses less of its coefficient
    assert shrinkage_factor(2.0, 0.0) == 1.0  # no penalty, no shrinkage


def test_theory_rejects_bad_input():
    with pytest.raises(ValueError, match="gates"):
        gated_sum_stats([1.0, 1.0], MU, SIGMA2)
    with pytest.raises(ValueError, match="sigma2"):
        gated_sum_stats(np.ones(5), MU, -SIGMA2)
    with pytest.raises(ValueError, match="lam"):
        shrinkage_gate(1.0, 1.0, -0.5)
    with pytest.raises(TypeError, match="beta"):
        shrinkage_gate("1", 1.0, 1.0)
    with pytest.raises(ValueError, match="both be 0"):
        shrinkage_factor(0.0, 0.0)
