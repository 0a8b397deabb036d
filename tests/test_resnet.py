"""The ResNet family (``senet.models.resnet``): parity with the peers, integration strategies, options, errors.

Peer models are built on the meta device (no memory, no init) where only parameter counts matter.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
import torch
import torch.nn as nn

from senet.layers import ATTENTION_LAYERS
from senet.layers.nd import nd_layers
from senet.models import create_model, list_models, load_weights
from senet.models.blocks import BasicBlock, Bottleneck, ZeroPadShortcut
from senet.models.registry import get_builder
from senet.models.resnet import ResNet, count_params
from senet.models.specs import RESNET50, ArchSpec, StageSpec, StemSpec, cifar_resnet

RESNET_NAMES = [name for name in list_models() if get_builder(name).__module__ == "senet.models.resnet"]
CIFAR_NAMES = [name for name in RESNET_NAMES if name.endswith("_cifar")]
IMAGENET_NAMES = [name for name in RESNET_NAMES if not name.endswith("_cifar")]
HUGE = {"senet154", "legacy_senet154", "resnext101_32x8d", "seresnext101_32x8d"}  # ~90-115M parameters


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(name: str, **options) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **options)


# --- parameter counts against timm, torchvision and MONAI ------------------------------------------------


def test_headline_counts():
    assert num_params(meta_model("resnet50")) == 25_557_032
    assert num_params(meta_model("seresnet50")) == 28_088_024
    assert num_params(meta_model("legacy_seresnet50")) == 28_088_024


@pytest.mark.parametrize("name", IMAGENET_NAMES)
def test_param_count_equals_timm(name):
    timm = pytest.importorskip("timm")
    assert name in timm.list_models(), f"{name} should carry timm's name for the same architecture"
    with torch.device("meta"):
        peer = timm.create_model(name)
    assert num_params(meta_model(name)) == num_params(peer)


TORCHVISION = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d"]


@pytest.mark.parametrize("name", TORCHVISION)
def test_param_count_equals_torchvision(name):
    models = pytest.importorskip("torchvision.models")
    with torch.device("meta"):
        peer = getattr(models, name)()
    assert num_params(meta_model(name)) == num_params(peer)


MONAI = {
    "legacy_seresnet50": "SEResNet50",
    "legacy_seresnet101": "SEResNet101",
    "legacy_seresnet152": "SEResNet152",
    "legacy_seresnext50_32x4d": "SEResNext50",
    "legacy_seresnext101_32x4d": "SEResNext101",
    "legacy_senet154": "SENet154",
}


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("name", sorted(MONAI))
def test_param_count_equals_monai_at_every_rank(name, spatial_dims):
    nets = pytest.importorskip("monai.networks.nets")
    with torch.device("meta"):
        peer = getattr(nets, MONAI[name])(spatial_dims=spatial_dims, in_channels=2, num_classes=7)
    ours = meta_model(name, spatial_dims=spatial_dims, in_channels=2, num_classes=7)
    assert num_params(ours) == num_params(peer)


@pytest.mark.parametrize(("depth", "millions"), [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7)])
def test_cifar_counts_match_he_et_al(depth, millions):
    """He et al. 2016, Table 6 (option-A shortcuts, 10 classes)."""
    count = num_params(create_model(f"resnet{depth}_cifar"))
    assert round(count / 1e6, 2 if depth < 100 else 1) == millions
    assert count == count_params(cifar_resnet(depth), num_classes=10)


# --- numerical parity with timm and torchvision (same weights, same outputs) -----------------------------

_LEGACY_DEEP_STEM = {"conv1": "conv1.0", "bn1": "conv1.1", "conv2": "conv1.3", "bn2": "conv1.4", "conv3": "conv1.6"}


def from_timm(state: dict[str, torch.Tensor], *, legacy: bool, deep_stem: bool = False) -> dict[str, torch.Tensor]:
    """timm -> senet keys: SE 1x1-conv weights (h, C, 1, 1) become Linear weights (h, C); the legacy models
    also rename ``layer0.*`` (stem), ``se_module`` and ``last_linear``."""
    out = {}
    for key, value in state.items():
        if legacy:
            if deep_stem:
                key = re.sub(r"^layer0\.(\w+)\.", lambda m: _LEGACY_DEEP_STEM.get(m[1], "bn1") + ".", key)
            else:
                key = key.removeprefix("layer0.")
            key = key.replace("se_module.", "se.").replace("last_linear.", "fc.")
        if re.search(r"\.se\.fc[12]\.weight$", key):
            value = value.flatten(1)
        out[key] = value
    return out


def randomize_bn(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)


def _parity(name: str, legacy: bool, deep_stem: bool = False) -> None:
    timm = pytest.importorskip("timm")
    peer = timm.create_model(name).eval()
    randomize_bn(peer)
    ours = create_model(name, weights=from_timm(peer.state_dict(), legacy=legacy, deep_stem=deep_stem)).eval()
    x = torch.randn(2, 3, 67, 53)  # odd sizes: checks padding, ceil-mode pooling and the stride positions
    with torch.no_grad():
        torch.testing.assert_close(ours(x), peer(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("name", "legacy"),
    [
        ("resnet18", False),
        ("seresnet18", False),
        ("seresnext26d_32x4d", False),
        ("legacy_seresnet18", True),
        ("legacy_seresnext26_32x4d", True),
        ("legacy_seresnet50", True),
    ],
)
def test_same_outputs_as_timm(name, legacy):
    _parity(name, legacy)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "legacy"), [("senet154", False), ("legacy_senet154", True)])
def test_same_outputs_as_timm_senet154(name, legacy):
    _parity(name, legacy, deep_stem=legacy)


def test_torchvision_weights_load_unchanged():
    models = pytest.importorskip("torchvision.models")
    peer = models.resnet18().eval()
    randomize_bn(peer)
    ours = load_weights(create_model("resnet18"), peer.state_dict()).eval()  # the keys are identical
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), peer(x))


# --- integration strategies -------------------------------------------------------------------------------

_STEM = StemSpec(widths=(8,), kernel_size=3, stride=1, pool="none")
_TINY_BOTTLENECK = ArchSpec(
    name="tiny bottleneck",
    block="bottleneck",
    stem=_STEM,
    stages=(
        StageSpec("a", depth=2, width=8, out_channels=16, stride=1, groups=2),
        StageSpec("b", depth=2, width=16, out_channels=32, stride=2, groups=2, first_width=8),
    ),
)
_TINY_BASIC = ArchSpec(
    name="tiny basic",
    block="basic",
    stem=_STEM,
    stages=(
        StageSpec("a", depth=2, width=8, out_channels=8, stride=1),
        StageSpec("b", depth=2, width=16, out_channels=16, stride=2),
    ),
)
TINY_SPECS = {
    "bottleneck": _TINY_BOTTLENECK,
    "bottleneck-1x1-stride": replace(_TINY_BOTTLENECK, stride_on="1x1"),
    "bottleneck-avg-shortcut": replace(_TINY_BOTTLENECK, shortcut="avg"),
    "bottleneck-3x3-shortcut": replace(_TINY_BOTTLENECK, shortcut_kernel=3),
    "basic": _TINY_BASIC,
    "basic-pad-shortcut": replace(_TINY_BASIC, shortcut="pad"),
    "basic-branch-act": replace(_TINY_BASIC, branch_act=True),
}
STRATEGIES = [
    ("standard", "after_act"),
    ("pre", "after_act"),
    ("post", "after_act"),
    ("post", "before_act"),
    ("identity", "after_act"),
    ("inside", "after_act"),
    ("inside", "before_act"),
]


def force_gates_to_one(model: nn.Module) -> list:
    """Make every SE gate s equal 1 (a forward hook on ``gate`` replaces its output)."""
    return [
        m.gate.register_forward_hook(lambda module, args, out: torch.ones_like(out))
        for m in model.modules()
        if hasattr(m, "gate") and isinstance(m.gate, nn.Module)
    ]


@pytest.mark.parametrize(("integration", "placement"), STRATEGIES)
@pytest.mark.parametrize("spec_name", sorted(TINY_SPECS))
def test_gates_forced_to_one_give_the_plain_network(spec_name, integration, placement):
    spec = TINY_SPECS[spec_name]
    se = ResNet(spec, num_classes=5, attention="se", reduction=4, integration=integration, placement=placement)
    randomize_bn(se)
    plain = ResNet(spec, num_classes=5, attention=None)
    load_weights(plain, {k: v for k, v in se.state_dict().items() if ".se." not in k})
    se.eval(), plain.eval()
    x = torch.randn(2, 3, 9, 10)
    with torch.no_grad():
        reference = plain(x)
        assert not torch.allclose(se(x), reference, atol=1e-4)  # the SE blocks do act ...
        handles = force_gates_to_one(se)
        assert torch.equal(se(x), reference)  # ... and are the only difference
    for handle in handles:
        handle.remove()


@pytest.mark.parametrize("spatial_dims", [1, 3])
@pytest.mark.parametrize(("integration", "placement"), STRATEGIES)
def test_gates_forced_to_one_at_other_ranks(integration, placement, spatial_dims):
    se = create_model("seresnet20_cifar", spatial_dims=spatial_dims, integration=integration, placement=placement)
    plain = create_model("resnet20_cifar", spatial_dims=spatial_dims)
    load_weights(plain, {k: v for k, v in se.state_dict().items() if ".se." not in k})
    se.eval(), plain.eval()
    x = torch.randn(2, 3, *([6] * spatial_dims))
    with torch.no_grad():
        force_gates_to_one(se)
        assert torch.equal(se(x), plain(x))


# Names of (the 3x3 conv's BN, its ReLU, the conv after it, the branch's last BN, the ReLU after the addition).
_INNER = {Bottleneck: ("bn2", "act2", "conv3", "bn3", "act3"), BasicBlock: ("bn1", "act1", "conv2", "bn2", "act2")}


def trace_block(block: nn.Module, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Copies of the inputs ("<name>.in") and outputs ("<name>.out") of the block's submodules during one call."""
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in block.named_children():
        if name == "downsample" and module is None:
            continue

        def record_in(m, args, name=name):
            seen[f"{name}.in"] = args[0].clone()

        def record_out(m, args, out, name=name):
            seen[f"{name}.out"] = out.clone()

        handles += [module.register_forward_pre_hook(record_in), module.register_forward_hook(record_out)]
    out = block(x)
    for handle in handles:
        handle.remove()
    return seen, out


