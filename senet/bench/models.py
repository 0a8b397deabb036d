"""Whole-model benchmark: SE-ResNet / ResNet pairs from senet and timm (and torchvision's ResNet).

Inference (eval, ``torch.no_grad``) and one training step (train mode: forward, cross-entropy,
backward) are timed with the models interleaved in one run; ratios are taken between medians of
that run. ``senet_se``/``senet_plain`` are ``senet.models.create_model(...)`` as registered (the SE units
run the fused tail of :mod:`senet.layers.fused`); ``senet_se_unfused`` is the same SE model with every unit's
``fused_tail`` switched off (the plain formula ``relu(se(bn3(conv3(h))) + shortcut)``), checked to give
``senet_se``'s outputs before anything is timed: what the fused ops buy. ``senet_plain_twin`` is a copy of
``senet_plain`` (the same weights in other memory), checked to give its outputs: the A/A control, whose
ratio to ``senet_plain`` shows how finely the run resolves a ratio (drift, noise and where each model's
tensors happen to lie), next to the SE/plain ratio measured in the same repeats.
Memory: bytes saved for backward (unique storages) and the peak bytes of tensors during a training step.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from senet.bench.timing import interleaved, peak_bytes, ratio, saved_bytes, summarize
from senet.models import create_model

__all__ = [
    "ModelCase",
    "FULL_MODEL_CASE",
    "QUICK_MODEL_CASE",
    "MODEL_NAMES",
    "build_models",
    "unfuse",
    "run_model_case",
    "PAIRS",
]


@dataclass(frozen=True)
class ModelCase:
    """Which pair of architectures, at what batch and image size, in which layouts and modes."""

    se_arch: str = "seresnet50"
    plain_arch: str = "resnet50"
    batch: int = 8
    image_size: int = 224
    inference_layouts: tuple[str, ...] = ("nchw", "channels_last")
    train_layouts: tuple[str, ...] = ("nchw",)
    names: tuple[str, ...] | None = None  # which of MODEL_NAMES to time (None: all)


FULL_MODEL_CASE = ModelCase()
QUICK_MODEL_CASE = ModelCase("seresnet50", "resnet50", batch=2, image_size=64, inference_layouts=("nchw",))

MODEL_NAMES: tuple[str, ...] = (
    "senet_se",
    "senet_plain",
    "senet_plain_twin",
    "senet_se_unfused",
    "timm_se",
    "timm_plain",
    "torchvision_plain",
)

# (numerator, denominator) pairs reported as ratios of median times and of memory
PAIRS: tuple[tuple[str, str], ...] = (
    ("senet_se", "senet_plain"),
    ("senet_plain_twin", "senet_plain"),  # A/A: the run's resolution
    ("senet_se_unfused", "senet_plain"),
    ("timm_se", "timm_plain"),
    ("senet_plain", "timm_plain"),
    ("senet_plain", "torchvision_plain"),
    ("senet_se", "timm_se"),
)


def unfuse(model: nn.Module) -> int:
    """Switch off the fused SE tail in every residual unit of ``model``; return how many units had it."""
    units = [m for m in model.modules() if getattr(m, "fused_tail", False)]
    for unit in units:
        unit.fused_tail = False
    return len(units)


def build_models(case: ModelCase) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """The models to compare (same seed for senet's), and the reasons for those skipped."""
    unknown = sorted(set(case.names or ()) - set(MODEL_NAMES))
    if unknown:
        raise ValueError(f"names must be among {list(MODEL_NAMES)}, got unknown {unknown}")
    models, skipped = _build_all(case)
    if case.names is not None:
        models = {name: model for name, model in models.items() if name in case.names}
        skipped = {name: why for name, why in skipped.items() if name in case.names}
    return models, skipped


def _build_all(case: ModelCase) -> tuple[dict[str, nn.Module], dict[str, str]]:
    torch.manual_seed(0)
    models: dict[str, nn.Module] = {"senet_se": create_model(case.se_arch), "senet_plain": create_model(case.plain_arch)}
    models["senet_plain_twin"] = copy.deepcopy(models["senet_plain"])
    models["senet_se_unfused"] = copy.deepcopy(models["senet_se"])
    skipped: dict[str, str] = {}
    if unfuse(models["senet_se_unfused"]) == 0:
        skipped["senet_se_unfused"] = f"{case.se_arch} has no fused SE units"
        del models["senet_se_unfused"]
    try:
        import timm

        models["timm_se"] = timm.create_model(case.se_arch)
        models["timm_plain"] = timm.create_model(case.plain_arch)
    except ImportError:
        skipped["timm_se"] = skipped["timm_plain"] = "timm is not installed"
    except RuntimeError as error:  # timm lacks the architecture
        skipped["timm_se"] = skipped["timm_plain"] = str(error)
    try:
        import torchvision

        models["torchvision_plain"] = getattr(torchvision.models, case.plain_arch)()
    except (ImportError, AttributeError) as error:
        skipped["torchvision_plain"] = str(error)
    return models, skipped


def _layout(x: torch.Tensor, model: nn.Module, layout: str) -> tuple[torch.Tensor, nn.Module]:
    if layout == "channels_last":
        return x.contiguous(memory_format=torch.channels_last), model.to(memory_format=torch.channels_last)
    return x, model.to(memory_format=torch.contiguous_format)


# each copy and the model whose outputs it must give: checked before anything is timed
COPIES: dict[str, str] = {"senet_se_unfused": "senet_se", "senet_plain_twin": "senet_plain"}


def _check_copies(models: dict[str, nn.Module], x: torch.Tensor, training: bool) -> dict[str, float]:
    """Each copy of :data:`COPIES` against its model (both deep-copied, so running statistics stay
    untouched): the max abs error per copy, or RuntimeError where one disagrees."""
    errors = {}
    for name, reference in COPIES.items():
        if name not in models or reference not in models:
            continue
        a, b = (copy.deepcopy(models[key]).train(training) for key in (name, reference))
        with torch.set_grad_enabled(training):
            out_a, out_b = a(x), b(x)
        error = (out_a - out_b).abs().max().item()
        tolerance = 1e-3 * max(1.0, out_b.abs().max().item())
        if not error <= tolerance:
            raise RuntimeError(f"{name} disagrees with {reference}: max abs error {error:.3g} > {tolerance:.3g}")
        errors[name] = error
    return errors


def _inference(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def call() -> None:
        with torch.no_grad():
            model(x)

    return call


def _train_step(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> Callable[[], None]:
    def call() -> None:
        for p in model.parameters():
            p.grad = None
        F.cross_entropy(model(x), target).backward()

    return call


def _ratios(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {f"{a}/{b}": ratio(samples[a], samples[b]) for a, b in PAIRS if a in samples and b in samples}


def run_model_case(case: ModelCase, *, repeats: int, memory: bool = True) -> dict:
    """Time inference and a training step for every model (and measure memory); see the module doc."""
    models, skipped = build_models(case)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(case.batch, 3, case.image_size, case.image_size, generator=generator)
    target = torch.randint(0, 1000, (case.batch,), generator=generator)
    rows = []
    for mode, layouts in (("inference", case.inference_layouts), ("train_step", case.train_layouts)):
        training = mode == "train_step"
        for layout in layouts:
            fns = {}
            for name, model in models.items():
                xl, model = _layout(x, model.train(training), layout)
                fns[name] = _train_step(model, xl, target) if training else _inference(model, xl)
            xl = _layout(x, nn.Identity(), layout)[0]
            errors = _check_copies(models, xl, training)
            samples = interleaved(fns, repeats=repeats)
            rows.append(
                {
                    "mode": mode,
                    "layout": layout,
                    "batch": case.batch,
                    "image_size": case.image_size,
                    "results": {name: {**summarize(s), "max_abs_error": errors.get(name, 0.0)} for name, s in samples.items()},
                    "ratios": _ratios(samples),
                }
            )
    result = {"se_arch": case.se_arch, "plain_arch": case.plain_arch, "timings": rows, "skipped": skipped}
    if memory:
        result["memory"] = measure_memory(models, x, target)
    return result


def measure_memory(models: dict[str, nn.Module], x: torch.Tensor, target: torch.Tensor) -> dict:
    """Saved-for-backward bytes of a training forward and peak tensor bytes of a training step."""
    values = {}
    for name, model in models.items():
        model = model.train().to(memory_format=torch.contiguous_format)
        saved = saved_bytes(lambda: F.cross_entropy(model(x), target))
        peak = peak_bytes(_train_step(model, x, target))
        values[name] = {"saved_bytes": saved, "peak_bytes": peak}
    ratios = {}
    for a, b in PAIRS:
        if a in values and b in values:
            ratios[f"{a}/{b}"] = {key: values[a][key] / values[b][key] for key in ("saved_bytes", "peak_bytes")}
    return {"batch": x.shape[0], "image_size": x.shape[-1], "results": values, "ratios": ratios}
