"""The state database's own errors, and the messages for a missing or a taken name.

Where these sit in seawall's tree (``seawall.errors``)::

    TransientError ── StateDatabaseBusy    locked past the busy timeout, PostgreSQL unreachable
    PermanentError ── StateDatabaseError   damaged, not a database, schema from a newer seawall
    NotFound       ── not_found()          names the object and the command that lists them
    Conflict       ── conflict()           the name is taken
"""

from __future__ import annotations

from seawall.errors import Conflict, NotFound, PermanentError, TransientError


class StateDatabaseBusy(TransientError):
    """The state database is locked by another process or cannot be reached; retry later."""


class StateDatabaseError(PermanentError):
    """The state database is damaged or from a newer seawall; it needs an operator."""


_LIST_COMMANDS = {
    "site": "seawall site list",
    "policy": "seawall policy list",
    "workload": "seawall workload list",
    "checkpoint": "seawall checkpoint list",
    "run": "seawall run list",
}


def not_found(what: str, name: str) -> NotFound:
    return NotFound(f"{what} {name!r} not found; `{_LIST_COMMANDS[what]}` shows what exists")


def conflict(what: str, name: str) -> Conflict:
    return Conflict(f"{what} {name!r} already exists; pick another name or remove it first")
