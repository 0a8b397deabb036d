# %% [markdown]
# # 5. The theory, checked
#
# The specification explains SE with four pieces of theory. Each is a function in `senet.analysis`, and
# here each is checked against a simulation or a real layer:
#
# 1. gating as a **bias-variance** trade-off,
# 2. gating as **shrinkage** (and the direction the specification gets wrong, erratum 2),
# 3. **BN vs SE** as channel-wise affine maps,
# 4. **placement** before or after the ReLU (erratum 3), and why it fails for SiLU.

# %%
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from senet.analysis import (
    as_local_gate,
    bn_affine,
    excitation_as_conv,
    gated_sum_stats,
    homogeneity_gap,
    noise_gates,
    optimal_free_gates,
    optimal_noise_gamma,
    se_affine,
    se_placement_gap,
    shrinkage_factor,
    shrinkage_gate,
    shrinkage_objective,
    squeeze_descriptor,
    two_stage_gating,
)
from senet.layers import SqueezeExcite

QUICK = os.environ.get("SENET_QUICK") == "1"
OUT = Path(os.environ.get("SENET_TUTORIAL_OUT") or tempfile.mkdtemp(prefix="senet-tutorial-"))
if QUICK:
    torch.set_num_threads(1)  # the test suite: one thread is robust on shared CPU cores
SAMPLES = 50_000 if QUICK else 1_000_000  # Monte Carlo draws
rng = np.random.default_rng(0)
torch.manual_seed(0)

# %% [markdown]
# ## 1. Bias and variance of a gated sum
#
# Channels observe a signal with noise, \(x_i = \mu_i + n_i\), \(\mathrm{Var}\, n_i = \sigma_i^2\). The gated sum
# \(T = \sum_i g_i x_i\) estimates \(\sum_i \mu_i\) with
#
# \[ \text{bias} = \sum_i (g_i - 1)\mu_i, \qquad \text{variance} = \sum_i g_i^2 \sigma_i^2 . \]
#
# Gates below 1 on the noisy channels buy a large drop in variance for a little bias. The specification's
# family \(g_i = 1/(1 + \gamma\sigma_i^2)\) keeps quiet channels open and closes noisy ones.

# %%
mu = np.array([1.0, 0.8, 0.5, 0.2])
sigma2 = np.array([0.1, 0.5, 2.0, 8.0])  # the last channels are mostly noise

gamma = optimal_noise_gamma(mu, sigma2)
gates = noise_gates(sigma2, gamma)
theory = gated_sum_stats(gates, mu, sigma2)
ungated = gated_sum_stats(np.ones(4), mu, sigma2)

x = mu + rng.normal(size=(SAMPLES, 4)) * np.sqrt(sigma2)  # Monte Carlo draws of the channels
t = x @ gates
print(f"gamma* = {gamma:.3f}, gates = {np.round(gates, 3)}")
print(f"theory:   bias {theory.bias:+.4f}  variance {theory.variance:.4f}  MSE {theory.mse:.4f}")
print(f"simulated bias {t.mean() - mu.sum():+.4f}  variance {t.var():.4f}")
print(f"no gating: bias 0, variance {ungated.variance:.4f} = MSE")
tolerance = 5 / np.sqrt(SAMPLES) * np.sqrt(theory.variance)  # five standard errors
assert abs((t.mean() - mu.sum()) - theory.bias) < tolerance
assert abs(t.var() - theory.variance) / theory.variance < 0.05
assert theory.mse < ungated.mse / 2  # gating halves the error here
assert gates[0] > 0.9 > 0.2 > gates[-1]  # quiet channel open, noisy channel nearly closed

# %% [markdown]
# The best gates without the constraint of one shared \(\gamma\) are proportional to each channel's
# signal-to-noise ratio \(\mu_i/\sigma_i^2\) (`optimal_free_gates`, by Sherman-Morrison). They are not
# confined to (0, 1]: here the cleanest channel gets a gate of about 2, amplified to make up for the signal
# of the channels that are closed, and the error drops by more than half again. That is one argument for
# amplifying gates such as \(1 + \tanh\) (tutorial 1).

