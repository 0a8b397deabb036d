"""The documentation builds without warnings, every tutorial runs end to end (quick mode) and is on the site,
and the measured "Which attention layer?" table covers every registered layer."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.py"))
ATTENTION_TABLE = DOCS / "data" / "attention_table.json"


def _load_hooks():
    spec = importlib.util.spec_from_file_location("senet_docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (site / "index.html").is_file()
    for page in ("layers", "models", "model_families", "analysis", "interop", "data", "train", "bench", "cli"):
        assert (site / "api" / page / "index.html").is_file(), page
    # every tutorial script is rendered on its own page (title from its first markdown cell) and downloadable
    for script in TUTORIALS:
        page = (site / "tutorials" / script.stem / "index.html").read_text(encoding="utf-8")
        title = re.search(r"^# # (.+)$", script.read_text(encoding="utf-8"), re.MULTILINE).group(1)
        assert title.split(" ", 1)[1] in page, script.name
        assert (site / "tutorials" / script.name).is_file()
    # the CLI reference is generated from the parser: every subcommand's usage line is there
    cli = (site / "cli" / "index.html").read_text(encoding="utf-8")
    from senet.cli import build_parser

    subcommands = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction").choices
    for name in subcommands:
        assert f"usage: senet {name}" in cli, name
    # the measured table is included in the attention page
    assert "SqueezeExcite" in (site / "attention" / "index.html").read_text(encoding="utf-8")


def test_every_module_has_an_api_page():
    documented = set()
    for page in (DOCS / "api").glob("*.md"):
        documented |= set(re.findall(r"^::: (senet[\w.]*)$", page.read_text(encoding="utf-8"), re.MULTILINE))
    modules = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in (ROOT / "senet").rglob("*.py")
        if path.name not in ("__init__.py", "__main__.py")
    }
    assert sorted(modules - documented) == [], "add these modules to a page under docs/api/"


def test_tutorials_have_pages_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert len(TUTORIALS) == 6
    for script in TUTORIALS:
        page = script.with_suffix(".md")
        assert page.read_text(encoding="utf-8").strip() == f"<!-- senet-tutorial {script.name} -->", page.name
        assert f"tutorials/{page.name}" in nav, page.name


def test_tutorial_renderer_turns_cells_into_text_and_code(tmp_path, monkeypatch):
    hooks = _load_hooks()
    script = tmp_path / "demo.py"
    script.write_text(
        '"""Dropped: before the first cell."""\n'
        "# %% [markdown]\n# # Title\n#\n# Some *text*.\n\n"
        "# %%\nx = 1  # a comment stays code\n\n\n"
        "# %% [markdown]\n# More text.\n"
    )
    monkeypatch.setattr(hooks, "TUTORIALS", tmp_path)
    text = hooks.render_tutorial("demo.py")
    assert text.startswith("# Title\n\nSome *text*.")
    assert "```python\nx = 1  # a comment stays code\n```" in text
    assert text.rstrip().endswith("More text.")
    assert "Dropped" not in text and "[`docs/tutorials/demo.py`](demo.py)" in text
    page = hooks.on_page_markdown("intro\n<!-- senet-tutorial demo.py -->\n")
    assert page.startswith("intro\n# Title")
    with pytest.raises(FileNotFoundError, match="missing.py"):
        hooks.render_tutorial("missing.py")


def test_attention_table_covers_every_registered_layer():
    from senet.layers import ATTENTION_LAYERS

    data = json.loads(ATTENTION_TABLE.read_text(encoding="utf-8"))
    assert data["quick"] is False, "the committed table must come from a full run, not --quick"
    assert set(data["layers"]) == set(ATTENTION_LAYERS) | {"conv3x3"}
    labels = [variant["label"] for variant in data["compare"]["variants"]]
    assert sorted(labels) == sorted(["plain", *ATTENTION_LAYERS])
    assert all(len(variant["runs"]) >= 2 for variant in data["compare"]["variants"])  # a seed spread exists
    table = ATTENTION_TABLE.with_suffix(".md").read_text(encoding="utf-8")
    for name, cls in ATTENTION_LAYERS.items():
        assert f"| `{name}` | {cls.__name__} |" in table, name
    assert data["machine"]["cpu"] in table and data["machine"]["torch"] in table


def test_attention_table_script_quick_mode(tmp_path):
    """The measuring script still runs against the current API (tiny sizes; its numbers are not a measurement)."""
    env = dict(os.environ, MPLBACKEND="Agg")
    script = DOCS / "scripts" / "attention_table.py"
    result = subprocess.run(
        [sys.executable, str(script), "--quick", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    data = json.loads((tmp_path / "out" / "attention_table.json").read_text())
    from senet.layers import ATTENTION_LAYERS

    assert data["quick"] is True and set(data["layers"]) == set(ATTENTION_LAYERS) | {"conv3x3"}
    assert len(data["compare"]["variants"]) == len(ATTENTION_LAYERS) + 1  # and the plain network


@pytest.mark.parametrize("script", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs_in_quick_mode(script, tmp_path):
    env = dict(os.environ, SENET_QUICK="1", MPLBACKEND="Agg", SENET_TUTORIAL_OUT=str(tmp_path))
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert any(tmp_path.iterdir()), "a tutorial writes its outputs under SENET_TUTORIAL_OUT"
