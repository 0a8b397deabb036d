"""MkDocs hooks: pages generated from the code, so the site cannot drift from it.

- A page containing the line ``<!-- senet-cli-reference -->`` gets, in its place, the ``--help`` text
  of ``senet`` and of each of its subcommands.
- A page containing the line ``<!-- senet-tutorial NAME.py -->`` gets, in its place, the tutorial script
  ``docs/tutorials/NAME.py`` rendered: its markdown cells (jupytext "percent" format, ``# %% [markdown]``)
  as text, its code cells (``# %%``) as Python code blocks, and a link to download the script.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

MARKER = "<!-- senet-cli-reference -->"
TUTORIAL_MARKER = re.compile(r"^<!-- senet-tutorial (?P<name>[\w.-]+\.py) -->$", re.MULTILINE)
TUTORIALS = Path(__file__).resolve().parent / "tutorials"


def _cli_reference() -> str:
    from senet.cli import build_parser

    parser = build_parser()
    sections = [f"## senet\n\n```text\n{parser.format_help()}```\n"]
    for action in parser._actions:  # argparse keeps subparsers here; there is no public accessor
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                sections.append(f"## senet {name}\n\n```text\n{sub.format_help()}```\n")
    return "\n".join(sections)


def _cells(source: str) -> list[tuple[str, list[str]]]:
    """The cells of a percent-format script as ``(kind, lines)``, kind "markdown" or "code"; text before the
    first cell marker is dropped (module docstring, imports of ``__future__``)."""
    cells: list[tuple[str, list[str]]] = []
    for line in source.splitlines():
        if line.startswith("# %%"):
            cells.append(("markdown" if "[markdown]" in line else "code", []))
        elif cells:
            cells[-1][1].append(line)
    return cells


def _strip_blank(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def render_tutorial(name: str) -> str:
    """Markdown for tutorial ``name`` (a file in ``docs/tutorials``)."""
    path = TUTORIALS / name
    if not path.is_file():
        raise FileNotFoundError(f"tutorial marker names {name!r}, but {path} does not exist")
    parts = []
    for kind, lines in _cells(path.read_text(encoding="utf-8")):
        lines = _strip_blank(lines)
        if not lines:
            continue
        if kind == "markdown":
            parts.append("\n".join(re.sub(r"^# ?", "", line) for line in lines))
        else:
            parts.append("```python\n" + "\n".join(lines) + "\n```")
    if not parts:
        raise ValueError(f"tutorial {name} has no '# %%' cells")
    download = (
        f"*This page is the script [`docs/tutorials/{name}`]({name}), rendered. Run it with "
        f"`python docs/tutorials/{name}` (set `SENET_QUICK=1` for the quick version the test suite runs).*"
    )
    return "\n\n".join([parts[0], download, *parts[1:]]) + "\n"


def on_page_markdown(markdown: str, **_: object) -> str:
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, _cli_reference())
    return TUTORIAL_MARKER.sub(lambda m: render_tutorial(m.group("name")), markdown)
