"""Events and usage records, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import pytest

from seawall.db import StateStore
from seawall.errors import InvalidInput

# ---- events and usage -----------------------------------------------------------------


def test_events(store: StateStore) -> None:
    first = store.add_event("checkpoint", "c1 created", workload="app", data={"bytes": 10})
    second = store.add_event(
        "quiesce", "db: freeze failed", severity="warning", workload="app", run_id="r1"
    )
    third = store.add_event("site", "site b unreachable", severity="error")
    assert first < second < third
    events = store.list_events()
    assert [e.id for e in events] == [third, second, first]
    assert events[2].data == {"bytes": 10} and events[2].workload == "app"
    assert events[1].severity == "warning" and events[1].run_id == "r1"
    assert [e.id for e in store.list_events(workload="app")] == [second, first]
    assert [e.id for e in store.list_events(limit=1)] == [third]
    assert store.list_events(since=time.time() + 60) == []
    assert len(store.list_events(since=events[2].at)) == 3
    with pytest.raises(InvalidInput, match="'loud' is not one of"):
        store.add_event("x", "y", severity="loud")


def test_usage(store: StateStore) -> None:
    store.add_usage("p1", "bytes_stored", 100, workload="app", at=10.0)
    store.add_usage("p1", "bytes_stored", 50.5, at=20.0)
    store.add_usage("p1", "drills", 1, at=20.0)
    store.add_usage("p2", "bytes_stored", 7)
    assert store.usage() == {
        "p1": {"bytes_stored": 150.5, "drills": 1.0},
        "p2": {"bytes_stored": 7.0},
    }
    assert store.usage("p2") == {"p2": {"bytes_stored": 7.0}}
    assert store.usage("p1", since=15.0) == {"p1": {"bytes_stored": 50.5, "drills": 1.0}}
    assert store.usage("p3") == {}


# ---- the audit trail ------------------------------------------------------------------


def _audit_doc(at: float, user: str, project: str, action: str, outcome: str) -> dict[str, Any]:
    return {
        "at": at,
        "action": action,
        "outcome": outcome,
        "initiator": {"user": user, "project": project, "project_id": f"id-{project}"},
        "target": {"name": "shop"},
    }


def test_audit_records_are_appended_and_filtered_newest_first(store: StateStore) -> None:
    ids = [
        store.add_audit(_audit_doc(10.0, "ann", "p1", "start_run", "allowed")),
        store.add_audit(_audit_doc(20.0, "bob", "p2", "start_run", "denied")),
        store.add_audit(_audit_doc(30.0, "ann", "p1", "create_policy", "failed")),
    ]
    assert ids == sorted(ids)

    def listed(**kw: Any) -> list[int]:
        return [d["id"] for d in store.list_audit(**kw)]

    assert listed() == ids[::-1]
    assert store.list_audit()[0]["target"] == {"name": "shop"}
    assert listed(user="ann") == [ids[2], ids[0]]
    assert listed(project="p2") == listed(project="id-p2") == [ids[1]]  # name or id
    assert listed(action="start_run", outcome="denied") == [ids[1]]
    assert listed(since=20.0, until=30.0) == [ids[1]]  # since <= at < until
    assert listed(upto=ids[1]) == [ids[1], ids[0]]
    assert listed(limit=1) == [ids[2]]
