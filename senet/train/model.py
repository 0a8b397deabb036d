"""Build the model of a run from its :class:`~senet.train.config.ModelSpec`, and run registry models
on padded variable-length batches with the masked squeeze."""

from __future__ import annotations

import inspect

import torch
import torch.nn as nn

from senet.layers.checks import check_choice
from senet.layers.se import GATES, SQUEEZES, SqueezeExcite, global_pool, lengths_to_mask
from senet.models.base import ClassifierModel
from senet.models.registry import create_model
from senet.train.config import ModelSpec

__all__ = ["build_model", "configure_se", "se_modules", "MaskedSequenceModel", "scale_lengths", "forward_batch"]


def se_modules(model: nn.Module) -> dict[str, SqueezeExcite]:
    """Every :class:`SqueezeExcite` inside ``model``, by qualified name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, SqueezeExcite)}


def configure_se(model: nn.Module, *, squeeze: str | None = None, gate: str | None = None) -> nn.Module:
    """Set the squeeze (z: ``"avg"``, ``"max"``, ``"avgmax"``) and the gate (sigma: a key of ``GATES``) of every
    SqueezeExcite in ``model``, in place. These are the paper's squeeze and excitation ablations; they
    change no parameter, so state dicts stay compatible. ``None`` keeps the current choice."""
    if squeeze is None and gate is None:
        return model
    if squeeze is not None:
        check_choice("squeeze", squeeze, SQUEEZES)
    if gate is not None:
        check_choice("gate", gate, GATES)
    layers = se_modules(model)
    if not layers:
        raise ValueError(f"squeeze/gate options need SE layers, but {type(model).__name__} has none (attention is not 'se')")
    for layer in layers.values():
        if squeeze is not None:
            layer.squeeze = squeeze
        if gate is not None:
            layer.gate = GATES[gate]()
            layer.gate_name = gate
    return model


def build_model(spec: ModelSpec) -> nn.Module:
    """``create_model(spec.name, **spec.options)`` with the spec's squeeze and gate applied."""
    model = create_model(spec.name, **spec.options)
    return configure_se(model, squeeze=spec.squeeze, gate=spec.gate)


def scale_lengths(lengths: torch.Tensor, input_length: int, length: int) -> torch.Tensor:
    """Valid positions left of each example after the sequence shrank from ``input_length`` to ``length``
    (strided convolutions and pools): ``ceil(lengths * length / input_length)``, at least 1."""
    scaled = torch.div(lengths * length + input_length - 1, input_length, rounding_mode="floor")
    return scaled.clamp(1, length)


class MaskedSequenceModel(nn.Module):
    """Runs a 1-D :class:`ClassifierModel` on zero-padded batches so that padding changes nothing global.

    ``forward(x, lengths)``: x ``(N, C, L)`` padded, ``lengths`` ``(N,)``. Every submodule whose ``forward``
    takes a ``mask`` (SqueezeExcite) gets the validity mask of its own input, the lengths scaled by the
    downsampling seen so far; the classifier's global pool averages valid positions only. The wrapped
    model's parameters and state dict are unchanged (``.model``).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not isinstance(model, ClassifierModel) or model.spatial_dims != 1:
            raise ValueError(f"variable-length data needs a 1-D senet classifier, got {type(model).__name__}")
        self.model = model
        self._lengths: torch.Tensor | None = None
        self._input_length = 0
        for module in model.modules():
            if module is not model and "mask" in inspect.signature(module.forward).parameters:
                module.register_forward_pre_hook(self._give_mask, with_kwargs=True)

    def _mask(self, length: int) -> torch.Tensor:
        return lengths_to_mask(scale_lengths(self._lengths, self._input_length, length), length)  # (N, length)

    def _give_mask(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if self._lengths is None or "mask" in kwargs:
            return None
        return args, {**kwargs, "mask": self._mask(args[0].shape[-1])}

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        self._lengths, self._input_length = lengths.to(x.device), x.shape[-1]
        try:
            features = self.model.forward_features(x)  # (N, C, L) -> (N, F, L')
            pooled = global_pool(features, "avg", self._mask(features.shape[-1]))  # (N, F, L') -> (N, F)
            return self.model.forward_head(pooled.unsqueeze(-1))  # (N, F, 1) -> (N, classes)
        finally:
            self._lengths = None


def forward_batch(model: nn.Module, inputs: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Logits for a batch: ``model(inputs)``, or ``model(inputs, lengths)`` for padded batches."""
    return model(inputs) if lengths is None else model(inputs, lengths)
