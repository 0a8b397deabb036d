"""Shared test fixtures.

``shared_data`` locates the optional real data sets (``../shared/data`` beside the checkout, or
``$SENET_SHARED/data``); tests that use it skip cleanly when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def find_shared_data() -> Path | None:
    candidates = []
    if os.environ.get("SENET_SHARED"):
        candidates.append(Path(os.environ["SENET_SHARED"]) / "data")
    candidates.append(REPO_ROOT.parent / "shared" / "data")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture
def shared_data() -> Path:
    path = find_shared_data()
    if path is None:
        pytest.skip("../shared/data is not available on this machine")
    return path


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
