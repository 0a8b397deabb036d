"""Triton kernels for SE's two memory-bound steps on a GPU: the squeeze and the fused residual tail.

- :func:`squeeze_mean`: ``mean_p(X)`` ``(N, C, *S) -> (N, C)`` in one read, accumulated in float32 (a long map
  of few channels split in chunks over more programs, their partial sums added after).
- :func:`affine_add_relu`: ``relu(X * a + b + Y)`` with ``a``, ``b`` per example and channel (or per
  channel) in one pass: the SE reweighting with the residual addition and the ReLU (``a = s``), the same
  with the eval-mode norm folded in (``a = s * alpha``, ``b = s * beta``), or a plain unit's tail
  (``a = alpha``, ``b = beta``). Eager CUDA runs this as two or three full-size passes.

Both take NCHW-contiguous or channels-last tensors of any rank (float16, bfloat16, float32) and write
a fresh output or over a given one (``out=X`` is safe: each element is read before it is written by
the same program). The eager torch formulas stay the reference and the default wherever these do not
apply (:func:`applies`): no Triton, CPU tensors, autograd recording through the op, ``torch.compile``
(which generates its own kernels), other layouts or dtypes.

Which tensors take these kernels is set by :func:`set_mode` (default from the environment variable
``SENET_TRITON``, read at import): ``"auto"`` (default; CUDA tensors where Triton is installed), ``"off"``
(never), or ``"interpret"`` (CUDA tensors and CPU tensors too, all run by Triton's interpreter, which
needs ``TRITON_INTERPRET=1`` in the environment before Triton is imported: slow, for tests and debugging
on machines without a GPU; the test suite checks the kernels this way).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import warnings

import torch

__all__ = ["MODES", "set_mode", "get_mode", "mode", "available", "applies", "squeeze_mean", "affine_add_relu"]

MODES = ("auto", "off", "interpret")
_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _interpreter_on() -> bool:
    """Whether Triton runs kernels in its interpreter (``TRITON_INTERPRET=1``, read when it decorates them)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def set_mode(value: str) -> None:
    """Which tensors take the Triton kernels: ``"auto"`` (CUDA), ``"off"``, ``"interpret"`` (CUDA and CPU,
    in Triton's interpreter: needs ``TRITON_INTERPRET=1`` set before Triton is imported)."""
    global _MODE
    if value not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {value!r}")
    if value == "interpret" and not _interpreter_on():
        raise ValueError("mode 'interpret' needs TRITON_INTERPRET=1 in the environment before Triton is imported")
    _MODE = value


def _mode_from_env() -> str:
    """``SENET_TRITON`` (``auto``/``1``, ``off``/``0``, ``interpret``); a value that cannot apply warns, then ``auto``."""
    value = os.environ.get("SENET_TRITON", "").strip().lower() or "auto"
    value = {"1": "auto", "0": "off"}.get(value, value)
    if value not in MODES or (value == "interpret" and not _interpreter_on()):
        warnings.warn(
            f"SENET_TRITON must be one of {list(MODES)} ('interpret' with TRITON_INTERPRET=1), got {value!r}; "
            "using 'auto'",
            stacklevel=2,
        )
        return "auto"
    return value


_MODE = _mode_from_env()


def get_mode() -> str:
    """The present mode (see :func:`set_mode`)."""
    return _MODE


@contextlib.contextmanager
def mode(value: str):
    """``with mode("interpret"): ...``: :func:`set_mode` for a block, restored afterwards."""
    previous = get_mode()
    set_mode(value)
    try:
        yield
    finally:
        set_mode(previous)


