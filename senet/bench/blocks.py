"""The SE block benchmark: senet against timm, torchvision and MONAI and against the bandwidth bound.

For each shape and memory layout, in forward (inference: eval, no autograd) and forward+backward
(training: gradients for the input and every parameter), one interleaved group times:

- ``stream``: a copy between two buffers of ``stream_bytes`` (256 MiB, far beyond any cache), which gives
  the memory bandwidth ``B = 2 * stream_bytes / t_stream`` and the bound ``3 * bytes / B`` (forward: read X
  to squeeze, read X and write Y to reweight) and ``7 * bytes / B`` (forward+backward: the forward's 3,
  then read dY and X for ds, read dY and write dX);
- ``copy``: ``dst.copy_(x)`` of the tensor itself, whose bandwidth gives a second bound (``copy_bound_s``).
  For tensors far beyond the caches (56x56, 28x28 at batch 32) both bounds agree; a 7x7 tensor of 12.8 MB
  and its copy fit in the L3 cache, so its copy runs at cache speed and that bound is up to 2x tighter
  than anything that also reads the FC weights and writes a fresh output can reach;
- the stand-alone SE blocks (``senet``: :class:`~senet.layers.SqueezeExcite`; ``timm``: ``SEModule``;
  ``torchvision``: ``SqueezeExcitation``; ``monai``: ``ChannelSELayer``), all with the same weights;
- the end of a residual unit as senet's models run it, ``relu(SE(bn(c)) + identity)``: ``unit_plain`` (no
  SE: ``bn``, then add and ReLU in place, senet's plain unit), ``unit_timm`` (timm's SE-ResNet block),
  ``unit_timm_plain`` (timm's plain block: ``bn``, ``add_``, ``relu_``) and ``unit_senet``
  (:func:`~senet.layers.fused.bn_se_add_relu`). SE's cost inside the model is ``t(unit_senet) -
  t(unit_plain)`` for senet and ``t(unit_timm) - t(unit_timm_plain)`` for timm, compared with the same bound.

Before timing, every candidate's output (and for forward+backward its input gradient) is checked
against the plain formula computed in float64; a candidate that disagrees stops the benchmark.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from senet.bench.timing import interleaved, summarize
from senet.layers import SqueezeExcite, norm_nd
from senet.layers.fused import bn_se_add_relu
from senet.layers.se_ops import add_relu_

__all__ = ["BlockCase", "FULL_CASES", "QUICK_CASES", "ResidualTail", "make_peers", "run_block_case", "reference_se"]

REDUCTION = 16
BOUND_PASSES = {"forward": 3, "forward_backward": 7}
STREAM_BYTES = 256 * 2**20  # the memory-bandwidth copy: far beyond the L3 cache of these machines


@dataclass(frozen=True)
class BlockCase:
    """One input shape ``(N, C, *S)`` and memory layout (``"nchw"``: contiguous; ``"channels_last"``)."""

    shape: tuple[int, ...]
    layout: str = "nchw"

    @property
    def spatial_dims(self) -> int:
        return len(self.shape) - 2


# ResNet-50's four stage outputs at batch 32, a 1-D (audio/text) and a 3-D (video) shape.
FULL_CASES: tuple[BlockCase, ...] = tuple(
    BlockCase(shape, layout)
    for shape in ((32, 256, 56, 56), (32, 512, 28, 28), (32, 1024, 14, 14), (32, 2048, 7, 7), (8, 64, 16, 56, 56))
    for layout in ("nchw", "channels_last")
) + (BlockCase((32, 512, 2000)),)
QUICK_CASES: tuple[BlockCase, ...] = (
    BlockCase((2, 32, 8, 8)),
    BlockCase((2, 32, 8, 8), "channels_last"),
    BlockCase((2, 32, 16)),
    BlockCase((2, 32, 2, 4, 4), "channels_last"),
)


def _memory_format(case: BlockCase) -> torch.memory_format:
    if case.layout == "nchw":
        return torch.contiguous_format
    return torch.channels_last if case.spatial_dims == 2 else torch.channels_last_3d


def reference_se(x: torch.Tensor, se: SqueezeExcite) -> torch.Tensor:
    """The plain formula ``x * sigmoid(W2 relu(W1 mean(x) + b1) + b2)`` in float64."""
    x64 = x.double()
    z = x64.mean(tuple(range(2, x.ndim)))  # (N, C)
    h = torch.relu(z @ se.fc1.weight.double().T + se.fc1.bias.double())  # (N, C/r)
    s = torch.sigmoid(h @ se.fc2.weight.double().T + se.fc2.bias.double())  # (N, C)
    return x64 * s.view(*s.shape, *([1] * (x.ndim - 2)))


def make_peers(se: SqueezeExcite, spatial_dims: int) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """The peers' SE blocks holding ``se``'s weights, and the reasons for the peers that are skipped."""
    channels, hidden = se.channels, se.hidden_channels
    w1, b1, w2, b2 = se.fc1.weight, se.fc1.bias, se.fc2.weight, se.fc2.bias
    peers: dict[str, nn.Module] = {}
    skipped: dict[str, str] = {}
    conv_shape = (1,) * spatial_dims
    try:
        from timm.layers import SEModule

        if spatial_dims == 2:
            peer = SEModule(channels, rd_channels=hidden)
            _copy(peer.fc1, w1.view(hidden, channels, *conv_shape), b1)
            _copy(peer.fc2, w2.view(channels, hidden, *conv_shape), b2)
            peers["timm"] = peer
        else:
            skipped["timm"] = "SEModule is 2-D only"
    except ImportError:
        skipped["timm"] = "timm is not installed"
    try:
        from torchvision.ops import SqueezeExcitation

        if spatial_dims == 2:
            peer = SqueezeExcitation(channels, hidden)
            _copy(peer.fc1, w1.view(hidden, channels, *conv_shape), b1)
            _copy(peer.fc2, w2.view(channels, hidden, *conv_shape), b2)
            peers["torchvision"] = peer
        else:
            skipped["torchvision"] = "SqueezeExcitation is 2-D only"
    except ImportError:
        skipped["torchvision"] = "torchvision is not installed"
    try:
        from monai.networks.blocks import ChannelSELayer

        peer = ChannelSELayer(spatial_dims, channels, r=channels // hidden)
        _copy(peer.fc[0], w1, b1)
        _copy(peer.fc[2], w2, b2)
        peers["monai"] = peer
    except ImportError:
        skipped["monai"] = "monai is not installed"
    return peers, skipped


def _copy(layer: nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> None:
    if tuple(layer.weight.shape) != tuple(weight.shape):
        raise ValueError(f"peer layer weight {tuple(layer.weight.shape)} does not match {tuple(weight.shape)}")
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)


class ResidualTail(nn.Module):
    """The end of a residual unit, ``relu(SE(bn(c)) + identity)``, computed as ``kind`` says.

    ``"plain"``: no SE, senet's plain unit: ``bn``, then the addition and ReLU in place
    (:func:`~senet.layers.se_ops.add_relu_`: one pass without autograd, ``add_`` and ``relu_`` with it, as
    timm's plain Bottleneck); ``"peer"``: ``se`` is any SE module, run as timm's SE-ResNet Bottleneck does
    (``add_``, ``relu_``; without ``se`` timm's plain Bottleneck); ``"fused"``: senet's
    :func:`~senet.layers.fused.bn_se_add_relu`.
    """

    def __init__(self, kind: str, bn: nn.Module, se: nn.Module | None = None) -> None:
        super().__init__()
        self.kind, self.bn, self.se = kind, bn, se

    def forward(self, c: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        if self.kind == "fused":
            return bn_se_add_relu(c, self.bn, self.se, identity)
        out = self.bn(c)
        if self.kind == "plain":
            return add_relu_(out, identity)
        if self.se is not None:
            out = self.se(out)
        out += identity
        return out.relu_()


def _make_bn(channels: int, spatial_dims: int) -> nn.Module:
    bn = norm_nd(spatial_dims)(channels)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_(0.0, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return bn


def _check(name: str, got: torch.Tensor, want: torch.Tensor) -> float:
    error = (got.double() - want).abs().max().item()
    tolerance = 1e-4 * max(1.0, want.abs().max().item())
    if not error <= tolerance:
        raise RuntimeError(f"{name} disagrees with the reference: max abs error {error:.3g} > {tolerance:.3g}")
    return error


def _timed_call(mode: str, fn: Callable, inputs: tuple[torch.Tensor, ...], grad: torch.Tensor, params: list) -> Callable:
    if mode == "forward":

        def call() -> None:
            with torch.no_grad():
                fn(*inputs)

        return call

    def call_backward() -> None:
        out = fn(*inputs)
        torch.autograd.grad(out, [*inputs, *params], grad)

    return call_backward


def _check_candidates(blocks, units, se, bn, x, c, identity, grad, training: bool) -> dict[str, float]:
    """Max abs errors: the stand-alone blocks (and input gradients) against the float64 formula, the SE
    units against the plain unit in float64; raises RuntimeError on a disagreement."""
    errors: dict[str, float] = {}
    reference = reference_se(x.detach(), se)
    if training:
        x64 = x.detach().double().requires_grad_()
        (ref_grad,) = torch.autograd.grad(reference_se(x64, se), x64, grad.double())
    for name, block in blocks.items():
        out = block(x)
        errors[name] = _check(name, out.detach(), reference)
        if training:
            (dx,) = torch.autograd.grad(out, x, grad)
            errors[name] = max(errors[name], _check(f"{name} (input gradient)", dx, ref_grad))
    # in training mode the units use batch statistics, in eval mode the (unchanged) running ones
    unit_ref = torch.relu(reference_se(bn.train(training)(c.detach()).detach(), se) + identity.detach().double())
    for name, unit in units.items():
        if not name.endswith("_plain"):
            errors[name] = _check(name, unit(c, identity).detach(), unit_ref)
    return errors


def _ratios_to_bound(
    samples: dict[str, list[float]], bound: float, copy_bound: float, errors: dict[str, float]
) -> tuple[dict, dict]:
    """Per-candidate summaries with ``ratio_to_bound`` (memory bandwidth) and ``ratio_to_copy_bound`` (the
    tensor's own copy), and SE's in-model cost against the same bounds: ``t(unit_senet) - t(unit_plain)``
    (senet's units) and ``t(unit_timm) - t(unit_timm_plain)`` (timm's)."""
    results = {}
    for name, times in samples.items():
        if name not in ("copy", "stream"):
            results[name] = {**summarize(times), "max_abs_error": errors.get(name, 0.0)}
            results[name]["ratio_to_bound"] = results[name]["median_s"] / bound
            results[name]["ratio_to_copy_bound"] = results[name]["median_s"] / copy_bound
    in_model = {}
    for name in results:
        if name.startswith("unit_") and not name.endswith("_plain"):
            plain = results["unit_timm_plain" if name == "unit_timm" else "unit_plain"]["median_s"]
            cost = results[name]["median_s"] - plain
            in_model[name] = {"se_cost_s": cost, "ratio_to_bound": cost / bound, "ratio_to_copy_bound": cost / copy_bound}
    return results, in_model


def run_block_case(
    case: BlockCase,
    mode: str,
    *,
    repeats: int,
    min_time: float = 0.0,
    seed: int = 0,
    stream_bytes: int = STREAM_BYTES,
) -> dict:
    """Check and time every candidate on one case in one mode (``"forward"`` or ``"forward_backward"``)."""
    if mode not in BOUND_PASSES:
        raise ValueError(f"mode must be one of {sorted(BOUND_PASSES)}, got {mode!r}")
    if isinstance(stream_bytes, bool) or not isinstance(stream_bytes, int) or stream_bytes < 4:
        raise ValueError(f"stream_bytes must be an int >= 4, got {stream_bytes!r}")
    generator = torch.Generator().manual_seed(seed)
    channels, dims = case.shape[1], case.spatial_dims
    fmt = _memory_format(case)
    torch.manual_seed(seed)
    se = SqueezeExcite(channels, reduction=REDUCTION)
    peers, skipped = make_peers(se, dims)
    blocks: dict[str, nn.Module] = {"senet": se, **peers}
    training = mode == "forward_backward"
    x = torch.randn(case.shape, generator=generator).contiguous(memory_format=fmt)
    c = (torch.randn(case.shape, generator=generator) * 2 + 0.5).contiguous(memory_format=fmt)
    identity = torch.randn(case.shape, generator=generator).contiguous(memory_format=fmt)
    grad = torch.randn(case.shape, generator=generator).contiguous(memory_format=fmt)
    bn = _make_bn(channels, dims)
    units: dict[str, nn.Module] = {
        "unit_plain": ResidualTail("plain", copy.deepcopy(bn)),
        "unit_senet": ResidualTail("fused", copy.deepcopy(bn), copy.deepcopy(se)),
    }
    if "timm" in peers:
        units["unit_timm"] = ResidualTail("peer", copy.deepcopy(bn), copy.deepcopy(peers["timm"]))
        units["unit_timm_plain"] = ResidualTail("peer", copy.deepcopy(bn))
    for module in (*blocks.values(), *units.values()):
        module.train(training)
    if training:
        x.requires_grad_(), c.requires_grad_(), identity.requires_grad_()

    errors = _check_candidates(blocks, units, se, bn, x, c, identity, grad, training)

    dst = torch.empty_like(x.detach())
    stream_src = torch.ones(stream_bytes // 4)
    stream_dst = torch.empty_like(stream_src)
    fns: dict[str, Callable] = {"stream": lambda: stream_dst.copy_(stream_src), "copy": lambda: dst.copy_(x.detach())}
    for name, block in blocks.items():
        fns[name] = _timed_call(mode, block, (x,), grad, list(block.parameters()) if training else [])
    for name, unit in units.items():
        fns[name] = _timed_call(mode, unit, (c, identity), grad, list(unit.parameters()) if training else [])
    samples = interleaved(fns, repeats=repeats, min_time=min_time)

    nbytes = x.numel() * x.element_size()
    bandwidth = 2 * stream_src.numel() * 4 / summarize(samples["stream"])["median_s"]
    copy_bandwidth = 2 * nbytes / summarize(samples["copy"])["median_s"]
    bound = BOUND_PASSES[mode] * nbytes / bandwidth
    copy_bound = BOUND_PASSES[mode] * nbytes / copy_bandwidth
    results, in_model = _ratios_to_bound(samples, bound, copy_bound, errors)
    return {
        "shape": list(case.shape),
        "layout": case.layout,
        "mode": mode,
        "tensor_bytes": nbytes,
        "stream_bytes": stream_src.numel() * 4,
        "stream": summarize(samples["stream"]),
        "copy": summarize(samples["copy"]),
        "bandwidth_gbs": bandwidth / 1e9,
        "copy_bandwidth_gbs": copy_bandwidth / 1e9,
        "bound_passes": BOUND_PASSES[mode],
        "bound_s": bound,
        "copy_bound_s": copy_bound,
        "results": results,
        "in_model": in_model,
        "skipped": skipped,
    }
