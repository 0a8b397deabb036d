"""The spec's analysis as functions checked against measurement; depends on ``senet.layers`` and ``senet.models``.

- ``cost``: F_SE, SE parameters and the crossover ``C >= r*S^2/2`` (:func:`se_flops`, :func:`se_params`);
- ``report``: whole-model FLOPs/params per block and stage with and without SE (:func:`model_cost`);
- ``reduction``: J(r), its true minimiser (spec erratum 1) and a fit to an r-sweep (:func:`optimal_reduction`,
  :func:`fit_reduction`);
- ``theory``: bias-variance of gated sums, gating as ridge shrinkage (erratum 2);
- ``affine``: SE vs BN as channel-wise affine maps, SE vs 1x1 convolutions;
- ``placement``: SE before/after the activation (erratum 3), two-stage gating;
- ``gates``: gate statistics of a model on data (:func:`collect_gates`);
- ``plots``: the figures (PNG and SVG).
"""

from senet.analysis.affine import (
    ChannelAffine,
    as_local_gate,
    bn_affine,
    excitation_as_conv,
    se_affine,
    squeeze_descriptor,
)
from senet.analysis.cost import crossover_channels, fc_share, se_fc_flops, se_flops, se_params
from senet.analysis.gates import BlockGates, GateStats, collect_gates, gate_modules
from senet.analysis.placement import (
    GateSaturation,
    PlacementGap,
    TwoStageGating,
    gate_saturation,
    homogeneity_gap,
    se_placement_gap,
    two_stage_gating,
)
from senet.analysis.plots import (
    SavedPlot,
    plot_cost_breakdown,
    plot_gate_histograms,
    plot_gate_profiles,
    plot_reduction_sweep,
)
from senet.analysis.reduction import (
    ReductionFit,
    fit_reduction,
    optimal_reduction,
    reduction_objective,
    spec_printed_reduction,
)
from senet.analysis.report import AttentionCost, CostReport, CostRow, attention_modules, model_cost
from senet.analysis.theory import (
    GatedEstimate,
    gated_sum_stats,
    noise_gates,
    optimal_free_gates,
    optimal_noise_gamma,
    shrinkage_factor,
    shrinkage_gate,
    shrinkage_objective,
)

__all__ = [
    "se_flops",
    "se_params",
    "se_fc_flops",
    "crossover_channels",
    "fc_share",
    "model_cost",
    "CostReport",
    "CostRow",
    "AttentionCost",
    "attention_modules",
    "reduction_objective",
    "optimal_reduction",
    "spec_printed_reduction",
    "fit_reduction",
    "ReductionFit",
    "GatedEstimate",
    "gated_sum_stats",
    "noise_gates",
    "optimal_noise_gamma",
    "optimal_free_gates",
    "shrinkage_factor",
    "shrinkage_gate",
    "shrinkage_objective",
    "ChannelAffine",
    "bn_affine",
    "se_affine",
    "excitation_as_conv",
    "as_local_gate",
    "squeeze_descriptor",
    "homogeneity_gap",
    "PlacementGap",
    "se_placement_gap",
    "GateSaturation",
    "gate_saturation",
    "TwoStageGating",
    "two_stage_gating",
    "collect_gates",
    "gate_modules",
    "GateStats",
    "BlockGates",
    "SavedPlot",
    "plot_gate_profiles",
    "plot_gate_histograms",
    "plot_cost_breakdown",
    "plot_reduction_sweep",
]
