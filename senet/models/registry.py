"""Model registry: ``@register_model`` builders, ``list_models`` and ``create_model`` (timm's names).

A builder is a keyword-only function returning a model, e.g.::

    @register_model
    def seresnet50(*, spatial_dims: int = 2, in_channels: int = 3, num_classes: int = 1000,
                   attention: str | None = "se", reduction: int | tuple[int, ...] = 16,
                   integration: str = "standard", ...) -> ResNet: ...

``create_model`` forwards only the options the caller gave, so every builder keeps its own
typed defaults, and an option a builder does not have is a ValueError naming it.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torch.nn as nn

__all__ = ["register_model", "list_models", "get_builder", "create_model", "load_weights", "builder_options"]

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a builder under its function name; a second builder with the same name is an error."""
    name = fn.__name__
    if name in _BUILDERS:
        raise ValueError(f"model {name!r} is already registered (by {_BUILDERS[name].__module__})")
    _BUILDERS[name] = fn
    return fn


def _ensure_families_imported() -> None:
    import senet.models  # noqa: F401  (importing the package registers every family)


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted names of every registered model, optionally filtered by an fnmatch ``pattern`` (``"se*"``)."""
    _ensure_families_imported()
    names = sorted(_BUILDERS)
    return names if pattern is None else [n for n in names if fnmatch.fnmatch(n, pattern)]


def get_builder(name: str) -> Callable[..., nn.Module]:
    _ensure_families_imported()
    if not isinstance(name, str) or name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(sorted(_BUILDERS))}")
    return _BUILDERS[name]


def builder_options(name: str) -> dict[str, inspect.Parameter]:
    """The keyword options of model ``name``'s builder, with their defaults."""
    return dict(inspect.signature(get_builder(name)).parameters)


def load_weights(model: nn.Module, weights: str | Path | Mapping[str, torch.Tensor]) -> nn.Module:
    """Load ``weights`` (a state dict, or a ``.pt``/``.pth``/``.safetensors`` path) strictly into ``model``.

    Files are read without executing code (``weights_only=True`` / safetensors). A checkpoint dict
    with a ``"model"`` entry (senet's training checkpoints) is unwrapped. Missing, unexpected or
    wrongly shaped keys raise a ValueError listing them, and the model is left unchanged.
    """
    if isinstance(weights, (str, Path)):
        path = Path(weights)
        if not path.is_file():
            raise ValueError(f"weights file not found: {path}")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as err:  # a pickle that needs code execution, or a corrupted file
                raise ValueError(f"cannot load weights from {path} safely (weights_only=True): {err}") from None
        if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
            state = state["model"]
    elif isinstance(weights, Mapping):
        state = weights
    else:
        raise TypeError(f"weights must be a path or a state dict, got {type(weights).__name__}")
    check_state_dict(model, state)
    model.load_state_dict(state, strict=True)
    return model


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Raise a ValueError listing missing, unexpected and wrongly shaped keys of ``state`` for ``model``."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if isinstance(state[k], torch.Tensor) and state[k].shape != own[k].shape
    )
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {missing}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {unexpected}")
        if shapes:
            parts.append(f"wrong shapes ({len(shapes)}): {shapes}")
        raise ValueError(f"state dict does not match {type(model).__name__}; nothing was loaded. " + "; ".join(parts))


def create_model(
    name: str,
    *,
    weights: str | Path | Mapping[str, torch.Tensor] | None = None,
    features_only: bool = False,
    **options: object,
) -> nn.Module:
    """Build model ``name`` with the given builder options (``num_classes``, ``in_channels``,
    ``spatial_dims``, ``attention``, ``reduction``, ``integration``, ...), load ``weights`` strictly,
    and with ``features_only=True`` wrap it to return the list of every stage's output."""
    builder = get_builder(name)
    accepted = inspect.signature(builder).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"model {name!r} has no option(s) {unknown}; valid options: {sorted(accepted)}")
    model = builder(**options)
    if weights is not None:
        load_weights(model, weights)
    if features_only:
        from senet.models.base import FeatureListNet

        model = FeatureListNet(model)
    return model
