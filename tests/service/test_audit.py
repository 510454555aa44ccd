"""The audit trail's record and its recording (``seawall.service.audit``), and the
initiator every run records: the local OS user for the CLI's runs, the scheduler for
its own, the caller for the API's (tests/api/test_api_audit.py). Real state databases."""

from __future__ import annotations

import dataclasses
import getpass
import json
from pathlib import Path
from typing import Any

import pytest

from seawall.db import StateStore
from seawall.service.audit import (
    SCHEDULER,
    AuditFilter,
    AuditRecord,
    AuditTrail,
    Initiator,
    cadf,
    initiator_of,
    outcome_of,
    roles_of,
)


@dataclasses.dataclass(frozen=True)
class Caller:
    project: str = "p"
    project_id: str = "pid"
    admin: bool = False
    user: str = "ann"
    via: str = "keystone"


@dataclasses.dataclass(frozen=True)
class KeystoneCaller(Caller):
    roles: frozenset[str] = frozenset({"reader", "dr_operator"})


def test_roles_come_from_the_principal_or_from_its_admin_flag() -> None:
    assert roles_of(Caller()) == {"member"}
    assert roles_of(Caller(admin=True)) == {"admin"}
    assert roles_of(KeystoneCaller()) == {"reader", "dr_operator"}
    assert initiator_of(KeystoneCaller()) == Initiator(
        "ann", "p", "pid", ("dr_operator", "reader"), "keystone"
    )


def test_outcomes_of_statuses() -> None:
    assert [outcome_of(s) for s in (200, 202, 303)] == ["allowed"] * 3
    assert [outcome_of(s) for s in (401, 403, 404, 429)] == ["denied"] * 4
    assert [outcome_of(s) for s in (409, 413, 422, 500)] == ["failed"] * 4
    with pytest.raises(ValueError, match="not one of"):
        AuditRecord(action="x", outcome="maybe", initiator=Initiator())


def test_the_trail_stores_records_and_appends_cadf_lines(tmp_path: Path) -> None:
    with StateStore(f"sqlite:///{tmp_path / 'state.db'}") as db:
        trail = AuditTrail(db, tmp_path / "logs" / "audit.jsonl")
        rec = AuditRecord(
            action="start_run",
            outcome="denied",
            initiator=initiator_of(Caller()),
            at=1_764_892_800.25,
            method="POST",
            route="/v1/workloads/{name}/runs",
            target={"name": "shop"},
            status=404,
            client="192.0.2.7",
            user_agent="curl/8",
            request_id="req-1",
        )
        stored = trail.record(rec)
        assert stored.id > 0 and stored == dataclasses.replace(rec, id=stored.id)
        assert trail.list(AuditFilter(project="pid")) == [stored]
        assert trail.list(AuditFilter(outcome="allowed")) == []

    (line,) = (tmp_path / "logs" / "audit.jsonl").read_text().splitlines()
    assert json.loads(line) == cadf(stored)
    event = cadf(stored)
    assert event["eventTime"] == "2025-12-05T00:00:00.250+00:00"
    assert event["outcome"] == "failure" and event["reason"]["outcome"] == "denied"
    assert event["initiator"]["host"] == {"address": "192.0.2.7", "agent": "curl/8"}
    assert event["initiator"]["project_id"] == "pid" and event["id"] == "req-1"


def test_each_run_records_who_started_it(shop: Any) -> None:
    svc = shop.svc
    by_cli, _ = svc.prepare_operation("protect", "shop")
    by_scheduler, _ = svc.prepare_operation("protect", "shop", initiator=SCHEDULER)
    assert by_cli.params["initiator"] == {
        "user": getpass.getuser(),
        "project": "",
        "project_id": "",
        "roles": [],
        "via": "cli",
    }
    assert by_scheduler.params["initiator"]["via"] == "scheduler"
    starts = svc.audit.list(AuditFilter(action="run.start"))
    assert [(r.target["run_id"], r.initiator.via) for r in starts] == [
        (by_scheduler.id, "scheduler"),
        (by_cli.id, "cli"),
    ]
    assert all(r.outcome == "pending" and r.route == "protect" for r in starts)
