"""The SE block's own tensor ops in few memory passes, and the one-pass helpers the fused tails share.

SE's arithmetic is negligible; what it costs is passes over full-size tensors. The ops here:

- :func:`squeeze_mean`: the squeeze ``mean_p(X)`` by the fastest route for the layout and autograd state
  (on a CPU, where it pays, one BLAS product: :func:`mean_by_mv`, :func:`mean_by_bmm`).
- :func:`squeeze_excite`: the stand-alone block ``X * s(mean_p(X))`` (what ``SqueezeExcite.forward``
  runs), whose backward makes four full-size passes instead of eight: ``ds = sum_p(dY * X)`` through the
  batch in cache-sized chunks, then ``dX = dY * s + gz / P`` in one pass (the squeeze's gradient written
  together with the reweighting's, see :class:`_Link`).
- :func:`add_relu_`: ``relu(x + y)`` in place in one pass (torch's fused CPU kernel), the end of every
  residual unit without autograd.
- :func:`channel_dot`, ``_scale_shift`` (``x * scale + shift`` per example and channel in one pass) and
  the chunked dot product, shared with :mod:`senet.layers.fused`.

Outputs equal the plain formulas within float rounding; gradients are checked against autograd and by
``gradcheck``. Under ``torch.compile`` (which fuses the plain formulas itself), TorchScript, tracing,
export and ``torch.func`` the plain formulas run.
"""

from __future__ import annotations

import collections
import functools
import math

import torch
import torch.nn as nn

from senet.layers import triton_ops
from senet.layers.checks import check_input

__all__ = ["squeeze_mean", "mean_by_mv", "mean_by_bmm", "squeeze_excite", "add_relu_", "channel_dot"]


def _plain_only(x: object) -> bool:
    """Whether the hand-written Functions must not run: under TorchScript, ``torch.jit.trace``, ONNX
    export, FX symbolic tracing (``x`` is a proxy) or ``torch.func`` transforms (they need the plain ops)."""
    if torch.jit.is_scripting() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return True
    if isinstance(x, torch.fx.Proxy):
        return True
    return not torch.compiler.is_compiling() and torch._C._are_functorch_transforms_active()


def _eager_autograd(x: torch.Tensor) -> bool:
    """Whether :func:`squeeze_excite`'s Functions may run: eager execution with autograd recording (under
    ``torch.compile`` the compiler fuses the plain formula itself), and not :func:`_plain_only`."""
    return torch.is_grad_enabled() and not torch.compiler.is_compiling() and not _plain_only(x)


