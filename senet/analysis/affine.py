"""SE next to its relatives: batch norm and 1x1 convolutions ("Relationship to Other Network Components").

**SE vs BN.** Both act channel-wise as ``Y_c = alpha_c * X_c + beta_c``:

- SE: ``alpha_c = s_c(X)``, ``beta_c = 0``, a different alpha for every example (per-example reweighting);
- BN in training mode: ``alpha_c = gamma_c / sqrt(var_B,c + eps)``, ``beta_c = beta_c - alpha_c * mu_B,c`` from the
  batch statistics, one (alpha, beta) shared by every example of the batch (per-batch normalisation); in eval mode
  the running statistics replace the batch ones and the map is a fixed affine transform.

:func:`bn_affine` and :func:`se_affine` extract these coefficients from real modules as a :class:`ChannelAffine`
of shape ``(N, C)`` per example, so both claims can be checked on the tensors.

**SE vs 1x1 convolutions.** The excitation MLP on the squeezed ``(N, C)`` vector equals two 1x1 convolutions on the
``(N, C, 1, ..., 1)`` map (:func:`excitation_as_conv`); the same weights applied at every position of the full
map, with no squeeze, give a spatially varying local gate (:func:`as_local_gate`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn

from senet.layers.checks import check_input
from senet.layers.nd import check_spatial_dims, conv_nd, norm_nd
from senet.layers.se import LocalChannelGate, SqueezeExcite, global_pool

__all__ = ["ChannelAffine", "bn_affine", "se_affine", "excitation_as_conv", "as_local_gate", "squeeze_descriptor"]


@dataclass(frozen=True)
class ChannelAffine:
    """Per-example channel-wise affine map ``Y[n, c] = alpha[n, c] * X[n, c] + beta[n, c]``; alpha, beta ``(N, C)``."""

    alpha: torch.Tensor
    beta: torch.Tensor

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, *S) -> (N, C, *S)``: the map applied to ``x``."""
        check_input(x, self.alpha.shape[1], ranks=(0, 1, 2, 3))
        if x.shape[0] != self.alpha.shape[0]:
            raise ValueError(f"x must have batch size {self.alpha.shape[0]}, got shape {tuple(x.shape)}")
        shape = (*self.alpha.shape, *([1] * (x.ndim - 2)))  # (N, C, 1, ..., 1)
        return self.alpha.view(shape) * x + self.beta.view(shape)

    def batch_spread(self) -> float:
        """The largest difference between two examples' coefficients (0 when shared across the batch)."""
        spread = lambda t: float((t.amax(0) - t.amin(0)).max()) if t.numel() else 0.0  # noqa: E731
        return max(spread(self.alpha), spread(self.beta))

    @property
    def shared_across_batch(self) -> bool:
        """True when every example gets exactly the same (alpha, beta)."""
        return self.batch_spread() == 0.0


_BN_RANKS = {1: (0, 1), 2: (2,), 3: (3,)}  # BatchNorm1d takes (N, C) and (N, C, L)


def bn_affine(bn: nn.Module, x: torch.Tensor) -> ChannelAffine:
    """The affine map a ``BatchNorm{1,2,3}d`` applies to the batch ``x``, without running (or updating) it.

    Training mode (or ``track_running_stats=False``): the batch mean and biased variance over ``(N, *spatial)``,
    exactly as BN normalises; eval mode: the running statistics. ``alpha = weight / sqrt(var + eps)``,
    ``beta = bias - alpha * mean`` (weight 1 and bias 0 without ``affine``), repeated for every example.
    """
    ranks = next((r for d, r in _BN_RANKS.items() if isinstance(bn, norm_nd(d))), None)
    if ranks is None:
        raise TypeError(f"bn must be a BatchNorm1d, BatchNorm2d or BatchNorm3d, got {type(bn).__name__}")
    check_input(x, bn.num_features, ranks=ranks)
    with torch.no_grad():
        if bn.training or bn.running_mean is None:
            dims = (0, *range(2, x.ndim))
            mean, var = x.mean(dims), x.var(dims, unbiased=False)  # (C,)
        else:
            mean, var = bn.running_mean, bn.running_var
        weight = bn.weight if bn.affine else torch.ones_like(mean)
        bias = bn.bias if bn.affine else torch.zeros_like(mean)
        alpha = weight / torch.sqrt(var + bn.eps)  # (C,)
        beta = bias - alpha * mean
        n = x.shape[0]
        return ChannelAffine(alpha.expand(n, -1).clone(), beta.expand(n, -1).clone())  # (N, C)


