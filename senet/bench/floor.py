"""What SE's inference path must read, and what a small op costs right after a large one: the floor under
SE's eval cost in senet's SE-ResNet-50 (``senet bench --suites floor``, ``benchmarks/se_floor.py``).

Two measurements in one process, beside a whole-model pair:

- ``reads``: the bytes SE's eval path reads per forward that the plain model's does not, counted in one
  forward by wrapping functions of :mod:`senet.layers.fused` (restored after): every map ``squeeze_mean``
  pools (the 1x1 convolution's input ``h`` from 56x56 to 14x14, ``c`` at 7x7), every ``W3`` of the product
  ``W3 @ mean_p(h)``, and the excitation's parameters. At the bandwidth of a 256 MiB copy timed in the same
  run they make ``read_ms``: SE's time per forward if it read each byte once from memory and did nothing
  else. The maps were just written by the body's convolution and part of each may still be cached, so
  this is the memory time of SE's path, not a strict lower bound; set against the 1% target's budget
  (``budget_ms``, 1% of the plain forward) it says whether that target is within reach of an eager path
  that must read these bytes.
- ``cold_ops``: the time of one small op (``torch.empty(())``, ``relu`` of an ``(8, 1024)`` tensor, the sum
  of a 256 KiB and of a 4 MiB weight) right after the same op (``hot``), after a 3x3 convolution of an
  ``(8, 256, 14, 14)`` map, and after a 64 MiB copy, the combinations in random order every repeat. What
  an op costs over ``hot`` after a large kernel is what each of SE's small ops pays in the model, where
  each runs right after a convolution or after another of SE's ops.
- ``products``: SE's small matrix products (the ``W3`` product and the two FC layers, ``batch`` rows each),
  every distinct shape the model makes timed hot, beside the same product with the weight stored
  ``(in, out)`` and a sum over the weight (the rate at which those bytes stream from cache). Where a
  product takes several times its stream time, the BLAS kernel's handling of a few rows, not the bytes,
  sets SE's cost.
"""

from __future__ import annotations

import random
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

import senet.layers.fused as fused
from senet.bench.timing import interleaved, ratio
from senet.bench.units import UnitCase, case_fields, check_repeats, pair_and_input
from senet.layers.se import SqueezeExcite

__all__ = [
    "READS",
    "COLD_OPS",
    "BEFORE",
    "PRODUCTS",
    "counted_reads",
    "se_reads",
    "cold_op_costs",
    "se_products",
    "product_costs",
    "run_floor_case",
    "floor_table",
]

READS: tuple[str, ...] = ("squeezed_maps", "w3", "excitation_params")
COLD_OPS: tuple[str, ...] = ("empty", "relu_8x1024", "sum_256KiB", "sum_4MiB")
BEFORE: tuple[str, ...] = ("hot", "conv3x3", "copy_64MiB")
PRODUCTS: tuple[str, ...] = ("w3", "fc1", "fc2")


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


@contextmanager
def _observed(name: str, observe: Callable[..., None]) -> Iterator[None]:
    """Inside the block, ``fused.<name>`` calls ``observe`` with its arguments, then the function itself."""
    original = getattr(fused, name)

    def observed(*args):
        observe(*args)
        return original(*args)

    setattr(fused, name, observed)
    try:
        yield
    finally:
        setattr(fused, name, original)


@contextmanager
def counted_reads(counts: dict[str, int]) -> Iterator[None]:
    """Inside the block, add the bytes of every map ``fused.squeeze_mean`` pools and every ``W3`` that
    ``fused._conv_squeeze`` multiplies to ``counts["squeezed_maps"]`` and ``counts["w3"]``."""

    def count_map(x):
        counts["squeezed_maps"] += _nbytes(x)

    def count_w3(h, conv):
        counts["w3"] += _nbytes(conv.weight)

    with _observed("squeeze_mean", count_map), _observed("_conv_squeeze", count_w3):
        yield