@functools.cache
def available() -> bool:
    """Whether Triton can be imported (it ships with torch's Linux builds)."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except ImportError:
        return False
    return True


def _layout(x: torch.Tensor) -> bool | None:
    """``False`` for an NCHW-contiguous ``x``, ``True`` for a dense channels-last one, None otherwise."""
    if x.is_contiguous():
        return False
    if x.permute(0, *range(2, x.ndim), 1).is_contiguous():  # (N, *S, C) dense: channels have stride 1
        return True
    return None


def applies(x: torch.Tensor, *others: torch.Tensor) -> bool:
    """Whether the kernels take ``x`` (and ``others``, of its shape, dtype and strides): by the mode and the
    device, eager execution without autograd recording through them, ``(N, C, *S)`` float16/bfloat16/float32,
    NCHW-contiguous or channels-last. Cheap for CPU tensors in the default mode (one comparison)."""
    if _MODE == "off" or (x.device.type != "cuda" and _MODE != "interpret"):
        return False
    if type(x) is not torch.Tensor or x.ndim < 3 or x.dtype not in _DTYPES or x.numel() == 0:
        return False
    if torch.compiler.is_compiling() or torch.jit.is_scripting() or torch.jit.is_tracing():
        return False
    if torch.onnx.is_in_onnx_export() or torch._C._are_functorch_transforms_active():
        return False
    tensors = (x, *others)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    if any(type(t) is not torch.Tensor or t.shape != x.shape or t.dtype != x.dtype for t in others):
        return False
    if any(t.stride() != x.stride() or t.device != x.device for t in others):
        return False
    return _layout(x) is not None and available()


@functools.cache
def _kernels():
    """The two kernels (``triton.jit``: compiled for the GPU, or run by the interpreter under ``TRITON_INTERPRET=1``)."""
    import triton
    import triton.language as tl

    def squeeze_kernel(x_ptr, out_ptr, C, P, SPLIT, CHUNK, stride_n, stride_c, stride_p, inv_p,
                       PARTIAL: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):  # fmt: skip
        # one program per (example, block of channels, chunk of positions): sums its (BLOCK_C, CHUNK) slab in
        # float32; PARTIAL (SPLIT > 1): it writes the partial sums (N, C, SPLIT) in float32, else the mean
        n = tl.program_id(0).to(tl.int64)
        cs = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        chunk = tl.program_id(2)
        c_mask = cs < C
        rows = x_ptr + n * stride_n + cs.to(tl.int64)[:, None] * stride_c  # (BLOCK_C, 1) pointers
        acc = tl.zeros([BLOCK_C], dtype=tl.float32)
        begin = chunk * CHUNK
        end = tl.minimum(begin + CHUNK, P)
        for start in range(begin, end, BLOCK_P):
            ps = start + tl.arange(0, BLOCK_P)
            mask = c_mask[:, None] & (ps < end)[None, :]
            tile = tl.load(rows + ps.to(tl.int64)[None, :] * stride_p, mask=mask, other=0.0)  # (BLOCK_C, BLOCK_P)
            acc += tl.sum(tile.to(tl.float32), axis=1)
        if PARTIAL:
            tl.store(out_ptr + (n * C + cs) * SPLIT + chunk, acc, mask=c_mask)
        else:
            tl.store(out_ptr + n * C + cs, (acc * inv_p).to(out_ptr.dtype.element_ty), mask=c_mask)

    def affine_add_relu_kernel(x_ptr, a_ptr, b_ptr, y_ptr, out_ptr, C, P, stride_n, stride_c, stride_p,
                               a_stride_n, a_stride_c, b_stride_n, b_stride_c,
                               HAS_A: tl.constexpr, HAS_B: tl.constexpr,
                               BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):  # fmt: skip
        # one program per (block of positions, block of channels, example): a (BLOCK_C, BLOCK_P) tile, whose
        # a and b are loaded once per channel (no index arithmetic per element); x, y, out share strides
        ps = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
        cs = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        n = tl.program_id(2).to(tl.int64)
        c_mask = cs < C
        mask = c_mask[:, None] & (ps < P)[None, :]
        offs = n * stride_n + cs.to(tl.int64)[:, None] * stride_c + ps.to(tl.int64)[None, :] * stride_p
        v = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)  # (BLOCK_C, BLOCK_P)
        if HAS_A:
            v = v * tl.load(a_ptr + n * a_stride_n + cs * a_stride_c, mask=c_mask, other=0.0).to(tl.float32)[:, None]
        if HAS_B:
            v = v + tl.load(b_ptr + n * b_stride_n + cs * b_stride_c, mask=c_mask, other=0.0).to(tl.float32)[:, None]
        v = v + tl.load(y_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        v = tl.where(v < 0, 0.0, v)  # ReLU that keeps NaN, as torch.relu does
        tl.store(out_ptr + offs, v.to(out_ptr.dtype.element_ty), mask=mask)

    return triton.jit(squeeze_kernel), triton.jit(affine_add_relu_kernel), triton.cdiv


def _check(x: object, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim < 3:
        raise ValueError(f"{name} must be a tensor (N, C, *spatial), got {getattr(x, 'shape', type(x).__name__)}")
    if x.dtype not in _DTYPES:
        raise TypeError(f"{name} must be float16, bfloat16 or float32, got {x.dtype}")
    if _layout(x) is None:
        raise ValueError(f"{name} must be NCHW-contiguous or channels-last, got strides {x.stride()}")
    if not available():
        raise ImportError("Triton is not installed; use the eager formula (senet's ops do where this is missing)")
    return x


# the squeeze kernel launches at least this many programs where the map is long enough (an H100 has 132
# multiprocessors): a channels-last map of 64 channels is otherwise one program per example
_SQUEEZE_PROGRAMS = 1024
_SQUEEZE_MIN_TILES = 4  # tiles of positions per program, at least, when the positions are split


def _squeeze_split(programs: int, positions: int, block_p: int) -> tuple[int, int]:
    """``(split, chunk)``: into how many chunks of ``chunk`` positions (a multiple of ``block_p``) the squeeze
    kernel splits each map so that ``programs * split`` approaches ``_SQUEEZE_PROGRAMS``, each chunk at least
    ``_SQUEEZE_MIN_TILES`` tiles long. Depends on the shape only (the same split on every device)."""
    split = max(1, min(_cdiv(positions, block_p * _SQUEEZE_MIN_TILES), _cdiv(_SQUEEZE_PROGRAMS, programs)))
    chunk = _cdiv(_cdiv(positions, split), block_p) * block_p  # P / split, rounded up to whole tiles
    return _cdiv(positions, chunk), chunk  # no empty chunk


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def squeeze_mean(x: torch.Tensor) -> torch.Tensor:
    """``x.mean(spatial dims)``: ``(N, C, *S) -> (N, C)`` in ``x``'s dtype, summed in float32 by one kernel.

    Each program sums a block of channels of one example; where that makes few programs for a long map
    (channels-last ``h`` of 64 channels at 56x56: one per example) the positions are split in chunks
    (:func:`_squeeze_split`) and the float32 partial sums ``(N, C, split)`` are added by torch afterwards.

    ``x``: NCHW-contiguous or channels-last, float16/bfloat16/float32, on a CUDA device (or any device under
    Triton's interpreter). No autograd history (callers use it for values only)."""
    _check(x)
    n, channels, positions = x.shape[0], x.shape[1], math.prod(x.shape[2:])
    out = x.new_empty(n, channels)
    if positions == 0:
        return out.fill_(float("nan"))  # the mean of nothing, as torch's
    channels_last = _layout(x)
    # the layout's contiguous axis is the long side of the tile, so that each row of loads is coalesced
    block_c, block_p = (64, 16) if channels_last else (8, 128)
    stride_p = x.stride(-1) if not channels_last else channels  # positions are one run of stride 1 or C
    split, chunk = _squeeze_split(n * _cdiv(channels, block_c), positions, block_p)
    squeeze, _, cdiv = _kernels()
    target = out if split == 1 else x.new_empty(n, channels, split, dtype=torch.float32)  # partial sums
    squeeze[(n, cdiv(channels, block_c), split)](
        x, target, channels, positions, split, chunk, x.stride(0), x.stride(1), stride_p, 1.0 / positions,
        PARTIAL=split > 1, BLOCK_C=block_c, BLOCK_P=block_p,
    )  # fmt: skip
    if split > 1:
        torch.mul(target.sum(-1), 1.0 / positions, out=out)  # (N, C, SPLIT) -> (N, C), rounded once to x's dtype
    return out


def _per_channel(t: torch.Tensor | None, x: torch.Tensor, name: str) -> tuple[torch.Tensor | None, int, int]:
    """``t`` as a per-(example, channel) operand: the tensor and its strides over n and c (0 where broadcast)."""
    if t is None:
        return None, 0, 0
    n, channels = x.shape[:2]
    ones = (1,) * (x.ndim - 2)
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(t).__name__}")
    if t.ndim == 1 and t.shape[0] == channels:  # (C,): per channel
        t = t.view(1, channels, *ones)
    if t.ndim != x.ndim or t.shape[2:] != ones or t.shape[1] != channels or t.shape[0] not in (1, n):
        raise ValueError(f"{name} must have shape (C,) or (N or 1, C, 1, ..., 1) for x {tuple(x.shape)}, got {tuple(t.shape)}")
    if t.device != x.device:
        raise ValueError(f"{name} must be on x's device {x.device}, got {t.device}")
    return t, (t.stride(0) if t.shape[0] > 1 else 0), t.stride(1)


