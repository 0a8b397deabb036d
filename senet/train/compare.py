"""``senet compare``: the same network with and without SE (and optionally SE's relatives), several seeds
each, the same data and schedule; a table of accuracy, parameters, FLOPs and time per epoch, learning
curves, the SE model's gate statistics and its cost breakdown."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn

from senet.analysis import collect_gates, model_cost, plot_cost_breakdown, plot_gate_histograms, plot_gate_profiles
from senet.data import DATASETS, DataBundle, make_loader
from senet.layers.registry import get_attention
from senet.train.checkpoint import check_writable
from senet.train.config import ModelSpec, TrainConfig
from senet.train.ddp import is_main_process
from senet.train.experiment import Variant, VariantSummary, run_variants
from senet.train.report import Report, markdown_table, plot_learning_curves, summary_table

__all__ = ["CompareResult", "compare", "compare_variants", "gate_section", "cost_section", "settings_dict", "last_block_per_stage"]


@dataclass
class CompareResult:
    summaries: list[VariantSummary]
    report: Path
    results: Path
    table: str


def settings_dict(base: TrainConfig) -> dict[str, object]:
    """The shared training settings of a study (without the per-run model, seed and folder)."""
    return {k: v for k, v in base.to_dict().items() if k not in ("model", "seed", "out", "resume")}


def compare_variants(model: str, *, reduction: int | None, relatives: Sequence[str] = ()) -> list[Variant]:
    """``plain`` (attention None), ``se``, and one variant per relative (a key of ATTENTION_LAYERS)."""
    options = {} if reduction is None else {"reduction": reduction}
    variants = [Variant("plain", ModelSpec(model, {"attention": None})), Variant("se", ModelSpec(model, {"attention": "se", **options}))]
    for name in relatives:
        get_attention(name)  # ValueError listing the registered names
        if name != "se":
            variants.append(Variant(name, ModelSpec(model, {"attention": name, **options})))
    return variants


def gate_loader(bundle: DataBundle):
    """The validation split for gate statistics; padded data one example at a time, so that no gate sees padding."""
    batch = 1 if bundle.variable_length else 256
    return make_loader(bundle.val, batch_size=batch, train=False, seed=0, variable_length=bundle.variable_length)


def last_block_per_stage(names: Sequence[str]) -> list[str]:
    """The last gate of each stage (names grouped by their first component, e.g. ``layer2``), for the plots."""
    last: dict[str, str] = {}
    for name in names:
        last[name.split(".")[0]] = name
    return list(last.values())


def gate_section(report: Report, model: nn.Module, bundle: DataBundle, label: str) -> dict[str, object]:
    """Gate statistics of ``model`` on ``bundle``'s validation split: a table and two plots."""
    stats = collect_gates(model, gate_loader(bundle))
    stats.to_json(report.out / "gates.json")
    shown = last_block_per_stage(stats.names)
    profiles = plot_gate_profiles(stats, report.out / "gate_profiles.png", blocks=shown).png
    histograms = plot_gate_histograms(stats, report.out / "gate_histograms.png", blocks=shown).png
    rows = [
        [s["block"], s["channels"], f"{s['mean_gate']:.3f}", f"{s['std_gate']:.3f}", f"{s['near_zero']:.3f}",
         f"{s['near_one']:.3f}", f"{s['divergence']:.3f}", f"{s['class_variance_ratio']:.3f}"]
        for s in stats.summary()
    ]  # fmt: skip
    report.add(
        f"## Gate statistics of the {label} model ({stats.num_examples} validation examples)\n\n"
        "Per block: mean and spread of the gates, fractions near 0 (< 0.05) and near 1 (> 0.95), and how "
        "class-specific the gates are (divergence between class-mean profiles; eta^2, the share of gate variance "
        "explained by the class).\n\n"
        + markdown_table(("block", "C", "mean", "std", "near 0", "near 1", "divergence", "eta^2"), rows)
    )
    report.add_image(profiles, f"Mean gate per channel and class, last block of each stage ({label})")
    report.add_image(histograms, f"Distribution of gate values, last block of each stage ({label})")
    return {"blocks": stats.summary(), "file": "gates.json"}


