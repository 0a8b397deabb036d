"""GPU benchmark: senet's Triton kernels against the eager CUDA formulas, and the SE/plain pairs on the GPU.

- Kernels, on ResNet-50's stage shapes (batch 32; NCHW and channels-last; float32 and bfloat16): the squeeze
  (``x.mean(spatial)`` against :func:`senet.layers.triton_ops.squeeze_mean`) and the SE unit's inference
  tail ``relu(s * bn(c) + identity)`` (eager: the norm, the multiply, the addition and the ReLU as torch
  runs them; senet's route: the norm and gates folded into one :func:`~senet.layers.triton_ops.affine_add_relu`
  pass), each against the memory-bandwidth bound (bytes the op must move at the bandwidth of a device copy measured in the same run).
  Each kernel's output is checked against the eager formula before anything is timed.
- Models: SE-ResNet-50 / ResNet-50 from senet and from timm, bfloat16 autocast and channels-last,
  inference and a training step, interleaved; throughput ratios of the medians.

Times come from :func:`senet.bench.timing.interleaved` (the candidates in a fresh random order each repeat),
synchronising the device around each sample of back-to-back launches. Without a CUDA device and Triton the suite reports why it was skipped; under Triton's
interpreter (``SENET_TRITON=interpret``) ``quick`` runs it on CPU tensors, a check of the code, not a timing.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch
import torch.nn as nn

from senet.bench.models import _inference, _ratios, _train_step
from senet.bench.timing import interleaved, ratio
from senet.layers import triton_ops
from senet.layers.fused import _triton_norm_add_relu
from senet.models import create_model

__all__ = ["KERNEL_SHAPES", "QUICK_KERNEL_SHAPES", "gpu_device", "run_gpu_suite"]

KERNEL_SHAPES: tuple[tuple[int, ...], ...] = ((32, 256, 56, 56), (32, 512, 28, 28), (32, 1024, 14, 14), (32, 2048, 7, 7))
QUICK_KERNEL_SHAPES: tuple[tuple[int, ...], ...] = ((2, 16, 8, 8),)


def gpu_device() -> torch.device | None:
    """The device the suite runs on: CUDA with Triton; CPU under Triton's interpreter; else None."""
    if not triton_ops.available():
        return None
    if torch.cuda.is_available() and triton_ops.get_mode() != "off":
        return torch.device("cuda")
    if triton_ops.get_mode() == "interpret":
        return torch.device("cpu")
    return None


def _synchronize(device: torch.device) -> Callable[[], object] | None:
    """What :func:`~senet.bench.timing.interleaved` calls around each sample: CUDA runs asynchronously."""
    return torch.cuda.synchronize if device.type == "cuda" else None


def _autocast(fn: Callable[[], None], device: torch.device) -> Callable[[], None]:
    def call() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            fn()

    return call