# %%
free = optimal_free_gates(mu, sigma2)
free_mse = gated_sum_stats(free, mu, sigma2).mse
print(f"free gates {np.round(free, 3)}: MSE {free_mse:.4f} (family: {theory.mse:.4f})")
ratio = free / (mu / sigma2)
assert np.allclose(ratio, ratio[0])  # proportional to mu_i / sigma_i^2
assert free_mse < theory.mse / 2 and free.max() > 1.0

# %% [markdown]
# ## 2. Gating as shrinkage (erratum 2)
#
# Let a feature \(X\) (variance \(\sigma_x^2\)) predict \(Z = \beta X + \varepsilon\), and penalise the gate:
# \(J(g) = E[(Z - gX)^2] + \lambda g^2\). The minimiser is ridge regression,
#
# \[ g^\star = \beta\, \frac{\sigma_x^2}{\sigma_x^2 + \lambda}, \]
#
# the least-squares gate \(\beta\) shrunk towards 0. The specification's prose says higher-variance
# channels are shrunk *more*; the formula says the opposite: the factor \(\sigma_x^2/(\sigma_x^2 + \lambda)\)
# *grows* towards 1 with \(\sigma_x^2\). A simulation of \(J\) confirms the formula.

# %%
beta, lam, noise = 0.8, 1.0, 0.25
for sigma_x2 in (0.25, 1.0, 4.0):
    x = rng.normal(0, np.sqrt(sigma_x2), SAMPLES)
    z = beta * x + rng.normal(0, np.sqrt(noise), SAMPLES)
    grid = np.linspace(-0.5, 1.5, 2001)
    # J(g) = mean((z - g x)^2) + lam g^2, estimated from the draws (expanded, so one pass over them)
    simulated = np.mean(z * z) - 2 * grid * np.mean(z * x) + grid**2 * np.mean(x * x) + lam * grid**2
    g_sim = grid[int(np.argmin(simulated))]
    g_star = shrinkage_gate(beta, sigma_x2, lam)
    print(f"sigma_x^2 = {sigma_x2:4}: factor {shrinkage_factor(sigma_x2, lam):.3f}, g* = {g_star:.3f}, simulated {g_sim:.3f}")
    assert abs(g_sim - g_star) < 0.03
    assert abs(shrinkage_objective(g_star, beta=beta, sigma_x2=sigma_x2, lam=lam, noise_var=noise) - min(simulated)) < 0.05

factors = [shrinkage_factor(v, lam) for v in (0.25, 1.0, 4.0)]
assert factors[0] < factors[1] < factors[2] < 1  # more variance, LESS shrinkage (erratum 2)

# %% [markdown]
# ## 3. BN vs SE: two channel-wise affine maps
#
# Both compute \(Y_c = \alpha_c X_c + \beta_c\). For **BN** (training mode) \(\alpha, \beta\) come from the batch
# statistics and are shared by every example of the batch; in eval mode they are fixed. For **SE**,
# \(\alpha_c = s_c(X)\) depends on the example and \(\beta = 0\). `bn_affine` and `se_affine` read the
# coefficients off real modules; applying them must reproduce the modules' outputs.

# %%
x = torch.randn(6, 32, 10, 10) * torch.rand(6, 1, 1, 1) * 3  # examples of different scales
bn = nn.BatchNorm2d(32).train()
se = SqueezeExcite(32, reduction=4)

bn_map = bn_affine(bn, x)
se_map = se_affine(se, x)
with torch.no_grad():
    assert torch.allclose(bn_map.apply(x), bn(x), atol=1e-5)
    assert torch.allclose(se_map.apply(x), se(x), atol=1e-6)
