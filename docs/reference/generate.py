"""Regenerate docs/reference/cli.md from the commands' own --help, and rbac.md from the
RBAC rules' defaults (docs that cannot drift).

.venv/bin/python docs/reference/generate.py          # rewrite cli.md and rbac.md
.venv/bin/python docs/reference/generate.py --check  # exit 1 if either is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from seawall.cli import cli
from seawall.service.rbac import render_reference

TARGET = Path(__file__).with_name("cli.md")
RBAC = Path(__file__).with_name("rbac.md")


def render() -> str:
    parts = [
        "# CLI reference\n",
        "Generated from `--help` by `docs/reference/generate.py`; do not edit.\n",
    ]

    def walk(cmd: click.Command, path: list[str]) -> None:
        ctx = click.Context(cmd, info_name=" ".join(path), terminal_width=88, max_content_width=88)
        parts.append(f"\n## `{' '.join(path)}`\n\n```text\n{cmd.get_help(ctx).rstrip()}\n```\n")
        if isinstance(cmd, click.Group):
            for name in sorted(cmd.list_commands(ctx)):
                sub = cmd.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    walk(sub, [*path, name])

    walk(cli, ["seawall"])
    return "".join(parts)


def main() -> int:
    docs = {TARGET: render(), RBAC: render_reference()}
    if "--check" in sys.argv:
        stale = [p for p, text in docs.items() if not p.exists() or p.read_text() != text]
        for path in stale:
            print(f"{path} is stale; run: python docs/reference/generate.py", file=sys.stderr)
        return 1 if stale else 0
    for path, text in docs.items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
