# %% [markdown]
# # 1. SE from scratch
#
# A Squeeze-and-Excitation block in about 30 lines of PyTorch, checked against
# `senet.layers.SqueezeExcite` with the same weights; then every variant of the specification: the max
# squeeze, the amplifying `1 + tanh` gate, and the spatially-variant alternative `LocalChannelGate`.
# Every claim on this page is an `assert` in the script, so the test suite fails if one stops holding.

# %%
import os
import tempfile
from pathlib import Path

import torch
import torch.nn as nn

from senet.layers import LocalChannelGate, SqueezeExcite, lengths_to_mask

QUICK = os.environ.get("SENET_QUICK") == "1"  # nothing here is slow; kept for uniformity with the others
OUT = Path(os.environ.get("SENET_TUTORIAL_OUT") or tempfile.mkdtemp(prefix="senet-tutorial-"))
if QUICK:
    torch.set_num_threads(1)  # the test suite: one thread is robust on shared CPU cores
torch.manual_seed(0)

# %% [markdown]
# ## The block
#
# Squeeze: global average pooling gives one number per channel, \(z_c = \frac{1}{HW}\sum_{i,j} X_{c,i,j}\).
# Excitation: a bottleneck MLP, \(s = \sigma(W_2\,\mathrm{ReLU}(W_1 z + b_1) + b_2)\) with
# \(W_1 \in \mathbb{R}^{(C/r) \times C}\). Reweighting: \(Y_c = s_c X_c\). Averaging over
# `range(2, x.ndim)` makes the same code work for audio `(N, C, L)`, images `(N, C, H, W)` and volumes
# `(N, C, D, H, W)`.


# %%
class MySE(nn.Module):
    """Squeeze-and-Excitation in 20 lines: Y = sigmoid(W2 relu(W1 mean(X) + b1) + b2) * X."""

    def __init__(self, channels: int, reduction: int = 16, squeeze: str = "avg", amplify: bool = False):
        super().__init__()
        hidden = channels // reduction  # C/r, the paper's floor
        self.fc1 = nn.Linear(channels, hidden)  # W1, b1
        self.fc2 = nn.Linear(hidden, channels)  # W2, b2
        self.squeeze, self.amplify = squeeze, amplify

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(2, x.ndim))  # every spatial axis, whatever the rank
        z = x.mean(dims) if self.squeeze == "avg" else x.amax(dims)  # squeeze: (N, C, *S) -> (N, C)
        v = self.fc2(torch.relu(self.fc1(z)))  # excitation: (N, C) -> (N, C/r) -> (N, C)
        s = 1 + torch.tanh(v) if self.amplify else torch.sigmoid(v)  # gate in (0, 2) or (0, 1)
        return s.view(*s.shape, *([1] * len(dims)))  # (N, C, 1, ..., 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gates(x)  # reweight: s_c broadcast over every position


# %% [markdown]
# `SqueezeExcite` names its parameters like `MySE` (`fc1` holds \(W_1, b_1\), `fc2` holds \(W_2, b_2\)),
# so the weights of one load *strictly* into the other, and the outputs agree for every rank.

# %%
mine = MySE(64, reduction=16)
se = SqueezeExcite(64, reduction=16)
se.load_state_dict(mine.state_dict(), strict=True)  # same keys, same shapes
print(se)
assert se.hidden_channels == 64 // 16 == mine.fc1.out_features

for shape in [(4, 64, 100), (4, 64, 12, 12), (2, 64, 4, 6, 6)]:
    x = torch.randn(shape)
    assert torch.allclose(mine(x), se(x), atol=1e-6), shape
    print(f"input {shape}: max |MySE - SqueezeExcite| = {(mine(x) - se(x)).abs().max():.2e}")

# %% [markdown]
# ## The worked example of the specification
#
# \(C = 3\), hidden width 2, no biases, \(z = (0, 4, 1)\). A spatially constant input has exactly this
# descriptor, so the gates must be \(\sigma(-4, 1, -2) \approx (0.018, 0.731, 0.119)\).

# %%
example = SqueezeExcite(3, hidden_channels=2, bias=False)
with torch.no_grad():
    example.fc1.weight.copy_(torch.tensor([[1.0, -1.0, 0.0], [0.5, 0.5, -1.0]]))  # W1
    example.fc2.weight.copy_(torch.tensor([[2.0, -4.0], [-1.0, 1.0], [-3.0, -2.0]]))  # W2
x = torch.tensor([0.0, 4.0, 1.0]).view(1, 3, 1, 1).expand(1, 3, 5, 5)  # z = (0, 4, 1)
s = example.gates(x).flatten()
print("gates:", [round(v, 3) for v in s.tolist()])
assert torch.allclose(s, torch.tensor([0.018, 0.731, 0.119]), atol=5e-4)
assert torch.allclose(example(x)[0, :, 0, 0], s * torch.tensor([0.0, 4.0, 1.0]))

# %% [markdown]
# The reweighting is the Hadamard product with one scalar per example and channel. A forward hook on
# `se.gate` sees exactly the tensor used, shape `(N, C, 1, 1)`: that is how `senet.analysis` collects
# gate statistics from whole networks.

# %%
seen = {}
handle = se.gate.register_forward_hook(lambda module, inputs, output: seen.update(s=output))
x = torch.randn(8, 64, 12, 12)
y = se(x)
handle.remove()
assert seen["s"].shape == (8, 64, 1, 1)
assert torch.allclose(y, x * seen["s"])

# %% [markdown]
# ## Variant 1: the max squeeze
#
# Global max pooling reports the peak of a channel instead of its mean. On a channel with one strong
# detection on a near-zero background, the average dilutes the peak over the whole map while the
# maximum keeps it: a "hard attention" to the most salient instance.

