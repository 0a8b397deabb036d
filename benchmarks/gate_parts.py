"""Where SE's inference time goes, part by part: senet's eval-path functions (squeeze, product with W3, norm
of the squeezed numbers, the excitation's layers, the gated norm, the addition and ReLU) timed inside whole
forwards of its SE-ResNet-50 and ResNet-50 (:mod:`senet.bench.parts`).

    OMP_NUM_THREADS=1 python benchmarks/gate_parts.py --threads 1 --out benchmarks/results/milan-cpu-1thread-parts.json
    OMP_NUM_THREADS=2 python benchmarks/gate_parts.py --threads 2 --channels-last --repeats 21

senet's allocator setting, eval without autograd, batch 8, 224x224 unless given. Prints each part's median
exclusive milliseconds per forward in both models and SE - plain; ``--out`` writes the JSON with the
machine. ``senet bench --suites parts`` runs the same at the default size under both allocator settings.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from senet.bench.allocator import tune_allocator
from senet.bench.parts import parts_table, run_parts_case
from senet.bench.run import machine_info
from senet.bench.units import UnitCase


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=15, help="forwards per model (default 15)")
    parser.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--image-size", type=int, default=224, help="input height and width (default 224)")
    parser.add_argument("--channels-last", action="store_true", help="channels-last models and input")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here")
    args = parser.parse_args()
    for name in ("repeats", "batch", "image_size"):
        if getattr(args, name) < (3 if name == "repeats" else 1):
            parser.error(f"--{name.replace('_', '-')} is too small: {getattr(args, name)}")
    applied = tune_allocator()
    torch.set_num_threads(args.threads)
    case = UnitCase(batch=args.batch, image_size=args.image_size, channels_last=args.channels_last)
    result = run_parts_case(case, repeats=args.repeats)
    print("\n".join(parts_table(result)))
    if args.out is not None:
        args.out.write_text(json.dumps({"machine": machine_info(args.threads), "mallopt": applied, **result}, indent=1) + "\n")


if __name__ == "__main__":
    main()
