"""senet.layers.triton_ops: the Triton kernels against the eager formulas, and senet's ops routing through them.

No GPU here: the kernel tests run in Triton's interpreter, in a subprocess of
``test_kernels_in_triton_interpreter`` (``TRITON_INTERPRET=1`` must be set before Triton is imported),
which runs this file again with that environment; outside it they are skipped. On a machine with a CUDA
device the same checks run on the GPU, compiled (``test_gpu_*``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn as nn

from senet.layers import SqueezeExcite, triton_ops
from senet.layers.fused import bn_se_add_relu, conv_bn_add_relu, conv_bn_se_add_relu, scale_add_relu
from senet.layers.se_ops import add_relu_, squeeze_mean
from senet.models import create_model

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1" and triton_ops.get_mode() == "interpret"
interpreted = pytest.mark.skipif(not INTERPRETED, reason="runs in test_kernels_in_triton_interpreter's subprocess")
needs_triton = pytest.mark.skipif(not triton_ops.available(), reason="Triton is not installed")
on_gpu = pytest.mark.skipif(
    not (torch.cuda.is_available() and triton_ops.available()), reason="needs a CUDA device and Triton"
)


def _as_layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``x`` with the same values, stored NCHW-contiguous or channels-last (channels of stride 1), any rank."""
    if not channels_last:
        return x.contiguous()
    dims = list(range(2, x.ndim))
    return x.permute(0, *dims, 1).contiguous().permute(0, x.ndim - 1, *range(1, x.ndim - 1))  # (N, *S, C) stored


SHAPES = [(3, 17, 33), (2, 6, 7, 5), (2, 8, 3, 4, 5), (2, 300, 1, 1)]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


# --- always: the mode, the routing decision, the errors ---------------------------------------------------


def test_mode_is_validated_and_restored():
    start = triton_ops.get_mode()
    with pytest.raises(ValueError, match="mode must be one of"):
        triton_ops.set_mode("gpu")
    if os.environ.get("TRITON_INTERPRET") != "1":
        with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
            triton_ops.set_mode("interpret")
    with triton_ops.mode("off"):
        assert triton_ops.get_mode() == "off"
        assert not triton_ops.applies(torch.randn(2, 3, 4, 4, device="cuda" if torch.cuda.is_available() else "cpu"))
    assert triton_ops.get_mode() == start