@pytest.mark.parametrize("first", [True, False], ids=["projection", "identity-shortcut"])
@pytest.mark.parametrize(("integration", "placement"), STRATEGIES)
@pytest.mark.parametrize("spec_name", ["bottleneck", "basic"])
def test_block_goes_where_the_paper_says(spec_name, integration, placement, first):
    model = ResNet(TINY_SPECS[spec_name], attention="se", reduction=2, integration=integration, placement=placement)
    block = model.layer2[0 if first else 1]
    assert (block.downsample is not None) == first
    inner_bn, inner_act, next_conv, last_bn, out_act = _INNER[type(block)]
    in_channels = block.conv1.in_channels
    x = torch.relu(torch.randn(2, in_channels, 6, 6))
    seen, out = trace_block(block, x)
    shortcut = seen["downsample.out"] if first else x
    se_in, se_out = seen["se.in"], seen["se.out"]
    expected_channels = {"pre": in_channels, "inside": getattr(block, inner_bn).num_features}
    assert block.se.channels == expected_channels.get(integration, getattr(block, last_bn).num_features)
    if integration == "standard":  # on the residual branch, before the addition
        assert torch.equal(se_in, seen[f"{last_bn}.out"])
        assert torch.equal(seen[f"{out_act}.in"], se_out + shortcut)
    elif integration == "pre":  # before the unit: the branch sees SE(x), the shortcut x
        assert torch.equal(se_in, x)
        assert torch.equal(seen["conv1.in"], se_out)
        if first:
            assert torch.equal(seen["downsample.in"], x)
    elif integration == "post" and placement == "after_act":  # after the addition and the final ReLU
        assert torch.equal(se_in, seen[f"{out_act}.out"])
        assert torch.equal(out, se_out)
    elif integration == "post":  # between the addition and the final ReLU
        assert torch.equal(se_in, seen[f"{last_bn}.out"] + shortcut)
        assert torch.equal(seen[f"{out_act}.in"], se_out)
    elif integration == "identity":  # on the identity (or projection) branch, in parallel
        assert torch.equal(se_in, shortcut)
        assert torch.equal(seen[f"{out_act}.in"], seen[f"{last_bn}.out"] + se_out)
    elif placement == "after_act":  # inside: after the 3x3 conv's BN and ReLU
        assert torch.equal(se_in, seen[f"{inner_act}.out"])
        assert torch.equal(seen[f"{next_conv}.in"], se_out)
    else:  # inside, between the 3x3 conv's BN and its ReLU
        assert torch.equal(se_in, seen[f"{inner_bn}.out"])
        assert torch.equal(seen[f"{inner_act}.in"], se_out)


