"""Checkpoints that survive a kill at any moment and load without executing code.

Every file is written to a temporary name in the same folder, flushed to disk, then renamed over the
target (``os.replace`` is atomic), so a reader sees the old file or the new one, never half of one.
A checkpoint is one dict of plain data and tensors: ``format``, ``epoch``, ``model``, ``optimizer``,
``scheduler``, ``scaler``, ``rng`` (one entry per rank), ``model_spec``, ``config``, ``history``.
It is read back with ``torch.load(weights_only=True)``; a file that needs more is refused.
"""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

import numpy as np
import torch

__all__ = [
    "CHECKPOINT_FORMAT",
    "atomic_write",
    "atomic_write_text",
    "save_checkpoint",
    "load_checkpoint",
    "capture_rng",
    "restore_rng",
    "check_writable",
    "to_json",
]

CHECKPOINT_FORMAT = "senet-checkpoint-v1"


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it to ``path``."""
    path = Path(path)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def check_writable(folder: str | Path) -> Path:
    """Create ``folder`` if needed and prove that a file can be written in it; a clear error otherwise."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise PermissionError(f"output folder {folder} is not writable: {err.strerror or err}") from None
    return folder


def save_checkpoint(path: str | Path, checkpoint: Mapping[str, object]) -> Path:
    """Write ``checkpoint`` (plain data and tensors) atomically with ``torch.save``."""
    return atomic_write(path, lambda file: torch.save(dict(checkpoint, format=CHECKPOINT_FORMAT), file))


def load_checkpoint(path: str | Path) -> dict[str, object]:
    """Read a checkpoint written by :func:`save_checkpoint` without executing code (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refused (needs code) or a truncated / corrupted archive
        text = " ".join(str(err).split())
        needs = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if needs:
            raise ValueError(
                f"refusing to load {path}: unpickling it would run code ({needs.group(1)}); senet loads plain tensors only"
            ) from None
        detail = re.search(r"WeightsUnpickler error: (.*?)(?: Check the documentation|$)", text)
        reason = detail.group(1).strip() if detail else f"{type(err).__name__}: {text.split('. ')[0]}"
        raise ValueError(f"cannot read checkpoint {path}: corrupted or not a torch file ({reason})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a senet training checkpoint (no format={CHECKPOINT_FORMAT!r} entry)")
    return checkpoint


def capture_rng(loader_generator: torch.Generator) -> dict[str, object]:
    """The states of every random generator a run draws from, as tensors and plain data."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(position),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "state": torch.tensor(python_state, dtype=torch.int64), "gauss": gauss_next},
        "loader": loader_generator.get_state(),
    }  # fmt: skip


def restore_rng(state: Mapping[str, object], loader_generator: torch.Generator) -> None:
    """Put every generator back in the state recorded by :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"].tolist()), p["gauss"]))
    loader_generator.set_state(state["loader"])


def to_json(data: object) -> str:
    """JSON for results files: tuples become lists, paths strings, non-finite floats ``null``."""

    def default(value: object) -> object:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (np.integer, np.floating)):
            return value.item()
        raise TypeError(f"cannot write {type(value).__name__} to JSON")

    def clean(value: object) -> object:
        if isinstance(value, float) and not np.isfinite(value):
            return None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(data), indent=2, default=default, allow_nan=False)