def test_environment_variable_sets_the_mode_and_a_bad_value_warns(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    for value, expected in (("0", "off"), ("off", "off"), ("1", "auto"), ("", "auto"), ("nonsense", "auto"), ("interpret", "auto")):
        monkeypatch.setenv("SENET_TRITON", value)
        if value in ("nonsense", "interpret"):  # unknown, or the interpreter without TRITON_INTERPRET=1
            with pytest.warns(UserWarning, match="SENET_TRITON must be one of"):
                assert triton_ops._mode_from_env() == expected, value
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                assert triton_ops._mode_from_env() == expected, value
    # the module reads it once, at import
    code = "from senet.layers import triton_ops; print(triton_ops.get_mode())"
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "PYTHONWARNINGS")}
    done = subprocess.run([sys.executable, "-c", code], env={**env, "SENET_TRITON": "0"}, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "off", done.stderr


@pytest.mark.skipif(INTERPRETED, reason="the interpreter run routes CPU tensors to the kernels")
def test_cpu_tensors_keep_the_eager_path_by_default():
    x = torch.randn(2, 4, 5, 5)
    assert not triton_ops.applies(x)
    assert not triton_ops.applies(x, x.clone())


def test_public_functions_reject_bad_input():
    x = torch.randn(2, 4, 5, 5)
    with pytest.raises(ValueError, match=r"x must be a tensor \(N, C, \*spatial\)"):
        triton_ops.squeeze_mean(torch.randn(4, 5))
    with pytest.raises(TypeError, match="x must be float16, bfloat16 or float32, got torch.int64"):
        triton_ops.squeeze_mean(torch.ones(2, 4, 5, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="x must be NCHW-contiguous or channels-last"):
        triton_ops.squeeze_mean(x.transpose(2, 3))
    with pytest.raises(ValueError, match="identity must have the shape and dtype of x"):
        triton_ops.affine_add_relu(x, torch.randn(2, 4, 5, 4))
    with pytest.raises(ValueError, match="identity must have the strides and device of x"):
        triton_ops.affine_add_relu(x, _as_layout(torch.randn(2, 4, 5, 5), True))
    with pytest.raises(ValueError, match=r"scale must have shape \(C,\) or \(N or 1, C, 1, ..., 1\)"):
        triton_ops.affine_add_relu(x, x.clone(), scale=torch.rand(2, 4, 5, 1))
    with pytest.raises(TypeError, match="identity must be a tensor, got NoneType"):
        triton_ops.affine_add_relu(x, None)
    with pytest.raises(TypeError, match="shift must be a tensor, got float"):
        triton_ops.affine_add_relu(x, x.clone(), shift=0.5)


@pytest.mark.skipif(INTERPRETED, reason="this test starts the interpreter run")
@needs_triton
def test_kernels_in_triton_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "SENET_TRITON": "interpret", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "pytest", __file__, "-q", "-x", "-p", "no:cacheprovider", "-m", "not slow"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


# --- the kernels, in Triton's interpreter (or on a GPU below) ---------------------------------------------


def test_squeeze_splits_long_maps_of_few_programs():
    # a channels-last map of 64 channels would be one program per example; long maps are split in chunks
    assert triton_ops._squeeze_split(8, 56 * 56, 16) == (49, 64)  # batch 8, C = 64 channels-last: 392 programs
    assert triton_ops._squeeze_split(8 * 256, 49, 128) == (1, 128)  # enough programs already
    assert triton_ops._squeeze_split(2, 900, 128) == (2, 512)  # chunks of whole tiles, at least four each
    for programs, positions, block in ((1, 1, 16), (3, 1000, 16), (5, 12345, 128), (1024, 10**6, 16)):
        split, chunk = triton_ops._squeeze_split(programs, positions, block)
        assert chunk % block == 0 and (split - 1) * chunk < positions <= split * chunk  # no empty chunk


def _check_squeeze(device: str) -> None:
    torch.manual_seed(0)
    for shape in SHAPES + [(2, 8, 30, 30), (1, 70, 9, 100)]:  # the last two are split in chunks
        for channels_last in (False, True):
            for dtype in DTYPES:
                x = _as_layout(torch.randn(shape, device=device).to(dtype), channels_last)
                got = triton_ops.squeeze_mean(x)
                assert got.shape == shape[:2] and got.dtype == dtype
                expected = x.float().mean(tuple(range(2, x.ndim))).to(dtype)  # summed in float32, rounded once
                torch.testing.assert_close(got, expected, msg=f"{shape} {dtype} channels_last={channels_last}")


def _check_affine_add_relu(device: str) -> None:
    torch.manual_seed(0)
    for shape in SHAPES:
        n, channels, ones = shape[0], shape[1], (1,) * (len(shape) - 2)
        for channels_last in (False, True):
            for dtype in DTYPES:
                x = _as_layout(torch.randn(shape, device=device).to(dtype), channels_last)
                y = _as_layout(torch.randn(shape, device=device).to(dtype), channels_last)
                gates = torch.rand(n, channels, *ones, device=device)  # float32 gates, any x dtype
                shift = torch.randn(channels, device=device)
                for scale, bias in ((None, None), (gates, None), (None, shift), (gates, shift), (shift, gates[:1])):
                    got = triton_ops.affine_add_relu(x, y, scale=scale, shift=bias)
                    v = x.float()
                    v = v if scale is None else v * (scale if scale.ndim > 1 else scale.view(1, -1, *ones))
                    v = v if bias is None else v + (bias if bias.ndim > 1 else bias.view(1, -1, *ones))
                    expected = torch.relu(v + y.float()).to(dtype)
                    assert got.stride() == x.stride() and got.dtype == dtype
                    torch.testing.assert_close(got, expected, msg=f"{shape} {dtype} cl={channels_last}")
                before = x.clone()
                assert triton_ops.affine_add_relu(x, y, scale=gates, out=x) is x  # in place over x
                torch.testing.assert_close(x, torch.relu(before.float() * gates + y.float()).to(dtype))


@interpreted
def test_squeeze_kernel_matches_mean_every_rank_layout_dtype():
    _check_squeeze("cpu")


@interpreted
def test_affine_add_relu_kernel_matches_formula_every_rank_layout_dtype():
    _check_affine_add_relu("cpu")


def test_affine_tiles_follow_the_contiguous_axis():
    assert triton_ops._tile(256, 56 * 56, channels_last=False) == (2, 1024)  # NCHW: long along positions
    assert triton_ops._tile(2048, 49, channels_last=False) == (16, 64)
    assert triton_ops._tile(2048, 49, channels_last=True) == (128, 8)  # channels-last: long along channels
    assert triton_ops._tile(3, 5, channels_last=True) == (4, 8)
    for channels, positions, cl in ((1, 1, False), (1, 1, True), (7, 100000, False), (100000, 3, True)):
        block_c, block_p = triton_ops._tile(channels, positions, cl)
        assert block_c * block_p <= 2 * triton_ops._TILE and min(block_c, block_p) >= 2


@interpreted
@pytest.mark.parametrize("channels_last", [False, True])
def test_affine_add_relu_launches_in_slices_of_the_batch(monkeypatch, channels_last):
    # CUDA grids take at most 65535 examples on their third axis; the batch is cut into slices of that many
    monkeypatch.setattr(triton_ops, "_MAX_GRID_YZ", 2)
    torch.manual_seed(0)
    x, y = (_as_layout(torch.randn(5, 6, 3, 4), channels_last) for _ in range(2))
    gates, shift = torch.rand(5, 6, 1, 1), torch.randn(1, 6, 1, 1)
    got = triton_ops.affine_add_relu(x, y, scale=gates, shift=shift)
    torch.testing.assert_close(got, torch.relu(x * gates + shift + y))


@interpreted
def test_affine_add_relu_keeps_nan_and_zero_sized_batches():
    x = torch.tensor([float("nan"), -1.0, 2.0, 0.5]).view(1, 1, 2, 2)
    got = triton_ops.affine_add_relu(x, torch.zeros_like(x))
    torch.testing.assert_close(got, torch.relu(x), equal_nan=True)
    empty = torch.randn(0, 3, 4, 4)
    assert triton_ops.affine_add_relu(empty, empty.clone()).shape == empty.shape


# --- senet's ops route through the kernels and keep their values and gradients --------------------------


@pytest.fixture
def calls(monkeypatch):
    """Counts the kernel launches of senet's ops, by name."""
    counts = {"squeeze_mean": 0, "affine_add_relu": 0}
    for name in counts:
        original = getattr(triton_ops, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            counts[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(triton_ops, name, counted)
    return counts


def _eager(fn):
    with triton_ops.mode("off"), torch.no_grad():
        return fn()


@interpreted
@pytest.mark.parametrize("channels_last", [False, True])
def test_ops_use_the_kernels_without_autograd(calls, channels_last):
    torch.manual_seed(0)
    x = _as_layout(torch.randn(2, 16, 6, 6), channels_last)
    y = _as_layout(torch.randn(2, 16, 6, 6), channels_last)
    s = torch.rand(2, 16, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(squeeze_mean(x), _eager(lambda: squeeze_mean(x)))
        torch.testing.assert_close(scale_add_relu(x, s, y), _eager(lambda: scale_add_relu(x, s, y)))
        torch.testing.assert_close(add_relu_(x.clone(), y), _eager(lambda: add_relu_(x.clone(), y)))
    assert calls == {"squeeze_mean": 1, "affine_add_relu": 2}


def _units(c_in: int, channels: int, channels_last: bool):
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    conv = nn.Conv2d(c_in, channels, 1, bias=False).to(memory_format=fmt)
    bn, se = nn.BatchNorm2d(channels), SqueezeExcite(channels, reduction=4)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.uniform_(0.5, 1.5)
    h = torch.relu(torch.randn(2, c_in, 8, 8)).contiguous(memory_format=fmt)
    identity = torch.randn(2, channels, 8, 8).contiguous(memory_format=fmt)
    return conv, bn, se, h, identity


@interpreted
@pytest.mark.parametrize("channels_last", [False, True])
def test_inference_tails_are_one_kernel_pass(calls, channels_last):
    for c_in, channels in ((4, 16), (64, 16)):  # the squeeze through h, and from the convolution's output
        conv, bn, se, h, identity = _units(c_in, channels, channels_last)
        for module in (conv, bn, se):
            module.eval()
        with torch.no_grad():
            expected = torch.relu(se(bn(conv(h))) + identity)  # computed before counting starts
            plain = torch.relu(bn(conv(h)) + identity)
        start = dict(calls)
        with torch.no_grad():
            torch.testing.assert_close(conv_bn_se_add_relu(h, conv, bn, se, identity), expected)
            torch.testing.assert_close(conv_bn_add_relu(h, conv, bn, identity), plain)
        assert calls["affine_add_relu"] - start["affine_add_relu"] == 2  # one pass per tail


@interpreted
def test_training_tail_forward_kernel_and_gradients_match_autograd(calls):
    conv, bn, se, h, identity = _units(8, 16, False)
    c = conv(h).detach().requires_grad_()
    shortcut = identity.clone().requires_grad_()
    grad = torch.randn_like(identity)
    out = bn_se_add_relu(c, bn, se, shortcut)
    assert calls["affine_add_relu"] == 1  # the forward's scale, addition and ReLU
    out.backward(grad)
    got = [c.grad, shortcut.grad, *(p.grad for p in (*bn.parameters(), *se.parameters()))]
    for t in (c, shortcut, *bn.parameters(), *se.parameters()):
        t.grad = None
    with triton_ops.mode("off"):
        reference = torch.relu(se(bn(c)) + shortcut)
    reference.backward(grad)
    expected = [c.grad, shortcut.grad, *(p.grad for p in (*bn.parameters(), *se.parameters()))]
    torch.testing.assert_close(out, reference)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)


def _small_se_resnet(channels_last: bool = False):
    """A seeded SE-ResNet-20 in eval mode and an input batch, both in the given layout."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = create_model("seresnet20_cifar", num_classes=10).eval().to(memory_format=fmt)
    return model, torch.randn(2, 3, 32, 32).contiguous(memory_format=fmt)


@interpreted
def test_whole_se_resnet_eval_matches_the_eager_path(calls):
    model, x = _small_se_resnet()
    with torch.no_grad():
        got = model(x)
    assert calls["affine_add_relu"] >= 9  # every unit's tail
    torch.testing.assert_close(got, _eager(lambda: model(x)), rtol=1e-4, atol=1e-4)


@interpreted
@pytest.mark.parametrize("channels_last", [False, True])
def test_whole_se_resnet_eval_under_bfloat16_autocast_uses_the_kernels(calls, channels_last):
    # the GPU benchmark's setting: bfloat16 autocast (convolutions and FC layers in bfloat16, norms' parameters
    # in float32) and channels-last; every unit's tail still takes the kernel and matches the eager path
    model, x = _small_se_resnet(channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = model(x)
        with triton_ops.mode("off"):
            expected = model(x)
    assert calls["affine_add_relu"] == 9 and got.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected.float(), rtol=0.05, atol=0.05)


@interpreted
def test_compiled_model_leaves_the_kernels_to_the_compiler_without_graph_breaks(calls):
    model, x = _small_se_resnet()
    with torch.no_grad():
        expected = _eager(lambda: model(x))
        got = torch.compile(model, fullgraph=True, backend="aot_eager")(x)  # fullgraph: a graph break raises
    assert calls["affine_add_relu"] == 0 and calls["squeeze_mean"] == 0
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@interpreted
def test_gpu_benchmark_suite_checks_its_kernels_and_reports_ratios():
    from senet.bench.gpu import run_gpu_suite
    from senet.bench.run import _gpu_table

    result = run_gpu_suite(quick=True, repeats=2)  # on CPU tensors in the interpreter: a check, not a timing
    assert result["interpreted"] and len(result["kernels"]) == 4  # 2 layouts x 2 dtypes
    for row in result["kernels"]:
        assert row["max_abs_error"]["squeeze"] <= 3e-2 and row["max_abs_error"]["tail"] <= 0.25
        assert set(row["results"]) == {"squeeze_eager", "squeeze_triton", "tail_eager", "tail_triton"}
        assert all(len(v["paired_median_ci95"]) == 2 for v in row["ratios"].values())
    assert [row["mode"] for row in result["models"]] == ["inference", "train_step"]
    assert "senet_se/senet_plain" in result["models"][0]["ratios"]
    assert "interpreted: timings are not meaningful" in "\n".join(_gpu_table(result))
    with pytest.raises(ValueError, match="only with quick=True"):
        run_gpu_suite(quick=False, repeats=1)


# --- on a GPU: the compiled kernels ------------------------------------------------------------------------


@on_gpu
def test_gpu_squeeze_kernel_matches_mean():
    _check_squeeze("cuda")


@on_gpu
def test_gpu_affine_add_relu_kernel_matches_formula():
    _check_affine_add_relu("cuda")


@on_gpu
@pytest.mark.parametrize("channels_last", [False, True])
def test_gpu_se_resnet50_eval_matches_the_eager_path(channels_last):
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = create_model("seresnet50", num_classes=10).eval().cuda().to(memory_format=fmt)
    x = torch.randn(4, 3, 128, 128, device="cuda").contiguous(memory_format=fmt)
    with torch.no_grad():
        got = model(x)
    torch.testing.assert_close(got, _eager(lambda: model(x)), rtol=1e-3, atol=1e-3)
