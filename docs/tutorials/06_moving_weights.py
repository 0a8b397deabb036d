# %% [markdown]
# # 6. Moving weights between timm, torchvision, MONAI and senet
#
# `senet.interop` converts state dicts of the ResNet family in both directions:
# `convert_state_dict(state, source=..., model=...)` (peer -> senet) and
# `export_state_dict(model, target=...)` (senet -> peer), for `source`/`target` in `"timm"`,
# `"torchvision"` and `"monai"`. A conversion is only correct if the two networks *compute* the same
# function, so every step below checks outputs, not just keys. The peer networks are randomly initialised
# (nothing is downloaded): a converted pretrained checkpoint goes through exactly the same code.
#
# What a conversion handles (see the notes in `senet.interop`): different key names (timm's `se.fc1`,
# MONAI's `se_layer.fc.0`, Cadene's `se_module`), different tensor layouts (timm's 1x1-convolution SE
# weights `(h, C, 1, 1)` vs senet's `(h, C)`), SE widths that peers round differently (read from the
# checkpoint, never recomputed), and architecture differences a state dict cannot show (where the
# bottleneck strides), which are checked against the senet model.

# %%
import os
import tempfile
from pathlib import Path

import torch

from senet.interop import FORMATS, convert_file, convert_state_dict, export_state_dict, infer_options, read_checkpoint
from senet.models import create_model, load_weights

QUICK = os.environ.get("SENET_QUICK") == "1"
OUT = Path(os.environ.get("SENET_TUTORIAL_OUT") or tempfile.mkdtemp(prefix="senet-tutorial-"))
if QUICK:
    torch.set_num_threads(1)  # the test suite: one thread is robust on shared CPU cores
SIZE = 64 if QUICK else 224  # input side for the output checks
torch.manual_seed(0)
print("formats:", sorted(FORMATS))


