"""Free Spoken Digit Dataset (real 8 kHz recordings, variable length) as log spectrograms.

Reads the packed ``fsdd.npz`` described in ``shared/data/fsdd/README.md`` (keys ``audio``, ``offsets``,
``lengths``, ``labels``, ``is_test``). Each recording becomes a ``(64, T)`` log-power spectrogram
(STFT with n_fft=256, hop 128 = 16 ms, Hann window; the 128 lowest bins averaged in pairs), normalised
per channel with the training split's statistics. T varies with the recording (9 to 143 frames);
batches are padded and carry the lengths, so the masked squeeze ignores the padding.
Split: the official one (takes 0-4 are test: 300 recordings; 2700 train).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from senet.data.bundle import DataBundle
from senet.data.tensors import SequenceDataset

__all__ = ["load_fsdd_bundle", "find_fsdd_file", "log_spectrogram"]

FSDD_KEYS = ("audio", "offsets", "lengths", "labels", "is_test")
N_FFT, HOP, BINS = 256, 128, 64


def find_fsdd_file(data_dir: str | Path | None) -> Path:
    """The ``fsdd.npz`` at ``data_dir`` (the file itself or a folder holding it), or a clear error."""
    if data_dir is None:
        raise ValueError("data 'fsdd' needs --data-dir: a folder holding fsdd.npz (see shared/data/fsdd/README.md)")
    path = Path(data_dir)
    candidate = path if path.suffix == ".npz" else path / "fsdd.npz"
    if not candidate.is_file():
        raise FileNotFoundError(f"FSDD not found: expected the file fsdd.npz (keys {', '.join(FSDD_KEYS)}) at {candidate}")
    return candidate


def log_spectrogram(waveform: torch.Tensor) -> torch.Tensor:
    """``(L,)`` float waveform -> ``(64, 1 + L // 128)`` log power spectrogram."""
    window = torch.hann_window(N_FFT)
    spec = torch.stft(waveform, N_FFT, HOP, window=window, return_complex=True)  # (129, T)
    power = spec.abs().square()[: 2 * BINS]  # (128, T): drop the Nyquist bin
    power = power.view(BINS, 2, -1).mean(1)  # (128, T) -> (64, T)
    return torch.log(power + 1e-6)


def load_fsdd_bundle(data_dir: str | Path | None) -> DataBundle:
    path = find_fsdd_file(data_dir)
    with np.load(path) as archive:
        missing = [key for key in FSDD_KEYS if key not in archive.files]
        if missing:
            raise ValueError(f"{path} is not the packed FSDD file: missing keys {missing}")
        audio, offsets, lengths = archive["audio"], archive["offsets"], archive["lengths"]
        labels, is_test = archive["labels"], archive["is_test"].astype(bool)
    specs = []
    for start, length in zip(offsets, lengths):
        waveform = torch.from_numpy(audio[start : start + length].astype(np.float32) / 32768.0)
        specs.append(log_spectrogram(waveform))
    train_ids, val_ids = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    frames = torch.cat([specs[i] for i in train_ids], dim=1)  # (64, sum T)
    mean, std = frames.mean(1, keepdim=True), frames.std(1, keepdim=True)
    specs = [(s - mean) / std for s in specs]
    targets = torch.from_numpy(labels.astype(np.int64))
    typical = int(np.median([s.shape[1] for s in specs]))
    return DataBundle(
        name="fsdd",
        train=SequenceDataset([specs[i] for i in train_ids], targets[train_ids]),
        val=SequenceDataset([specs[i] for i in val_ids], targets[val_ids]),
        num_classes=10,
        input_shape=(BINS, typical),
        variable_length=True,
        note="FSDD spoken digits (real 8 kHz audio), official split, log spectrograms",
    )
