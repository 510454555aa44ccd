"""What happened, only ever appended: events for operators, usage records for billing and
the audit trail (the record itself is ``seawall.service.audit``'s; here it is a ``doc``).

Event ids grow with time, so "newest first" and "everything after id N" (the cursor of
the scheduler's alerts, :meth:`EventStore.last_event_id`) need no clock. Usage records
are summed, never updated, so billing can audit them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from seawall import model
from seawall.db.connection import Database
from seawall.db.schema import audit_t, events_t, usage_t
from seawall.errors import InvalidInput


@dataclass(frozen=True)
class Event:
    """Something an operator may want to know about after the fact."""

    id: int
    at: float
    kind: str
    message: str
    severity: str = "info"
    workload: str | None = None
    run_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


SEVERITIES = ("debug", "info", "warning", "error", "critical")


class EventStore:
    """Events (newest first), usage records (summed per project and metric) and audit
    records (newest first, filtered)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add_event(
        self,
        kind: str,
        message: str,
        *,
        severity: str = "info",
        workload: str | None = None,
        run_id: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> int:
        """Append an event and return its id (ids grow with time)."""
        if severity not in SEVERITIES:
            raise InvalidInput(
                f"{severity!r} is not one of {', '.join(SEVERITIES)}", field="event.severity"
            )
        values = {
            "at": time.time(),
            "kind": kind,
            "severity": severity,
            "message": message,
            "workload": workload,
            "run_id": run_id,
            "data": model.dump(dict(data or {})),
        }
        with self._db.tx(write=True) as conn:
            pk = conn.execute(
                sa.insert(events_t).values(values).returning(events_t.c.id)
            ).scalar_one()
        return int(pk)

    def list_events(
        self, workload: str | None = None, since: float | None = None, limit: int = 100
    ) -> list[Event]:
        """Events newest first (so ``limit`` keeps the most recent), from ``since`` on."""
        q = sa.select(events_t).order_by(events_t.c.id.desc()).limit(limit)
        if workload is not None:
            q = q.where(events_t.c.workload == workload)
        if since is not None:
            q = q.where(events_t.c.at >= since)
        with self._db.tx() as conn:
            rows = conn.execute(q).all()
        return [
            Event(
                id=r.id,
                at=r.at,
                kind=r.kind,
                message=r.message,
                severity=r.severity,
                workload=r.workload,
                run_id=r.run_id,
                data=r.data,
            )
            for r in rows
        ]

    def last_event_id(self) -> int:
        with self._db.tx() as conn:
            return int(conn.execute(sa.select(sa.func.max(events_t.c.id))).scalar() or 0)

    def add_usage(
        self,
        project: str,
        metric: str,
        amount: float,
        *,
        workload: str | None = None,
        at: float | None = None,
    ) -> None:
        """Append one usage record; records are summed, never updated, so billing can audit."""
        values = {
            "project": project,
            "metric": metric,
            "amount": float(amount),
            "workload": workload,
            "at": time.time() if at is None else at,
        }
        with self._db.tx(write=True) as conn:
            conn.execute(sa.insert(usage_t).values(values))

    def usage(
        self, project: str | None = None, since: float | None = None
    ) -> dict[str, dict[str, float]]:
        """Sums per project and metric, optionally of one project and from ``since`` on."""
        q = sa.select(usage_t.c.project, usage_t.c.metric, sa.func.sum(usage_t.c.amount)).group_by(
            usage_t.c.project, usage_t.c.metric
        )
        if project is not None:
            q = q.where(usage_t.c.project == project)
        if since is not None:
            q = q.where(usage_t.c.at >= since)
        out: dict[str, dict[str, float]] = {}
        with self._db.tx() as conn:
            for proj, metric, total in conn.execute(q):
                out.setdefault(proj, {})[metric] = float(total)
        return out

    def add_audit(self, doc: Mapping[str, Any]) -> int:
        """Append one audit record (its ``as_dict``) and return its id (ids grow with time).

        The filtered columns are copies of the doc's fields, written in the same statement.
        """
        initiator = doc.get("initiator") or {}
        values = {
            "at": float(doc["at"]),
            "action": str(doc["action"])[:128],
            "outcome": str(doc["outcome"])[:16],
            "user": str(initiator.get("user", ""))[:255],
            "project": str(initiator.get("project", ""))[:255],
            "project_id": str(initiator.get("project_id", ""))[:255],
            "doc": model.dump(dict(doc)),
        }
        with self._db.tx(write=True) as conn:
            pk = conn.execute(
                sa.insert(audit_t).values(values).returning(audit_t.c.id)
            ).scalar_one()
        return int(pk)

    def list_audit(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        project: str | None = None,
        user: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        upto: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Audit records newest first, as docs with their ``id``: ``since <= at < until``,
        the initiator's project by name or id, and ids from ``upto`` down (paging)."""
        q = sa.select(audit_t.c.id, audit_t.c.doc).order_by(audit_t.c.id.desc()).limit(limit)
        if since is not None:
            q = q.where(audit_t.c.at >= since)
        if until is not None:
            q = q.where(audit_t.c.at < until)
        if project is not None:
            q = q.where(sa.or_(audit_t.c.project == project, audit_t.c.project_id == project))
        if user is not None:
            q = q.where(audit_t.c.user == user)
        if action is not None:
            q = q.where(audit_t.c.action == action)
        if outcome is not None:
            q = q.where(audit_t.c.outcome == outcome)
        if upto is not None:
            q = q.where(audit_t.c.id <= upto)
        with self._db.tx() as conn:
            rows = conn.execute(q).all()
        return [{**dict(r.doc), "id": int(r.id)} for r in rows]
