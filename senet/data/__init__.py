"""Data for senet's experiments: embedded real digits by default, CIFAR and image folders from local
files, FSDD audio, and synthetic 1-D / 3-D tasks; deterministic loaders for one or several processes."""

from senet.data.bundle import Batch, DataBundle, limit_bundle
from senet.data.loaders import ShardSampler, collate_fixed, collate_padded, make_loader
from senet.data.registry import DATASETS, TASKS, DataOptions, DatasetInfo, build_data, default_data

__all__ = [
    "Batch",
    "DataBundle",
    "limit_bundle",
    "DATASETS",
    "TASKS",
    "DataOptions",
    "DatasetInfo",
    "build_data",
    "default_data",
    "make_loader",
    "collate_fixed",
    "collate_padded",
    "ShardSampler",
]
