"""Which way of pooling a map is fastest on this machine: ``mean`` or one BLAS product, per shape, layout and
thread count (``senet bench --suites squeeze``, ``benchmarks/squeeze_routes.py``).

:func:`senet.layers.se_ops.squeeze_mean` pools a map without autograd either by torch's reduction (``mean``)
or by one product with a vector of ``1/P``: a matrix-vector product of the ``(N * C, P)`` view of a
contiguous map, a batched product with the ``(N, P, C)`` view of a channels-last one. Which is faster
depends on the CPU (and its BLAS), the map's size and the number of threads; the rule it follows
(``se_ops._pool_by_product``) was set from this suite's measurements. Here, for each shape and layout,
three candidates are timed in random order (the same tensor every call, as in a model where the map was
just written): ``mean``, ``product`` and ``squeeze_mean`` itself. Each result is first checked against
``mean``. Reported: the medians, the paired ratio product / mean with its 95% interval, the route
``squeeze_mean`` took, and whether that is the faster of the two here.

Shapes: the stand-alone SE block's inputs (ResNet-50's stage outputs at batch 32, one 1-D and one 3-D map)
and the maps senet's SE-ResNet-50 pools at batch 8 (the 1x1 convolution's input at 56x56 to 14x14, where
the squeeze goes through it, and the output at 7x7).
"""

from __future__ import annotations

import math
import statistics

import torch

from senet.bench.timing import interleaved, ratio
from senet.layers import se_ops
from senet.layers.checks import check_positive_int

__all__ = ["FULL_SHAPES", "QUICK_SHAPES", "run_squeeze_routes", "squeeze_table"]

FULL_SHAPES: tuple[tuple[int, ...], ...] = (
    (32, 256, 56, 56), (32, 512, 28, 28), (32, 1024, 14, 14), (32, 2048, 7, 7), (32, 512, 2000), (8, 64, 16, 56, 56),
    (8, 64, 56, 56), (8, 128, 28, 28), (8, 256, 14, 14), (8, 2048, 7, 7),
)  # fmt: skip
QUICK_SHAPES: tuple[tuple[int, ...], ...] = ((2, 8, 20, 20), (2, 16, 7, 7), (2, 8, 50), (1, 4, 3, 6, 6))


def _map(shape: tuple[int, ...], channels_last: bool) -> torch.Tensor:
    """A random map of ``shape`` (N, C, *S), contiguous or with channel stride 1 (any rank)."""
    n, c, *spatial = shape
    x = torch.randn(n, *spatial, c, generator=torch.Generator().manual_seed(0))  # (N, *S, C)
    return x.movedim(-1, 1) if channels_last else x.movedim(-1, 1).contiguous()  # (N, C, *S)


def _candidates(x: torch.Tensor, channels_last: bool) -> dict:
    """``mean``, the product route for the layout, and ``squeeze_mean``: each returns ``(N, C)``."""
    dims = tuple(range(2, x.ndim))
    product = se_ops.mean_by_bmm if channels_last else se_ops.mean_by_mv
    return {"mean": lambda: x.mean(dims), "product": lambda: product(x), "squeeze_mean": lambda: se_ops.squeeze_mean(x)}


def run_squeeze_routes(
    *, repeats: int, min_time: float, shapes: tuple[tuple[int, ...], ...] = FULL_SHAPES
) -> list[dict]:
    """Every shape in both layouts (float32, no autograd, the current thread count): each candidate checked
    against ``mean``, then timed (``repeats`` interleaved samples of at least ``min_time`` seconds each);
    one row per shape and layout."""
    check_positive_int("repeats", repeats)
    if isinstance(min_time, bool) or not isinstance(min_time, (int, float)) or min_time < 0:
        raise ValueError(f"min_time must be a number >= 0 (seconds), got {min_time!r}")
    for shape in shapes:
        if not isinstance(shape, tuple) or not 3 <= len(shape) <= 5 or not all(isinstance(d, int) and d > 0 for d in shape):
            raise ValueError(f"shapes must hold (N, C, *S) tuples of 1 to 3 positive spatial sizes, got {shape!r}")
    rows = []
    for channels_last in (False, True):
        for shape in shapes:
            x = _map(shape, channels_last)
            candidates = _candidates(x, channels_last)
            with torch.no_grad():
                want = x.mean(tuple(range(2, x.ndim)))
                for name, fn in candidates.items():
                    torch.testing.assert_close(fn(), want, rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
                samples = interleaved(candidates, repeats=repeats, min_time=min_time)
                took_product = se_ops._pool_by_product(math.prod(shape[2:]), shape[1], channels_last=channels_last)
            paired = ratio(samples["product"], samples["mean"])
            rows.append({
                "shape": list(shape),
                "layout": "channels_last" if channels_last else "nchw",
                "threads": torch.get_num_threads(),
                "median_ms": {name: statistics.median(times) * 1e3 for name, times in samples.items()},
                "product_over_mean": paired["paired_median"],
                "product_over_mean_interval": paired["paired_median_ci95"],
                "squeeze_mean_route": "product" if took_product else "mean",
                "route_is_the_faster": took_product == (paired["paired_median"] < 1.0),
                "samples_ms": {name: [t * 1e3 for t in times] for name, times in samples.items()},
            })  # fmt: skip
    return rows


def squeeze_table(rows: list[dict]) -> list[str]:
    """The printed report of :func:`run_squeeze_routes`: per shape and layout the medians (ms), the paired
    ratio product / mean (95% interval) and the route ``squeeze_mean`` took."""
    lines = ["Squeeze routes (no autograd; ms; product / mean < 1: the product is faster):"]
    for row in rows:
        t, (low, high) = row["median_ms"], row["product_over_mean_interval"]
        mark = "" if row["route_is_the_faster"] else "  (the slower route here)"
        lines.append(
            f"  {row['layout']:13s} {'x'.join(map(str, row['shape'])):16s} {row['threads']} thread(s)  mean {t['mean']:8.3f}"
            f"  product {t['product']:8.3f}  ratio {row['product_over_mean']:.3f} ({low:.3f}-{high:.3f})"
            f"  squeeze_mean {t['squeeze_mean']:8.3f} by {row['squeeze_mean_route']}{mark}"
        )
    return lines
