"""Gate statistics of any model on any data, in the spirit of the SENet paper's excitation figures.

:func:`collect_gates` hooks the gate of every registered attention layer (the submodules whose name ends in
``gate``, e.g. ``SqueezeExcite.gate``, whose output is the gate tensor s), runs the model over a loader of
``(x, y)`` batches in eval mode without changing it, and accumulates per block and per class the mean and spread
of each channel's gate. Spatial gates (``(N, C, *S)``) are averaged over space first, so every block gives one
gate per example and channel.

Summary statistics per block: the mean gate, the fractions near 0 (``< 0.05``, channel closed) and near 1
(``> 0.95``, open), and two measures of class-specificity (the paper's finding: early blocks class-agnostic, late
blocks class-specific, the last ones saturated):

- ``divergence``: the mean over class pairs of the RMS distance between their mean gate profiles, in gate units
  (in [0, 1] for gates in [0, 1]); 0 with fewer than two classes;
- ``class_variance_ratio``: the fraction of the gates' variance explained by the class (eta^2 = between-class
  over total variance, summed over channels), in [0, 1]: 0 class-agnostic, 1 fully determined by the class.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import torch
import torch.nn as nn

from senet.analysis.report import attention_modules

__all__ = ["BlockGates", "GateStats", "collect_gates", "gate_modules"]

LOW, HIGH = 0.05, 0.95  # "near 0" and "near 1"


@dataclass(frozen=True)
class BlockGates:
    """Gate statistics of one attention layer's gate, K classes by C channels."""

    name: str  # qualified name of the gate module, e.g. "layer3.1.se.gate"
    classes: tuple[int, ...]  # the K class labels seen, sorted
    count: torch.Tensor  # (K,) examples per class
    mean: torch.Tensor  # (K, C) float64, per-class mean of each channel's gate
    std: torch.Tensor  # (K, C) float64, per-class standard deviation (population)
    histogram: torch.Tensor  # (bins,) counts of gate values in [0, 1]
    below: int  # gate values < 0 (outside the histogram)
    above: int  # gate values > 1
    near_zero: float  # fraction of gate values < 0.05
    near_one: float  # fraction of gate values > 0.95

    @property
    def channels(self) -> int:
        return self.mean.shape[1]

    @property
    def profile(self) -> torch.Tensor:
        """``(C,)`` mean gate of each channel over all examples."""
        weights = self.count.double() / self.count.sum()
        return (weights[:, None] * self.mean.double()).sum(0)

    @property
    def mean_gate(self) -> float:
        return float(self.profile.double().mean())

    @property
    def std_gate(self) -> float:
        """Standard deviation of all gate values of the block (over examples and channels)."""
        weights = self.count.double() / self.count.sum()  # (K,)
        second = (weights[:, None] * (self.std.double() ** 2 + self.mean.double() ** 2)).sum(0).mean()
        return math.sqrt(max(float(second) - self.mean_gate**2, 0.0))

    @property
    def divergence(self) -> float:
        """Mean over class pairs of the RMS distance between their mean gate profiles (0 with < 2 classes)."""
        pairs = list(combinations(range(len(self.classes)), 2))
        if not pairs:
            return 0.0
        m = self.mean.double()
        return sum(float(((m[i] - m[j]) ** 2).mean().sqrt()) for i, j in pairs) / len(pairs)

    @property
    def class_variance_ratio(self) -> float:
        """eta^2: between-class variance over total variance of the gates, summed over channels.

        0 when the gates are constant up to float32 resolution (total variance below 1e-12 per channel), where the
        ratio would only measure rounding noise."""
        weights = self.count.double() / self.count.sum()  # (K,)
        m, s = self.mean.double(), self.std.double()
        overall = (weights[:, None] * m).sum(0)  # (C,)
        between = (weights[:, None] * (m - overall) ** 2).sum()
        total = between + (weights[:, None] * s**2).sum()  # law of total variance
        return float(between / total) if total > 1e-12 * self.channels else 0.0

    def summary(self) -> dict[str, object]:
        return {
            "block": self.name,
            "channels": self.channels,
            "examples": int(self.count.sum()),
            "mean_gate": self.mean_gate,
            "std_gate": self.std_gate,
            "near_zero": self.near_zero,
            "near_one": self.near_one,
            "divergence": self.divergence,
            "class_variance_ratio": self.class_variance_ratio,
        }

    def to_dict(self) -> dict[str, object]:
        return {
            **self.summary(),
            "classes": list(self.classes),
            "count": self.count.tolist(),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "histogram": self.histogram.tolist(),
            "below": self.below,
            "above": self.above,
        }


