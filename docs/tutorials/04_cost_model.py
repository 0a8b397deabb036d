# %% [markdown]
# # 4. The cost model
#
# What does SE cost? The specification's answer for one block is
# \(F_{SE} = 2CHW + 4C^2/r\) FLOPs: pooling and reweighting touch every position once (\(2CHW\)), the two
# FC layers cost \(4C^2/r\) whatever the spatial size. This tutorial checks that formula against the
# layer and against PyTorch's FLOP counter, measures SE across a whole SE-ResNet-50, locates the
# crossover \(C \ge rS^2/2\) where the FCs become the larger part, and chooses the reduction ratio \(r\)
# with `optimal_reduction` and `fit_reduction`.

# %%
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from senet.analysis import (
    crossover_channels,
    fc_share,
    fit_reduction,
    model_cost,
    optimal_reduction,
    plot_cost_breakdown,
    plot_reduction_sweep,
    reduction_objective,
    se_flops,
    se_params,
    spec_printed_reduction,
)
from senet.layers import SqueezeExcite
from senet.models import create_model

QUICK = os.environ.get("SENET_QUICK") == "1"
OUT = Path(os.environ.get("SENET_TUTORIAL_OUT") or tempfile.mkdtemp(prefix="senet-tutorial-"))
if QUICK:
    torch.set_num_threads(1)  # the test suite: one thread is robust on shared CPU cores
torch.manual_seed(0)

# %% [markdown]
# ## One block
#
# FLOPs count 2 per multiply-add (PyTorch's `FlopCounterMode` convention); biases and the gate
# non-linearities are not counted, as in the specification. For \(C = 256\), a 56x56 map and \(r = 16\):

