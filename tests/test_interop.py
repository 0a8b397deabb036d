"""Weight interop with timm, torchvision and MONAI (issue 6): every pair converts, computes the same logits,
and converts back exactly; broken or mismatched checkpoints fail loudly and load nothing.

The pair tests build the peer network with random weights (no downloads), randomise its BN statistics,
convert, load strictly into the senet model, compare logits in eval mode (float32 within 1e-4, float64
within 1e-9), export back (equal to the peer's own state dict, tensor by tensor) and load strictly into
the wiped peer. One small representative per family always runs; the rest are marked ``slow``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from senet.interop import convert_file, convert_state_dict, export_state_dict, infer_options
from senet.models import create_model, load_weights

REPO_ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 7
TOLERANCE = 1e-4  # max abs logit difference, float32


# --------------------------------------------------------------------------------------------- helpers
def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


def randomize(model: nn.Module, calibration_shape: tuple[int, ...], seed: int = 1) -> nn.Module:
    """Random BN affine parameters and running statistics, as a trained network has.

    The statistics are first set to those of one small random batch, then perturbed per channel; the
    counters ``num_batches_tracked`` get random values too. Like a trained network (and unlike a random one,
    where a float32 rounding difference grows a thousandfold through 150 layers, timm's own float32 and
    float64 logits then differing by 0.3), the network is kept well conditioned, so that a 1e-4 tolerance is
    meaningful: the last BN of each residual branch is scaled down (as ``zero_init_last`` does) and each
    layer's variances are floored at their median, since few positions remain in the last stages.
    """
    gen = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for bn in norms:
            bn.weight.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
            bn.bias.copy_(torch.randn(bn.num_features, generator=gen) * 0.1)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average: one batch gives its own statistics
        for bn in _branch_ends(model):
            bn.weight.mul_(0.2)
        model.train()
        model(torch.randn(calibration_shape, generator=gen))
        for bn in norms:
            bn.momentum = 0.1
            bn.running_mean.add_(torch.randn(bn.num_features, generator=gen) * 0.05)
            bn.running_var.clamp_(min=bn.running_var.median().item())
            bn.running_var.mul_(torch.rand(bn.num_features, generator=gen) * 0.4 + 0.8)
            bn.num_batches_tracked.fill_(int(torch.randint(1, 10_000, (1,), generator=gen)))
    return model.eval()


def _branch_ends(model: nn.Module) -> list[nn.Module]:
    """The last BN of every residual branch (not of its shortcut), in any of the peers' naming."""
    ends = []
    for name, block in model.named_modules():
        if re.fullmatch(r"layer[1-4]\.\d+", name):
            branch = [
                m
                for n, m in block.named_modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and not n.startswith(("downsample", "project"))
            ]
            ends.append(branch[-1])
    return ends


@dataclass(frozen=True)
class Pair:
    """A peer network and the senet model it maps onto."""

    source: str  # "timm", "torchvision" or "monai"
    peer: str  # the peer's name for the network
    senet: str
    spatial_dims: int = 2
    in_channels: int = 3

    @property
    def input_shape(self) -> tuple[int, ...]:
        # 40 px: odd sizes deeper in the network exercise ceil-mode pooling (Caffe stem, ResNet-D shortcut).
        batch, spatial = {1: (2, (64,)), 2: (2, (40, 40)), 3: (1, (16, 16, 16))}[self.spatial_dims]
        return (batch, self.in_channels, *spatial)

    @property
    def calibration_shape(self) -> tuple[int, ...]:
        return (2, self.in_channels, *{1: (32,), 2: (32, 32), 3: (8, 8, 8)}[self.spatial_dims])

    def build(self) -> nn.Module:
        if self.source == "timm":
            timm = pytest.importorskip("timm")
            return timm.create_model(self.peer, pretrained=False, num_classes=NUM_CLASSES)
        if self.source == "torchvision":
            models = pytest.importorskip("torchvision.models")
            return getattr(models, self.peer)(weights=None, num_classes=NUM_CLASSES)
        nets = pytest.importorskip("monai.networks.nets")
        return getattr(nets, self.peer)(
            spatial_dims=self.spatial_dims, in_channels=self.in_channels, num_classes=NUM_CLASSES
        )

    def senet_model(self) -> nn.Module:
        return create_model(
            self.senet, spatial_dims=self.spatial_dims, in_channels=self.in_channels, num_classes=NUM_CLASSES
        )

    @property
    def id(self) -> str:
        return f"{self.source}-{self.peer}" + (f"-{self.spatial_dims}d" if self.source == "monai" else "")


