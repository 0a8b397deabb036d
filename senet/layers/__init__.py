"""Attention layers for ``(N, C, *spatial)`` inputs of any rank; depends only on torch."""

from senet.layers.cbam import CBAM, ChannelAttention, SpatialAttention
from senet.layers.checks import excitation_width, make_divisible
from senet.layers.nd import (
    adaptive_avg_pool_nd,
    adaptive_max_pool_nd,
    avg_pool_nd,
    channels_last_format,
    check_spatial_dims,
    conv_nd,
    max_pool_nd,
    nd_layers,
    norm_nd,
)
from senet.layers.coord import CoordinateAttention
from senet.layers.eca import ECA, eca_kernel_size
from senet.layers.ese import EffectiveSE
from senet.layers.gather_excite import GatherExcite
from senet.layers.global_context import GlobalContext
from senet.layers.registry import ATTENTION_LAYERS, create_attention, get_attention
from senet.layers.scse import ChannelSpatialSE, SpatialSE
from senet.layers.se import GATES, SQUEEZES, LocalChannelGate, OnePlusTanh, SqueezeExcite, global_pool, lengths_to_mask
from senet.layers.srm import SRM

__all__ = [
    "ATTENTION_LAYERS",
    "get_attention",
    "create_attention",
    "SqueezeExcite",
    "EffectiveSE",
    "ECA",
    "eca_kernel_size",
    "CBAM",
    "ChannelAttention",
    "SpatialAttention",
    "SpatialSE",
    "ChannelSpatialSE",
    "GatherExcite",
    "GlobalContext",
    "SRM",
    "CoordinateAttention",
    "LocalChannelGate",
    "OnePlusTanh",
    "GATES",
    "SQUEEZES",
    "global_pool",
    "lengths_to_mask",
    "excitation_width",
    "make_divisible",
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