def test_integration_options_reach_every_block():
    model = create_model("seresnet50", integration="inside", placement="before_act", se_stages=(1, 3), spatial_dims=1)
    for stage_index, stage in enumerate(model.stage_modules()):
        for block in stage:
            assert (block.se is not None) == (stage_index in (1, 3))
            if block.se is not None:
                assert (block.integration, block.placement) == ("inside", "before_act")
                assert block.se.channels == block.conv2.out_channels
    assert model.num_params_from_spec() == num_params(model)


# --- options --------------------------------------------------------------------------------------------


def test_reduction_per_stage_and_divisor():
    model = create_model("seresnet20_cifar", reduction=(1, 2, 4))
    assert [stage[0].se.hidden_channels for stage in model.stage_modules()] == [16, 16, 16]
    assert meta_model("seresnet18").layer1[0].se.hidden_channels == 8  # timm: round to a multiple of 8
    assert meta_model("seresnet18", se_divisor=1).layer1[0].se.hidden_channels == 4  # the paper: 64 // 16
    assert meta_model("legacy_seresnet18").layer1[0].se.hidden_channels == 4  # Cadene: 64 // 16


def test_se_stages_only_last():
    model = create_model("seresnet20_cifar", se_stages=(2,))
    assert [all(b.se is not None for b in stage) for stage in model.stage_modules()] == [False, False, True]
    assert [any(b.se is not None for b in stage) for stage in model.stage_modules()] == [False, False, True]


