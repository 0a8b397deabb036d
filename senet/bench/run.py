"""``run_benchmarks``: every suite under the default and under senet's allocator setting, one process each.

The allocator setting is process-wide and cannot be undone (see :mod:`senet.bench.allocator`), so each
setting runs in fresh worker processes (``python -m senet.bench.worker ...``) that measure senet and its
peers under that same setting; the parent merges the workers' JSON. Each suite gets its own worker too:
after the block suite a tuned process holds a heap of several GiB, and on the shared virtual machines
these numbers come from, whole-model timings taken in such a process were several times noisier than
in a fresh one.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from senet.bench.allocator import TUNED_SETTINGS, glibc_version, tune_allocator
from senet.layers import se_ops

__all__ = [
    "BenchConfig",
    "ALLOCATORS",
    "SUITES",
    "run_benchmarks",
    "run_worker",
    "merge_worker",
    "format_results",
    "machine_info",
]

ALLOCATORS: tuple[str, ...] = ("default", "tuned")
SUITES: tuple[str, ...] = ("blocks", "models", "units", "parts", "tails", "ops", "squeeze", "floor", "gpu")


@dataclass(frozen=True)
class BenchConfig:
    """Repeats and shapes of one benchmark run (``quick``: tiny shapes, few repeats, for CI smoke)."""

    quick: bool
    block_repeats: int
    model_repeats: int
    min_time: float  # seconds per timing sample of a block (short calls are repeated)
    stream_bytes: int  # size of the copy that measures the memory bandwidth

    @classmethod
    def make(cls, quick: bool) -> BenchConfig:
        if quick:
            return cls(quick=True, block_repeats=3, model_repeats=3, min_time=0.002, stream_bytes=2**20)
        return cls(quick=False, block_repeats=9, model_repeats=11, min_time=0.05, stream_bytes=256 * 2**20)


def _check_threads(threads: object) -> int:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    return threads


def machine_info(threads: int) -> dict:
    """The machine and software a run was measured on."""
    model = se_ops._cpuinfo("model name") or platform.processor() or platform.machine()
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("timm", "torchvision", "monai"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": model,
        "cpu_vendor": se_ops._cpuinfo("vendor_id") or None,
        "cpu_family_model": [se_ops._cpuinfo("cpu family") or None, se_ops._cpuinfo("model") or None],
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the vector ISA torch's kernels use
        "mkl_on_intel": se_ops._MKL_ON_INTEL,  # which squeeze routes senet takes (senet.layers.se_ops)
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "glibc": glibc_version(),
        "versions": versions,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def run_worker(
    *,
    allocator: str,
    quick: bool,
    threads: int,
    suites: tuple[str, ...] = SUITES,
    progress: Callable[[dict], None] | None = None,
) -> dict:
    """Run the suites in this process under ``allocator`` (``"tuned"`` applies :func:`tune_allocator`).

    ``progress(result_so_far)`` is called after each block case and after the model suite.
    """
    if allocator not in ALLOCATORS:
        raise ValueError(f"allocator must be one of {list(ALLOCATORS)}, got {allocator!r}")
    applied = tune_allocator() if allocator == "tuned" else {}
    torch.set_num_threads(_check_threads(threads))
    config = BenchConfig.make(quick)
    started = time.time()
    result: dict = {"allocator": allocator, "mallopt": applied, "load_average_start": list(os.getloadavg())}
    if "blocks" in suites:
        from senet.bench.blocks import FULL_CASES, QUICK_CASES, run_block_case

        result["blocks"] = []
        for case in QUICK_CASES if quick else FULL_CASES:
            for mode in ("forward", "forward_backward"):
                row = run_block_case(
                    case, mode, repeats=config.block_repeats, min_time=config.min_time, stream_bytes=config.stream_bytes
                )
                result["blocks"].append(row)
                if progress is not None:
                    progress(result)
    if "models" in suites:
        from senet.bench.models import FULL_MODEL_CASE, QUICK_MODEL_CASE, run_model_case

        result["models"] = run_model_case(QUICK_MODEL_CASE if quick else FULL_MODEL_CASE, repeats=config.model_repeats)
        if progress is not None:
            progress(result)
    if "units" in suites:
        from senet.bench.units import FULL_UNIT_CASE, QUICK_UNIT_CASE, run_unit_case

        result["units"] = run_unit_case(QUICK_UNIT_CASE if quick else FULL_UNIT_CASE, repeats=config.model_repeats)
        if progress is not None:
            progress(result)
    if "parts" in suites:
        from senet.bench.parts import run_parts_case
        from senet.bench.units import FULL_UNIT_CASE, QUICK_UNIT_CASE

        result["parts"] = run_parts_case(QUICK_UNIT_CASE if quick else FULL_UNIT_CASE, repeats=config.model_repeats)
        if progress is not None:
            progress(result)
    if "tails" in suites:
        from senet.bench.tails import run_tails

        sizes = {"batch": 1, "flush_bytes": 2**20} if quick else {"batch": 8}
        result["tails"] = run_tails(repeats=config.model_repeats, **sizes)
        if progress is not None:
            progress(result)
    if "ops" in suites:
        from senet.bench.ops import run_ops_suite

        result["ops"] = run_ops_suite(quick=quick)
        if progress is not None:
            progress(result)
    if "squeeze" in suites:
        from senet.bench.squeeze import FULL_SHAPES, QUICK_SHAPES, run_squeeze_routes

        shapes = QUICK_SHAPES if quick else FULL_SHAPES
        result["squeeze"] = run_squeeze_routes(repeats=config.model_repeats, min_time=config.min_time, shapes=shapes)
        if progress is not None:
            progress(result)
    if "floor" in suites:
        from senet.bench.floor import run_floor_case
        from senet.bench.units import FULL_UNIT_CASE, QUICK_UNIT_CASE

        case = QUICK_UNIT_CASE if quick else FULL_UNIT_CASE
        result["floor"] = run_floor_case(case, repeats=config.model_repeats, stream_bytes=config.stream_bytes)
        if progress is not None:
            progress(result)
    if "gpu" in suites:
        from senet.bench.gpu import run_gpu_suite

        result["gpu"] = run_gpu_suite(quick=quick, repeats=config.block_repeats)
        if progress is not None:
            progress(result)
    result["load_average_end"] = list(os.getloadavg())
    result["seconds"] = time.time() - started
    return result


def run_benchmarks(
    *,
    quick: bool = False,
    threads: int = 1,
    out: Path | None = None,
    allocators: tuple[str, ...] = ALLOCATORS,
    suites: tuple[str, ...] = SUITES,
) -> dict:
    """Run the SE block and whole-model benchmarks under each allocator setting; write JSON to ``out``.

    Each setting runs in its own worker process (the peers always under the same setting as senet).
    ``quick`` uses tiny shapes and 3 repeats (a smoke test: its timings mean nothing). Returns
    ``{"meta": ..., "runs": {"default": ..., "tuned": ...}}``; :func:`format_results` prints it.
    """
    _check_threads(threads)
    for name in allocators:
        if name not in ALLOCATORS:
            raise ValueError(f"allocators must be taken from {list(ALLOCATORS)}, got {name!r}")
    for name in suites:
        if name not in SUITES:
            raise ValueError(f"suites must be taken from {list(SUITES)}, got {name!r}")
    results = {
        "meta": {
            **machine_info(threads),
            "quick": quick,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "tuned_allocator": TUNED_SETTINGS,
            "command": f"senet bench{' --quick' if quick else ''} --threads {threads}",
        },
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as folder:
        for allocator in allocators:
            for suite in suites or ("",):  # no suite: a worker that only sets up (a smoke test of the plumbing)
                path = Path(folder) / f"{allocator}-{suite or 'none'}.json"
                command = [sys.executable, "-m", "senet.bench.worker", "--allocator", allocator]
                command += ["--threads", str(threads), "--suites", suite, "--out", str(path)]
                command += ["--quick"] if quick else []
                env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
                completed = subprocess.run(command, env=env, capture_output=True, text=True)
                if completed.returncode != 0:
                    raise RuntimeError(f"benchmark worker ({allocator}, {suite}) failed:\n{completed.stderr[-4000:]}")
                merge_worker(results["runs"], json.loads(path.read_text()))
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
    return results


def merge_worker(runs: dict[str, dict], worker: dict) -> None:
    """Add one worker's JSON to ``runs`` (keyed by allocator): its suites, and the load average from the
    first worker's start to the last one's end, seconds summed."""
    run = runs.get(worker["allocator"])
    if run is None:
        runs[worker["allocator"]] = dict(worker)
        return
    for suite in SUITES:
        if suite in worker:
            run[suite] = worker[suite]
    run["load_average_end"] = worker["load_average_end"]
    run["seconds"] = run.get("seconds", 0.0) + worker.get("seconds", 0.0)
    run["complete"] = run.get("complete", True) and worker.get("complete", True)


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _block_table(rows: list[dict]) -> list[str]:
    names = ["senet", "timm", "torchvision", "monai"]
    lines = [
        "SE block, median time / memory-bandwidth bound (3x bytes forward, 7x forward+backward, at the bandwidth "
        "of a 256 MiB copy); in-model = (t(SE unit) - t(plain unit of the same library)) / bound; "
        "[copy]: the same against the bound from copying the tensor itself (tighter where it fits in cache)",
        f"{'shape':<22} {'layout':<13} {'mode':<8} {'GB/s':>5} {'copy':>5} "
        + " ".join(f"{n:>11}" for n in names)
        + f" {'unit_plain':>10} {'in-model senet':>14} {'in-model timm':>13} {'senet [copy]':>12} {'in-model [copy]':>15}",
    ]
    for row in rows:
        res = row["results"]
        cells = [_fmt_ratio(res[n]["ratio_to_bound"]) if n in res else "-" for n in names]
        in_model = row["in_model"]
        senet = in_model.get("unit_senet", {})
        timm = in_model.get("unit_timm", {}).get("ratio_to_bound")
        mode = "fwd" if row["mode"] == "forward" else "fwd+bwd"
        lines.append(
            f"{'x'.join(map(str, row['shape'])):<22} {row['layout']:<13} {mode:<8} {row['bandwidth_gbs']:>5.1f} "
            f"{row['copy_bandwidth_gbs']:>5.1f} "
            + " ".join(f"{c:>11}" for c in cells)
            + f" {_fmt_ratio(res['unit_plain']['ratio_to_bound']):>10} {_fmt_ratio(senet.get('ratio_to_bound')):>14}"
            f" {_fmt_ratio(timm):>13} {_fmt_ratio(res['senet']['ratio_to_copy_bound']):>12}"
            f" {_fmt_ratio(senet.get('ratio_to_copy_bound')):>15}"
        )
    return lines


def _model_table(models: dict) -> list[str]:
    lines = [f"Whole models ({models['se_arch']} / {models['plain_arch']}): ratio of medians [paired min, max]"]
    for row in models["timings"]:
        lines.append(f"  {row['mode']} {row['layout']} batch {row['batch']} {row['image_size']}px:")
        for pair, value in row["ratios"].items():
            minimums = value.get("ratio_of_minimums")
            extra = f"  (ratio of minimums {minimums:.3f})" if minimums is not None else ""
            lines.append(f"    {pair:<34} {value['ratio']:.3f} [{value['paired_min']:.3f}, {value['paired_max']:.3f}]{extra}")
        for name, stats in row["results"].items():
            spread = (stats["q3_s"] - stats["q1_s"]) / stats["median_s"]
            lines.append(f"      {name:<20} median {stats['median_s'] * 1e3:9.1f} ms  IQR/median {spread:.3f}")
    memory = models.get("memory")
    if memory:
        lines.append(f"  memory, training step, batch {memory['batch']} {memory['image_size']}px (saved for backward, peak):")
        for name, value in memory["results"].items():
            lines.append(
                f"    {name:<20} saved {value['saved_bytes'] / 2**20:9.1f} MiB  peak {value['peak_bytes'] / 2**20:9.1f} MiB"
            )
        for pair, value in memory["ratios"].items():
            lines.append(f"    {pair:<34} saved {value['saved_bytes']:.3f}  peak {value['peak_bytes']:.3f}")
    if models.get("skipped"):
        lines.append(f"  skipped: {models['skipped']}")
    return lines


def _gpu_table(gpu: dict) -> list[str]:
    if "skipped" in gpu and "kernels" not in gpu:
        return [f"GPU suite skipped: {gpu['skipped']}"]
    lines = [
        f"GPU ({gpu['device']}{', interpreted: timings are not meaningful' if gpu['interpreted'] else ''}): "
        "median time / bandwidth bound (squeeze: 1x bytes, tail: 3x bytes, at the bandwidth of a device copy)",
        f"{'shape':<18} {'layout':<13} {'dtype':<9} {'GB/s':>7} {'squeeze eager':>13} {'squeeze triton':>14} "
        f"{'tail eager':>10} {'tail triton':>11} {'tail triton/eager':>17}",
    ]
    for row in gpu["kernels"]:
        res = row["results"]
        lines.append(
            f"{'x'.join(map(str, row['shape'])):<18} {row['layout']:<13} {row['dtype']:<9} {row['bandwidth_gbs']:>7.1f} "
            f"{res['squeeze_eager']['ratio_to_bound']:>13.2f} {res['squeeze_triton']['ratio_to_bound']:>14.2f} "
            f"{res['tail_eager']['ratio_to_bound']:>10.2f} {res['tail_triton']['ratio_to_bound']:>11.2f} "
            f"{row['ratios']['tail_triton/tail_eager']['ratio']:>17.3f}"
        )
    for row in gpu["models"]:
        lines.append(f"  {row['mode']} batch {row['batch']} {row['image_size']}px, {row['dtype']}:")
        for pair, value in row["ratios"].items():
            lines.append(f"    {pair:<24} {value['ratio']:.3f} (paired median {value['paired_median']:.3f})")
    if gpu.get("skipped"):
        lines.append(f"  skipped: {gpu['skipped']}")
    return lines


def format_results(results: dict) -> str:
    """The printed report of :func:`run_benchmarks`' result: one section per allocator setting."""
    meta = results["meta"]
    lines = [
        f"senet bench: {meta['cpu']}, {meta['cpu_count']} CPUs, {meta['threads']} thread(s), torch "
        f"{meta['versions']['torch']}, glibc {meta['glibc']}{' (quick: timings are not meaningful)' if meta['quick'] else ''}",
    ]
    for allocator, run in results["runs"].items():
        setting = "glibc defaults" if allocator == "default" else f"mallopt {run['mallopt'] or 'unavailable'}"
        lines += ["", f"== allocator: {allocator} ({setting}); load average {run['load_average_start'][0]:.1f} "
                  f"-> {run['load_average_end'][0]:.1f} =="]
        if "blocks" in run:
            lines += _block_table(run["blocks"])
        if "models" in run:
            lines += [""] + _model_table(run["models"])
        if "units" in run:
            from senet.bench.units import unit_table

            lines += [""] + unit_table(run["units"])
        if "parts" in run:
            from senet.bench.parts import parts_table

            lines += [""] + parts_table(run["parts"])
        if "tails" in run:
            from senet.bench.tails import tail_table

            lines += [""] + tail_table(run["tails"])
        if "ops" in run:
            from senet.bench.ops import ops_table

            lines += [""] + ops_table(run["ops"])
        if "squeeze" in run:
            from senet.bench.squeeze import squeeze_table

            lines += [""] + squeeze_table(run["squeeze"])
        if "floor" in run:
            from senet.bench.floor import floor_table

            lines += [""] + floor_table(run["floor"])
        if "gpu" in run:
            lines += [""] + _gpu_table(run["gpu"])
    return "\n".join(lines)