def cost_section(report: Report, model: nn.Module, input_shape: tuple[int, ...], label: str) -> dict[str, object]:
    """The cost breakdown (FLOPs and parameters per stage and block) of ``model`` for one example of ``input_shape``."""
    cost = model_cost(model.eval(), tuple(input_shape))
    plot = plot_cost_breakdown(cost, report.out / "cost_breakdown.png").png
    report.add(f"## Cost of the {label} model\n\n" + cost.to_markdown())
    report.add_image(plot, f"FLOPs and parameters per stage, with the SE share ({label})")
    return cost.to_dict()


def _delta_text(plain: VariantSummary, se: VariantSummary) -> tuple[str, dict[str, float]]:
    (pa, ps), (sa, ss) = plain.accuracy, se.accuracy
    delta = sa - pa
    noise = ps + ss
    verdict = "larger than" if abs(delta) > noise else "within"
    numbers = {
        "acc_delta_points": 100 * delta,
        "params_overhead_percent": 100 * (se.params - plain.params) / plain.params,
        "flops_overhead_percent": 100 * (se.flops - plain.flops) / plain.flops,
        "time_overhead_percent": 100 * (se.epoch_time - plain.epoch_time) / plain.epoch_time,
    }
    text = (
        f"SE minus plain: {numbers['acc_delta_points']:+.2f} accuracy points ({verdict} the sum of the two seed "
        f"standard deviations, {100 * noise:.2f}); parameters {numbers['params_overhead_percent']:+.2f}%, "
        f"FLOPs {numbers['flops_overhead_percent']:+.2f}%, time per epoch {numbers['time_overhead_percent']:+.1f}%."
    )
    return text, numbers


def compare(base: TrainConfig, variants: list[Variant], seeds: Sequence[int], out: Path, *, command: str) -> CompareResult:
    """Train ``variants`` (the first is the baseline, a variant labelled ``se`` gets the gate analysis)
    with every seed under ``out`` and write ``report.md`` and ``results.json`` there."""
    check_writable(out)
    summaries = run_variants(base, variants, list(seeds), out)
    table = summary_table(summaries)
    first = summaries[0].runs[0]
    report = Report(out, f"SE vs plain: {variants[0].spec.name} on {first.bundle.name}")
    if not is_main_process():
        return CompareResult(summaries, out / "report.md", out / "results.json", table)
    report.add(
        f"Command: `{command}`\n\nData: {first.bundle.note} ({len(first.bundle.train)} train / {len(first.bundle.val)} "
        f"validation examples, input {tuple(first.bundle.input_shape)}). Schedule: {base.epochs} epochs, batch "
        f"{base.batch_size}, {base.optimizer} lr {base.lr} ({base.schedule}), weight decay {base.weight_decay}, "
        f"label smoothing {base.label_smoothing}; seeds {list(seeds)}. Accuracy is the final epoch's, "
        "mean ± sample std over seeds; FLOPs per example, 2 per multiply-add."
    )
    report.add(f"## Results\n\n{table}\n\nData: {first.bundle.note}.")
    by_label = {s.label: s for s in summaries}
    results: dict[str, object] = {"command": command, "task": DATASETS[first.bundle.name].task, "data": first.bundle.name, "data_note": first.bundle.note,
                                  "seeds": list(seeds), "settings": settings_dict(base), "variants": [s.to_dict() for s in summaries]}  # fmt: skip
    if "plain" in by_label and "se" in by_label:
        text, numbers = _delta_text(by_label["plain"], by_label["se"])
        report.add(text)
        results["se_vs_plain"] = numbers
    curves = plot_learning_curves(summaries, out / "learning_curves.png")
    report.add_image(curves, "Learning curves: validation accuracy and training loss per epoch")
    if "se" in by_label:
        se_run = by_label["se"].runs[0]
        results["gates"] = gate_section(report, se_run.model, se_run.bundle, f"SE (seed {se_run.config.seed})")
        results["cost"] = cost_section(report, se_run.model, se_run.bundle.input_shape, "SE")
    report.results = results
    paths = report.write()
    return CompareResult(summaries, *paths, table)
