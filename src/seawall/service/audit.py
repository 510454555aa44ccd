"""The audit trail: who did what, when and from where, for every change and every run.

Every edge records here: the API's middleware (``seawall.api.audit``) for every call that
is not a read, refused ones included; the dashboard's form posts through the same
middleware; the CLI's state-changing commands (``seawall.cli``, as the local OS user);
and the pipeline for each run it records (with the run's initiator, also kept in the
run's ``params``) and each run it ends.

The record (:class:`AuditRecord`, :class:`Initiator`) and its mapping to a JSON line
(:func:`cadf`) are plain data and do no I/O; :class:`AuditTrail` stores records in the
state database's ``audit`` table and, when ``seawall serve --audit-file`` names one,
appends each as one JSON line to a file that an operator's log shipper tails.

What is never recorded: request or response bodies, headers other than the user agent
and the request id, query strings, tokens, passphrases or credentials. A record holds
names and ids only, so the trail can be shipped to a log system that is less trusted
than seawall's state database.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from seawall.db import StateStore

#: how the initiator was authenticated: an API token of seawall's, a Keystone token,
#: the local OS user of the command line, or seawall's own scheduler
VIA = ("local", "keystone", "cli", "scheduler")

#: the outcomes: done; refused by authentication, authorisation or a limit; tried and
#: failed (invalid input, a conflict, an error); a run recorded and not yet ended
OUTCOMES = ("allowed", "denied", "failed", "pending")

#: statuses that mean the caller was refused rather than that the call went wrong. A 404
#: is among them because another project's object answers 404 like a missing one.
DENIED = frozenset({401, 403, 404, 429})

#: the attribute of a request's state (``request.state``) where the edge that
#: authenticated the caller leaves it for the audit middleware
CALLER = "audit_caller"

#: the longest text field a record keeps (user agents and route paths are cut here)
MAX_TEXT = 255


class Principal(Protocol):
    """An authenticated caller, as the edges know it (``seawall.api.auth.Principal``)."""

    @property
    def project(self) -> str: ...

    @property
    def project_id(self) -> str: ...

    @property
    def admin(self) -> bool: ...

    @property
    def user(self) -> str: ...


@dataclass(frozen=True)
class Initiator:
    """Who: the user, the project (name and id) the token is scoped to, its roles and
    how it was authenticated (one of :data:`VIA`). Empty strings when unknown (a call
    with no valid token)."""

    user: str = ""
    project: str = ""
    project_id: str = ""
    roles: tuple[str, ...] = ()
    via: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "project": self.project,
            "project_id": self.project_id,
            "roles": list(self.roles),
            "via": self.via,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Initiator:
        return cls(
            user=str(data.get("user", "")),
            project=str(data.get("project", "")),
            project_id=str(data.get("project_id", "")),
            roles=tuple(str(r) for r in data.get("roles", ())),
            via=str(data.get("via", "")),
        )


#: who starts the runs the scheduler starts
SCHEDULER = Initiator(user="seawall-scheduler", via="scheduler")


def roles_of(principal: Principal) -> frozenset[str]:
    """The caller's roles: its own when it has them (Keystone's, through the policy
    engine), else ``admin`` or ``member`` from its admin flag. The one place that reads
    them, so a richer ``Principal`` changes this function only."""
    roles: frozenset[str] | None = getattr(principal, "roles", None)
    if roles is not None:
        return frozenset(roles)
    return frozenset({"admin"} if principal.admin else {"member"})


def initiator_of(principal: Principal) -> Initiator:
    """The :class:`Initiator` of an authenticated API or dashboard caller."""
    return Initiator(
        user=principal.user,
        project=principal.project,
        project_id=principal.project_id,
        roles=tuple(sorted(roles_of(principal))),
        via=str(getattr(principal, "via", "")),  # local or keystone (API tokens)
    )


def local_initiator() -> Initiator:
    """The OS user running this process (``seawall`` on the command line): whoever can
    open the state directory acts on it, so no roles are checked or recorded."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (some containers)
        user = ""
    return Initiator(user=user, via="cli")


def outcome_of(status: int) -> str:
    """The outcome of an HTTP status (see :data:`DENIED`)."""
    if status < 400:
        return "allowed"
    return "denied" if status in DENIED else "failed"


