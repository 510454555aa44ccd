"""Regenerate docs/reference/cli.md from the commands' own --help (docs that cannot drift).

.venv/bin/python docs/reference/generate.py          # rewrite cli.md
.venv/bin/python docs/reference/generate.py --check  # exit 1 if cli.md is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from seawall.cli import cli

TARGET = Path(__file__).with_name("cli.md")


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
    text = render()
    if "--check" in sys.argv:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is stale; run: python docs/reference/generate.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
