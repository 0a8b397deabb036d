"""senet.analysis reduction ratio: J(r), its true minimiser (erratum 1) and the fit to an r-sweep."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from senet.analysis import (
    ReductionFit,
    fit_reduction,
    optimal_reduction,
    reduction_objective,
    spec_printed_reduction,
)

CASES = [(1.0, 1.0, 64), (0.02, 1e-4, 256), (3.0, 0.5, 2048), (1e-3, 1e-6, 16)]


@pytest.mark.parametrize(("kappa", "lam", "channels"), CASES)
def test_optimal_reduction_is_the_numerical_minimiser(kappa, lam, channels):
    r_star = optimal_reduction(kappa=kappa, lam=lam, channels=channels)
    assert r_star == pytest.approx((lam * channels**2 / kappa) ** (1 / 3), rel=1e-12)
    J = lambda r: reduction_objective(r, kappa=kappa, lam=lam, channels=channels)  # noqa: E731
    numeric = minimize_scalar(J, bounds=(r_star / 100, r_star * 100), method="bounded", options={"xatol": 1e-10})
    assert numeric.x == pytest.approx(r_star, rel=1e-4)
    # stationarity: dJ/dr = kappa*r - lam*C^2/r^2 = 0 at r*
    assert kappa * r_star - lam * channels**2 / r_star**2 == pytest.approx(0.0, abs=1e-9 * kappa * r_star)


@pytest.mark.parametrize(("kappa", "lam", "channels"), CASES)
def test_spec_printed_value_is_not_the_minimiser(kappa, lam, channels):
    r_star = optimal_reduction(kappa=kappa, lam=lam, channels=channels)
    printed = spec_printed_reduction(kappa=kappa, lam=lam, channels=channels)
    assert printed == pytest.approx((2 * lam * channels**2 / kappa) ** (1 / 3), rel=1e-12)
    assert printed / r_star == pytest.approx(2 ** (1 / 3), rel=1e-12)
    J = lambda r: reduction_objective(r, kappa=kappa, lam=lam, channels=channels)  # noqa: E731
    assert J(printed) > J(r_star)
    assert kappa * printed - lam * channels**2 / printed**2 > 0  # J still rising there


def test_optimal_reduction_trends():
    base = optimal_reduction(kappa=1.0, lam=1.0, channels=64)
    assert optimal_reduction(kappa=1.0, lam=1.0, channels=128) > base
    assert optimal_reduction(kappa=1.0, lam=2.0, channels=64) > base
    assert optimal_reduction(kappa=2.0, lam=1.0, channels=64) < base


def test_optimal_reduction_rejects_bad_input():
    with pytest.raises(ValueError, match="kappa"):
        optimal_reduction(kappa=0.0, lam=1.0, channels=64)
    with pytest.raises(ValueError, match="lam"):
        optimal_reduction(kappa=1.0, lam=-1.0, channels=64)
    with pytest.raises(ValueError, match="kappa"):
        optimal_reduction(kappa=float("nan"), lam=1.0, channels=64)
    with pytest.raises(ValueError, match="channels"):
        optimal_reduction(kappa=1.0, lam=1.0, channels=0)
    with pytest.raises(TypeError):
        optimal_reduction(1.0, 1.0, 64)  # keyword-only
    with pytest.raises(ValueError, match="reduction"):
        reduction_objective(0.0, kappa=1.0, lam=1.0, channels=64)


def test_fit_reduction_recovers_exact_curve():
    kappa, lam, offset, channels = 2e-4, 3e-7, 0.9, 256
    r = np.array([2.0, 4.0, 8.0, 16.0, 32.0, 64.0])
    losses = offset + kappa * r**2 / 2 + lam * channels**2 / r
    fit = fit_reduction(r.tolist(), losses.tolist(), channels=channels)
    assert isinstance(fit, ReductionFit)
    assert fit.kappa == pytest.approx(kappa, rel=1e-6)
    assert fit.lam == pytest.approx(lam, rel=1e-6)
    assert fit.offset == pytest.approx(offset, rel=1e-6)
    assert fit.r_star == pytest.approx(optimal_reduction(kappa=kappa, lam=lam, channels=channels), rel=1e-6)
    assert fit.rms_residual < 1e-9
    assert np.allclose(fit.predict(r), losses, rtol=1e-9)
    assert fit.predict(fit.r_star) == fit.min_loss <= losses.min()
    assert fit.to_dict()["r_star"] == fit.r_star
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.kappa = 1.0


def test_fit_reduction_with_noise_lands_near_truth():
    rng = np.random.default_rng(0)
    kappa, lam, offset, channels = 1e-3, 1e-6, 1.2, 512
    r = np.repeat([2.0, 4.0, 8.0, 16.0, 32.0, 64.0], 3)
    clean = offset + kappa * r**2 / 2 + lam * channels**2 / r
    fit = fit_reduction(r, clean + rng.normal(0, 0.002, r.size), channels=channels)
    truth = optimal_reduction(kappa=kappa, lam=lam, channels=channels)  # 6.4
    assert fit.r_star == pytest.approx(truth, rel=0.15)
    assert 0.0005 < fit.rms_residual < 0.004


def test_fit_reduction_errors():
    with pytest.raises(ValueError, match=">= 3 distinct"):
        fit_reduction([4, 8], [1.0, 1.1], channels=64)
    with pytest.raises(ValueError, match=">= 3 distinct"):
        fit_reduction([4, 8, 8, 4], [1.0, 1.1, 1.2, 1.0], channels=64)
    with pytest.raises(ValueError, match="same length"):
        fit_reduction([4, 8, 16], [1.0, 1.1], channels=64)
    with pytest.raises(ValueError, match="finite"):
        fit_reduction([4, 8, 16], [1.0, float("nan"), 1.2], channels=64)
    with pytest.raises(ValueError, match="> 0"):
        fit_reduction([0, 8, 16], [1.0, 1.1, 1.2], channels=64)
    with pytest.raises(TypeError, match="reductions"):
        fit_reduction(["a", "b", "c"], [1.0, 1.1, 1.2], channels=64)
    with pytest.raises(ValueError, match="channels"):
        fit_reduction([4, 8, 16], [1.0, 1.1, 1.2], channels=-1)
    # monotone losses: no U shape, no interior minimum
    with pytest.raises(ValueError, match="degenerate fit"):
        fit_reduction([2, 4, 8, 16, 32], [1.0, 0.8, 0.6, 0.4, 0.2], channels=64)
