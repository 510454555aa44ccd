"""The service parts that need no cloud: the operation table, the outcome of a run
(final state, measurements) from its records, and preflight problem lists."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from seawall.errors import Conflict, InvalidInput, PreflightFailed
from seawall.model import (
    Checkpoint,
    RecoveryPlan,
    Resource,
    ResourceGraph,
    ResourceKind,
    Run,
    RunKind,
    RunState,
    Selector,
    Site,
    Step,
    StepState,
    Workload,
    load,
)
from seawall.service import Service, operations, preflight
from seawall.service.operations import OPERATIONS
from seawall.service.outcome import fenced_gap, measure, shortfalls, unexplained

T0 = 1_700_000_000.0


# -- the table --------------------------------------------------------------------------


def test_every_kind_of_run_has_one_row() -> None:
    assert set(OPERATIONS) == set(RunKind)


@pytest.mark.parametrize(
    ("kind", "planner", "params"),
    [
        (RunKind.PROTECT, operations.compile_protect, operations.no_params),
        (RunKind.REPROTECT, operations.compile_protect, operations.no_params),
        (RunKind.FAILOVER, operations.compile_recover, operations.recovery_params),
        (RunKind.DRILL, operations.compile_recover, operations.recovery_params),
        (RunKind.MIGRATE, operations.compile_migrate, operations.recovery_params),
        (RunKind.FAILBACK, operations.compile_migrate, operations.recovery_params),
    ],
)
def test_the_table_names_each_kinds_planner_and_run_parameters(
    kind: RunKind, planner: Any, params: Any
) -> None:
    assert OPERATIONS[kind].planner is planner
    assert OPERATIONS[kind].params is params


def test_a_recovery_records_where_it_goes_from_where_and_from_which_checkpoint() -> None:
    w = Workload("shop", "a", Selector.parse("tag:app=shop"), "gold", ("b",))
    cp = Checkpoint("cp-1", "shop", "a", T0, ResourceGraph(()))
    checked = preflight.Checked(target="b", checkpoint=cp, plan=RecoveryPlan("shop", "b"))
    assert operations.recovery_params(w, checked) == {
        "target": "b",
        "source": "a",
        "checkpoint_id": "cp-1",
    }
    assert operations.no_params(w, checked) == {}


def test_listeners_belong_to_one_service(tmp_path: Path) -> None:
    """``on_run_started`` used to extend a class attribute shared by every Service."""
    first, second = Service(tmp_path / "one"), Service(tmp_path / "two")
    try:
        seen: list[str] = []
        first.on_run_started(seen.append)
        first.pipeline.started("run-1")
        second.pipeline.started("run-2")
        assert seen == ["run-1"]
    finally:
        first.close()
        second.close()


# -- outcome: final state and measurements from the run's records -------------------------


def recovery(kind: RunKind, **result: Any) -> Run:
    return Run("run-1", kind, "shop", RunState.RUNNING, created_at=T0, result=result)


def test_shortfalls_make_a_succeeded_flow_partially_failed() -> None:
    assert shortfalls(recovery(RunKind.FAILOVER, **{"check:c": {"ok": True, "at": T0}}), {}) == []
    result = {
        "check:check-health:db": {"ok": False, "why": "status ERROR"},
        "verify:verify-volume:db": {"verified": False, "why": "bytes differ"},
        "replication:b": {"ok": False, "error": "b is down"},
        "residue": 2,
    }
    drill = recovery(RunKind.DRILL)
    assert shortfalls(drill, result) == [
        "check:check-health:db: status ERROR",
        "verify:verify-volume:db: bytes differ",
        "replication:b: b is down",
        "drill left 2 resource(s) behind",
    ]
    # residue counts only for drills
    assert "drill left" not in " ".join(shortfalls(recovery(RunKind.FAILOVER), {"residue": 2}))


def test_measure_rto_verified_and_the_data_loss_window_of_a_failover() -> None:
    result = {
        "check:check-health:db": {"ok": True, "at": T0 + 40},
        "check:check-health:web": {"ok": True, "at": T0 + 55},
        "verify:verify-volume:db-data": {"verified": True},
    }
    run = recovery(RunKind.FAILOVER, **result)
    out = measure(run, result, checkpoint_created_at=T0 - 300, now=T0 + 60)
    assert out == {
        "duration_seconds": 60.0,
        "rto_seconds": 55.0,
        "volumes_verified": 1,
        "checks_passed": 2,
        "verified": True,
        "data_loss_window_seconds": 300.0,
    }


def test_measure_a_drill_has_no_data_loss_window_and_a_failed_check_is_not_verified() -> None:
    result = {
        "check:check-health:db": {"ok": False, "at": T0 + 40},
        "verify:verify-volume:db-data": {"verified": True},
    }
    out = measure(recovery(RunKind.DRILL, **result), result, now=T0 + 90)
    assert out == {
        "duration_seconds": 90.0,
        "rto_seconds": 90.0,
        "volumes_verified": 1,
        "checks_passed": 0,
        "verified": False,
    }


def test_measure_servers_without_volumes_are_verified_when_every_check_passed() -> None:
    """No volume to compare is not a failed verification (it used to read as one)."""
    result = {
        "check:check-health:web": {"ok": True, "at": T0 + 5},
        "fidelity": {"checked": 4, "ok": True, "differences": []},
    }
    out = measure(recovery(RunKind.FAILOVER, **result), result, now=T0 + 9)
    assert out["verified"] is True and out["volumes_verified"] == 0


def test_measure_an_unexplained_difference_is_not_verified_and_is_named() -> None:
    difference = {
        "resource": "port web-1",
        "attribute": "fixed_ips",
        "expected": ["10.0.0.5"],
        "actual": ["10.0.0.9"],
    }
    result = {
        "verify:verify-volume:db-data": {"verified": True},
        "fidelity": {"checked": 4, "ok": False, "differences": [difference]},
    }
    run = recovery(RunKind.FAILOVER, **result)
    assert measure(run, result, now=T0 + 9)["verified"] is False
    # a warning, not a partial failure: the recovered workload is up
    assert shortfalls(run, result) == []
    assert unexplained(result) == ['port web-1.fixed_ips: expected ["10.0.0.5"], got ["10.0.0.9"]']
    assert unexplained({}) == []


def test_measure_a_protect_is_only_its_duration() -> None:
    run = Run("run-1", RunKind.PROTECT, "shop", created_at=T0)
    assert measure(run, {}, now=T0 + 12.5) == {"duration_seconds": 12.5}


def test_a_migration_loses_what_was_written_between_fence_and_final_snapshot() -> None:
    def step(name: str, started: float, finished: float) -> Step:
        return Step("run-1", name, StepState.DONE, 1.0, "", started, finished)

    fenced_first = [
        step("fence-server:db", T0, T0 + 5),
        step("final-snapshot-volume:db-data", T0 + 6, T0 + 7),
    ]
    assert fenced_gap(fenced_first) == 0.0
    overlap = [
        step("fence-server:db", T0, T0 + 9),
        step("final-snapshot-volume:db-data", T0 + 6, T0 + 7),
    ]
    assert fenced_gap(overlap) == 3.0
    run = recovery(RunKind.MIGRATE)
    assert measure(run, {}, steps=overlap, now=T0 + 10)["data_loss_window_seconds"] == 3.0


# -- preflight ----------------------------------------------------------------------------


@pytest.fixture
def svc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A service whose sites are registered but never answer (no cloud behind them)."""
    monkeypatch.setenv("SEAWALL_PASSPHRASE", "test")
    service = Service(tmp_path / "home")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "DOWN").touch()
        service.db.add_site(Site(name, "sim", {"path": str(tmp_path / name)}))
    service.db.add_workload(Workload("shop", "a", Selector.parse("tag:app=shop"), "gold", ()))
    try:
        yield service
    finally:
        service.close()


