"""The fused SE tail's backward sums, centred (as committed) against the previous uncentred formula: precision and time.

    OMP_NUM_THREADS=1 python benchmarks/centred_sums.py --threads 1 --out benchmarks/results/milan-cpu-1thread-centred-sums.json

The backward of ``relu(s * bn(c) + identity)`` needs ``sum_p g' * (c - mean)`` per example and channel (for
the gate gradient and the norm's weight gradient). Until this round it was ``sum_p(g' * c) - mean *
sum_p(g')``, which cancels where a channel's mean is large next to its spread; now it is batch norm's
backward kernel over the ``N * C`` rows (:func:`senet.layers.fused._centred_sums`), which centres ``c``
before the product and makes both sums in one pass.

- ``precision``: one SE unit's tail (``bn_se_add_relu``, 16 channels, batch 4, 8x8, training) with every
  channel of ``c`` at ``offset`` + N(0, 1): the largest error of each float32 gradient against float64,
  relative to the gradient's largest entry, for the committed sums, the previous ones and the plain formula.
- ``time``: forward+backward of the fused tail alone (``bn_se_add_relu`` on ``c``, training, with the norm
  and SE block of one bottleneck of senet's SE-ResNet-50) per stage shape (batch 8 unless ``--quick``), the
  two sums interleaved in random order: medians and the paired median difference with its quartiles.
  senet's allocator setting (:func:`senet.bench.allocator.tune_allocator`).
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import time
from pathlib import Path

import torch
import torch.nn as nn

import senet.layers.fused as fused
from senet.bench.allocator import tune_allocator
from senet.bench.run import machine_info
from senet.layers import SqueezeExcite
from senet.models import create_model


def uncentred_sums(g: torch.Tensor, x: torch.Tensor, row_mean: torch.Tensor, ones: torch.Tensor):
    """The previous formula, as :func:`senet.layers.fused._centred_sums` is called: ``sum_p(g * x) - mean *
    sum_p(g)`` and ``sum_p(g)``, each ``(N * C,)``."""
    dims = tuple(range(2, x.ndim))
    dot, g_sum = (g * x).sum(dims).view(-1), g.sum(dims).view(-1)
    return dot - row_mean[: dot.numel()] * g_sum, g_sum


SUMS = {"centred": fused._centred_sums, "uncentred": uncentred_sums}


def _with_sums(name: str):
    """Set the fused tail's sums to ``SUMS[name]`` (module attribute looked up at call time)."""
    fused._centred_sums = SUMS[name]


def precision(offsets: tuple[float, ...]) -> list[dict]:
    rows = []
    for offset in offsets:
        torch.manual_seed(0)
        bn, se = nn.BatchNorm2d(16), SqueezeExcite(16, reduction=4)
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5), bn.bias.normal_()
        c0, identity0 = offset + torch.randn(4, 16, 8, 8, dtype=torch.float64), torch.randn(4, 16, 8, 8, dtype=torch.float64)
        grad = torch.randn(4, 16, 8, 8, dtype=torch.float64)

        def gradients(dtype, sums=None):
            b, s = copy.deepcopy(bn).to(dtype), copy.deepcopy(se).to(dtype)
            c, identity = (t.to(dtype).requires_grad_() for t in (c0, identity0))
            if sums is None:
                out = torch.relu(s(b(c)) + identity)
            else:
                _with_sums(sums)
                out = fused.bn_se_add_relu(c, b, s, identity)
            inputs = {"c": c, "gamma": b.weight, "beta": b.bias, "W1": s.fc1.weight, "W2": s.fc2.weight}
            got = torch.autograd.grad(out, list(inputs.values()), grad.to(dtype))
            _with_sums("centred")
            return {name: g.double() for name, g in zip(inputs, got)}

        exact = gradients(torch.float64)
        row: dict = {"offset": offset}
        for key, sums in (("centred", "centred"), ("uncentred", "uncentred"), ("plain", None)):
            got = gradients(torch.float32, sums)
            row[key] = {name: ((got[name] - want).abs().max() / want.abs().max()).item() for name, want in exact.items()}
        rows.append(row)
    return rows


def timing(*, repeats: int, quick: bool) -> list[dict]:
    torch.manual_seed(0)
    model = create_model("seresnet50").train()
    batch, size = (2, 32) if quick else (8, 224)
    rows = []
    for stage, side in zip((model.layer1, model.layer2, model.layer3, model.layer4), (4, 8, 16, 32)):
        unit = stage[1]
        bn, se = unit.tail_modules()[1], unit.se
        shape = (batch, bn.num_features, max(1, size // side), max(1, size // side))
        c, identity, grad = torch.randn(shape), torch.randn(shape), torch.randn(shape)

        def step(sums: str) -> float:
            _with_sums(sums)
            cc, ii = c.clone().requires_grad_(), identity.clone().requires_grad_()
            start = time.perf_counter()
            fused.bn_se_add_relu(cc, bn, se, ii).backward(grad)
            seconds = time.perf_counter() - start
            _with_sums("centred")
            return seconds

        samples: dict[str, list[float]] = {name: [] for name in SUMS}
        order = random.Random(0)
        for _ in range(repeats + 1):  # the first round warms up
            for name in order.sample(list(SUMS), len(SUMS)):
                samples[name].append(step(name))
        samples = {name: s[1:] for name, s in samples.items()}
        diff = [1e3 * (a - b) for a, b in zip(samples["centred"], samples["uncentred"])]
        rows.append(
            {
                "shape": list(shape),
                "median_ms": {name: 1e3 * statistics.median(s) for name, s in samples.items()},
                "centred_minus_uncentred_ms": statistics.median(diff),
                "quartiles_ms": statistics.quantiles(diff, n=4)[::2],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--quick", action="store_true", help="small sizes and 3 repeats (a smoke test; the timings mean nothing)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    applied = tune_allocator()  # senet's allocator setting, as the other benchmarks
    torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else args.repeats
    result = {"machine": machine_info(args.threads), "mallopt": applied, "precision": precision((0.0, 10.0, 100.0)), "time": timing(repeats=repeats, quick=args.quick)}
    for row in result["precision"]:
        print(f"offset {row['offset']:5.0f}: " + "  ".join(
            f"{name} centred {row['centred'][name]:.1e} uncentred {row['uncentred'][name]:.1e} plain {row['plain'][name]:.1e}"
            for name in ("gamma", "W1", "c")
        ))
    for row in result["time"]:
        low, high = row["quartiles_ms"]
        print(f"tail {tuple(row['shape'])}: centred {row['median_ms']['centred']:.1f} ms, uncentred {row['median_ms']['uncentred']:.1f} ms, "
              f"paired difference {row['centred_minus_uncentred_ms']:+.2f} ms (quartiles {low:+.2f} .. {high:+.2f})")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