FAST = [
    Pair("torchvision", "resnet18", "resnet18"),
    Pair("timm", "resnet18", "resnet18"),
    Pair("timm", "seresnet18", "seresnet18"),  # SE width 8 (timm's rounding)
    Pair("timm", "legacy_seresnet18", "legacy_seresnet18"),  # SE width 4 (C // 16), ReLU before SE
    Pair("timm", "seresnext26d_32x4d", "seresnext26d_32x4d"),  # deep stem, avg-pool shortcut, groups
    Pair("monai", "SEResNet50", "legacy_seresnet50", spatial_dims=1, in_channels=2),
    Pair("monai", "SEResNet50", "legacy_seresnet50", spatial_dims=2),
    Pair("monai", "SEResNet50", "legacy_seresnet50", spatial_dims=3, in_channels=1),
]
_TIMM_SLOW = [
    "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x4d", "resnext101_32x8d",
    "seresnet34", "seresnet50", "seresnet101", "seresnet152", "seresnext50_32x4d", "seresnext101_32x4d",
    "seresnext101_32x8d", "senet154", "legacy_seresnet34", "legacy_seresnet50", "legacy_seresnet101",
    "legacy_seresnet152", "legacy_seresnext26_32x4d", "legacy_seresnext50_32x4d", "legacy_seresnext101_32x4d",
    "legacy_senet154",
]  # fmt: skip
_TV_SLOW = ["resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d"]
_MONAI = {
    "SEResNet50": "legacy_seresnet50",
    "SEResNet101": "legacy_seresnet101",
    "SEResNet152": "legacy_seresnet152",
    "SEResNext50": "legacy_seresnext50_32x4d",
    "SEResNext101": "legacy_seresnext101_32x4d",
    "SENet154": "legacy_senet154",
}
SLOW = (
    [Pair("timm", name, name) for name in _TIMM_SLOW]
    + [Pair("torchvision", name, name) for name in _TV_SLOW]
    + [
        Pair("monai", peer, senet, spatial_dims=d, in_channels={1: 2, 2: 3, 3: 1}[d])
        for peer, senet in _MONAI.items()
        for d in (1, 2, 3)
        if peer != "SEResNet50"
    ]
)
PAIRS = [pytest.param(p, id=p.id) for p in FAST] + [pytest.param(p, id=p.id, marks=pytest.mark.slow) for p in SLOW]


