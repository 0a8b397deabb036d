"""Deterministic data loaders: the same seed gives the same batches, on one process or several.

Shuffling uses ``DistributedSampler`` even on one process (``world_size=1``): the order of epoch e
is a permutation drawn from ``seed + e``, and rank r of R takes every R-th index of it, so R ranks
with per-rank batch b see exactly the examples that one process with batch R*b sees. Augmentation
draws from torch's global generator (no workers) or from worker generators seeded by the loader's
``generator``, whose state the trainer checkpoints.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from senet.data.bundle import Batch

__all__ = ["make_loader", "collate_fixed", "collate_padded", "ShardSampler"]


def collate_fixed(items: list[tuple[torch.Tensor, torch.Tensor]]) -> Batch:
    inputs, targets = zip(*items)
    return Batch(torch.stack(inputs), torch.stack(targets))  # (N, C, *S), (N,)


def collate_padded(items: list[tuple[torch.Tensor, torch.Tensor]]) -> Batch:
    """Pad ``(C, L_i)`` examples with zeros to the longest: ``(N, C, max L_i)`` plus ``lengths`` ``(N,)``."""
    inputs, targets = zip(*items)
    lengths = torch.tensor([x.shape[-1] for x in inputs])
    padded = inputs[0].new_zeros(len(inputs), inputs[0].shape[0], int(lengths.max()))
    for i, x in enumerate(inputs):
        padded[i, :, : x.shape[-1]] = x
    return Batch(padded, torch.stack(targets), lengths)


class ShardSampler(Sampler[int]):
    """Rank r of R takes indices r, r+R, r+2R, ... in order (no padding: evaluation counts every example once)."""

    def __init__(self, dataset: Dataset, *, rank: int, world_size: int) -> None:
        self.indices = range(rank, len(dataset), world_size)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32  # set by the loader from its generator
    np.random.seed(seed)
    random.seed(seed)


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    train: bool,
    seed: int,
    variable_length: bool = False,
    rank: int = 0,
    world_size: int = 1,
    workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A loader over this rank's share of ``dataset``.

    ``train=True``: shuffled by epoch (call ``loader.sampler.set_epoch(e)``), ``batch_size`` per rank.
    ``train=False``: in order, each example on exactly one rank.
    """
    if train:
        sampler: Sampler[int] = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    else:
        sampler = ShardSampler(dataset, rank=rank, world_size=world_size)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_padded if variable_length else collate_fixed,
        pin_memory=pin_memory,
        worker_init_fn=_seed_worker if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed + rank),
    )
