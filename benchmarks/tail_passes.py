"""The eval tail of a ResNet-50 bottleneck with the norm written to a fresh tensor or over the convolution's
output, and the whole SE tail, with the caches cold (:mod:`senet.bench.tails`), per stage and layout.

    OMP_NUM_THREADS=1 python benchmarks/tail_passes.py --threads 1 --out benchmarks/results/milan-cpu-1thread-tails.json

senet's allocator setting, batch 8, 41 repeats unless given. ``senet bench --suites tails`` runs the same
under both allocator settings.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from senet.bench.allocator import tune_allocator
from senet.bench.run import machine_info
from senet.bench.tails import run_tails, tail_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=41)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mallopt = tune_allocator()
    rows = run_tails(repeats=args.repeats, batch=args.batch)
    print("\n".join(tail_table(rows)))
    if args.out:
        args.out.write_text(json.dumps({"machine": machine_info(args.threads), "mallopt": mallopt, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