def test_protect_back_and_fail_back_need_a_site_to_go_back_to(svc: Any) -> None:
    with pytest.raises(Conflict, match="no site to protect back to"):
        svc.prepare_operation("reprotect", "shop")
    with pytest.raises(Conflict, match="no site to fail back to"):
        svc.prepare_operation("failback", "shop")
    with pytest.raises(InvalidInput, match="has no target site; pass --target"):
        svc.prepare_operation("failover", "shop")
    assert svc.list_runs() == []  # a failed preflight records no run


def test_a_recovery_preflight_lists_every_problem_at_once(svc: Any) -> None:
    """Target down, no readable checkpoint, and (against what the state database knows
    of the workload) a mapping onto a network the target does not have."""
    net = Resource(ResourceKind.NETWORK, "net-1", "net")
    server = Resource(ResourceKind.SERVER, "srv-1", "db")
    svc.db.put_checkpoint(
        Checkpoint("cp-1", "shop", "a", time.time(), ResourceGraph((net, server))), sites=["a"]
    )
    mapped = {"workload": "shop", "target": "b", "mappings": {"network": {"net": "prod"}}}
    svc.db.set_plan(load(RecoveryPlan, mapped))
    with pytest.raises(PreflightFailed) as caught:
        svc.plan_operation("failover", "shop", target="b")
    problems = caught.value.problems
    assert problems[0].startswith("target site b: sim site 'b' is down")
    assert problems[1].startswith("the newest checkpoint unreadable at b")
    assert any(p.startswith("mapping network 'net' -> 'prod'") for p in problems[2:])
    assert svc.list_runs() == []
