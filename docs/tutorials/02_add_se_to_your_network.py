# %% [markdown]
# # 2. Adding SE to your own network
#
# Two ways to get SE (or ECA, CBAM, ... any layer of `senet.layers.ATTENTION_LAYERS`) into a network:
#
# 1. **Wrap an existing model's blocks**: here torchvision's `resnet18`, whose `BasicBlock`s know nothing
#    about attention. One line per block puts the layer where the SE-ResNet module has it.
# 2. **Build one of senet's models** with the attention layer and the *integration strategy* (where in
#    the residual unit the block goes) as builder options, and train each strategy briefly on the
#    embedded digits.

# %%
import copy
import math
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import resnet18
from torchvision.models.resnet import BasicBlock

from senet.analysis import se_params
from senet.data import build_data
from senet.layers import ATTENTION_LAYERS, SqueezeExcite, create_attention
from senet.models import create_model
from senet.models.integration import INTEGRATIONS

QUICK = os.environ.get("SENET_QUICK") == "1"
OUT = Path(os.environ.get("SENET_TUTORIAL_OUT") or tempfile.mkdtemp(prefix="senet-tutorial-"))
if QUICK:
    torch.set_num_threads(1)  # the test suite: one thread is robust on shared CPU cores
torch.manual_seed(0)

# %% [markdown]
# ## 1. Wrapping torchvision's ResNet-18
#
# A torchvision `BasicBlock` computes `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`. The SE-ResNet
# module (the paper's Fig. 3, senet's `integration="standard"`) gates the residual branch just before the
# addition, so replacing `bn2` with `Sequential(bn2, SE)` is all it takes; the block's `forward` is unchanged.
# `create_attention(name, channels)` builds any registered layer, so the same function adds ECA, CBAM, ...


# %%
def add_attention(model: nn.Module, name: str = "se", *, reduction: int = 16) -> nn.Module:
    """Put attention layer ``name`` at the end of every BasicBlock's residual branch (in place)."""
    for block in model.modules():
        if isinstance(block, BasicBlock):
            channels = block.bn2.num_features
            block.bn2 = nn.Sequential(block.bn2, create_attention(name, channels, reduction=reduction))
    return model


plain = resnet18(weights=None, num_classes=10).eval()  # random init: no downloads
se_net = add_attention(copy.deepcopy(plain), "se").eval()

count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
widths = [b.bn2[0].num_features for b in se_net.modules() if isinstance(b, BasicBlock)]
print("SE on", len(widths), "blocks of widths", widths)
print(f"parameters: plain {count(plain):,}, with SE {count(se_net):,}")
assert count(se_net) - count(plain) == sum(se_params(c, reduction=16) for c in widths)

# %% [markdown]
# The wrapped model keeps every weight of the original (load pretrained weights into `plain` *before*
# wrapping; the wrapped model's keys gain a `.0`, as in `layer1.0.bn2.0.weight`). To check that the gate
# really sits on the residual branch, force every gate to 0.5 (zero `fc2`): the network must then equal the
# plain one with each `bn2`'s output halved.

# %%
half = copy.deepcopy(plain)
for block in half.modules():
    if isinstance(block, BasicBlock):
        with torch.no_grad():
            block.bn2.weight.mul_(0.5)
            block.bn2.bias.mul_(0.5)
gated = copy.deepcopy(se_net)
for module in gated.modules():
    if isinstance(module, SqueezeExcite):
        nn.init.zeros_(module.fc2.weight)
        nn.init.zeros_(module.fc2.bias)  # sigmoid(0) = 0.5 everywhere
x = torch.randn(2, 3, 32, 32)
with torch.no_grad():
    difference = (gated(x) - half(x)).abs().max().item()
print(f"max |SE with gates 0.5 - plain with halved bn2| = {difference:.2e}")
assert difference < 1e-4

# %% [markdown]
# Every registered layer goes in the same way. The table shows what each adds to ResNet-18 (10 classes).

# %%
rows = []
for name in ATTENTION_LAYERS:
    net = add_attention(copy.deepcopy(plain), name).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    rows.append((name, ATTENTION_LAYERS[name].__name__, count(net) - count(plain)))
print(f"{'name':6} {'class':18} {'added parameters':>16}")
for name, cls, added in rows:
    print(f"{name:6} {cls:18} {added:>16,}")
assert len(rows) == len(ATTENTION_LAYERS) and all(added >= 0 for *_, added in rows)

# %% [markdown]
# ## 2. senet's models and the integration strategies
#
# senet's builders take the attention layer and its position as options. The SENet paper (Fig. 5,
# Table 14) compares five positions in a residual unit `out = act(branch(x) + shortcut(x))`:
#
# | `integration=` | the unit computes | the block sees |
# | --- | --- | --- |
# | `"standard"` | `act(SE(branch(x)) + shortcut(x))` | the unit's output width |
# | `"pre"` | `act(branch(SE(x)) + shortcut(x))` | the unit's input width |
# | `"post"` | `SE(act(branch(x) + shortcut(x)))` | the output width |
# | `"identity"` | `act(branch(x) + SE(shortcut(x)))` | the output width |
# | `"inside"` | SE after the 3x3 convolution, inside the branch | the 3x3 width |
#
# A forward hook on every SE block records the width it sees. In the first unit of a stage that widens
# (16 -> 32 channels), `"pre"` sees the narrow input and the others the wide output.

