"""The non-ResNet families: pre-activation ResNet-164 / WRN-16-8, MobileNet v1/v2 and VGG-16-BN.

Parameter counts against torchvision/timm and the papers, spec-table counts, the integration strategies
(structurally, and numerically: with every gate forced to 1 each strategy computes the plain network),
ranks 1/2/3, the timm-style API, and errors.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from senet.layers import ATTENTION_LAYERS, SqueezeExcite
from senet.models import create_model
from senet.models.conv_block import ConvNormAct
from senet.models.inception import GOOGLENET, Inception
from senet.models.inception import count_params as count_params_inception
from senet.models.integration import BlockAttention
from senet.models.mobilenet import (
    MOBILENETV1_100,
    MOBILENETV2_100,
    DepthwiseSeparable,
    InvertedResidual,
    count_params_v1,
    count_params_v2,
)
from senet.models.preact import (
    PREACT_RESNET164,
    WRN16_8,
    PreActBasic,
    PreActBottleneck,
    PreActResNet,
    PreActSpec,
    PreActStageSpec,
)
from senet.models.preact import count_params as count_params_preact
from senet.models.vgg import VGG, VGG16, VGGSpec, VGGStageSpec
from senet.models.vgg import count_params as count_params_vgg

MY_MODELS = (
    "preact_resnet164_cifar",
    "sepreact_resnet164_cifar",
    "wrn16_8_cifar",
    "sewrn16_8_cifar",
    "mobilenetv1_100",
    "semobilenetv1_100",
    "mobilenetv2_100",
    "semobilenetv2_100",
    "vgg16_bn",
    "sevgg16_bn",
    "googlenet",
    "segooglenet",
)

# Small members of each family: the same code paths as the registered models, at a fraction of the cost.
TINY_BOTTLENECK = PreActSpec(
    name="tiny-preact",
    block="bottleneck",
    stem_channels=4,
    stages=(
        PreActStageSpec("a", depth=2, width=4, out_channels=16, stride=1),
        PreActStageSpec("b", depth=2, width=8, out_channels=32, stride=2),
    ),
)
TINY_WRN = PreActSpec(
    name="tiny-wrn",
    block="basic",
    stem_channels=4,
    stages=(
        PreActStageSpec("a", depth=2, width=8, out_channels=8, stride=1),
        PreActStageSpec("b", depth=2, width=16, out_channels=16, stride=2),
    ),
)
TINY_VGG = VGGSpec(
    stages=tuple(
        VGGStageSpec(f"conv{i + 1}", depth=2 if i < 2 else 3, out_channels=c) for i, c in enumerate((4, 8, 8, 16, 16))
    ),
    hidden_features=32,
)

# (integration, placement) pairs a pre-activation unit accepts.
PREACT_POSITIONS = (
    ("standard", "after_act"),
    ("pre", "after_act"),
    ("pre", "before_act"),
    ("post", "after_act"),
    ("identity", "after_act"),
    ("inside", "after_act"),
    ("inside", "before_act"),
)


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _open_gates(model: nn.Module) -> int:
    """Force every SE gate to 1 (a forward hook on ``gate`` returning ones); returns how many were forced."""
    forced = 0
    for module in model.modules():
        if isinstance(module, SqueezeExcite):
            module.gate.register_forward_hook(lambda _m, _i, out: torch.ones_like(out))
            forced += 1
    return forced


def _plain_twin(se_model: nn.Module, plain: nn.Module) -> nn.Module:
    """Load the SE model's weights, minus its attention layers, strictly into the plain model."""
    state = {k: v for k, v in se_model.state_dict().items() if ".se." not in k}
    plain.load_state_dict(state, strict=True)
    return plain.eval()


def _assert_gates_one_equals_plain(se_model: nn.Module, plain: nn.Module, x: torch.Tensor) -> None:
    se_model.eval()
    _plain_twin(se_model, plain)
    with torch.no_grad():
        reference = plain(x)
        gated = se_model(x)
        assert not torch.equal(gated, reference), "SE with learned gates should change the output"
        assert _open_gates(se_model) > 0
        torch.testing.assert_close(se_model(x), reference, rtol=0, atol=0)


