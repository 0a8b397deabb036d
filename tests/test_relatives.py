"""The close relatives of SE in senet.layers (issue 4).

Generic tests sweep ``ATTENTION_LAYERS``, so a newly registered layer is tested automatically: shapes at
ranks 1-3, gradcheck, channels_last, gate hooks, FLOPs, argument and input errors. Then each layer's
defining property, and numerical parity with identical weights against timm (rank 2) and MONAI (ranks 1-3)
where the definitions coincide; where senet deliberately differs, a test documents the difference.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from senet.layers import (
    ATTENTION_LAYERS,
    CBAM,
    ECA,
    SRM,
    ChannelAttention,
    ChannelSpatialSE,
    CoordinateAttention,
    EffectiveSE,
    GatherExcite,
    GlobalContext,
    SpatialAttention,
    SpatialSE,
    SqueezeExcite,
    adaptive_avg_pool_nd,
    channels_last_format,
    conv_nd,
    create_attention,
    eca_kernel_size,
    get_attention,
    norm_nd,
)
from senet.layers.scse import FUSIONS

NAMES = sorted(ATTENTION_LAYERS)
RANKS = (1, 2, 3)
C = 16  # the smallest width every layer accepts with its default reduction 16
SHAPES = {1: (7,), 2: (5, 6), 3: (3, 4, 5)}
TINY = {1: (5,), 2: (3, 4), 3: (2, 3, 3)}  # for gradcheck


def accepts(name: str, keyword: str) -> bool:
    return keyword in inspect.signature(ATTENTION_LAYERS[name].__init__).parameters


def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random parameters and BN running statistics, so no zero initialisation hides a bug."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
    return module


def build(name: str, d: int, channels: int = C, reduction: int | None = None) -> nn.Module:
    return randomize(create_attention(name, channels, spatial_dims=d, reduction=reduction))


def gate_outputs(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run ``module(x)`` and collect the forward-hook outputs of every submodule named ``gate``, in call order."""
    seen: list[torch.Tensor] = []
    handles = [
        m.register_forward_hook(lambda _m, _i, out: seen.append(out))
        for name, m in module.named_modules()
        if name.rsplit(".", 1)[-1] == "gate"
    ]
    try:
        y = module(x)
    finally:
        for h in handles:
            h.remove()
    return y, seen


# ---------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------


def test_registry_has_the_issue_keys():
    assert set(ATTENTION_LAYERS) >= {"se", "ese", "eca", "cbam", "sse", "scse", "ge", "gc", "srm", "coord"}


def test_get_attention_lists_valid_names():
    with pytest.raises(ValueError, match="attention must be one of .*'coord'.*got 'cbma'"):
        get_attention("cbma")


@pytest.mark.parametrize("name", NAMES)
def test_constructible_with_channels_only(name):
    m = ATTENTION_LAYERS[name](C)
    x = torch.randn(2, C, 5, 6)
    assert m(x).shape == x.shape


# ---------------------------------------------------------------------------------------------------------
# Generic sweep over the registry
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", RANKS)
@pytest.mark.parametrize("name", NAMES)
def test_shape_and_backward(name, d):
    m = build(name, d)
    x = torch.randn(2, C, *SHAPES[d], requires_grad=True)
    y = m(x)
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"


@pytest.mark.parametrize("d", RANKS)
@pytest.mark.parametrize("name", NAMES)
def test_gradcheck(name, d):
    m = build(name, d, channels=8, reduction=4).double()
    x = torch.randn(2, 8, *TINY[d], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,), fast_mode=True)


VARIANTS = {
    "ge_theta_plus": lambda d: GatherExcite(8, spatial_dims=d, extent=2, parametric=True, mlp=True, reduction=4),
    "ge_theta_minus_local": lambda d: GatherExcite(8, spatial_dims=d, extent=3),
    "gc_scale": lambda d: GlobalContext(8, reduction=4, fusion="scale"),
    "scse_max": lambda d: ChannelSpatialSE(8, reduction=4, fusion="max"),
    "scse_mul": lambda d: ChannelSpatialSE(8, reduction=4, fusion="mul"),
    "cbam_no_norm": lambda d: CBAM(8, spatial_dims=d, reduction=4, kernel_size=3, norm=False),
}


@pytest.mark.parametrize("d", RANKS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_gradcheck_variants(variant, d):
    m = randomize(VARIANTS[variant](d)).double()
    x = torch.randn(2, 8, *TINY[d], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,), fast_mode=True)


