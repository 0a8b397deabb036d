"""The embedded default: scikit-learn's bundled handwritten digits (real data, no download).

1797 grey 8x8 images of the digits 0-9 (UCI "Optical Recognition of Handwritten Digits", the test
part, as shipped inside scikit-learn). Split: a fixed stratified 80/20 split (1437 train, 360 val,
``random_state=0``), the same for every seed and every run.
"""

from __future__ import annotations

import torch

from senet.data.bundle import DataBundle
from senet.data.tensors import ArrayDataset

__all__ = ["load_digits_bundle", "DIGITS_SPLIT_SEED"]

DIGITS_SPLIT_SEED = 0
DIGITS_VAL_FRACTION = 0.2


def load_digits_bundle(*, augment: bool = True) -> DataBundle:
    """Digits as ``(1, 8, 8)`` tensors normalised with the training split's mean and std.

    ``augment`` shifts training images by up to one pixel (the 8x8 analogue of CIFAR's 4-pixel
    crop-with-padding; digits are not flipped, a mirrored 2 is no 2).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8) in [0, 1]
    labels = torch.tensor(digits.target, dtype=torch.long)
    train_idx, val_idx = train_test_split(
        list(range(len(labels))),
        test_size=DIGITS_VAL_FRACTION,
        random_state=DIGITS_SPLIT_SEED,
        stratify=digits.target,
    )
    train_x, val_x = images[train_idx], images[val_idx]
    mean, std = train_x.mean().item(), train_x.std().item()
    train_x, val_x = (train_x - mean) / std, (val_x - mean) / std
    background = (0.0 - mean) / std
    return DataBundle(
        name="digits",
        train=ArrayDataset(train_x, labels[train_idx], shift=1 if augment else 0, fill=background),
        val=ArrayDataset(val_x, labels[val_idx]),
        num_classes=10,
        input_shape=(1, 8, 8),
        note="scikit-learn digits, fixed 1437/360 split",
    )
