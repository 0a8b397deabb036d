"""The SE block: the spec's worked example, every variant, ranks 1-3, peers' parity, errors, compile/export."""

from __future__ import annotations

import math
from unittest import mock

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

import senet.layers.se as se_module
from senet.layers import GATES, LocalChannelGate, SqueezeExcite, conv_nd, lengths_to_mask

RANKS = (1, 2, 3)


def _input(rank: int, channels: int = 8, batch: int = 2, size: int = 5, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(batch, channels, *([size] * rank), dtype=dtype)


def _record(module: nn.Module) -> list[torch.Tensor]:
    """Collect the outputs of ``module`` through a forward hook."""
    outputs: list[torch.Tensor] = []
    module.register_forward_hook(lambda _m, _i, out: outputs.append(out.detach().clone()))
    return outputs


# ---------------------------------------------------------------- the spec's worked example


def test_worked_example_gates_and_intermediates():
    se = SqueezeExcite(3, hidden_channels=2, bias=False)
    with torch.no_grad():
        se.fc1.weight.copy_(torch.tensor([[1.0, -1.0, 0.0], [0.5, 0.5, -1.0]]))
        se.fc2.weight.copy_(torch.tensor([[2.0, -4.0], [-1.0, 1.0], [-3.0, -2.0]]))
    z1, a1, z2, s = _record(se.fc1), _record(se.act), _record(se.fc2), _record(se.gate)
    # an input whose global average is z = (0, 4, 1): each channel constant in space
    x = torch.tensor([0.0, 4.0, 1.0]).view(1, 3, 1, 1).expand(1, 3, 4, 4).contiguous()
    y = se(x)
    assert z1[0].flatten().tolist() == [-4.0, 1.0]
    assert a1[0].flatten().tolist() == [0.0, 1.0]
    assert z2[0].flatten().tolist() == [-4.0, 1.0, -2.0]
    gates = s[0].flatten()
    assert [round(g, 3) for g in gates.tolist()] == [0.018, 0.731, 0.119]
    torch.testing.assert_close(y, x * gates.view(1, 3, 1, 1))


# ---------------------------------------------------------------- gates


def test_gate_ranges():
    v = torch.linspace(-30, 30, 2001)
    sigmoid, one_plus_tanh = GATES["sigmoid"]()(v), GATES["one_plus_tanh"]()(v)
    assert sigmoid.min() >= 0 and sigmoid.max() <= 1
    assert one_plus_tanh.min() >= 0 and one_plus_tanh.max() <= 2
    mid = torch.linspace(-5, 5, 101)  # where float32 is not saturated: strictly inside
    assert (GATES["sigmoid"]()(mid) > 0).all() and (GATES["sigmoid"]()(mid) < 1).all()
    assert (GATES["one_plus_tanh"]()(mid) > 0).all() and (GATES["one_plus_tanh"]()(mid) < 2).all()
    assert one_plus_tanh.max() > 1.99  # it amplifies, which sigmoid cannot


@pytest.mark.parametrize(("gate", "max_slope"), [("sigmoid", 0.25), ("one_plus_tanh", 1.0)])
def test_gate_maximal_slope_by_autograd(gate, max_slope):
    v = torch.linspace(-6, 6, 1201, dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(GATES[gate]()(v).sum(), v)
    assert slope.max().item() == pytest.approx(max_slope, abs=1e-9)
    assert v[slope.argmax()].item() == pytest.approx(0.0, abs=1e-9)


def test_hard_sigmoid_is_relu6_formula():
    v = torch.linspace(-5, 5, 101)
    torch.testing.assert_close(GATES["hard_sigmoid"]()(v), torch.nn.functional.relu6(v + 3) / 6)


@pytest.mark.parametrize("gate", sorted(GATES))
def test_gate_hook_sees_the_gates_used_for_reweighting(gate):
    se = SqueezeExcite(8, reduction=2, gate=gate)
    seen = _record(se.gate)
    x = torch.rand(3, 8, 4, 4) + 0.5  # positive, so y / x recovers the gates
    y = se(x)
    assert seen[0].shape == (3, 8, 1, 1)
    torch.testing.assert_close(y, x * seen[0])


# ---------------------------------------------------------------- squeeze


def test_gap_vs_gmp_on_sparse_peak():
    x = torch.full((1, 2, 32, 32), 1e-3)
    x[0, 0, 7, 19] = 10.0  # one strong detection in channel 0
    avg = se_module.global_pool(x, "avg")
    peak = se_module.global_pool(x, "max")
    assert peak[0, 0].item() == pytest.approx(10.0)
    assert avg[0, 0].item() == pytest.approx((10.0 + 1e-3 * 1023) / 1024, rel=1e-5)
    assert peak[0, 0] / avg[0, 0] > 100  # GMP keeps the peak, GAP dilutes it over the map
    assert peak[0, 1].item() == pytest.approx(avg[0, 1].item())  # a flat channel: both agree
    torch.testing.assert_close(se_module.global_pool(x, "avgmax"), 0.5 * (avg + peak))


@pytest.mark.parametrize("squeeze", ["avg", "max", "avgmax"])
def test_squeeze_variants_feed_the_excitation(squeeze):
    se = SqueezeExcite(6, reduction=2, squeeze=squeeze)
    seen = _record(se.fc1)
    x = _input(2, channels=6)
    se(x)
    expected_z = se_module.global_pool(x, squeeze)
    torch.testing.assert_close(seen[0], se.fc1(expected_z))


# ---------------------------------------------------------------- excitation = two 1x1 convolutions


@pytest.mark.parametrize("rank", RANKS)
def test_excitation_equals_two_1x1_convolutions(rank):
    channels, hidden = 12, 3
    se = SqueezeExcite(channels, hidden_channels=hidden)
    conv = conv_nd(rank)
    conv1, conv2 = conv(channels, hidden, 1), conv(hidden, channels, 1)
    with torch.no_grad():
        conv1.weight.copy_(se.fc1.weight.view(hidden, channels, *([1] * rank)))
        conv1.bias.copy_(se.fc1.bias)
        conv2.weight.copy_(se.fc2.weight.view(channels, hidden, *([1] * rank)))
        conv2.bias.copy_(se.fc2.bias)
    x = _input(rank, channels)
    z = x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)  # (N, C, 1, ..., 1)
    expected = torch.sigmoid(conv2(torch.relu(conv1(z))))
    torch.testing.assert_close(se.gates(x), expected)


def test_local_channel_gate_is_position_dependent_while_se_is_uniform():
    x = _input(2, channels=8, size=6)
    se = SqueezeExcite(8, reduction=2)
    local = LocalChannelGate(8, reduction=2)
    with torch.no_grad():  # same weights: the only difference is the squeeze
        local.load_state_dict(se.state_dict())
    se_gate, local_gate = _record(se.gate), _record(local.gate)
    se(x)
    local(x)
    assert se_gate[0].shape == (2, 8, 1, 1)
    assert local_gate[0].shape == (2, 8, 6, 6)
    spread = local_gate[0].flatten(2).std(dim=2)
    assert (spread > 1e-3).all()  # a different gate at each position
    # and the local gate at position p is the SE excitation applied to X[:, :, p]
    p = x[:, :, 2, 3]
    expected = torch.sigmoid(se.fc2(torch.relu(se.fc1(p))))
    torch.testing.assert_close(local_gate[0][:, :, 2, 3], expected)


# ---------------------------------------------------------------- every rank


@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("cls", [SqueezeExcite, LocalChannelGate])
def test_shapes_every_rank(cls, rank):
    x = _input(rank, channels=16, size=4)
    y = cls(16, reduction=4)(x)
    assert y.shape == x.shape and y.dtype == x.dtype


@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("squeeze", ["avg", "max"])
def test_gradcheck_float64(rank, squeeze):
    se = SqueezeExcite(4, reduction=2, squeeze=squeeze).double()
    x = torch.randn(2, 4, *([3] * rank), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(se, (x,))


@pytest.mark.parametrize("rank", RANKS)
def test_gradcheck_local_channel_gate(rank):
    gate = LocalChannelGate(4, reduction=2, gate="one_plus_tanh").double()
    x = torch.randn(1, 4, *([2] * rank), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gate, (x,))


@pytest.mark.parametrize(("rank", "memory_format"), [(2, torch.channels_last), (3, torch.channels_last_3d)])
@pytest.mark.parametrize("cls", [SqueezeExcite, LocalChannelGate])
def test_channels_last_keeps_format_and_values(cls, rank, memory_format):
    layer = cls(16, reduction=4)
    x = _input(rank, channels=16, size=5)
    y_ref = layer(x)
    y = layer(x.to(memory_format=memory_format))
    assert y.is_contiguous(memory_format=memory_format)
    torch.testing.assert_close(y, y_ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtypes(dtype):
    se = SqueezeExcite(16, reduction=4).to(dtype)
    x = _input(2, channels=16, dtype=dtype)
    y = se(x)
    assert y.dtype == dtype
    ref = SqueezeExcite(16, reduction=4).double()
    ref.load_state_dict(se.state_dict())
    tol = 5e-2 if dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(y.double(), ref(x.double()), atol=tol, rtol=tol)


# ---------------------------------------------------------------- padded batches (masked squeeze)


@pytest.mark.parametrize("squeeze", ["avg", "max", "avgmax"])
def test_padded_batch_matches_each_sequence_alone(squeeze):
    se = SqueezeExcite(8, reduction=2, squeeze=squeeze).eval()
    lengths = torch.tensor([11, 4, 7])
    sequences = [torch.randn(1, 8, int(n)) for n in lengths]
    batch = torch.full((3, 8, 11), 1e4)  # padding value that would dominate any unmasked squeeze
    for i, seq in enumerate(sequences):
        batch[i, :, : seq.shape[-1]] = seq[0]
    mask = lengths_to_mask(lengths, 11)
    padded_out, padded_gates = se(batch, mask=mask), se.gates(batch, mask)
    for i, seq in enumerate(sequences):
        n = seq.shape[-1]
        torch.testing.assert_close(padded_gates[i : i + 1], se.gates(seq))
        torch.testing.assert_close(padded_out[i : i + 1, :, :n], se(seq))
    unmasked = se.gates(batch)
    assert not torch.allclose(unmasked[1], padded_gates[1])  # without the mask the padding leaks in


def test_lengths_to_mask():
    mask = lengths_to_mask(torch.tensor([3, 1]), 4)
    assert mask.tolist() == [[True, True, True, False], [True, False, False, False]]
    with pytest.raises(ValueError, match="lengths"):
        lengths_to_mask(torch.tensor([5]), 4)
    with pytest.raises(ValueError, match="max_length"):
        lengths_to_mask(torch.tensor([1]), 0)


# ---------------------------------------------------------------- hidden width


@pytest.mark.parametrize(
    ("channels", "reduction", "divisor", "expected"),
    [(64, 16, 1, 4), (64, 16, 8, 8), (200, 16, 1, 12), (200, 16, 8, 16), (2048, 16, 1, 128), (7, 2, 1, 3)],
)
def test_hidden_width_rounding(channels, reduction, divisor, expected):
    assert SqueezeExcite(channels, reduction=reduction, divisor=divisor).hidden_channels == expected


def test_hidden_channels_override_skips_reduction_check():
    se = SqueezeExcite(4, reduction=64, hidden_channels=3)
    assert se.hidden_channels == 3 and se.fc1.weight.shape == (3, 4) and se.fc2.weight.shape == (4, 3)


def test_bias_flag():
    se = SqueezeExcite(8, reduction=2, bias=False)
    assert se.fc1.bias is None and se.fc2.bias is None
    assert sum(p.numel() for p in se.parameters()) == 2 * 8 * 4


# ---------------------------------------------------------------- peers' parity


def _copy_excitation(se: SqueezeExcite, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor) -> None:
    with torch.no_grad():
        se.fc1.weight.copy_(w1.reshape(se.fc1.weight.shape))
        se.fc1.bias.copy_(b1)
        se.fc2.weight.copy_(w2.reshape(se.fc2.weight.shape))
        se.fc2.bias.copy_(b2)


@pytest.mark.parametrize(("channels", "add_maxpool"), [(64, False), (200, False), (64, True)])
def test_parity_timm_semodule(channels, add_maxpool):
    timm_layers = pytest.importorskip("timm.layers")
    peer = timm_layers.SEModule(channels, rd_ratio=1 / 16, add_maxpool=add_maxpool)
    se = SqueezeExcite(channels, reduction=16, divisor=8, squeeze="avgmax" if add_maxpool else "avg")
    assert se.hidden_channels == peer.fc1.out_channels
    _copy_excitation(se, peer.fc1.weight, peer.fc1.bias, peer.fc2.weight, peer.fc2.bias)
    x = _input(2, channels=channels, size=7)
    torch.testing.assert_close(se(x), peer(x))


def test_parity_torchvision_squeeze_excitation():
    ops = pytest.importorskip("torchvision.ops")
    peer = ops.SqueezeExcitation(48, 12, scale_activation=nn.Hardsigmoid)
    se = SqueezeExcite(48, hidden_channels=12, gate="hard_sigmoid")
    _copy_excitation(se, peer.fc1.weight, peer.fc1.bias, peer.fc2.weight, peer.fc2.bias)
    x = _input(2, channels=48, size=6)
    torch.testing.assert_close(se(x), peer(x))


@pytest.mark.parametrize("rank", RANKS)
def test_parity_monai_channel_se_layer(rank):
    blocks = pytest.importorskip("monai.networks.blocks")
    peer = blocks.ChannelSELayer(rank, 32, r=2)  # MONAI's default r is 2, not the paper's 16
    se = SqueezeExcite(32, reduction=2)
    _copy_excitation(se, peer.fc[0].weight, peer.fc[0].bias, peer.fc[2].weight, peer.fc[2].bias)
    x = _input(rank, channels=32, size=4)
    torch.testing.assert_close(se(x), peer(x))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        (dict(channels=0), ValueError, "channels"),
        (dict(channels=-3), ValueError, "channels"),
        (dict(channels=8.0), TypeError, "channels"),
        (dict(channels=True), TypeError, "channels"),
        (dict(channels=8, reduction=0), ValueError, "reduction"),
        (dict(channels=8, reduction=-2), ValueError, "reduction"),
        (dict(channels=8, reduction=16), ValueError, "reduction"),
        (dict(channels=8, reduction=2.5), TypeError, "reduction"),
        (dict(channels=8, hidden_channels=0), ValueError, "hidden_channels"),
        (dict(channels=8, divisor=0), ValueError, "divisor"),
        (dict(channels=32, gate="softmax"), ValueError, "gate"),
        (dict(channels=32, squeeze="median"), ValueError, "squeeze"),
    ],
)
def test_bad_arguments(kwargs, error, name):
    channels = kwargs.pop("channels")
    with pytest.raises(error, match=name):
        SqueezeExcite(channels, **kwargs)


def test_unknown_gate_lists_valid_names():
    with pytest.raises(ValueError) as info:
        SqueezeExcite(32, gate="swish")
    for valid in GATES:
        assert valid in str(info.value)
    assert "'swish'" in str(info.value)


@pytest.mark.parametrize("cls", [SqueezeExcite, LocalChannelGate])
@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (torch.randn(2, 7, 4, 4), ValueError, r"channels=8.*\(2, 7, 4, 4\)"),
        (torch.randn(2, 8), ValueError, r"spatial.*\(2, 8\)"),
        (torch.randn(1, 2, 8, 3, 3, 3), ValueError, r"spatial.*\(1, 2, 8, 3, 3, 3\)"),
        (torch.ones(2, 8, 4, dtype=torch.long), TypeError, "floating-point.*int64"),
        ([[1.0]], TypeError, "torch.Tensor"),
    ],
)
def test_bad_inputs(cls, x, error, match):
    with pytest.raises(error, match=match) as info:
        cls(8, reduction=2)(x)
    assert str(info.value).startswith("x ")


