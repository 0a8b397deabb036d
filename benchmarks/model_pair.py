"""Whole-model pairs with many interleaved repeats (the 1% targets), senet's SE-ResNet-50 / ResNet-50 by
default: inference, and with ``--train`` a training step, ``--memory`` the saved-bytes ratios.

    OMP_NUM_THREADS=1 python benchmarks/model_pair.py --threads 1 --repeats 31 --out benchmarks/results/cpu-1thread-pair.json
    OMP_NUM_THREADS=1 python benchmarks/model_pair.py --names senet_se,senet_plain,timm_plain,torchvision_plain
    OMP_NUM_THREADS=1 python benchmarks/model_pair.py --names senet_se,senet_plain,timm_se,timm_plain --layouts nchw --train --memory

Fewer models than the seven of ``run_bench.py`` make each repeat short, so more repeats fit in the time
and the paired ratios sample the machine's drift more finely; each ratio is printed with the 95% interval
of its paired median. ``senet_plain_twin`` (a copy of ``senet_plain``, in the default list) is the A/A
control: its ratio to ``senet_plain`` shows what the run can resolve. senet's allocator setting;
inference in eval without autograd, the training step (forward, cross-entropy, backward) in train mode.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from senet.bench.allocator import tune_allocator
from senet.bench.models import MODEL_NAMES, ModelCase, run_model_case
from senet.bench.run import machine_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=31, help="interleaved repeats per layout (default 31)")
    parser.add_argument(
        "--names",
        default="senet_se,senet_plain,senet_plain_twin",
        help=f"comma-separated models among {','.join(MODEL_NAMES)} (default senet_se,senet_plain,senet_plain_twin)",
    )
    parser.add_argument(
        "--layouts", default="nchw,channels_last", help="inference layouts (default nchw,channels_last)"
    )
    parser.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--image-size", type=int, default=224, help="input height and width (default 224)")
    parser.add_argument("--train", action="store_true", help="also time a training step (NCHW)")
    parser.add_argument("--memory", action="store_true", help="also measure saved-for-backward and peak bytes")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here")
    args = parser.parse_args()
    names = tuple(name.strip() for name in args.names.split(",") if name.strip())
    unknown = sorted(set(names) - set(MODEL_NAMES))
    if len(names) < 2 or unknown:
        parser.error(f"--names must list at least two of {', '.join(MODEL_NAMES)}; got {args.names!r}")
    applied = tune_allocator()
    torch.set_num_threads(args.threads)
    layouts = tuple(name.strip() for name in args.layouts.split(",") if name.strip())
    if not set(layouts) <= {"nchw", "channels_last"}:
        parser.error(f"--layouts must list nchw and/or channels_last; got {args.layouts!r}")
    train_layouts = ("nchw",) if args.train else ()
    sizes = {"batch": args.batch, "image_size": args.image_size}
    case = ModelCase(**sizes, names=names, inference_layouts=layouts, train_layouts=train_layouts)
    started = time.time()
    result = {
        "machine": machine_info(args.threads),
        "mallopt": applied,
        "case": {"batch": case.batch, "image_size": case.image_size, "repeats": args.repeats},
        "models": run_model_case(case, repeats=args.repeats, memory=args.memory),
        "seconds": time.time() - started,
    }
    for row in result["models"]["timings"]:
        for pair, r in row["ratios"].items():
            low, high = r["paired_median_ci95"]
            print(
                f"{row['mode']:10s} {row['layout']:14s} {pair:32s} ratio of medians {r['ratio']:.4f}  paired median "
                f"{r['paired_median']:.4f} (95% interval {low:.4f}-{high:.4f}, range {r['paired_min']:.3f}-"
                f"{r['paired_max']:.3f})  ratio of minimums {r['ratio_of_minimums']:.4f}"
            )
    for pair, r in result["models"].get("memory", {}).get("ratios", {}).items():
        print(f"memory     {pair:47s} saved for backward {r['saved_bytes']:.4f}  peak {r['peak_bytes']:.4f}")
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
