"""Where SE's inference time goes, op by op: the profiler's per-op times of senet's SE-ResNet-50 and
ResNet-50 (``senet bench --suites ops``, ``benchmarks/op_profile.py``).

The two models are profiled in turns (eval, no autograd) and each aten op's self time is averaged per
forward. Both models run the same convolutions, pooling and stem/head ops on the same shapes; the SE model
differs in the squeeze, the FC layers and the unit tails. So besides the ratio of total op times (as noisy
as any whole-model timing on a shared machine) :func:`profile_pair` reports the ratio with the ops that both
models run identically (same op, same input shapes, same call count: the convolutions, max pooling, the
norms and ReLUs inside the units) counted at the plain model's time in both: SE's added cost as the time of
the ops that differ, with the convolutions' run-to-run noise (~95% of the forward) taken out. That second
ratio is an estimate that assumes equal kernels on equal shapes cost the same; it is reported beside the
first, not instead of it. The profiler's times of small ops carry its own overhead.
"""

from __future__ import annotations

from collections import Counter

import torch

from senet.layers.checks import check_choice, check_positive_int
from senet.models import create_model

__all__ = ["LAYOUTS", "profile_pair", "run_ops_suite", "ops_table"]

LAYOUTS: tuple[str, ...] = ("nchw", "channels_last")


def _profile(model: torch.nn.Module, x: torch.Tensor, calls: int) -> tuple[Counter, Counter]:
    """Self CPU microseconds and call counts per forward of each aten op and input shapes."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.no_grad(), torch.profiler.profile(activities=activities, record_shapes=True) as prof:
        for _ in range(calls):
            model(x)
    times, counts = Counter(), Counter()
    for event in prof.key_averages(group_by_input_shape=True):
        if event.key.startswith("aten::"):
            key = f"{event.key} {event.input_shapes}"
            times[key] += event.self_cpu_time_total / calls
            counts[key] += event.count / calls
    return times, counts


def profile_pair(
    layout: str, *, rounds: int, calls: int, batch: int = 8, image_size: int = 224, warmup: int = 6
) -> dict:
    """Profile senet's SE-ResNet-50 and ResNet-50 in turns (``rounds`` turns of ``calls`` forwards, after
    ``warmup`` forwards each) on a ``(batch, 3, image_size, image_size)`` input in ``layout``.

    Returns the op totals per forward (``total_ms``), their ratio, the ratio with the shared ops at the
    plain model's time (``ratio_with_shared_ops_equal``), the shared ops, and every op's milliseconds and
    calls per forward in both models (``ops``, the largest SE - plain difference first).
    """
    check_choice("layout", layout, LAYOUTS)
    for name, value in (("rounds", rounds), ("calls", calls), ("batch", batch)):
        check_positive_int(name, value)
    for name, value, least in (("image_size", image_size, 32), ("warmup", warmup, 0)):  # 32: ResNet's 1x1 maps
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
    torch.manual_seed(0)
    x = torch.randn(batch, 3, image_size, image_size)
    models = {"se": create_model("seresnet50").eval(), "plain": create_model("resnet50").eval()}
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
        models = {name: m.to(memory_format=torch.channels_last) for name, m in models.items()}
    with torch.no_grad():
        for model in models.values():
            for _ in range(warmup):
                model(x)  # warm-up (the allocator's heap settles over the first forwards)
    times = {name: Counter() for name in models}
    counts = {name: Counter() for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            t, c = _profile(model, x, calls)
            times[name].update({k: v / rounds for k, v in t.items()})
            counts[name].update({k: v / rounds for k, v in c.items()})
    se, plain = times["se"], times["plain"]
    shared = {op for op in plain if op in se and abs(counts["se"][op] - counts["plain"][op]) < 1e-6}
    shared_total = sum(plain[op] for op in shared)
    se_adjusted = shared_total + sum(v for op, v in se.items() if op not in shared)
    plain_adjusted = shared_total + sum(v for op, v in plain.items() if op not in shared)
    ops = sorted(set(se) | set(plain), key=lambda op: -abs(se[op] - plain[op]))
    return {
        "layout": layout,
        "batch": batch,
        "image_size": image_size,
        "rounds": rounds,
        "calls_per_round": calls,
        "total_ms": {"se": sum(se.values()) / 1e3, "plain": sum(plain.values()) / 1e3},
        "ratio_of_op_totals": sum(se.values()) / sum(plain.values()),
        "ratio_with_shared_ops_equal": se_adjusted / plain_adjusted,
        "shared_ops": sorted(shared),
        "ops": [
            {
                "op": op,
                "se_ms": se[op] / 1e3,
                "plain_ms": plain[op] / 1e3,
                "se_calls": counts["se"][op],
                "plain_calls": counts["plain"][op],
                "shared": op in shared,
            }
            for op in ops
        ],
    }


def run_ops_suite(*, quick: bool) -> list[dict]:
    """:func:`profile_pair` in both layouts: batch 8, 224x224, 5 rounds of 2 forwards (``quick``: batch 1,
    64x64, one round of one forward, one warm-up)."""
    sizes = dict(rounds=1, calls=1, batch=1, image_size=64, warmup=1) if quick else dict(rounds=5, calls=2)
    return [profile_pair(layout, **sizes) for layout in LAYOUTS]


def ops_table(rows: list[dict], *, top: int = 12) -> list[str]:
    """The printed report of :func:`run_ops_suite`: per layout the two ratios and the ``top`` ops that differ."""
    lines = []
    for row in rows:
        lines.append(
            f"Ops ({row['layout']}, batch {row['batch']}, {row['image_size']}x{row['image_size']}): op totals "
            f"{row['total_ms']['se']:.0f} / {row['total_ms']['plain']:.0f} ms = {row['ratio_of_op_totals']:.4f}; "
            f"with the shared ops at the plain model's time: {row['ratio_with_shared_ops_equal']:.4f}"
        )
        for op in [o for o in row["ops"] if not o["shared"]][:top]:
            lines.append(
                f"    {op['op'][:60]:60s} SE {op['se_ms']:7.2f} ms ({op['se_calls']:4.0f} calls)   "
                f"plain {op['plain_ms']:7.2f} ms ({op['plain_calls']:4.0f} calls)"
            )
    return lines