# ------------------------------------------------------------------------------------------ the pairs
@pytest.mark.parametrize("pair", PAIRS)
def test_pair_converts_exactly_and_back(pair: Pair):
    torch.manual_seed(0)
    peer = randomize(pair.build(), pair.calibration_shape)
    peer_state = {k: v.clone() for k, v in peer.state_dict().items()}

    net = pair.senet_model()
    state = convert_state_dict(peer_state, source=pair.source, model=net)  # checks architecture and keys
    load_weights(net, state)
    net.eval()
    assert num_params(net) == num_params(peer)

    x = torch.randn(pair.input_shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got = peer(x), net(x)
    assert expected.shape == got.shape == (x.shape[0], NUM_CLASSES)
    assert expected.std() > 1e-3  # the comparison is not between constants
    # float32 rounding grows with the logits' size: random deep 3-D pairs reach |logit| ~ 200, where the
    # fused SE tail's reassociated float32 sums differ by ~5e-4 (the float64 check below is the exact one)
    tolerance = TOLERANCE * max(1.0, expected.abs().max().item() / 10)
    assert (got - expected).abs().max().item() < tolerance

    exported = export_state_dict(net, target=pair.source)
    assert exported.keys() == peer_state.keys()
    assert all(exported[k].shape == v.shape and torch.equal(exported[k], v) for k, v in peer_state.items())
    with torch.no_grad():  # wipe the peer, then load the export strictly: the logits come back
        for tensor in peer.state_dict().values():
            tensor.zero_()
    peer.load_state_dict(exported, strict=True)
    with torch.no_grad():
        assert (peer(x) - expected).abs().max().item() < tolerance
        # In float64 the two agree to rounding: the float32 difference above is rounding, not a deviation.
        assert (peer.double()(x.double()) - net.double()(x.double())).abs().max().item() < 1e-9


# ----------------------------------------------------------------------------------- the known traps
def test_se_hidden_width_is_read_from_the_checkpoint():
    timm = pytest.importorskip("timm")
    widths = {}
    for name in ("seresnet18", "legacy_seresnet18"):
        peer = timm.create_model(name, num_classes=NUM_CLASSES)
        state = convert_state_dict(peer.state_dict(), source="timm", model=name)
        widths[name] = state["layer1.0.se.fc1.weight"].shape
        net = create_model(name, num_classes=NUM_CLASSES)
        load_weights(net, state)
        assert net.layer1[0].se.hidden_channels == widths[name][0]
    assert widths == {"seresnet18": (8, 64), "legacy_seresnet18": (4, 64)}  # timm rounds to 8; Cadene C // 16


def test_se_conv_weights_are_reshaped_not_renamed():
    net = create_model("seresnet18", num_classes=NUM_CLASSES)
    timm_state = export_state_dict(net, target="timm")
    conv = timm_state["layer2.1.se.fc2.weight"]
    assert conv.shape == (128, 8, 1, 1)
    back = convert_state_dict(timm_state, source="timm", model=net)
    assert back["layer2.1.se.fc2.weight"].shape == (128, 8)
    assert torch.equal(back["layer2.1.se.fc2.weight"], conv[:, :, 0, 0])
    bad = dict(timm_state, **{"layer2.1.se.fc2.weight": torch.zeros(128, 8, 3, 3)})
    with pytest.raises(ValueError, match=r"layer2\.1\.se\.fc2\.weight.*\(128, 8, 3, 3\)"):
        convert_state_dict(bad, source="timm")


def test_stride_placement_is_an_architecture_not_a_renaming():
    """timm's legacy_seresnet50 checkpoint has exactly the keys and shapes of senet's seresnet50 (stride on the
    3x3, padded pool), so a strict load alone would accept it and compute something else."""
    timm = pytest.importorskip("timm")
    peer = randomize(timm.create_model("legacy_seresnet50", num_classes=NUM_CLASSES), (2, 3, 32, 32))
    renamed = convert_state_dict(peer.state_dict(), source="timm")  # no model: renaming only
    wrong = create_model("seresnet50", num_classes=NUM_CLASSES)
    wrong.load_state_dict(renamed, strict=True)  # loads ...
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        assert (wrong.eval()(x) - peer(x)).abs().max() > 1e-2  # ... and computes another function
    wrong = create_model("seresnet50", num_classes=NUM_CLASSES)
    before = snapshot(wrong)
    with pytest.raises(ValueError, match=r"stem_pool: model 'max'.*'max_ceil'.*stride_on: model '3x3'.*'1x1'.*legacy_"):
        convert_state_dict(peer.state_dict(), source="timm", model=wrong)
    assert_unchanged(wrong, before)
    # And the other way: a senet seresnet50 exported to MONAI (Caffe layout) is refused.
    with pytest.raises(ValueError, match="stride_on"):
        export_state_dict(wrong, target="monai")


def test_monai_reduction_2_and_other_ratios_come_from_the_checkpoint():
    nets = pytest.importorskip("monai.networks.nets")
    peer = randomize(nets.SEResNet50(spatial_dims=1, in_channels=2, num_classes=NUM_CLASSES, reduction=2), (2, 2, 32))
    state = convert_state_dict(peer, source="monai")
    assert state["layer1.0.se.fc1.weight"].shape == (128, 256)  # C // 2, MONAI's ChannelSELayer default ratio
    options = infer_options("legacy_seresnet50", state)
    assert options == {"spatial_dims": 1, "in_channels": 2, "num_classes": NUM_CLASSES, "se_divisor": 1, "reduction": 2}
    net = create_model("legacy_seresnet50", **options).eval()
    load_weights(net, convert_state_dict(peer, source="monai", model=net))
    x = torch.randn(2, 2, 64)
    with torch.no_grad():
        assert (net(x) - peer(x)).abs().max().item() < TOLERANCE
    exported = export_state_dict(net, target="monai")
    assert all(torch.equal(exported[k], v) for k, v in peer.state_dict().items())


def test_a_model_name_is_built_with_the_options_the_checkpoint_implies():
    net = create_model(
        "legacy_seresnet50", spatial_dims=1, in_channels=4, num_classes=5, reduction=(2, 4, 8, 16), se_divisor=1
    )
    monai_state = export_state_dict(net, target="monai")
    state = convert_state_dict(monai_state, source="monai", model="legacy_seresnet50")  # builds, checks strictly
    assert infer_options("legacy_seresnet50", state) == {
        "spatial_dims": 1, "in_channels": 4, "num_classes": 5, "se_divisor": 1, "reduction": (2, 4, 8, 16)
    }  # fmt: skip
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


def test_monai_residual_se_layer_is_rejected():
    """ResidualSELayer (x + SE(x), LeakyReLU, ReLU gate) has ChannelSELayer's keys: only the network shows it."""
    nets = pytest.importorskip("monai.networks.nets")
    blocks = pytest.importorskip("monai.networks.blocks")
    peer = nets.SEResNet50(spatial_dims=1, in_channels=2, num_classes=NUM_CLASSES)
    peer.layer2[1].se_layer = blocks.ResidualSELayer(spatial_dims=1, in_channels=512, r=16)
    with pytest.raises(ValueError, match=r"layer2\.1\.se_layer \(ResidualSELayer\)"):
        convert_state_dict(peer, source="monai", model="legacy_seresnet50")
    convert_state_dict(peer.state_dict(), source="monai")  # the state dict alone cannot tell


def test_peer_networks_with_other_functions_are_rejected():
    timm = pytest.importorskip("timm")
    models = pytest.importorskip("torchvision.models")
    peer = timm.create_model("seresnet18", num_classes=NUM_CLASSES)
    peer.layer1[0].se = timm.layers.SEModule(64, add_maxpool=True)
    with pytest.raises(ValueError, match=r"layer1\.0\.se \(SE squeezes by avg \+ max"):
        convert_state_dict(peer, source="timm")
    dilated = models.resnet50(weights=None, replace_stride_with_dilation=[False, False, True])
    with pytest.raises(ValueError, match=r"layer4\.\d\.conv2 \(dilation"):
        convert_state_dict(dilated, source="torchvision")


def test_num_batches_tracked_is_kept_or_filled_with_zero():
    net = create_model("legacy_seresnet18", num_classes=NUM_CLASSES)
    for i, bn in enumerate(m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
        bn.num_batches_tracked.fill_(100 + i)
    timm_state = export_state_dict(net, target="timm")
    assert timm_state["layer0.bn1.num_batches_tracked"] == 100
    back = convert_state_dict(timm_state, source="timm", model=net)
    assert all(torch.equal(back[k], v) for k, v in net.state_dict().items())
    # Cadene's original files predate the counter: it is filled with 0 and the load stays strict.
    old = {k: v for k, v in timm_state.items() if not k.endswith("num_batches_tracked")}
    filled = convert_state_dict(old, source="timm", model="legacy_seresnet18")
    counters = [k for k in filled if k.endswith("num_batches_tracked")]
    assert len(counters) == sum(k.endswith("running_mean") for k in filled) > 0
    assert all(filled[k].item() == 0 and filled[k].dtype == torch.long for k in counters)
    load_weights(create_model("legacy_seresnet18", num_classes=NUM_CLASSES), filled)
    # A missing running statistic is not filled in: it is an error.
    del old["layer1.0.bn2.running_var"]
    with pytest.raises(ValueError, match=r"missing keys \(1\): \['layer1\.0\.bn2\.running_var'\]"):
        convert_state_dict(old, source="timm", model="legacy_seresnet18")


# -------------------------------------------------------------------------- corrupted / mismatched
def _senet_and_timm_state() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    net = create_model("seresnet18", num_classes=NUM_CLASSES)
    return net, export_state_dict(net, target="timm")


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda s: s.pop("layer3.1.bn1.running_mean"), r"missing keys \(1\): \['layer3\.1\.bn1\.running_mean'\]"),
        (lambda s: s.__setitem__("layer3.7.conv1.weight", torch.zeros(3)), r"unexpected keys.*layer3\.7\.conv1\."),
        (lambda s: s.__setitem__("layer3.1.foo.weight", torch.zeros(3)), r"not part of a timm.*layer3\.1\.foo\."),
        (
            lambda s: s.__setitem__("layer2.0.conv2.weight", torch.zeros(128, 128, 5, 5)),
            r"wrong shapes \(1\).*layer2\.0\.conv2\.weight: checkpoint \(128, 128, 5, 5\) vs model \(128, 128, 3, 3\)",
        ),
        (lambda s: s.__setitem__("fc.weight", torch.zeros(NUM_CLASSES + 1, 512)), r"fc\.weight: checkpoint \(8, 512\)"),
    ],
    ids=["missing", "extra", "unknown", "wrong-shape", "wrong-classes"],
)
def test_corrupted_checkpoint_names_the_keys_and_changes_nothing(corrupt: Callable, message: str):
    net, state = _senet_and_timm_state()
    target = create_model("seresnet18", num_classes=NUM_CLASSES)
    before = snapshot(target)
    corrupt(state)
    with pytest.raises(ValueError, match=message):
        convert_state_dict(state, source="timm", model=target)
    assert_unchanged(target, before)
    # Loading the renamed dict directly is just as strict, and loads nothing either.
    try:
        renamed = convert_state_dict(state, source="timm")
    except ValueError:
        return  # the unknown key is refused by the renaming already
    with pytest.raises(ValueError, match="nothing was loaded"):
        load_weights(target, renamed)
    assert_unchanged(target, before)


