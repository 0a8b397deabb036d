"""Figures of the analysis, saved as PNG and SVG with matplotlib (no pyplot, so no global backend state).

- :func:`plot_gate_profiles`: per block, each class's mean gate per channel (the SENet paper's excitation figures);
- :func:`plot_gate_histograms`: per block, the distribution of gate values;
- :func:`plot_cost_breakdown`: per stage FLOPs and parameters without SE and the SE share on top;
- :func:`plot_reduction_sweep`: measured losses of an r-sweep, the fitted J(r) curve and r*.

Each takes a ``path`` (its suffix is replaced) and returns a :class:`SavedPlot` with both files and the figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from senet.analysis.gates import GateStats
from senet.analysis.reduction import ReductionFit
from senet.analysis.report import CostReport

__all__ = ["SavedPlot", "plot_gate_profiles", "plot_gate_histograms", "plot_cost_breakdown", "plot_reduction_sweep"]


@dataclass(frozen=True)
class SavedPlot:
    png: Path
    svg: Path
    figure: Figure


def _save(fig: Figure, path: str | Path) -> SavedPlot:
    base = Path(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    png, svg = base.with_suffix(".png"), base.with_suffix(".svg")
    fig.savefig(png, dpi=100)
    fig.set_layout_engine("none")  # keep the positions the first save computed: the SVG needs no second layout pass
    fig.savefig(svg)
    return SavedPlot(png=png, svg=svg, figure=fig)


def _grid(count: int, *, width: float = 4.0, height: float = 3.0, columns: int = 3) -> tuple[Figure, list]:
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    fig = Figure(figsize=(width * columns, height * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel().tolist()
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def _select(stats: GateStats, blocks: Sequence[str] | None) -> list:
    if not isinstance(stats, GateStats):
        raise TypeError(f"stats must be a GateStats (from collect_gates), got {type(stats).__name__}")
    chosen = [stats.block(name) for name in blocks] if blocks is not None else list(stats.blocks)
    if not chosen:
        raise ValueError("no gate blocks to plot")
    return chosen


def plot_gate_profiles(
    stats: GateStats,
    path: str | Path,
    *,
    blocks: Sequence[str] | None = None,
    classes: Sequence[int] | None = None,
    max_channels: int | None = 64,
) -> SavedPlot:
    """One panel per block: x the channel index, y each class's mean gate (one line per class) and the mean over
    all examples (black), in the style of the SENet paper's Fig. 6. ``max_channels`` keeps the first channels."""
    chosen = _select(stats, blocks)
    fig, axes = _grid(len(chosen))
    for ax, block in zip(axes, chosen):
        shown = block.channels if max_channels is None else min(block.channels, max_channels)
        index = np.arange(shown)
        for k, label in enumerate(block.classes):
            if classes is None or label in classes:
                ax.plot(index, block.mean[k, :shown].numpy(), linewidth=0.8, alpha=0.8, label=f"class {label}")
        ax.plot(index, block.profile[:shown].numpy(), color="black", linewidth=1.5, label="all")
        ax.set_title(f"{block.name}\ndivergence {block.divergence:.3f}", fontsize=9)
        ax.set_xlabel("channel index")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("gate activation")
        ax.set_ylim(min(0.0, float(block.mean.min())), max(1.0, float(block.mean.max())))
    axes[-1].legend(fontsize=6, ncol=2)
    return _save(fig, path)


def plot_gate_histograms(stats: GateStats, path: str | Path, *, blocks: Sequence[str] | None = None) -> SavedPlot:
    """One panel per block: the fraction of gate values (over examples and channels) in each bin of [0, 1]."""
    chosen = _select(stats, blocks)
    fig, axes = _grid(len(chosen))
    edges = np.linspace(0.0, 1.0, stats.bins + 1)
    for ax, block in zip(axes, chosen):
        fractions = block.histogram.double().numpy() / max(int(block.histogram.sum()), 1)
        ax.bar(edges[:-1], fractions, width=np.diff(edges), align="edge", color="tab:blue")
        ax.set_title(f"{block.name}\nnear 0: {block.near_zero:.2f}, near 1: {block.near_one:.2f}", fontsize=9)
        ax.set_xlabel("gate value")
        ax.set_ylabel("fraction of gates")
        ax.set_xlim(0.0, 1.0)
    return _save(fig, path)


def plot_cost_breakdown(report: CostReport, path: str | Path) -> SavedPlot:
    """Two panels over the stages: FLOPs and parameters without SE, with the SE share stacked on top."""
    if not isinstance(report, CostReport):
        raise TypeError(f"report must be a CostReport (from model_cost), got {type(report).__name__}")
    stages = list(report.stages)
    names = [row.name for row in stages]
    position = np.arange(len(stages))
    fig = Figure(figsize=(max(6.0, 1.2 * len(stages)) * 2, 4.0), layout="constrained")
    flops_ax, params_ax = fig.subplots(1, 2)
    for ax, base, extra, ylabel in (
        (flops_ax, [r.flops_without_se for r in stages], [r.se_flops for r in stages], "FLOPs per example"),
        (params_ax, [r.params_without_se for r in stages], [r.se_params for r in stages], "parameters"),
    ):
        ax.bar(position, base, color="tab:gray", label="without SE")
        ax.bar(position, extra, bottom=base, color="tab:red", label="SE")
        for x, b, e in zip(position, base, extra):
            if b:
                ax.annotate(f"+{100 * e / b:.1f}%", (x, b + e), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(position, names, rotation=30, ha="right")
        ax.set_xlabel("stage")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    total = report.total
    fig.suptitle(
        f"SE overhead: +{total.flops_overhead:.2f}% FLOPs, +{total.params_overhead:.2f}% parameters", fontsize=10
    )
    return _save(fig, path)


def plot_reduction_sweep(fit: ReductionFit, path: str | Path) -> SavedPlot:
    """The measured losses of an r-sweep, the fitted ``offset + kappa*r^2/2 + lam*C^2/r`` and its minimiser r*."""
    if not isinstance(fit, ReductionFit):
        raise TypeError(f"fit must be a ReductionFit (from fit_reduction), got {type(fit).__name__}")
    measured = np.asarray(fit.reductions)
    lo, hi = min(measured.min(), fit.r_star) / 1.5, max(measured.max(), fit.r_star) * 1.5
    r = np.geomspace(lo, hi, 200)
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.subplots()
    ax.plot(measured, fit.losses, "o", color="tab:blue", label="measured")
    ax.plot(r, fit.predict(r), color="tab:orange", label="fitted J(r) + offset")
    ax.axvline(fit.r_star, color="tab:green", linestyle="--", label=f"r* = {fit.r_star:.1f}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("reduction ratio r")
    ax.set_ylabel("validation loss")
    ax.legend(fontsize=8)
    return _save(fig, path)
