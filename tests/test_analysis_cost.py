"""senet.analysis cost model: F_SE, SE parameters, the crossover and the whole-model report."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from senet.analysis import (
    crossover_channels,
    fc_share,
    model_cost,
    se_fc_flops,
    se_flops,
    se_params,
)
from senet.layers import SqueezeExcite
from senet.layers.nd import adaptive_avg_pool_nd, conv_nd, norm_nd


@pytest.mark.parametrize(
    ("channels", "spatial", "reduction", "hidden"),
    [
        (64, (56, 56), 16, None),
        (48, (7, 7), 16, None),
        (10, (5,), 3, None),
        (32, (4, 6, 6), 8, None),
        (20, (3, 3), 16, 7),
    ],
)
def test_se_flops_matches_layer_and_formula(channels, spatial, reduction, hidden):
    layer = SqueezeExcite(channels, reduction=reduction, hidden_channels=hidden)
    flops = se_flops(channels, spatial, reduction=reduction, hidden_channels=hidden)
    assert flops == layer.flops(spatial)
    h = layer.hidden_channels
    assert flops == 2 * channels * math.prod(spatial) + 4 * channels * h
    assert se_fc_flops(channels, reduction=reduction, hidden_channels=hidden) == 4 * channels * h
    if hidden is None and channels % reduction == 0:  # the spec's 2CHW + 4C^2/r
        assert flops == 2 * channels * math.prod(spatial) + 4 * channels**2 // reduction


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(("channels", "reduction", "hidden"), [(64, 16, None), (50, 16, None), (12, 4, 5)])
def test_se_params_matches_layer(channels, reduction, hidden, bias):
    layer = SqueezeExcite(channels, reduction=reduction, hidden_channels=hidden, bias=bias)
    expected = sum(p.numel() for p in layer.parameters())
    assert se_params(channels, reduction=reduction, hidden_channels=hidden, bias=bias) == expected
    h = layer.hidden_channels
    assert expected == 2 * channels * h + (h + channels if bias else 0)


def test_crossover_is_where_fcs_take_half():
    # For r dividing C: 4C^2/r >= (2CS^2 + 4C^2/r)/2  <=>  C >= r*S^2/2.
    for side in (1, 2, 3, 4, 7):
        for reduction in (2, 4, 16):
            cross = crossover_channels((side, side), reduction=reduction)
            assert cross == reduction * side * side / 2
            for channels in range(reduction, 2049, reduction):
                share = fc_share(channels, (side, side), reduction=reduction)
                assert (share >= 0.5) == (channels >= cross), (side, reduction, channels)


def test_cost_functions_reject_bad_input():
    with pytest.raises(TypeError, match="spatial_shape"):
        se_flops(64, ())
    with pytest.raises(TypeError, match="spatial_shape"):
        se_flops(64, "56")
    with pytest.raises(ValueError, match="spatial_shape"):
        se_flops(64, (0, 4))
    with pytest.raises(TypeError, match="channels"):
        se_flops("64", (4, 4))
    with pytest.raises(ValueError, match="reduction"):
        se_flops(8, (4, 4), reduction=16)
    with pytest.raises(TypeError, match="bias"):
        se_params(64, bias="yes")
    with pytest.raises(ValueError, match="reduction"):
        crossover_channels((4, 4), reduction=0)


def _tiny(spatial_dims: int, *, attention: bool = True) -> nn.Sequential:
    """Two conv stages with an SE block each (or identities), a pooled linear head."""
    conv, norm = conv_nd(spatial_dims), norm_nd(spatial_dims)
    se = (lambda c, r: SqueezeExcite(c, reduction=r)) if attention else (lambda c, r: nn.Identity())
    return nn.Sequential(
        nn.Sequential(conv(3, 16, 3, padding=1), norm(16), nn.ReLU(), se(16, 4)),
        nn.Sequential(conv(16, 32, 3, stride=2, padding=1, groups=2), norm(32), nn.ReLU(), se(32, 2)),
        adaptive_avg_pool_nd(spatial_dims)(1),
        nn.Flatten(),
        nn.Linear(32, 5),
    )


def _flop_counter(model: nn.Module, shape: tuple[int, ...]) -> int:
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, *shape))
    return counter.get_total_flops()


@pytest.mark.parametrize(("spatial_dims", "shape"), [(1, (3, 20)), (2, (3, 12, 10)), (3, (3, 4, 6, 6))])
def test_model_cost_agrees_with_flop_counter_and_plain_twin(spatial_dims, shape):
    model = _tiny(spatial_dims)
    report = model_cost(model, shape)
    # conv/linear parts (SE FCs included) agree exactly with FlopCounterMode's 2-per-MAC, bias-free count
    assert report.dense_flops == report.flop_counter_flops == _flop_counter(model, shape)
    # two SE blocks, seen at the right shapes, charged F_SE each
    first, second = report.attention
    spatial = shape[1:]
    half = tuple((n + 1) // 2 for n in spatial)
    assert (first.name, first.channels, first.spatial_shape, first.hidden_channels) == ("0.3", 16, spatial, 4)
    assert (second.name, second.channels, second.spatial_shape, second.hidden_channels) == ("1.3", 32, half, 16)
    assert first.flops == se_flops(16, spatial, reduction=4) and first.fc_flops == se_fc_flops(16, reduction=4)
    assert second.flops == se_flops(32, half, reduction=2) and first.analytic
    assert report.total.se_flops == first.flops + second.flops
    assert report.total.se_params == se_params(16, reduction=4) + se_params(32, reduction=2)
    # "with SE" = conv/linear outside SE + F_SE; "without SE" = a twin built with identities instead of SE
    plain = _tiny(spatial_dims, attention=False)
    assert report.total.flops_without_se == _flop_counter(plain, shape)
    assert report.total.params_without_se == sum(p.numel() for p in plain.parameters())
    assert report.total.params == sum(p.numel() for p in model.parameters())
    assert report.total.flops == report.dense_flops - first.fc_flops - second.fc_flops + first.flops + second.flops
    # stages and blocks add up to the total
    assert [row.name for row in report.stages] == ["0", "1", "4"]
    for i in range(4):
        field = ("flops", "se_flops", "params", "se_params")[i]
        assert sum(getattr(r, field) for r in report.stages) == getattr(report.total, field)
        assert sum(getattr(r, field) for r in report.blocks) == getattr(report.total, field)
    assert report.stages[0].se_flops == first.flops and report.stages[1].se_params == se_params(32, reduction=2)
    assert report.total.flops_overhead == pytest.approx(100 * report.total.se_flops / report.total.flops_without_se)


def test_model_cost_crossover_sides():
    # 16 x 16 map with C=16, r=4: FCs 4*16*4 = 256 vs 2*16*256 -> spatial side; crossover C = 4*256/2 = 512.
    # 2 x 2 map with C=64, r=4: FCs 4*64*16 = 4096 vs 2*64*4 = 512 -> fc side; crossover C = 4*4/2 = 8.
    model = nn.Sequential(
        SqueezeExcite(16, reduction=4), conv_nd(2)(16, 64, 8, stride=8), SqueezeExcite(64, reduction=4)
    )
    small, large = model_cost(model, (16, 16, 16)).attention
    assert (small.side, small.crossover_channels, small.channels < small.crossover_channels) == ("spatial", 512, True)
    assert (large.side, large.crossover_channels, large.channels >= large.crossover_channels) == ("fc", 8, True)
    assert large.fc_share == pytest.approx(4096 / (4096 + 512))


def test_model_cost_leaves_model_unchanged_and_renders():
    model = _tiny(2).train()
    model[0][1].eval()  # a mixed state must be restored exactly
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = model_cost(model, (3, 8, 8))
    assert model.training and not model[0][1].training and model[0][0].training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats untouched
    assert all(not m._forward_hooks for m in model.modules())
    data = json.loads(json.dumps(report.to_dict()))
    assert data["total"]["se_flops"] == report.total.se_flops and len(data["attention"]) == 2
    assert data["attention"][0]["side"] == report.attention[0].side
    text = report.to_markdown()
    for needle in ("| stage |", "| block |", "| attention layer |", "| 0.3 |", "**total**", "FlopCounterMode"):
        assert needle in text


def test_model_cost_rejects_bad_input():
    with pytest.raises(TypeError, match="model"):
        model_cost("resnet", (3, 8, 8))
    with pytest.raises(TypeError, match="input_shape"):
        model_cost(_tiny(2), 8)
    with pytest.raises(ValueError, match="input_shape"):
        model_cost(_tiny(2), (3, 0, 8))


def _registered(*names: str) -> None:
    from senet.models import list_models

    missing = [n for n in names if n not in list_models()]
    if missing:
        pytest.skip(f"models {missing} are not registered yet")


def test_model_cost_seresnet50_vs_resnet50():
    _registered("resnet50", "seresnet50")
    from senet.models import create_model

    plain = model_cost(create_model("resnet50"), (3, 224, 224))
    se = model_cost(create_model("seresnet50"), (3, 224, 224))
    # timm's numbers (seresnet50 28,088,024 vs resnet50 25,557,032): +2.53M parameters
    assert plain.total.params == 25_557_032 and se.total.params == 28_088_024
    assert se.total.se_params == 2_530_992 == se.total.params - plain.total.params
    assert se.total.params_without_se == plain.total.params
    assert se.total.flops_without_se == plain.total.flops == plain.flop_counter_flops
    assert se.dense_flops == se.flop_counter_flops
    # the paper's 3.86 -> 3.87 G multiply-adds: SE adds about 0.01 GMACs (16.07M FLOPs = 8.0M MACs)
    assert len(se.attention) == 16
    assert se.total.se_flops == sum(
        n * se_flops(c, (s, s), reduction=16) for n, c, s in ((3, 256, 56), (4, 512, 28), (6, 1024, 14), (3, 2048, 7))
    )
    assert 0.005 < se.total.se_flops / 2e9 < 0.015
    assert 4.0 < plain.total.flops / 2e9 < 4.2
    assert [r.name for r in se.stages] == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    # last stage: S = 7, r = 16: crossover C = 392 <= 2048, FCs dominate; first stage (S = 56) does not
    assert {a.side for a in se.attention if a.stage == "layer4"} == {"fc"}
    assert {a.side for a in se.attention if a.stage == "layer1"} == {"spatial"}
    # most of the extra parameters are in the last stage (paper, Section 4)
    assert se.stages[4].se_params > se.total.se_params / 2


def test_model_cost_attention_without_bottleneck_has_no_crossover_side():
    from senet.layers import ATTENTION_LAYERS, create_attention

    if "eca" not in ATTENTION_LAYERS:
        pytest.skip("ECA is not registered yet")
    eca = create_attention("eca", 32)
    model = nn.Sequential(conv_nd(2)(3, 32, 3, padding=1), eca)
    (layer,) = model_cost(model, (3, 8, 8)).attention
    assert layer.layer == type(eca).__name__ and layer.analytic
    assert layer.flops == eca.flops((8, 8))
    assert layer.side is None and layer.crossover_channels is None
