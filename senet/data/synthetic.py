"""Synthetic tasks for 1-D sequences and 3-D volumes where the informative channel varies per example.

"Flagged channel" task: every one of the C channels carries a plane wave plus Gaussian noise. The
class k picks the wave (an axis and a period); one channel per example, chosen at random, carries
the wave of the true class and a constant offset (the flag); the other channels carry waves of
random classes (distractors). To classify, a network must find the flagged channel, whose mean
stands out globally, and read its wave: the channel selection SE's squeeze and excitation provide.
The data are drawn once from a fixed seed, so every run sees the same examples.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from senet.data.bundle import DataBundle
from senet.data.tensors import ArrayDataset, SequenceDataset

__all__ = ["flagged_channel_examples", "synthetic_sequence_bundle", "synthetic_volume_bundle", "PERIODS"]

PERIODS = (3, 4, 6, 8)  # wave periods in positions, one per frequency index
FLAG_OFFSET = 1.0  # added to the flagged channel
NOISE_STD = 0.5
DATA_SEED = 1234


def _wave(k: int, spatial_shape: tuple[int, ...], phase: float) -> np.ndarray:
    """Class k's plane wave on the grid: along axis ``k % D`` with period ``PERIODS[k // D]``."""
    axis, period = k % len(spatial_shape), PERIODS[k // len(spatial_shape)]
    position = np.arange(spatial_shape[axis], dtype=np.float32)
    line = np.sin(2 * math.pi * position / period + phase)
    view = [1] * len(spatial_shape)
    view[axis] = spatial_shape[axis]
    return np.broadcast_to(line.reshape(view), spatial_shape)


def flagged_channel_examples(
    count: int, *, channels: int, spatial_shape: tuple[int, ...], num_classes: int, rng: np.random.Generator
) -> tuple[list[np.ndarray], np.ndarray]:
    """``count`` examples ``(channels, *spatial_shape)`` (float32) and their labels (see the module doc)."""
    dims = len(spatial_shape)
    if num_classes > dims * len(PERIODS):
        raise ValueError(f"num_classes must be at most {dims * len(PERIODS)} for {dims}-D data, got {num_classes}")
    examples, labels = [], rng.integers(0, num_classes, size=count)
    for label in labels:
        flagged = rng.integers(0, channels)
        classes = rng.integers(0, num_classes, size=channels)
        classes[flagged] = label
        x = rng.normal(0.0, NOISE_STD, size=(channels, *spatial_shape)).astype(np.float32)
        for c in range(channels):
            x[c] += _wave(int(classes[c]), spatial_shape, rng.uniform(0, 2 * math.pi))
        x[flagged] += FLAG_OFFSET
        examples.append(x)
    return examples, labels


def synthetic_sequence_bundle(
    *, train_size: int = 1200, val_size: int = 400, channels: int = 8, min_length: int = 32, max_length: int = 96
) -> DataBundle:
    """1-D flagged-channel task with 4 classes and variable lengths in ``[min_length, max_length]``
    (batches are padded; the masked squeeze ignores the padding)."""
    rng = np.random.default_rng(DATA_SEED)
    lengths = rng.integers(min_length, max_length + 1, size=train_size + val_size)
    sequences, labels = [], []
    for length in lengths:
        (x,), (y,) = flagged_channel_examples(1, channels=channels, spatial_shape=(int(length),), num_classes=4, rng=rng)
        sequences.append(torch.from_numpy(x))
        labels.append(int(y))
    targets = torch.tensor(labels)
    return DataBundle(
        name="synthetic1d",
        train=SequenceDataset(sequences[:train_size], targets[:train_size]),
        val=SequenceDataset(sequences[train_size:], targets[train_size:]),
        num_classes=4,
        input_shape=(channels, (min_length + max_length) // 2),
        variable_length=True,
        note="synthetic 1-D flagged-channel task, variable lengths",
    )


def synthetic_volume_bundle(
    *, train_size: int = 400, val_size: int = 200, channels: int = 4, size: int = 6
) -> DataBundle:
    """3-D flagged-channel task: ``(channels, size, size, size)`` volumes, 3 classes (the wave's axis, period 3)."""
    rng = np.random.default_rng(DATA_SEED)
    examples, labels = flagged_channel_examples(
        train_size + val_size, channels=channels, spatial_shape=(size,) * 3, num_classes=3, rng=rng
    )
    inputs, targets = torch.from_numpy(np.stack(examples)), torch.from_numpy(labels)
    return DataBundle(
        name="synthetic3d",
        train=ArrayDataset(inputs[:train_size], targets[:train_size]),
        val=ArrayDataset(inputs[train_size:], targets[train_size:]),
        num_classes=3,
        input_shape=(channels, size, size, size),
        note="synthetic 3-D flagged-channel task",
    )