def _kernel_row(shape, channels_last: bool, dtype: torch.dtype, device: torch.device, repeats: int, min_time: float) -> dict:
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    n, channels = shape[:2]
    c = torch.randn(shape, device=device, dtype=dtype).contiguous(memory_format=fmt)
    identity = torch.randn(shape, device=device, dtype=dtype).contiguous(memory_format=fmt)
    gates = torch.rand(n, channels, 1, 1, device=device, dtype=dtype)
    bn = nn.BatchNorm2d(channels).eval().to(device)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2)
    dims = (2, 3)

    def eager_tail():  # what an unfused SE unit runs: norm, multiply, add, ReLU
        return torch.relu(bn(c).mul_(gates) + identity)

    def kernel_tail():  # senet's route on a GPU: the norm folded into one affine_add_relu pass
        return _triton_norm_add_relu(c, bn, identity, gates)

    with torch.no_grad(), torch.autocast(device.type, enabled=False):
        squeeze_error = (triton_ops.squeeze_mean(c).float() - c.float().mean(dims)).abs().max().item()
        tail_error = (kernel_tail().float() - eager_tail().float()).abs().max().item()
        tolerance = 1e-4 if dtype == torch.float32 else 3e-2
        if not (squeeze_error <= tolerance and tail_error <= tolerance * 8):
            raise RuntimeError(f"Triton kernels disagree with the eager formula at {shape} {dtype}: "
                               f"squeeze {squeeze_error:.3g}, tail {tail_error:.3g}")  # fmt: skip
        fns = {
            "copy": lambda: c.clone(),  # the bandwidth: 2 x bytes
            "squeeze_eager": lambda: c.mean(dims),
            "squeeze_triton": lambda: triton_ops.squeeze_mean(c),
            "tail_eager": eager_tail,
            "tail_triton": kernel_tail,
        }
        samples = interleaved(fns, repeats=repeats, min_time=min_time, synchronize=_synchronize(device))
    nbytes = c.numel() * c.element_size()
    bandwidth = 2 * nbytes / statistics.median(samples["copy"])  # bytes per second
    bound = {"squeeze": nbytes / bandwidth, "tail": 3 * nbytes / bandwidth}  # reads c (and identity), writes out
    results = {}
    for name, times in samples.items():
        if name == "copy":
            continue
        median = statistics.median(times)
        results[name] = {"median_s": median, "ratio_to_bound": median / bound[name.split("_")[0]]}
    return {
        "shape": list(shape),
        "layout": "channels_last" if channels_last else "nchw",
        "dtype": str(dtype).replace("torch.", ""),
        "bandwidth_gbs": bandwidth / 1e9,
        "max_abs_error": {"squeeze": squeeze_error, "tail": tail_error},
        "results": results,
        "ratios": {
            "squeeze_triton/squeeze_eager": ratio(samples["squeeze_triton"], samples["squeeze_eager"]),
            "tail_triton/tail_eager": ratio(samples["tail_triton"], samples["tail_eager"]),
        },
    }


def _model_rows(device: torch.device, *, quick: bool, repeats: int, min_time: float) -> tuple[list[dict], dict[str, str]]:
    arch_se, arch_plain, batch, size = ("seresnet18", "resnet18", 2, 32) if quick else ("seresnet50", "resnet50", 64, 224)
    torch.manual_seed(0)
    models = {"senet_se": create_model(arch_se), "senet_plain": create_model(arch_plain)}
    skipped: dict[str, str] = {}
    try:
        import timm

        models["timm_se"], models["timm_plain"] = timm.create_model(arch_se), timm.create_model(arch_plain)
    except ImportError:
        skipped["timm"] = "timm is not installed"
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    target = torch.randint(0, 1000, (batch,), device=device)
    models = {name: model.to(device, memory_format=torch.channels_last) for name, model in models.items()}
    rows = []
    for mode in ("inference", "train_step"):
        training = mode == "train_step"
        fns = {
            name: _autocast(_train_step(model.train(), x, target) if training else _inference(model.eval(), x), device)
            for name, model in models.items()
        }
        samples = interleaved(fns, repeats=repeats, min_time=min_time, synchronize=_synchronize(device))
        rows.append(
            {
                "mode": mode,
                "batch": batch,
                "image_size": size,
                "dtype": "bfloat16 autocast, channels_last",
                "results": {name: {"median_s": statistics.median(s), "images_per_s": batch / statistics.median(s)}
                            for name, s in samples.items()},  # fmt: skip
                "ratios": _ratios(samples),
            }
        )
    return rows, skipped


def run_gpu_suite(*, quick: bool, repeats: int) -> dict:
    """The kernel rows and the model pairs on the GPU (see the module doc), or ``{"skipped": why}``."""
    device = gpu_device()
    if device is None:
        why = "Triton is not installed" if not triton_ops.available() else "no CUDA device (or SENET_TRITON=off)"
        return {"skipped": why}
    interpreted = device.type != "cuda"
    if interpreted and not quick:
        raise ValueError("the GPU suite runs on CPU tensors only with quick=True (Triton's interpreter is slow)")
    min_time = 0.0 if quick else 0.02  # seconds per sample: many back-to-back launches on a GPU
    kernels = []
    for shape in QUICK_KERNEL_SHAPES if quick else KERNEL_SHAPES:
        for channels_last in (False, True):
            for dtype in (torch.float32, torch.bfloat16):
                kernels.append(_kernel_row(shape, channels_last, dtype, device, repeats, min_time))
    models, skipped = _model_rows(device, quick=quick, repeats=repeats, min_time=min_time)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (Triton interpreter)"
    return {"device": name, "interpreted": interpreted, "kernels": kernels, "models": models, "skipped": skipped}
