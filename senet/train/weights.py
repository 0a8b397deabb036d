"""Trained weights as files: safetensors with the model spec in its metadata, and rebuilding a model from
a weights file or a training checkpoint (never executing code from the file)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn

from senet.models.registry import check_state_dict
from senet.train.checkpoint import atomic_write, load_checkpoint
from senet.train.config import ModelSpec
from senet.train.model import build_model

__all__ = ["save_weights", "load_trained", "Trained", "SPEC_KEY", "SHAPE_KEY"]

SPEC_KEY = "senet_model_spec"
SHAPE_KEY = "senet_input_shape"  # one example's (C, *S) in the data the model was trained on


@dataclass
class Trained:
    model: nn.Module
    spec: ModelSpec
    input_shape: tuple[int, ...] | None


def save_weights(path: str | Path, model: nn.Module, spec: ModelSpec, input_shape: tuple[int, ...] | None = None) -> Path:
    """Write ``model``'s state dict to a ``.safetensors`` file (atomically) with ``spec`` (and the
    training data's ``input_shape``) as metadata."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {SPEC_KEY: json.dumps(spec.to_dict())}
    if input_shape is not None:
        metadata[SHAPE_KEY] = json.dumps(list(input_shape))
    data = save(state, metadata=metadata)
    return atomic_write(path, lambda file: file.write(data))


def load_trained(path: str | Path, *, spec: ModelSpec | None = None) -> Trained:
    """The model stored in ``path``: a ``.safetensors`` file from :func:`save_weights` or a training
    checkpoint; it is rebuilt from the stored spec and loaded strictly (mismatches are listed).

    ``spec`` is used for a safetensors file without senet's metadata (e.g. one written by ``senet convert``);
    a file's own spec always wins over it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as file:
                metadata = file.metadata() or {}
                state = {key: file.get_tensor(key) for key in file.keys()}
        except (SafetensorError, OSError) as err:
            raise ValueError(f"cannot read {path}: corrupted or not a safetensors file ({err})") from None
        if SPEC_KEY not in metadata and spec is None:
            raise ValueError(f"{path} has no {SPEC_KEY!r} metadata (not written by senet train): pass --model to name its model")
        spec_data = json.loads(metadata[SPEC_KEY]) if SPEC_KEY in metadata else spec.to_dict()
        shape = json.loads(metadata[SHAPE_KEY]) if SHAPE_KEY in metadata else None
    else:
        checkpoint = load_checkpoint(path)
        state, spec_data, shape = checkpoint["model"], checkpoint["model_spec"], checkpoint.get("input_shape")
    spec = ModelSpec.from_dict(spec_data)
    model = build_model(spec)
    check_state_dict(model, state)
    model.load_state_dict(state)
    return Trained(model.eval(), spec, None if shape is None else tuple(int(n) for n in shape))
