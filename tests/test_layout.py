"""The package layout shows the architecture: imports only point downward."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "senet"

# What each sub-package may import from senet (itself always allowed).
ALLOWED: dict[str, set[str]] = {
    "layers": set(),
    "models": {"layers"},
    "interop": {"layers", "models"},
    "analysis": {"layers", "models"},
    "data": {"layers", "models"},
    "bench": {"layers", "models", "interop"},
    "train": {"layers", "models", "data", "analysis"},
}
# Outside senet, the layers may use only torch and the standard library.
# (triton is torch's own kernel language, installed with torch on Linux: senet.layers.triton_ops imports it lazily)
LAYERS_THIRD_PARTY = {"torch", "triton"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _subpackage_files(name: str) -> list[Path]:
    return sorted((PACKAGE / name).rglob("*.py"))


@pytest.mark.parametrize("subpackage", sorted(ALLOWED))
def test_imports_point_downward(subpackage):
    files = _subpackage_files(subpackage)
    if not files:
        pytest.skip(f"senet.{subpackage} does not exist yet")
    for path in files:
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] != "senet" or len(parts) < 2:
                continue
            target = parts[1]
            assert target == subpackage or target in ALLOWED[subpackage] or target == "__init__", (
                f"{path.relative_to(PACKAGE.parent)} imports {name}: senet.{subpackage} may import only "
                f"{sorted(ALLOWED[subpackage] | {subpackage})}"
            )


def test_layers_depend_only_on_torch():
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for path in _subpackage_files("layers"):
        for name in _imports(path):
            top = name.split(".")[0]
            assert top in stdlib or top in LAYERS_THIRD_PARTY or top == "senet", (
                f"{path.relative_to(PACKAGE.parent)} imports {name}: senet.layers depends only on torch"
            )


def test_nothing_imports_the_cli():
    for path in PACKAGE.rglob("*.py"):
        if path.name in {"cli.py", "__main__.py"}:
            continue
        assert not any(n == "senet.cli" or n.startswith("senet.cli.") for n in _imports(path)), path
