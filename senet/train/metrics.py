"""Per-epoch metrics: one console line, ``metrics.csv`` and ``metrics.jsonl`` (rewritten atomically from
the whole history each epoch, so a kill never leaves a torn row), and TensorBoard when asked for."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
from pathlib import Path

from senet.train.checkpoint import atomic_write_text

__all__ = ["METRIC_FIELDS", "write_metrics", "format_epoch", "TensorBoardLog"]

METRIC_FIELDS: tuple[str, ...] = (
    "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time", "samples_per_s",
)  # fmt: skip


def write_metrics(out: Path, history: list[dict[str, float]]) -> None:
    """Write ``metrics.csv`` and ``metrics.jsonl`` in ``out`` from the epoch rows of ``history``."""
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=METRIC_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: row[k] for k in METRIC_FIELDS} for row in history)
    atomic_write_text(out / "metrics.csv", table.getvalue())
    atomic_write_text(out / "metrics.jsonl", "".join(json.dumps({k: row[k] for k in METRIC_FIELDS}) + "\n" for row in history))


def format_epoch(row: dict[str, float], epochs: int) -> str:
    return (
        f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.4f} acc {100 * row['train_acc']:5.1f}%  "
        f"val loss {row['val_loss']:.4f} acc {100 * row['val_acc']:5.1f}%  lr {row['lr']:.4g}  {row['epoch_time']:.1f}s"
    )


class TensorBoardLog:
    """Scalars to TensorBoard under ``out/tensorboard``; only usable when the tensorboard package is installed."""

    def __init__(self, out: Path) -> None:
        if importlib.util.find_spec("tensorboard") is None:
            raise ValueError("--tensorboard needs the 'tensorboard' package, which is not installed (pip install tensorboard)")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(out / "tensorboard"))

    def log(self, row: dict[str, float]) -> None:
        for key in METRIC_FIELDS[1:]:
            self.writer.add_scalar(key, row[key], row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