def _cpuinfo(field: str) -> str:
    """The first value of ``field`` (``"vendor_id"``, ``"model name"``, ``"model"``, ...) in ``/proc/cpuinfo``
    (the field's name matched whole); "" elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, colon, value = line.partition(":")
                if colon and key.strip() == field:
                    return value.strip()
    except OSError:
        pass
    return ""


# Where the squeeze is one BLAS product instead of torch's reduction (``mean``), as measured by
# ``senet bench --suites squeeze`` (the candidates timed in random order; benchmarks/README.md). With MKL on an
# Intel Xeon (Ice Lake) the products beat ``mean`` on channels-last maps of every size (20-25% at 56x56) and
# on contiguous ones up to 144 positions (1.1-2x) or, on one thread, of any size (16-27%). On an AMD EPYC
# (Zen 3), MKL's matrix-vector product is 1.25-3.7x slower than ``mean`` at 14x14 and 28x28 (and on the
# small maps inside a model at 56x56), and runs on one core (pytorch/pytorch#96643); it wins there only on
# one thread, at 7x7 (0.69-0.76x), and on the largest maps (16x56x56: 0.87x, 112x112: 0.81x; batch-32
# 56x56 maps are a tie, 0.94-0.99x). Its batched product wins on channels-last maps with >= 512 channels at
# any size and thread count (0.42-0.96x) and loses or ties with fewer (0.92-1.38x: 56x56 x 256, the 3-D
# map x 64, 28x28 x 128).
_MKL_ON_INTEL = torch.backends.mkl.is_available() and _cpuinfo("vendor_id") == "GenuineIntel"
_MV_MAX_POSITIONS = 144  # contiguous maps: the product up to this many positions (ResNet-50's 7x7 stage)
_MV_MIN_POSITIONS_ELSEWHERE = 12544  # ... and, not on MKL on Intel, from this many (112x112) on one thread
_BMM_MIN_CHANNELS_ELSEWHERE = 512  # channels-last maps, not on MKL on Intel: the product from this many channels


def _pool_by_product(positions: int, channels: int, channels_last: bool) -> bool:
    """Whether :func:`squeeze_mean` pools a no-grad map of ``positions`` and ``channels`` by a BLAS product
    (else ``mean``), on this CPU (``_MKL_ON_INTEL``) and thread count.

    The thread count is read only in eager mode (under ``torch.compile`` it would break the graph; there the
    rules for more than one thread hold).
    """
    if channels_last:
        return _MKL_ON_INTEL or channels >= _BMM_MIN_CHANNELS_ELSEWHERE
    one_thread = not torch.compiler.is_compiling() and torch.get_num_threads() == 1
    if _MKL_ON_INTEL:
        return positions <= _MV_MAX_POSITIONS or one_thread
    return one_thread and (positions <= _MV_MAX_POSITIONS or positions >= _MV_MIN_POSITIONS_ELSEWHERE)


def squeeze_mean(x: torch.Tensor) -> torch.Tensor:
    """Global average pooling ``(N, C, *S) -> (N, C)``, the fastest way for the layout and autograd state.

    Same values as ``x.mean(spatial dims)`` up to rounding. With autograd it is ``sum / P``, whose
    backward is an expanded view (``mean``'s materialises a full-size tensor). Without autograd (and
    without Triton), the map is pooled by one BLAS product where :func:`_pool_by_product` says it beats
    ``mean`` (the CPU, the map's size and channels, and the thread count decide; measured with the
    candidates timed in random order): a channels-last tensor (any rank: channels have stride 1) by
    :func:`mean_by_bmm`, a contiguous one by :func:`mean_by_mv`. Everything else, and everything under ``torch.jit.trace``, by
    ``mean``. On a GPU with Triton, one kernel for either layout
    (:func:`senet.layers.triton_ops.squeeze_mean`). See ``benchmarks/README.md``.
    """
    dims = tuple(range(2, x.ndim))
    positions = math.prod(x.shape[2:])
    if torch.jit.is_tracing():  # one graph whatever the autograd state (the tracer checks this)
        return x.mean(dims)
    if torch.is_grad_enabled() and x.requires_grad:
        return x.sum(dims) / positions
    n, channels = x.shape[:2]
    if not x.is_floating_point() or positions <= 1:
        return x.mean(dims)
    if triton_ops.applies(x):  # a GPU (or Triton's interpreter): one kernel for either layout
        return triton_ops.squeeze_mean(x)
    if x.is_contiguous():  # NCHW (a map that is channels-last as well has one channel or one position)
        return mean_by_mv(x) if _pool_by_product(positions, channels, channels_last=False) else x.mean(dims)
    if x.permute(0, *dims, 1).is_contiguous() and _pool_by_product(positions, channels, channels_last=True):
        return mean_by_bmm(x)
    return x.mean(dims)


def mean_by_mv(x: torch.Tensor) -> torch.Tensor:
    """``mean_p(x)`` of a contiguous ``(N, C, *S)`` map as one matrix-vector product: ``(N*C, P) @ (1/P,)``."""
    n, channels, positions = x.shape[0], x.shape[1], math.prod(x.shape[2:])
    return torch.mv(x.view(n * channels, positions), x.new_full((positions,), 1.0 / positions)).view(n, channels)


def mean_by_bmm(x: torch.Tensor) -> torch.Tensor:
    """``mean_p(x)`` of a map with channel stride 1 (channels-last, any rank) as one batched product of a
    vector of ``1/P`` with its ``(N, P, C)`` view, whose kernel adds whole channel vectors."""
    n, channels, positions = x.shape[0], x.shape[1], math.prod(x.shape[2:])
    rows = x.permute(0, *range(2, x.ndim), 1).reshape(n, positions, channels)  # (N, P, C), a view
    weights = x.new_full((n, 1, positions), 1.0 / positions)  # (N, 1, P)
    return torch.bmm(weights, rows).view(n, channels)  # (N, C)


# dtypes of torch's one-pass ``relu(x + y)`` CPU kernel (``aten._add_relu_``; bfloat16/half raise inside it)
_ADD_RELU_DTYPES = (torch.float32, torch.float64)


def add_relu_(x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``x = relu(x + other)`` in place; returns x. The residual unit's addition and ReLU in one pass.

    Uses torch's fused CPU kernel ``aten._add_relu_`` (one read of each operand and one write, instead of
    the two passes of ``x.add_(other).relu_()``: ~30% faster on ResNet-50's stage shapes) where it
    applies: CPU tensors of the same shape and dtype (float32 or float64), no autograd recording (the
    kernel has no derivative), eager execution (``torch.compile`` fuses the two ops itself; TorchScript,
    tracing, export and ``torch.func`` see the plain ops). On a GPU with Triton the same one pass is
    :func:`senet.layers.triton_ops.affine_add_relu` (:func:`~senet.layers.triton_ops.applies` says where).
    Elsewhere it is ``x.add_(other).relu_()``.
    """
    if triton_ops.applies(x, other):  # a GPU (or Triton's interpreter): one pass, as on the CPU
        return triton_ops.affine_add_relu(x, other, out=x)
    if (
        _plain_only(x)
        or torch.compiler.is_compiling()
        or x.device.type != "cpu"
        or x.dtype not in _ADD_RELU_DTYPES
        or other.dtype != x.dtype
        or other.shape != x.shape
        or (torch.is_grad_enabled() and (x.requires_grad or other.requires_grad))
    ):
        return x.add_(other).relu_()
    return torch.ops.aten._add_relu_(x, other)


