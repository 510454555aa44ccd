"""Events and usage records, on SQLite and PostgreSQL."""

from __future__ import annotations

import time

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
