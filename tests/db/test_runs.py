"""Runs, steps, cancel requests and the created-resources journal, on both backends."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from seawall.db import CreatedRecord, StateStore
from seawall.errors import Conflict, InvalidTransition, NotFound
from seawall.model import RunKind, RunState, StepState

from .conftest import run

# ---- runs and steps -------------------------------------------------------------------


def test_runs(store: StateStore) -> None:
    store.add_run(run("r1", at=10.0))
    store.add_run(run("r2", kind=RunKind.DRILL, at=20.0))
    store.add_run(run("r3", workload="crm"))  # created_at stamped now
    assert store.get_run("r1") == run("r1", at=10.0)
    assert store.get_run("r3").created_at > 1e9
    with pytest.raises(Conflict, match="run 'r1' already exists"):
        store.add_run(run("r1"))
    assert [r.id for r in store.list_runs()] == ["r3", "r2", "r1"]
    assert [r.id for r in store.list_runs(workload="app")] == ["r2", "r1"]
    assert [r.id for r in store.list_runs(kind=RunKind.DRILL)] == ["r2"]
    assert [r.id for r in store.list_runs(kind="protect", limit=1)] == ["r3"]
    assert [r.id for r in store.list_runs(states=[RunState.RUNNING])] == []
    with pytest.raises(NotFound, match=r"run 'zz' not found; `seawall run list`"):
        store.get_run("zz")


def test_run_same_clock_tick_keeps_creation_order(store: StateStore) -> None:
    for i in range(5):
        store.add_run(run(f"r{i}", at=5.0))
    assert [r.id for r in store.list_runs()] == ["r4", "r3", "r2", "r1", "r0"]


def test_run_state_transitions(store: StateStore) -> None:
    store.add_run(run("r1"))
    r = store.set_run_state("r1", RunState.RUNNING, result={"bytes_read": 10})
    assert r.state is RunState.RUNNING and r.finished_at == 0.0
    store.update_run_result("r1", {"bytes_sent": 5})
    r = store.set_run_state("r1", RunState.SUCCEEDED, result={"bytes_read": 11, "rpo": 3.5})
    assert r.finished_at > 0
    assert r.result == {"bytes_read": 11, "bytes_sent": 5, "rpo": 3.5}
    assert store.get_run("r1") == r
    assert [x.id for x in store.list_runs(states=[RunState.SUCCEEDED, RunState.FAILED])] == ["r1"]
    with pytest.raises(InvalidTransition, match="cannot go from succeeded to running"):
        store.set_run_state("r1", RunState.RUNNING)
    assert store.get_run("r1").state is RunState.SUCCEEDED  # nothing changed

    store.add_run(run("r2"))
    with pytest.raises(InvalidTransition):
        store.set_run_state("r2", RunState.SUCCEEDED)  # pending -> succeeded skips running
    store.set_run_state("r2", RunState.RUNNING)
    r2 = store.set_run_state("r2", RunState.FAILED, error="volume v1: quota exceeded")
    assert r2.error == "volume v1: quota exceeded"
    with pytest.raises(NotFound):
        store.set_run_state("nope", RunState.RUNNING)
    with pytest.raises(NotFound):
        store.update_run_result("nope", {})


def test_cancel(store: StateStore) -> None:
    store.add_run(run("r1"))
    assert not store.cancel_requested("r1")
    store.request_cancel("r1")
    store.request_cancel("r1")  # asking twice is fine
    assert store.cancel_requested("r1")
    store.set_run_state("r1", RunState.RUNNING)
    store.set_run_state("r1", RunState.CANCELLING)
    store.set_run_state("r1", RunState.CANCELLED)
    assert store.cancel_requested("r1")
    with pytest.raises(Conflict, match="already finished"):
        store.request_cancel("r1")
    with pytest.raises(NotFound):
        store.cancel_requested("nope")
    # a runner that moves to CANCELLING by itself raises the flag too
    store.add_run(run("r2"))
    store.set_run_state("r2", RunState.RUNNING)
    store.set_run_state("r2", RunState.CANCELLING)
    assert store.cancel_requested("r2")


def test_steps(store: StateStore) -> None:
    store.add_run(run("r1"))
    store.set_step("r1", "CreateNetwork", StepState.RUNNING)
    store.set_step("r1", "RestoreVolume:v1", StepState.RUNNING, progress=0.25, detail="1/4 GiB")
    store.set_step("r1", "RestoreVolume:v1", StepState.RUNNING, progress=0.5)
    store.set_step("r1", "CreateNetwork", StepState.DONE)
    store.set_step("r1", "VerifyData", StepState.SKIPPED)  # a new step may start in any state
    steps = store.list_steps("r1")
    assert [s.name for s in steps] == ["CreateNetwork", "RestoreVolume:v1", "VerifyData"]
    net, vol, verify = steps
    assert net.state is StepState.DONE and net.progress == 1.0
    assert 0 < net.started_at <= net.finished_at
    assert vol.progress == 0.5 and vol.detail == "1/4 GiB" and vol.finished_at == 0.0
    assert verify.state is StepState.SKIPPED
    with pytest.raises(InvalidTransition, match="cannot go from done to skipped"):
        store.set_step("r1", "CreateNetwork", StepState.SKIPPED)
    with pytest.raises(InvalidTransition):
        store.set_step("r1", "VerifyData", StepState.RUNNING)
    # failure then retry: finished_at cleared, started_at kept
    store.set_step("r1", "RestoreVolume:v1", StepState.FAILED, detail="timeout")
    failed = store.list_steps("r1")[1]
    assert failed.finished_at > 0
    store.set_step("r1", "RestoreVolume:v1", StepState.RUNNING)
    retried = store.list_steps("r1")[1]
    assert retried.finished_at == 0.0 and retried.started_at == vol.started_at
    assert retried.detail == "timeout"
    with pytest.raises(NotFound, match="run 'nope'"):
        store.set_step("nope", "x", StepState.RUNNING)
    assert store.list_steps("nope") == []


def test_concurrent_set_step_from_threads(store: StateStore) -> None:
    """Many threads update their own step and one shared step; no update is lost or refused."""
    store.add_run(run("r1"))
    errors: list[BaseException] = []
    per_thread = 15

    def work(i: int) -> None:
        try:
            for n in range(per_thread):
                store.set_step("r1", f"step-{i}", StepState.RUNNING, progress=n / per_thread)
                store.set_step("r1", "shared", StepState.RUNNING, detail=f"{i}:{n}")
            store.set_step("r1", f"step-{i}", StepState.DONE)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    steps = {s.name: s for s in store.list_steps("r1")}
    assert len(steps) == 9
    assert all(steps[f"step-{i}"].state is StepState.DONE for i in range(8))
    assert steps["shared"].state is StepState.RUNNING


# ---- created resources ----------------------------------------------------------------


def test_created_records(store: StateStore) -> None:
    store.add_run(run("r1"))
    store.record_created("r1", "b", "network", "n-1", "seawall-r1-front")
    store.record_created("r1", "b", "server", "s-1", "seawall-r1-db")
    store.record_created("r1", "b", "network", "n-1", "seawall-r1-front")  # idempotent
    recs = store.list_created("r1")
    assert [(r.kind, r.resource_id, r.removed) for r in recs] == [
        ("network", "n-1", False),
        ("server", "s-1", False),
    ]
    assert isinstance(recs[0], CreatedRecord) and recs[0].created_at > 0
    assert recs[0].site == "b" and recs[0].key == "seawall-r1-front"
    store.mark_removed("r1", "server", "s-1")
    store.mark_removed("r1", "server", "s-1")  # tolerates "already gone"
    store.mark_removed("r1", "server", "never-recorded")
    assert [r.removed for r in store.list_created("r1")] == [False, True]
    assert store.list_created("other") == []
    with pytest.raises(NotFound):
        store.record_created("nope", "b", "server", "s", "k")


def test_created_records_survive_a_crash(state_url: str) -> None:
    """A record is committed when record_created returns; a killed process keeps it."""
    StateStore(state_url).add_run(run("r1"))
    script = (
        "import os, sys\n"
        "from seawall.db import StateStore\n"
        "s = StateStore(sys.argv[1])\n"
        "s.record_created('r1', 'b', 'volume', 'v-1', 'seawall-r1-v1')\n"
        "os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, state_url], check=False, timeout=60)
    assert proc.returncode == -9
    assert [r.resource_id for r in StateStore(state_url).list_created("r1")] == ["v-1"]
