"""Which squeeze route is faster on this machine, ``mean`` or one BLAS product, per shape and layout
(:mod:`senet.bench.squeeze`), and whether ``senet.layers.se_ops.squeeze_mean`` takes it.

    OMP_NUM_THREADS=1 python benchmarks/squeeze_routes.py --threads 1 --out benchmarks/results/milan-cpu-1thread-squeeze.json

senet's allocator setting, 41 repeats of at least 20 ms each unless given. ``senet bench --suites squeeze``
runs the same under both allocator settings.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from senet.bench.allocator import tune_allocator
from senet.bench.run import machine_info
from senet.bench.squeeze import FULL_SHAPES, QUICK_SHAPES, run_squeeze_routes, squeeze_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=41)
    parser.add_argument("--min-time", type=float, default=0.02, help="seconds per timing sample")
    parser.add_argument("--quick", action="store_true", help="tiny shapes (a smoke test; the timings mean nothing)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mallopt = tune_allocator()
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    rows = run_squeeze_routes(repeats=args.repeats, min_time=args.min_time, shapes=shapes)
    print("\n".join(squeeze_table(rows)))
    if args.out:
        args.out.write_text(json.dumps({"machine": machine_info(args.threads), "mallopt": mallopt, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
