"""The eval tail of a ResNet-50 bottleneck, ``relu(norm(conv3(h)) + identity)``, with the norm written to a
fresh tensor or over the convolution's output: what writing in place saves, per stage and layout, and what
the whole SE tail adds with the caches cold (``senet bench --suites tails``, ``benchmarks/tail_passes.py``).

Each candidate runs the 1x1 convolution and its tail on ResNet-50's stage shapes (eval, no autograd,
batch 8 by default), after a 64 MiB write that evicts the caches (as the rest of the model would), the candidates interleaved in random order ``repeats`` times. Reported: the median of the
fresh-output candidate and the paired median difference of each other one, with its 95% interval; the
JSON also holds ``se_tail`` minus ``plain_inplace`` (what SE adds to the unit). Each candidate's output is
first checked against the module-by-module formula.

- ``plain_fresh``: ``add_relu_(bn(c), identity)``, the plain tail until this round (the norm's fresh output);
- ``plain_inplace``: :func:`senet.layers.fused.conv_bn_add_relu`'s eval path (the norm written over ``c``);
- ``se_fresh`` / ``se_inplace``: the SE tail's one pass ``s * bn(c)`` (:func:`senet.layers.fused._inference_norm`
  with gates; NCHW: the norm's kernel over ``N * C`` rows; channels-last: ``addcmul``) to a fresh tensor
  or over ``c``, the gates given;
- ``se_tail``: the whole SE tail, :func:`senet.layers.fused.conv_bn_se_add_relu` (squeeze, excitation of a
  ``SqueezeExcite(C, reduction=16)``, the gated norm over ``c``): against ``plain_inplace``, what SE adds to a
  unit with the caches cold.
"""

from __future__ import annotations

import statistics

import torch
import torch.nn as nn

from senet.bench.timing import interleaved, median_interval
from senet.layers import SqueezeExcite
from senet.layers.checks import check_positive_int
from senet.layers.fused import _inference_norm, conv_bn_se_add_relu
from senet.layers.se_ops import add_relu_

__all__ = ["STAGES", "FLUSH_BYTES", "run_tails", "tail_table"]

# (C_in of conv3, C_out, H = W): the 1x1 convolution at the end of each ResNet-50 stage's bottleneck
STAGES = ((64, 256, 56), (128, 512, 28), (256, 1024, 14), (512, 2048, 7))
FLUSH_BYTES = 64 * 2**20


def _candidates(c_in: int, c_out: int, size: int, channels_last: bool, batch: int, flush_bytes: int) -> tuple[dict, dict]:
    """The timed candidates (each returns the tail's output) and the outputs they must give."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    conv = nn.Conv2d(c_in, c_out, 1, bias=False).eval().to(memory_format=fmt)
    bn = nn.BatchNorm2d(c_out).eval()
    bn.running_var.uniform_(0.5, 1.5)
    bn.weight.data.uniform_(0.5, 1.5)
    h = torch.relu(torch.randn(batch, c_in, size, size)).contiguous(memory_format=fmt)
    identity = torch.randn(batch, c_out, size, size).contiguous(memory_format=fmt)
    gates = torch.rand(batch, c_out, 1, 1)
    se = SqueezeExcite(c_out, reduction=16).eval()
    flush = torch.empty(max(1, flush_bytes // 4))

    def cold(fn):
        def call():
            flush.fill_(1.0)  # evict the caches, as the rest of the model does between two such tails
            return fn()

        return call

    with torch.inference_mode():  # what each candidate must return: the module-by-module formulas
        u = bn(conv(h))
        plain, gated = torch.relu(u + identity), torch.relu(gates * u + identity)
        expected = {"plain_fresh": plain, "plain_inplace": plain, "se_fresh": gated, "se_inplace": gated}
        expected["se_tail"] = torch.relu(se(u) + identity)
    candidates = {
        "plain_fresh": cold(lambda: add_relu_(bn(conv(h)), identity)),
        "plain_inplace": cold(lambda: add_relu_(_inference_norm(conv(h), bn, overwrite=True), identity)),
        "se_fresh": cold(lambda: add_relu_(_inference_norm(conv(h), bn, gates), identity)),
        "se_inplace": cold(lambda: add_relu_(_inference_norm(conv(h), bn, gates, overwrite=True), identity)),
        "se_tail": cold(lambda: conv_bn_se_add_relu(h, conv, bn, se, identity)),
    }
    return candidates, expected


def _check(candidates: dict, expected: dict) -> float:
    """Each candidate's result against the plain formula (raises if one differs); returns the largest
    absolute difference."""
    worst = 0.0
    with torch.inference_mode():
        for name, fn in candidates.items():
            out = fn()
            torch.testing.assert_close(out, expected[name], rtol=1e-4, atol=1e-4, msg=lambda m, name=name: f"{name}: {m}")
            worst = max(worst, (out - expected[name]).abs().max().item())
    return worst


def run_tails(*, repeats: int, batch: int, flush_bytes: int = FLUSH_BYTES) -> list[dict]:
    """Every stage in both layouts: each candidate checked against its formula, then timed; one row per
    stage and layout (the fresh-output candidate's median, each other one's paired difference to it with a
    95% interval, ``se_tail`` minus ``plain_inplace``, and the samples)."""
    for name, value in (("repeats", repeats), ("batch", batch), ("flush_bytes", flush_bytes)):
        check_positive_int(name, value)
    rows = []
    for channels_last in (False, True):
        for c_in, c_out, size in STAGES:
            candidates, expected = _candidates(c_in, c_out, size, channels_last, batch, flush_bytes)
            max_abs_diff = _check(candidates, expected)
            with torch.inference_mode():
                samples = interleaved(candidates, repeats=repeats)
            base = samples["plain_fresh"]
            row = {
                "shape": [batch, c_out, size, size],
                "layout": "channels_last" if channels_last else "nchw",
                "max_abs_diff_vs_formula": max_abs_diff,
                "plain_fresh_ms": statistics.median(base) * 1e3,
                "samples_ms": {name: [t * 1e3 for t in times] for name, times in samples.items()},
            }
            for name, times in samples.items():
                if name != "plain_fresh":
                    diffs = [(a - b) * 1e3 for a, b in zip(times, base)]
                    row[f"{name}_minus_plain_fresh_ms"] = statistics.median(diffs)
                    row[f"{name}_minus_plain_fresh_interval_ms"] = list(median_interval(diffs))
            diffs = [(a - b) * 1e3 for a, b in zip(samples["se_tail"], samples["plain_inplace"])]
            row["se_tail_minus_plain_inplace_ms"] = statistics.median(diffs)  # what SE adds to the unit
            row["se_tail_minus_plain_inplace_interval_ms"] = list(median_interval(diffs))
            rows.append(row)
    return rows


def tail_table(rows: list[dict]) -> list[str]:
    """The printed report of :func:`run_tails`: per stage and layout the fresh-output tail's median and each
    other candidate's paired difference to it (95% interval), in ms."""
    lines = ["Tails (the caches evicted before each call; ms, paired difference to plain_fresh):"]
    for row in rows:
        size = row["shape"][2]
        diffs = "  ".join(
            f"{name} {row[f'{name}_minus_plain_fresh_ms']:+.3f} "
            f"({row[f'{name}_minus_plain_fresh_interval_ms'][0]:+.3f}..{row[f'{name}_minus_plain_fresh_interval_ms'][1]:+.3f})"
            for name in row["samples_ms"]
            if name != "plain_fresh"
        )
        lines.append(f"  {row['layout']:13s} {size}x{size}  plain_fresh {row['plain_fresh_ms']:6.2f}; {diffs}")
    return lines