def test_wrong_architecture_names_the_keys():
    _, state = _senet_and_timm_state()  # SE-ResNet-18
    target = create_model("resnet34", num_classes=NUM_CLASSES)
    before = snapshot(target)
    with pytest.raises(ValueError, match=r"missing keys.*layer1\.2\.conv1\.weight.*unexpected keys.*layer1\.0\.se\."):
        convert_state_dict(state, source="timm", model=target)
    assert_unchanged(target, before)
    with pytest.raises(ValueError, match="stem_pool"):  # keys and shapes agree, the layout does not
        legacy = create_model("legacy_seresnet18", num_classes=NUM_CLASSES, se_divisor=8)
        convert_state_dict(state, source="timm", model=legacy)


def test_export_refuses_what_the_peer_cannot_compute():
    with pytest.raises(ValueError, match="no attention"):
        export_state_dict(create_model("seresnet18"), target="torchvision")
    with pytest.raises(ValueError, match=r"spatial_dims in \(2,\)"):
        export_state_dict(create_model("resnet18", spatial_dims=3), target="timm")
    with pytest.raises(ValueError, match="integration='standard'"):
        export_state_dict(create_model("seresnet18", integration="pre"), target="timm")
    with pytest.raises(ValueError, match="every unit"):
        export_state_dict(create_model("legacy_seresnet50", se_stages=(3,)), target="monai")
    with pytest.raises(ValueError, match="no timm network"):
        export_state_dict(create_model("resnet20_cifar"), target="timm")