def test_bad_masks():
    se = SqueezeExcite(8, reduction=2)
    x = torch.randn(2, 8, 5)
    with pytest.raises(ValueError, match=r"mask must have shape .*\(2, 5\).*\(2, 4\)"):
        se(x, mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask must have dtype torch.bool"):
        se(x, mask=torch.ones(2, 5))


def test_se_and_local_gate_share_one_validation():
    calls = []
    real = se_module.excitation_width

    def spy(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    with mock.patch.object(se_module, "excitation_width", spy):
        SqueezeExcite(16, reduction=4)
        LocalChannelGate(16, reduction=4)
    assert len(calls) == 2
    for cls in (SqueezeExcite, LocalChannelGate):
        with pytest.raises(ValueError) as info:
            cls(8, reduction=9)
        assert str(info.value) == "reduction must be in [1, channels=8], got 9"


# ---------------------------------------------------------------- properties


@settings(max_examples=25, deadline=None)
@given(
    rank=st.sampled_from(RANKS),
    channels=st.integers(1, 24),
    data=st.data(),
)
def test_property_shape_and_half_gate(rank, channels, data):
    reduction = data.draw(st.integers(1, channels), label="reduction")
    spatial = data.draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank), label="spatial")
    batch = data.draw(st.integers(1, 3), label="batch")
    se = SqueezeExcite(channels, reduction=reduction)
    x = torch.randn(batch, channels, *spatial)
    assert se(x).shape == x.shape
    with torch.no_grad():  # fc2 = 0: every logit is 0 and sigmoid(0) = 1/2
        se.fc2.weight.zero_()
        se.fc2.bias.zero_()
    assert torch.equal(se(x), x / 2)


