"""``senet analyze``: the cost report of a model (FLOPs and parameters per stage and block, each SE
layer's side of the crossover ``C >= r*S^2/2``) and, given data, its gate statistics and plots."""

from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from senet.analysis import attention_modules
from senet.data import build_data
from senet.train.checkpoint import check_writable
from senet.train.compare import cost_section, gate_section
from senet.train.config import ModelSpec
from senet.train.loop import spec_for_data
from senet.train.model import build_model
from senet.train.report import Report
from senet.train.weights import load_trained

__all__ = ["analyze", "default_input_shape"]


def default_input_shape(spec: ModelSpec, model: nn.Module) -> tuple[int, ...]:
    """``(in_channels, 32, ...)`` for the CIFAR families (names ending in ``_cifar``), else 224 per side."""
    side = 32 if spec.name.endswith("_cifar") else 224
    return (model.in_channels, *([side] * model.spatial_dims))


def analyze(
    *,
    spec: ModelSpec | None,
    checkpoint: Path | None,
    out: Path,
    data: str | None = None,
    data_dir: Path | None = None,
    input_shape: tuple[int, ...] | None = None,
    val_limit: int | None = None,
    command: str = "",
) -> tuple[Path, Path]:
    """Write ``report.md`` and ``results.json`` for the model ``spec`` (random weights) or the trained
    model in ``checkpoint`` (whose stored spec must agree with ``spec``'s name when both are given)."""
    if spec is None and checkpoint is None:
        raise ValueError("analyze needs --model NAME or --checkpoint PATH")
    bundle = build_data(data, data_dir=data_dir, augment=False, train_limit=1, val_limit=val_limit) if data else None
    stored_shape = None
    if checkpoint is not None:
        trained = load_trained(checkpoint, spec=spec)
        if spec is not None and spec.name != trained.spec.name:
            raise ValueError(f"--model {spec.name} does not match the checkpoint's model {trained.spec.name}")
        model, spec, stored_shape = trained.model, trained.spec, trained.input_shape
    else:
        spec = spec_for_data(spec, bundle) if bundle is not None else spec
        model = build_model(spec)
    if bundle is not None:
        if (model.in_channels, model.spatial_dims) != (bundle.in_channels, bundle.spatial_dims):
            raise ValueError(f"data {bundle.name!r} has input {bundle.input_shape}, which model {spec.name} cannot take")
    shape = input_shape or (bundle.input_shape if bundle is not None else None) or stored_shape or default_input_shape(spec, model)
    check_writable(out)  # only now: bad input leaves no empty output folder behind
    report = Report(out, f"Analysis of {spec.name}" + (f" ({checkpoint})" if checkpoint else " (untrained weights)"))
    if command:
        report.add(f"Command: `{command}`")
    results: dict[str, object] = {"model_spec": spec.to_dict(), "checkpoint": checkpoint, "input_shape": list(shape)}
    results["cost"] = cost_section(report, model, tuple(shape), spec.name)
    if bundle is not None and attention_modules(model):
        results["data"], results["data_note"] = bundle.name, bundle.note
        results["gates"] = gate_section(report, model, bundle, spec.name)
    report.results = results
    return report.write()
