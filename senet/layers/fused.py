"""Fused, memory-lean SE for residual units: ``out = relu(s * bn(c) + identity)`` in few passes.

Where senet's models use SE (the end of a residual unit, the SENet paper's Fig. 3), the unfused code

    u = bn3(conv3(h))            # (N, C, *S), the SE input
    out = relu(u * se.gates(u) + identity)

makes four passes over full-size tensors after the norm (pool, scale, add, ReLU), allocates two fresh
outputs, and autograd keeps ``u`` alive for backward only because the gate's gradient
``ds = sum_p(g * u)`` needs it. SE costs ~0.3% of the FLOPs but ~25% more saved activations. The ops
here remove that cost without changing results (outputs equal the plain formula within float rounding,
gradients are checked against autograd and by ``gradcheck``):

- :func:`scale_add_relu`: ``relu(x * s + identity)`` as one ``addcmul`` and an in-place ReLU (the
  original Caffe release's Axpy layer), with a hand-written backward; it keeps ``x`` for backward,
  like the plain formula.
- :func:`bn_se_add_relu`: ``relu(se(bn(c)) + identity)`` for a batch norm ``bn`` followed by a
  :class:`~senet.layers.se.SqueezeExcite`. The norm is a per-channel affine map, ``u = alpha * c + beta``,
  and batch norm already saves ``c`` for its own backward; so the gate gradient is recomputed as
  ``ds = alpha * sum_p(g * c) + beta * sum_p(g)`` and ``u`` is never saved. With autograd ``u`` is not
  even written: the norm's forward takes only its statistics (one pass over ``c``), the gates are folded
  into its affine map and the output ``relu(c * (s * alpha) + s * beta + identity)`` is written from ``c`` in
  two passes (the gated norm, then the addition and ReLU in one), so the unit allocates one full-size
  tensor (the output) instead of three. The SE block then adds only the squeeze and two tiny matrix
  products to the plain unit's forward (where the squeeze goes through ``W3``, no full-size pass at all).

In eval mode without autograd (the norm uses its running statistics) the tail needs no pass over ``u`` for
the squeeze at all: ``mean_p(u) = alpha * mean_p(c) + beta``, with ``mean_p(c)`` taken on the 1x1
convolution's input where that is cheaper (see :func:`conv_bn_se_add_relu`), and the reweighting rides on
the norm, so the SE unit makes the plain unit's two full-size passes (the norm, then the addition and
ReLU in one, :func:`~senet.layers.se_ops.add_relu_`).

The stand-alone block's lean backward and the shared one-pass helpers live in :mod:`senet.layers.se_ops`.

The backwards walk the batch in cache-sized chunks, so the masked gradient ``g' = g * (out > 0)`` is read
from cache by the ops that need it (``sum_p(g' * (c - mean))``, ``sum_p(g')``). The norm's output has two consumers
(squeeze and reweighting) whose gradients autograd would add into ``du = g' * s + gz / P`` before the
norm's backward reads it twice; instead the norm's backward (:class:`_Norm`, :class:`_TailLink`) takes
its sums from those (N, C) numbers and writes its input gradient ``dc = a * g' + b * c + d`` in one
go: the SE unit's backward then moves about one tensor's worth of memory more than the plain unit's (the
read of ``c`` for ``ds``) instead of three. Under ``create_graph=True`` they use plain,
twice-differentiable formulas. Everything is torch ops plus ``torch.autograd.Function``;
``torch.compile(fullgraph=True)`` traces it without graph breaks (and fuses the backward itself).
Under TorchScript, ``torch.jit.trace``, FX symbolic tracing or ONNX export, :func:`bn_se_add_relu`
computes the plain formula (:func:`fusable` says when the fused path applies).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from senet.layers import triton_ops
from senet.layers.checks import check_input
from senet.layers.se_ops import (
    _chunk_rows,
    _Link,
    _plain_only,
    _scale_shift,
    add_relu_,
    channel_dot,
    squeeze_mean,
)

__all__ = [
    "scale_add_relu",
    "batch_norm_affine",
    "bn_se_add_relu",
    "conv_bn_se_add_relu",
    "conv_bn_add_relu",
    "fusable",
]


def _check_residual(x: torch.Tensor, s: torch.Tensor, identity: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim < 3:
        raise ValueError(f"x must be a tensor (N, C, *spatial), got {getattr(x, 'shape', type(x).__name__)}")
    if not isinstance(identity, torch.Tensor) or identity.shape != x.shape:
        got = tuple(identity.shape) if isinstance(identity, torch.Tensor) else type(identity).__name__
        raise ValueError(f"identity must have the shape of x {tuple(x.shape)}, got {got}")
    gate_shape = (*x.shape[:2], *([1] * (x.ndim - 2)))
    if not isinstance(s, torch.Tensor) or tuple(s.shape) != gate_shape:
        got = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
        raise ValueError(f"s must have shape (N, C, 1, ..., 1) = {gate_shape}, got {got}")


def _residual_backward(grad_out, out, s, x, norm=None, *, scale=True):
    """Gradients of ``out = relu(u * s + identity)`` with ``u = x``, or with ``u = alpha * (x - mean) + bias``
    per channel for ``norm = (alpha, mean, bias)`` (a batch norm in its centred form, :func:`_centred_form`).

    Returns ``(g' * s, ds, g', dot, g_sum)`` with ``g' = grad_out * (out > 0)``, ``ds = sum_p(g' * u)``
    shaped like s, and the sums it was made from, ``dot = sum_p(g' * (x - mean))`` (``sum_p(g' * x)``
    without ``norm``) and ``g_sum = sum_p(g')`` (N, C) (``g_sum`` only with ``norm``); the first is None
    unless ``scale``. With ``norm``, ``x`` is centred before the product and the sums are float32 (float64
    for float64), so that a channel whose mean is large next to its spread keeps its precision
    (``sum_p(g' x) - mean * sum_p(g')`` would cancel) and half-precision tensors are summed as torch's own
    reductions sum them. Under ``torch.compile`` and ``create_graph=True``, plain (differentiable) ops;
    otherwise through the batch in cache-sized chunks.
    """
    n, channels = out.shape[:2]
    dims = tuple(range(2, out.ndim))
    sums_dtype = out.dtype if norm is None else _sums_dtype(x)
    centre = None if norm is None else norm[1].view(1, -1, *([1] * len(dims))).to(sums_dtype)  # (1, C, 1, ..., 1)
    if torch.compiler.is_compiling() or torch.is_grad_enabled():  # the compiler fuses these itself
        g = torch.ops.aten.threshold_backward(grad_out, out, 0)
        dot = channel_dot(g, x if centre is None else x - centre)
        g_sum = g.sum(dims) if norm is not None else None
        grad_u = g * s if scale else None
    else:
        g = torch.empty_like(out)
        grad_u = torch.empty_like(out) if scale else None
        step = _chunk_rows(out)
        by_norm_kernel = norm is not None and x.is_contiguous()
        if by_norm_kernel:  # the chunks' statistics, made once; each chunk's sums, joined after
            row_mean, ones, pieces = norm[1].to(sums_dtype).repeat(step), x.new_ones(step * channels, dtype=sums_dtype), []
        else:
            dot = out.new_empty(n, channels, dtype=sums_dtype)
            g_sum = out.new_empty(n, channels, dtype=sums_dtype) if norm is not None else None
            scratch = torch.empty_like(out[:step], dtype=sums_dtype)
        for start in range(0, n, step):
            rows = slice(start, start + step)
            g_rows = torch.ops.aten.threshold_backward.grad_input(grad_out[rows], out[rows], 0, grad_input=g[rows])
            if scale:
                torch.mul(g_rows, s[rows], out=grad_u[rows])
            if by_norm_kernel:  # both sums in one pass over g' and x
                pieces.append(_centred_sums(g_rows, x[rows], row_mean, ones))
                continue
            product = scratch[: g_rows.shape[0]]
            if centre is None:
                torch.mul(g_rows, x[rows], out=product)  # g' x
            else:
                torch.sub(x[rows], centre, out=product).mul_(g_rows)  # g' (x - mean), in cache
            torch.sum(product, dims, out=dot[rows])
            if g_sum is not None:
                torch.sum(g_rows, dims, out=g_sum[rows], dtype=sums_dtype)
        if by_norm_kernel:
            dot, g_sum = (torch.cat(sums).view(n, channels) for sums in zip(*pieces))
    if norm is None:
        ds = dot
    else:
        alpha, _, bias = norm
        ds = alpha.view(1, -1) * dot  # sum_p g' (alpha (x - mean) + bias)
        ds = ds if bias is None else ds + bias.view(1, -1) * g_sum
    return grad_u, ds.to(s.dtype).view_as(s), g, dot, g_sum


def _sums_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype of the backward's per-channel sums of ``x``: float64 for float64, else float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _centred_sums(g: torch.Tensor, x: torch.Tensor, row_mean: torch.Tensor, ones: torch.Tensor):
    """``sum_p(g * (x - mean))`` and ``sum_p(g)``, each ``(N * C,)`` in ``row_mean``'s dtype, of contiguous
    ``(N, C, *S)`` tensors: batch norm's backward kernel over the ``N * C`` (example, channel) rows of ``P``
    positions (with inverse std 1 its weight gradient is the first sum, its bias gradient the second), which
    reads ``g`` and ``x`` once and centres ``x`` before the product, accumulating in float32 or float64 as the
    norm's own backward does. ``row_mean``: the channel means repeated per example, ``ones``: ones, each at
    least ``N * C`` long."""
    rows = x.shape[0] * x.shape[1]
    _, dot, g_sum = torch.ops.aten.native_batch_norm_backward(
        g.view(1, rows, -1), x.view(1, rows, -1), None, None, None, row_mean[:rows], ones[:rows], True, 0.0, [False, True, True]
    )
    return dot, g_sum


def _scaled_add_relu(x: torch.Tensor, s: torch.Tensor, identity: torch.Tensor, out: torch.Tensor | None = None):
    """``relu(x * s + identity)`` in one pass, written to ``out`` (may be ``x``) or a fresh tensor: a Triton
    kernel on a GPU (:func:`~senet.layers.triton_ops.affine_add_relu`), else ``addcmul`` and an in-place ReLU."""
    if triton_ops.applies(x, identity, *(() if out is None else (out,))):
        return triton_ops.affine_add_relu(x, identity, scale=s, out=out)
    return torch.addcmul(identity, x, s, out=out).relu_()


def _gated_norm_add_relu(c, s, identity, alpha, mean, bias):
    """``relu(s * (alpha * (c - mean) + bias) + identity)`` into a fresh tensor: the gates folded into the norm's
    affine map, ``c * (s * alpha) + s * (bias - alpha * mean)`` per example and channel (the norm's own CPU
    kernel folds its map the same way), in one pass (:func:`~senet.layers.se_ops._scale_shift`), and the
    addition and ReLU in one more (:func:`~senet.layers.se_ops.add_relu_`); on a GPU with Triton one kernel."""
    view = (1, -1) + (1,) * (c.ndim - 2)  # (C,) -> (1, C, 1, ..., 1)
    beta = -mean * alpha if bias is None else torch.addcmul(bias, mean, alpha, value=-1.0)  # one rounding
    scale, shift = (s * alpha.view(view)).to(c.dtype), (s * beta.view(view)).to(c.dtype)  # (N, C, 1, ..., 1)
    if triton_ops.applies(c, identity):
        return triton_ops.affine_add_relu(c, identity, scale=scale, shift=shift)
    return add_relu_(_scale_shift(c, scale, shift), identity)


class _ScaleAddReLU(torch.autograd.Function):
    """``out = relu(x * s + identity)``; saves x, s and out (as the plain formula saves x, s and out)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, s: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        out = _scaled_add_relu(x, s, identity)  # one pass for the scale and the addition
        ctx.save_for_backward(x, s, out)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, s, out = ctx.saved_tensors
        return _residual_backward(grad_out, out, s, x)[:3]


class _BNScaleAddReLU(torch.autograd.Function):
    """``out = relu(u * s + identity)`` with ``u = bn(c) = alpha * (c - mean) + bias`` (per channel), computed
    from ``c`` (:func:`_gated_norm_add_relu`; ``u``'s values are not read, so :class:`_Norm` need not write them).

    Saves out, s, c and the norm's ``(alpha, mean, bias)``: ``c`` is the tensor batch norm saves anyway, so
    nothing full-size is kept for SE. Backward: ``g' = g * (out > 0)``, ``didentity = g'``,
    ``ds = alpha * sum_p(g' * (c - mean)) + bias * sum_p(g')`` (= ``sum_p(g' * u)``), and ``du = g' * s``; where a
    :class:`_TailLink` is given, ``du`` is not written: ``g'`` and the two sums go to the norm's backward
    (:class:`_Norm`), which writes the norm's input gradient in one pass. Under ``create_graph=True``, u is
    recomputed from c by the norm (without touching its running statistics) so that the gradients are
    differentiable in c and the norm's parameters too.
    """

    @staticmethod
    def forward(ctx, u, s, identity, c, alpha, mean, bias, bn, link):
        out = _gated_norm_add_relu(c, s, identity, alpha, mean, bias)  # from c: u's values are not read
        ctx.save_for_backward(out, s, c, alpha, mean, bias)
        ctx.bn, ctx.batch_stats, ctx.link = bn, not _uses_running_stats(bn), link
        return out

    @staticmethod
    def backward(ctx, grad_out):
        out, s, c, alpha, mean, bias = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True
            bn = ctx.bn
            stats = (None, None) if ctx.batch_stats else (bn.running_mean, bn.running_var)
            u = F.batch_norm(c, *stats, bn.weight, bn.bias, ctx.batch_stats, 0.0, bn.eps)  # with its history
            grad_u, grad_s, g = _residual_backward(grad_out, out, s, u)[:3]
            return grad_u, grad_s, g, None, None, None, None, None, None
        link = ctx.link
        grad_u, grad_s, g, dot, g_sum = _residual_backward(grad_out, out, s, c, (alpha, mean, bias), scale=link is None)
        if link is not None:
            link.g, link.s, link.dot, link.g_sum = g, s, dot, g_sum
        return grad_u, grad_s, g, None, None, None, None, None, None


def scale_add_relu(x: torch.Tensor, s: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
    """``relu(x * s + identity)``: SE reweighting fused with the residual addition and the ReLU.

    Args:
        x: the SE input X ``(N, C, *S)`` (any memory layout).
        s: the gates s ``(N, C, 1, ..., 1)``, e.g. ``se.gates(x)``.
        identity: the shortcut, same shape as ``x``.

    Equal to ``torch.relu(x * s + identity)`` within float rounding, with one ``addcmul`` and an in-place
    ReLU instead of three passes, and a backward that works through the batch in cache-sized chunks.
    """
    _check_residual(x, s, identity)
    if not torch.is_grad_enabled():
        return _scaled_add_relu(x, s, identity)
    return _ScaleAddReLU.apply(x, s, identity)


def batch_norm_affine(c: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm):
    """``bn(c)`` and the per-channel ``alpha, beta`` with ``bn(c) == alpha * c + beta`` (up to rounding).

    Does exactly what ``bn.forward`` does (batch statistics in training, running statistics otherwise,
    the same running-statistics update and ``num_batches_tracked`` count), through
    ``torch.native_batch_norm``, which also returns the statistics it used. Forward hooks on ``bn`` are
    not called. Returns ``(u, alpha, beta)`` with ``alpha``, ``beta`` of shape ``(C,)``, without autograd
    history (they are only used to recompute ``u`` in backward).
    """
    u, mean, invstd, _ = _batch_norm(c, bn)
    alpha, beta = _affine(mean, invstd, bn)
    return u, alpha, beta


def _norm_mode(c: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm):
    """What ``bn.forward`` decides before it normalises ``c``: ``(use_batch_stats, momentum, running_mean,
    running_var)``, the running statistics None where it neither uses nor updates them. Counts the batch in
    ``num_batches_tracked`` as ``bn.forward`` does (training, tracked statistics)."""
    bn._check_input_dim(c)
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        momentum = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    use_batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
    keep_running = not bn.training or bn.track_running_stats
    return use_batch_stats, momentum, *((bn.running_mean, bn.running_var) if keep_running else (None, None))


def _batch_norm(c: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm):
    """``bn(c)`` as ``bn.forward`` computes it, with the statistics it used: ``(u, mean, invstd,
    batch_stats)``; ``mean``, ``invstd`` of shape ``(C,)`` without history."""
    use_batch_stats, momentum, running_mean, running_var = _norm_mode(c, bn)
    u, mean, invstd = torch.native_batch_norm(
        c, bn.weight, bn.bias, running_mean, running_var, use_batch_stats, momentum, bn.eps
    )
    if not use_batch_stats:  # eval: the running statistics
        mean, invstd = running_mean, torch.rsqrt(running_var + bn.eps)
    return u, mean.detach(), invstd.detach(), use_batch_stats


def _norm_statistics(c: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm):
    """The statistics :func:`_batch_norm` would normalise ``c`` with, and the same running-statistics update,
    without normalising: ``(mean, invstd, batch_stats)``, ``(C,)`` without history. One pass over ``c``
    (``torch.batch_norm_update_stats``: the norm's own statistics kernel, biased variance for ``invstd``,
    the unbiased one for the running variance)."""
    use_batch_stats, momentum, running_mean, running_var = _norm_mode(c, bn)
    if not use_batch_stats:  # eval: the running statistics
        return running_mean.detach(), torch.rsqrt(running_var + bn.eps), False
    with torch.no_grad():
        mean, var = torch.batch_norm_update_stats(c, running_mean, running_var, momentum)
        return mean, torch.rsqrt(var + bn.eps), True


def _scale(invstd: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm) -> torch.Tensor:
    """``alpha = gamma * invstd`` (C,), the norm's scale per channel, without history."""
    with torch.no_grad():
        return invstd if bn.weight is None else invstd * bn.weight


def _affine(mean: torch.Tensor, invstd: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm):
    """``alpha, beta`` (C,) with ``bn(c) = alpha * c + beta`` for the statistics ``mean``, ``invstd``."""
    alpha = _scale(invstd, bn)
    with torch.no_grad():
        # bias - mean * alpha in one rounding, as the norm's own kernel computes it
        beta = -mean * alpha if bn.bias is None else torch.addcmul(bn.bias, mean, alpha, value=-1.0)
    return alpha, beta  # made under no_grad: no history


def _centred_form(alpha: torch.Tensor, mean: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm):
    """``(alpha, mean, bias)`` with ``bn(c) = alpha * (c - mean) + bias`` per channel, without history
    (``bias`` None for a norm without one)."""
    return alpha, mean, None if bn.bias is None else bn.bias.detach()


def _centred_norm(c: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm):
    """``(bn(c), norm)``: the norm's output and its map in the centred form (:func:`_centred_form`)."""
    u, mean, invstd, _ = _batch_norm(c, bn)
    return u, _centred_form(_scale(invstd, bn), mean, bn)


class _TailLink:
    """What the fused tail's backwards hand to the norm's backward (:class:`_Norm`).

    The norm's output u has two consumers, the squeeze and the reweighting, so its gradient is
    ``du = g' * s + gz / P``, which the norm's backward would read twice (for its sums, then for its
    input gradient) after autograd wrote it. Instead the reweighting's backward stores ``g'`` and the sums
    ``sum_p(g' * (c - mean))``, ``sum_p(g')`` it computes anyway, the squeeze's backward stores ``gz``, both return
    None for u, and :class:`_Norm` gets the norm's sums from these (N, C) numbers and writes ``dc`` in one
    pass over ``g'`` and ``c``. Without a link (compiling), or where the reweighting's backward did not
    run, each returns its own gradient of u and the norm's backward is torch's.
    """

    def __init__(self) -> None:
        self.g: torch.Tensor | None = None
        self.s: torch.Tensor | None = None
        self.dot: torch.Tensor | None = None
        self.g_sum: torch.Tensor | None = None
        self.grad_z: torch.Tensor | None = None

    def take(self):
        """``(g, s, dot, g_sum, grad_z)`` if both consumers' backwards stored theirs (then cleared), else None."""
        if self.g is None or self.grad_z is None:
            return None
        taken = self.g, self.s, self.dot, self.g_sum, self.grad_z
        self.g = self.s = self.dot = self.g_sum = self.grad_z = None
        return taken


class _Norm(torch.autograd.Function):
    """The norm ``u = bn(c)`` in the graph, ``alpha`` and ``mean`` (the centred form's scale and centre,
    :func:`_centred_form`), the running statistics updated as ``bn.forward`` updates them.

    Forward computes only the statistics (:func:`_norm_statistics`, one pass over ``c``): ``u``'s consumers
    take their values from ``c`` and the centred form (the squeeze from ``mean_p(c)``, the tail writes
    ``relu(s * bn(c) + identity)`` from ``c`` in :class:`_BNScaleAddReLU`), so ``u`` is a zero-stride stand-in
    whose values are never read; its gradient comes back here.

    Backward: where the :class:`_TailLink` holds the consumers' results, the norm's input gradient for
    ``du = g' * s + gz / P`` in one pass: per example and channel ``dc = a * g' + b * c + d``, with the norm's
    sums ``sum du = sum_n (s * sum_p g' + gz)`` and ``sum du * x_hat = invstd * sum_n (s * sum_p g' (c -
    mean) + gz * (mean_p c - mean))`` taken from (N, C) numbers (``mean_p c`` is the squeeze's ``pooled_c``);
    the weight and bias gradients are those two sums. Otherwise torch's
    ``native_batch_norm_backward`` on the gradient of u (also under ``create_graph=True``, where it records
    its own graph).
    """

    @staticmethod
    def forward(ctx, c, weight, bias, bn, link, pooled_c):
        mean, invstd, batch_stats = _norm_statistics(c, bn)  # (C,), (C,): no pass writes bn(c)
        alpha, centre = _scale(invstd, bn), mean.clone()  # a fresh output: in eval, mean is the running mean
        ctx.save_for_backward(c, weight, mean, invstd, None if batch_stats else bn.running_var, pooled_c)
        ctx.batch_stats, ctx.eps, ctx.link = batch_stats, bn.eps, link
        ctx.mark_non_differentiable(alpha, centre)
        ctx.set_materialize_grads(False)
        # u's values are never read: its consumers take mean_p(c) and c with (alpha, centre). u stands in the
        # graph for the norm's output (its gradient is routed here), a zero-stride view, nothing full-size
        u = c.new_empty(()).expand(c.shape)
        return u, alpha, centre

    @staticmethod
    def backward(ctx, grad_u, _alpha, _mean):
        c, weight, mean, invstd, running_var, pooled_c = ctx.saved_tensors
        taken = ctx.link.take() if ctx.link is not None and not torch.is_grad_enabled() else None
        if taken is not None:
            grads = _fused_norm_backward(taken, c, weight, mean, invstd, pooled_c, ctx.batch_stats)
            return (*(g if needed else None for g, needed in zip(grads, ctx.needs_input_grad)), None, None, None)
        if grad_u is None:
            return None, None, None, None, None, None
        train = ctx.batch_stats
        grads = torch.ops.aten.native_batch_norm_backward(
            grad_u,
            c,
            weight,
            None if train else mean,  # eval: the running statistics
            None if train else running_var,
            mean if train else None,  # training: the batch statistics
            invstd if train else None,
            train,
            ctx.eps,
            list(ctx.needs_input_grad[:3]),
        )
        return (*grads, None, None, None)


def _fused_norm_backward(taken, c, weight, mean, invstd, pooled_c, batch_stats):
    """``(dc, dweight, dbias)`` of batch norm for ``du = g' * s + gz / P`` from the stored (N, C) sums: see
    :class:`_Norm`. ``dc = a * g' + b * c + d`` in one pass (``b = 0`` with running statistics)."""
    g, s, dot, g_sum, grad_z = taken
    n, channels = c.shape[:2]
    positions = math.prod(c.shape[2:])
    s = s.reshape(n, channels).to(dot.dtype)
    w = invstd if weight is None else invstd * weight  # (C,)
    grad_bias = (s * g_sum + grad_z).sum(0)  # sum du (C,)
    grad_weight = invstd * (s * dot + grad_z * (pooled_c - mean)).sum(0)  # sum du * x_hat (dot: centred)
    a = w * s  # (N, C)
    d = w * grad_z / positions  # (N, C)
    if batch_stats:  # the gradient through the batch mean and variance
        count = n * positions
        b = -w * invstd * grad_weight / count  # (C,)
        d = d - (w * grad_bias / count + b * mean)
    shape = (n, channels) + (1,) * (c.ndim - 2)
    dc = _scale_shift(g, a.view(shape).to(g.dtype), d.view(shape).to(g.dtype))  # a * g' + d
    if batch_stats:
        dc.addcmul_(c, b.view(1, channels, *shape[2:]).to(c.dtype))  # + b * c
    return dc, grad_weight, grad_bias


def fusable(bn: nn.Module, se: nn.Module | None, c: torch.Tensor | None = None) -> bool:
    """Whether :func:`bn_se_add_relu` can use its lean path for this norm and SE block (and input ``c``):
    a (non-sync) batch norm, an average-squeeze :class:`~senet.layers.se.SqueezeExcite` (any block with
    ``squeeze == "avg"`` and an ``excite(z, spatial_dims)`` method), and eager or ``torch.compile``
    execution (not TorchScript, ``torch.jit.trace``, FX symbolic tracing, ONNX export or ``torch.func``)."""
    if _plain_only(c):
        return False
    is_bn = isinstance(bn, nn.modules.batchnorm._BatchNorm) and not isinstance(bn, nn.SyncBatchNorm)
    # an SE block whose output is x * se.excite(mean(x)): SqueezeExcite with squeeze="avg" (duck-typed, as
    # se.py imports this module)
    return is_bn and callable(getattr(se, "excite", None)) and getattr(se, "squeeze", None) == "avg"


class _SqueezeOf(torch.autograd.Function):
    """``z = mean_p(u)``, its value computed from the pooled norm input by the norm's centred form.

    ``u = alpha * (c - mean) + bias`` per channel (``norm = (alpha, mean, bias)``), so ``mean_p(u) =
    alpha * (mean_p(c) - mean) + bias`` exactly (up to rounding); the backward is that of ``mean_p(u)``
    (``gz / P`` at every position), or, where the :class:`_TailLink` holds the reweighting's results, ``gz``
    handed to the norm's backward.
    """

    @staticmethod
    def forward(ctx, u, pooled_c, norm, link):
        ctx.shape, ctx.link = u.shape, link
        return _squeeze_of_norm(pooled_c, norm).to(u.dtype)  # (N, C)

    @staticmethod
    def backward(ctx, grad_z):
        link = ctx.link
        if link is not None and link.g is not None and not torch.is_grad_enabled():
            link.grad_z = grad_z  # the norm's backward writes the whole du
            return None, None, None, None
        return _Link.input_grad(None, grad_z, ctx.shape), None, None, None  # gz / P at every position


def _squeeze_of_norm(pooled_c: torch.Tensor, norm) -> torch.Tensor:
    """``mean_p(bn(c)) = alpha * (mean_p(c) - mean) + bias`` ``(N, C)`` for ``norm = (alpha, mean, bias)``
    (:func:`_centred_form`), computed and returned in float32 (float64 for float64)."""
    alpha, mean, bias = norm
    dtype = _sums_dtype(pooled_c)
    z = (pooled_c.to(dtype) - mean.to(dtype)) * alpha.to(dtype)
    return z if bias is None else z + bias.to(dtype)


def _pointwise_conv(conv: nn.Module) -> bool:
    """Whether ``conv`` is a 1x1 (x1) convolution without stride, padding or groups: ``conv(h)`` mixes
    channels only, so ``mean_p(conv(h)) = W @ mean_p(h) + b``."""
    if not isinstance(conv, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return False
    ones = (1,) * len(conv.kernel_size)
    return (
        conv.kernel_size == ones
        and conv.stride == ones
        and conv.padding in ((0,) * len(ones), "valid")
        and conv.groups == 1
    )


def _checked_same_dtype(c: torch.Tensor, se: nn.Module, identity: torch.Tensor) -> bool:
    """Check the fused tail's inputs (ValueError/TypeError); return whether ``c`` and ``identity`` share a
    dtype. Where they do not (mixed precision) the sum takes the wider type, so it cannot be written over
    a buffer of ``c``'s dtype and the caller takes the plain formula."""
    check_input(c, se.channels, name="c")
    if not isinstance(identity, torch.Tensor) or identity.shape != c.shape:
        got = tuple(identity.shape) if isinstance(identity, torch.Tensor) else type(identity).__name__
        raise ValueError(f"identity must have the shape of c {tuple(c.shape)}, got {got}")
    return identity.dtype == c.dtype


def _uses_running_stats(bn: nn.modules.batchnorm._BatchNorm) -> bool:
    """Whether ``bn`` normalises with its running statistics (eval mode with statistics tracked)."""
    return not bn.training and bn.running_mean is not None and bn.running_var is not None


def _squeeze_through_conv(h: torch.Tensor, conv: nn.Module) -> bool:
    """Whether ``mean_p(conv(h))`` is cheaper as ``W @ mean_p(h) + b`` than by pooling ``conv(h)``.

    Pooling the output reads ``C * P`` numbers; the route through ``h`` reads ``C_in * P`` and makes
    ``C_in * C`` multiply-adds per example, counted as half a read each (measured on a CPU: the product
    of a few rows runs at about twice the cost per number of a streamed read). In ResNet-50 the route
    through ``h`` wins at 56x56, 28x28 and 14x14, pooling the output at 7x7.
    """
    positions, c_in, c_out = math.prod(h.shape[2:]), h.shape[1], conv.out_channels
    return c_out * positions > c_in * (positions + c_out // 2)


def _conv_squeeze(h: torch.Tensor, conv: nn.Module) -> torch.Tensor:
    """``mean_p(conv(h)) = W @ mean_p(h) + b`` for a 1x1 ``conv``: ``(N, C_in, *S) -> (N, C)``."""
    weight = conv.weight.view(conv.out_channels, -1).t()  # (C_in, C)
    pooled = squeeze_mean(h)  # (N, C_in)
    return torch.mm(pooled, weight) if conv.bias is None else torch.addmm(conv.bias, pooled, weight)  # (N, C)


def _running_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """``alpha, beta`` (C,) with ``bn(c) = alpha * c + beta`` for a norm using its running statistics."""
    return _affine(bn.running_mean, torch.rsqrt(bn.running_var + bn.eps), bn)


def _inference_gates(pooled_c: torch.Tensor, bn: nn.Module, se: nn.Module, spatial_dims: int) -> torch.Tensor:
    """The gates s ``(N, C, 1, ..., 1)`` from ``mean_p(c)`` ``(N, C)``, for a norm using its running statistics:
    the norm is an affine map per channel, so the squeeze of ``bn(c)`` is ``bn(mean_p(c))``, one small norm
    and no pass over ``bn(c)``."""
    z = torch.batch_norm(pooled_c, bn.weight, bn.bias, bn.running_mean, bn.running_var, False, 0.0, bn.eps, False)
    return se.excite(z, spatial_dims)  # (N, C) -> (N, C, 1, ..., 1)


def _may_overwrite(c: torch.Tensor, bn: nn.Module) -> bool:
    """Whether an inference helper may write its result over ``c``: eager execution on a plain tensor that
    autograd does not track, with the norm's parameters and statistics of ``c``'s dtype (the callers pass a
    fresh convolution output they own, and have checked :func:`_plain_only`)."""
    if torch.compiler.is_compiling() or type(c) is not torch.Tensor or (torch.is_grad_enabled() and c.requires_grad):
        return False
    params = (bn.weight, bn.bias, bn.running_mean, bn.running_var)
    return all(t.dtype == c.dtype for t in params if t is not None)


def _inference_norm(c, bn, gates=None, *, overwrite: bool = False) -> torch.Tensor:
    """``s * bn(c)``, or ``bn(c)`` without gates, for a norm using its running statistics: one pass over ``c``,
    written over it if ``overwrite`` (where :func:`_may_overwrite` allows; this saves the write-allocate
    read of a fresh output, 0.1-1 ms per ResNet-50 unit at batch 8, ``benchmarks/tail_passes.py``).

    NCHW: the norm's own kernel. With gates it runs over the ``N * C`` (example, channel) rows of ``P``
    positions, its weight and bias scaled by the gates (``s * gamma``, ``s * beta_bn``) and the running
    statistics repeated per example: the kernel then computes ``s * bn(c)`` with the norm's own per-channel
    arithmetic, so gates of one give ``bn(c)`` bit for bit. Other layouts (channels-last): ``addcmul`` with
    ``(s * alpha, s * beta)`` from :func:`_running_affine`, 1.5-2x faster than the norm's channels-last kernel.
    """
    overwrite = overwrite and _may_overwrite(c, bn)
    if c.is_contiguous():
        x, weight, bias, mean, var = c, bn.weight, bn.bias, bn.running_mean, bn.running_var
        if gates is not None:
            n, rows = c.shape[0], c.shape[0] * c.shape[1]
            s = gates.reshape(n, -1)  # (N, C)
            weight = (s if weight is None else s * weight).reshape(rows)  # s * gamma per (example, channel)
            bias = None if bias is None else (s * bias).reshape(rows)
            mean, var = torch.cat((mean,) * n), torch.cat((var,) * n)  # (N * C,)
            x = c.view(1, rows, -1)  # (1, N * C, P)
        if overwrite:
            unused = c.new_empty(0)  # the saved mean and inverse std, which inference leaves empty
            torch.native_batch_norm(x, weight, bias, mean, var, False, 0.0, bn.eps, out=(x, unused, unused))
            return c
        return torch.batch_norm(x, weight, bias, mean, var, False, 0.0, bn.eps, False).view(c.shape)
    alpha, beta = _running_affine(bn)  # (C,), (C,)
    view = (-1,) + (1,) * (c.ndim - 2)  # (C,) -> (C, 1, ..., 1)
    scale, shift = alpha.view(view), beta.view(view)
    if gates is not None:
        scale, shift = gates * scale, gates * shift  # (N, C, 1, ..., 1)
    if scale.dtype != c.dtype:
        scale, shift = scale.to(c.dtype), shift.to(c.dtype)
    return torch.addcmul(shift, c, scale, out=c if overwrite else None)


def _inference_tail(c, bn, se, identity, *, gates=None, overwrite_c=False):
    """The tail without autograd, for a norm using its running statistics: ``relu(s * bn(c) + identity)``.

    The gates are given (computed from the 1x1 convolution's input, see :func:`conv_bn_se_add_relu`) or
    computed from ``mean_p(c)`` (:func:`_inference_gates`: no pass over ``bn(c)``). They are folded into the
    norm, ``s * bn(c)`` in one pass (:func:`_inference_norm`, written over ``c`` if ``overwrite_c``), and the
    addition and ReLU take one more (:func:`add_relu_`): two full-size passes, as the plain tail
    (:func:`conv_bn_add_relu`). SE adds the squeeze and the two FC layers.
    """
    if not _checked_same_dtype(c, se, identity):
        return torch.relu(se(bn(c)) + identity)
    if gates is None:
        gates = _inference_gates(squeeze_mean(c), bn, se, c.ndim - 2)  # (N, C, 1, ..., 1)
    if triton_ops.applies(c, identity):  # a GPU: the whole tail in one pass
        return _triton_norm_add_relu(c, bn, identity, gates, overwrite=overwrite_c)
    return add_relu_(_inference_norm(c, bn, gates, overwrite=overwrite_c), identity)  # relu(s * bn(c) + identity)


def _triton_norm_add_relu(c, bn, identity, gates=None, *, overwrite: bool = False) -> torch.Tensor:
    """``relu(s * bn(c) + identity)`` (``s = 1`` without gates) for a norm using its running statistics, in
    one pass (:func:`~senet.layers.triton_ops.affine_add_relu` with ``s * alpha``, ``s * beta``), written
    over ``c`` where :func:`_may_overwrite` allows."""
    alpha, beta = _running_affine(bn)  # (C,), (C,)
    if gates is not None:
        view = (1, -1) + (1,) * (c.ndim - 2)
        alpha, beta = gates * alpha.view(view), gates * beta.view(view)  # (N, C, 1, ..., 1)
    out = c if overwrite and _may_overwrite(c, bn) else None
    return triton_ops.affine_add_relu(c, identity, scale=alpha, shift=beta, out=out)


def _fused_norm_backward_applies(c: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm) -> bool:
    """Whether the norm's backward may be fused with the tail's (:class:`_TailLink`): eager execution (the
    compiler fuses the backward itself) and float32/float64 tensors and parameters of one dtype."""
    params = [t for t in (bn.weight, bn.running_mean) if t is not None]
    return (
        not torch.compiler.is_compiling()
        and c.dtype in (torch.float32, torch.float64)
        and all(t.dtype == c.dtype for t in params)
    )


def _se_residual_tail(c, bn, se, identity, pooled_c=None):
    """The fused tail; ``pooled_c`` is ``mean_p(c)`` ``(N, C)`` when known more cheaply than pooling u."""
    if not _checked_same_dtype(c, se, identity):
        return torch.relu(se(bn(c)) + identity)
    if pooled_c is None and not torch.is_grad_enabled():  # the norm's output is ours to overwrite
        u = bn(c)
        s = se.excite(squeeze_mean(u), c.ndim - 2)  # (N, C, *S) -> (N, C) -> (N, C, 1, ..., 1)
        return _scaled_add_relu(u, s, identity, out=u)
    if not torch.is_grad_enabled():
        u, norm = _centred_norm(c, bn)  # (N, C, *S), ((C,), (C,), (C,))
        z = _squeeze_of_norm(pooled_c, norm).to(u.dtype)  # (N, C)
        return _scaled_add_relu(u, se.excite(z, c.ndim - 2), identity, out=u)
    if pooled_c is None:
        pooled_c = squeeze_mean(c.detach())  # mean_p(c) (N, C), values only
    link = _TailLink() if _fused_norm_backward_applies(c, bn) else None
    if link is not None:
        u, alpha, mean = _Norm.apply(c, bn.weight, bn.bias, bn, link, pooled_c)  # (N, C, *S), (C,), (C,)
        norm = _centred_form(alpha, mean, bn)
    else:
        u, norm = _centred_norm(c, bn)  # u = alpha * (c - mean) + bias
    z = _SqueezeOf.apply(u, pooled_c, norm, link)  # mean_p(u) (N, C)
    s = se.excite(z, c.ndim - 2)  # (N, C, 1, ..., 1)
    if link is not None and not _Link.made_from(s, z):
        link = None  # the reweighting returns its own gradient of u; the norm's backward is torch's
    return _BNScaleAddReLU.apply(u, s, identity, c, *norm, bn, link)


def bn_se_add_relu(c: torch.Tensor, bn: nn.Module, se: nn.Module, identity: torch.Tensor) -> torch.Tensor:
    """``relu(se(bn(c)) + identity)``, the end of an SE residual unit, fused and memory-lean.

    Args:
        c: the output of the unit's last convolution ``(N, C, *S)`` (the norm's input).
        bn: the unit's last norm (``bn3`` of a bottleneck, ``bn2`` of a basic block).
        se: the unit's SE block, a :class:`~senet.layers.se.SqueezeExcite` with ``squeeze="avg"``.
        identity: the shortcut ``(N, C, *S)`` (``x`` or ``downsample(x)``).

    Returns the same values as the plain formula (within float rounding), the same gradients for
    ``c``, ``identity`` and every parameter, and the same batch-norm running statistics. With autograd
    it saves nothing full-size beyond what the plain unit ``relu(bn(c) + identity)`` saves (``c`` for the
    norm, the output for the ReLU), and ``se.gate``'s forward hooks still see the gates. Other norms or
    attention blocks, TorchScript, tracing and export take the plain formula.

    A basic block's forward ends (``act2`` is the ReLU, ``integration="standard"``)::

        out = self.conv2(x)                                        # (N, width, *S) -> (N, C, *S)
        return bn_se_add_relu(out, self.bn2, self.se, shortcut)    # relu(se(bn2(out)) + shortcut)

    For a bottleneck, whose last convolution is 1x1, :func:`conv_bn_se_add_relu` is cheaper still.
    """
    if not fusable(bn, se, c):
        return torch.relu(se(bn(c)) + identity)
    if not torch.is_grad_enabled() and _uses_running_stats(bn):
        return _inference_tail(c, bn, se, identity)
    return _se_residual_tail(c, bn, se, identity)


def conv_bn_se_add_relu(
    h: torch.Tensor, conv: nn.Module, bn: nn.Module, se: nn.Module, identity: torch.Tensor
) -> torch.Tensor:
    """``relu(se(bn(conv(h))) + identity)``: :func:`bn_se_add_relu` with the unit's last convolution.

    Where ``conv`` is 1x1 (no stride, padding or groups; a bottleneck's ``conv3``), the squeeze is taken
    on its input ``h``, which has 4x fewer channels in a bottleneck, using
    ``mean_p(bn(conv(h))) = alpha * (W @ mean_p(h) + b) + beta``: SE then reads no full-size tensor of
    its own in the forward pass. Values, gradients and running statistics are those of the plain formula
    (within float rounding). A bottleneck's forward ends (``integration="standard"``, ReLU ``act3``)::

        out = self.act2(self.bn2(self.conv2(out)))                                # (N, width, *S)
        return conv_bn_se_add_relu(out, self.conv3, self.bn3, self.se, shortcut)  # (N, C, *S)

    instead of ``out = self.se(self.bn3(self.conv3(out))); out = out + shortcut; return self.act3(out)``.

    In eval mode without autograd the squeeze of ``h`` and the excitation run before the convolution (while
    ``h`` is in cache, and with the small ops together rather than after a large kernel has evicted the
    interpreter's working set), and only where that is cheaper than pooling the convolution's output (many
    positions next to ``C_in``: 56x56 to 14x14 in ResNet-50, not 7x7).
    """
    if not fusable(bn, se, h):
        return torch.relu(se(bn(conv(h))) + identity)
    inference = not torch.is_grad_enabled() and _uses_running_stats(bn)
    if not _pointwise_conv(conv):
        if inference:  # the convolution's fresh output is ours to overwrite
            return _inference_tail(conv(h), bn, se, identity, overwrite_c=True)
        return bn_se_add_relu(conv(h), bn, se, identity)
    if inference:
        gates = None
        if _squeeze_through_conv(h, conv):  # the squeeze and excitation first, while h is still in cache
            gates = _inference_gates(_conv_squeeze(h, conv), bn, se, h.ndim - 2)  # (N, C, 1, ..., 1)
        return _inference_tail(conv(h), bn, se, identity, gates=gates, overwrite_c=True)
    with torch.no_grad():  # values only: the gradient of the squeeze is _SqueezeOf's
        pooled_c = _conv_squeeze(h.detach(), conv)  # (N, C_in, *S) -> (N, C)
    return _se_residual_tail(conv(h), bn, se, identity, pooled_c)  # conv: (N, C_in, *S) -> (N, C, *S)


def _inference_norm_applies(c: torch.Tensor, bn: nn.Module, identity: torch.Tensor) -> bool:
    """Whether :func:`conv_bn_add_relu` may normalise in place: no autograd, a (non-sync) batch norm using
    its running statistics with parameters of ``c``'s dtype, eager execution, and an ``identity`` of
    ``c``'s shape and dtype (so that the sum can be written over ``c``)."""
    if torch.is_grad_enabled() or not isinstance(bn, nn.modules.batchnorm._BatchNorm):
        return False
    if isinstance(bn, nn.SyncBatchNorm) or not _uses_running_stats(bn) or not _may_overwrite(c, bn) or _plain_only(c):
        return False
    return isinstance(identity, torch.Tensor) and identity.shape == c.shape and identity.dtype == c.dtype


def conv_bn_add_relu(h: torch.Tensor, conv: nn.Module, bn: nn.Module, identity: torch.Tensor) -> torch.Tensor:
    """``relu(bn(conv(h)) + identity)``, the end of a plain residual unit (no SE), in two full-size passes.

    In training, or wherever the norm's module must run (hooks are the caller's to check), this is
    ``add_relu_(bn(conv(h)), identity)``: the norm's fresh output is overwritten by the sum. In eval mode
    without autograd the norm is written over the convolution's fresh output (:func:`_inference_norm`),
    as the SE tail writes its scaled norm, so that senet's plain and SE units make the same passes the same
    way. Same values as the plain formula (NCHW: bit for bit; channels-last: within rounding). A plain
    bottleneck's forward ends::

        out = self.act2(self.bn2(self.conv2(out)))                       # (N, width, *S)
        return conv_bn_add_relu(out, self.conv3, self.bn3, shortcut)     # (N, C, *S)
    """
    c = conv(h)  # (N, C_in, *S) -> (N, C, *S), fresh
    if _inference_norm_applies(c, bn, identity):
        if triton_ops.applies(c, identity):  # a GPU: the norm, the sum and the ReLU in one pass
            return _triton_norm_add_relu(c, bn, identity, overwrite=True)
        return add_relu_(_inference_norm(c, bn, overwrite=True), identity)  # relu(bn(c) + identity), both over c
    return add_relu_(bn(c), identity)