def se_affine(se: nn.Module, x: torch.Tensor) -> ChannelAffine:
    """The affine map an SE block applies to ``x``: ``alpha = s(X)`` per example, ``beta = 0``.

    ``se`` is any module with ``gates(x)`` returning channel gates ``(N, C, 1, ..., 1)`` (``SqueezeExcite``); a
    spatially varying gate (``LocalChannelGate``) is not a channel-wise affine map and is refused.
    """
    gates_fn = getattr(se, "gates", None)
    if not callable(gates_fn):
        raise TypeError(f"se must have a gates(x) method (e.g. SqueezeExcite), got {type(se).__name__}")
    with torch.no_grad():
        s = gates_fn(x)
    expected = (*x.shape[:2], *([1] * (x.ndim - 2)))
    if tuple(s.shape) != expected:
        raise ValueError(
            f"se.gates(x) must be channel gates of shape {expected}, got {tuple(s.shape)} (spatially varying?)"
        )
    alpha = s.reshape(x.shape[:2])  # (N, C, 1, ..., 1) -> (N, C)
    return ChannelAffine(alpha, torch.zeros_like(alpha))


def excitation_as_conv(se: SqueezeExcite, *, spatial_dims: int = 2) -> nn.Sequential:
    """The excitation of ``se`` as two 1x1 convolutions (copied weights) on the squeezed ``(N, C, 1, ..., 1)`` map:
    ``conv(C -> h) -> activation -> conv(h -> C) -> gate``, numerically the same as ``se.gates``."""
    if not isinstance(se, SqueezeExcite):
        raise TypeError(f"se must be a SqueezeExcite, got {type(se).__name__}")
    conv = conv_nd(check_spatial_dims(spatial_dims))
    bias = se.fc1.bias is not None
    reduce = conv(se.channels, se.hidden_channels, 1, bias=bias)
    expand = conv(se.hidden_channels, se.channels, 1, bias=bias)
    with torch.no_grad():
        for conv_layer, fc in ((reduce, se.fc1), (expand, se.fc2)):
            conv_layer.weight.copy_(fc.weight.view(conv_layer.weight.shape))  # (out, in) -> (out, in, 1, ..., 1)
            if bias:
                conv_layer.bias.copy_(fc.bias)
    return nn.Sequential(reduce, copy.deepcopy(se.act), expand, copy.deepcopy(se.gate))


def as_local_gate(se: SqueezeExcite) -> LocalChannelGate:
    """A :class:`LocalChannelGate` with the weights of ``se``: the same MLP applied at every position, no squeeze.

    On a spatially constant input it gives SE's gates at every position; otherwise its gates vary over space."""
    if not isinstance(se, SqueezeExcite):
        raise TypeError(f"se must be a SqueezeExcite, got {type(se).__name__}")
    local = LocalChannelGate(
        se.channels,
        hidden_channels=se.hidden_channels,
        gate=se.gate_name,
        bias=se.fc1.bias is not None,
        activation=type(se.act),
    )
    local.load_state_dict(se.state_dict(), strict=True)
    return local


def squeeze_descriptor(se: SqueezeExcite, x: torch.Tensor) -> torch.Tensor:
    """The squeezed descriptor z of ``se`` for ``x``, ``(N, C, 1, ..., 1)``: the input of :func:`excitation_as_conv`."""
    if not isinstance(se, SqueezeExcite):
        raise TypeError(f"se must be a SqueezeExcite, got {type(se).__name__}")
    check_input(x, se.channels)
    z = global_pool(x, se.squeeze)  # (N, C, *S) -> (N, C)
    return z.view(*z.shape, *([1] * (x.ndim - 2)))