def se_reads(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Bytes SE's eval path reads in one forward of ``model`` on ``x`` (:data:`READS`; see the module's text)."""
    counts = dict.fromkeys(READS, 0)
    with torch.no_grad(), counted_reads(counts):
        model(x)
    ses = [m for m in model.modules() if isinstance(m, SqueezeExcite)]
    counts["excitation_params"] = sum(_nbytes(p) for se in ses for p in se.parameters())
    return counts


def cold_op_costs(*, repeats: int, seed: int = 0) -> dict[str, dict[str, list[float]]]:
    """Seconds of each op of :data:`COLD_OPS` right after each step of :data:`BEFORE` (``repeats`` samples
    each, every combination once per repeat in a fresh random order, no autograd, float32)."""
    check_repeats(repeats)
    gen = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(256, 256, 3, padding=1).eval()
    h = torch.randn(8, 256, 14, 14, generator=gen)
    src = torch.randn(16 * 2**20, generator=gen)  # 64 MiB
    dst = torch.empty_like(src)
    z = torch.randn(8, 1024, generator=gen)
    small, large = torch.randn(64, 1024, generator=gen), torch.randn(1024, 1024, generator=gen)  # 256 KiB, 4 MiB
    ops: dict[str, Callable[[], object]] = {
        "empty": lambda: torch.empty(()),
        "relu_8x1024": lambda: torch.relu(z),
        "sum_256KiB": lambda: small.sum(),
        "sum_4MiB": lambda: large.sum(),
    }
    before: dict[str, Callable[[str], object]] = {
        "hot": lambda op: ops[op](),
        "conv3x3": lambda op: conv(h),
        "copy_64MiB": lambda op: dst.copy_(src),
    }
    pairs = [(b, op) for b in BEFORE for op in COLD_OPS]
    samples: dict[str, dict[str, list[float]]] = {b: {op: [] for op in COLD_OPS} for b in BEFORE}
    rng = random.Random(seed)
    with torch.no_grad():
        for b, op in pairs:  # warm-up: every path once
            before[b](op)
            ops[op]()
        for _ in range(repeats):
            for b, op in rng.sample(pairs, len(pairs)):
                before[b](op)
                start = time.perf_counter()
                ops[op]()
                samples[b][op].append(time.perf_counter() - start)
    return samples


def se_products(model: nn.Module, x: torch.Tensor) -> list[dict]:
    """SE's small products in one eval forward of ``model`` on ``x``: one entry per distinct ``kind``
    (:data:`PRODUCTS`), ``rows`` and ``weight_shape`` (``(out, in)``), with ``count``, how many units make it."""
    seen: Counter[tuple] = Counter()  # (kind, rows, (out, in)) -> units

    def hook(kind):
        return lambda module, args, out: seen.update([(kind, args[0].shape[0], tuple(module.weight.shape))])

    ses = [m for m in model.modules() if isinstance(m, SqueezeExcite)]
    handles = [se.fc1.register_forward_hook(hook("fc1")) for se in ses]
    handles += [se.fc2.register_forward_hook(hook("fc2")) for se in ses]
    try:
        with torch.no_grad(), _observed("_conv_squeeze", lambda h, conv: seen.update([("w3", h.shape[0], tuple(conv.weight.shape[:2]))])):
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return [
        {"kind": kind, "rows": rows, "weight_shape": list(shape), "count": count}
        for (kind, rows, shape), count in sorted(seen.items(), key=lambda item: (PRODUCTS.index(item[0][0]), item[0][2]))
    ]


def product_costs(products: list[dict], *, repeats: int, seed: int = 0) -> list[dict]:
    """Each entry of :func:`se_products` with its hot time as the model computes it (``W3``:
    ``torch.mm(pooled, W.t())``; FC: ``F.linear``), of the product with the weight stored ``(in, out)``
    (``torch.mm(a, W_t)``, what a transposed layout of the parameters would give, without bias) and of
    ``W.sum()``, interleaved, ``repeats`` >= 3 samples of >= 1 ms each: ``product_us``, ``stored_in_out_us``,
    ``stream_us`` (medians per call), the weight's bytes over the first and the last (``product_gbs``,
    ``stream_gbs``), and the samples in seconds."""
    check_repeats(repeats)
    for entry in products:
        if not isinstance(entry, dict) or entry.get("kind") not in PRODUCTS or len(entry.get("weight_shape", ())) != 2:
            raise ValueError(f"products must be entries of se_products (kind in {list(PRODUCTS)}, a 2-D weight_shape), got {entry!r}")
    gen = torch.Generator().manual_seed(seed)
    return [_product_cost(entry, gen, repeats=repeats, seed=seed) for entry in products]


def _product_cost(entry: dict, gen: torch.Generator, *, repeats: int, seed: int) -> dict:
    (n_out, n_in), rows = entry["weight_shape"], entry["rows"]
    w, b = torch.randn(n_out, n_in, generator=gen), torch.randn(n_out, generator=gen)  # (out, in), (out,)
    a = torch.randn(rows, n_in, generator=gen)  # (rows, in)
    wt = w.t().contiguous()  # the same weight stored (in, out)
    product = (lambda: torch.mm(a, w.t())) if entry["kind"] == "w3" else (lambda: F.linear(a, w, b))
    fns = {"product": product, "stored_in_out": lambda: torch.mm(a, wt), "stream": lambda: w.sum()}
    with torch.no_grad():
        samples = interleaved(fns, repeats=repeats, min_time=1e-3, seed=seed)
    product_s, stream_s = statistics.median(samples["product"]), statistics.median(samples["stream"])
    return {
        **entry,
        "product_us": 1e6 * product_s,
        "stored_in_out_us": 1e6 * statistics.median(samples["stored_in_out"]),
        "stream_us": 1e6 * stream_s,
        "product_gbs": _nbytes(w) / product_s / 1e9,
        "stream_gbs": _nbytes(w) / stream_s / 1e9,
        "samples_s": samples,
    }


def run_floor_case(case: UnitCase, *, repeats: int, stream_bytes: int = 256 * 2**20) -> dict:
    """SE's reads and their memory time, the 1% budget, the whole-model pair and the small ops' costs.

    senet's SE-ResNet-50 and ResNet-50 (``case``: batch, image size, layout) and a copy of ``stream_bytes``
    are timed interleaved (``repeats`` >= 3 forwards each, no autograd); the bandwidth is
    ``2 * stream_bytes / t_copy``. Returns ``reads`` (bytes per forward, :data:`READS`), ``read_bytes`` (their
    sum), ``bandwidth_gbs``, ``read_ms``, ``forward_ms`` (medians), ``se_over_plain`` (paired ratio),
    ``se_minus_plain_ms`` (paired median), ``budget_ms`` (1% of the plain forward), ``cold_ops_us`` (median
    microseconds per step before and op), ``products`` (:func:`product_costs` on the SE model's products),
    ``products_ms`` and ``products_at_stream_ms`` (their hot times per forward, ``count`` times each) and the
    samples in seconds.
    """
    check_repeats(repeats)
    if isinstance(stream_bytes, bool) or not isinstance(stream_bytes, int) or stream_bytes < 4:
        raise ValueError(f"stream_bytes must be an int >= 4, got {stream_bytes!r}")
    models, x = pair_and_input(case)
    reads = se_reads(models["se"], x)
    src = torch.ones(stream_bytes // 4)
    dst = torch.empty_like(src)
    with torch.no_grad():
        samples = interleaved(
            {"se": lambda: models["se"](x), "plain": lambda: models["plain"](x), "stream": lambda: dst.copy_(src)},
            repeats=repeats,
        )
    bandwidth = 2 * _nbytes(src) / statistics.median(samples["stream"])
    read_bytes = sum(reads.values())
    forward_ms = {key: 1e3 * statistics.median(samples[key]) for key in ("se", "plain")}
    cold = cold_op_costs(repeats=repeats)
    products = product_costs(se_products(models["se"], x), repeats=repeats)
    return {
        **case_fields(case, repeats),
        "reads": reads,
        "read_bytes": read_bytes,
        "bandwidth_gbs": bandwidth / 1e9,
        "read_ms": 1e3 * read_bytes / bandwidth,
        "forward_ms": forward_ms,
        "se_over_plain": ratio(samples["se"], samples["plain"]),
        "se_minus_plain_ms": 1e3 * statistics.median(a - b for a, b in zip(samples["se"], samples["plain"])),
        "budget_ms": 0.01 * forward_ms["plain"],
        "cold_ops_us": {b: {op: 1e6 * statistics.median(v) for op, v in ops.items()} for b, ops in cold.items()},
        "products": products,
        "products_ms": 1e-3 * sum(p["count"] * p["product_us"] for p in products),
        "products_at_stream_ms": 1e-3 * sum(p["count"] * p["stream_us"] for p in products),
        "samples_s": {**samples, "cold_ops": cold},
    }


def floor_table(result: dict) -> list[str]:
    """The printed lines of :func:`run_floor_case`'s result."""
    reads, pair = result["reads"], result["se_over_plain"]
    low, high = pair["paired_median_ci95"]
    lines = [
        f"Floor ({result['layout']}, batch {result['batch']}, {result['image_size']}x{result['image_size']}, "
        f"{result['repeats']} repeats): forward ms SE {result['forward_ms']['se']:.1f}, "
        f"plain {result['forward_ms']['plain']:.1f}; SE / plain paired {pair['paired_median']:.3f} "
        f"({low:.3f}-{high:.3f}), SE - plain {result['se_minus_plain_ms']:.2f} ms",
        "SE's reads per forward MB: " + ", ".join(f"{name} {reads[name] / 1e6:.1f}" for name in READS)
        + f"; at {result['bandwidth_gbs']:.1f} GB/s: {result['read_ms']:.2f} ms; "
        f"the 1% budget: {result['budget_ms']:.2f} ms",
        f"{'small op, us after':20s}" + "".join(f"{b:>12s}" for b in BEFORE),
    ]
    for op in COLD_OPS:
        lines.append(f"{op:20s}" + "".join(f"{result['cold_ops_us'][b][op]:12.1f}" for b in BEFORE))
    lines.append(
        f"SE's products per forward, hot: {result['products_ms']:.2f} ms; a sum over the same weights: "
        f"{result['products_at_stream_ms']:.2f} ms"
    )
    lines.append(
        f"{'product':8s}{'rows':>6s}{'weight':>12s}{'units':>7s}{'us':>9s}{'GB/s':>8s}{'(in,out) us':>12s}"
        f"{'sum us':>9s}{'GB/s':>8s}"
    )
    for p in result["products"]:
        shape = "x".join(str(d) for d in p["weight_shape"])
        lines.append(
            f"{p['kind']:8s}{p['rows']:6d}{shape:>12s}{p['count']:7d}{p['product_us']:9.1f}{p['product_gbs']:8.1f}"
            f"{p['stored_in_out_us']:12.1f}{p['stream_us']:9.1f}{p['stream_gbs']:8.1f}"
        )
    return lines
