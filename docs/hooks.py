"""MkDocs hook: generate the command-line reference from senet's own argument parser.

A page containing the line ``<!-- senet-cli-reference -->`` gets, in its place, the ``--help`` text
of ``senet`` and of each of its subcommands, so the reference cannot drift from the code.
"""

from __future__ import annotations

import argparse

MARKER = "<!-- senet-cli-reference -->"


def _cli_reference() -> str:
    from senet.cli import build_parser

    parser = build_parser()
    sections = [f"## senet\n\n```text\n{parser.format_help()}```\n"]
    for action in parser._actions:  # argparse keeps subparsers here; there is no public accessor
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                sections.append(f"## senet {name}\n\n```text\n{sub.format_help()}```\n")
    return "\n".join(sections)


def on_page_markdown(markdown: str, **_: object) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, _cli_reference())
    return markdown
