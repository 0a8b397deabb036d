"""Where SE's inference time goes, unit by unit: senet's SE-ResNet-50 and ResNet-50 timed residual unit by
residual unit, inside the model and alone (``senet bench --suites units``, ``benchmarks/unit_times.py``).

In the model: forward hooks on every residual unit time it during whole forwards of the two models,
interleaved (eval, no autograd); what the units do not cover (stem, pooling, head) is the rest. Each
unit's time is also split into segments by hooks on ``act2`` and on the tail convolution ``conv3``
(:data:`SEGMENTS`): the body up to ``act2``, what runs between it and ``conv3`` (an SE unit's squeeze of
the convolution's input and its excitation), ``conv3`` itself and the tail after it (the gated norm, the
addition and ReLU; at 7x7 also the squeeze of the output and the excitation). Alone: each unit is called
on its own input (captured in the model), the SE and plain unit in turns. Hooks on a unit, ``act2`` or
``conv3`` do not change its path (the fused SE tail is kept).

Per stage the result holds the median milliseconds per forward of the SE and plain units, in the model and
alone, and SE - plain per segment paired by forward: where SE's added time is, and whether it depends on
the ops around the unit.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from dataclasses import dataclass

import torch
import torch.nn as nn

from senet.layers.checks import check_positive_int
from senet.models import create_model

__all__ = [
    "UnitCase", "QUICK_UNIT_CASE", "FULL_UNIT_CASE", "STAGES", "SEGMENTS",
    "case_fields", "check_repeats", "pair_and_input", "run_unit_case", "unit_table",
]

STAGES: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")
SEGMENTS: tuple[str, ...] = ("body", "se_ops", "tail_conv", "tail")
_WHERE = ("in_model", "alone")


@dataclass(frozen=True)
class UnitCase:
    """The input of the unit-by-unit timing: ``(batch, 3, image_size, image_size)``, NCHW or channels-last."""

    batch: int
    image_size: int
    channels_last: bool = False

    def __post_init__(self) -> None:
        for name in ("batch", "image_size"):
            check_positive_int(name, getattr(self, name))


QUICK_UNIT_CASE = UnitCase(batch=1, image_size=64)
FULL_UNIT_CASE = UnitCase(batch=8, image_size=224)


def _units(model: nn.Module) -> dict[str, nn.Module]:
    return {f"{stage}.{i}": unit for stage in STAGES for i, unit in enumerate(getattr(model, stage))}


def _hook_times(model: nn.Module, times: dict[str, list[float]]) -> list:
    """Forward hooks that add each unit's time of the current forward to ``times[name][-1]`` and the time of
    each of its segments to ``times[f"{name}/{segment}"][-1]``."""
    marks: dict[str, list[float]] = {}
    handles = []
    for name, unit in _units(model).items():
        conv = unit.tail_modules()[0]

        def mark(*_, name=name):  # act2's end, conv3's start and end
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
    """Per-forward times of every unit, of its segments and of the whole forward, by model."""
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


def _by_stage(times: dict[str, list[float]]) -> dict[str, float]:
    """Median milliseconds per stage (the sum over its units of each unit's median; segments left out)."""
    units = {name: v for name, v in times.items() if "/" not in name}
    return {stage: 1e3 * sum(statistics.median(v) for n, v in units.items() if n.startswith(stage + ".")) for stage in STAGES}


def _segment_diffs(times: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    """Per segment and stage, the median over forwards of SE - plain milliseconds (paired by repeat)."""
    diffs: dict[str, dict[str, float]] = {}
    for segment in SEGMENTS:
        diffs[segment] = {}
        for stage in STAGES:
            names = [n for n in times["se"] if n.startswith(stage + ".") and n.endswith("/" + segment)]
            repeats = len(times["se"][names[0]])
            per_forward = [sum(times["se"][n][i] - times["plain"][n][i] for n in names) for i in range(repeats)]
            diffs[segment][stage] = 1e3 * statistics.median(per_forward)
    return diffs


def check_repeats(repeats: object) -> None:
    """The repeats of the unit and part timings: an int >= 3 (ValueError otherwise)."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 3:
        raise ValueError(f"repeats must be an int >= 3, got {repeats!r}")


def case_fields(case: UnitCase, repeats: int) -> dict:
    """The fields every result of these suites opens with: ``layout``, ``repeats``, ``batch``, ``image_size``."""
    return {
        "layout": "channels_last" if case.channels_last else "nchw",
        "repeats": repeats,
        "batch": case.batch,
        "image_size": case.image_size,
    }


def pair_and_input(case: UnitCase) -> tuple[dict[str, nn.Module], torch.Tensor]:
    """senet's SE-ResNet-50 and ResNet-50 in eval (``{"se": ..., "plain": ...}``, seed 0) and the input, in
    ``case``'s layout."""
    torch.manual_seed(0)
    fmt = torch.channels_last if case.channels_last else torch.contiguous_format
    models = {
        "se": create_model("seresnet50").eval().to(memory_format=fmt),
        "plain": create_model("resnet50").eval().to(memory_format=fmt),
    }
    return models, torch.randn(case.batch, 3, case.image_size, case.image_size).contiguous(memory_format=fmt)


def run_unit_case(case: UnitCase, *, repeats: int) -> dict:
    """Time senet's SE-ResNet-50 and ResNet-50 unit by unit (``repeats`` forwards and calls each, >= 3).

    Returns ``forward_ms`` (median whole forwards), ``stage_ms`` (per model, ``in_model`` and ``alone``, per
    stage), ``rest_ms`` (stem, pooling, head and hooks), ``segment_se_minus_plain_ms`` (per segment and
    stage) and the samples in seconds (``samples_s``, ``segment_samples_s``).
    """
    check_repeats(repeats)
    models, x = pair_and_input(case)
    in_model = _in_model(models, x, repeats)
    alone = _alone(models, {key: _inputs(model, x) for key, model in models.items()}, repeats)
    stages = {key: {"in_model": _by_stage(in_model[key]), "alone": _by_stage(alone[key])} for key in models}
    forward = {key: 1e3 * statistics.median(in_model[key]["forward"]) for key in models}
    return {
        **case_fields(case, repeats),
        "forward_ms": forward,
        "stage_ms": stages,
        "rest_ms": {key: forward[key] - sum(stages[key]["in_model"].values()) for key in models},
        "segment_se_minus_plain_ms": _segment_diffs(in_model),
        "samples_s": {
            key: {"in_model": {n: v for n, v in in_model[key].items() if "/" not in n}, "alone": dict(alone[key])}
            for key in models
        },
        "segment_samples_s": {key: {n: v for n, v in in_model[key].items() if "/" in n} for key in models},
    }


def unit_table(result: dict) -> list[str]:
    """The printed tables of :func:`run_unit_case`'s result: per stage, then SE - plain per segment."""
    forward, stages, rest = result["forward_ms"], result["stage_ms"], result["rest_ms"]
    lines = [
        f"Units ({result['layout']}, batch {result['batch']}, {result['image_size']}x{result['image_size']}, "
        f"{result['repeats']} repeats): median ms per forward: SE {forward['se']:.1f}, plain {forward['plain']:.1f}",
        "{:10s} {:>13s} {:>8s} {:>11s}   {:>10s} {:>8s} {:>11s}".format(
            "stage", "in model: SE", "plain", "SE - plain", "alone: SE", "plain", "SE - plain"
        ),
    ]
    for stage in STAGES:
        a, b = stages["se"]["in_model"][stage], stages["plain"]["in_model"][stage]
        c, d = stages["se"]["alone"][stage], stages["plain"]["alone"][stage]
        lines.append(f"{stage:10s} {a:13.2f} {b:8.2f} {a - b:11.2f}   {c:10.2f} {d:8.2f} {c - d:11.2f}")
    extra = {where: sum(stages["se"][where][s] - stages["plain"][where][s] for s in STAGES) for where in _WHERE}
    lines.append(f"{'all units':35s} {extra['in_model']:11.2f}   {'':19s} {extra['alone']:11.2f}")
    lines.append(f"{'the rest':10s} {rest['se']:13.2f} {rest['plain']:8.2f} {rest['se'] - rest['plain']:11.2f}")
    lines.append("in the model, SE - plain by segment (paired median ms per forward):")
    lines.append("{:10s}".format("segment") + "".join(f"{stage:>9s}" for stage in STAGES) + f"{'all':>9s}")
    for segment, row in result["segment_se_minus_plain_ms"].items():
        lines.append(f"{segment:10s}" + "".join(f"{row[stage]:9.2f}" for stage in STAGES) + f"{sum(row.values()):9.2f}")
    return lines
