"""What SE's eval path reads per forward, its memory time against the 1% budget, and what a small op costs
right after a large one (:mod:`senet.bench.floor`).

    OMP_NUM_THREADS=1 python benchmarks/se_floor.py --threads 1 --repeats 21 --out benchmarks/results/xeon-amx-cpu-1thread-floor.json

senet's allocator setting, senet's SE-ResNet-50 and ResNet-50 at batch 8, 224x224, NCHW unless given.
``senet bench --suites floor`` runs the same (NCHW, 11 repeats) under both allocator settings.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from senet.bench.allocator import tune_allocator
from senet.bench.floor import floor_table, run_floor_case
from senet.bench.run import machine_info
from senet.bench.units import UnitCase


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--stream-mib", type=int, default=256, help="size of the bandwidth copy, MiB")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mallopt = tune_allocator()
    case = UnitCase(batch=args.batch, image_size=args.image_size, channels_last=args.channels_last)
    result = run_floor_case(case, repeats=args.repeats, stream_bytes=args.stream_mib * 2**20)
    print("\n".join(floor_table(result)))
    if args.out:
        args.out.write_text(json.dumps({"machine": machine_info(args.threads), "mallopt": mallopt, "floor": result}, indent=1))


if __name__ == "__main__":
    main()