def test_arguments_are_checked():
    net, state = _senet_and_timm_state()
    with pytest.raises(ValueError, match=r"source must be one of \['monai', 'timm', 'torchvision'\], got 'keras'"):
        convert_state_dict(state, source="keras")
    with pytest.raises(ValueError, match="target must be one of"):
        export_state_dict(net, target="onnx")
    with pytest.raises(TypeError, match="state dict"):
        convert_state_dict([1, 2], source="timm")
    with pytest.raises(TypeError, match="torch.Tensor"):
        convert_state_dict({"fc.weight": [1.0]}, source="timm")
    with pytest.raises(TypeError, match="ResNet-family"):
        convert_state_dict(state, source="timm", model=nn.Linear(2, 2))
    with pytest.raises(ValueError, match="unknown model 'seresnet19'"):
        convert_state_dict(state, source="timm", model="seresnet19")
    with pytest.raises(ValueError, match="needs model="):
        export_state_dict(net.state_dict(), target="timm")
    with pytest.raises(TypeError, match="only with a state dict"):
        export_state_dict(net, target="timm", model="seresnet18")


def test_export_from_a_state_dict_with_a_model_name():
    net = create_model("legacy_seresnet18", num_classes=NUM_CLASSES)
    from_name = export_state_dict(net.state_dict(), target="timm", model="legacy_seresnet18")
    from_model = export_state_dict(net, target="timm")
    assert from_name.keys() == from_model.keys() and "layer0.conv1.weight" in from_name
    assert all(torch.equal(from_name[k], from_model[k]) for k in from_model)
    with pytest.raises(ValueError, match="wrong shapes"):  # timm's width 8 is not this model's 4
        export_state_dict(net.state_dict(), target="timm", model=create_model("seresnet18", num_classes=NUM_CLASSES))


