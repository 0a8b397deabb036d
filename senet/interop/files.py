"""``convert_file``: a peer checkpoint on disk -> a senet checkpoint on disk, checked on the way (``senet convert``)."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch

from senet.interop.convert import convert_and_check
from senet.models.registry import load_weights

__all__ = ["convert_file", "read_checkpoint", "write_state_dict"]

_WRAPPERS = ("state_dict", "model")  # timm train checkpoints, senet/torchvision-reference checkpoints
_EMA_WRAPPERS = ("state_dict_ema", "model_ema")  # the EMA weights of timm train checkpoints, preferred as timm does
_SUFFIXES = (".safetensors", ".pt", ".pth")


def read_checkpoint(path: Path, *, use_ema: bool = True) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (``.safetensors``, or a torch file read with ``weights_only=True``).

    A training checkpoint is unwrapped as ``timm.models.load_state_dict`` does: with ``use_ema`` (timm's
    default) the EMA weights under ``"state_dict_ema"`` or ``"model_ema"`` where the file has them, else
    the weights under ``"state_dict"`` or ``"model"``; a ``module.`` prefix on every key
    (``DistributedDataParallel``) is removed. Nothing is executed while reading: besides the types
    ``weights_only`` allows, only ``argparse.Namespace`` is accepted (the ``args`` that timm's
    ``train.py`` stores in its checkpoints, allowed by timm's own loader too); a pickle that needs
    anything else is a ValueError.
    """
    if not isinstance(use_ema, bool):
        raise TypeError(f"use_ema must be a bool, got {type(use_ema).__name__}")
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state: object = load_file(str(path))
        except Exception as err:  # a truncated or foreign file
            raise ValueError(f"cannot read {path} as safetensors: {err}") from None
    else:
        try:
            with torch.serialization.safe_globals([argparse.Namespace]):  # timm's train.py stores its args
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # a pickle that needs code execution, or a corrupted file
            raise ValueError(f"cannot load {path} safely (torch.load with weights_only=True): {err}") from None
    for wrapper in (*_EMA_WRAPPERS, *_WRAPPERS) if use_ema else _WRAPPERS:
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
            break
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    state = dict(state)
    if state and all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def write_state_dict(state: Mapping[str, torch.Tensor], dst: Path, *, metadata: dict[str, str] | None = None) -> None:
    """Write ``state`` to ``dst`` as safetensors (``.safetensors``) or a torch file (``.pt``/``.pth``), atomically:
    a temporary file in the same folder is renamed onto ``dst`` once complete, so ``dst`` is never half written."""
    dst = Path(dst)
    if dst.suffix not in _SUFFIXES:
        raise ValueError(f"dst must end in one of {list(_SUFFIXES)}, got {dst.name!r}")
    if not dst.parent.is_dir():
        raise ValueError(f"the folder of dst does not exist: {dst.parent}")
    tensors = {k: v.detach().contiguous() for k, v in state.items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        if dst.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(tensors, tmp, metadata=metadata)
        else:
            torch.save(tensors, tmp)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def convert_file(src: Path, dst: Path, *, source: str, model: str, use_ema: bool = True) -> None:
    """Convert the ``source`` checkpoint ``src`` for senet model ``model`` and write it to ``dst``.

    ``src`` is read safely (:func:`read_checkpoint`; ``use_ema``: a training checkpoint's EMA weights where it
    has them, as timm loads it); the conversion is :func:`senet.interop.convert_state_dict`
    with ``model``, so the architecture is checked and the result is loaded strictly into
    ``senet.models.create_model(model, ...)`` (with the ``spatial_dims``, ``in_channels``, ``num_classes`` and
    SE widths the checkpoint implies) before anything is written. ``dst`` is written as safetensors or a
    torch file by its suffix, atomically. Any failure is a ValueError and leaves ``dst`` untouched.
    """
    if not isinstance(model, str):
        raise TypeError(f"model must be a senet model name, got {type(model).__name__}")
    dst = Path(dst)
    if dst.suffix not in _SUFFIXES:  # fail before the (possibly long) conversion
        raise ValueError(f"dst must end in one of {list(_SUFFIXES)}, got {dst.name!r}")
    state, net = convert_and_check(read_checkpoint(Path(src), use_ema=use_ema), source=source, model=model)
    load_weights(net, state)
    write_state_dict(state, dst, metadata={"format": "pt", "senet_model": model, "converted_from": source})
