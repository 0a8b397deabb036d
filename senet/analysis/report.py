"""Whole-model cost report: FLOPs and parameters per block and per stage, with and without SE.

:func:`model_cost` runs one forward pass of a single example with forward hooks, without changing the
model, and counts under one convention:

- **Convolutions and linear layers** (every ``nn.Conv*``/``nn.ConvTranspose*`` and ``nn.Linear`` module, inside
  attention layers too): 2 FLOPs per multiply-add, biases excluded, from the shapes seen by the hooks.
  ``torch.utils.flop_counter.FlopCounterMode`` uses exactly this convention for ``aten.convolution``,
  ``aten.mm``/``aten.addmm`` (the bias add of ``addmm`` is not counted), so the report's ``dense_flops``
  equals ``flop_counter_flops``, measured in the same pass, whenever every matrix product of the model lives in
  such a module. ``FlopCounterMode`` also counts functional products (``torch.matmul``/``bmm``/``einsum``, e.g.
  the attention pooling of a global-context block), which the hooks do not see: a difference points at them.
- **Attention layers** (every module whose class is registered in ``senet.layers.ATTENTION_LAYERS``; "SE" in
  the field names means any of them): the layer's own analytic ``.flops(spatial_shape)``, for
  :class:`~senet.layers.SqueezeExcite` the spec's ``F_SE = 2*C*P + 4*C*h`` (pooling ``C*P``, the FCs, reweighting
  ``C*P``). A layer without ``.flops`` is charged the convolution/linear FLOPs measured inside it.
- **Not counted** by either: batch norm, activations, residual additions, pooling outside attention layers
  and the classifier's global pooling. ``FlopCounterMode`` counts no pooling or elementwise op at all, so
  its total lacks the ``2*C*P`` of every SE block's pooling and reweighting; the report adds them.

FLOPs are for one example; divide by 2 for the multiply-adds that the SENet paper calls FLOPs
(ResNet-50 "3.86 GFLOPs"). Blocks are the children of each stage (``ClassifierModel.stage_modules()``;
for other models every top-level child is a stage); what precedes the stages is ``stem``, the classifier
``fc`` is ``head``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from senet.layers.registry import ATTENTION_LAYERS
from senet.models.base import ClassifierModel

__all__ = ["CostRow", "AttentionCost", "CostReport", "model_cost", "attention_modules"]


@dataclass(frozen=True)
class CostRow:
    """FLOPs (per example) and parameters of one block, one stage or the whole model."""

    stage: str
    name: str
    flops: int  # with SE
    se_flops: int
    params: int  # with SE
    se_params: int

    @property
    def flops_without_se(self) -> int:
        return self.flops - self.se_flops

    @property
    def params_without_se(self) -> int:
        return self.params - self.se_params

    @property
    def flops_overhead(self) -> float:
        """SE FLOPs in % of the FLOPs without SE (0 for a row without FLOPs)."""
        return 100.0 * self.se_flops / self.flops_without_se if self.flops_without_se else 0.0

    @property
    def params_overhead(self) -> float:
        """SE parameters in % of the parameters without SE (0 for a row without parameters)."""
        return 100.0 * self.se_params / self.params_without_se if self.params_without_se else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            **asdict(self),
            "flops_without_se": self.flops_without_se,
            "params_without_se": self.params_without_se,
            "flops_overhead_percent": self.flops_overhead,
            "params_overhead_percent": self.params_overhead,
        }


@dataclass(frozen=True)
class AttentionCost:
    """One attention layer as seen in the forward pass, and its side of the spec's crossover."""

    name: str  # qualified module name, e.g. "layer4.2.se"
    layer: str  # class name
    stage: str
    block: str
    channels: int  # C of the layer's input
    spatial_shape: tuple[int, ...]  # its spatial shape, P = prod
    hidden_channels: int | None  # h, where the layer has one
    flops: int  # analytic (F_SE for SE), or the measured FC FLOPs when ``analytic`` is False
    fc_flops: int  # convolution/linear FLOPs measured inside the layer (4*C*h for SE)
    params: int
    analytic: bool

    @property
    def fc_share(self) -> float:
        """Fraction of the layer's FLOPs spent in its FCs (>= 0.5 past the crossover)."""
        return self.fc_flops / self.flops if self.flops else 0.0

    @property
    def crossover_channels(self) -> float | None:
        """The spec's ``r*P/2`` with the layer's effective ratio ``r = C/h`` (``r*S^2/2`` for S x S maps):
        the FCs are at least half of ``F_SE`` iff ``channels >= crossover_channels``. None without an h."""
        if self.hidden_channels is None:
            return None
        return (self.channels / self.hidden_channels) * math.prod(self.spatial_shape) / 2

    @property
    def side(self) -> str | None:
        """``"fc"`` when the FCs dominate (``C >= r*P/2``), ``"spatial"`` when pooling and reweighting do; None for
        a layer without a bottleneck width h (ECA, CBAM's spatial half, ...), to which the crossover does not apply."""
        if self.hidden_channels is None:
            return None
        return "fc" if self.fc_share >= 0.5 else "spatial"

    def to_dict(self) -> dict[str, object]:
        return {
            **asdict(self),
            "spatial_shape": list(self.spatial_shape),
            "fc_share": self.fc_share,
            "crossover_channels": self.crossover_channels,
            "side": self.side,
        }