# %%
C, S, r = 256, 56, 16
flops = se_flops(C, (S, S), reduction=r)
print(f"F_SE = 2*C*S^2 + 4*C^2/r = {2 * C * S * S:,} + {4 * C * C // r:,} = {flops:,}")
assert flops == 2 * C * S * S + 4 * C * C // r
assert flops == SqueezeExcite(C, reduction=r).flops((S, S))  # the layer's own accounting
assert se_params(C, reduction=r) == 2 * C * (C // r) + (C // r + C)  # W1, W2 and the biases

# %% [markdown]
# The FC part can be measured: `FlopCounterMode` counts matrix products (it does not count pooling or
# elementwise products, so only the \(4C^2/r\) part shows).

# %%
se = SqueezeExcite(C, reduction=r)
with FlopCounterMode(display=False) as counter:
    se(torch.randn(1, C, S, S))
print(f"FlopCounterMode: {counter.get_total_flops():,} FLOPs (the FCs: 4*C*h = {4 * C * se.hidden_channels:,})")
assert counter.get_total_flops() == 4 * C * se.hidden_channels

# %% [markdown]
# ## Across a real network: SE-ResNet-50
#
# `model_cost` runs one forward pass with hooks and reports FLOPs and parameters per stage and block,
# with and without SE. It cross-checks its convolution and linear FLOPs against `FlopCounterMode` in the
# same pass. (The quick mode uses a 112x112 input to save time; the full mode the paper's 224x224.)

# %%
SIZE = 112 if QUICK else 224
model = create_model("seresnet50")
report = model_cost(model, (3, SIZE, SIZE))
print(f"{'stage':8} {'GFLOPs':>8} {'SE FLOPs +%':>12} {'params':>12} {'SE params +%':>13}")
for row in (*report.stages, report.total):
    print(f"{row.name:8} {row.flops / 1e9:8.3f} {row.flops_overhead:12.2f} {row.params:12,} {row.params_overhead:13.2f}")
assert report.dense_flops == report.flop_counter_flops  # every matrix product is in a conv or linear module
assert report.total.params == sum(p.numel() for p in model.parameters())
assert report.total.params_without_se == sum(p.numel() for p in create_model("resnet50").parameters())
assert 9.0 < report.total.params_overhead < 11.0  # about 10% more parameters (28.1M vs 25.6M)...
assert report.total.flops_overhead < 1.0  # ...for well under 1% more FLOPs

plot = plot_cost_breakdown(report, OUT / "04_cost_breakdown.png")
print("plot:", plot.png)

# %% [markdown]
# SE adds about 10% parameters but well under 1% FLOPs: the parameters sit in the FC layers of the
# wide late stages, while the FLOPs of a convolution network are spread over all positions. The full
# per-block table, ready for a report, is `report.to_markdown()`.

# %% [markdown]
# ## The crossover \(C \ge rS^2/2\)
#
# The FCs (\(4C^2/r\)) are at least half of \(F_{SE}\) when \(4C^2/r \ge 2CS^2\), that is when
# \(C \ge rS^2/2\). Early stages (large maps, few channels) are dominated by pooling and reweighting, late
# stages (small maps, many channels) by the FCs. `model_cost` reports each attention layer's side; it must
# agree with the inequality.

# %%
print(f"{'layer':18} {'C':>5} {'map':>7} {'r*S^2/2':>8} {'FC share':>9}  side")
for layer in report.attention:
    crossover = crossover_channels(layer.spatial_shape, reduction=layer.channels // layer.hidden_channels)
    assert layer.side == ("fc" if layer.channels >= crossover else "spatial"), layer
    assert math.isclose(layer.fc_share, fc_share(layer.channels, layer.spatial_shape, hidden_channels=layer.hidden_channels))
    if layer.block.endswith(".0") or layer.block == "0":  # the first unit of each stage
        shape = "x".join(map(str, layer.spatial_shape))
        print(f"{layer.name:18} {layer.channels:5} {shape:>7} {crossover:8g} {layer.fc_share:9.3f}  {layer.side}")
sides = {layer.stage: layer.side for layer in report.attention}
assert sides["layer1"] == "spatial" and sides["layer4"] == "fc"

# %% [markdown]
# Which stages cross depends on the input size: at 224x224 only `layer4` (7x7 maps, \(C = 2048 \ge 392\))
# is past the crossover; at 112x112 `layer3` (7x7, \(C = 1024\)) is too. For a square map of side \(S\) the
# crossover width grows like \(S^2\): at \(r = 16\), 32 channels on 2x2, 392 on 7x7, 25,088 on 56x56. Half
# that width is on the pooling side, twice that width on the FC side:

# %%
for side in (2, 7, 14, 28, 56):
    width = crossover_channels((side, side), reduction=16)  # r*S^2/2
    below, above = (fc_share(c, (side, side), reduction=16) for c in (int(width // 2), int(2 * width)))
    print(f"S = {side:2}: crossover C = {width:7g}; FC share {below:.2f} at C/2, {above:.2f} at 2C")
    assert below < 0.5 < above

# %% [markdown]
# ## Choosing r
#
# The specification models the validation loss as growing quadratically in \(r\) (less capacity) and the
# complexity penalty as proportional to the parameter count \(C^2/r\):
# \(J(r) = \tfrac12 \kappa r^2 + \lambda C^2 / r\). Setting \(J'(r) = \kappa r - \lambda C^2/r^2\) to zero gives
# \(r^\star = (\lambda C^2/\kappa)^{1/3}\). The specification prints \((2\lambda C^2/\kappa)^{1/3}\)
# (erratum 1): that is \(2^{1/3} \approx 1.26\) times too large, and a grid search shows which one minimises
# \(J\).

# %%
kappa, lam, C = 0.02, 1e-4, 512
r_star = optimal_reduction(kappa=kappa, lam=lam, channels=C)
printed = spec_printed_reduction(kappa=kappa, lam=lam, channels=C)
grid = np.linspace(1, 64, 200_001)
r_grid = grid[np.argmin(reduction_objective(grid, kappa=kappa, lam=lam, channels=C))]
print(f"r* = {r_star:.3f} (grid minimum {r_grid:.3f}); the spec's printed formula gives {printed:.3f}")
assert abs(r_star - r_grid) < 1e-3 and abs(printed / r_star - 2 ** (1 / 3)) < 1e-12
assert reduction_objective(r_star, kappa=kappa, lam=lam, channels=C) < reduction_objective(
    printed, kappa=kappa, lam=lam, channels=C
)

# %% [markdown]
# \(r^\star\) grows with \(C\) and \(\lambda\) and falls with \(\kappa\): wider layers tolerate a stronger
# bottleneck. In practice \(\kappa\) and \(\lambda\) are unknown; `fit_reduction` estimates them (plus a
# constant offset) from the validation losses of an \(r\)-sweep by least squares. Here the losses come from a
# known \(J\) plus noise, so the fit must recover \(r^\star\):

# %%
assert optimal_reduction(kappa=kappa, lam=lam, channels=2 * C) > r_star
assert optimal_reduction(kappa=2 * kappa, lam=lam, channels=C) < r_star

rng = np.random.default_rng(0)
reductions = [2, 4, 8, 16, 32]
losses = 0.30 + reduction_objective(np.array(reductions, float), kappa=kappa, lam=lam, channels=C)
losses = losses + rng.normal(0, 0.002, len(reductions))
fit = fit_reduction(reductions, losses, channels=C)
print(f"fitted kappa {fit.kappa:.4f}, lambda {fit.lam:.2e}: r* = {fit.r_star:.2f} (true {r_star:.2f})")
assert abs(fit.r_star - r_star) / r_star < 0.1
plot_reduction_sweep(fit, OUT / "04_reduction_fit.png")

# %% [markdown]
# Losses that are not U-shaped in \(r\) (a sweep dominated by noise, or one that never reaches the
# capacity-limited regime) give no interior minimum, and `fit_reduction` says so instead of returning a
# meaningless \(r^\star\):

# %%
try:
    fit_reduction([2, 4, 8, 16], [0.40, 0.38, 0.37, 0.35], channels=C)  # still falling at r = 16
    raise AssertionError("a monotone sweep must not give an r*")
except ValueError as err:
    print("refused:", str(err)[:100], "...")

# %% [markdown]
# On real data, `senet ablate reduction` trains the paper's sweep \(r \in \{2, 4, 8, 16, 32\}\) over
# several seeds and reports the fitted \(r^\star\), or why there is none (see the
# [CLI reference](../cli.md)).
