"""The fused SE ops give the plain formula's values and gradients, save less, and compile without breaks."""

from __future__ import annotations

import copy
import math
import platform
import sys

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from senet.layers import SqueezeExcite, conv_nd, norm_nd, se_ops
from senet.layers.eca import ECA
from senet.layers.fused import batch_norm_affine, bn_se_add_relu, fusable, scale_add_relu
from senet.layers.se_ops import channel_dot, squeeze_excite, squeeze_mean

SHAPES = {1: (3, 16, 11), 2: (3, 16, 5, 6), 3: (2, 16, 3, 4, 5)}


def _unit(spatial_dims: int, channels: int = 16, dtype=torch.float32):
    bn = norm_nd(spatial_dims)(channels).to(dtype)
    se = SqueezeExcite(channels, reduction=4).to(dtype)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    return bn, se


def _plain(c, bn, se, identity):
    return torch.relu(se(bn(c)) + identity)


def _inputs(shape, dtype=torch.float32, channels_last=False):
    c = (torch.randn(shape, dtype=dtype) * 2 + 0.5).requires_grad_()
    identity = torch.randn(shape, dtype=dtype).requires_grad_()
    if channels_last:
        fmt = torch.channels_last if len(shape) == 4 else torch.channels_last_3d
        c = c.detach().contiguous(memory_format=fmt).requires_grad_()
        identity = identity.detach().contiguous(memory_format=fmt).requires_grad_()
    return c, identity


def _grads(out, tensors, modules, seed=1):
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    params = [p for m in modules for p in m.parameters()]
    return torch.autograd.grad(out, [*tensors, *params], g)


def test_squeeze_mean_and_channel_dot_match_the_plain_ops():
    x = torch.randn(2, 5, 4, 3).contiguous(memory_format=torch.channels_last)
    y = torch.randn(2, 5, 4, 3)
    torch.testing.assert_close(squeeze_mean(x), x.mean((2, 3)))
    torch.testing.assert_close(channel_dot(x, y), (x * y).sum((2, 3)))


def _channels_last_any_rank(shape, dtype=torch.float32):
    """A tensor of ``shape`` (N, C, *S) whose channels have stride 1 (1-D: a transposed (N, L, C))."""
    n, c, *spatial = shape
    return torch.randn(n, *spatial, c, dtype=dtype).movedim(-1, 1)