@dataclass(frozen=True)
class CostReport:
    """The result of :func:`model_cost`; FLOPs are per example, under the convention of this module."""

    input_shape: tuple[int, ...]
    blocks: tuple[CostRow, ...]
    stages: tuple[CostRow, ...]
    total: CostRow
    attention: tuple[AttentionCost, ...]
    dense_flops: int  # every conv/linear FLOP (attention FCs included), from the hooks
    flop_counter_flops: int  # FlopCounterMode's total for the same forward pass

    def to_dict(self) -> dict[str, object]:
        return {
            "input_shape": list(self.input_shape),
            "total": self.total.to_dict(),
            "stages": [row.to_dict() for row in self.stages],
            "blocks": [row.to_dict() for row in self.blocks],
            "attention": [layer.to_dict() for layer in self.attention],
            "dense_flops": self.dense_flops,
            "flop_counter_flops": self.flop_counter_flops,
        }

    def to_markdown(self) -> str:
        """Three Markdown tables: stages (with the total), blocks, and the attention layers' crossover."""
        head = (
            "| {col} | FLOPs w/o SE | SE FLOPs | FLOPs | FLOPs +% | params w/o SE | SE params | params | params +% |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        )

        def line(label: str, row: CostRow) -> str:
            return (
                f"| {label} | {row.flops_without_se:,} | {row.se_flops:,} | {row.flops:,} | {row.flops_overhead:.2f} "
                f"| {row.params_without_se:,} | {row.se_params:,} | {row.params:,} | {row.params_overhead:.2f} |"
            )

        shape = "x".join(map(str, self.input_shape))
        parts = [f"Cost for one example of shape {shape} (FLOPs: 2 per multiply-add; see senet.analysis.report).", ""]
        parts += [head.format(col="stage"), *(line(row.name, row) for row in self.stages)]
        parts.append(line("**total**", self.total))
        parts += ["", head.format(col="block"), *(line(row.name, row) for row in self.blocks)]
        if self.attention:
            parts += [
                "",
                "| attention layer | C | spatial | h | FLOPs | FC share | crossover C = r*P/2 | side |",
                "|---|---:|---|---:|---:|---:|---:|---|",
            ]
            for a in self.attention:
                cross = "-" if a.crossover_channels is None else f"{a.crossover_channels:g}"
                spatial = "x".join(map(str, a.spatial_shape))
                parts.append(
                    f"| {a.name} | {a.channels} | {spatial} | {a.hidden_channels if a.hidden_channels else '-'} "
                    f"| {a.flops:,} | {a.fc_share:.3f} | {cross} | {a.side or '-'} |"
                )
        parts += [
            "",
            f"conv/linear FLOPs from hooks: {self.dense_flops:,}; FlopCounterMode: {self.flop_counter_flops:,}.",
        ]
        return "\n".join(parts)


def attention_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The outermost modules of ``model`` whose class is a registered attention layer, by qualified name."""
    classes = tuple(ATTENTION_LAYERS.values())
    found: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if isinstance(module, classes) and not any(name.startswith(prefix + ".") for prefix in found):
            found[name] = module
    return found


def _under(name: str, prefix: str) -> bool:
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


class _Layout:
    """Maps a qualified module or parameter name to its (stage, block)."""

    def __init__(self, model: nn.Module) -> None:
        if isinstance(model, ClassifierModel):
            ids = {id(stage) for stage in model.stage_modules()}
            self.stages = [name for name, module in model.named_modules() if id(module) in ids and name]
            self.head = "fc"
        else:
            self.stages = [name for name, _ in model.named_children()]
            self.head = None

    def locate(self, name: str) -> tuple[str, str]:
        for stage in self.stages:
            if _under(name, stage):
                rest = name[len(stage) + 1 :] if name != stage else ""
                return stage, f"{stage}.{rest.split('.')[0]}" if rest else stage
        if self.head is not None and _under(name, self.head):
            return "head", "head"
        return "stem", "stem"

    def order(self) -> list[str]:
        return ["stem", *self.stages, "head"]


def _dense_flops(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    """Conv/linear FLOPs of one call: 2 per multiply-add, no bias (FlopCounterMode's convention)."""
    if isinstance(module, nn.Linear):
        return 2 * inputs[0].numel() * module.out_features
    kernel = math.prod(module.kernel_size)
    if module.transposed:  # each input position scatters into C_out/groups x kernel outputs
        return 2 * inputs[0].numel() * (module.out_channels // module.groups) * kernel
    return 2 * output.numel() * (module.in_channels // module.groups) * kernel


def _check_input_shape(model: nn.Module, input_shape: object) -> tuple[int, ...]:
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) < 2:
        raise TypeError(f"input_shape must be (C, *spatial) for one example, e.g. (3, 224, 224), got {input_shape!r}")
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in input_shape):
        raise ValueError(f"input_shape must contain positive ints, got {tuple(input_shape)!r}")
    if isinstance(model, ClassifierModel):
        expected = model.spatial_dims + 1
        if len(input_shape) != expected or input_shape[0] != model.in_channels:
            raise ValueError(
                f"input_shape must be (C={model.in_channels}, *spatial) with {model.spatial_dims} spatial dims "
                f"for this model (no batch dimension), got {tuple(input_shape)!r}"
            )
    return tuple(input_shape)


def _measure(
    model: nn.Module, input_shape: tuple[int, ...], attention: dict[str, nn.Module]
) -> tuple[dict[str, int], dict[str, tuple[int, ...]], int]:
    """One forward pass of a batch of 1 (eval, no grad, flags restored) under hooks and ``FlopCounterMode``.

    Returns the conv/linear FLOPs per module name, the input shape ``(C, *S)`` of every attention layer that ran,
    and ``FlopCounterMode``'s total."""
    dense: dict[str, int] = defaultdict(int)
    seen: dict[str, tuple[int, ...]] = {}

    def dense_hook(name: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            dense[name] += _dense_flops(module, inputs, output)

        return hook

    def attention_hook(name: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            seen[name] = tuple(inputs[0].shape[1:])  # (C, *S)

        return hook

    handles = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):  # _ConvNd: every Conv/ConvTranspose rank
            handles.append(module.register_forward_hook(dense_hook(name)))
        if name in attention:
            handles.append(module.register_forward_hook(attention_hook(name)))
    first = next(model.parameters(), None)
    floating = first is not None and first.is_floating_point()
    x = torch.randn(1, *input_shape, device=first.device if first is not None else None,
                    dtype=first.dtype if floating else None)  # fmt: skip
    modes = {module: module.training for module in model.modules()}
    try:
        model.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    return dict(dense), seen, int(counter.get_total_flops())


def _attention_cost(
    name: str, module: nn.Module, shape: tuple[int, ...], dense: dict[str, int], params: dict[str, int], layout: _Layout
) -> AttentionCost:
    channels, *spatial = shape
    fc = sum(flops for n, flops in dense.items() if _under(n, name))
    flops_fn = getattr(module, "flops", None)
    stage, block = layout.locate(name)
    return AttentionCost(
        name=name,
        layer=type(module).__name__,
        stage=stage,
        block=block,
        channels=channels,
        spatial_shape=tuple(spatial),
        hidden_channels=getattr(module, "hidden_channels", None),
        flops=int(flops_fn(tuple(spatial))) if callable(flops_fn) else fc,
        fc_flops=fc,
        params=sum(n for p, n in params.items() if _under(p, name)),
        analytic=callable(flops_fn),
    )


def model_cost(model: nn.Module, input_shape: tuple[int, ...]) -> CostReport:
    """FLOPs and parameters of ``model`` per block and stage, with and without SE, for one example.

    ``input_shape`` is ``(C, *spatial)`` without the batch dimension, e.g. ``(3, 224, 224)``. The model is
    run once (batch of 1, eval mode, no grad; its train/eval flags are restored) with forward hooks on
    every convolution, linear and attention layer and under ``FlopCounterMode``. "Without SE" removes
    every attention layer's FLOPs and parameters (they preserve shapes, so the rest is unchanged).
    See the module docstring for what is counted.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    input_shape = _check_input_shape(model, input_shape)
    layout = _Layout(model)
    attention = attention_modules(model)
    dense, seen, counted = _measure(model, input_shape, attention)
    params = {name: p.numel() for name, p in model.named_parameters()}
    costs = tuple(  # layers built but unused in the forward pass get no cost row (their parameters still count)
        _attention_cost(name, module, seen[name], dense, params, layout)
        for name, module in attention.items()
        if name in seen
    )

    def in_attention(name: str) -> bool:
        return any(_under(name, a) for a in attention)

    # (stage, block) -> [flops, se_flops, params, se_params]
    cells: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for name, flops in dense.items():
        if not in_attention(name):
            cells[layout.locate(name)][0] += flops
    for a in costs:
        cells[(a.stage, a.block)][0] += a.flops
        cells[(a.stage, a.block)][1] += a.flops
    for name, count in params.items():
        cell = cells[layout.locate(name.rpartition(".")[0])]
        cell[2] += count
        cell[3] += count if in_attention(name) else 0

    first_seen: dict[tuple[str, str], int] = {}  # blocks in module registration order
    for index, (name, _) in enumerate(model.named_modules()):
        first_seen.setdefault(layout.locate(name), index)
    order = {stage: i for i, stage in enumerate(layout.order())}
    keys = sorted(cells, key=lambda key: (order[key[0]], first_seen.get(key, len(first_seen))))
    stages = [stage for stage in layout.order() if any(s == stage for s, _ in cells)]
    return CostReport(
        input_shape=input_shape,
        blocks=tuple(CostRow(stage, block, *cells[(stage, block)]) for stage, block in keys),
        stages=tuple(
            CostRow(stage, stage, *(sum(row[i] for (s, _), row in cells.items() if s == stage) for i in range(4)))
            for stage in stages
        ),
        total=CostRow("total", "total", *(sum(row[i] for row in cells.values()) for i in range(4))),
        attention=costs,
        dense_flops=sum(dense.values()),
        flop_counter_flops=counted,
    )
