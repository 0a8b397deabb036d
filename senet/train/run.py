"""``senet train``: one run plus its report (learning curves, cost breakdown, gate statistics for SE models)."""

from __future__ import annotations

from senet.analysis import attention_modules
from senet.train.compare import cost_section, gate_section
from senet.train.ddp import is_main_process
from senet.train.config import TrainConfig
from senet.train.loop import RunResult, fit
from senet.train.report import Report, markdown_table, plot_history

__all__ = ["train_and_report"]


def train_and_report(config: TrainConfig, *, command: str = "") -> RunResult:
    """:func:`~senet.train.loop.fit`, then (on rank 0) ``report.md`` and ``results.json`` in ``config.out``."""
    result = fit(config)
    if not is_main_process():
        return result
    bundle, final = result.bundle, result.final
    report = Report(config.out, f"Training {result.spec.name} on {bundle.name}")
    report.add(
        (f"Command: `{command}`\n\n" if command else "")
        + f"Data: {bundle.note} ({len(bundle.train)} train / {len(bundle.val)} validation examples). Model: "
        f"`{result.spec.to_dict()}`, {result.params:,} parameters."
    )
    rows = [[f"{100 * final['val_acc']:.2f}", f"{100 * result.best_val_acc:.2f}", f"{final['val_loss']:.4f}",
             f"{final['train_loss']:.4f}", f"{result.mean_epoch_time:.2f}", len(result.history)]]  # fmt: skip
    report.add("## Results\n\n" + markdown_table(("final val acc %", "best val acc %", "final val loss", "final train loss", "s/epoch", "epochs"), rows))
    report.add_image(plot_history(result.history, config.out / "learning_curves.png", label=result.spec.name), "Learning curves")
    results = result.to_dict()
    results["cost"] = cost_section(report, result.model, bundle.input_shape, result.spec.name)
    if attention_modules(result.model):
        results["gates"] = gate_section(report, result.model, bundle, result.spec.name)
    report.results = results
    report.write()
    return result