@pytest.mark.parametrize(
    "shape",
    [(2, 5, 40), (3, 6, 4, 3), (2, 6, 40, 30), (2, 4, 3, 4, 5), (2, 4, 12, 10, 10), (2, 1, 6, 6), (2, 6, 1, 1)],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_squeeze_mean_routes_match_mean(shape, dtype):
    """Every no-grad route (channels-last, any rank: a batched product; contiguous: a matrix-vector product
    up to 144 positions or on one thread, mean beyond) gives the mean; with autograd it is sum / P with mean's gradient."""
    dims = tuple(range(2, len(shape)))
    tol = {"rtol": 1e-2, "atol": 1e-2} if dtype == torch.bfloat16 else {}
    for x in (torch.randn(shape, dtype=dtype), _channels_last_any_rank(shape, dtype)):
        with torch.no_grad():
            got = squeeze_mean(x)
        assert got.shape == shape[:2] and got.dtype == dtype
        torch.testing.assert_close(got, x.mean(dims), **tol)
    x = _channels_last_any_rank(shape).requires_grad_()
    (got,) = torch.autograd.grad(squeeze_mean(x).sum(), x)
    torch.testing.assert_close(got, torch.full_like(x, 1.0 / math.prod(shape[2:])))


# (side of a 3-channel map, threads, MKL on an Intel CPU) -> whether the squeeze is a BLAS product (else ``mean``)
_PRODUCT_ROUTES = [
    *[(side, threads, True, True) for side in (7, 12) for threads in (1, 2)],  # 49 and 144 positions
    *[(side, threads, False, threads == 1) for side in (7, 12) for threads in (1, 2)],
    *[(side, 1, True, True) for side in (20, 56, 112)],  # 400 to 12544 positions
    *[(side, 2, intel, False) for side in (20, 56, 112) for intel in (True, False)],
    (20, 1, False, False), (56, 1, False, False), (112, 1, False, True),
]
# (side, channels, threads, MKL on an Intel CPU) -> whether a channels-last map's squeeze is a batched product
_PRODUCT_ROUTES_CHANNELS_LAST = [
    *[(side, channels, threads, True, True) for side in (7, 56) for channels in (8, 512) for threads in (1, 2)],
    *[(side, channels, threads, False, channels == 512) for side in (7, 56) for channels in (8, 512) for threads in (1, 2)],
]


def _routed(squeeze_input: torch.Tensor, threads: int) -> tuple[list[str], torch.Tensor]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            return _aten_ops(squeeze_mean, squeeze_input)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("side, threads, intel, product", _PRODUCT_ROUTES)
def test_squeeze_mean_routes_contiguous_maps_by_size_threads_and_cpu(monkeypatch, side, threads, intel, product):
    """Contiguous maps, MKL on an Intel CPU: the matrix-vector product up to 144 positions, and beyond on one
    intra-op thread. Elsewhere: the product on one thread up to 144 or from 12544 positions. ``mean``
    otherwise. Same values."""
    monkeypatch.setattr(se_ops, "_MKL_ON_INTEL", intel)
    x = torch.randn(2, 3, side, side)
    names, got = _routed(x, threads)
    assert ("mv.default" in names) == product and ("mean.dim" in names) == (not product), names
    torch.testing.assert_close(got, x.mean((2, 3)))


@pytest.mark.parametrize("side, channels, threads, intel, product", _PRODUCT_ROUTES_CHANNELS_LAST)
def test_squeeze_mean_routes_channels_last_maps_by_channels_and_cpu(monkeypatch, side, channels, threads, intel, product):
    """Channels-last maps: the batched product with MKL on an Intel CPU, elsewhere from 512 channels;
    ``mean`` otherwise, whatever the size and thread count. Same values."""
    monkeypatch.setattr(se_ops, "_MKL_ON_INTEL", intel)
    x = torch.randn(2, channels, side, side).contiguous(memory_format=torch.channels_last)
    names, got = _routed(x, threads)
    assert ("bmm.default" in names) == product and ("mean.dim" in names) == (not product), names
    torch.testing.assert_close(got, x.mean((2, 3)))


def test_cpu_vendor_reads_proc_cpuinfo():
    vendor = se_ops._cpuinfo("vendor_id")
    assert isinstance(vendor, str)
    if sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64"):
        assert vendor, "no vendor_id in /proc/cpuinfo"
        # fields are matched whole: "model" is the number, not the "model name" line's text
        assert se_ops._cpuinfo("model").isdigit() and not se_ops._cpuinfo("model name").isdigit()
    assert se_ops._cpuinfo("no such field") == ""
    assert se_ops._MKL_ON_INTEL == (torch.backends.mkl.is_available() and vendor == "GenuineIntel")


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_scale_add_relu_equals_plain_formula_and_gradients(spatial_dims):
    x = torch.randn(SHAPES[spatial_dims], requires_grad=True)
    identity = torch.randn(SHAPES[spatial_dims], requires_grad=True)
    s = torch.rand(*x.shape[:2], *([1] * spatial_dims), requires_grad=True)
    out = scale_add_relu(x, s, identity)
    ref = torch.relu(x * s + identity)
    torch.testing.assert_close(out, ref)
    for got, want in zip(_grads(out, [x, s, identity], []), _grads(ref, [x, s, identity], [])):
        torch.testing.assert_close(got, want)


def test_scale_add_relu_gradcheck_float64():
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    identity = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    s = torch.rand(2, 3, 1, 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(scale_add_relu, (x, s, identity))


def test_se_method_scale_add_relu_equals_module_formula():
    se = SqueezeExcite(16, reduction=4)
    x, identity = torch.randn(2, 16, 5, 5), torch.randn(2, 16, 5, 5)
    torch.testing.assert_close(se.scale_add_relu(x, identity), torch.relu(se(x) + identity))
    with torch.no_grad():
        torch.testing.assert_close(se.scale_add_relu(x, identity), torch.relu(se(x) + identity))
    with pytest.raises(ValueError, match="channels=16"):
        se.scale_add_relu(torch.randn(2, 8, 5, 5), identity)


def test_scale_add_relu_rejects_mismatched_shapes():
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="identity must have the shape"):
        scale_add_relu(x, torch.rand(2, 3, 1, 1), torch.randn(2, 3, 4, 5))
    with pytest.raises(ValueError, match="s must have shape"):
        scale_add_relu(x, torch.rand(2, 3), torch.randn(2, 3, 4, 4))


@pytest.mark.parametrize("train", [True, False])
def test_batch_norm_affine_matches_module(train):
    bn, _ = _unit(2)
    bn_ref = copy.deepcopy(bn)
    bn.train(train), bn_ref.train(train)
    c = torch.randn(4, 16, 3, 3) * 3 + 1
    u, alpha, beta = batch_norm_affine(c, bn)
    assert torch.equal(u, bn_ref(c))  # the same kernel, bit for bit
    torch.testing.assert_close(alpha.view(1, -1, 1, 1) * c + beta.view(1, -1, 1, 1), u)
    for name, buf in bn_ref.named_buffers():
        assert torch.equal(getattr(bn, name), buf), name


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("train", [True, False])
def test_bn_se_add_relu_equals_plain_unit(spatial_dims, train):
    bn, se = _unit(spatial_dims)
    bn_ref, se_ref = copy.deepcopy(bn), copy.deepcopy(se)
    for m in (bn, se, bn_ref, se_ref):
        m.train(train)
    c, identity = _inputs(SHAPES[spatial_dims])
    out = bn_se_add_relu(c, bn, se, identity)
    ref = _plain(c, bn_ref, se_ref, identity)
    torch.testing.assert_close(out, ref)
    got = _grads(out, [c, identity], [bn, se])
    want = _grads(ref, [c, identity], [bn_ref, se_ref])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for name, buf in bn_ref.named_buffers():
        assert torch.equal(getattr(bn, name), buf), name


def test_bn_se_add_relu_channels_last_and_no_grad():
    bn, se = _unit(2)
    bn.eval(), se.eval()
    c, identity = _inputs((2, 16, 6, 5), channels_last=True)
    ref = _plain(c, bn, se, identity)
    torch.testing.assert_close(bn_se_add_relu(c, bn, se, identity), ref)
    with torch.no_grad():
        out = bn_se_add_relu(c, bn, se, identity)
    torch.testing.assert_close(out, ref)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_bn_se_add_relu_gradcheck_float64():
    bn, _ = _unit(2, channels=4, dtype=torch.float64)
    se = SqueezeExcite(4, reduction=2).double()

    def unit(c, identity, bn_weight, fc1_weight):
        # the parameters as inputs, so that gradcheck differentiates through them too (training-mode BN)
        bn_f, se_f = copy.deepcopy(bn), copy.deepcopy(se)
        del bn_f.weight, se_f.fc1.weight
        bn_f.weight, se_f.fc1.weight = bn_weight, fc1_weight
        return bn_se_add_relu(c, bn_f, se_f, identity)

    c = torch.randn(3, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    identity = torch.randn(3, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    weights = (bn.weight.detach().clone().requires_grad_(), se.fc1.weight.detach().clone().requires_grad_())
    assert torch.autograd.gradcheck(unit, (c, identity, *weights))


def _saved_bytes(fn) -> int:
    storages: dict[int, int] = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


def test_bn_se_add_relu_saves_no_extra_activation():
    bn, se = _unit(2, channels=32)
    bn_plain = copy.deepcopy(bn)
    c, identity = _inputs((4, 32, 16, 16))
    full = c.numel() * c.element_size()
    plain = _saved_bytes(lambda: torch.relu(bn_plain(c) + identity))
    fused = _saved_bytes(lambda: bn_se_add_relu(c, bn, se, identity))
    unfused = _saved_bytes(lambda: _plain(c, copy.deepcopy(bn), se, identity))
    assert unfused >= plain + full  # the plain SE unit keeps the SE input u
    assert fused - plain < full // 16  # the fused one keeps only (N, C)-sized extras and parameters


def test_bn_se_add_relu_falls_back_for_other_blocks():
    bn, _ = _unit(2)
    c, identity = _inputs((2, 16, 4, 4))
    for se in (ECA(16), SqueezeExcite(16, reduction=4, squeeze="max")):
        assert not fusable(bn, se)
        torch.testing.assert_close(bn_se_add_relu(c, bn, se, identity), _plain(c, bn, se, identity))
    with pytest.raises(ValueError, match="identity must have the shape"):
        bn_se_add_relu(c, bn, SqueezeExcite(16, reduction=4), identity[:, :, :3])


def test_bn_se_add_relu_compiles_without_graph_breaks():
    bn, se = _unit(2)
    c, identity = _inputs((2, 16, 4, 4))

    def unit(c, identity):
        return bn_se_add_relu(c, bn, se, identity)

    bn_ref, se_ref = copy.deepcopy(bn), copy.deepcopy(se)
    compiled = torch.compile(unit, fullgraph=True, backend="aot_eager")  # fullgraph: a graph break raises
    out = compiled(c, identity)
    ref = _plain(c, bn_ref, se_ref, identity)
    torch.testing.assert_close(out, ref)
    for a, b in zip(_grads(out, [c, identity], [bn, se]), _grads(ref, [c, identity], [bn_ref, se_ref])):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


class _Tail(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn, self.se = _unit(2)

    def forward(self, c: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        return bn_se_add_relu(c, self.bn, self.se, identity)


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::torch.jit.TracerWarning")
def test_tracing_takes_the_plain_formula():
    tail = _Tail().eval()
    c, identity = torch.randn(2, 16, 4, 4), torch.randn(2, 16, 4, 4)
    want = _plain(c, tail.bn, tail.se, identity)
    proxy = torch.fx.Proxy(torch.fx.Graph().placeholder("c"))  # what FX symbolic tracing passes in
    assert fusable(tail.bn, tail.se, c) and not fusable(tail.bn, tail.se, proxy)
    traced = torch.jit.trace(tail, (c, identity))
    torch.testing.assert_close(traced(c, identity), want)
    assert "_BNScaleAddReLU" not in str(traced.graph)


def test_chunked_backward_matches_unchunked(monkeypatch):
    from senet.layers import se_ops

    bn, se = _unit(2)
    c, identity = _inputs((5, 16, 4, 4), channels_last=True)
    out = bn_se_add_relu(c, copy.deepcopy(bn), copy.deepcopy(se), identity)
    whole = _grads(out, [c, identity], [])
    assert se_ops._chunk_rows(c) >= 5  # the whole batch in one chunk
    monkeypatch.setattr(se_ops, "_CHUNK_BYTES", 16 * 4 * 4 * 4 * 2)  # two examples per chunk, the last one alone
    assert se_ops._chunk_rows(c) == 2
    out = bn_se_add_relu(c, copy.deepcopy(bn), copy.deepcopy(se), identity)
    for a, b in zip(_grads(out, [c, identity], []), whole):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("spatial_dims", [1, 3])
def test_conv_bn_se_add_relu_squeezes_the_conv_input(train, spatial_dims):
    from senet.layers import conv_nd
    from senet.layers.fused import conv_bn_se_add_relu

    bn, se = _unit(spatial_dims)
    conv = conv_nd(spatial_dims)(8, 16, 1, bias=spatial_dims == 1)
    mods = [conv, bn, se]
    refs = [copy.deepcopy(m) for m in mods]
    for m in (*mods, *refs):
        m.train(train)
    shape = (4, 8, 9) if spatial_dims == 1 else (3, 8, 3, 4, 5)
    h = torch.randn(shape, requires_grad=True)
    identity = torch.randn((shape[0], 16, *shape[2:]), requires_grad=True)
    out = conv_bn_se_add_relu(h, *mods, identity)
    ref = torch.relu(refs[2](refs[1](refs[0](h))) + identity)
    torch.testing.assert_close(out, ref)
    for a, b in zip(_grads(out, [h, identity], mods), _grads(ref, [h, identity], refs)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(conv_bn_se_add_relu(h, *mods, identity), ref)
    strided = conv_nd(spatial_dims)(8, 16, 3, padding=1)  # not 1x1: pools the norm output instead
    torch.testing.assert_close(
        conv_bn_se_add_relu(h, strided, bn.eval(), se, identity), torch.relu(se(bn(strided(h))) + identity)
    )


def test_conv_bn_se_add_relu_gradcheck_float64():
    from senet.layers import conv_nd
    from senet.layers.fused import conv_bn_se_add_relu

    conv = conv_nd(2)(3, 4, 1, bias=False).double()
    bn, _ = _unit(2, channels=4, dtype=torch.float64)
    se = SqueezeExcite(4, reduction=2).double()
    h = torch.randn(3, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    identity = torch.randn(3, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h, i: conv_bn_se_add_relu(h, conv, copy.deepcopy(bn), se, i), (h, identity))


def _eval_unit(spatial_dims, c_in, channels, *, conv_bias, affine, dtype=torch.float32):
    from senet.layers import conv_nd

    conv = conv_nd(spatial_dims)(c_in, channels, 1, bias=conv_bias).to(dtype)
    bn = norm_nd(spatial_dims)(channels, affine=affine).to(dtype)
    se = SqueezeExcite(channels, reduction=4).to(dtype)
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        if affine:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_()
    return conv.eval(), bn.eval(), se.eval()


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("positions", ["large", "small"])
@pytest.mark.parametrize("conv_bias,affine", [(False, True), (True, False)])
def test_inference_tail_equals_plain_formula(channels_last, spatial_dims, positions, conv_bias, affine, monkeypatch):
    """Eval mode without autograd: the squeeze through the 1x1 conv's input (many positions) or from the
    conv's output (few positions), NCHW or channels-last, any rank, the gates folded into the norm, equal
    to the plain unit."""
    import torch.nn.functional as F

    from senet.layers import fused
    from senet.layers.fused import conv_bn_se_add_relu

    if channels_last and spatial_dims == 1:
        pytest.skip("no channels-last format for 1-D")
    torch.manual_seed(0)
    conv, bn, se = _eval_unit(spatial_dims, 8, 32, conv_bias=conv_bias, affine=affine)
    side = {"large": {1: 400, 2: 20, 3: 8}, "small": {1: 2, 2: 1, 3: 1}}[positions][spatial_dims]
    h = torch.randn(3, 8, *([side] * spatial_dims)).relu()
    identity = torch.randn(3, 32, *([side] * spatial_dims))
    if channels_last:
        fmt = torch.channels_last if spatial_dims == 2 else torch.channels_last_3d
        h, identity = h.contiguous(memory_format=fmt), identity.contiguous(memory_format=fmt)
    want = torch.relu(se(bn(conv(h))) + identity)
    linear_calls, squeeze_calls = [], []
    real_linear, real_squeeze = F.linear, fused._conv_squeeze
    monkeypatch.setattr(F, "linear", lambda *a, **k: linear_calls.append(1) or real_linear(*a, **k))
    monkeypatch.setattr(fused, "_conv_squeeze", lambda *a: squeeze_calls.append(1) or real_squeeze(*a))
    with torch.no_grad():
        got = conv_bn_se_add_relu(h, conv, bn, se, identity)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)  # float32: the squeeze is reassociated
    assert len(linear_calls) == 2  # the two FC layers, once
    # the product W @ mean_p(h) where the squeeze goes through the conv's input
    assert len(squeeze_calls) == (1 if positions == "large" else 0)
    if channels_last and spatial_dims == 2:  # (a 1x1x1 Conv3d may return NCDHW for a channels-last input)
        assert got.is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("channels_last", [False, True])
def test_inference_bn_se_add_relu_keeps_its_input(channels_last):
    bn, se = _unit(2)
    bn.eval(), se.eval()
    c, identity = (t.detach() for t in _inputs((2, 16, 4, 5), channels_last=channels_last))
    c_before, identity_before = c.clone(), identity.clone()
    with torch.no_grad():
        out = bn_se_add_relu(c, bn, se, identity)
    torch.testing.assert_close(out, _plain(c, bn, se, identity))
    assert torch.equal(c, c_before) and torch.equal(identity, identity_before)


def test_inference_tail_under_bfloat16_autocast_and_half_model():
    from senet.layers.fused import conv_bn_se_add_relu

    conv, bn, se = _eval_unit(2, 8, 32, conv_bias=False, affine=True)
    h, identity = torch.randn(2, 8, 6, 6).relu(), torch.randn(2, 32, 6, 6)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = conv_bn_se_add_relu(h, conv, bn, se, identity)
        want = torch.relu(se(bn(conv(h))) + identity)
    assert got.dtype == want.dtype
    torch.testing.assert_close(got.float(), want.float(), rtol=0.05, atol=0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # with autograd, training-mode norm
        train = [copy.deepcopy(m).train() for m in (conv, bn, se)]
        got = conv_bn_se_add_relu(h.requires_grad_(), *train, identity)
    assert got.dtype == want.dtype and got.requires_grad
    mods = [copy.deepcopy(m).to(torch.bfloat16) for m in (conv, bn, se)]
    hb, ib = h.to(torch.bfloat16), identity.to(torch.bfloat16)
    with torch.no_grad():
        got = conv_bn_se_add_relu(hb, *mods, ib)
        want = torch.relu(mods[2](mods[1](mods[0](hb))) + ib)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want.float(), rtol=0.05, atol=0.1)


def test_eval_model_without_autograd_matches_plain_path():
    """senet's SE-ResNet-50 in eval mode: the inference tail against the unfused units, both layouts."""
    from senet.models import create_model

    torch.manual_seed(0)
    model = create_model("seresnet50", num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for fmt in (torch.contiguous_format, torch.channels_last):
            model, xf = model.to(memory_format=fmt), x.contiguous(memory_format=fmt)
            fused = model(xf)
            units = [m for m in model.modules() if getattr(m, "fused_tail", False)]
            for unit in units:
                unit.fused_tail = False
            plain = model(xf)
            for unit in units:
                unit.fused_tail = True
            torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-4)


def _plain_se(x: torch.Tensor, se: SqueezeExcite) -> torch.Tensor:
    z = x.mean(tuple(range(2, x.ndim)))  # (N, C)
    s = torch.sigmoid(se.fc2(torch.relu(se.fc1(z))))
    return x * s.view(*s.shape, *([1] * (x.ndim - 2)))


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_squeeze_excite_equals_plain_formula_with_gradients(spatial_dims, channels_last):
    torch.manual_seed(0)
    se = SqueezeExcite(16, reduction=4)
    shape = SHAPES[spatial_dims]
    x = (_channels_last_any_rank(shape) if channels_last else torch.randn(shape)).requires_grad_()
    out = se(x)
    assert type(out.grad_fn).__name__ == "_ReweightBackward"  # the module takes the lean path
    ref = _plain_se(x, se)
    torch.testing.assert_close(out, ref)
    assert out.stride() == ref.stride()
    got, want = _grads(out, [x], [se]), _grads(ref, [x], [se])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    assert got[0].stride() == want[0].stride()


def test_squeeze_excite_gradcheck_and_gradgradcheck_float64():
    se = SqueezeExcite(6, reduction=2).double()
    x = torch.randn(3, 6, 3, 4, dtype=torch.float64, requires_grad=True)
    weight = se.fc1.weight.detach().clone().requires_grad_()

    def block(x, fc1_weight):  # the parameter as an input, so that gradcheck differentiates through it
        se_f = copy.deepcopy(se)
        del se_f.fc1.weight
        se_f.fc1.weight = fc1_weight
        return squeeze_excite(x, se_f)

    assert torch.autograd.gradcheck(block, (x, weight))
    assert torch.autograd.gradgradcheck(block, (x, weight))  # create_graph: the recomputed plain formula


def test_squeeze_excite_retained_graph_frozen_parameters_and_input_without_grad():
    se = SqueezeExcite(16, reduction=4)
    x = torch.randn(3, 16, 5, 5, requires_grad=True)
    out = se(x)
    g = torch.randn_like(out)
    first = torch.autograd.grad(out, [x, *se.parameters()], g, retain_graph=True)
    second = torch.autograd.grad(out, [x, *se.parameters()], g)  # the excitation's graph is kept too
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    se.fc1.weight.requires_grad_(False)
    (dx, dw2) = torch.autograd.grad(se(x), [x, se.fc2.weight], g)
    torch.testing.assert_close(dw2, first[3])
    torch.testing.assert_close(dx, first[0])
    se.fc1.weight.requires_grad_(True)
    se(x.detach()).backward(g)  # only the parameters want gradients
    torch.testing.assert_close(se.fc2.bias.grad, first[4])


def test_squeeze_excite_gradients_through_the_gates_alone():
    """A loss on the gates (seen by a hook), with or without the output: the squeeze's gradient alone."""
    se, x = SqueezeExcite(16, reduction=4), torch.randn(3, 16, 5, 5, requires_grad=True)
    gates = []
    handle = se.gate.register_forward_hook(lambda module, args, out: gates.append(out))
    out, ref = se(x), _plain_se(x, se)
    handle.remove()
    want_gates = torch.sigmoid(se.fc2(torch.relu(se.fc1(x.mean((2, 3))))))
    (got,) = torch.autograd.grad(gates[0].square().sum(), x, retain_graph=True)
    (want,) = torch.autograd.grad(want_gates.square().sum(), x, retain_graph=True)
    torch.testing.assert_close(got, want)
    (got,) = torch.autograd.grad(out.sum() + gates[0].square().sum(), x)
    (want,) = torch.autograd.grad(ref.sum() + want_gates.square().sum(), x)
    torch.testing.assert_close(got, want)


def test_squeeze_excite_hooks_autocast_compile_and_torch_func():
    se = SqueezeExcite(16, reduction=4)
    x = torch.randn(2, 16, 5, 5, requires_grad=True)
    seen = []
    handle = se.gate.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    se(x)
    handle.remove()
    assert seen == [(2, 16, 1, 1)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, want = se(x), _plain_se(x, se)
    assert got.dtype == want.dtype
    for a, b in zip(_grads(got, [x], [se]), _grads(want, [x], [se])):
        torch.testing.assert_close(a, b)
    compiled = torch.compile(se, fullgraph=True, backend="aot_eager")  # fullgraph: a graph break raises
    for a, b in zip(_grads(compiled(x), [x], [se]), _grads(_plain_se(x, se), [x], [se])):
        torch.testing.assert_close(a, b)
    params = dict(se.named_parameters())
    func_grads = torch.func.grad(lambda p: torch.func.functional_call(se, p, (x,)).square().sum())(params)
    (want,) = torch.autograd.grad(_plain_se(x, se).square().sum(), se.fc1.weight)
    torch.testing.assert_close(func_grads["fc1.weight"], want)
    tail = _Tail().eval()  # the residual tail under torch.func takes the plain formula too
    c, identity = torch.randn(2, 16, 4, 4), torch.randn(2, 16, 4, 4)
    tail_params = dict(tail.named_parameters())
    got = torch.func.grad(lambda p: torch.func.functional_call(tail, p, (c, identity)).sum())(tail_params)
    (want,) = torch.autograd.grad(_plain(c, copy.deepcopy(tail.bn), tail.se, identity).sum(), tail.se.fc1.weight)
    torch.testing.assert_close(got["se.fc1.weight"], want, rtol=1e-4, atol=1e-5)


def test_squeeze_excite_rejects_other_blocks_and_bad_input():
    with pytest.raises(ValueError, match="squeeze='avg'"):
        squeeze_excite(torch.randn(2, 16, 4, 4), SqueezeExcite(16, reduction=4, squeeze="max"))
    with pytest.raises(ValueError, match="channels=16"):
        squeeze_excite(torch.randn(2, 8, 4, 4), SqueezeExcite(16, reduction=4))
    with pytest.raises(TypeError, match="floating-point"):
        SqueezeExcite(16, reduction=4)(torch.ones(2, 16, 4, 4, dtype=torch.long))


@pytest.mark.parametrize("train", [True, False])
def test_fused_tails_are_twice_differentiable(train):
    """create_graph=True (gradient penalties): the tails' backwards are differentiable again, with the
    norm's output recomputed with its history (batch statistics included)."""
    from senet.layers import conv_nd
    from senet.layers.fused import conv_bn_se_add_relu

    bn, _ = _unit(2, channels=4, dtype=torch.float64)
    se = SqueezeExcite(4, reduction=2).double()
    conv = conv_nd(2)(3, 4, 1, bias=False).double()
    bn.train(train), se.train(train)
    c = torch.randn(3, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(3, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    identity = torch.randn(3, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    s = torch.rand(3, 4, 1, 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda c, i: bn_se_add_relu(c, copy.deepcopy(bn), se, i), (c, identity))
    assert torch.autograd.gradgradcheck(
        lambda h, i: conv_bn_se_add_relu(h, conv, copy.deepcopy(bn), se, i), (h, identity)
    )
    assert torch.autograd.gradgradcheck(scale_add_relu, (c, s, identity))


class _GatesIgnoringInput(SqueezeExcite):
    """An SE block whose excitation does not use z: the squeeze's backward never runs."""

    def excite(self, z: torch.Tensor, spatial_dims: int) -> torch.Tensor:
        v = torch.sigmoid(self.fc2.bias).expand(z.shape[0], -1)  # (N, C), from the parameters only
        return v.reshape(*v.shape, *([1] * spatial_dims))


def test_lean_backward_with_an_excitation_that_ignores_the_squeeze():
    """The reweighting hands its input gradient to the squeeze's backward only where the gates were
    computed from the squeeze; otherwise it returns it itself (nothing is lost)."""
    se = _GatesIgnoringInput(16, reduction=4)
    x = torch.randn(3, 16, 4, 4, requires_grad=True)
    g = torch.randn(3, 16, 4, 4)
    (got,) = torch.autograd.grad(se(x), x, g)
    torch.testing.assert_close(got, g * torch.sigmoid(se.fc2.bias).view(1, -1, 1, 1))
    bn, _ = _unit(2)
    c, identity = _inputs((3, 16, 4, 4))
    out, ref = bn_se_add_relu(c, copy.deepcopy(bn), se, identity), _plain(c, copy.deepcopy(bn), se, identity)
    for a, b in zip(_grads(out, [c, identity, se.fc2.bias], []), _grads(ref, [c, identity, se.fc2.bias], [])):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_squeeze_excite_and_fused_tail_under_activation_checkpointing():
    """Non-reentrant checkpointing recomputes the forward in backward; the hand-over between the two
    Functions belongs to the original graph, so the gradients are those of the plain formula."""
    from torch.utils.checkpoint import checkpoint

    se = SqueezeExcite(16, reduction=4)
    x = torch.randn(3, 16, 5, 5, requires_grad=True)
    got = _grads(checkpoint(se, x, use_reentrant=False), [x], [se])
    want = _grads(_plain_se(x, se), [x], [se])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    bn, se = _unit(2)
    c, identity = _inputs((3, 16, 4, 4))
    bn_ref = copy.deepcopy(bn)
    out = checkpoint(bn_se_add_relu, c, bn, se, identity, use_reentrant=False)
    ref = _plain(c, bn_ref, se, identity)
    for a, b in zip(_grads(out, [c, identity], [se]), _grads(ref, [c, identity], [se])):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def _aten_calls(fn, *args):
    """The aten ops ``fn(*args)`` dispatches, as ``(name, args)`` (names like ``"_add_relu_.Tensor"``), and its result."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.calls.append((func.__name__, args))
            return func(*args, **(kwargs or {}))

    with Record() as record:
        out = fn(*args)
    return record.calls, out


def _aten_ops(fn, *args):
    """The names of the aten ops ``fn(*args)`` dispatches, and its result."""
    calls, out = _aten_calls(fn, *args)
    return [name for name, _ in calls], out


def _norm_input_gradients(calls) -> int:
    """How many of the recorded calls are batch norm's backward computing an input gradient (torch's norm
    backward; the fused tail's backward calls the kernel for its two sums only, output mask [F, T, T])."""
    return sum(name == "native_batch_norm_backward.default" and args[-1][0] for name, args in calls)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("layouts", [("nchw", "nchw"), ("cl", "cl"), ("cl", "nchw")])
def test_add_relu_equals_add_then_relu(dtype, layouts):
    from senet.layers.se_ops import add_relu_

    torch.manual_seed(0)
    fmt = {"nchw": torch.contiguous_format, "cl": torch.channels_last}
    x, y = (torch.randn(2, 8, 5, 6, dtype=dtype).contiguous(memory_format=fmt[f]) for f in layouts)
    want = torch.relu(x + y)
    names, out = _aten_ops(add_relu_, x, y)
    assert out is x and torch.equal(out, want)  # in place, and exactly the two ops' values
    one_pass = dtype in (torch.float32, torch.float64)  # torch's kernel has no bfloat16/half (it would raise)
    assert ("_add_relu_.Tensor" in names) == one_pass, names


def test_add_relu_with_autograd_takes_the_plain_ops():
    from senet.layers.se_ops import add_relu_

    a = torch.randn(2, 4, 3, 3, requires_grad=True)
    y = torch.randn(2, 4, 3, 3)
    names, out = _aten_ops(add_relu_, a * 2, y)  # no derivative for the fused kernel: plain ops
    assert "_add_relu_.Tensor" not in names
    out.sum().backward()
    torch.testing.assert_close(a.grad, 2 * (2 * a.detach() + y > 0).float())
    with torch.no_grad():
        names, _ = _aten_ops(add_relu_, a * 2, y)
    assert "_add_relu_.Tensor" in names
    compiled = torch.compile(lambda u, v: add_relu_(u * 2, v), fullgraph=True)
    torch.testing.assert_close(compiled(a.detach(), y), torch.relu(2 * a.detach() + y))


@pytest.mark.parametrize("arch", ["resnet50", "seresnet50"])
def test_eval_units_add_and_relu_in_one_pass(arch):
    """In eval mode without autograd every residual unit ends in one ``_add_relu_`` (plain and SE units,
    the latter with the gates folded into the norm); values equal the units' plain path (forward hooks on
    the final ReLU force it)."""
    from senet.models import create_model

    torch.manual_seed(0)
    model = create_model(arch, num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    units = [m for m in model.modules() if hasattr(m, "final_act")]
    with torch.no_grad():
        names, fused = _aten_ops(model, x)
        assert names.count("_add_relu_.Tensor") == len(units) == 16
        handles = [unit.final_act.register_forward_hook(lambda *args: None) for unit in units]
        names, plain = _aten_ops(model, x)
        for handle in handles:
            handle.remove()
    assert names.count("_add_relu_.Tensor") == (0 if arch == "resnet50" else 16)  # SE tails: no hook on act3
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-4)
    model.train()
    names, out = _aten_ops(model, x)
    # training with autograd: the plain units take the plain ops (the kernel has no derivative); the SE tails
    # use it inside their own autograd Function, whose backward is its own (gradients: the tests below)
    assert names.count("_add_relu_.Tensor") == (0 if arch == "resnet50" else 16) and out.requires_grad
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_training_tail_forward_does_not_write_the_norm_output(channels_last):
    """With autograd the fused tail's forward takes the norm's statistics (one pass over c) and writes
    ``relu(s * bn(c) + identity)`` from c (the gated norm, then the addition and ReLU): no training-mode norm
    writes ``bn(c)``, and nothing full-size stands for it in the graph."""
    from senet.layers.fused import conv_bn_se_add_relu

    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    conv, bn, se = nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16), SqueezeExcite(16, reduction=4)
    h = torch.randn(3, 8, 5, 6).contiguous(memory_format=fmt).requires_grad_()
    identity = torch.randn(3, 16, 5, 6).contiguous(memory_format=fmt)
    calls, out = _aten_calls(lambda: conv_bn_se_add_relu(h, conv, bn, se, identity))
    names = [name for name, _ in calls]
    assert names.count("batch_norm_update_stats.default") == 1 and names.count("_add_relu_.Tensor") == 1
    assert not any(name == "native_batch_norm.default" and args[5] for name, args in calls)  # args[5]: training
    assert out.is_contiguous(memory_format=fmt)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        conv_bn_se_add_relu(h, conv, bn, se, identity)
    full = [t for t in saved if t.numel() == out.numel()]  # h has half the channels
    assert len({t.untyped_storage().data_ptr() for t in full}) == 2  # c (the norm's input), out (the ReLU's)


@pytest.mark.parametrize(
    "norm_kwargs,train",
    [
        ({}, True),
        ({}, False),  # running statistics with autograd (a frozen norm being fine-tuned through)
        ({"affine": False}, True),
        ({"momentum": None}, True),  # cumulative moving average
        ({"track_running_stats": False}, True),
        ({"track_running_stats": False}, False),  # batch statistics in eval mode too
    ],
)
@pytest.mark.parametrize("route", ["bn", "conv"])
def test_fused_norm_backward_matches_torch(norm_kwargs, train, route):
    """The tail's one-pass norm backward (no input gradient by torch's norm backward) against the plain unit:
    input, shortcut and parameter gradients and the running statistics, for every batch-norm setting."""
    from senet.layers.fused import conv_bn_se_add_relu

    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 1, bias=False)
    bn = nn.BatchNorm2d(16, **norm_kwargs)
    se = SqueezeExcite(16, reduction=4)
    if bn.weight is not None:
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5), bn.bias.normal_()
    if bn.running_mean is not None:
        bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2.0)
    ref = [copy.deepcopy(m) for m in (conv, bn, se)]
    for m in (conv, bn, se, *ref):
        m.train(train)
    h = (torch.randn(3, 8, 5, 6) + 0.7).requires_grad_()
    identity = torch.randn(3, 16, 5, 6, requires_grad=True)
    if route == "conv":
        fused = lambda: conv_bn_se_add_relu(h, conv, bn, se, identity)  # noqa: E731
    else:
        fused = lambda: bn_se_add_relu(conv(h), bn, se, identity)  # noqa: E731
    out = fused()
    want = torch.relu(ref[2](ref[1](ref[0](h))) + identity)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
    for name, buf in ref[1].named_buffers():
        assert torch.equal(getattr(bn, name), buf), name
    inputs = [h, identity, *(p for m in (conv, bn, se) for p in m.parameters())]
    ref_inputs = [h, identity, *(p for m in ref for p in m.parameters())]
    for seed in (1, 2):  # twice through the retained graph: the link starts clean
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
        calls, got = _aten_calls(lambda: torch.autograd.grad(out, inputs, g, retain_graph=True))
        assert _norm_input_gradients(calls) == 0, "the fused norm backward did not run"
        expected = torch.autograd.grad(want, ref_inputs, g, retain_graph=True)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_centred_sums_match_the_float64_formula(dtype):
    from senet.layers.fused import _centred_sums, _sums_dtype

    torch.manual_seed(0)
    g, x, mean = torch.randn(3, 5, 4, 6), torch.randn(3, 5, 4, 6) + 50.0, torch.randn(5) + 50.0
    g, x = g.to(dtype), x.to(dtype)  # the sums of these values, exactly
    sums = _sums_dtype(x)
    assert sums == (torch.float64 if dtype == torch.float64 else torch.float32)
    dot, g_sum = _centred_sums(g, x, mean.to(sums).repeat(4), torch.ones(20, dtype=sums))  # room for 4 examples
    assert dot.dtype == g_sum.dtype == sums and dot.shape == g_sum.shape == (15,)
    want = (g.double() * (x.double() - mean.to(sums).double().view(1, -1, 1, 1))).sum((2, 3))
    torch.testing.assert_close(dot.view(3, 5).double(), want, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(g_sum.view(3, 5).double(), g.double().sum((2, 3)), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("route", ["bn", "conv"])
def test_fused_tail_gradients_keep_their_precision_for_a_channel_far_from_zero(route, channels_last):
    """Channels whose mean is 100 times their spread: the fused tail's float32 gradients are as close to the
    float64 ones as the plain formula's (a sum of ``g' * c`` less ``mean * sum g'`` would lose digits)."""
    from senet.layers.fused import conv_bn_se_add_relu

    torch.manual_seed(0)
    conv, bn, se = nn.Conv2d(8, 32, 1, bias=False), nn.BatchNorm2d(32), SqueezeExcite(32, reduction=4)
    with torch.no_grad():
        conv.weight.abs_()  # a positive input gives every output channel a mean far from zero
        bn.weight.uniform_(0.5, 1.5), bn.bias.normal_()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    h0 = (100.0 + torch.randn(4, 8, 8, 8, dtype=torch.float64)).contiguous(memory_format=fmt)
    identity0, grad = torch.randn(4, 32, 8, 8, dtype=torch.float64), torch.randn(4, 32, 8, 8, dtype=torch.float64)

    def gradients(dtype, fused):
        mods = [copy.deepcopy(m).to(dtype).to(memory_format=fmt) for m in (conv, bn, se)]
        h, identity = (t.to(dtype).requires_grad_() for t in (h0, identity0))
        if not fused:
            out = torch.relu(mods[2](mods[1](mods[0](h))) + identity)
        elif route == "conv":
            out = conv_bn_se_add_relu(h, *mods, identity)
        else:
            out = bn_se_add_relu(mods[0](h), *mods[1:], identity)
        params = [p for m in mods for p in m.parameters()]
        return [t.double() for t in torch.autograd.grad(out, [h, *params], grad.to(dtype))]

    exact = gradients(torch.float64, fused=False)
    plain, fused = gradients(torch.float32, fused=False), gradients(torch.float32, fused=True)
    for want, a, b in zip(exact, fused, plain):
        scale = want.abs().max()
        assert (a - want).abs().max() / scale <= 3 * (b - want).abs().max() / scale + 1e-6


def test_fused_norm_backward_with_frozen_norm_and_partial_gradients():
    """A frozen norm (no parameter gradients), and gradients asked for the shortcut alone, then for all."""
    torch.manual_seed(0)
    bn, se = _unit(2)
    bn.weight.requires_grad_(False), bn.bias.requires_grad_(False)
    bn_ref, se_ref = copy.deepcopy(bn), copy.deepcopy(se)
    c, identity = _inputs((3, 16, 4, 5))
    out = bn_se_add_relu(c, bn, se, identity)
    g = torch.randn_like(out)
    (only_identity,) = torch.autograd.grad(out, identity, g, retain_graph=True)
    torch.testing.assert_close(only_identity, g * (out > 0))
    got = torch.autograd.grad(out, [c, identity, *se.parameters()], g)
    ref = _plain(c, bn_ref, se_ref, identity)
    want = torch.autograd.grad(ref, [c, identity, *se_ref.parameters()], g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert bn.weight.grad is None and bn.bias.grad is None


def test_fused_norm_backward_falls_back_to_torch_where_it_must():
    """bfloat16 (the norm's kernel accumulates in float32) and an excitation that ignores the squeeze keep
    torch's norm backward."""
    torch.manual_seed(0)
    bn, se = _unit(2)
    c, identity = _inputs((2, 16, 4, 4))
    mods = [copy.deepcopy(m).to(torch.bfloat16) for m in (bn, se)]
    cb, ib = (t.detach().to(torch.bfloat16).requires_grad_() for t in (c, identity))
    out = bn_se_add_relu(cb, *mods, ib)
    calls, _ = _aten_calls(lambda: out.sum().backward())
    assert _norm_input_gradients(calls) == 1
    assert cb.grad is not None and cb.grad.dtype == torch.bfloat16


def _full_size_touches(fn, x: torch.Tensor, numel: int) -> int:
    """How many times the aten ops of ``fn(x)`` read or write a tensor of ``numel`` elements (views and
    allocations excluded, ``new_*`` ones too, whose tensor argument only gives the dtype and device; an
    in-place op counts its operand as read and its result as written)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.touches = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if not func.is_view and not func.__name__.startswith(("empty", "new_")):
                results = out if isinstance(out, (tuple, list)) else (out,)
                tensors = [*args, *(kwargs or {}).values(), *results]
                self.touches += sum(isinstance(t, torch.Tensor) and t.numel() == numel for t in tensors)
            return out

    with Count() as count:
        fn(x)
    return count.touches


def test_eval_se_units_make_the_plain_units_full_size_passes():
    """Eval mode without autograd: each SE bottleneck reads and writes full-size tensors exactly as often as
    the plain one (the squeeze goes through the 1x1 conv's smaller input, the gates ride on the norm), plus
    one read of the conv's output where the squeeze pools it instead (few positions)."""
    from senet.layers.fused import _squeeze_through_conv
    from senet.models import create_model

    torch.manual_seed(0)
    se_model, plain_model = (create_model(arch, num_classes=10).eval() for arch in ("seresnet50", "resnet50"))
    inputs = {}
    handles = [
        unit.register_forward_pre_hook(lambda module, args, name=name: inputs.__setitem__(name, args[0]))
        for name, unit in se_model.named_modules()
        if hasattr(unit, "final_act")
    ]
    with torch.no_grad():
        se_model(torch.randn(2, 3, 128, 128))  # stage maps 32x32 to 4x4: both squeeze routes are taken
    for handle in handles:
        handle.remove()
    routes = set()
    with torch.no_grad():
        for name, x in inputs.items():
            se_unit, plain_unit = se_model.get_submodule(name), plain_model.get_submodule(name)
            out = se_unit(x)
            h = se_unit.branch_body(x)
            through_conv = _squeeze_through_conv(h, se_unit.conv3)
            routes.add(through_conv)
            se_touches = _full_size_touches(se_unit, x, out.numel())
            plain_touches = _full_size_touches(plain_unit, x, out.numel())
            assert se_touches == plain_touches + (0 if through_conv else 1), name
    assert routes == {True, False}


def _unit_outputs_and_tail_conv_outputs(model: nn.Module, x: torch.Tensor) -> list[tuple[int, int]]:
    """(data_ptr of each residual unit's output, data_ptr of its tail convolution's output) for ``model(x)``."""
    pairs, handles = [], []
    for unit in model.modules():
        if hasattr(unit, "tail_modules"):
            conv = unit.tail_modules()[0]
            record = {}
            handles.append(conv.register_forward_hook(lambda m, a, out, r=record: r.__setitem__("conv", out.data_ptr())))
            handles.append(unit.register_forward_hook(lambda m, a, out, r=record: pairs.append((out.data_ptr(), r["conv"]))))
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return pairs


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("arch", ["resnet50", "seresnet50", "resnet18", "seresnet18", "resnet20_cifar"])
def test_eval_units_write_their_tail_over_the_last_convolutions_output(arch, channels_last):
    """Eval without autograd, plain and SE units alike: the norm (with the gates) and the residual sum are
    written over the tail convolution's fresh output, so no unit allocates a full-size tensor for its tail;
    the values are those of the module-by-module formula (hooks on the tail norms switch the fused
    tails off), bit for bit for the plain NCHW units."""
    from senet.models import create_model

    torch.manual_seed(0)
    model = create_model(arch, num_classes=10).eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):  # statistics and affine parameters away from 0 and 1
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    size = 32 if arch.endswith("cifar") else 64
    x = torch.randn(2, 3, size, size)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    pairs = _unit_outputs_and_tail_conv_outputs(model, x)
    assert pairs and all(out == conv for out, conv in pairs)
    with torch.no_grad():
        fused = model(x)
        handles = [unit.tail_modules()[1].register_forward_hook(lambda *a: None)
                   for unit in model.modules() if hasattr(unit, "tail_modules")]
        reference = model(x)
    for handle in handles:
        handle.remove()
    if arch.startswith("resnet") and not channels_last:
        assert torch.equal(fused, reference)
    else:
        torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)


def test_conv_bn_add_relu_trains_as_the_plain_formula_and_falls_back_where_it_must():
    """With autograd: the plain formula's values and gradients (the norm's module runs, its running
    statistics update). Without: the result is written over the convolution's output, except where the
    norm's kernel cannot write it (identity of another dtype) or the norm is not a batch norm with running
    statistics: then the module's fresh output takes the sum in place."""
    from senet.layers.fused import conv_bn_add_relu

    torch.manual_seed(0)
    conv, bn = nn.Conv2d(4, 8, 1, bias=False), nn.BatchNorm2d(8)
    h, identity = torch.randn(2, 4, 5, 5, requires_grad=True), torch.randn(2, 8, 5, 5, requires_grad=True)
    ref_conv, ref_bn = copy.deepcopy(conv), copy.deepcopy(bn)
    out = conv_bn_add_relu(h, conv, bn, identity)
    h2, id2 = h.detach().clone().requires_grad_(), identity.detach().clone().requires_grad_()
    ref = torch.relu(ref_bn(ref_conv(h2)) + id2)
    torch.testing.assert_close(out, ref)
    out.square().sum().backward()
    ref.square().sum().backward()
    torch.testing.assert_close(h.grad, h2.grad)
    torch.testing.assert_close(identity.grad, id2.grad)
    torch.testing.assert_close(conv.weight.grad, ref_conv.weight.grad)
    torch.testing.assert_close(bn.running_var, ref_bn.running_var)

    bn.eval()
    outputs = {}
    conv.register_forward_hook(lambda m, a, out: outputs.__setitem__("conv", out))
    with torch.no_grad():
        out = conv_bn_add_relu(h, conv, bn, identity)
        assert out.data_ptr() == outputs["conv"].data_ptr()
        assert torch.equal(out, torch.relu(bn(conv(h)) + identity))
        out = conv_bn_add_relu(h, conv, bn, identity.double())  # added into the norm's fresh output, as timm does
        assert out.dtype == torch.float32 and out.data_ptr() != outputs["conv"].data_ptr()
        torch.testing.assert_close(out, torch.relu(bn(conv(h)) + identity))
        group_norm = nn.GroupNorm(2, 8)
        out = conv_bn_add_relu(h, conv, group_norm, identity)
        assert torch.equal(out, torch.relu(group_norm(conv(h)) + identity))


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_inference_norm_gates_the_norm_and_overwrites_only_where_allowed(channels_last):
    """``s * bn(c)`` in one pass, ``bn(c)`` bit for bit with gates of one; written over ``c`` only when asked,
    untracked by autograd and of the norm's dtype."""
    from senet.layers.fused import _inference_norm

    torch.manual_seed(0)
    bn = nn.BatchNorm2d(6).eval()
    bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-1, 1)
    c, _ = _inputs((2, 6, 4, 5), channels_last=channels_last)
    c = c.detach()
    gates = torch.rand(2, 6, 1, 1)
    with torch.no_grad():
        expected = gates * bn(c)
        kept = c.clone()
        out = _inference_norm(kept, bn, gates)
        assert out.data_ptr() != kept.data_ptr() and torch.equal(kept, c)
        torch.testing.assert_close(out, expected)
        written = c.clone()
        assert _inference_norm(written, bn, gates, overwrite=True).data_ptr() == written.data_ptr()
        torch.testing.assert_close(written, expected)
        assert torch.equal(_inference_norm(c.clone(), bn, torch.ones(2, 6, 1, 1), overwrite=True), bn(c))
        assert torch.equal(_inference_norm(c.clone(), bn), bn(c))
        half = c.bfloat16()  # the norm's parameters are float32: computed as bn(c) does, never written over
        out = _inference_norm(half, bn, gates.bfloat16(), overwrite=True)
        assert out.data_ptr() != half.data_ptr() and out.dtype == torch.bfloat16
        torch.testing.assert_close(out, (gates.bfloat16() * bn(half)), rtol=0.02, atol=0.02)
    tracked = c.clone().requires_grad_()
    out = _inference_norm(tracked, bn, gates, overwrite=True)  # autograd tracks it: never overwritten
    assert out.data_ptr() != tracked.data_ptr()
    torch.testing.assert_close(out, expected)


# ---------------------------------------------------------------- random configurations, float64


@settings(max_examples=30, deadline=None)
@given(
    spatial_dims=st.integers(1, 3),
    batch=st.integers(1, 3),
    side=st.integers(1, 5),
    channels_last=st.booleans(),
    strided=st.booleans(),
    train=st.booleans(),
    grad=st.booleans(),
    route=st.sampled_from(["bn", "conv"]),
    affine=st.booleans(),
    offset=st.sampled_from([0.0, 30.0]),
)
def test_fused_tails_equal_the_plain_formula_for_random_configurations(
    spatial_dims, batch, side, channels_last, strided, train, grad, route, affine, offset
):
    """Any rank, batch, map size (one position too), layout, strided input, training or eval, with autograd
    or without, both routes, a norm with or without affine parameters, channels near or far from zero:
    in float64 the fused tails give the plain formula's values, gradients and running statistics."""
    from senet.layers.fused import conv_bn_se_add_relu

    shape = (batch, 4, *([side] * spatial_dims))
    if train and batch * side**spatial_dims == 1:
        return  # batch norm refuses to train on one value per channel, fused or not
    torch.manual_seed(0)
    conv = conv_nd(spatial_dims)(4, 16, 1, bias=False).double()
    bn = norm_nd(spatial_dims)(16, affine=affine).double()
    se = SqueezeExcite(16, reduction=4).double()
    with torch.no_grad():
        if affine:
            bn.weight.uniform_(0.5, 1.5), bn.bias.normal_()
        bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2.0)
    h = torch.randn(batch, 4, *([2 * side] * spatial_dims), dtype=torch.float64) + offset
    h = h[(slice(None), slice(None)) + (slice(None, None, 2),) * spatial_dims] if strided else h[(..., *(slice(0, side),) * spatial_dims)]
    if channels_last and spatial_dims > 1:
        h = h.contiguous(memory_format=torch.channels_last if spatial_dims == 2 else torch.channels_last_3d)
    identity = torch.randn(16, dtype=torch.float64).view(1, -1, *([1] * spatial_dims)).expand(batch, 16, *([side] * spatial_dims)).contiguous()
    ref = [copy.deepcopy(m).train(train) for m in (conv, bn, se)]
    mods = [m.train(train) for m in (conv, bn, se)]
    with torch.set_grad_enabled(grad):
        h1, h2 = (h.clone().requires_grad_(grad) for _ in range(2))
        i1, i2 = (identity.clone().requires_grad_(grad) for _ in range(2))
        if route == "conv":
            out = conv_bn_se_add_relu(h1, *mods, i1)
        else:
            out = bn_se_add_relu(mods[0](h1), *mods[1:], i1)
        want = torch.relu(ref[2](ref[1](ref[0](h2))) + i2)
    assert out.shape == want.shape == shape[:1] + (16,) + shape[2:]
    torch.testing.assert_close(out, want, rtol=1e-9, atol=1e-9)
    for got, expected in zip(mods[1].buffers(), ref[1].buffers()):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    if grad:
        g = torch.randn(out.shape, dtype=torch.float64)
        params = [p for m in mods for p in m.parameters()]
        ref_params = [p for m in ref for p in m.parameters()]
        got = torch.autograd.grad(out, [h1, i1, *params], g)
        expected = torch.autograd.grad(want, [h2, i2, *ref_params], g)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9)