def test_plain_and_se_share_names():
    plain, se = meta_model("resnet50").state_dict(), meta_model("seresnet50").state_dict()
    assert set(se) - set(plain) == {k for k in se if ".se.fc" in k}
    assert "layer4.2.se.fc1.weight" in se and se["layer4.2.se.fc1.weight"].shape == (128, 2048)
    assert set(plain) <= set(se)


def test_stride_placement():
    caffe, v15 = meta_model("legacy_seresnet50"), meta_model("seresnet50")
    assert (caffe.layer2[0].conv1.stride, caffe.layer2[0].conv2.stride) == ((2, 2), (1, 1))
    assert (v15.layer2[0].conv1.stride, v15.layer2[0].conv2.stride) == ((1, 1), (2, 2))
    senet = meta_model("legacy_senet154")
    assert senet.layer2[0].downsample[0].kernel_size == (3, 3) and senet.layer1[0].downsample[0].kernel_size == (1, 1)
    assert senet.layer1[0].conv1.out_channels == 128 and senet.layer1[0].conv2.groups == 64


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_one_rank_throughout(spatial_dims):
    model = meta_model("seresnext26d_32x4d", spatial_dims=spatial_dims)
    own = nd_layers(spatial_dims)
    others = [cls for d in (1, 2, 3) if d != spatial_dims for cls in vars(nd_layers(d)).values()]
    kinds = {type(m) for m in model.modules()}
    assert own.conv in kinds and own.norm in kinds and own.avg_pool in kinds and own.max_pool in kinds
    assert not kinds & set(others)


