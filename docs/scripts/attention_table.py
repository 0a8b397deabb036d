"""Measure the table of the docs page "Which attention layer?" and write it as Markdown and JSON.

For every layer of ``senet.layers.ATTENTION_LAYERS`` (and the plain network as the reference row):

- the layer alone at one stated shape: parameters, analytic FLOPs (its ``flops()``), and forward time
  (eval mode, no autograd), timed interleaved with every other layer and a 3x3 convolution of the same
  width (``senet.bench.timing.interleaved``), so that the ratios come from the same moments of a shared
  machine;
- the layer inside ResNet-20 on the embedded digits: the network's parameters and FLOPs, and the final
  validation accuracy over several seeds, from one ``senet compare --relatives ...`` run (the same code
  and schedule as the main experiment).

Usage (from the repository root; the full run takes a while on 2 CPU cores)::

    python docs/scripts/attention_table.py                 # writes docs/data/attention_table.{md,json}
    python docs/scripts/attention_table.py --quick --out /tmp/attention   # a fast smoke run elsewhere
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from senet.bench.timing import interleaved
from senet.cli import main as senet_main
from senet.layers import ATTENTION_LAYERS, conv_nd, create_attention

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "docs" / "data"
MODEL = "resnet20_cifar"


def machine() -> dict[str, object]:
    """The CPU (``lscpu``'s model name), its core count, and the library versions."""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
        cpu = fields.get("Model name", "").strip() or platform.processor()
        cpus = int(fields.get("CPU(s)", "0").strip() or 0)
    except (OSError, subprocess.CalledProcessError, ValueError):
        cpu, cpus = platform.processor() or "unknown", 0
    return {
        "cpu": cpu,
        "cpus": cpus or torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
    }


def layer_costs(shape: tuple[int, ...], *, repeats: int, min_time: float) -> dict[str, dict[str, float]]:
    """Parameters, FLOPs per example and forward time of every registered layer at input ``shape`` (N, C, *S)."""
    channels, spatial = shape[1], shape[2:]
    x = torch.randn(shape)
    layers = {name: create_attention(name, channels, spatial_dims=len(spatial)).eval() for name in ATTENTION_LAYERS}
    conv = conv_nd(len(spatial))(channels, channels, 3, padding=1, bias=False).eval()

    def call(module: torch.nn.Module):
        def run() -> None:
            with torch.no_grad():
                module(x)

        return run

    samples = interleaved({"conv3x3": call(conv), **{n: call(m) for n, m in layers.items()}}, repeats=repeats, min_time=min_time)
    conv_median = statistics.median(samples["conv3x3"])
    se_median = statistics.median(samples["se"])
    return {
        name: {
            "params": sum(p.numel() for p in layer.parameters()),
            "flops": int(layer.flops(tuple(spatial))),
            "forward_ms": 1e3 * statistics.median(samples[name]),
            "vs_se": statistics.median(samples[name]) / se_median,
            "vs_conv3x3": statistics.median(samples[name]) / conv_median,
        }
        for name, layer in layers.items()
    } | {"conv3x3": {"forward_ms": 1e3 * conv_median}}


def compare_runs(out: Path, *, quick: bool) -> dict[str, object]:
    """One ``senet compare`` of the plain network, SE and every relative; its results.json."""
    relatives = [name for name in ATTENTION_LAYERS if name != "se"]
    schedule = ["--seeds", "1", "--epochs", "1", "--train-limit", "64", "--val-limit", "64"] if quick else ["--seeds", "3", "--epochs", "10"]
    argv = ["compare", "--model", MODEL, "--relatives", *relatives, *schedule, "--no-progress", "--quiet", "--out", str(out)]
    status = senet_main(argv)
    if status != 0:
        raise SystemExit(f"senet {' '.join(argv)} failed with status {status}")
    results = json.loads((out / "results.json").read_text())
    variants = [
        {key: value for key, value in variant.items() if key != "runs"}
        | {"runs": [{k: v for k, v in r.items() if k in ("seed", "final_val_acc", "final_val_loss")} for r in variant["runs"]]}
        for variant in results["variants"]
    ]  # without the per-epoch histories and run folders
    return {"argv": argv, "data": results["data"], "settings": results["settings"], "variants": variants}


def markdown(data: dict[str, object]) -> str:
    m, layers, shape = data["machine"], data["layers"], data["layer_shape"]
    runs = {v["label"]: v for v in data["compare"]["variants"]}
    settings = data["compare"]["settings"]
    n, c, *spatial = shape
    size = "x".join(map(str, spatial))
    head = (
        f"| layer | class | params (C={c}) | FLOPs ({c}x{size}) | forward ms ({n}x{c}x{size}) | time vs SE | time vs 3x3 conv "
        f"| ResNet-20 params | ResNet-20 FLOPs | digits val acc % |\n"
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    rows = [head]
    for label in ("plain", *ATTENTION_LAYERS):
        run = runs[label]
        acc = f"{100 * run['val_acc_mean']:.2f} ± {100 * run['val_acc_std']:.2f}"
        if label == "plain":
            cells = ["plain (no attention)", "-", "-", "-", "-", "-", "-"]
        else:
            cost = layers[label]
            cells = [
                f"`{label}`", ATTENTION_LAYERS[label].__name__, f"{cost['params']:,}", f"{cost['flops']:,}",
                f"{cost['forward_ms']:.3f}", f"{cost['vs_se']:.2f}", f"{cost['vs_conv3x3']:.3f}",
            ]  # fmt: skip
        rows.append("| " + " | ".join([*cells, f"{run['params']:,}", f"{run['flops']:,}", acc]) + " |")
    seeds = len(runs["plain"]["runs"])
    notes = [
        "",
        f"Measured on {m['date']} on {m['cpu']} ({m['cpus']} CPUs, shared with other work), PyTorch {m['torch']}, "
        f"Python {m['python']}, by `docs/scripts/attention_table.py`.",
        "",
        f"Layer columns: one layer built with `create_attention(name, {c}, spatial_dims={len(spatial)})` (each layer's "
        f"default ratio, r = 16 where it has one); FLOPs per example from its `flops()` (2 per multiply-add); forward "
        f"time in eval mode without autograd, {torch.get_num_threads() if data['threads'] is None else data['threads']} "
        f"thread(s), median of {data['repeats']} interleaved repeats; the 3x3 convolution {c} -> {c} took "
        f"{layers['conv3x3']['forward_ms']:.3f} ms.",
        "",
        f"Network columns: `{MODEL}` with the layer in every residual unit (`attention=name`), for the 1x8x8 digits; "
        f"accuracy is the final-epoch validation accuracy on {settings['val_limit'] or 360} held-out digits, mean ± sample std over {seeds} "
        f"seed(s), {settings['epochs']} epochs of {settings['optimizer']} (lr {settings['lr']}, {settings['schedule']}), "
        f"batch {settings['batch_size']}: `senet {' '.join(data['compare']['argv'][:-2])}`. Differences smaller than the "
        "seed spread are noise.",
    ]
    return "\n".join(rows + notes) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny runs (a smoke test of this script, not a measurement)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for attention_table.md/.json")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the layer timings")
    parser.add_argument("--work", type=Path, default=None, help="folder for the compare runs; None: a new temporary folder")
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    if args.quick and args.out.resolve() == DEFAULT_OUT.resolve():
        raise SystemExit("--quick results are not a measurement: pass --out to write them elsewhere")
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = (2, 64, 8, 8) if args.quick else (8, 256, 28, 28)
    repeats = 3 if args.quick else 25
    layers = layer_costs(shape, repeats=repeats, min_time=0.0 if args.quick else 0.05)
    work = args.work or Path(tempfile.mkdtemp(prefix="senet-attention-table-"))
    compare = compare_runs(work / "compare", quick=args.quick)
    data = {"machine": machine(), "layer_shape": list(shape), "repeats": repeats, "threads": args.threads,
            "quick": args.quick, "layers": layers, "compare": compare}  # fmt: skip
    (args.out / "attention_table.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    table = args.out / "attention_table.md"
    table.write_text(markdown(data))
    print(table.read_text())
    return table


if __name__ == "__main__":
    run(sys.argv[1:])
