"""``senet ablate``: the SENet paper's ablation studies at small scale, one table per study.

- ``reduction``: r in {2, 4, 8, 16, 32} (paper Table 10), plus the fitted optimum r* of the spec's
  ``J(r) = kappa*r^2/2 + lambda*C^2/r`` (with erratum 1's minimiser) from the validation losses;
- ``squeeze``: global average vs global max pooling (Table 11);
- ``gate``: sigmoid vs tanh vs ReLU as in the paper (Table 12), plus one_plus_tanh and hard_sigmoid;
- ``integration``: standard, pre, post, identity, inside (Table 14 and the "SE 3x3" row);
- ``stages``: SE in one stage at a time vs all stages (Table 13).

Every study also trains the plain network (no SE) as a reference row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from senet.analysis import fit_reduction, plot_reduction_sweep
from senet.data import build_data
from senet.layers.se import GATES
from senet.models.integration import INTEGRATIONS
from senet.train.checkpoint import check_writable
from senet.train.compare import CompareResult, settings_dict
from senet.train.ddp import is_main_process
from senet.train.config import ModelSpec, TrainConfig
from senet.train.experiment import Variant, VariantSummary, run_variants
from senet.train.loop import spec_for_data
from senet.train.model import build_model
from senet.train.report import Report, plot_learning_curves, summary_table

__all__ = ["STUDIES", "REDUCTIONS", "GATE_STUDY", "ablate", "study_variants", "stage_widths"]

STUDIES: tuple[str, ...] = ("reduction", "squeeze", "gate", "integration", "stages")
REDUCTIONS: tuple[int, ...] = (2, 4, 8, 16, 32)
GATE_STUDY: tuple[str, ...] = ("sigmoid", "tanh", "relu", "one_plus_tanh", "hard_sigmoid")
PAPER_TABLE = {"reduction": "Table 10", "squeeze": "Table 11", "gate": "Table 12", "stages": "Table 13", "integration": "Table 14"}


def stage_widths(model: str, base: TrainConfig) -> tuple[int, ...]:
    """The output width C of every stage of ``model`` built for ``base``'s data."""
    bundle = build_data(base.data, data_dir=base.data_dir, augment=False, image_size=base.image_size, train_limit=1, val_limit=1)
    built = build_model(spec_for_data(ModelSpec(model, {"attention": None}), bundle))
    return tuple(built.stage_channels)


def _capped(r: int, widths: Sequence[int]) -> tuple[int, ...]:
    # r is capped at each stage's width so that h = C // r >= 1 (r = 32 on a 16-channel stage acts as r = 16)
    return tuple(min(r, c) for c in widths)


def _reduction_rows(model: str, se: dict[str, object], widths: Sequence[int]) -> list[Variant]:
    return [Variant(f"r = {r}", ModelSpec(model, {"attention": "se", "reduction": _capped(r, widths)})) for r in REDUCTIONS]


def _squeeze_rows(model: str, se: dict[str, object], widths: Sequence[int]) -> list[Variant]:
    return [Variant(f"{name} squeeze", ModelSpec(model, se, squeeze=name)) for name in ("avg", "max")]


def _gate_rows(model: str, se: dict[str, object], widths: Sequence[int]) -> list[Variant]:
    return [Variant(f"{name} gate", ModelSpec(model, se, gate=name)) for name in GATE_STUDY if name in GATES]


def _integration_rows(model: str, se: dict[str, object], widths: Sequence[int]) -> list[Variant]:
    return [Variant(f"SE-{name}", ModelSpec(model, {**se, "integration": name})) for name in INTEGRATIONS]


def _stage_rows(model: str, se: dict[str, object], widths: Sequence[int]) -> list[Variant]:
    single = [Variant(f"SE in stage {i}", ModelSpec(model, {**se, "se_stages": (i,)})) for i in range(len(widths))]
    return [*single, Variant("SE in all stages", ModelSpec(model, se))]


# The rows of each study after the plain reference row; stage indices are 0-based, as in ``se_stages``.
STUDY_ROWS: dict[str, Callable[[str, dict[str, object], Sequence[int]], list[Variant]]] = {
    "reduction": _reduction_rows,
    "squeeze": _squeeze_rows,
    "gate": _gate_rows,
    "integration": _integration_rows,
    "stages": _stage_rows,
}


