"""Key renaming between senet's ResNet state dicts and a peer's, from tables of template pairs.

A table row pairs a senet key template with the peer's, e.g. MONAI's
``("{block}.bn{k}.{bn}", "{block}.conv{k}.adn.N.{bn}")``. Placeholders match in either direction:

- ``{block}``: a residual unit, ``layer2.0``;
- ``{k}``: a convolution index inside a unit, 1 to 3;
- ``{bn}``: a batch-norm entry, ``weight``, ``bias``, ``running_mean``, ``running_var`` or ``num_batches_tracked``;
- ``{wb}``: ``weight`` or ``bias``;
- ``{d}``: an index inside a ``downsample`` sequence, 0 to 2.

A key that no row matches is an error that lists it: nothing is dropped or passed through silently.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

import torch

__all__ = ["KeyTable", "rename", "same", "SENET_STEM", "SENET_DEEP_STEM", "CAFFE_STEM", "CAFFE_DEEP_STEM"]

_PLACEHOLDERS = {
    "block": r"layer\d+\.\d+",
    "k": r"[123]",
    "bn": r"weight|bias|running_mean|running_var|num_batches_tracked",
    "wb": r"weight|bias",
    "d": r"[012]",
}


@cache
def _pattern(template: str) -> re.Pattern[str]:
    """``"{block}.se.fc1.{wb}"`` -> a regex with one named group per placeholder."""
    parts = re.split(r"\{(\w+)\}", template)  # literal, name, literal, name, ..., literal
    regex = "".join(
        re.escape(part) if i % 2 == 0 else f"(?P<{part}>{_PLACEHOLDERS[part]})" for i, part in enumerate(parts)
    )
    return re.compile(regex)


@dataclass(frozen=True)
class KeyTable:
    """Rows ``(senet_template, peer_template)``; :meth:`to_senet` and :meth:`to_peer` rename one key."""

    rows: tuple[tuple[str, str], ...]

    def to_senet(self, key: str) -> str | None:
        return _translate(key, self.rows, source=1, target=0)

    def to_peer(self, key: str) -> str | None:
        return _translate(key, self.rows, source=0, target=1)

    def __add__(self, other: KeyTable) -> KeyTable:
        return KeyTable(self.rows + other.rows)


def _translate(key: str, rows: tuple[tuple[str, str], ...], *, source: int, target: int) -> str | None:
    for row in rows:
        match = _pattern(row[source]).fullmatch(key)
        if match:
            return row[target].format(**match.groupdict())
    return None


def rename(
    state: Mapping[str, torch.Tensor], table: KeyTable, *, to_senet: bool, what: str
) -> dict[str, torch.Tensor]:
    """Rename every key of ``state`` with ``table``; ValueError listing the keys it does not know.

    ``what`` names the layout being read in the message (``"timm legacy SENet"``).
    """
    renamed: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        new = table.to_senet(key) if to_senet else table.to_peer(key)
        if new is None:
            unknown.append(key)
        elif new in renamed:
            raise ValueError(f"two keys of the {what} state dict map to {new!r} (one of them is {key!r})")
        else:
            renamed[new] = value
    if unknown:
        shown = sorted(unknown)
        raise ValueError(f"keys that are not part of a {what} state dict ({len(shown)}): {shown}")
    return renamed


def same(*templates: str) -> KeyTable:
    """Rows for keys that the peer names exactly as senet does."""
    return KeyTable(tuple((t, t) for t in templates))


# senet's (and timm resnet.py's, torchvision's) stems: one 7x7 conv, or the deep stem conv-BN-ReLU x2, conv.
SENET_STEM = same("conv1.weight", "bn1.{bn}")
SENET_DEEP_STEM = same("conv1.0.weight", "conv1.1.{bn}", "conv1.3.weight", "conv1.4.{bn}", "conv1.6.weight", "bn1.{bn}")

# The Caffe release (Cadene, timm legacy_*, MONAI) keeps the stem in a ``layer0`` sequence.
CAFFE_STEM = KeyTable((("conv1.weight", "layer0.conv1.weight"), ("bn1.{bn}", "layer0.bn1.{bn}")))
CAFFE_DEEP_STEM = KeyTable(
    (
        ("conv1.0.weight", "layer0.conv1.weight"),
        ("conv1.1.{bn}", "layer0.bn1.{bn}"),
        ("conv1.3.weight", "layer0.conv2.weight"),
        ("conv1.4.{bn}", "layer0.bn2.{bn}"),
        ("conv1.6.weight", "layer0.conv3.weight"),
        ("bn1.{bn}", "layer0.bn3.{bn}"),
    )
)