# %%
def seen_widths(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    widths, handles = {}, []
    for name, module in model.named_modules():
        if isinstance(module, SqueezeExcite):
            hook = lambda m, inputs, output, name=name: widths.update({name: inputs[0].shape[1]})  # noqa: E731
            handles.append(module.register_forward_hook(hook))
    with torch.no_grad():
        model.eval()(x)
    for handle in handles:
        handle.remove()
    return widths


digit = torch.randn(1, 1, 8, 8)
for integration in INTEGRATIONS:
    model = create_model("seresnet20_cifar", in_channels=1, num_classes=10, integration=integration)
    widths = seen_widths(model, digit)
    print(f"{integration:9} layer2.0.se sees {widths['layer2.0.se']} channels; {len(widths)} SE blocks")
    assert len(widths) == 9  # ResNet-20: three stages of three units
    assert widths["layer2.0.se"] == (16 if integration == "pre" else 32)

# %% [markdown]
# The same builders swap the layer (`attention="eca"`, or `None` for the plain network), give each stage
# its own ratio (`reduction=(4, 8, 16)`), or keep SE in some stages only (`se_stages=(2,)`, 0-based):

# %%
eca = create_model("seresnet20_cifar", in_channels=1, attention="eca")
per_stage = create_model("seresnet20_cifar", in_channels=1, reduction=(4, 8, 16))
last_only = create_model("seresnet20_cifar", in_channels=1, se_stages=(2,))
assert type(eca.layer1[0].se).__name__ == "ECA"
assert [per_stage.layer1[0].se.hidden_channels, per_stage.layer3[0].se.hidden_channels] == [16 // 4, 64 // 16]
assert last_only.layer1[0].se is None and last_only.layer3[0].se is not None

# %% [markdown]
# ## Training each strategy on the embedded digits
#
# scikit-learn's 8x8 handwritten digits ship inside the package (1437 training and 360 validation
# images), so this runs anywhere. A short SGD run per strategy, the same seed and batches for all; the
# quick mode (`SENET_QUICK=1`, what the test suite runs) takes 10 steps of 64 images, the full mode
# five epochs. One seed on 360 validation images cannot separate strategies that differ by a point or
# two: for a real comparison use `senet compare` with several seeds (tutorial 3).

# %%
bundle = build_data("digits", augment=False)
train_x, train_y = bundle.train.inputs, bundle.train.targets
val_x, val_y = bundle.val.inputs, bundle.val.targets
BATCH = 64
STEPS = 10 if QUICK else 5 * (len(train_y) // BATCH)


def evaluate(model: nn.Module) -> tuple[float, float]:
    """Validation (loss, accuracy), after recomputing the batch-norm statistics on 512 training images
    (after a few steps the running averages still remember the initial weights)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the batches below
    model.train()
    with torch.no_grad():
        for index in torch.arange(512).split(256):
            model(train_x[index])
    model.eval()
    with torch.no_grad():
        logits = model(val_x)
    return F.cross_entropy(logits, val_y).item(), (logits.argmax(1) == val_y).float().mean().item()


def train(model: nn.Module, steps: int, *, seed: int = 0) -> None:
    """SGD with momentum and a one-cycle schedule, on shuffled batches drawn with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=steps)
    model.train()
    order = torch.cat([torch.randperm(len(train_y), generator=generator) for _ in range(steps * BATCH // len(train_y) + 1)])
    for step in range(steps):
        index = order[step * BATCH : (step + 1) * BATCH]
        loss = F.cross_entropy(model(train_x[index]), train_y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()


results = {}
for label in ("plain", *INTEGRATIONS):
    torch.manual_seed(0)
    options = {"attention": None} if label == "plain" else {"integration": label}
    model = create_model("seresnet20_cifar", in_channels=1, num_classes=10, **options)
    start = time.perf_counter()
    train(model, STEPS)
    results[label] = evaluate(model)
    loss, accuracy = results[label]
    print(f"{label:9} val loss {loss:.2f}, accuracy {100 * accuracy:5.1f}% ({STEPS} steps, {time.perf_counter() - start:.1f} s)")

lines = ["| model | val loss | val accuracy |", "| --- | --- | --- |"]
lines += [f"| {label} | {loss:.3f} | {100 * acc:.1f}% |" for label, (loss, acc) in results.items()]
(OUT / "02_integration_strategies.md").write_text("\n".join(lines) + "\n")
for label, (loss, accuracy) in results.items():  # every strategy learns: better than guessing among 10 classes
    assert loss < math.log(10) and accuracy > (0.2 if QUICK else 0.5), (label, loss, accuracy)

# %% [markdown]
# Every strategy trains from the same code path. In short runs `"post"` and `"identity"` start slowest:
# both multiply the identity path by the gates (about 0.5 at initialisation) in every unit, so the signal
# that skips the residual branches shrinks geometrically with depth until the gates open. With a few
# epochs and one seed the remaining differences are mostly noise; after full ImageNet training the paper
# (Table 14) found the standard, PRE and Identity positions about equally good and POST slightly worse,
# and kept `"standard"`, which is also senet's default.
