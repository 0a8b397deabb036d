"""Re-measure chosen rows of the SE block suite with more repeats, and senet's time over the fastest peer's.

    OMP_NUM_THREADS=1 python benchmarks/block_rows.py --threads 1 --repeats 31 --shapes 32x2048x7x7,32x1024x14x14 \
        --out benchmarks/results/xeon-amx-cpu-1thread-block-rows.json

The suite (``senet.bench.blocks.run_block_case``, 9 repeats in ``senet bench``) times senet, the peers,
the in-model units, the tensor copy and the 256 MiB bandwidth copy interleaved in random order; each
call inherits the cache state the one before it left, so at the small 7x7 and 14x14 maps a row's
medians move by several percent between runs. More repeats narrow the paired ratio. senet's allocator
setting unless ``--allocator default``. The JSON has a worker's layout (``markdown_tables.py`` reads it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from senet.bench.allocator import tune_allocator
from senet.bench.blocks import BlockCase, run_block_case
from senet.bench.run import machine_info
from senet.bench.timing import ratio

PEERS = ("timm", "torchvision", "monai")


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(n) for n in text.split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a shape is N x C x spatial sizes such as 32x2048x7x7, got {text!r}") from None
    if not 3 <= len(shape) <= 5 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"a shape has 3 to 5 positive sizes (N, C, 1-3 spatial), got {text!r}")
    return shape


def versus_fastest_peer(row: dict) -> dict | None:
    """senet's samples over those of the peer with the smallest median in ``row`` (paired by repeat:
    :func:`senet.bench.timing.ratio`), or None where no peer ran."""
    peers = [name for name in PEERS if name in row["results"]]
    if not peers:
        return None
    fastest = min(peers, key=lambda name: row["results"][name]["median_s"])
    return {"peer": fastest, **ratio(row["results"]["senet"]["samples_s"], row["results"][fastest]["samples_s"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", type=lambda s: [_shape(t) for t in s.split(",")], default=[(32, 2048, 7, 7)])
    parser.add_argument("--layouts", default="nchw,channels_last", help="comma-separated: nchw, channels_last")
    parser.add_argument("--modes", default="forward", help="comma-separated: forward, forward_backward")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--min-time", type=float, default=0.05, help="seconds per timing sample (as senet bench)")
    parser.add_argument("--allocator", choices=("tuned", "default"), default="tuned")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    layouts = [name for name in args.layouts.split(",") if name]
    for name in layouts:
        if name not in ("nchw", "channels_last"):
            parser.error(f"--layouts takes nchw and channels_last, got {name!r}")
    modes = [name for name in args.modes.split(",") if name]
    for name in modes:
        if name not in ("forward", "forward_backward"):
            parser.error(f"--modes takes forward and forward_backward, got {name!r}")
    if any(len(shape) == 3 for shape in args.shapes) and "channels_last" in layouts:
        parser.error("channels_last needs 2-D or 3-D maps (4 or 5 sizes); give --layouts nchw for a 1-D shape")
    torch.set_num_threads(args.threads)
    mallopt = tune_allocator() if args.allocator == "tuned" else {}
    rows = []
    for shape in args.shapes:
        for layout in layouts:
            for mode in modes:
                row = run_block_case(BlockCase(shape, layout), mode, repeats=args.repeats, min_time=args.min_time)
                row["senet_vs_fastest_peer"] = versus_fastest_peer(row)
                rows.append(row)
                medians = "  ".join(f"{name} {row['results'][name]['median_s'] * 1e3:.3f}" for name in ("senet", *PEERS) if name in row["results"])
                versus = row["senet_vs_fastest_peer"]
                against = (
                    f"senet / {versus['peer']} {versus['paired_median']:.3f} "
                    f"({versus['paired_median_ci95'][0]:.3f}-{versus['paired_median_ci95'][1]:.3f})"
                    if versus else "no peer"
                )
                print(f"{'x'.join(map(str, shape)):>14} {layout:13} {mode:16} ms: {medians}   {against}", flush=True)
                if args.out:  # rewritten after every row: an interrupted run keeps what it measured
                    result = {"machine": machine_info(args.threads), "allocator": args.allocator, "mallopt": mallopt, "blocks": rows}
                    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
