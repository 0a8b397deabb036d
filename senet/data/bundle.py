"""What a data set gives the trainer: the two splits and the facts needed to build a model for them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from torch.utils.data import Dataset, Subset

__all__ = ["Batch", "DataBundle", "limit_bundle"]


class Batch(NamedTuple):
    """One batch: ``inputs`` ``(N, C, *S)``, integer ``targets`` ``(N,)`` and, for padded 1-D data,
    ``lengths`` ``(N,)`` (valid positions of each example; padding follows them)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    lengths: torch.Tensor | None = None


@dataclass(frozen=True)
class DataBundle:
    """A train and a validation split plus their shape facts.

    ``input_shape`` is one example's ``(C, *S)`` (for variable-length data: a typical length, used
    for cost reports and exports); ``variable_length`` says that batches are padded and carry
    ``lengths``; ``note`` is printed next to every number measured on the data (e.g. "lossy JPEG copy");
    ``in_memory`` says that examples are ready tensors, so loading needs no worker processes.
    """

    name: str
    train: Dataset
    val: Dataset
    num_classes: int
    input_shape: tuple[int, ...]
    variable_length: bool = False
    note: str = ""
    in_memory: bool = True

    @property
    def in_channels(self) -> int:
        return self.input_shape[0]

    @property
    def spatial_dims(self) -> int:
        return len(self.input_shape) - 1


def limit_bundle(bundle: DataBundle, train_limit: int | None, val_limit: int | None) -> DataBundle:
    """The first ``train_limit`` / ``val_limit`` examples of each split (for quick runs and tests)."""
    for name, value in (("train_limit", train_limit), ("val_limit", val_limit)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    train, val = bundle.train, bundle.val
    if train_limit is not None and train_limit < len(train):
        train = Subset(train, range(train_limit))
    if val_limit is not None and val_limit < len(val):
        val = Subset(val, range(val_limit))
    return replace(bundle, train=train, val=val)