def max_difference(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> float:
    """max |a(x) - b(x)| relative to the size of the logits (at least 1): deep networks with random weights
    give logits in the hundreds, where float32 rounding alone (senet's fused SE tail rounds differently
    from an unfused one) reaches ~1e-3 in absolute terms; in float64 the pairs agree to ~1e-12."""
    with torch.no_grad():
        logits = a.eval()(x)
        return ((logits - b.eval()(x)).abs().max() / logits.abs().max().clamp_min(1.0)).item()


def randomize_batch_norm(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial running statistics and affine parameters, so that a BN mix-up cannot go unnoticed."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
    return model


# %% [markdown]
# ## torchvision -> senet -> torchvision
#
# torchvision's `resnet18` maps onto senet's plain `resnet18` (same name). Converting, loading strictly and
# running both networks must give the same logits; exporting back must give torchvision's own state dict.

# %%
from torchvision.models import resnet18 as tv_resnet18

tv = randomize_batch_norm(tv_resnet18(weights=None, num_classes=10))
state = convert_state_dict(tv.state_dict(), source="torchvision", model="resnet18")
ours = load_weights(create_model("resnet18", num_classes=10), state)  # strict: every key, every shape
x = torch.randn(2, 3, SIZE, SIZE)
print(f"torchvision vs senet resnet18: max relative logit difference = {max_difference(tv, ours, x):.2e}")
assert max_difference(tv, ours, x) < 1e-4

back = export_state_dict(ours, target="torchvision")
assert back.keys() == tv.state_dict().keys()
assert all(torch.equal(back[k], v) for k, v in tv.state_dict().items())  # a lossless round trip

# %% [markdown]
# ## timm -> senet: SE widths come from the checkpoint
#
# timm's `seresnet*` round the SE hidden width to a multiple of 8 (at least 8), so its `seresnet18` has 8
# hidden units in the first stage where the paper's \(C/r = 64/16\) gives 4. The converter reads the widths
# from the tensors; `infer_options` shows the builder options they imply, and `model="seresnet18"` builds
# the matching senet model and checks it.

# %%
import timm

peer = randomize_batch_norm(timm.create_model("seresnet18", pretrained=False, num_classes=10))
state = convert_state_dict(peer.state_dict(), source="timm", model="seresnet18")
options = infer_options("seresnet18", state)
print("implied builder options:", options)
ours = load_weights(create_model("seresnet18", **options), state)
print("SE width in layer1:", ours.layer1[0].se.hidden_channels, "(timm rounds 64/16 = 4 up to 8)")
assert ours.layer1[0].se.hidden_channels == peer.layer1[0].se.fc1.out_channels == 8
difference = max_difference(peer, ours, x)
print(f"timm vs senet seresnet18: max relative logit difference = {difference:.2e}")
assert difference < 1e-4

# %% [markdown]
# Going the other way, `export_state_dict(model, target="timm")` gives a state dict that timm's network
# loads strictly, with the SE weights reshaped back to 1x1 convolutions.

# %%
exported = export_state_dict(ours, target="timm")
fresh = timm.create_model("seresnet18", pretrained=False, num_classes=10)
fresh.load_state_dict(exported, strict=True)
assert exported["layer1.0.se.fc1.weight"].shape == (8, 64, 1, 1)
assert max_difference(fresh, ours, x) < 1e-4

# %% [markdown]
# ## MONAI -> senet, in 1-D
#
# MONAI's SENets are N-dimensional. They stride in the first 1x1 convolution of a bottleneck (the Caffe
# layout of the original SENet), which senet calls `legacy_seresnet50`; MONAI's `SEResNet50` at
# `spatial_dims=1` (audio, sequences) converts to senet's `legacy_seresnet50` at `spatial_dims=1`.

# %%
from monai.networks.nets import SEResNet50

monai_net = randomize_batch_norm(SEResNet50(spatial_dims=1, in_channels=2, num_classes=5))
state = convert_state_dict(monai_net, source="monai", model="legacy_seresnet50")
options = infer_options("legacy_seresnet50", state)
print("implied builder options:", options)
assert options["spatial_dims"] == 1 and options["in_channels"] == 2 and options["num_classes"] == 5
ours = load_weights(create_model("legacy_seresnet50", **options), state)
signal = torch.randn(2, 2, 4 * SIZE)  # (N, C, L)
difference = max_difference(monai_net, ours, signal)
print(f"MONAI vs senet SE-ResNet-50 (1-D): max relative logit difference = {difference:.2e}")
assert difference < 1e-4

# %% [markdown]
# ## MONAI -> senet -> timm
#
# senet is also a bridge between peers: a 2-D MONAI `SEResNet50` becomes senet's `legacy_seresnet50`,
# which exports to timm's `legacy_seresnet50` (the same Caffe layout). All three compute the same logits.

# %%
monai_2d = randomize_batch_norm(SEResNet50(spatial_dims=2, in_channels=3, num_classes=5))
state = convert_state_dict(monai_2d, source="monai", model="legacy_seresnet50")
ours = load_weights(create_model("legacy_seresnet50", **infer_options("legacy_seresnet50", state)), state)
timm_net = timm.create_model("legacy_seresnet50", pretrained=False, num_classes=5)
timm_net.load_state_dict(export_state_dict(ours, target="timm"), strict=True)
image = torch.randn(1, 3, SIZE, SIZE)
print(f"MONAI vs timm via senet: max relative logit difference = {max_difference(monai_2d, timm_net, image):.2e}")
assert max_difference(monai_2d, ours, image) < 1e-4
assert max_difference(monai_2d, timm_net, image) < 1e-4

# %% [markdown]
# ## What a state dict cannot show
#
# timm's `legacy_seresnet50` and `seresnet50` have the same keys and shapes, but stride in different
# convolutions, so they compute different functions. A rename alone would load one into the other without
# complaint. With `model=` the converter checks the architecture and refuses:

# %%
legacy_state = timm_net.state_dict()
try:
    convert_state_dict(legacy_state, source="timm", model="seresnet50")
    raise AssertionError("a Caffe-layout checkpoint must not convert into seresnet50")
except ValueError as err:
    print("refused:", str(err)[:160], "...")

# %% [markdown]
# ## Files: `convert_file` and `senet convert`
#
# On disk, `convert_file` reads a checkpoint without executing code (safetensors, or `torch.load` with
# `weights_only=True`; a `state_dict`/`model` wrapper and a `module.` prefix are removed), converts and
# checks it, and writes the senet state dict atomically. A checkpoint of timm's `train.py` (its `args`
# are an `argparse.Namespace`, the one class allowed beyond `weights_only`'s) gives its EMA weights
# (`state_dict_ema`) where it has them, as `timm.models.load_checkpoint` does; `use_ema=False` (`--no-ema`)
# takes the live ones. The command line does the same:
# `senet convert --from timm --model seresnet18 --in peer.pth --out senet.safetensors`.

# %%
src, dst = OUT / "peer_seresnet18.pth", OUT / "senet_seresnet18.safetensors"
torch.save({"state_dict": {f"module.{k}": v for k, v in peer.state_dict().items()}}, src)  # a DDP training checkpoint
convert_file(src, dst, source="timm", model="seresnet18")
state = read_checkpoint(dst)
ours = load_weights(create_model("seresnet18", **infer_options("seresnet18", state)), state)
assert max_difference(peer, ours, x) < 1e-4
print("converted file:", dst.name, f"({dst.stat().st_size / 1e6:.1f} MB)")
