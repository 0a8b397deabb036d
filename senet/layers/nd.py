"""The one rank-to-class mapping that every N-d module in senet uses.

``spatial_dims`` is the number of spatial dimensions of the input ``(N, C, *spatial)``:
1 for audio and text (``(N, C, L)``), 2 for images (``(N, C, H, W)``), 3 for video
clips and volumes (``(N, C, D, H, W)``). Nowhere else in senet is ``nn.Conv2d`` (or
any other rank-specific class) written down: code asks this module for the class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

__all__ = [
    "NdLayers",
    "nd_layers",
    "check_spatial_dims",
    "conv_nd",
    "norm_nd",
    "max_pool_nd",
    "avg_pool_nd",
    "adaptive_avg_pool_nd",
    "adaptive_max_pool_nd",
    "channels_last_format",
]


@dataclass(frozen=True)
class NdLayers:
    """The torch classes for one rank."""

    conv: type[nn.Conv1d] | type[nn.Conv2d] | type[nn.Conv3d]
    norm: type[nn.BatchNorm1d] | type[nn.BatchNorm2d] | type[nn.BatchNorm3d]
    max_pool: type[nn.MaxPool1d] | type[nn.MaxPool2d] | type[nn.MaxPool3d]
    avg_pool: type[nn.AvgPool1d] | type[nn.AvgPool2d] | type[nn.AvgPool3d]
    adaptive_avg_pool: type[nn.AdaptiveAvgPool1d] | type[nn.AdaptiveAvgPool2d] | type[nn.AdaptiveAvgPool3d]
    adaptive_max_pool: type[nn.AdaptiveMaxPool1d] | type[nn.AdaptiveMaxPool2d] | type[nn.AdaptiveMaxPool3d]


_LAYERS: dict[int, NdLayers] = {
    1: NdLayers(nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d),
    2: NdLayers(nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d),
    3: NdLayers(nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.AvgPool3d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d),
}


def check_spatial_dims(spatial_dims: object) -> int:
    """Return ``spatial_dims`` if it is 1, 2 or 3; raise a clear error otherwise."""
    if isinstance(spatial_dims, bool) or not isinstance(spatial_dims, int):
        raise TypeError(f"spatial_dims must be an int in {{1, 2, 3}}, got {type(spatial_dims).__name__} {spatial_dims!r}")
    if spatial_dims not in _LAYERS:
        raise ValueError(f"spatial_dims must be one of {{1, 2, 3}}, got {spatial_dims}")
    return spatial_dims


def nd_layers(spatial_dims: int) -> NdLayers:
    """All torch layer classes for ``spatial_dims`` (1, 2 or 3)."""
    return _LAYERS[check_spatial_dims(spatial_dims)]


def conv_nd(spatial_dims: int) -> type[nn.Conv1d] | type[nn.Conv2d] | type[nn.Conv3d]:
    return nd_layers(spatial_dims).conv


def norm_nd(spatial_dims: int) -> type[nn.BatchNorm1d] | type[nn.BatchNorm2d] | type[nn.BatchNorm3d]:
    return nd_layers(spatial_dims).norm


def max_pool_nd(spatial_dims: int) -> type[nn.MaxPool1d] | type[nn.MaxPool2d] | type[nn.MaxPool3d]:
    return nd_layers(spatial_dims).max_pool


def avg_pool_nd(spatial_dims: int) -> type[nn.AvgPool1d] | type[nn.AvgPool2d] | type[nn.AvgPool3d]:
    return nd_layers(spatial_dims).avg_pool


def adaptive_avg_pool_nd(
    spatial_dims: int,
) -> type[nn.AdaptiveAvgPool1d] | type[nn.AdaptiveAvgPool2d] | type[nn.AdaptiveAvgPool3d]:
    return nd_layers(spatial_dims).adaptive_avg_pool


def adaptive_max_pool_nd(
    spatial_dims: int,
) -> type[nn.AdaptiveMaxPool1d] | type[nn.AdaptiveMaxPool2d] | type[nn.AdaptiveMaxPool3d]:
    return nd_layers(spatial_dims).adaptive_max_pool


def channels_last_format(spatial_dims: int):
    """The channels-last memory format for a rank, or ``None`` where torch has none (rank 1)."""
    import torch

    return {1: None, 2: torch.channels_last, 3: torch.channels_last_3d}[check_spatial_dims(spatial_dims)]