def test_zero_pad_shortcut():
    x = torch.randn(2, 4, 5, 7)
    y = ZeroPadShortcut(4, 8, stride=2)(x)
    assert y.shape == (2, 8, 3, 4)
    assert torch.equal(y[:, 2:6], x[:, :, ::2, ::2])
    assert not y[:, :2].any() and not y[:, 6:].any()


def test_every_attention_layer_fits():
    for attention in ATTENTION_LAYERS:
        model = create_model("seresnet20_cifar", attention=attention, integration="inside", num_classes=3)
        assert model(torch.randn(2, 3, 8, 8)).shape == (2, 3)
        assert num_params(model) == model.num_params_from_spec(), attention


# --- errors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"integration": "top"}, ValueError, r"integration must be one of \['identity', 'inside', 'post', 'pre'"),
        ({"placement": "before_act"}, ValueError, "placement='before_act' needs integration 'post' or 'inside'"),
        ({"placement": "middle", "integration": "post"}, ValueError, "placement must be one of"),
        ({"se_stages": (3,)}, ValueError, r"se_stages must hold stage indices in \[0, 2\], got 3"),
        ({"se_stages": (1, 1)}, ValueError, "must not repeat"),
        ({"se_stages": "0"}, TypeError, "se_stages must be a tuple"),
        ({"reduction": (16, 16)}, ValueError, "one per stage"),
        ({"reduction": 0}, ValueError, "reduction must be a positive int, got 0"),
        ({"reduction": 32}, ValueError, r"reduction must be in \[1, channels=16\], got 32"),
        ({"reduction": 2.0}, TypeError, "reduction must be an int"),
        ({"attention": "attn"}, ValueError, "attention must be one of"),
        ({"spatial_dims": 4}, ValueError, "spatial_dims must be one of"),
        ({"in_channels": 0}, ValueError, "in_channels must be a positive int"),
        ({"num_classes": -1}, ValueError, "num_classes must be an int >= 0"),
        ({"drop_rate": 1.0}, ValueError, r"drop_rate must be a float in \[0, 1\)"),
        ({"se_divisor": 0}, ValueError, "divisor must be a positive int"),
        ({"width": 2}, ValueError, "has no option"),
    ],
)
def test_bad_options(options, error, message):
    with pytest.raises(error, match=message):
        create_model("seresnet20_cifar", **options)


def test_bad_inputs():
    model = create_model("resnet20_cifar")
    with pytest.raises(ValueError, match=r"x must have shape \(N, C, \*spatial\) with 2 spatial dims"):
        model(torch.randn(2, 3, 8))
    with pytest.raises(ValueError, match="channels=3"):
        model(torch.randn(2, 4, 8, 8))
    with pytest.raises(TypeError, match="floating-point"):
        model(torch.ones(2, 3, 8, 8, dtype=torch.long))


def test_bad_specs():
    with pytest.raises(ValueError, match="divisible by groups"):
        StageSpec("conv2_x", depth=1, width=10, out_channels=16, stride=1, groups=4)
    with pytest.raises(ValueError, match="6n \\+ 2"):
        cifar_resnet(21)
    with pytest.raises(ValueError, match="no first 1x1"):
        replace(_TINY_BASIC, stages=(replace(_TINY_BASIC.stages[0], first_width=4),))
    with pytest.raises(ValueError, match="ArchSpec.shortcut must be one of"):
        replace(RESNET50, shortcut="zero")
    with pytest.raises(TypeError, match="spec must be an ArchSpec"):
        ResNet("resnet50")  # type: ignore[arg-type]