print(f"BN (train): spread of alpha, beta across the batch = {bn_map.batch_spread():.2e}")
print(f"SE:         spread of alpha across the batch = {se_map.batch_spread():.3f}, beta = 0")
assert bn_map.shared_across_batch and not se_map.shared_across_batch
assert float(se_map.beta.abs().max()) == 0.0

bn.eval()  # now the running statistics: a fixed affine map, whatever the batch
assert torch.allclose(bn_affine(bn, x).alpha, bn_affine(bn, x[:2] * 10).alpha[:1].expand(6, -1))

# %% [markdown]
# SE's excitation is two 1x1 convolutions on the squeezed map (`excitation_as_conv`); the same two
# convolutions on the full map, without the squeeze, give a gate per position (`as_local_gate`,
# tutorial 1).

# %%
conv = excitation_as_conv(se)
with torch.no_grad():
    assert torch.allclose(conv(squeeze_descriptor(se, x)), se.gates(x), atol=1e-6)
    assert as_local_gate(se).gates(x).shape == x.shape

# %% [markdown]
# ## 4. Placement before or after the ReLU (erratum 3)
#
# For a *fixed* gate \(s \ge 0\), \(\mathrm{ReLU}(s x) = s\,\mathrm{ReLU}(x)\): ReLU is positively homogeneous.
# SiLU (and GELU) are not, so even a fixed gate gives different results before and after them.

# %%
s = torch.rand(6, 32, 1, 1)
x = torch.randn(6, 32, 10, 10)
relu_gap = homogeneity_gap(nn.ReLU(), s, x)
silu_gap = homogeneity_gap(nn.SiLU(), s, x)
print(f"fixed gate: |act(s*x) - s*act(x)| = {relu_gap:.1e} for ReLU, {silu_gap:.3f} for SiLU")
assert relu_gap == 0.0 and silu_gap > 0.05

# %% [markdown]
# The specification concludes that SE before and after the ReLU are equivalent. But a real SE block
# computes its gates *from its own input*: before the ReLU the gates are \(s(x)\), after it
# \(s(\mathrm{ReLU}(x))\), and the pooled descriptors differ whenever \(x\) has negative entries.
# `se_placement_gap` measures both cases on a real block: with the gate held fixed the gap is exactly 0,
# with the real, adaptive gate it is not.

# %%
gap = se_placement_gap(se, x)
print(f"ReLU: fixed-gate gap {gap.fixed:.1e}, real SE gap {gap.adaptive:.3f} (gates move by {gap.gate_change:.3f})")
assert gap.fixed == 0.0 and gap.adaptive > 1e-3 and gap.gate_change > 1e-3

positive = x.abs()  # on non-negative inputs ReLU is the identity, so the two placements agree
assert se_placement_gap(se, positive).adaptive < 1e-6

silu = se_placement_gap(se, x, activation=nn.SiLU())
print(f"SiLU: fixed-gate gap {silu.fixed:.3f}, real SE gap {silu.adaptive:.3f}")
assert silu.fixed > 0.01  # for SiLU not even a fixed gate commutes

# %% [markdown]
# ## Two-stage gating
#
# Inside the excitation, the ReLU is a hard gate (it prunes hidden units with a negative pre-activation)
# and the sigmoid a soft one (it maps the rest into (0, 1), so a sigmoid gate can only attenuate).
# `two_stage_gating` measures both on a batch.

# %%
stages = two_stage_gating(se, x)
print(f"ReLU prunes {100 * stages.pruned_fraction:.0f}% of (example, hidden unit) pairs; "
      f"gates: mean {stages.saturation.mean:.3f}, in (0, 1)")
assert 0.0 < stages.pruned_fraction < 1.0
assert 0.0 < stages.saturation.mean < 1.0 and stages.saturation.count == 6 * 32

(OUT / "05_theory.txt").write_text("all checks passed\n")
