"""Gather-Excite (GE), N-d.

Hu, Shen, Albanie, Sun, Vedaldi, "Gather-Excite: Exploiting Feature Context in Convolutional Neural
Networks", NeurIPS 2018 (arXiv:1810.12348). A gather operator xi_G aggregates each channel over a
spatial extent; the excite operator ``xi_E(x, g) = x * sigmoid(interp(g))`` redistributes it with
nearest-neighbour interpolation back to the input size:

- GE-theta-minus (``parametric=False``): xi_G is average pooling, no parameters.
- GE-theta (``parametric=True``): xi_G is a stack of depth-wise strided convolutions, each with BN.
- GE-theta-plus (``parametric=True, mlp=True``): an SE-like 1x1 bottleneck after the gather.

The extent e is an int (gather windows of stride e, so the gathered map is ``ceil(L / e)`` per
axis) or ``"global"`` (also ``0``, timm's spelling): one value per channel, as in SE.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from senet.layers.checks import check_input, check_positive_int, excitation_width
from senet.layers.nd import avg_pool_nd, check_spatial_dims, conv_nd, norm_nd

__all__ = ["GatherExcite"]


def _check_extent(extent: object, parametric: bool) -> int | None:
    """The extent as an int, or None for global; ValueError/TypeError naming ``extent`` otherwise."""
    if extent == "global" or (isinstance(extent, int) and not isinstance(extent, bool) and extent == 0):
        return None
    if isinstance(extent, bool) or not isinstance(extent, int):
        raise TypeError(f"extent must be a positive int, 0 or 'global', got {type(extent).__name__} {extent!r}")
    if extent < 0:
        raise ValueError(f"extent must be a positive int, 0 or 'global', got {extent}")
    if parametric and (extent < 2 or extent & (extent - 1)):
        raise ValueError(f"extent must be a power of 2 >= 2 with parametric=True (log2(e) strided convs), got {extent}")
    return extent


class GatherExcite(nn.Module):
    """Gather-Excite: ``Y = sigmoid(interp(xi_G(X))) * X``.

    Args (paper symbols in brackets):
        channels: number of channels [C].
        spatial_dims: number of spatial dims d of the input (1, 2 or 3).
        extent: the extent ratio [e]: an int >= 1, or ``"global"`` / ``0`` (default: global).
            GE-theta-minus uses average pooling of window ``2e - 1``, stride e, padding ``e - 1``
            (padding not counted), as timm; any e >= 1 (timm asks for an even one). GE-theta needs e a
            power of 2: ``log2(e)`` depth-wise 3^d convolutions of stride 2, each followed by BN, with
            ``activation`` between them.
        parametric: GE-theta (True) or GE-theta-minus (False, no parameters at all).
        feature_size: the input's spatial size, needed by GE-theta with a global extent, whose gather is
            one depth-wise convolution covering the whole map (kernel = feature_size, no padding).
        mlp: add the 1x1 bottleneck ``fc1 -> activation -> fc2`` (with biases) after the gather (GE-theta-plus).
        reduction: the bottleneck's ratio [r] when ``mlp=True`` (hidden width ``C // r``).
        hidden_channels: the bottleneck width given directly.
        activation: the non-linearity between gather convolutions and inside the bottleneck (ReLU).

    Submodules (timm's ``GatherExcite`` names): ``gather`` (GE-theta: ``conv1, norm1, act1, conv2, ...``)
    or ``pool`` (GE-theta-minus with a finite extent), ``mlp`` (``fc1, act, fc2``) if requested, and
    ``gate`` (sigmoid), whose forward-hook output is the gate tensor used for reweighting: ``(N, C, *spatial)``
    for a finite extent, ``(N, C, 1, ..., 1)`` for a global one.

    Deliberate difference from timm (1.0.31): for GE-theta with a global extent timm pads the
    feature-size convolution to keep the map size, so its gates vary over space; here the convolution
    gathers the whole map into one value per channel, as the paper describes.
    """

    def __init__(
        self,
        channels: int,
        *,
        spatial_dims: int = 2,
        extent: int | str = "global",
        parametric: bool = False,
        feature_size: tuple[int, ...] | None = None,
        mlp: bool = False,
        reduction: int = 16,
        hidden_channels: int | None = None,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.channels = check_positive_int("channels", channels)
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.extent = _check_extent(extent, parametric)
        self.parametric = parametric
        self.feature_size: tuple[int, ...] | None = None
        if parametric and self.extent is None:
            self.feature_size = self._check_feature_size(feature_size)
        elif feature_size is not None:
            raise ValueError(f"feature_size is only used with parametric=True and a global extent, got {feature_size!r}")
        conv, norm = conv_nd(spatial_dims), norm_nd(spatial_dims)
        self.gather: nn.Sequential | None = None  # GE-theta's convolutions
        self.pool: nn.Module | None = None  # GE-theta-minus's average pooling (finite extent)
        if parametric:
            layers: OrderedDict[str, nn.Module] = OrderedDict()
            if self.extent is None:
                layers["conv1"] = conv(channels, channels, self.feature_size, groups=channels, bias=False)
                layers["norm1"] = norm(channels)
            else:
                num_convs = int(math.log2(self.extent))
                for i in range(1, num_convs + 1):
                    layers[f"conv{i}"] = conv(channels, channels, 3, stride=2, padding=1, groups=channels, bias=False)
                    layers[f"norm{i}"] = norm(channels)
                    if i < num_convs:
                        layers[f"act{i}"] = activation()
            self.gather = nn.Sequential(layers)
        elif self.extent is not None:
            self.pool = avg_pool_nd(spatial_dims)(2 * self.extent - 1, stride=self.extent)  # padded in gather_context
        if mlp:
            self.hidden_channels = excitation_width(channels, reduction, hidden_channels)
            self.mlp = nn.Sequential(
                OrderedDict(
                    fc1=conv(channels, self.hidden_channels, 1),
                    act=activation(),
                    fc2=conv(self.hidden_channels, channels, 1),
                )
            )
        else:
            check_positive_int("reduction", reduction)
            self.hidden_channels = None
            self.mlp = None
        self.gate = nn.Sigmoid()

    def _check_feature_size(self, feature_size: object) -> tuple[int, ...]:
        if feature_size is None:
            raise ValueError("feature_size must be given (the input's spatial size) for a global parametric gather")
        if isinstance(feature_size, int) and not isinstance(feature_size, bool):
            feature_size = (feature_size,) * self.spatial_dims
        if not isinstance(feature_size, (tuple, list)) or len(feature_size) != self.spatial_dims:
            raise ValueError(f"feature_size must be {self.spatial_dims} positive ints, got {feature_size!r}")
        return tuple(check_positive_int("feature_size", size) for size in feature_size)

    def gather_context(self, x: torch.Tensor) -> torch.Tensor:
        """xi_G(x) (and the bottleneck): ``(N, C, *spatial) -> (N, C, *gathered)``."""
        if self.gather is not None:
            g = self.gather(x)  # (N, C, *S) -> (N, C, ceil(S / e)), or (N, C, 1, ..., 1) when global
        elif self.pool is None:
            g = x.mean(tuple(range(2, x.ndim)), keepdim=True)  # global: (N, C, 1, ..., 1)
        else:
            # Average over each window's positions inside the map (padding e - 1 not counted), computed as
            # (mean of zero-padded x) / (mean of zero-padded ones): torch's avg_pool3d refuses inputs smaller
            # than the window even when padded, so the padding is explicit.
            pad = (self.extent - 1,) * (2 * (x.ndim - 2))
            ones = x.new_ones(1, 1, *x.shape[2:])
            g = self.pool(F.pad(x, pad)) / self.pool(F.pad(ones, pad))  # (N, C, ceil(S / e))
        return g if self.mlp is None else self.mlp(g)

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """The gates: ``(N, C, *spatial)``, or ``(N, C, 1, ..., 1)`` for a global extent."""
        g = self.gather_context(x)
        if any(size != 1 for size in g.shape[2:]):
            g = F.interpolate(g, size=x.shape[2:], mode="nearest")  # (N, C, *gathered) -> (N, C, *S)
        return self.gate(g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.channels, ranks=(self.spatial_dims,))
        if self.feature_size is not None and tuple(x.shape[2:]) != self.feature_size:
            raise ValueError(
                f"x must have spatial size feature_size={self.feature_size}, got shape {tuple(x.shape)}"
            )
        return x * self.gates(x)

    def flops(self, spatial_shape: tuple[int, ...]) -> int:
        """Analytic FLOPs for one example (2 per multiply-add, BN as its inference affine, 2 per element;
        interpolation and gate not counted). Gather: global average ``C*P``; average pooling ``C*P_g*(2e-1)^d``
        (full windows); GE-theta per convolution ``2*C*3^d*P_out + 2*C*P_out`` (global: ``2*C*P + 2*C``).
        Bottleneck ``4*C*h*P_g``; reweighting ``C*P``. P_g is the gathered map's size."""
        c, positions, d = self.channels, math.prod(spatial_shape), self.spatial_dims
        if self.extent is None:
            gathered = 1
            gather = 2 * c * positions + 2 * c if self.parametric else c * positions
        elif self.parametric:
            sizes, gather = list(spatial_shape), 0
            for _ in range(int(math.log2(self.extent))):
                sizes = [(s + 1) // 2 for s in sizes]  # stride 2, padding 1, kernel 3
                gather += 2 * c * 3**d * math.prod(sizes) + 2 * c * math.prod(sizes)
            gathered = math.prod(sizes)
        else:
            gathered = math.prod(-(-s // self.extent) for s in spatial_shape)
            gather = c * gathered * (2 * self.extent - 1) ** d
        mlp = 4 * c * self.hidden_channels * gathered if self.mlp is not None else 0
        return gather + mlp + c * positions

    def extra_repr(self) -> str:
        extent = "global" if self.extent is None else self.extent
        return (
            f"channels={self.channels}, spatial_dims={self.spatial_dims}, extent={extent!r}, "
            f"parametric={self.parametric}"
        )