def channel_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``sum_p a[n, c, p] * b[n, c, p]``: ``(N, C, *S), (N, C, *S) -> (N, C)``, any memory layout."""
    return (a * b).sum(tuple(range(2, a.ndim)))


# The backward works through the batch in chunks of about this many bytes per tensor, so that the
# intermediate g' stays in cache between the ops that read it (one pass over memory instead of four).
_CHUNK_BYTES = 1 << 20


def _chunk_rows(t: torch.Tensor) -> int:
    """How many examples of ``t`` make one chunk of about ``_CHUNK_BYTES`` (at least one)."""
    return max(1, _CHUNK_BYTES // max(1, t[0].numel() * t.element_size()))


def _chunked_channel_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """:func:`channel_dot` through the batch in cache-sized chunks: the product is never written to memory."""
    dims = tuple(range(2, a.ndim))
    dot = a.new_empty(a.shape[:2])  # (N, C)
    step = _chunk_rows(a)
    scratch = torch.empty_like(a[:step])
    for start in range(0, a.shape[0], step):
        rows = slice(start, start + step)
        product = scratch[: a[rows].shape[0]]
        torch.sum(torch.mul(a[rows], b[rows], out=product), dims, out=dot[rows])
    return dot


def _scale_shift(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``x * scale + shift`` with ``scale``, ``shift`` of shape ``(N, C, 1, ..., 1)``, in one pass.

    For a contiguous (NCHW) ``x`` this is an inference-mode batch norm over ``N * C`` channels of ``P``
    positions (mean 0, variance 1, eps 0: ``alpha = scale``, ``beta = shift``), whose kernel is vectorised
    along the positions; ``addcmul`` with two operands broadcast along the innermost dimension is not, and
    runs 1.6x slower than ``x * scale`` there. Channels-last tensors take ``addcmul`` (channels innermost).
    """
    n, channels, positions = x.shape[0], x.shape[1], math.prod(x.shape[2:])
    same_dtype = x.dtype == scale.dtype == shift.dtype
    if not same_dtype or positions == 1 or not x.is_contiguous():
        return torch.addcmul(shift, x, scale)
    rows = n * channels
    if torch.compiler.is_compiling() or type(x) is not torch.Tensor:  # traced, fake or subclass tensors
        zeros, ones = x.new_zeros(rows), x.new_ones(rows)  # the "running" mean and variance
    else:
        zeros, ones = _zeros_ones(rows, x.dtype, x.device)
    weight, bias = scale.reshape(rows), shift.reshape(rows)
    return torch.batch_norm(x.view(1, rows, positions), weight, bias, zeros, ones, False, 0.0, 0.0, False).view(x.shape)