def study_variants(study: str, model: str, *, widths: Sequence[int], reduction: int | None = None) -> list[Variant]:
    """The rows of ``study`` for ``model`` (whose stages have ``widths`` channels), after a plain reference row."""
    if study not in STUDY_ROWS:
        raise ValueError(f"study must be one of {list(STUDIES)}, got {study!r}")
    se: dict[str, object] = {"attention": "se"} if reduction is None else {"attention": "se", "reduction": reduction}
    return [Variant("plain (no SE)", ModelSpec(model, {"attention": None})), *STUDY_ROWS[study](model, se, widths)]


def _reduction_section(report: Report, summaries: list[VariantSummary], widths: Sequence[int]) -> dict[str, object]:
    """Fit J(r) + offset to the mean validation losses of the r rows; report r* or why there is none."""
    sweep = [s for s in summaries if s.label.startswith("r = ")]
    reductions = [float(s.label.removeprefix("r = ")) for s in sweep]
    losses = [s.loss[0] for s in sweep]
    capped = [r for r in REDUCTIONS if any(r > c for c in widths)]
    note = (
        f"Stage widths C = {list(widths)}; r is capped at each stage's C (affects r = {capped}). "
        if capped
        else f"Stage widths C = {list(widths)}. "
    )
    try:
        fit = fit_reduction(reductions, losses, channels=max(widths))
    except ValueError as err:
        report.add(f"## Optimal reduction ratio\n\n{note}No r* from this sweep: {err}.")
        return {"r_star": None, "reason": str(err), "channels": max(widths)}
    plot = plot_reduction_sweep(fit, report.out / "reduction_fit.png").png
    report.add(
        f"## Optimal reduction ratio\n\n{note}Least-squares fit of validation loss = offset + kappa*r^2/2 + "
        f"lambda*C^2/r (C = {max(widths)}): kappa = {fit.kappa:.4g}, lambda = {fit.lam:.4g}, "
        f"r* = (lambda*C^2/kappa)^(1/3) = **{fit.r_star:.2f}** (errata 1: the spec prints a factor 2 that its "
        f"own J does not give); RMS misfit {fit.rms_residual:.4g}."
    )
    report.add_image(plot, "Validation loss against r, the fitted curve and r*")
    return fit.to_dict()


def ablate(
    base: TrainConfig, study: str, model: str, seeds: Sequence[int], out: Path, *, reduction: int | None, command: str
) -> CompareResult:
    """Run ``study`` for ``model`` with every seed under ``out``; write ``report.md`` and ``results.json``."""
    check_writable(out)
    widths = stage_widths(model, base)
    variants = study_variants(study, model, widths=widths, reduction=reduction)
    summaries = run_variants(base, variants, list(seeds), out)
    table = summary_table(summaries)
    if not is_main_process():
        return CompareResult(summaries, out / "report.md", out / "results.json", table)
    bundle = summaries[0].runs[0].bundle
    report = Report(out, f"Ablation '{study}' (SENet paper {PAPER_TABLE[study]}): {model} on {bundle.name}")
    report.add(
        f"Command: `{command}`\n\nData: {bundle.note}. Schedule: {base.epochs} epochs, batch {base.batch_size}, "
        f"{base.optimizer} lr {base.lr} ({base.schedule}); seeds {list(seeds)}. Accuracy/error: final epoch, "
        "mean ± sample std over seeds; FLOPs per example, 2 per multiply-add."
    )
    report.add(f"## {study}\n\n" + table)
    results: dict[str, object] = {"command": command, "study": study, "model": model, "data": bundle.name,
                                  "data_note": bundle.note, "seeds": list(seeds), "stage_widths": list(widths),
                                  "settings": settings_dict(base), "variants": [s.to_dict() for s in summaries]}  # fmt: skip
    if study == "reduction":
        results["reduction_fit"] = _reduction_section(report, summaries, widths)
    curves = plot_learning_curves(summaries, out / "learning_curves.png")
    report.add_image(curves, "Learning curves of every row (mean over seeds)")
    report.results = results
    paths = report.write()
    return CompareResult(summaries, *paths, table)