def _record_input(module: nn.Module) -> list[torch.Tensor]:
    inputs: list[torch.Tensor] = []
    module.register_forward_pre_hook(lambda _m, args: inputs.append(args[0].detach().clone()))
    return inputs


def _record_output(module: nn.Module) -> list[torch.Tensor]:
    outputs: list[torch.Tensor] = []
    module.register_forward_hook(lambda _m, _i, out: outputs.append(out.detach().clone()))
    return outputs


# ------------------------------------------------------------------------------------------- registry, counts


def test_registered_names():
    from senet.models import list_models

    names = set(list_models())
    assert set(MY_MODELS) <= names


def test_parameter_counts_of_the_references():
    """Plain counts as torchvision/timm count them; SE counts from the SE formula (documented in the builders)."""
    expected = {
        "preact_resnet164_cifar": 1_703_258,  # He et al. 2016: 1.7M
        "sepreact_resnet164_cifar": 1_905_362,
        "wrn16_8_cifar": 10_961_370,  # Zagoruyko & Komodakis: 11.0M
        "sewrn16_8_cifar": 11_049_290,
        "mobilenetv1_100": 4_231_976,  # timm mobilenetv1_100
        "semobilenetv1_100": 4_718_044,  # SENet paper Table 3: 4.7M
        "mobilenetv2_100": 3_504_872,  # torchvision mobilenet_v2
        "semobilenetv2_100": 3_888_760,
    }
    for name, count in expected.items():
        assert _count(create_model(name)) == count, name
    assert round(expected["semobilenetv1_100"] / 1e6, 1) == 4.7
    assert round(expected["mobilenetv1_100"] / 1e6, 1) == 4.2


