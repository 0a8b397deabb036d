"""Merge benchmark worker outputs into one result file (the format of ``run_benchmarks``).

``run_benchmarks`` starts one worker per allocator setting and merges them itself; on a busy shared
machine it can be safer to run the workers one by one (each keeps its partial JSON if interrupted):

    OMP_NUM_THREADS=1 python -m senet.bench.worker --allocator tuned --threads 1 --out /tmp/tuned.json
    OMP_NUM_THREADS=1 python -m senet.bench.worker --allocator default --threads 1 --out /tmp/default.json
    python benchmarks/merge_results.py --threads 1 --out benchmarks/results/cpu-1thread.json /tmp/tuned.json /tmp/default.json

Workers for the same allocator (e.g. ``--suites blocks`` and ``--suites models``) are merged suite by suite
(a later file's suite replaces an earlier one's).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from senet.bench.allocator import TUNED_SETTINGS
from senet.bench.run import ALLOCATORS, format_results, machine_info, merge_worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workers", nargs="+", type=Path, help="JSON files written by senet.bench.worker")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    runs: dict[str, dict] = {}
    quick = False
    for path in args.workers:
        worker = json.loads(path.read_text())
        quick = quick or bool(worker.get("quick", False))
        merge_worker(runs, worker)
    meta = {
        **machine_info(args.threads),
        "quick": quick,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "tuned_allocator": TUNED_SETTINGS,
        "command": "python -m senet.bench.worker (one per allocator) + benchmarks/merge_results.py",
    }
    results = {"meta": meta, "runs": {name: runs[name] for name in ALLOCATORS if name in runs}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    report = format_results(results)
    args.out.with_suffix(".txt").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
