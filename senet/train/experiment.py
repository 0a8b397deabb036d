"""Run several model variants over several seeds on the same data and schedule, and summarise them.

This is the machinery of ``senet compare`` and ``senet ablate``: every (variant, seed) pair is one
:func:`~senet.train.loop.fit` run in ``out/runs/<variant>-seed<k>/`` (resumable on its own), and a
:class:`VariantSummary` holds the final-epoch validation numbers over seeds, parameters and FLOPs.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

from senet.analysis import model_cost
from senet.train.config import ModelSpec, TrainConfig
from senet.train.ddp import is_main_process
from senet.train.loop import CHECKPOINT_NAME, RunResult, fit, spec_for_data
from senet.train.model import build_model

__all__ = ["Variant", "VariantSummary", "run_variants", "mean_std"]


@dataclass(frozen=True)
class Variant:
    """One row of a comparison table: a ``label`` and the model it trains."""

    label: str
    spec: ModelSpec


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass
class VariantSummary:
    label: str
    spec: ModelSpec
    runs: list[RunResult]
    params: int
    flops: int  # per example, 2 per multiply-add (senet.analysis.report's convention)

    @property
    def accuracy(self) -> tuple[float, float]:
        """Final-epoch validation accuracy over seeds: (mean, std)."""
        return mean_std([run.final["val_acc"] for run in self.runs])

    @property
    def loss(self) -> tuple[float, float]:
        """Final-epoch validation loss (cross-entropy) over seeds: (mean, std)."""
        return mean_std([run.final["val_loss"] for run in self.runs])

    @property
    def epoch_time(self) -> float:
        """Mean seconds per training epoch over every epoch of every seed."""
        return statistics.fmean(row["epoch_time"] for run in self.runs for row in run.history)

    def to_dict(self) -> dict[str, object]:
        (acc, acc_std), (loss, loss_std) = self.accuracy, self.loss
        return {
            "label": self.label,
            "model_spec": self.spec.to_dict(),
            "params": self.params,
            "flops": self.flops,
            "val_acc_mean": acc,
            "val_acc_std": acc_std,
            "val_loss_mean": loss,
            "val_loss_std": loss_std,
            "epoch_time_mean": self.epoch_time,
            "runs": [
                {"seed": run.config.seed, "out": str(run.config.out), "final_val_acc": run.final["val_acc"],
                 "final_val_loss": run.final["val_loss"], "best_val_acc": run.best_val_acc, "history": run.history}
                for run in self.runs
            ],
        }  # fmt: skip


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "variant"


def run_variants(base: TrainConfig, variants: list[Variant], seeds: list[int], out: Path) -> list[VariantSummary]:
    """Train every variant with every seed (``base`` gives data and schedule) under ``out/runs``.

    With ``base.resume`` a run whose folder holds a checkpoint continues from it (a finished one is
    only re-evaluated), and the others start fresh.
    """
    if not variants or not seeds:
        raise ValueError("need at least one variant and one seed")
    if len({v.label for v in variants}) != len(variants):
        raise ValueError(f"variant labels must be unique, got {[v.label for v in variants]}")
    total, done = len(variants) * len(seeds), 0
    summaries = []
    for variant in variants:
        runs = []
        for seed in seeds:
            run_out = out / "runs" / f"{_slug(variant.label)}-seed{seed}"
            resume = base.resume and (run_out / CHECKPOINT_NAME).is_file()
            config = replace(base, model=variant.spec, seed=seed, out=run_out, resume=resume)
            result = fit(config)
            runs.append(result)
            done += 1
            if base.verbose and is_main_process():
                print(
                    f"[{done}/{total}] {variant.label} seed {seed}: val acc {100 * result.final['val_acc']:.2f}% "
                    f"loss {result.final['val_loss']:.4f} ({result.mean_epoch_time:.2f} s/epoch)",
                    flush=True,
                )
        bundle = runs[0].bundle
        spec = spec_for_data(variant.spec, bundle)
        cost = model_cost(build_model(spec).eval(), bundle.input_shape)
        summaries.append(VariantSummary(variant.label, spec, runs, params=runs[0].params, flops=cost.total.flops))
    return summaries
