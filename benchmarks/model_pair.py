"""senet's SE-ResNet-50 / ResNet-50 inference pair alone, with many interleaved repeats (the 1% target).

    OMP_NUM_THREADS=1 python benchmarks/model_pair.py --threads 1 --repeats 31 --out benchmarks/results/cpu-1thread-pair.json

Two models instead of the six of ``run_bench.py`` make each repeat short, so more repeats fit in the time
and the paired ratios sample the machine's drift more finely. senet's allocator setting, eval, no autograd.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from senet.bench.allocator import tune_allocator
from senet.bench.models import ModelCase, run_model_case
from senet.bench.run import machine_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=31, help="interleaved repeats per layout (default 31)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here")
    args = parser.parse_args()
    applied = tune_allocator()
    torch.set_num_threads(args.threads)
    case = ModelCase(names=("senet_se", "senet_plain"), train_layouts=())
    started = time.time()
    result = {
        "machine": machine_info(args.threads),
        "mallopt": applied,
        "case": {"batch": case.batch, "image_size": case.image_size, "repeats": args.repeats},
        "models": run_model_case(case, repeats=args.repeats, memory=False),
        "seconds": time.time() - started,
    }
    for row in result["models"]["timings"]:
        pair = row["ratios"]["senet_se/senet_plain"]
        print(f"{row['layout']:14s} " + "  ".join(f"{key} {value:.4f}" for key, value in pair.items()))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
