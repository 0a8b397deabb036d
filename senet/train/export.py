"""``senet export``: write a trained model as ONNX, TorchScript or safetensors and prove the copy computes
what PyTorch computes.

The exported file is written under a temporary name, loaded back with its own runtime (onnxruntime for
ONNX, ``torch.jit.load`` for TorchScript, senet's strict loader for safetensors), run on a random batch
of a different size than the one used for tracing, and compared with the PyTorch model; only a copy
within tolerance is renamed to the target. A mismatch raises :class:`ExportMismatchError`.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from senet.train.checkpoint import check_writable
from senet.train.weights import Trained, load_trained, save_weights

__all__ = ["FORMATS", "ONNX_EXPORTERS", "ExportMismatchError", "ExportResult", "export_model"]

FORMATS: dict[str, str] = {"onnx": ".onnx", "torchscript": ".pt", "safetensors": ".safetensors"}
ONNX_EXPORTERS: tuple[str, ...] = ("dynamo", "legacy")


class ExportMismatchError(ValueError):
    """The exported model's outputs differ from PyTorch's beyond the tolerance."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    input_shape: tuple[int, ...]
    max_abs_diff: float


def _export_onnx(model: nn.Module, example: torch.Tensor, path: Path, exporter: str) -> Callable[[torch.Tensor], np.ndarray]:
    import onnxruntime

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter; the check below is what counts
        if exporter == "dynamo":
            batch = torch.export.Dim("batch", min=1)
            torch.onnx.export(model, (example,), str(path), dynamo=True, input_names=["input"], output_names=["logits"],
                              dynamic_shapes=({0: batch},), verbose=False)  # fmt: skip
        else:
            torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})  # fmt: skip
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.numpy()})[0]


def _export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> Callable[[torch.Tensor], np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace is deprecated in favour of torch.export, still supported
        traced = torch.jit.trace(model, example)
        torch.jit.save(traced, str(path))
        loaded = torch.jit.load(str(path), map_location="cpu")
    return lambda x: loaded(x).detach().numpy()


def _export_safetensors(trained: Trained, path: Path, input_shape: tuple[int, ...]) -> Callable[[torch.Tensor], np.ndarray]:
    save_weights(path, trained.model, trained.spec, input_shape)
    loaded = load_trained(path).model
    return lambda x: loaded(x).detach().numpy()


def export_model(
    checkpoint: str | Path,
    fmt: str,
    out: str | Path | None = None,
    *,
    input_shape: tuple[int, ...] | None = None,
    batch: int = 2,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    onnx_exporter: str = "dynamo",
    seed: int = 0,
) -> ExportResult:
    """Export the model in ``checkpoint`` (a training checkpoint or senet safetensors file) to ``fmt``.

    ``input_shape`` (one example's ``(C, *S)``) defaults to the training data's, stored with the weights.
    The check runs ``batch + 1`` random examples (ONNX and TorchScript are traced with ``batch``).
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}, got {fmt!r}")
    if onnx_exporter not in ONNX_EXPORTERS:
        raise ValueError(f"onnx_exporter must be one of {list(ONNX_EXPORTERS)}, got {onnx_exporter!r}")
    trained = load_trained(checkpoint)
    shape = input_shape or trained.input_shape
    if shape is None:
        raise ValueError(f"{checkpoint} does not record the input shape; pass --input-shape C,H,W")
    target = Path(out) if out is not None else Path(checkpoint).with_suffix(FORMATS[fmt])
    if target.resolve() == Path(checkpoint).resolve():
        raise ValueError(f"the export would overwrite its own source {checkpoint}; pass another --out")
    check_writable(target.parent)
    generator = torch.Generator().manual_seed(seed)
    example = torch.randn(batch, *shape, generator=generator)
    check = torch.randn(batch + 1, *shape, generator=generator)
    model = trained.model.eval()
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=FORMATS[fmt], dir=target.parent)
    os.close(handle)
    temp = Path(temp_name)
    try:
        with torch.no_grad():
            if fmt == "onnx":
                run = _export_onnx(model, example, temp, onnx_exporter)
            elif fmt == "torchscript":
                run = _export_torchscript(model, example, temp)
            else:
                run = _export_safetensors(trained, temp, tuple(shape))
            expected = model(check).numpy()
            got = run(check)
        diff = float(np.abs(expected - got).max()) if expected.shape == got.shape else float("inf")
        if not np.allclose(got, expected, rtol=rtol, atol=atol) or expected.shape != got.shape:
            raise ExportMismatchError(
                f"the {fmt} export of {checkpoint} does not match PyTorch: max |difference| {diff:.3g} "
                f"(rtol {rtol}, atol {atol}, output shapes {expected.shape} vs {got.shape}); nothing was written"
            )
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return ExportResult(path=target, format=fmt, input_shape=tuple(shape), max_abs_diff=diff)