@pytest.mark.parametrize("d", (2, 3))
@pytest.mark.parametrize("name", NAMES)
def test_channels_last_matches_contiguous(name, d):
    m = build(name, d).double()
    x = torch.randn(2, C, *SHAPES[d], dtype=torch.float64)
    x_cl = x.contiguous(memory_format=channels_last_format(d))
    assert not x_cl.is_contiguous()
    torch.testing.assert_close(m(x_cl), m(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("d", RANKS)
@pytest.mark.parametrize("name", NAMES)
def test_gate_hooks_fire_with_broadcastable_gates(name, d):
    m = build(name, d)
    x = torch.randn(2, C, *SHAPES[d])
    _, gates = gate_outputs(m, x)
    assert gates, f"{name} has no submodule named 'gate'"
    for g in gates:
        assert g.ndim == x.ndim and g.shape[0] == 2
        assert torch.broadcast_shapes(g.shape, x.shape) == x.shape


# How each layer turns its gate tensors (hook outputs, in call order) into its output.
RECOMBINE = {
    "se": lambda x, g: x * g[0],
    "ese": lambda x, g: x * g[0],
    "eca": lambda x, g: x * g[0],
    "sse": lambda x, g: x * g[0],
    "ge": lambda x, g: x * g[0],
    "srm": lambda x, g: x * g[0],
    "gc": lambda x, g: x + g[0],  # default fusion "add": the hook sees the added term
    "cbam": lambda x, g: x * g[0] * g[1],  # channel then spatial
    "scse": lambda x, g: x * g[0] + x * g[1],  # default fusion "add"
    "coord": lambda x, g: math.prod(g, start=x),  # one gate per spatial axis
}


@pytest.mark.parametrize("d", RANKS)
@pytest.mark.parametrize("name", sorted(RECOMBINE))
def test_output_is_recombined_from_hooked_gates(name, d):
    m = build(name, d).double()
    x = torch.randn(2, C, *SHAPES[d], dtype=torch.float64)
    y, gates = gate_outputs(m, x)
    torch.testing.assert_close(y, RECOMBINE[name](x, gates), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("d", RANKS)
@pytest.mark.parametrize("name", NAMES)
def test_flops_positive_growing_and_at_least_the_counted_matmuls(name, d):
    m = build(name, d).eval()
    shape = SHAPES[d]
    flops = m.flops(shape)
    assert isinstance(flops, int) and flops > 0
    assert m.flops(tuple(2 * s for s in shape)) > flops
    with FlopCounterMode(display=False) as counter:
        m(torch.randn(1, C, *shape))
    assert flops >= counter.get_total_flops()  # 2 per multiply-add in every conv, FC and matmul, at least


def hand_count(name: str, m: nn.Module, shape: tuple[int, ...]) -> int:
    p, c = math.prod(shape), C
    return {
        "se": 2 * c * p + 4 * c * (c // 16),  # pool + two FCs + reweighting
        "ese": 2 * c * p + 2 * c * c,  # pool + one C x C FC + reweighting
        "eca": 2 * c * p + 2 * 3 * c,  # pool + conv1d with k = psi(16) = 3 + reweighting
        "sse": 2 * c * p + c * p,  # 1x1 conv C -> 1 + reweighting
        "scse": (2 * c * p + 4 * c) + 3 * c * p + c * p,  # cSE + sSE + fusion
        "srm": c * p + 3 * c * p + 4 * c + 2 * c + c * p,  # mean, std, cfc, BN, reweighting
        "ge": 2 * c * p,  # global average + reweighting
        "gc": 4 * c * p + 4 * c + 2 + c * p,  # attention logits + weighted sum, transform (h=1), LN, add
    }[name]


@pytest.mark.parametrize("d", RANKS)
@pytest.mark.parametrize("name", ["se", "ese", "eca", "sse", "scse", "srm", "ge", "gc"])
def test_flops_match_hand_count(name, d):
    m = create_attention(name, C, spatial_dims=d)
    assert m.flops(SHAPES[d]) == hand_count(name, m, SHAPES[d])


def test_flops_cbam_and_coord_hand_count():
    p, h = 5 * 6, 1
    channel = 2 * C * p + 8 * C * h + C + C * p
    spatial = 2 * C * p + 2 * 2 * 49 * p + 2 * p + C * p
    assert CBAM(C).flops((5, 6)) == channel + spatial
    h, length = 8, 5 + 6  # max(8, 16 // 16)
    assert CoordinateAttention(C).flops((5, 6)) == 2 * C * p + 4 * C * h * length + 2 * h * length + 2 * C * p


# ---------------------------------------------------------------------------------------------------------
# Bad arguments and inputs: the message names the argument
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_bad_channels(name):
    with pytest.raises(ValueError, match="channels"):
        ATTENTION_LAYERS[name](0)
    with pytest.raises(TypeError, match="channels"):
        ATTENTION_LAYERS[name]("16")


@pytest.mark.parametrize("name", [n for n in NAMES if accepts(n, "reduction")])
def test_bad_reduction(name):
    with pytest.raises(ValueError, match="reduction"):
        create_attention(name, C, reduction=0)
    with pytest.raises(TypeError, match="reduction"):
        ATTENTION_LAYERS[name](C, reduction=2.0)


@pytest.mark.parametrize("name", [n for n in NAMES if accepts(n, "spatial_dims")])
def test_bad_spatial_dims(name):
    with pytest.raises(ValueError, match="spatial_dims"):
        create_attention(name, C, spatial_dims=4)
    with pytest.raises(TypeError, match="spatial_dims"):
        ATTENTION_LAYERS[name](C, spatial_dims="2")


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs(name):
    m = ATTENTION_LAYERS[name](C)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        m([[1.0]])
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        m(torch.ones(2, C, 5, 6, dtype=torch.long))
    with pytest.raises(ValueError, match=f"x must have channels={C}"):
        m(torch.randn(2, C + 1, 5, 6))
    with pytest.raises(ValueError, match="x must have shape .*spatial"):
        m(torch.randn(2, C))
    with pytest.raises(ValueError, match="x must have shape .*spatial"):
        m(torch.randn(1, C, 2, 2, 2, 2))


@pytest.mark.parametrize("name", [n for n in NAMES if accepts(n, "spatial_dims")])
def test_input_rank_must_match_spatial_dims(name):
    m = create_attention(name, C, spatial_dims=2)
    with pytest.raises(ValueError, match="x must have shape .* 2 spatial dims"):
        m(torch.randn(2, C, 3, 4, 5))


# ---------------------------------------------------------------------------------------------------------
# EffectiveSE
# ---------------------------------------------------------------------------------------------------------


def test_ese_has_no_reduction_and_a_hard_sigmoid_gate():
    m = EffectiveSE(C)
    assert m.fc.weight.shape == (C, C) and isinstance(m.gate, nn.Hardsigmoid)
    with torch.no_grad():
        m.fc.weight.zero_()
        m.fc.bias.copy_(torch.linspace(-4, 4, C))
    _, (g,) = gate_outputs(m, torch.randn(2, C, 4))
    expected = torch.clamp(torch.linspace(-4, 4, C) / 6 + 0.5, 0, 1)  # relu6(v + 3) / 6, saturating
    torch.testing.assert_close(g[0, :, 0], expected)
    assert g.min() == 0 and g.max() == 1


def test_ese_bad_gate_and_squeeze():
    with pytest.raises(ValueError, match="gate must be one of"):
        EffectiveSE(C, gate="swish")
    with pytest.raises(ValueError, match="squeeze must be one of"):
        EffectiveSE(C, squeeze="median")


# ---------------------------------------------------------------------------------------------------------
# ECA
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("channels", "k"), [(64, 3), (256, 5), (512, 5), (2048, 7)])
def test_eca_kernel_rule(channels, k):
    assert eca_kernel_size(channels) == k
    assert ECA(channels).conv.kernel_size == (k,)


def test_eca_fixed_kernel_size_and_constants():
    assert ECA(2048, kernel_size=9).kernel_size == 9
    assert eca_kernel_size(2048, gamma=1.0, beta=0.0) == 11  # t = 11, odd
    assert eca_kernel_size(1) == 3  # at least 3


@pytest.mark.parametrize("kernel_size", [None, 5, 7])
def test_eca_has_no_reduction_and_sees_exactly_k_channels(kernel_size):
    m = randomize(ECA(C, kernel_size=kernel_size)).double()
    k = m.kernel_size
    assert sum(p.numel() for p in m.parameters()) == k  # only the k conv weights: no C x C/r matrices
    assert (m.conv.weight != 0).all()
    x = torch.randn(2, C, 4, 5, dtype=torch.float64)
    base = m.gates(x)
    for j in (0, 7, C - 1):
        bumped = x.clone()
        bumped[:, j] += 1.0  # moves channel j's average only
        changed = (m.gates(bumped) != base).any(0).flatten()
        expected = torch.tensor([abs(i - j) <= k // 2 for i in range(C)])
        assert torch.equal(changed, expected), (j, changed)


@pytest.mark.parametrize(
    ("kwargs", "error", "argument"),
    [
        (dict(kernel_size=4), ValueError, "kernel_size"),
        (dict(kernel_size=0), ValueError, "kernel_size"),
        (dict(kernel_size=3.0), TypeError, "kernel_size"),
        (dict(gamma=0), ValueError, "gamma"),
        (dict(gamma="2"), TypeError, "gamma"),
        (dict(beta=float("nan")), TypeError, "beta"),
    ],
)
def test_eca_bad_arguments(kwargs, error, argument):
    with pytest.raises(error, match=argument):
        ECA(C, **kwargs)


# ---------------------------------------------------------------------------------------------------------
# CBAM
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", RANKS)
def test_cbam_channel_gate_uniform_over_space_and_spatial_gate_uniform_over_channels(d):
    m = build("cbam", d).double()
    x = torch.rand(2, C, *SHAPES[d], dtype=torch.float64) + 0.5  # away from 0, so y / x is the gate
    _, (channel, spatial) = gate_outputs(m, x)
    assert channel.shape == (2, C) + (1,) * d and spatial.shape == (2, 1) + SHAPES[d]
    ratio_c = m.channel(x) / x  # channel half alone
    torch.testing.assert_close(ratio_c, ratio_c.flatten(2)[..., :1].view(2, C, *([1] * d)).expand_as(x))
    ratio_s = m.spatial(x) / x  # spatial half alone
    torch.testing.assert_close(ratio_s, ratio_s[:, :1].expand_as(x))
    assert ratio_c.flatten(2).std(-1).max() < 1e-12 and ratio_s.std(1).max() < 1e-12


def test_cbam_halves_usable_alone():
    x = torch.randn(2, C, 5, 6)
    assert ChannelAttention(C)(x).shape == x.shape
    s = SpatialAttention(C, spatial_dims=2, kernel_size=3, norm=False)
    assert isinstance(s.bn, nn.Identity) and s.conv.weight.shape == (1, 2, 3, 3)
    assert s(x).shape == x.shape
    assert SpatialAttention(C, spatial_dims=3).conv.weight.shape == (1, 2, 7, 7, 7)


@pytest.mark.parametrize(
    ("build_", "error", "argument"),
    [
        (lambda: CBAM(C, kernel_size=6), ValueError, "kernel_size"),
        (lambda: SpatialAttention(C, kernel_size=0), ValueError, "kernel_size"),
        (lambda: CBAM(C, reduction=32), ValueError, "reduction"),
        (lambda: ChannelAttention(C, hidden_channels=0), ValueError, "hidden_channels"),
    ],
)
def test_cbam_bad_arguments(build_, error, argument):
    with pytest.raises(error, match=argument):
        build_()


# ---------------------------------------------------------------------------------------------------------
# sSE and scSE
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", RANKS)
def test_sse_gate_uniform_over_channels(d):
    m = build("sse", d).double()
    x = torch.rand(2, C, *SHAPES[d], dtype=torch.float64) + 0.5
    ratio = m(x) / x
    assert ratio.std(1).max() < 1e-12 and ratio.flatten(2).std(-1).min() > 0  # one gate per position


@pytest.mark.parametrize("fusion", sorted(FUSIONS))
def test_scse_fusion_modes(fusion):
    m = randomize(ChannelSpatialSE(C, fusion=fusion)).double()
    x = torch.randn(2, C, 4, 5, dtype=torch.float64)
    u_cse, u_sse = m.cse(x), m.sse(x)
    expected = {"add": u_cse + u_sse, "max": torch.maximum(u_cse, u_sse), "mul": u_cse * u_sse}[fusion]
    torch.testing.assert_close(m(x), expected, rtol=0, atol=0)
    assert not torch.allclose(expected, u_cse) and not torch.allclose(expected, u_sse)


def test_scse_default_fusion_is_the_papers_addition():
    assert ChannelSpatialSE(C).fusion == "add"
    assert isinstance(ChannelSpatialSE(C).cse, SqueezeExcite) and isinstance(ChannelSpatialSE(C).sse, SpatialSE)
    with pytest.raises(ValueError, match="fusion must be one of"):
        ChannelSpatialSE(C, fusion="sum")


# ---------------------------------------------------------------------------------------------------------
# Gather-Excite
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", RANKS)
@pytest.mark.parametrize("extent", ["global", 0, 1, 2, 3])
def test_ge_theta_minus_has_no_parameters(extent, d):
    m = GatherExcite(C, spatial_dims=d, extent=extent)
    assert sum(p.numel() for p in m.parameters()) == 0
    x = torch.randn(2, C, *SHAPES[d])
    assert m(x).shape == x.shape


def test_ge_global_theta_minus_gates_with_the_sigmoid_of_the_mean():
    x = torch.randn(2, C, 5, 6, dtype=torch.float64)
    torch.testing.assert_close(GatherExcite(C)(x), x * torch.sigmoid(x.mean((2, 3), keepdim=True)))


@pytest.mark.parametrize("d", RANKS)
@pytest.mark.parametrize("parametric", [False, True])
def test_ge_local_gates_constant_on_extent_blocks(parametric, d):
    e, shape = 2, (4, 6, 2)[:d]  # divisible by e
    m = randomize(GatherExcite(C, spatial_dims=d, extent=e, parametric=parametric))
    x = torch.randn(2, C, *shape)
    _, (g,) = gate_outputs(m, x)
    assert g.shape == x.shape
    # Replace each e-block by its maximum: a gate constant on each block is unchanged.
    pooled = g
    for axis in range(2, g.ndim):
        pooled = pooled.unflatten(axis, (shape[axis - 2] // e, e))
        pooled = pooled.amax(axis + 1, keepdim=True).expand_as(pooled).flatten(axis, axis + 1)
    torch.testing.assert_close(pooled, g, rtol=0, atol=0)
    assert g.flatten(2).std(-1).min() > 0  # and the gate does vary over space


def test_ge_theta_global_gathers_the_whole_map():
    m = randomize(GatherExcite(C, parametric=True, feature_size=(5, 6))).double().eval()
    x = torch.randn(2, C, 5, 6, dtype=torch.float64)
    w = m.gather.conv1.weight[:, 0]  # (C, 5, 6): one depth-wise filter per channel
    bn = m.gather.norm1
    z = torch.einsum("nchw,chw->nc", x, w)
    z = (z - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    torch.testing.assert_close(m(x), x * torch.sigmoid(z)[..., None, None])
    with pytest.raises(ValueError, match="feature_size"):
        m(torch.randn(2, C, 6, 5, dtype=torch.float64))


def test_ge_theta_structure():
    m = GatherExcite(C, spatial_dims=3, extent=4, parametric=True, mlp=True)
    assert [n for n, _ in m.gather.named_children()] == ["conv1", "norm1", "act1", "conv2", "norm2"]
    assert m.gather.conv1.weight.shape == (C, 1, 3, 3, 3) and m.gather.conv1.stride == (2, 2, 2)
    assert m.mlp.fc1.weight.shape == (1, C, 1, 1, 1)
    assert m(torch.randn(2, C, 5, 7, 8)).shape == (2, C, 5, 7, 8)


@pytest.mark.parametrize(
    ("kwargs", "error", "argument"),
    [
        (dict(extent=-1), ValueError, "extent"),
        (dict(extent="local"), TypeError, "extent"),
        (dict(extent=2.0), TypeError, "extent"),
        (dict(extent=3, parametric=True), ValueError, "extent must be a power of 2"),
        (dict(extent=1, parametric=True), ValueError, "extent must be a power of 2"),
        (dict(parametric=True), ValueError, "feature_size must be given"),
        (dict(parametric=True, feature_size=(5, 6, 7)), ValueError, "feature_size"),
        (dict(parametric=True, feature_size=(5, 0)), ValueError, "feature_size"),
        (dict(extent=2, feature_size=(5, 6)), ValueError, "feature_size is only used"),
        (dict(mlp=True, reduction=32), ValueError, "reduction"),
    ],
)
def test_ge_bad_arguments(kwargs, error, argument):
    with pytest.raises(error, match=argument):
        GatherExcite(C, **kwargs)


# ---------------------------------------------------------------------------------------------------------
# Global Context
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", RANKS)
def test_gc_additive_with_zero_last_layer_is_identity(d):
    x = torch.randn(2, C, *SHAPES[d])
    torch.testing.assert_close(GlobalContext(C)(x), x, rtol=0, atol=0)  # fresh: W_v2 = 0 (authors' init)
    m = build("gc", d)
    assert not torch.allclose(m(x), x)
    with torch.no_grad():
        m.mlp.fc2.weight.zero_()
        m.mlp.fc2.bias.zero_()
    torch.testing.assert_close(m(x), x, rtol=0, atol=0)


def test_gc_attention_pooling_is_a_convex_combination():
    m = randomize(GlobalContext(C)).double()
    v = torch.randn(2, C, 1, 1, dtype=torch.float64)
    torch.testing.assert_close(m.context(v.expand(2, C, 5, 6)), v.flatten(1))  # weights sum to 1
    x = torch.randn(2, C, 5, 6, dtype=torch.float64)
    ctx = m.context(x)
    assert ((ctx >= x.flatten(2).amin(-1) - 1e-12) & (ctx <= x.flatten(2).amax(-1) + 1e-12)).all()


def test_gc_scale_fusion_gates():
    m = randomize(GlobalContext(C, fusion="scale"))
    x = torch.randn(2, C, 5, 6)
    y, (g,) = gate_outputs(m, x)
    assert g.shape == (2, C, 1, 1) and ((g > 0) & (g < 1)).all()
    torch.testing.assert_close(y, x * g)
    with pytest.raises(ValueError, match="fusion must be one of"):
        GlobalContext(C, fusion="mul")


# ---------------------------------------------------------------------------------------------------------
# SRM
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", RANKS)
def test_srm_gates_depend_only_on_each_channels_style(d):
    m = build("srm", d).double().eval()
    x = torch.randn(2, C, *SHAPES[d], dtype=torch.float64)
    base = m.gates(x)
    shuffled = x.flatten(2)[..., torch.randperm(math.prod(SHAPES[d]))].view_as(x)  # same mean and std
    torch.testing.assert_close(m.gates(shuffled), base)
    bumped = x.clone()
    bumped[:, 3] *= 2.0  # channel 3's style changes, no other
    changed = (m.gates(bumped) != base).any(0).flatten()
    assert torch.equal(changed, torch.arange(C) == 3)


def test_srm_integration_formula_and_initial_state():
    m = randomize(SRM(C)).double().eval()
    x = torch.randn(2, C, 4, 5, dtype=torch.float64)
    flat = x.flatten(2)
    z = m.cfc[:, 0] * flat.mean(-1) + m.cfc[:, 1] * torch.sqrt(flat.var(-1) + 1e-5)  # unbiased, as the authors
    z = (z - m.bn.running_mean) / torch.sqrt(m.bn.running_var + m.bn.eps) * m.bn.weight + m.bn.bias
    torch.testing.assert_close(m.gates(x).flatten(1), torch.sigmoid(z))
    fresh = SRM(C)  # cfc = 0, BN bias = 0: every gate is 1/2 in training mode
    _, (g,) = gate_outputs(fresh, x.float())
    torch.testing.assert_close(g, torch.full_like(g, 0.5))
    assert torch.isfinite(fresh.eval()(torch.randn(2, C, 1, 1))).all()  # one position: no NaN std


# ---------------------------------------------------------------------------------------------------------
# Coordinate attention
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", RANKS)
def test_coord_one_gate_per_axis(d):
    m = build("coord", d)
    x = torch.randn(2, C, *SHAPES[d])
    _, gates = gate_outputs(m, x)
    assert len(gates) == d
    for axis, g in enumerate(gates):
        expected = [2, C] + [1] * d
        expected[2 + axis] = SHAPES[d][axis]
        assert list(g.shape) == expected
    assert m.hidden_channels == 8 and len(m.convs) == d  # max(8, C // 16), as the authors' code


class AuthorsCoordAtt(nn.Module):
    """The authors' CoordAtt (github.com/houqb/CoordAttention, coordatt.py), h_swish as nn.Hardswish."""

    def __init__(self, inp: int, oup: int, reduction: int = 32) -> None:
        super().__init__()
        self.pool_h = adaptive_avg_pool_nd(2)((None, 1))
        self.pool_w = adaptive_avg_pool_nd(2)((1, None))
        mip = max(8, inp // reduction)
        self.conv1 = conv_nd(2)(inp, mip, kernel_size=1, stride=1, padding=0)
        self.bn1 = norm_nd(2)(mip)
        self.act = nn.Hardswish()
        self.conv_h = conv_nd(2)(mip, oup, kernel_size=1, stride=1, padding=0)
        self.conv_w = conv_nd(2)(mip, oup, kernel_size=1, stride=1, padding=0)

    def forward(self, x):
        identity = x
        n, c, h, w = x.size()
        x_h = self.pool_h(x)
        x_w = self.pool_w(x).permute(0, 1, 3, 2)
        y = torch.cat([x_h, x_w], dim=2)
        y = self.act(self.bn1(self.conv1(y)))
        x_h, x_w = torch.split(y, [h, w], dim=2)
        x_w = x_w.permute(0, 1, 3, 2)
        a_h = self.conv_h(x_h).sigmoid()
        a_w = self.conv_w(x_w).sigmoid()
        return identity * a_w * a_h


@pytest.mark.parametrize("train", [False, True])
def test_coord_matches_the_authors_code_at_rank_2(train):
    theirs = randomize(AuthorsCoordAtt(64, 64, reduction=32))
    ours = CoordinateAttention(64, reduction=32)
    state = {k.replace("conv_h", "convs.0").replace("conv_w", "convs.1"): v for k, v in theirs.state_dict().items()}
    ours.load_state_dict(state, strict=True)
    ours.train(train), theirs.train(train)
    x = torch.randn(2, 64, 5, 7)
    torch.testing.assert_close(ours(x), theirs(x))


# ---------------------------------------------------------------------------------------------------------
# Parity with timm (2-D only) and MONAI (1-3-D), identical weights
# ---------------------------------------------------------------------------------------------------------


def copy_weights(ours: nn.Module, theirs: nn.Module, rename=lambda key: key) -> None:
    """Load ``theirs``' state into ``ours`` under ``rename``, reshaping 1x1 convs to Linear; every key must match."""
    state = {rename(k): v for k, v in theirs.state_dict().items()}
    target = ours.state_dict()
    assert set(state) == set(target), set(state) ^ set(target)
    ours.load_state_dict({k: v.reshape(target[k].shape) for k, v in state.items()}, strict=True)


def timm_layers():
    return pytest.importorskip("timm.layers")


@pytest.mark.parametrize("channels", [16, 64, 256])
def test_parity_timm_eca(channels):
    theirs = randomize(timm_layers().EcaModule(channels))
    ours = ECA(channels)
    copy_weights(ours, theirs)
    x = torch.randn(2, channels, 5, 6)
    torch.testing.assert_close(ours(x), theirs(x))


def test_eca_kernel_rule_matches_timm_for_many_widths():
    timm = timm_layers()
    for channels in [*range(1, 130), 192, 255, 256, 384, 511, 512, 768, 1024, 1536, 2048, 4096]:
        assert eca_kernel_size(channels) == timm.EcaModule(channels).conv.kernel_size[0], channels


def test_parity_timm_effective_se():
    theirs = randomize(timm_layers().EffectiveSEModule(C))
    ours = EffectiveSE(C)
    copy_weights(ours, theirs)  # timm: fc is a 1x1 Conv2d (C, C, 1, 1); senet: nn.Linear (C, C)
    x = torch.randn(2, C, 5, 6) * 3  # reach both saturated ends of the hard sigmoid
    torch.testing.assert_close(ours(x), theirs(x))


@pytest.mark.parametrize("train", [False, True])
def test_parity_timm_cbam(train):
    pytest.importorskip("timm")
    from timm.layers.cbam import CbamModule

    theirs = randomize(CbamModule(32))
    ours = CBAM(32)
    # timm: spatial.conv is a ConvNormAct holding conv and bn; senet: spatial.conv and spatial.bn
    copy_weights(ours, theirs, lambda k: k.replace("spatial.conv.conv.", "spatial.conv.").replace("conv.bn.", "bn."))
    ours.train(train), theirs.train(train)
    x = torch.randn(2, 32, 9, 8)
    torch.testing.assert_close(ours(x), theirs(x))


def test_cbam_hidden_width_floors_where_timm_rounds():
    """Deliberate difference: senet's hidden width is the paper's floor C // r (excitation_width),
    timm's CbamModule rounds C / r to the nearest int. They agree when r divides C."""
    pytest.importorskip("timm")
    from timm.layers.cbam import CbamModule

    assert CBAM(24).channel.hidden_channels == 1 and CbamModule(24).channel.fc1.out_channels == 2
    assert CBAM(32).channel.hidden_channels == CbamModule(32).channel.fc1.out_channels == 2


def timm_gather_excite(monkeypatch, channels: int, **kwargs) -> nn.Module:
    """timm 1.0.31's GatherExcite passes its ``{'device', 'dtype'}`` dict with ``*`` instead of ``**`` to
    ``create_conv2d``, ``ConvMlp`` and ``nn.BatchNorm2d``, so only GE-theta-minus without MLP constructs
    (``TypeError: got multiple values``). The shims drop those stray positional arguments (and nothing
    else), so what is compared is timm's own layer structure and forward."""
    ge = pytest.importorskip("timm.layers.gather_excite")

    def keep(fn, positional: int):
        return lambda *args, **kw: fn(*args[:positional], **kw)

    class TorchNN:
        BatchNorm2d = staticmethod(keep(torch.nn.BatchNorm2d, 1))

        def __getattr__(self, name):
            return getattr(torch.nn, name)

    monkeypatch.setattr(ge, "create_conv2d", keep(ge.create_conv2d, 2))
    monkeypatch.setattr(ge, "ConvMlp", keep(ge.ConvMlp, 2))
    monkeypatch.setattr(ge, "nn", TorchNN())
    return ge.GatherExcite(channels, **kwargs)


@pytest.mark.parametrize(
    ("timm_kwargs", "our_kwargs"),
    [
        (dict(extent=0, use_mlp=False), dict(extent="global")),
        (dict(extent=2, use_mlp=False), dict(extent=2)),
        (dict(extent=4, use_mlp=False), dict(extent=4)),
        (dict(extent=0), dict(mlp=True)),
        (dict(extent=2, extra_params=True, use_mlp=False), dict(extent=2, parametric=True)),
        (dict(extent=4, extra_params=True, use_mlp=False), dict(extent=4, parametric=True)),
        (dict(extent=8, extra_params=True), dict(extent=8, parametric=True, mlp=True)),
    ],
)
def test_parity_timm_gather_excite(monkeypatch, timm_kwargs, our_kwargs):
    theirs = randomize(timm_gather_excite(monkeypatch, 32, **timm_kwargs)).eval()
    ours = GatherExcite(32, **our_kwargs).eval()
    copy_weights(ours, theirs)
    x = torch.randn(2, 32, 9, 12)
    torch.testing.assert_close(ours(x), theirs(x))


def test_ge_theta_global_differs_from_timm(monkeypatch):
    """Deliberate difference: for GE-theta with a global extent timm pads the feature-size depth-wise
    convolution ("same" size output), so its gate varies over space; senet follows the paper: the
    convolution covers the whole map and yields one gate per channel."""
    theirs = timm_gather_excite(monkeypatch, C, extent=0, extra_params=True, use_mlp=False, feat_size=(5, 5))
    theirs = randomize(theirs).eval()
    ours = GatherExcite(C, parametric=True, feature_size=(5, 5)).eval()
    copy_weights(ours, theirs)
    x = torch.randn(2, C, 5, 5)
    _, (g_theirs,) = gate_outputs(theirs, x)
    _, (g_ours,) = gate_outputs(ours, x)
    assert g_ours.shape == (2, C, 1, 1)
    assert g_theirs.shape == (2, C, 5, 5) and g_theirs.flatten(2).std(-1).min() > 0
    assert not torch.allclose(g_theirs, g_ours.expand_as(g_theirs))
    torch.testing.assert_close(g_theirs[..., 2, 2], g_ours.flatten(1))  # they agree only at the centre


@pytest.mark.parametrize("fusion", ["add", "scale"])
def test_parity_timm_global_context(fusion):
    timm = timm_layers()
    theirs = randomize(timm.GlobalContext(32, fuse_add=fusion == "add", fuse_scale=fusion == "scale", rd_ratio=1 / 16))
    ours = GlobalContext(32, fusion=fusion)
    copy_weights(ours, theirs, lambda k: k.replace("mlp_add.", "mlp.").replace("mlp_scale.", "mlp."))
    x = torch.randn(2, 32, 6, 7)
    torch.testing.assert_close(ours(x), theirs(x))


def test_gc_hidden_width_default_differs_from_timm():
    """Deliberate difference: senet's default reduction is the paper's r = 16; timm's GlobalContext uses 1/8."""
    assert GlobalContext(64).hidden_channels == 4 and timm_layers().GlobalContext(64).mlp_scale.fc1.out_channels == 8


@pytest.mark.parametrize("d", RANKS)
def test_parity_monai_channel_se(d):
    blocks = pytest.importorskip("monai.networks.blocks")
    theirs = randomize(blocks.ChannelSELayer(d, C, r=4))
    ours = SqueezeExcite(C, reduction=4)
    copy_weights(ours, theirs, lambda k: k.replace("fc.0.", "fc1.").replace("fc.2.", "fc2."))
    x = torch.randn(2, C, *SHAPES[d])
    torch.testing.assert_close(ours(x), theirs(x))


@pytest.mark.parametrize("d", RANKS)
def test_parity_monai_residual_se(d):
    """MONAI's ResidualSELayer is ``x + SE(x)`` with a LeakyReLU hidden activation and a ReLU gate;
    senet has no residual switch in the layer (the block adds the shortcut), so the sum is written out."""
    blocks = pytest.importorskip("monai.networks.blocks")
    theirs = randomize(blocks.ResidualSELayer(d, C, r=4))
    ours = SqueezeExcite(C, reduction=4, activation=nn.LeakyReLU, gate="relu")
    copy_weights(ours, theirs, lambda k: k.replace("fc.0.", "fc1.").replace("fc.2.", "fc2."))
    x = torch.randn(2, C, *SHAPES[d])
    torch.testing.assert_close(x + ours(x), theirs(x))
