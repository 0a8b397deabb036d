"""Run reports: ``report.md`` (tables and PNG plots) and ``results.json`` (every number in it).

Both are written atomically. Accuracies are final-epoch validation accuracies, mean +- sample std over
seeds; FLOPs are per example with 2 FLOPs per multiply-add (``senet.analysis.report``'s convention).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from senet.train.checkpoint import atomic_write_text, to_json
from senet.train.experiment import VariantSummary

__all__ = ["Report", "markdown_table", "summary_table", "plot_learning_curves", "plot_history"]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; the first column is left-aligned, the others right-aligned."""
    align = ["---"] + ["---:"] * (len(headers) - 1)
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _si(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:g}"


SUMMARY_HEADERS = ("variant", "val acc % (mean ± std)", "val error %", "val loss", "params", "FLOPs", "s/epoch", "seeds")


def summary_row(summary: VariantSummary) -> list[str]:
    (acc, acc_std), (loss, loss_std) = summary.accuracy, summary.loss
    return [
        summary.label,
        f"{100 * acc:.2f} ± {100 * acc_std:.2f}",
        f"{100 * (1 - acc):.2f}",
        f"{loss:.4f} ± {loss_std:.4f}",
        f"{summary.params:,}",
        _si(summary.flops),
        f"{summary.epoch_time:.2f}",
        str(len(summary.runs)),
    ]


def summary_table(summaries: Sequence[VariantSummary]) -> str:
    return markdown_table(SUMMARY_HEADERS, [summary_row(s) for s in summaries])


def plot_learning_curves(summaries: Sequence[VariantSummary], path: Path) -> Path:
    """Validation accuracy and training loss per epoch, mean over seeds with a min-max band, one line per variant."""
    fig = Figure(figsize=(11.0, 4.0), layout="constrained")
    acc_ax, loss_ax = fig.subplots(1, 2)
    for summary in summaries:
        epochs = [row["epoch"] for row in summary.runs[0].history]
        for ax, key, scale in ((acc_ax, "val_acc", 100.0), (loss_ax, "train_loss", 1.0)):
            values = scale * np.array([[row[key] for row in run.history] for run in summary.runs])  # (seeds, epochs)
            (line,) = ax.plot(epochs, values.mean(0), marker="o", markersize=3, label=summary.label)
            if len(summary.runs) > 1:
                ax.fill_between(epochs, values.min(0), values.max(0), color=line.get_color(), alpha=0.2)
    acc_ax.set(xlabel="epoch", ylabel="validation accuracy (%)", title="validation accuracy (mean, min-max over seeds)")
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="training loss")
    acc_ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path


def plot_history(history: Sequence[dict[str, float]], path: Path, *, label: str) -> Path:
    """Learning curves of one run: training and validation loss and accuracy per epoch."""
    fig = Figure(figsize=(11.0, 4.0), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    for split in ("train", "val"):
        loss_ax.plot(epochs, [row[f"{split}_loss"] for row in history], marker="o", markersize=3, label=split)
        acc_ax.plot(epochs, [100 * row[f"{split}_acc"] for row in history], marker="o", markersize=3, label=split)
    loss_ax.set(xlabel="epoch", ylabel="loss", title=f"{label}: loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title=f"{label}: accuracy")
    loss_ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path


@dataclass
class Report:
    """A report being assembled: Markdown ``sections`` and the ``results`` dict, written by :meth:`write`."""

    out: Path
    title: str
    sections: list[str] = field(default_factory=list)
    results: dict[str, object] = field(default_factory=dict)

    def add(self, text: str) -> None:
        self.sections.append(text.strip())

    def add_image(self, path: Path, caption: str) -> None:
        self.sections.append(f"![{caption}]({path.relative_to(self.out).as_posix()})\n\n*{caption}*")

    def write(self) -> tuple[Path, Path]:
        markdown = f"# {self.title}\n\n" + "\n\n".join(self.sections) + "\n"
        report = atomic_write_text(self.out / "report.md", markdown)
        results = atomic_write_text(self.out / "results.json", to_json(self.results) + "\n")
        return report, results