@dataclass(frozen=True)
class AuditRecord:
    """One audited action. ``action`` names it (the API route's name such as
    ``start_run``, a CLI command such as ``site add``, or ``run.start``/``run.end``);
    ``method`` and ``route`` are the HTTP method and route template (``cli`` and the
    command path for the command line, ``run`` and the run's kind for runs); ``target``
    the ids and names it acted on; ``status`` the HTTP status or exit code."""

    action: str
    outcome: str
    initiator: Initiator
    at: float = field(default_factory=time.time)
    method: str = ""
    route: str = ""
    target: Mapping[str, str] = field(default_factory=dict)
    status: int = 0
    client: str = ""  #: the client's address
    user_agent: str = ""
    request_id: str = ""
    id: int = 0  #: assigned by the state database; grows with time

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"audit outcome {self.outcome!r} is not one of {OUTCOMES}")

    def as_dict(self) -> dict[str, Any]:
        """The stored form (the ``doc`` column): plain JSON, ISO time beside epoch."""
        return {
            "id": self.id,
            "at": self.at,
            "time": iso(self.at),
            "action": self.action,
            "method": self.method,
            "route": self.route[:MAX_TEXT],
            "target": {str(k): str(v)[:MAX_TEXT] for k, v in self.target.items()},
            "outcome": self.outcome,
            "status": self.status,
            "initiator": self.initiator.as_dict(),
            "client": self.client[:MAX_TEXT],
            "user_agent": self.user_agent[:MAX_TEXT],
            "request_id": self.request_id[:MAX_TEXT],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditRecord:
        return cls(
            id=int(data.get("id", 0)),
            at=float(data["at"]),
            action=str(data["action"]),
            method=str(data.get("method", "")),
            route=str(data.get("route", "")),
            target={str(k): str(v) for k, v in dict(data.get("target", {})).items()},
            outcome=str(data["outcome"]),
            status=int(data.get("status", 0)),
            initiator=Initiator.from_dict(data.get("initiator", {})),
            client=str(data.get("client", "")),
            user_agent=str(data.get("user_agent", "")),
            request_id=str(data.get("request_id", "")),
        )


def iso(at: float) -> str:
    """Epoch seconds as ISO 8601 in UTC, to the millisecond (CADF's ``eventTime``)."""
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="milliseconds")


def cadf(record: AuditRecord) -> dict[str, Any]:
    """The record as one JSON line, its fields named after CADF's (the event model of
    OpenStack's audit middleware): ``eventTime``, ``action``, ``outcome`` with a
    ``reason``, ``initiator`` (with ``host``), ``target``. CADF's outcome is ``success``
    or ``failure``; seawall's finer one (:data:`OUTCOMES`) is ``reason.outcome``."""
    i = record.initiator
    return {
        "typeURI": "http://schemas.dmtf.org/cloud/audit/1.0/event",
        "eventType": "activity",
        "id": record.request_id or f"seawall-audit-{record.id}",
        "eventTime": iso(record.at),
        "eventEpoch": record.at,
        "action": record.action,
        "outcome": {"allowed": "success", "pending": "pending"}.get(record.outcome, "failure"),
        "reason": {
            "reasonType": "HTTP" if record.method not in ("cli", "run") else "seawall",
            "reasonCode": str(record.status),
            "outcome": record.outcome,
        },
        "initiator": {
            "typeURI": "service/security/account/user",
            "name": i.user,
            "project_name": i.project,
            "project_id": i.project_id,
            "roles": list(i.roles),
            "credential": {"type": i.via},
            "host": {"address": record.client, "agent": record.user_agent},
        },
        "target": {**record.target, "typeURI": "service/dr", "id": record.route},
        "requestPath": record.route,
        "method": record.method,
        "observer": {"typeURI": "service/dr", "name": "seawall"},
    }


@dataclass(frozen=True)
class AuditFilter:
    """What ``GET /v1/audit`` and ``seawall audit list`` select; None matches all."""

    since: float | None = None
    until: float | None = None
    project: str | None = None  #: the initiator's project name or id
    user: str | None = None
    action: str | None = None
    outcome: str | None = None


class AuditTrail:
    """Records go to the state database and, when :attr:`file` is set, to a JSON-lines
    file (appended, one line per record, flushed each time, mode 0600)."""

    def __init__(self, db: StateStore, file: Path | None = None) -> None:
        self.db = db
        self.file = file
        self._lock = threading.Lock()

    def record(self, record: AuditRecord) -> AuditRecord:
        """Store ``record`` (and append it to the file); the stored record, with its id."""
        stored = replace(record, id=self.db.add_audit(record.as_dict()))
        if self.file is not None:
            line = json.dumps(cadf(stored), ensure_ascii=False, separators=(",", ":"))
            with self._lock:
                self.file.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                with open(fd, "a", encoding="utf-8") as fh:
                    fh.write(line + "\n")
        return stored

    def list(
        self, selected: AuditFilter, *, upto: int | None = None, limit: int = 100
    ) -> list[AuditRecord]:
        """Records newest first, from id ``upto`` down (a page's marker), at most ``limit``."""
        docs = self.db.list_audit(
            since=selected.since,
            until=selected.until,
            project=selected.project,
            user=selected.user,
            action=selected.action,
            outcome=selected.outcome,
            upto=upto,
            limit=limit,
        )
        return [AuditRecord.from_dict(d) for d in docs]
