"""Where SE's inference time goes, op by op: the profiler's per-op times of senet's SE-ResNet-50 and ResNet-50
(:mod:`senet.bench.ops`), in both layouts.

    OMP_NUM_THREADS=1 python benchmarks/op_profile.py --threads 1 --out benchmarks/results/cpu-1thread-ops.json

senet's allocator setting, batch 8, 224x224, ``--rounds`` turns of ``--calls`` forwards per model unless
given. ``senet bench --suites ops`` runs the same at the default size under both allocator settings.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from senet.bench.allocator import tune_allocator
from senet.bench.ops import LAYOUTS, ops_table, profile_pair
from senet.bench.run import machine_info


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
    sizes = dict(rounds=args.rounds, calls=args.calls, batch=args.batch, image_size=args.image_size)
    rows = [profile_pair(layout, **sizes) for layout in LAYOUTS]
    print("\n".join(ops_table(rows)))
    if args.out is not None:
        result = {"machine": machine_info(args.threads), "mallopt": applied, "layouts": rows}
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
