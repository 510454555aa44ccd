"""The one output and error convention of every ``seawall`` command.

- **Errors** are :class:`~seawall.errors.SeawallError` subclasses. They leave a command
  as one line on stderr, ``error: <message>``, and the exit code of their class in the
  error tree (``InvalidInput`` 2, ``NotFound`` 4 ...). Every group of the command line is
  a :class:`CommandGroup`, which does that mapping, so a group works the same whether it
  runs under ``seawall`` or on its own (the tests and ``bench/repo.py`` call
  ``repo_group`` directly). Usage errors are click's own (``Error: ...`` with the usage,
  exit 2); an interrupt exits 130.
- **Results** go to stdout through :func:`emit`: with ``--json`` the data as JSON
  (indented, in the data's own key order; dataclasses and datetimes converted), else the
  command's human form (a rich table or a line of text).
- **Runs** that did not succeed exit :data:`RUN_FAILED` (or :data:`RUN_PARTIAL` when
  some of their steps did), after their report is printed.

Progress and notices (``run ... started``) go to stderr, so stdout stays parseable.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import Any, NoReturn

import click
from rich.console import Console

from seawall.errors import SeawallError

#: Human output (tables, reports).
out = Console()
#: Progress, live step tables and notices.
console = Console(stderr=True)

#: Exit code of an operation whose run failed (or was reverted or cancelled).
RUN_FAILED = 1
#: Exit code of an operation whose run finished with some steps failed.
RUN_PARTIAL = 3
#: Exit code after an interrupt (Ctrl-C), as shells report SIGINT.
INTERRUPTED = 130
#: Exit code of a usage error (click's own convention, and ``InvalidInput``'s).
USAGE = 2


def fail(exc: SeawallError) -> NoReturn:
    """Print ``error: <message>`` on stderr and exit with the class's code."""
    click.echo(f"{click.style('error:', fg='red')} {exc}", err=True)
    sys.exit(exc.exit_code)


class CommandGroup(click.Group):
    """A click group whose commands fail the one way (:func:`fail`).

    Subgroups made with ``@group.group()`` are of this class too."""

    group_class = type

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SeawallError as exc:
            fail(exc)


def jsonable(value: Any) -> Any:
    """``value`` with dataclasses as dicts and datetimes in ISO 8601 (JSON's own types
    otherwise; anything else is printed as its ``str``)."""
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def emit(as_json: bool, data: Any, human: Callable[[], None] | str | None = None) -> None:
    """A command's result: ``data`` as JSON with ``--json`` (or when there is no human
    form), else ``human`` (text to print, or a function that prints)."""
    if as_json or human is None:
        click.echo(json.dumps(jsonable(data), indent=2, ensure_ascii=False, default=str))
    elif callable(human):
        human()
    else:
        click.echo(human)
