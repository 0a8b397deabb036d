"""Where SE's inference time goes: the profiler's per-op times of senet's SE-ResNet-50 and ResNet-50.

    OMP_NUM_THREADS=1 python benchmarks/op_profile.py --threads 1 --out benchmarks/results/cpu-1thread-ops.json

The two models are profiled in turns (``--rounds`` rounds of ``--calls`` forwards each, eval, no autograd,
batch 8, 224x224, senet's allocator setting) and each aten op's self time is averaged per forward. Both
models run the same convolutions, pooling and stem/head ops on the same shapes; the SE model differs in
the squeeze, the FC layers and the unit tails. So besides the ratio of total op times (as noisy as any
whole-model timing on a shared machine) the script reports the ratio with the ops that both models run
identically (same op, same input shapes, same call count: the convolutions, max pooling, the norms and
ReLUs inside the units) counted at the plain model's time in both: SE's added cost as the time of the ops that differ, with the
convolutions' run-to-run noise (~95% of the forward) taken out. That second ratio is an estimate that
assumes equal kernels on equal shapes cost the same; it is printed beside the first, not instead of it.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import torch

from senet.bench.allocator import tune_allocator
from senet.bench.run import machine_info
from senet.models import create_model


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
    layout: str, rounds: int, calls: int, batch: int = 8, image_size: int = 224, warmup: int = 6
) -> dict:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--rounds", type=int, default=5, help="profiling turns per model (default 5)")
    parser.add_argument("--calls", type=int, default=2, help="forwards per turn (default 2)")
    parser.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--image-size", type=int, default=224, help="input height and width (default 224)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here")
    args = parser.parse_args()
    applied = tune_allocator()
    torch.set_num_threads(args.threads)
    result = {"machine": machine_info(args.threads), "mallopt": applied, "layouts": []}
    for layout in ("nchw", "channels_last"):
        row = profile_pair(layout, args.rounds, args.calls, args.batch, args.image_size)
        result["layouts"].append(row)
        print(
            f"{layout}: op totals {row['total_ms']['se']:.0f} / {row['total_ms']['plain']:.0f} ms = "
            f"{row['ratio_of_op_totals']:.4f}; with the shared ops at the plain model's time: "
            f"{row['ratio_with_shared_ops_equal']:.4f}"
        )
        for op in [o for o in row["ops"] if not o["shared"]][:12]:
            print(
                f"    {op['op'][:60]:60s} SE {op['se_ms']:7.2f} ms ({op['se_calls']:4.0f} calls)   "
                f"plain {op['plain_ms']:7.2f} ms ({op['plain_calls']:4.0f} calls)"
            )
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