_MAX_GRID_YZ = 65535  # CUDA's limit on a grid's second and third axes
_TILE = 1024  # elements per program of the affine kernel


def _tile(channels: int, positions: int, channels_last: bool) -> tuple[int, int]:
    """``(BLOCK_C, BLOCK_P)`` of the affine kernel's tile: powers of two of at least 2, about ``_TILE`` elements
    (at most twice that), long along the layout's contiguous axis (positions for NCHW, channels for
    channels-last)."""
    if channels_last:
        block_c = max(2, min(128, _next_power_of_2(channels)))
        return block_c, max(2, min(_TILE // block_c, _next_power_of_2(positions)))
    block_p = max(2, min(_TILE, _next_power_of_2(positions)))
    return max(2, min(_TILE // block_p, _next_power_of_2(channels))), block_p


def _next_power_of_2(k: int) -> int:
    """The smallest power of two >= ``k`` (``triton.next_power_of_2``, without importing Triton here)."""
    return 1 << max(0, k - 1).bit_length()


def _rows(t: torch.Tensor | None, first: int, last: int, x: torch.Tensor) -> torch.Tensor:
    """Examples ``first:last`` of a per-(example, channel) operand (all of a broadcast one); ``x`` for None
    (a placeholder pointer the kernel never reads)."""
    if t is None:
        return x
    return t[first:last] if t.shape[0] > 1 else t


def affine_add_relu(
    x: torch.Tensor,
    identity: torch.Tensor,
    *,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``relu(x * scale + shift + identity)`` in one pass, computed in float32 and rounded once.

    Each program takes a tile of channels x positions of one example (:func:`_tile`), with its ``scale``
    and ``shift`` loaded once per channel: no index arithmetic per element (a 64-bit division per element
    would cost a GPU more than the memory traffic of this op).

    Args:
        x: ``(N, C, *S)``, NCHW-contiguous or channels-last, float16/bfloat16/float32.
        identity: the shortcut, same shape, dtype and strides as ``x``.
        scale: ``(C,)`` or ``(N or 1, C, 1, ..., 1)``, any float dtype; None for 1. For SE, ``scale = s``
            (the gates); with an eval-mode norm folded in, ``s * alpha``.
        shift: the same shapes as ``scale``; None for 0. With an eval-mode norm folded in, ``s * beta``.
        out: where to write (``x`` itself is allowed), same shape, dtype and strides as ``x``; default fresh.
    """
    _check(x)
    if not isinstance(identity, torch.Tensor):
        raise TypeError(f"identity must be a tensor, got {type(identity).__name__}")
    for name, t in (("identity", identity), ("out", out)):
        if t is not None and (not isinstance(t, torch.Tensor) or t.shape != x.shape or t.dtype != x.dtype):
            got = f"{tuple(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must have the shape and dtype of x {tuple(x.shape)} {x.dtype}, got {got}")
        if t is not None and (t.stride() != x.stride() or t.device != x.device):
            raise ValueError(f"{name} must have the strides and device of x {x.stride()}, got {t.stride()} on {t.device}")
    scale, a_n, a_c = _per_channel(scale, x, "scale")
    shift, b_n, b_c = _per_channel(shift, x, "shift")
    out = torch.empty_like(x) if out is None else out
    if x.numel() == 0:
        return out
    n, channels, positions = x.shape[0], x.shape[1], x.numel() // (x.shape[0] * x.shape[1])
    channels_last = _layout(x)
    block_c, block_p = _tile(channels, positions, channels_last)
    stride_p = channels if channels_last else 1  # positions are one run of stride C or 1
    _, kernel, cdiv = _kernels()
    for first in range(0, n, _MAX_GRID_YZ):  # the grid's third axis is at most 65535 examples long
        last = min(first + _MAX_GRID_YZ, n)
        kernel[(cdiv(positions, block_p), cdiv(channels, block_c), last - first)](
            x[first:last], _rows(scale, first, last, x), _rows(shift, first, last, x), identity[first:last],
            out[first:last], channels, positions, x.stride(0), x.stride(1), stride_p, a_n, a_c, b_n, b_c,
            HAS_A=scale is not None, HAS_B=shift is not None, BLOCK_C=block_c, BLOCK_P=block_p,
        )  # fmt: skip
    return out
