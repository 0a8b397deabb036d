"""Where SE's inference time goes, unit by unit: each residual unit of senet's SE-ResNet-50 and ResNet-50
timed inside the model and alone, and split into segments in the model (:mod:`senet.bench.units`); with
``--parts``, part by part instead: each function of the units' eval path (squeeze, product with W3, norm of
the squeezed numbers, the excitation's layers, gated norm, addition and ReLU) timed inside whole forwards
(:mod:`senet.bench.parts`).

    OMP_NUM_THREADS=1 python benchmarks/unit_times.py --threads 1 --out benchmarks/results/cpu-1thread-units.json
    OMP_NUM_THREADS=1 python benchmarks/unit_times.py --threads 1 --channels-last --repeats 31
    OMP_NUM_THREADS=2 python benchmarks/unit_times.py --threads 2 --parts --repeats 21

senet's allocator setting, eval without autograd, batch 8, 224x224 unless given. Prints the medians per
stage (in the model and alone) and SE - plain per segment, or per part; ``--out`` writes the JSON with the
machine. ``senet bench --suites units`` (``parts``) runs the same at the default size under both allocator
settings.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from senet.bench.allocator import tune_allocator
from senet.bench.parts import parts_table, run_parts_case
from senet.bench.run import machine_info
from senet.bench.units import UnitCase, run_unit_case, unit_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=15, help="forwards per model and unit calls (default 15)")
    parser.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--image-size", type=int, default=224, help="input height and width (default 224)")
    parser.add_argument("--channels-last", action="store_true", help="channels-last models and input")
    parser.add_argument("--parts", action="store_true", help="time the eval path part by part (senet.bench.parts)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here")
    args = parser.parse_args()
    for name in ("repeats", "batch", "image_size"):
        if getattr(args, name) < (3 if name == "repeats" else 1):
            parser.error(f"--{name.replace('_', '-')} is too small: {getattr(args, name)}")
    applied = tune_allocator()
    torch.set_num_threads(args.threads)
    case = UnitCase(batch=args.batch, image_size=args.image_size, channels_last=args.channels_last)
    run, table = (run_parts_case, parts_table) if args.parts else (run_unit_case, unit_table)
    result = run(case, repeats=args.repeats)
    print("\n".join(table(result)))
    if args.out is not None:
        args.out.write_text(json.dumps({"machine": machine_info(args.threads), "mallopt": applied, **result}, indent=1) + "\n")


if __name__ == "__main__":
    main()
