"""One benchmark worker process: ``python -m senet.bench.worker --allocator tuned --out result.json``.

:func:`senet.bench.run_benchmarks` starts one per allocator setting. The JSON at ``--out`` is rewritten
after every finished case, so an interrupted run keeps what it measured (``"complete": false``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from senet.bench.run import ALLOCATORS, SUITES, run_worker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="senet benchmark worker (one allocator setting)")
    parser.add_argument("--allocator", choices=ALLOCATORS, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--suites", default=",".join(SUITES), help="comma-separated, from " + ",".join(SUITES))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    suites = tuple(s for s in args.suites.split(",") if s)

    def save(result: dict, complete: bool = False) -> None:
        args.out.write_text(json.dumps({**result, "complete": complete}))

    result = run_worker(allocator=args.allocator, quick=args.quick, threads=args.threads, suites=suites, progress=save)
    save(result, complete=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
