"""senet.analysis: SE vs BN as channel-wise affine maps, SE vs 1x1 convolutions, placement (erratum 3), two-stage
gating."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from senet.analysis import (
    as_local_gate,
    bn_affine,
    excitation_as_conv,
    gate_saturation,
    homogeneity_gap,
    se_affine,
    se_placement_gap,
    squeeze_descriptor,
    two_stage_gating,
)
from senet.layers import LocalChannelGate, SqueezeExcite
from senet.layers.nd import norm_nd

SHAPES = {1: (6, 8, 10), 2: (6, 8, 5, 4), 3: (6, 8, 3, 4, 2)}


def _randomise(bn: nn.Module) -> nn.Module:
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1.0, 1.0)
    return bn


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_bn_affine_training_uses_batch_stats_shared_across_batch(spatial_dims):
    bn = _randomise(norm_nd(spatial_dims)(8)).train()
    x = torch.randn(SHAPES[spatial_dims]) * 3 + 1
    affine = bn_affine(bn, x)
    assert affine.alpha.shape == affine.beta.shape == (6, 8)
    assert affine.shared_across_batch and affine.batch_spread() == 0.0
    running = bn.running_mean.clone()
    assert torch.equal(bn.running_mean, running)  # extraction did not run the layer
    torch.testing.assert_close(affine.apply(x), bn(x), rtol=1e-5, atol=1e-5)
    # the coefficients depend on the batch: another batch, other (alpha, beta)
    other = bn_affine(bn, torch.randn(SHAPES[spatial_dims]))
    assert not torch.allclose(other.alpha, affine.alpha)


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_bn_affine_eval_uses_running_stats(spatial_dims):
    bn = _randomise(norm_nd(spatial_dims)(8))
    for _ in range(3):  # move the running statistics away from (0, 1)
        bn(torch.randn(SHAPES[spatial_dims]) * 2 + 0.5)
    bn.eval()
    x = torch.randn(SHAPES[spatial_dims])
    affine = bn_affine(bn, x)
    torch.testing.assert_close(affine.apply(x), bn(x), rtol=1e-5, atol=1e-5)
    expected_alpha = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    torch.testing.assert_close(affine.alpha[0], expected_alpha.detach())
    # eval: a fixed affine map, the same whatever the batch
    torch.testing.assert_close(bn_affine(bn, torch.randn(SHAPES[spatial_dims]) * 5).alpha, affine.alpha)


def test_bn_affine_variants():
    bn1 = norm_nd(1)(8, affine=False).train()  # (N, C) input, no gamma/beta
    x = torch.randn(16, 8)
    torch.testing.assert_close(bn_affine(bn1, x).apply(x), bn1(x), rtol=1e-5, atol=1e-5)
    untracked = norm_nd(2)(8, track_running_stats=False).eval()  # no running stats: batch stats even in eval
    x = torch.randn(4, 8, 3, 3) + 2
    torch.testing.assert_close(bn_affine(untracked, x).apply(x), untracked(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="BatchNorm"):
        bn_affine(SqueezeExcite(8, reduction=2), x)
    with pytest.raises(ValueError, match="channels=8"):
        bn_affine(norm_nd(2)(8), torch.randn(4, 6, 3, 3))


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_se_affine_is_per_example(spatial_dims):
    se = SqueezeExcite(8, reduction=2)
    shape = SHAPES[spatial_dims]
    x = torch.randn(shape) + 2 * torch.randn(*shape[:2], *([1] * spatial_dims))  # examples with distinct descriptors
    affine = se_affine(se, x)
    assert torch.equal(affine.beta, torch.zeros(6, 8))
    torch.testing.assert_close(affine.apply(x), se(x))
    assert not affine.shared_across_batch and affine.batch_spread() > 1e-3  # each example its own alpha
    torch.testing.assert_close(affine.alpha, se.gates(x).flatten(1))
    same = se_affine(se, x[:1].repeat(3, *([1] * (x.ndim - 1))))  # identical examples, identical gates
    assert same.batch_spread() < 1e-6  # (up to rounding of batched kernels)


def test_se_affine_refuses_non_channel_gates():
    x = torch.randn(2, 8, 4, 4)
    with pytest.raises(ValueError, match="channel gates"):
        se_affine(LocalChannelGate(8, reduction=2), x)
    with pytest.raises(TypeError, match="gates"):
        se_affine(nn.ReLU(), x)


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_excitation_equals_two_1x1_convolutions(spatial_dims, bias):
    se = SqueezeExcite(8, reduction=4, bias=bias)
    x = torch.randn(SHAPES[spatial_dims])
    convs = excitation_as_conv(se, spatial_dims=spatial_dims)
    assert [type(m).__name__ for m in convs] == [f"Conv{spatial_dims}d", "ReLU", f"Conv{spatial_dims}d", "Sigmoid"]
    z = squeeze_descriptor(se, x)  # (N, C, 1, ..., 1)
    torch.testing.assert_close(convs(z), se.gates(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="SqueezeExcite"):
        excitation_as_conv(nn.Linear(2, 2))


def test_local_gate_with_se_weights_varies_over_space():
    se = SqueezeExcite(8, reduction=2)
    local = as_local_gate(se)
    constant = torch.randn(3, 8, 1, 1).expand(3, 8, 5, 5).contiguous()
    torch.testing.assert_close(local.gates(constant), se.gates(constant).expand(3, 8, 5, 5))
    varied = torch.randn(3, 8, 5, 5)
    local_gates = local.gates(varied)
    assert local_gates.std(dim=(2, 3)).min() > 0  # spatially variant: local channel attention
    assert se.gates(varied).shape == (3, 8, 1, 1)  # SE: one gate per channel, global


def test_homogeneity_gap():
    torch.manual_seed(0)
    x = torch.randn(4, 8, 5, 5) * 2
    s = torch.rand(4, 8, 1, 1)
    assert homogeneity_gap(nn.ReLU(), s, x) == 0.0  # exact
    assert homogeneity_gap(nn.LeakyReLU(0.1), s, x) < 1e-6  # up to rounding
    silu, gelu = homogeneity_gap(nn.SiLU(), s, x), homogeneity_gap(nn.GELU(), s, x)
    assert silu > 0.05 and gelu > 0.05
    # SiLU(s*x) - s*SiLU(x) = s*x*(sigmoid(s*x) - sigmoid(x)): the measured gap is exactly that maximum
    expected = (s * x * (torch.sigmoid(s * x) - torch.sigmoid(x))).abs().max()
    assert silu == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ValueError, match=">= 0"):
        homogeneity_gap(nn.ReLU(), -s, x)
    with pytest.raises(ValueError, match="broadcast"):
        homogeneity_gap(nn.ReLU(), torch.rand(3), x)


def test_se_before_and_after_relu_differ_unless_gate_fixed():
    se = SqueezeExcite(8, reduction=2)
    x = torch.randn(4, 8, 6, 6)
    gap = se_placement_gap(se, x)
    assert gap.fixed == 0.0  # fixed gate: ReLU(s*x) == s*ReLU(x)
    assert gap.adaptive > 1e-4 and gap.gate_change > 1e-4  # real SE: gates from x vs from ReLU(x)
    relu_x = torch.relu(x)
    with torch.no_grad():
        manual = (torch.relu(se(x)) - se(relu_x)).abs().max()
    assert gap.adaptive == pytest.approx(float(manual))
    # when x >= 0 already, ReLU(x) = x and the two placements coincide
    assert se_placement_gap(se, x.abs()).adaptive == 0.0
    # a non-homogeneous activation breaks even the fixed-gate equivalence
    assert se_placement_gap(se, x, activation=nn.SiLU()).fixed > 1e-3


def test_two_stage_gating():
    se = SqueezeExcite(16, reduction=4)
    x = torch.randn(32, 16, 4, 4)
    stats = two_stage_gating(se, x)
    pre = se.fc1(x.mean((2, 3)))
    assert stats.pruned_fraction == pytest.approx(float((pre <= 0).float().mean()))
    assert stats.pruned_per_unit.shape == (4,)
    torch.testing.assert_close(stats.pruned_per_unit, (pre <= 0).float().mean(0))
    assert stats.saturation.count == 32 * 16
    with torch.no_grad():  # hard stage closes everything; soft stage then saturates at sigmoid(b2)
        se.fc1.bias.fill_(-100.0)
        se.fc2.bias.fill_(10.0)
    shut = two_stage_gating(se, x)
    assert shut.pruned_fraction == 1.0 and shut.dead_units == 4
    assert shut.saturation.near_one == 1.0 and shut.saturation.near_zero == 0.0
    with pytest.raises(TypeError, match="SqueezeExcite"):
        two_stage_gating(LocalChannelGate(16), x)


def test_gate_saturation():
    sat = gate_saturation(torch.tensor([0.0, 0.01, 0.5, 0.97, 1.0]))
    assert (sat.near_zero, sat.near_one, sat.count) == (0.4, 0.4, 5)
    assert sat.mean == pytest.approx(0.496)
    with pytest.raises(ValueError, match="low"):
        gate_saturation(torch.rand(3), low=0.9, high=0.1)
    with pytest.raises(TypeError, match="gates"):
        gate_saturation([0.5])