# %%
mine_max = MySE(64, reduction=16, squeeze="max")
se_max = SqueezeExcite(64, reduction=16, squeeze="max")
se_max.load_state_dict(mine_max.state_dict(), strict=True)
x = torch.randn(4, 64, 12, 12)
assert torch.allclose(mine_max(x), se_max(x), atol=1e-6)

sparse = torch.zeros(1, 2, 32, 32)
sparse[0, 0, 5, 7] = 10.0  # channel 0: one strong detection
sparse[0, 1] = 0.5  # channel 1: weak everywhere
mean_z, max_z = sparse.mean((2, 3)).flatten(), sparse.amax((2, 3)).flatten()
print(f"average squeeze z = {mean_z.tolist()}, max squeeze z = {max_z.tolist()}")
assert mean_z[0] < mean_z[1] and max_z[0] > max_z[1]  # the two squeezes rank the channels oppositely

# %% [markdown]
# `squeeze="avgmax"` (timm's `add_maxpool`) averages the two descriptors.

# %%
se_avgmax = SqueezeExcite(64, reduction=16, squeeze="avgmax")
se_avgmax.load_state_dict(mine.state_dict(), strict=True)
z_mix = 0.5 * (x.mean((2, 3)) + x.amax((2, 3)))
expected = torch.sigmoid(se_avgmax.fc2(torch.relu(se_avgmax.fc1(z_mix))))
assert torch.allclose(se_avgmax.gates(x).flatten(1), expected, atol=1e-6)

# %% [markdown]
# ## Variant 2: the amplifying gate \(1 + \tanh\)
#
# A sigmoid gate lies in (0, 1), so it can only attenuate a channel. \(1 + \tanh(v)\) lies in (0, 2):
# gates above 1 amplify. Its largest slope is 1 (at \(v = 0\)), four times the sigmoid's 1/4, so the
# gradients through the gate are larger.

# %%
mine_tanh = MySE(64, reduction=16, amplify=True)
se_tanh = SqueezeExcite(64, reduction=16, gate="one_plus_tanh")
se_tanh.load_state_dict(mine_tanh.state_dict(), strict=True)
assert torch.allclose(mine_tanh(x), se_tanh(x), atol=1e-6)

with torch.no_grad():
    se_tanh.fc2.bias.fill_(1.0)  # push the logits up: now the gates amplify
g = se_tanh.gates(x)
print(f"1+tanh gates in [{g.min():.3f}, {g.max():.3f}]")
assert g.max() > 1.0 and g.max() < 2.0 and g.min() > 0.0

v = torch.zeros(1, requires_grad=True)
(slope_sigmoid,) = torch.autograd.grad(torch.sigmoid(v).sum(), v)
(slope_tanh,) = torch.autograd.grad((1 + torch.tanh(v)).sum(), v)
print(f"slope at 0: sigmoid {slope_sigmoid.item():.2f}, 1+tanh {slope_tanh.item():.2f}")
assert slope_sigmoid.item() == 0.25 and slope_tanh.item() == 1.0

# %% [markdown]
# ## Variant 3: no squeeze, a gate per position (`LocalChannelGate`)
#
# The excitation MLP equals two 1x1 convolutions applied to the squeezed \(1 \times 1\) map. Applied to
# the *full* map instead, the same two convolutions compute a gate for every channel **and position**
# from the local feature vector \(X_{:,i,j}\) alone: a local channel attention. That is
# `LocalChannelGate`. With SE's weights it gives SE's gates on a spatially constant input, and
# position-dependent gates on anything else.

# %%
local = LocalChannelGate(64, reduction=16)
local.load_state_dict(mine.state_dict(), strict=True)  # the same fc1/fc2 names and shapes

constant = torch.randn(2, 64, 1, 1).expand(2, 64, 6, 6)
assert torch.allclose(local.gates(constant), se.gates(constant).expand_as(constant), atol=1e-6)

x = torch.randn(2, 64, 6, 6)
local_gates = local.gates(x)
print("SE gates:", tuple(se.gates(x).shape), " local gates:", tuple(local_gates.shape))
spread = (local_gates.amax((2, 3)) - local_gates.amin((2, 3))).max().item()
assert local_gates.shape == x.shape and spread > 0.01  # they vary over space
assert se.gates(x).shape == (2, 64, 1, 1)  # SE's are one per channel

# %% [markdown]
# ## Padded sequences
#
# For a padded batch of audio or text, the squeeze must not average the padding in. `forward(x, mask=...)`
# pools over the valid positions only, so an example gets the same gates padded or not.

# %%
lengths = torch.tensor([50, 30])
x = torch.randn(2, 64, 50)
x[1, :, 30:] = 0.0  # padding
mask = lengths_to_mask(lengths, 50)
padded = se(x, mask=mask)
alone = se(x[1:, :, :30])  # the second example without its padding
assert torch.allclose(padded[1:, :, :30], alone, atol=1e-6)
assert not torch.allclose(se(x)[1:, :, :30], alone, atol=1e-4)  # without the mask the padding leaks in

# %% [markdown]
# ## Summary
#
# | variant | `SqueezeExcite` argument | what changes |
# | --- | --- | --- |
# | average squeeze | `squeeze="avg"` (default) | \(z_c\) is the mean of channel c |
# | max squeeze | `squeeze="max"` | \(z_c\) is its peak: hard attention to the strongest instance |
# | both | `squeeze="avgmax"` | the mean of the two descriptors |
# | amplifying gate | `gate="one_plus_tanh"` | gates in (0, 2), slope 1 at 0 |
# | no squeeze | `LocalChannelGate` | a gate per channel and position |

# %%
(OUT / "01_se_from_scratch.txt").write_text("all checks passed\n")
print("all checks passed")