def test_peers_are_imported_only_when_asked_for():
    script = textwrap.dedent(
        """
        import sys
        import senet.interop
        from senet.interop import convert_state_dict, export_state_dict
        from senet.models import create_model
        net = create_model("legacy_seresnet18", num_classes=3)
        convert_state_dict(export_state_dict(net, target="timm"), source="timm", model=net)
        plain = create_model("resnet18", num_classes=3)
        convert_state_dict(export_state_dict(plain, target="torchvision"), source="torchvision", model=plain)
        big = create_model("legacy_seresnet50", num_classes=3, spatial_dims=1)
        convert_state_dict(export_state_dict(big, target="monai"), source="monai", model=big)
        loaded = sorted(m for m in ("timm", "monai", "torchvision") if m in sys.modules)
        print("LOADED", loaded)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout


# --------------------------------------------------------------------------------------- convert_file
@pytest.mark.parametrize("src_suffix, dst_suffix", [(".pt", ".safetensors"), (".safetensors", ".pt")])
def test_convert_file_round_trip(tmp_path: Path, src_suffix: str, dst_suffix: str):
    net = create_model("legacy_seresnet18", num_classes=NUM_CLASSES).eval()
    timm_state = export_state_dict(net, target="timm")
    src, dst = tmp_path / f"peer{src_suffix}", tmp_path / f"senet{dst_suffix}"
    if src_suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in timm_state.items()}, str(src))
    else:
        torch.save(timm_state, src)
    convert_file(src, dst, source="timm", model="legacy_seresnet18")
    loaded = create_model("legacy_seresnet18", num_classes=NUM_CLASSES, weights=dst).eval()
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([src.name, dst.name])  # no temporary left


def test_convert_file_unwraps_training_checkpoints(tmp_path: Path):
    net = create_model("resnet18", num_classes=NUM_CLASSES)
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in export_state_dict(net, target="timm").items()}}
    torch.save(wrapped, tmp_path / "checkpoint.pth.tar")
    convert_file(tmp_path / "checkpoint.pth.tar", tmp_path / "out.pt", source="timm", model="resnet18")
    state = torch.load(tmp_path / "out.pt", weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


class _NeedsCode:
    """A class no safe loader knows: a pickled instance needs code to load back."""


def test_convert_file_fails_cleanly(tmp_path: Path):
    net = create_model("seresnet18", num_classes=NUM_CLASSES)
    state = export_state_dict(net, target="timm")
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"state_dict": state, "extra": _NeedsCode()}, unsafe)  # (timm's args Namespace is accepted)
    dst = tmp_path / "out.safetensors"
    with pytest.raises(ValueError, match="weights_only=True"):
        convert_file(unsafe, dst, source="timm", model="seresnet18")
    broken = tmp_path / "broken.pt"
    torch.save({k: v for k, v in state.items() if k != "layer4.1.se.fc1.bias"}, broken)
    with pytest.raises(ValueError, match=r"missing keys \(1\): \['layer4\.1\.se\.fc1\.bias'\]"):
        convert_file(broken, dst, source="timm", model="seresnet18")
    good = tmp_path / "good.pt"
    torch.save(state, good)
    with pytest.raises(ValueError, match="stem_pool"):  # the right keys, the wrong architecture
        convert_file(good, dst, source="timm", model="legacy_seresnet18")
    with pytest.raises(ValueError, match=r"dst must end in one of"):
        convert_file(broken, tmp_path / "out.bin", source="timm", model="seresnet18")
    with pytest.raises(ValueError, match="not found"):
        convert_file(tmp_path / "absent.pt", dst, source="timm", model="seresnet18")
    assert not dst.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
