"""Where SE's inference time goes, unit by unit: each residual unit of senet's SE-ResNet-50 and ResNet-50
timed inside the model and alone.

    OMP_NUM_THREADS=1 python benchmarks/unit_times.py --threads 1 --out benchmarks/results/cpu-1thread-units.json

In the model: forward hooks on every residual unit time each unit during whole forwards of the two
models, interleaved, ``--repeats`` times (eval, no autograd, batch 8, 224x224, senet's allocator setting);
what the units do not cover (stem, pooling, head) is reported as the rest. Alone: each unit is then called
``--repeats`` times on its own input (captured in the model), the SE and plain unit in turns. Per stage
the script prints the median milliseconds per forward of the SE units, of the plain units and their
difference, in the model and alone: where SE's added inference time is, and whether it depends on the
ops around the unit. In the model each unit's time is also split into segments (hooks on ``act2`` and
on the tail convolution ``conv3``): the body up to ``act2``, what runs between it and ``conv3`` (an SE unit's
squeeze and excitation of the convolution's input), ``conv3`` itself and the tail after it; the script
prints SE - plain per segment and stage, paired by forward. Hooks on a unit, ``act2`` or ``conv3`` do not
change its path (the fused SE tail is kept).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn as nn

from senet.bench.allocator import tune_allocator
from senet.bench.run import machine_info
from senet.models import create_model

STAGES = ("layer1", "layer2", "layer3", "layer4")
WHERE = ("in_model", "alone")
SEGMENTS = ("body", "se_ops", "tail_conv", "tail")


def _units(model: nn.Module) -> dict[str, nn.Module]:
    return {f"{stage}.{i}": unit for stage in STAGES for i, unit in enumerate(getattr(model, stage))}


def _hook_times(model: nn.Module, times: dict[str, list[float]]) -> list:
    """Forward hooks that add each unit's time of the current forward to ``times[name][-1]``, and the time of
    each of its segments (:data:`SEGMENTS`) to ``times[f"{name}/{segment}"][-1]``.

    The segments of a bottleneck, marked by hooks on ``act2`` (the end of the branch body) and on the tail
    convolution ``conv3``: ``body`` (shortcut, conv1 to act2), ``se_ops`` (what runs between the body and
    the tail convolution: an SE unit's squeeze and excitation where it squeezes the convolution's input),
    ``tail_conv`` and ``tail`` (the norm, gated in an SE unit, the addition and ReLU; at 7x7 also the squeeze
    and excitation of the convolution's output).
    """
    marks: dict[str, list[float]] = {}
    handles = []
    for name, unit in _units(model).items():
        conv = unit.tail_modules()[0]

        def mark(*_, name=name):  # unit start, act2 end, conv3 start, conv3 end
            marks[name].append(time.perf_counter())

        def start(module, args, name=name):
            marks[name] = [time.perf_counter()]

        def end(module, args, output, name=name):
            stamps = [*marks[name], time.perf_counter()]
            times[name][-1] += stamps[-1] - stamps[0]
            if len(stamps) == len(SEGMENTS) + 1:
                for segment, a, b in zip(SEGMENTS, stamps, stamps[1:]):
                    times[f"{name}/{segment}"][-1] += b - a

        handles += [unit.register_forward_pre_hook(start), unit.register_forward_hook(end)]
        handles += [unit.act2.register_forward_hook(mark), conv.register_forward_pre_hook(mark)]
        handles.append(conv.register_forward_hook(mark))
    return handles


def _inputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each unit's input in one forward of ``model``."""
    inputs = {}
    handles = [
        unit.register_forward_pre_hook(lambda module, args, name=name: inputs.__setitem__(name, args[0]))
        for name, unit in _units(model).items()
    ]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return inputs


def _in_model(models: dict[str, nn.Module], x: torch.Tensor, repeats: int) -> dict:
    """Per-forward times of every unit (and of the whole forward), by model."""
    times = {key: defaultdict(list) for key in models}
    with torch.no_grad():
        for model in models.values():  # warm-up
            model(x)
    handles = [h for key, m in models.items() for h in _hook_times(m, times[key])]
    try:
        with torch.no_grad():
            for repeat in range(repeats):
                order = list(models) if repeat % 2 == 0 else list(models)[::-1]
                for key in order:
                    for name in _units(models[key]):
                        for series in (name, *(f"{name}/{segment}" for segment in SEGMENTS)):
                            times[key][series].append(0.0)
                    start = time.perf_counter()
                    models[key](x)
                    times[key]["forward"].append(time.perf_counter() - start)
    finally:
        for handle in handles:
            handle.remove()
    return times


def _alone(models: dict[str, nn.Module], inputs: dict, repeats: int) -> dict:
    """Each unit called on its own captured input, the models' units interleaved."""
    times = {key: defaultdict(list) for key in models}
    units_of = {key: _units(model) for key, model in models.items()}
    with torch.no_grad():
        for name in units_of[next(iter(models))]:
            units = {key: units_of[key][name] for key in models}
            for key, unit in units.items():  # warm-up
                unit(inputs[key][name])
            for _ in range(repeats):
                for key, unit in units.items():
                    start = time.perf_counter()
                    unit(inputs[key][name])
                    times[key][name].append(time.perf_counter() - start)
    return times


def _by_stage(times: dict[str, list[float]], segment: str | None = None) -> dict[str, float]:
    """Median milliseconds per stage (the sum over its units of each unit's median), of whole units or of one
    segment of them."""
    def counted(name: str, stage: str) -> bool:
        unit, _, part = name.partition("/")
        return unit.startswith(stage + ".") and part == (segment or "")

    return {stage: 1e3 * sum(statistics.median(v) for name, v in times.items() if counted(name, stage)) for stage in STAGES}


def _segment_diffs(times: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    """Per stage and segment, the median over forwards of (SE - plain) milliseconds (paired by repeat)."""
    diffs = {}
    for segment in SEGMENTS:
        diffs[segment] = {}
        for stage in STAGES:
            names = [n for n in times["se"] if n.startswith(stage + ".") and n.endswith("/" + segment)]
            per_forward = [sum(times["se"][n][i] - times["plain"][n][i] for n in names) for i in range(len(times["se"][names[0]]))]
            diffs[segment][stage] = 1e3 * statistics.median(per_forward)
    return diffs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=15, help="forwards per model and unit calls (default 15)")
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
    torch.manual_seed(0)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    models = {
        "se": create_model("seresnet50").eval().to(memory_format=fmt),
        "plain": create_model("resnet50").eval().to(memory_format=fmt),
    }
    x = torch.randn(args.batch, 3, args.image_size, args.image_size).contiguous(memory_format=fmt)
    in_model = _in_model(models, x, args.repeats)
    alone = _alone(models, {key: _inputs(model, x) for key, model in models.items()}, args.repeats)
    stages = {key: {"in_model": _by_stage(in_model[key]), "alone": _by_stage(alone[key])} for key in models}
    forward = {key: 1e3 * statistics.median(in_model[key]["forward"]) for key in models}
    print(f"median ms per forward: SE {forward['se']:.1f}, plain {forward['plain']:.1f}")
    header = ("stage", "in model: SE", "plain", "SE - plain", "alone: SE", "plain", "SE - plain")
    print("{:8s} {:>13s} {:>8s} {:>11s}   {:>10s} {:>8s} {:>11s}".format(*header))
    for stage in STAGES:
        a, b = stages["se"]["in_model"][stage], stages["plain"]["in_model"][stage]
        c, d = stages["se"]["alone"][stage], stages["plain"]["alone"][stage]
        print(f"{stage:8s} {a:13.2f} {b:8.2f} {a - b:11.2f}   {c:10.2f} {d:8.2f} {c - d:11.2f}")
    extra = {where: sum(stages["se"][where][s] - stages["plain"][where][s] for s in STAGES) for where in WHERE}
    print(f"{'all units':33s} {extra['in_model']:11.2f}   {'':19s} {extra['alone']:11.2f}")
    rest = {key: forward[key] - sum(stages[key]["in_model"].values()) for key in models}  # stem, head, hooks
    print(f"{'the rest':8s} {rest['se']:13.2f} {rest['plain']:8.2f} {rest['se'] - rest['plain']:11.2f}")
    segments = _segment_diffs(in_model)
    print("in the model, SE - plain by segment (paired median ms per forward):")
    print("{:10s}".format("segment") + "".join(f"{stage:>9s}" for stage in STAGES) + f"{'all':>9s}")
    for segment in SEGMENTS:
        row = segments[segment]
        print(f"{segment:10s}" + "".join(f"{row[stage]:9.2f}" for stage in STAGES) + f"{sum(row.values()):9.2f}")
    if args.out is not None:
        result = {
            "machine": machine_info(args.threads),
            "mallopt": applied,
            "layout": "channels_last" if args.channels_last else "nchw",
            "repeats": args.repeats,
            "batch": args.batch,
            "image_size": args.image_size,
            "forward_ms": forward,
            "stage_ms": stages,
            "rest_ms": rest,
            "segment_se_minus_plain_ms": segments,
            "samples_s": {
                key: {"in_model": {n: v for n, v in in_model[key].items() if "/" not in n}, "alone": dict(alone[key])}
                for key in models
            },
            "segment_samples_s": {key: {n: v for n, v in in_model[key].items() if "/" in n} for key in models},
        }
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