def test_se_mobilenet_v1_overhead_is_the_se_formula():
    """13 SE blocks (r = 16) after the pointwise convs: 2*C*(C//16) + C//16 + C each."""
    widths = [row.out_channels for row in MOBILENETV1_100.stages for _ in range(row.depth)]
    assert len(widths) == 13
    overhead = sum(2 * c * (c // 16) + c // 16 + c for c in widths)
    assert overhead == 4_718_044 - 4_231_976


def _meta_shapes(model_fn) -> list[tuple[int, ...]]:
    with torch.device("meta"):
        model = model_fn()
    return [tuple(t.shape) for t in model.state_dict().values()]


def test_vgg16_bn_matches_torchvision_layer_by_layer():
    """Every tensor of torchvision's vgg16_bn (138,365,992 parameters), in the same order (built on 'meta')."""
    torchvision = pytest.importorskip("torchvision")
    ours = _meta_shapes(lambda: create_model("vgg16_bn"))
    assert ours == _meta_shapes(torchvision.models.vgg16_bn)
    with torch.device("meta"):
        assert _count(create_model("vgg16_bn")) == 138_365_992
        assert _count(create_model("sevgg16_bn")) == 138_365_992 + 230_792


def test_mobilenet_v2_equals_torchvision_numerically():
    """Same tensors in the same order as torchvision's mobilenet_v2: copy its weights, get its outputs."""
    torchvision = pytest.importorskip("torchvision")
    reference = torchvision.models.mobilenet_v2(num_classes=7).eval()
    ours = create_model("mobilenetv2_100", num_classes=7).eval()
    assert _count(reference) == _count(ours)
    theirs = list(reference.state_dict().values())
    keys = list(ours.state_dict())
    assert [tuple(t.shape) for t in theirs] == [tuple(v.shape) for v in ours.state_dict().values()]
    ours.load_state_dict(dict(zip(keys, theirs)), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


def test_mobilenet_v1_equals_timm_numerically():
    timm = pytest.importorskip("timm")
    reference = timm.create_model("mobilenetv1_100", num_classes=5).eval()
    ours = create_model("mobilenetv1_100", num_classes=5).eval()
    theirs = list(reference.state_dict().values())
    assert [tuple(t.shape) for t in theirs] == [tuple(v.shape) for v in ours.state_dict().values()]
    ours.load_state_dict(dict(zip(ours.state_dict(), theirs)), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


def test_googlenet_equals_torchvision_numerically():
    """torchvision's googlenet without auxiliary classifiers (6,624,904 parameters): same tensors, same outputs."""
    torchvision = pytest.importorskip("torchvision")
    reference = torchvision.models.googlenet(num_classes=6, aux_logits=False, init_weights=True).eval()
    ours = create_model("googlenet", num_classes=6).eval()
    assert _count(create_model("googlenet")) == 6_624_904
    theirs = list(reference.state_dict().values())
    assert [tuple(t.shape) for t in theirs] == [tuple(v.shape) for v in ours.state_dict().values()]
    ours.load_state_dict(dict(zip(ours.state_dict(), theirs)), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


@pytest.mark.slow
def test_vgg16_bn_equals_torchvision_numerically():
    torchvision = pytest.importorskip("torchvision")
    reference = torchvision.models.vgg16_bn(num_classes=5).eval()
    ours = create_model("vgg16_bn", num_classes=5).eval()
    ours.load_state_dict(dict(zip(ours.state_dict(), reference.state_dict().values())), strict=True)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


@pytest.mark.parametrize(
    "name, options",
    [
        ("sepreact_resnet164_cifar", {}),
        ("sepreact_resnet164_cifar", {"integration": "inside", "reduction": (4, 8, 16), "se_stages": (0, 2)}),
        ("sepreact_resnet164_cifar", {"integration": "pre", "spatial_dims": 3, "in_channels": 1}),
        ("sewrn16_8_cifar", {"integration": "identity", "num_classes": 100}),
        ("sewrn16_8_cifar", {"integration": "post", "spatial_dims": 1, "num_classes": 0}),
        ("wrn16_8_cifar", {}),
        ("semobilenetv1_100", {"se_stages": (4,), "reduction": 8}),
        ("semobilenetv1_100", {"spatial_dims": 1, "in_channels": 2, "reduction": (4, 4, 8, 16, 32)}),
        ("semobilenetv2_100", {"reduction": (2, 2, 4, 4, 4, 8, 8)}),
        ("semobilenetv2_100", {"spatial_dims": 3, "se_stages": (0, 6), "num_classes": 0}),
        ("mobilenetv2_100", {"spatial_dims": 1}),
        ("sevgg16_bn", {"spatial_dims": 1, "reduction": (4, 8, 8, 16, 32), "se_stages": (1, 3)}),
        ("vgg16_bn", {"spatial_dims": 3, "num_classes": 3}),
        ("segooglenet", {"se_stages": (1, 2), "reduction": (4, 8, 16)}),
        ("googlenet", {"spatial_dims": 3, "in_channels": 1}),
    ],
)
def test_parameter_count_from_the_spec_table(name, options):
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = create_model(name, **options)
    assert model.num_params_from_spec() == _count(model)


def test_spec_table_counts_without_building():
    assert count_params_preact(PREACT_RESNET164) == 1_703_258
    assert count_params_preact(WRN16_8, attention="se") == 11_049_290
    assert count_params_v1(MOBILENETV1_100, attention="se") == 4_718_044
    assert count_params_v2(MOBILENETV2_100) == 3_504_872
    assert count_params_vgg(VGG16) == 138_365_992
    assert count_params_inception(GOOGLENET) == 6_624_904
    assert count_params_inception(GOOGLENET, attention="se") == 7_105_007
    # ranks change only the kernels (k^d) and, for VGG, the pooled width of fc6
    one_d, three_d = (count_params_v1(MOBILENETV1_100, spatial_dims=d) for d in (1, 3))
    assert one_d < 4_231_976 < three_d


# ------------------------------------------------------------------------------------------- SE positions


def _unit(block: str, integration: str, placement: str, *, projection: bool) -> nn.Module:
    attention = BlockAttention("se", 4, integration, placement)
    if block == "bottleneck":
        stage = PreActStageSpec("s", depth=1, width=4, out_channels=16, stride=2 if projection else 1)
        unit = PreActBottleneck(2, 8 if projection else 16, stage, stride=stage.stride, attention=attention)
    else:
        stage = PreActStageSpec("s", depth=1, width=8, out_channels=8, stride=2 if projection else 1)
        unit = PreActBasic(2, 4 if projection else 8, stage, stride=stage.stride, attention=attention)
    return unit.eval()


@pytest.mark.parametrize("block", ["bottleneck", "basic"])
@pytest.mark.parametrize("projection", [False, True], ids=["identity_shortcut", "projection_shortcut"])
@pytest.mark.parametrize("integration, placement", PREACT_POSITIONS)
def test_preact_se_sits_where_the_docstring_says(block, projection, integration, placement):
    unit = _unit(block, integration, placement, projection=projection)
    in_channels = unit.bn1.num_features
    width = unit.bn2.num_features
    out_channels = unit.conv2.out_channels if block == "basic" else unit.conv3.out_channels
    expected_channels = {"pre": in_channels, "inside": width}.get(integration, out_channels)
    assert unit.se.channels == expected_channels
    assert unit.se.hidden_channels == expected_channels // 4

    se_in, se_out = _record_input(unit.se), _record_output(unit.se)
    last_conv = unit.conv2 if block == "basic" else unit.conv3
    inside_bn, inside_act = (unit.bn2, unit.act2) if block == "basic" else (unit.bn3, unit.act3)
    last_out, bn_out, act_out = _record_output(last_conv), _record_output(inside_bn), _record_output(inside_act)
    x = torch.randn(2, in_channels, 8, 8)
    with torch.no_grad():
        y = unit(x)
        pre = unit.act1(unit.bn1(x))  # the un-gated pre-activation
        shortcut = x if unit.shortcut is None else unit.shortcut(pre)
    assert len(se_in) == 1
    if integration == "standard":
        torch.testing.assert_close(se_in[0], last_out[0])
        torch.testing.assert_close(y, se_out[0] + shortcut)
    elif integration == "pre":
        expected = pre if placement == "after_act" else unit.bn1(x)
        torch.testing.assert_close(se_in[0], expected)
        torch.testing.assert_close(y, last_out[0] + shortcut)  # the shortcut saw the un-gated signal
    elif integration == "post":
        torch.testing.assert_close(se_in[0], last_out[0] + shortcut)
        torch.testing.assert_close(y, se_out[0])
    elif integration == "identity":
        torch.testing.assert_close(se_in[0], shortcut)
        torch.testing.assert_close(y, last_out[0] + se_out[0])
    else:  # inside: after the 3x3 conv's following BN (and ReLU with after_act)
        torch.testing.assert_close(se_in[0], act_out[0] if placement == "after_act" else bn_out[0])
        torch.testing.assert_close(y, last_out[0] + shortcut)


@pytest.mark.parametrize("spec", [TINY_BOTTLENECK, TINY_WRN], ids=["bottleneck", "basic"])
@pytest.mark.parametrize("integration, placement", PREACT_POSITIONS)
def test_preact_every_strategy_with_open_gates_is_the_plain_network(spec, integration, placement):
    options = dict(spatial_dims=2, in_channels=3, num_classes=5, reduction=2)
    se_model = PreActResNet(spec, attention="se", integration=integration, placement=placement, **options)
    plain = PreActResNet(spec, attention=None, **options)
    _assert_gates_one_equals_plain(se_model, plain, torch.randn(2, 3, 8, 8))


@pytest.mark.parametrize(
    "name, plain_name", [("sepreact_resnet164_cifar", "preact_resnet164_cifar"), ("sewrn16_8_cifar", "wrn16_8_cifar")]
)
def test_registered_cifar_models_with_open_gates_are_the_plain_ones(name, plain_name):
    x = torch.randn(2, 3, 8, 8)
    _assert_gates_one_equals_plain(create_model(name), create_model(plain_name), x)


@pytest.mark.parametrize("placement", ["after_act", "before_act"])
@pytest.mark.parametrize(
    "name, plain_name", [("semobilenetv1_100", "mobilenetv1_100"), ("semobilenetv2_100", "mobilenetv2_100")]
)
def test_mobilenets_with_open_gates_are_the_plain_ones(name, plain_name, placement):
    se_model = create_model(name, placement=placement, num_classes=10)
    _assert_gates_one_equals_plain(se_model, create_model(plain_name, num_classes=10), torch.randn(2, 3, 32, 32))


@pytest.mark.parametrize("placement", ["after_act", "before_act"])
def test_vgg_with_open_gates_is_the_plain_one(placement):
    se_model = VGG(TINY_VGG, attention="se", reduction=2, placement=placement, num_classes=4)
    _assert_gates_one_equals_plain(se_model, VGG(TINY_VGG, num_classes=4), torch.randn(2, 3, 32, 32))


def test_se_mobilenet_v1_has_se_after_each_pointwise_conv_only():
    model = create_model("semobilenetv1_100").eval()
    blocks = [m for m in model.modules() if isinstance(m, DepthwiseSeparable)]
    assert len(blocks) == 13
    for block in blocks:
        assert block.conv_dw.se is None
        assert block.conv_pw.se.channels == block.conv_pw.conv.out_channels
        assert block.conv_pw.se.hidden_channels == block.conv_pw.conv.out_channels // 16
    # after the pointwise ReLU6: the SE input is the activation's output
    last = blocks[-1].conv_pw
    se_in, act_out = _record_input(last.se), _record_output(last.act)
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    torch.testing.assert_close(se_in[0], act_out[0])


def test_se_mobilenet_v2_gates_the_expanded_depthwise_output_with_width_from_the_input():
    model = create_model("semobilenetv2_100").eval()
    blocks = [m for m in model.modules() if isinstance(m, InvertedResidual)]
    assert len(blocks) == 17
    for block in blocks:
        in_channels = block.conv_dw.conv.in_channels if block.conv_pw is None else block.conv_pw.conv.in_channels
        expanded = block.conv_dw.conv.out_channels
        assert block.conv_dw.se.channels == expanded
        assert block.conv_dw.se.hidden_channels == in_channels // 4  # EfficientNet's se_ratio=0.25 of the input
        assert block.conv_pw is None or block.conv_pw.se is None
    block = blocks[5]
    se_in, act_out = _record_input(block.conv_dw.se), _record_output(block.conv_dw.act)
    pwl_in = _record_input(block.conv_pwl)
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    torch.testing.assert_close(se_in[0], act_out[0])  # after the depthwise ReLU6 ...
    assert not torch.equal(pwl_in[0], act_out[0])  # ... and before the projection, which sees the gated map


def test_se_vgg16_has_thirteen_se_blocks_after_each_relu():
    with torch.device("meta"):
        model = create_model("sevgg16_bn")
    units = [m for m in model.modules() if isinstance(m, ConvNormAct)]
    assert len(units) == 13
    assert all(u.se is not None and u.se.channels == u.conv.out_channels and u.placement == "after_act" for u in units)
    tiny = VGG(TINY_VGG, attention="se", reduction=2).eval()
    unit = [m for m in tiny.modules() if isinstance(m, ConvNormAct)][4]
    se_in, act_out = _record_input(unit.se), _record_output(unit.act)
    with torch.no_grad():
        tiny(torch.randn(1, 3, 32, 32))
    torch.testing.assert_close(se_in[0], act_out[0])


def test_se_inception_gates_the_concatenated_module_output():
    model = create_model("segooglenet").eval()
    modules = [m for m in model.modules() if isinstance(m, Inception)]
    assert len(modules) == 9
    rows = [row for stage in GOOGLENET.stages for row in stage.modules]
    assert [m.se.channels for m in modules] == [row.out_channels for row in rows]
    module = modules[3]
    se_in = _record_input(module.se)
    branches = [_record_output(b) for b in (module.branch1, module.branch2, module.branch3, module.branch4)]
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    torch.testing.assert_close(se_in[0], torch.cat([b[0] for b in branches], dim=1))


def test_se_googlenet_with_open_gates_is_the_plain_one():
    x = torch.randn(2, 3, 32, 32)
    se_model, plain = create_model("segooglenet", num_classes=5), create_model("googlenet", num_classes=5)
    _assert_gates_one_equals_plain(se_model, plain, x)


def test_se_stages_and_per_stage_reduction():
    model = create_model("sepreact_resnet164_cifar", se_stages=(2,), reduction=(2, 4, 8))
    per_stage = [[u.se for u in stage] for stage in model.stages]
    assert all(se is None for se in per_stage[0] + per_stage[1])
    assert all(se.channels == 256 and se.hidden_channels == 256 // 8 for se in per_stage[2])
    v2 = create_model("semobilenetv2_100", se_stages=(1,), reduction=(1, 2, 1, 1, 1, 1, 1))
    ses = [m for m in v2.modules() if isinstance(m, SqueezeExcite)]
    assert [se.hidden_channels for se in ses] == [16 // 2, 24 // 2]  # bottleneck2: inputs 16 and 24


@pytest.mark.parametrize("attention", sorted(ATTENTION_LAYERS))
def test_every_registered_attention_layer_slots_in(attention):
    """Any layer of the relatives' registry replaces SE; the spec-table count builds it alone to count it."""
    models = [
        (PreActResNet(TINY_BOTTLENECK, attention=attention, reduction=2, integration="inside", num_classes=3), 8),
        (VGG(TINY_VGG, attention=attention, reduction=2, num_classes=3), 32),
        (create_model("semobilenetv1_100", attention=attention, spatial_dims=1, num_classes=3), 32),
    ]
    for model, size in models:
        model.eval()
        with torch.no_grad():
            assert model(torch.randn(2, 3, *([size] * model.spatial_dims))).shape == (2, 3)
        assert model.num_params_from_spec() == _count(model)
        assert any(isinstance(m, ATTENTION_LAYERS[attention]) for m in model.modules())


# ------------------------------------------------------------------------------------------- ranks and API


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize(
    "name, size",
    [
        ("sepreact_resnet164_cifar", 4),
        ("sewrn16_8_cifar", 4),
        ("semobilenetv1_100", 32),
        ("semobilenetv2_100", 32),
        ("segooglenet", 32),
    ],
)
def test_registered_models_at_every_rank(name, size, spatial_dims):
    model = create_model(name, spatial_dims=spatial_dims, in_channels=2, num_classes=3).eval()
    x = torch.randn(2, 2, *([size] * spatial_dims))
    with torch.no_grad():
        features = model.forward_intermediates(x)
        y = model(x)
    assert y.shape == (2, 3)
    assert [f.shape[1] for f in features] == list(model.stage_channels)
    assert all(f.ndim == spatial_dims + 2 for f in features)


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_vgg_at_every_rank(spatial_dims):
    model = VGG(TINY_VGG, attention="se", reduction=2, spatial_dims=spatial_dims, num_classes=3).eval()
    x = torch.randn(1, 3, *([32] * spatial_dims))
    with torch.no_grad():
        features = model.forward_intermediates(x)
        y = model(x)
    assert y.shape == (1, 3)
    assert [tuple(f.shape[2:]) for f in features] == [(32 // 2**i,) * spatial_dims for i in range(1, 6)]
    # fc6 sees 7x7 pooled maps at rank 2 only (torchvision's head), global pooling elsewhere
    assert model.pre_logits[0].in_features == 16 * (49 if spatial_dims == 2 else 1)


def test_vgg16_bn_at_rank_1_forward_and_head():
    model = create_model("sevgg16_bn", spatial_dims=1, num_classes=6).eval()
    x = torch.randn(2, 3, 32)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, 512, 1)
        assert model.forward_head(features, pre_logits=True).shape == (2, model.head_hidden_size)
        assert model(x).shape == (2, 6)
    model.reset_classifier(11)
    assert model.fc.in_features == 4096 and model(x).shape == (2, 11)
    model.reset_classifier(0)
    assert model(x).shape == (2, 4096)


def test_preact_forward_features_ends_with_the_final_bn_relu():
    model = create_model("preact_resnet164_cifar").eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        last = model.forward_intermediates(x)[-1]
        features = model.forward_features(x)
        torch.testing.assert_close(features, model.act(model.bn(last)))
        torch.testing.assert_close(model(x), model.fc(features.mean((2, 3))))


@pytest.mark.parametrize("name", ["sewrn16_8_cifar", "semobilenetv2_100"])
def test_features_only(name):
    net = create_model(name, features_only=True)
    size = 8 if "cifar" in name else 32
    outputs = net(torch.randn(2, 3, size, size))
    assert [o.shape[1] for o in outputs] == list(net.feature_channels)


def test_wrn_dropout_between_the_convolutions():
    model = create_model("wrn16_8_cifar", dropout=0.3)
    unit = model.stages[0][0]
    assert isinstance(unit.dropout, nn.Dropout) and unit.dropout.p == 0.3
    x = torch.randn(2, 3, 8, 8)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_training_step_gives_every_parameter_a_gradient():
    model = PreActResNet(TINY_WRN, attention="se", reduction=2, integration="inside", num_classes=4)
    model(torch.randn(4, 3, 8, 8)).logsumexp(1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


# ------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name", ["vgg16_bn", "semobilenetv1_100", "mobilenetv2_100", "segooglenet"])
def test_non_residual_families_have_no_integration_option(name):
    with pytest.raises(ValueError, match=r"no option\(s\) \['integration'\]; valid options: .*reduction"):
        create_model(name, integration="inside")


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("sepreact_resnet164_cifar", {"placement": "before_act"}, "needs integration 'pre' or 'inside'"),
        ("sepreact_resnet164_cifar", {"integration": "middle"}, r"integration must be one of \['identity', 'inside', "),
        ("sepreact_resnet164_cifar", {"dropout": 0.3}, "no option"),
        ("sewrn16_8_cifar", {"dropout": 1.0}, r"dropout must be a float in \[0, 1\)"),
        ("sewrn16_8_cifar", {"se_stages": (3,)}, r"se_stages must hold stage indices in \[0, 2\]"),
        ("sewrn16_8_cifar", {"reduction": (4, 8)}, "one per stage"),
        ("sewrn16_8_cifar", {"attention": "nope"}, "attention must be one of"),
        ("semobilenetv1_100", {"placement": "middle"}, "placement must be one of"),
        ("semobilenetv2_100", {"reduction": 32}, r"reduction for bottleneck2 must be in \[1, block input channels=16"),
        ("mobilenetv2_100", {"spatial_dims": 4}, r"spatial_dims must be one of \{1, 2, 3\}"),
        ("vgg16_bn", {"num_classes": -1}, "num_classes must be an int >= 0"),
        ("vgg16_bn", {"drop_rate": 1.5}, r"drop_rate must be a float in \[0, 1\)"),
    ],
)
def test_bad_options_raise_naming_the_argument(name, options, message):
    with pytest.raises(ValueError, match=message):
        create_model(name, **options)


def test_in_channels_type_and_input_checks():
    with pytest.raises(TypeError, match="in_channels must be a positive int"):
        create_model("mobilenetv1_100", in_channels=2.0)
    model = VGG(TINY_VGG, num_classes=2)
    with pytest.raises(ValueError, match="spatial size >= 32"):
        model(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="channels=3"):
        create_model("preact_resnet164_cifar")(torch.randn(1, 4, 8, 8))


def test_preact_spec_rejects_an_unknown_block():
    with pytest.raises(ValueError, match=r"PreActSpec.block must be one of \['basic', 'bottleneck'\]"):
        PreActSpec(name="x", block="dense", stem_channels=4, stages=())
