"""Print the Markdown tables of benchmarks/README.md from a saved result file.

    python benchmarks/markdown_tables.py benchmarks/results/cpu-1thread.json        # run_bench.py's (merged) output
    python benchmarks/markdown_tables.py benchmarks/results/cpu-1thread-pair.json   # model_pair.py's output
    python benchmarks/markdown_tables.py benchmarks/results/milan-cpu-1thread-tuned-blocks.json   # one worker's
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from senet.bench.timing import ratio

PEERS = ("senet", "timm", "torchvision", "monai")


def _r(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def block_table(run: dict) -> list[str]:
    lines = [
        "| shape | layout | mode | GB/s (256 MiB copy) | GB/s (tensor copy) | senet | timm | torchvision | monai "
        "| in-model senet (fused) | in-model timm | senet, copy bound | in-model senet, copy bound |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in run["blocks"]:
        res, im = row["results"], row["in_model"]
        peers = [res[n]["ratio_to_bound"] if n in res else None for n in PEERS]
        present = [v for n, v in zip(PEERS[1:], peers[1:]) if v is not None]
        cells = []
        for name, value in zip(PEERS, peers):
            text = _r(value)
            if name == "senet" and present and value is not None and value <= min(present):
                text = f"**{text}**"
            cells.append(text)
        senet_im = im.get("unit_senet", {})
        timm_im = im.get("unit_timm", {}).get("ratio_to_bound")
        mode = "fwd" if row["mode"] == "forward" else "fwd+bwd"
        shape = "x".join(map(str, row["shape"]))
        lines.append(
            f"| {shape} | {row['layout']} | {mode} | {row['bandwidth_gbs']:.1f} | {row['copy_bandwidth_gbs']:.1f} | "
            + " | ".join(cells)
            + f" | {_r(senet_im.get('ratio_to_bound'))} | {_r(timm_im)} | {_r(res['senet']['ratio_to_copy_bound'])}"
            f" | {_r(senet_im.get('ratio_to_copy_bound'))} |"
        )
    return lines


def model_table(run: dict) -> list[str]:
    """Ratio of medians, [min, max], median and its 95% interval of the per-repeat ratios, ratio of the minimums."""
    models = run["models"]
    lines = ["| mode | layout | " + " | ".join(r for r in models["timings"][0]["ratios"]) + " |"]
    lines.append("| --- | --- | " + " | ".join("---:" for _ in models["timings"][0]["ratios"]) + " |")
    for row in models["timings"]:
        cells = []
        for pair in row["ratios"]:
            a, b = pair.split("/")
            v = ratio(row["results"][a]["samples_s"], row["results"][b]["samples_s"])
            low, high = v["paired_median_ci95"]
            cells.append(
                f"{v['ratio']:.3f} [{v['paired_min']:.2f}, {v['paired_max']:.2f}] paired {v['paired_median']:.3f}"
                f" ({low:.3f}-{high:.3f}) min {v['ratio_of_minimums']:.3f}"
            )
        lines.append(f"| {row['mode']} | {row['layout']} | " + " | ".join(cells) + " |")
    return lines


def time_table(run: dict) -> list[str]:
    models = run["models"]
    names = list(models["timings"][0]["results"])
    lines = ["| mode | layout | " + " | ".join(names) + " |", "| --- | --- | " + " | ".join("---:" for _ in names) + " |"]
    for row in models["timings"]:
        cells = []
        for name in names:
            s = row["results"][name]
            cells.append(f"{s['median_s'] * 1e3:.0f} ({(s['q3_s'] - s['q1_s']) / s['median_s'] * 100:.0f}%)")
        lines.append(f"| {row['mode']} | {row['layout']} | " + " | ".join(cells) + " |")
    return lines


def memory_table(run: dict) -> list[str]:
    memory = run["models"]["memory"]
    lines = ["| model | saved for backward (MiB) | peak (MiB) |", "| --- | ---: | ---: |"]
    for name, v in memory["results"].items():
        lines.append(f"| {name} | {v['saved_bytes'] / 2**20:.1f} | {v['peak_bytes'] / 2**20:.1f} |")
    lines += ["", "| pair | saved ratio | peak ratio |", "| --- | ---: | ---: |"]
    for pair, v in memory["ratios"].items():
        lines.append(f"| {pair} | {v['saved_bytes']:.3f} | {v['peak_bytes']:.3f} |")
    return lines


def runs_of(results: dict) -> dict[str, dict]:
    """The runs of a result file by allocator setting: ``run_bench.py`` keeps them under ``runs``; one
    worker's output (``python -m senet.bench.worker``) and ``model_pair.py``'s are a single run, the latter
    always under senet's (tuned) setting."""
    if "runs" in results:
        return results["runs"]
    if "blocks" not in results and "models" not in results:
        raise ValueError(f"not a benchmark result: no 'runs', 'blocks' or 'models' among its keys {sorted(results)}")
    return {results.get("allocator", "tuned"): results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", type=Path, help="a JSON file written by run_bench.py, model_pair.py or a worker")
    try:
        runs = runs_of(json.loads(parser.parse_args().result.read_text()))
    except (OSError, ValueError) as err:  # a missing file, bad JSON, or another script's result
        parser.error(str(err))
    for allocator, run in runs.items():
        print(f"### allocator: {allocator} {run.get('mallopt') or ''}\n")
        if "blocks" in run:
            print("\n".join(block_table(run)) + "\n")
        if "models" in run:
            print("\n".join(model_table(run)) + "\n")
            print("\n".join(time_table(run)) + "\n")
            if "memory" in run["models"]:
                print("\n".join(memory_table(run)) + "\n")


if __name__ == "__main__":
    main()