@dataclass(frozen=True)
class GateStats:
    """What :func:`collect_gates` returns: one :class:`BlockGates` per gate, in forward order."""

    blocks: tuple[BlockGates, ...]
    num_examples: int
    bins: int = field(default=50)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(block.name for block in self.blocks)

    def block(self, name: str) -> BlockGates:
        for block in self.blocks:
            if block.name == name:
                return block
        raise KeyError(f"no gate named {name!r}; gates: {list(self.names)}")

    def summary(self) -> list[dict[str, object]]:
        """One dict of summary statistics per block."""
        return [block.summary() for block in self.blocks]

    def to_dict(self) -> dict[str, object]:
        return {
            "num_examples": self.num_examples,
            "bins": self.bins,
            "near_zero_below": LOW,
            "near_one_above": HIGH,
            "blocks": [block.to_dict() for block in self.blocks],
        }

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON to ``path`` (parents created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    def to_frame(self):
        """A pandas DataFrame with one row per (block, class, channel): count, mean, std (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:  # pandas is optional
            raise ImportError("GateStats.to_frame needs pandas (pip install pandas); use to_dict() otherwise") from None
        rows = [
            {"block": b.name, "class": label, "channel": c, "count": int(b.count[k]),
             "mean": float(b.mean[k, c]), "std": float(b.std[k, c])}
            for b in self.blocks
            for k, label in enumerate(b.classes)
            for c in range(b.channels)
        ]
        return pd.DataFrame(rows)


def gate_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The gates to hook: submodules named ``*gate`` inside a registered attention layer, by qualified name."""
    found: dict[str, nn.Module] = {}
    for prefix, layer in attention_modules(model).items():
        for name, module in layer.named_modules():
            if name and name.split(".")[-1].endswith("gate"):
                found[f"{prefix}.{name}" if prefix else name] = module
    return found


class _Accumulator:
    """Running per-class sums of one gate's values ``(N, C)``."""

    def __init__(self, bins: int) -> None:
        self.bins = bins
        self.per_class: dict[int, list] = {}  # label -> [count, sum (C,), sum of squares (C,)]
        self.histogram = torch.zeros(bins, dtype=torch.float64)
        self.below = self.above = self.near_zero = self.near_one = self.values = 0

    def add(self, gates: torch.Tensor, labels: torch.Tensor) -> None:
        g = gates.detach().double().cpu()  # (N, C)
        for label in labels.unique().tolist():
            rows = g[labels == label]  # (n_k, C)
            entry = self.per_class.setdefault(label, [0, 0.0, 0.0])
            entry[0] += rows.shape[0]
            entry[1] = entry[1] + rows.sum(0)
            entry[2] = entry[2] + (rows**2).sum(0)
        self.histogram += torch.histc(g, bins=self.bins, min=0.0, max=1.0)
        self.below += int((g < 0).sum())
        self.above += int((g > 1).sum())
        self.near_zero += int((g < LOW).sum())
        self.near_one += int((g > HIGH).sum())
        self.values += g.numel()

    def finish(self, name: str) -> BlockGates:
        classes = tuple(sorted(self.per_class))
        count = torch.tensor([self.per_class[k][0] for k in classes], dtype=torch.float64)  # (K,)
        sums = torch.stack([self.per_class[k][1] for k in classes])  # (K, C)
        squares = torch.stack([self.per_class[k][2] for k in classes])
        mean = sums / count[:, None]
        std = (squares / count[:, None] - mean**2).clamp_min(0).sqrt()
        return BlockGates(
            name=name,
            classes=classes,
            count=count.long(),
            mean=mean,
            std=std,
            histogram=self.histogram.long(),
            below=self.below,
            above=self.above,
            near_zero=self.near_zero / self.values,
            near_one=self.near_one / self.values,
        )


def _labels(y: object, batch: int) -> torch.Tensor:
    labels = torch.as_tensor(y)
    if labels.ndim != 1 or labels.shape[0] != batch or labels.is_floating_point() or labels.is_complex():
        raise ValueError(
            f"the loader must yield (x, y) with y integer class labels of shape ({batch},), "
            f"got {labels.dtype} of shape {tuple(labels.shape)}"
        )
    return labels.cpu()


def collect_gates(
    model: nn.Module, loader: Iterable, *, max_batches: int | None = None, bins: int = 50
) -> GateStats:
    """Run ``model`` on the ``(x, y)`` batches of ``loader`` and collect the gates of every attention layer.

    The model runs in eval mode under ``torch.no_grad()``; forward hooks are removed and train/eval flags restored
    afterwards, so the model is unchanged. ``x`` is moved to the model's device; ``y`` holds integer class labels
    ``(N,)``. ``max_batches`` stops early; ``bins`` is the number of histogram bins over [0, 1].
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    bad_max = isinstance(max_batches, bool) or not isinstance(max_batches, int) or max_batches < 1
    if max_batches is not None and bad_max:
        raise ValueError(f"max_batches must be a positive int or None, got {max_batches!r}")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive int, got {bins!r}")
    gates = gate_modules(model)
    if not gates:
        raise ValueError(f"{type(model).__name__} has no registered attention layer with a submodule named '*gate'")
    accumulators = {name: _Accumulator(bins) for name in gates}
    current: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            current[name] = output.flatten(2).mean(2) if output.ndim > 2 else output  # (N, C, *S) -> (N, C)

        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in gates.items()]
    first = next(model.parameters(), None)
    device = first.device if first is not None else None
    modes = {module: module.training for module in model.modules()}
    examples = 0
    try:
        model.eval()
        with torch.no_grad():
            for index, batch in enumerate(loader):
                if max_batches is not None and index >= max_batches:
                    break
                if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                    raise ValueError(f"the loader must yield (x, y) pairs, got {type(batch).__name__}")
                x, y = batch[0], batch[1]
                if not isinstance(x, torch.Tensor):
                    raise TypeError(f"the loader must yield (x, y) with x a torch.Tensor, got {type(x).__name__}")
                labels = _labels(y, x.shape[0])
                current.clear()
                model(x.to(device) if device is not None else x)
                for name, values in current.items():
                    accumulators[name].add(values, labels)
                examples += x.shape[0]
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    if examples == 0:
        raise ValueError("the loader yielded no batches")
    blocks = tuple(acc.finish(name) for name, acc in accumulators.items() if acc.values)
    return GateStats(blocks=blocks, num_examples=examples, bins=bins)