@functools.lru_cache(maxsize=64)
def _zeros_ones(rows: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Constant zeros and ones of length ``rows``: the "running" statistics of :func:`_scale_shift`, made once
    per size (never written: the norm runs in inference mode)."""
    with torch.inference_mode(False):  # normal tensors, even if first made under inference mode
        return torch.zeros(rows, dtype=dtype, device=device), torch.ones(rows, dtype=dtype, device=device)


class _Link:
    """Hands the reweighting's input gradient to the squeeze's backward, so that both are written in one pass.

    In ``y = x * s(mean_p(x))`` the input x has two consumers, the squeeze and the reweighting, whose
    gradients autograd would add in an extra pass over full-size tensors. The reweighting's backward runs
    first (the squeeze's gradient needs ``ds``): it stores its unscaled input gradient ``g = dY`` and s
    here and returns None for x; the squeeze's backward then returns the whole ``dX = g * s + gz / P`` in
    one pass (:meth:`input_grad`). Under ``create_graph=True`` both return their own plain,
    differentiable gradients instead. (The fused residual tail hands its gradients on the same way, to
    the norm's backward, and uses :meth:`made_from` too.)
    """

    def __init__(self) -> None:
        self.grad: torch.Tensor | None = None
        self.s: torch.Tensor | None = None

    @staticmethod
    def input_grad(link: _Link | None, grad_z: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """The squeeze input's gradient: ``gz / P`` at every position, plus the ``g * s`` stored in ``link``."""
        mean_grad = (grad_z / math.prod(shape[2:])).view(*shape[:2], *([1] * (len(shape) - 2)))  # gz / P
        if link is None or link.grad is None:  # no link (compiling), create_graph=True, or only gates used
            return mean_grad.expand(shape)
        grad, s, link.grad, link.s = link.grad, link.s, None, None
        return _scale_shift(grad, s, mean_grad).to(grad.dtype)  # g * s + gz / P

    @staticmethod
    def made_from(s: torch.Tensor, z: torch.Tensor, limit: int = 64) -> bool:
        """Whether ``s`` was computed from ``z`` (z's autograd node among the first ``limit`` of s's graph):
        only then is the squeeze's backward sure to run and to collect the stored gradient."""
        if z.grad_fn is None:  # z has no history: there is no squeeze backward to hand anything to
            return False
        queue, seen = collections.deque([s.grad_fn]), 0
        while queue and seen < limit:
            node = queue.popleft()
            if node is z.grad_fn:
                return True
            if node is not None:
                seen += 1
                queue.extend(next_node for next_node, _ in node.next_functions)
        return False


class _SqueezeInput(torch.autograd.Function):
    """``z = mean_p(x)`` by the fastest no-grad route (:func:`squeeze_mean`); backward through the link."""

    @staticmethod
    def forward(ctx, x, link):
        ctx.link, ctx.shape = link, x.shape
        return squeeze_mean(x)  # (N, C)

    @staticmethod
    def backward(ctx, grad_z):
        return _Link.input_grad(ctx.link, grad_z, ctx.shape), None


class _Reweight(torch.autograd.Function):
    """``y = x * s``; saves x and s, as the plain product does.

    Backward: ``ds = sum_p(dY * x)`` through the batch in cache-sized chunks (the product is never written
    to memory); x's gradient ``dY * s`` is left to the squeeze's backward where a :class:`_Link` is given.
    """

    @staticmethod
    def forward(ctx, x, s, link):
        ctx.link = link
        ctx.save_for_backward(x, s)
        return x * s  # (N, C, *S) * (N, C, 1, ..., 1)

    @staticmethod
    def backward(ctx, grad_y):
        x, s = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: plain, twice-differentiable formulas
            return grad_y * s, channel_dot(grad_y, x).to(s.dtype).view_as(s), None
        grad_s = _chunked_channel_dot(grad_y, x).to(s.dtype).view_as(s)  # sum_p dY * x
        if ctx.link is not None:
            ctx.link.grad, ctx.link.s = grad_y, s
            return None, grad_s, None
        return (grad_y * s if ctx.needs_input_grad[0] else None), grad_s, None


def squeeze_excite(x: torch.Tensor, se: nn.Module) -> torch.Tensor:
    """``se(x) = x * se.excite(mean_p(x))`` for an average-squeeze SE block, with a lean backward.

    Args:
        x: the SE input X ``(N, C, *S)`` (any memory layout).
        se: a :class:`~senet.layers.se.SqueezeExcite` with ``squeeze="avg"`` (any block with that
            attribute and an ``excite(z, spatial_dims)`` method computing the gates from z ``(N, C)``
            with its own parameters).

    Same values as the plain formula (within float rounding) and the same gradients for ``x`` and every
    parameter of ``se`` (the excitation runs in ordinary autograd, between two small Functions). With
    autograd the backward makes four passes over full-size tensors instead of eight: ``ds = sum_p(dY * X)``
    chunked through cache, then ``dX = dY * s + gz / P`` in one pass (the squeeze's gradient written with
    the reweighting's instead of summed afterwards). It saves what the plain formula saves (x and s).
    Without autograd, and under ``torch.compile`` (which fuses the plain formula itself), TorchScript,
    tracing, export or ``torch.func`` transforms, it is the plain formula.
    """
    if getattr(se, "squeeze", None) != "avg" or not callable(getattr(se, "excite", None)):
        raise ValueError(f"se must be an SE block with squeeze='avg' and an excite method, got {type(se).__name__}")
    check_input(x, se.channels)
    if not _eager_autograd(x):
        return x * se.excite(squeeze_mean(x), x.ndim - 2)  # (N, C, *S) * (N, C, 1, ..., 1)
    link = _Link() if x.requires_grad else None
    z = _SqueezeInput.apply(x, link) if link is not None else squeeze_mean(x)  # (N, C)
    s = se.excite(z, x.ndim - 2)  # (N, C, 1, ..., 1)
    if not s.requires_grad:
        return x * s
    return _Reweight.apply(x, s, link if link is not None and _Link.made_from(s, z) else None)  # x * s