# ---------------------------------------------------------------- compile, export, ONNX


@pytest.mark.parametrize("rank", RANKS)
def test_compile_fullgraph_no_graph_breaks(rank):
    torch._dynamo.reset()
    se = SqueezeExcite(16, reduction=4, gate="one_plus_tanh")
    x = _input(rank, channels=16)
    compiled = torch.compile(se, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), se(x))
    explanation = torch._dynamo.explain(se)(x)
    assert explanation.graph_break_count == 0


def test_compile_inductor():
    torch._dynamo.reset()
    se = SqueezeExcite(32, reduction=4)
    x = _input(2, channels=32, size=6)
    torch.testing.assert_close(torch.compile(se, fullgraph=True)(x), se(x))


@pytest.mark.parametrize("rank", RANKS)
def test_torch_export(rank):
    se = SqueezeExcite(16, reduction=4).eval()
    x = _input(rank, channels=16)
    program = torch.export.export(se, (x,))
    torch.testing.assert_close(program.module()(x), se(x))


@pytest.mark.parametrize("gate", ["sigmoid", "hard_sigmoid"])
def test_onnx_export_matches_onnxruntime(gate):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    se = SqueezeExcite(16, reduction=4, gate=gate).eval()
    x = _input(2, channels=16)
    proto = torch.onnx.export(se, (x,), dynamo=True, verbose=False).model_proto
    if gate == "hard_sigmoid":
        (node,) = [n for n in proto.graph.node if n.op_type == "HardSigmoid"]
        alpha = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}["alpha"]
        assert alpha == pytest.approx(1 / 6)  # ONNX's default 0.2 would be a different function
    session = ort.InferenceSession(proto.SerializeToString())
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(out), se(x), atol=1e-5, rtol=1e-5)


def test_flops_matches_spec_formula():
    se = SqueezeExcite(64, reduction=16)
    assert se.flops((56, 56)) == 2 * 64 * 56 * 56 + 4 * 64 * 64 // 16
    assert se.flops((10,)) == 2 * 64 * 10 + 4 * 64 * 4
    assert LocalChannelGate(64, reduction=16).flops((7, 7)) == 49 * (4 * 64 * 4 + 64)
    assert math.prod((3, 4, 5)) * 2 * 8 + 4 * 8 * 2 == SqueezeExcite(8, reduction=4).flops((3, 4, 5))
