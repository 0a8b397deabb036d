"""Run senet's benchmarks and save the JSON and the printed tables (the same as ``senet bench``).

    OMP_NUM_THREADS=1 python benchmarks/run_bench.py --threads 1 --out benchmarks/results/cpu-1thread.json
    python benchmarks/run_bench.py --quick --out /tmp/quick.json     # CI smoke: tiny shapes, 3 repeats
    OMP_NUM_THREADS=2 python benchmarks/run_bench.py --threads 2 --suites models --out benchmarks/results/cpu-2threads-models.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from senet.bench import format_results, run_benchmarks
from senet.bench.run import SUITES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes and 3 repeats (smoke test)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here (and the tables beside it, .txt)")
    parser.add_argument("--suites", default="blocks,models", help="comma-separated, from senet.bench.run.SUITES: " + ", ".join(SUITES) + " (gpu needs a CUDA device and Triton)")
    args = parser.parse_args()
    suites = tuple(name for name in args.suites.split(",") if name)
    results = run_benchmarks(quick=args.quick, threads=args.threads, out=args.out, suites=suites)
    report = format_results(results)
    print(report)
    if args.out is not None:
        args.out.with_suffix(".txt").write_text(report + "\n")


if __name__ == "__main__":
    main()
