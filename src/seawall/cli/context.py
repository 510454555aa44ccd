"""What a command works on and the inputs commands share.

:class:`Ctx` is the object the root group hands every command: the local
:class:`~seawall.service.Service` (opened on first use, so ``seawall repo ...`` and
``seawall --help`` never import the service stack), or with ``--url`` a
:class:`~seawall.cli.remote.Remote`. :func:`read_file` and :func:`parse_duration` read the
two kinds of input several command groups take.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import yaml

from seawall.errors import InvalidInput

if TYPE_CHECKING:
    from seawall.cli.remote import Remote
    from seawall.service import Service


class Ctx:
    """What a command works on: the local :class:`Service`, or a server (``remote``)."""

    def __init__(self, home: str | None, as_json: bool, remote: Remote | None = None) -> None:
        self.home = home
        self.as_json = as_json
        self.remote = remote
        self._service: Service | None = None

    @property
    def service(self) -> Service:
        if self.remote is not None:  # the root group refuses such commands first; a net
            raise InvalidInput("this command is local-only; run it without --url")
        if self._service is None:
            from seawall.service import Service

            self._service = Service(self.home)
        return self._service

    def close(self) -> None:
        if self._service is not None:
            self._service.close()
        if self.remote is not None:
            self.remote.close()


pass_ctx = click.make_pass_decorator(Ctx)


def read_file(path: str) -> dict[str, Any]:
    """A YAML or JSON document that must be a mapping."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", field="file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise InvalidInput(f"{path} is not valid YAML/JSON: {problem}{at}", field="file") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{path} must hold a mapping at the top level", field="file")
    return data


def parse_duration(text: str, field: str = "duration") -> int:
    """``90``, ``90s``, ``15m``, ``4h``, ``1d`` -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip().lower()
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise InvalidInput(
            f"{text!r} is not a duration like 90s, 15m, 4h or 1d", field=field
        ) from None
