"""In-memory data sets: fixed-size examples in one tensor, or variable-length 1-D sequences."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = ["ArrayDataset", "SequenceDataset"]


class ArrayDataset(Dataset):
    """Examples ``inputs[i]`` ``(C, *S)`` with labels ``targets[i]``.

    ``shift > 0`` turns on a random translation by up to ``shift`` positions along every spatial axis
    (CIFAR's "random crop with padding", on tensors), padding with ``fill`` (the normalised background).
    The offsets come from torch's global generator of the loading process, which the trainer seeds
    and checkpoints, so augmentation is reproducible and resumes exactly.
    """

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, *, shift: int = 0, fill: float = 0.0) -> None:
        if inputs.ndim < 3 or targets.ndim != 1 or len(inputs) != len(targets):
            raise ValueError(
                f"inputs must be (N, C, *S) and targets (N,), got {tuple(inputs.shape)} and {tuple(targets.shape)}"
            )
        self.inputs = inputs
        self.targets = targets.long()
        self.shift = shift
        self.fill = fill

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.inputs[index]
        if self.shift > 0:
            x = self._translate(x)
        return x, self.targets[index]

    def _translate(self, x: torch.Tensor) -> torch.Tensor:
        s, spatial = self.shift, x.shape[1:]
        padded = F.pad(x, [s, s] * len(spatial), value=self.fill)  # (C, *S) -> (C, *(S + 2s))
        offsets = torch.randint(0, 2 * s + 1, (len(spatial),)).tolist()
        window = tuple(slice(o, o + n) for o, n in zip(offsets, spatial))
        return padded[(slice(None), *window)]  # (C, *S)


class SequenceDataset(Dataset):
    """Variable-length 1-D examples ``sequences[i]`` ``(C, L_i)`` with labels; batches are padded by
    :func:`senet.data.loaders.collate_padded`, which also returns the lengths."""

    def __init__(self, sequences: list[torch.Tensor], targets: torch.Tensor) -> None:
        if len(sequences) != len(targets) or any(s.ndim != 2 for s in sequences):
            raise ValueError("sequences must be a list of (C, L_i) tensors, one per target")
        self.sequences = sequences
        self.targets = targets.long()

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sequences[index], self.targets[index]
