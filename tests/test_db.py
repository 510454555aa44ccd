"""The state database, on SQLite and on a real PostgreSQL server (``state_url``)."""

from __future__ import annotations

import dataclasses
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from seawall import model
from seawall.db import (
    VERSION_TABLE,
    CreatedRecord,
    StateDatabaseBusy,
    StateDatabaseError,
    StateStore,
    default_url,
    metadata,
    migration_config,
)
from seawall.errors import Conflict, InvalidInput, InvalidTransition, NotFound
from seawall.model import (
    Checkpoint,
    Policy,
    RecoveryPlan,
    Resource,
    ResourceGraph,
    ResourceKind,
    Run,
    RunKind,
    RunState,
    Selector,
    Site,
    StepState,
    Workload,
)


@pytest.fixture
def store(state_url: str) -> Iterator[StateStore]:
    s = StateStore(state_url)
    yield s
    s.close()


def workload(name: str = "app", project: str = "default") -> Workload:
    return Workload(
        name, site="a", selector=Selector(members=("db",)), policy="gold", targets=("b",),
        project=project,
    )  # fmt: skip


def checkpoint(id: str, workload: str = "app", created_at: float = 1000.0) -> Checkpoint:
    graph = ResourceGraph((Resource(ResourceKind.SERVER, "s1", "db", attrs={"ram": 1024}),))
    return Checkpoint(id, workload, "a", created_at, graph)


def run(id: str, workload: str = "app", kind: RunKind = RunKind.PROTECT, at: float = 0.0) -> Run:
    return Run(id, kind, workload, created_at=at, params={"checkpoint": "c1"})


# ---- opening --------------------------------------------------------------------------


def test_default_url_lives_in_seawall_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEAWALL_DB_URL", raising=False)
    monkeypatch.setenv("SEAWALL_HOME", str(tmp_path / "home"))
    assert default_url() == f"sqlite:///{tmp_path / 'home' / 'state.db'}"
    assert (tmp_path / "home").is_dir()
    with StateStore() as s:
        assert s.url == default_url()
        s.add_site(Site("a", "sim"))
    assert (tmp_path / "home" / "state.db").is_file()
    monkeypatch.setenv("SEAWALL_DB_URL", "sqlite://")
    assert default_url() == "sqlite://"


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    """WAL lets readers proceed while one process writes."""
    StateStore(f"sqlite:///{tmp_path / 's.db'}").close()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_in_memory_sqlite_works_across_threads() -> None:
    s = StateStore("sqlite://")
    threads = [threading.Thread(target=s.add_site, args=(Site(f"s{i}", "sim"),)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(s.list_sites()) == 8


def test_unsupported_url_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="unsupported database 'mysql'"):
        StateStore("mysql://x@localhost/db")


# ---- sites, policies, workloads, plans -----------------------------------------------


def test_sites(store: StateStore) -> None:
    b = Site("b", "openstack", {"cloud": "east"}, repository="s3://bucket/b")
    store.add_site(b)
    store.add_site(Site("a", "sim", {"path": "/tmp/a"}))
    assert store.get_site("b") == b
    assert [s.name for s in store.list_sites()] == ["a", "b"]
    with pytest.raises(Conflict, match="site 'b' already exists"):
        store.add_site(Site("b", "sim"))
    store.remove_site("b")
    with pytest.raises(NotFound, match=r"site 'b' not found; `seawall site list`"):
        store.get_site("b")
    with pytest.raises(NotFound):
        store.remove_site("b")


def test_policies(store: StateStore) -> None:
    gold = model.PRESETS["gold"]
    store.add_policy(gold)
    store.add_policy(Policy("cheap", rpo_seconds=86400))
    assert store.get_policy("gold") == gold
    assert [p.name for p in store.list_policies()] == ["cheap", "gold"]
    with pytest.raises(Conflict):
        store.add_policy(gold)
    store.remove_policy("cheap")
    with pytest.raises(NotFound, match="policy 'cheap'"):
        store.get_policy("cheap")


def test_workloads(store: StateStore) -> None:
    store.add_workload(workload("app"))
    store.add_workload(workload("crm", project="sales"))
    assert store.get_workload("app") == workload("app")
    assert [w.name for w in store.list_workloads()] == ["app", "crm"]
    assert [w.name for w in store.list_workloads(project="sales")] == ["crm"]
    with pytest.raises(Conflict):
        store.add_workload(workload("app"))
    moved = dataclasses.replace(workload("crm"), project="ops")
    store.update_workload(moved)
    assert store.get_workload("crm") == moved
    assert store.list_workloads(project="sales") == []
    with pytest.raises(NotFound, match="workload 'nope'"):
        store.update_workload(workload("nope"))
    store.remove_workload("crm")
    with pytest.raises(NotFound, match="`seawall workload list`"):
        store.get_workload("crm")


def test_plans_are_one_per_workload_and_target(store: StateStore) -> None:
    store.add_workload(workload("app"))
    plan = RecoveryPlan("app", "b", boot_groups=(model.BootGroup("db", ("db",)),))
    store.set_plan(plan)
    store.set_plan(RecoveryPlan("app", "c"))
    assert store.get_plan("app", "b") == plan
    bigger = dataclasses.replace(plan, health_checks=(model.HealthCheck("db"),))
    store.set_plan(bigger)  # upsert
    assert store.get_plan("app", "b") == bigger
    assert [(p.workload, p.target) for p in store.list_plans()] == [("app", "b"), ("app", "c")]
    assert store.list_plans("other") == []
    with pytest.raises(NotFound, match="no recovery plan for workload 'app' to site 'x'"):
        store.get_plan("app", "x")
    store.remove_workload("app")  # plans go with their workload
    assert store.list_plans() == []


# ---- checkpoint cache -----------------------------------------------------------------


def test_checkpoints(store: StateStore) -> None:
    c1, c2, c3 = (
        checkpoint("c1", created_at=1.0),
        checkpoint("c2", created_at=2.0),
        checkpoint("c3", workload="crm", created_at=3.0),
    )
    store.put_checkpoint(c1, sites=["a"])
    store.put_checkpoint(c2, sites=["a"])
    store.put_checkpoint(c3, sites=["b"])
    assert store.get_checkpoint("c1") == c1
    assert [c.id for c in store.list_checkpoints()] == ["c3", "c2", "c1"]
    assert [c.id for c in store.list_checkpoints(workload="app")] == ["c2", "c1"]
    assert [c.id for c in store.list_checkpoints(site="b")] == ["c3"]
    # putting again is idempotent and merges the sites holding a copy
    store.put_checkpoint(c1, sites=["b", "a"])
    store.put_checkpoint(c1, sites=["b"])
    assert store.checkpoint_sites("c1") == ["a", "b"]
    assert [c.id for c in store.list_checkpoints(workload="app", site="b")] == ["c1"]
    assert len(store.list_checkpoints()) == 3
    store.remove_checkpoint("c1")
    with pytest.raises(NotFound, match=r"checkpoint 'c1' not found; `seawall checkpoint list`"):
        store.get_checkpoint("c1")
    with pytest.raises(NotFound):
        store.checkpoint_sites("c1")
    with pytest.raises(NotFound):
        store.remove_checkpoint("c1")


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


# ---- leases ---------------------------------------------------------------------------


def test_lease_is_exclusive_until_it_expires(store: StateStore) -> None:
    assert store.acquire_lease("scheduler", "host-a", ttl=30)
    assert not store.acquire_lease("scheduler", "host-b", ttl=30)
    assert store.acquire_lease("scheduler", "host-a", ttl=30)  # renewal
    assert store.acquire_lease("other", "host-b", ttl=30)  # leases are independent
    store.release_lease("scheduler", "host-b")  # not the holder: no effect
    assert not store.acquire_lease("scheduler", "host-b", ttl=30)
    store.release_lease("scheduler", "host-a")
    assert store.acquire_lease("scheduler", "host-b", ttl=0.2)
    assert not store.acquire_lease("scheduler", "host-a", ttl=30)
    time.sleep(0.3)
    assert store.acquire_lease("scheduler", "host-a", ttl=30)  # host-b's lease expired
    with pytest.raises(InvalidInput):
        store.acquire_lease("scheduler", "host-a", ttl=0)


def test_lease_race_has_one_winner(store: StateStore) -> None:
    def contend(name: str, holder: str, barrier: threading.Barrier, wins: list[str]) -> None:
        barrier.wait()
        if store.acquire_lease(name, holder, ttl=30):
            wins.append(holder)

    for round_ in range(3):
        barrier = threading.Barrier(8)
        wins: list[str] = []
        threads = [
            threading.Thread(target=contend, args=(f"lease-{round_}", f"h{i}", barrier, wins))
            for i in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(wins) == 1


# ---- several processes ----------------------------------------------------------------

_WORKER = """
import sys, time
from seawall.db import StateStore
from seawall.errors import Conflict
from seawall.model import Run, RunKind, RunState, StepState
url, tag = sys.argv[1], sys.argv[2]
print("ready", flush=True)
sys.stdin.readline()
s = StateStore(url)  # both processes open the fresh database at the same moment
try:
    s.add_run(Run("shared", RunKind.PROTECT, "app"))
except Conflict:
    pass
for i in range(15):
    rid = f"{tag}-{i}"
    s.add_run(Run(rid, RunKind.PROTECT, "app"))
    s.set_run_state(rid, RunState.RUNNING)
    s.set_step(rid, "Snapshot", StepState.RUNNING)
    s.set_step("shared", "Shared", StepState.RUNNING, detail=rid)
    s.add_event("run", rid, run_id=rid)
    s.set_run_state(rid, RunState.SUCCEEDED)
print("ok")
"""


def test_two_processes_open_a_fresh_database_and_create_runs(state_url: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, state_url, tag],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("p1", "p2")
    ]
    for p in procs:  # both have imported seawall: release them together
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert out.strip() == "ok"
    with StateStore(state_url) as s:
        runs = s.list_runs(limit=1000)
        assert len(runs) == 31
        assert sum(r.state is RunState.SUCCEEDED for r in runs) == 30
        assert all(s.list_steps(r.id) for r in runs)
        assert len(s.list_events(limit=1000)) == 30


# ---- migrations -----------------------------------------------------------------------


def _schema_diff(url: str) -> list[object]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"compare_type": True, "version_table": VERSION_TABLE}
            )
            return list(compare_metadata(ctx, metadata))
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrations_produce_exactly_the_metadata(state_url: str) -> None:
    StateStore(state_url).close()
    assert _schema_diff(state_url) == []


def test_migrations_round_trip(state_url: str) -> None:
    with StateStore(state_url) as s:
        s.add_site(Site("a", "sim"))
    command.downgrade(migration_config(state_url), "base")
    assert _tables(state_url) <= {"seawall_alembic_version"}
    command.upgrade(migration_config(state_url), "head")
    assert _schema_diff(state_url) == []
    with StateStore(state_url) as s:
        assert s.list_sites() == []
        s.add_site(Site("a", "sim"))


def test_database_from_a_newer_seawall_is_refused(state_url: str) -> None:
    StateStore(state_url).close()
    engine = sa.create_engine(state_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE seawall_alembic_version SET version_num = 'f00d'"))
    engine.dispose()
    with pytest.raises(StateDatabaseError, match=r"revision f00d.*newer seawall\. Upgrade seawall"):
        StateStore(state_url)


# ---- damaged, locked and unreachable databases ----------------------------------------


def test_corrupt_sqlite_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not sqlite " * 100)
    with pytest.raises(StateDatabaseError) as info:
        StateStore(f"sqlite:///{path}")
    text = str(info.value)
    assert str(path) in text and "file is not a database" in text
    assert "restore it from a backup or move it aside" in text


def test_locked_sqlite_database_is_transient(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    s = StateStore(url, busy_timeout=0.2)
    s.add_site(Site("a", "sim"))
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        started = time.monotonic()
        with pytest.raises(StateDatabaseBusy, match="is locked by another process") as info:
            s.add_site(Site("b", "sim"))
        assert time.monotonic() - started < 5
        assert info.value.exit_code == 6  # a TransientError: the caller retries
        assert [x.name for x in s.list_sites()] == ["a"]  # readers are not blocked (WAL)
    finally:
        other.execute("ROLLBACK")
        other.close()
    s.add_site(Site("b", "sim"))


def test_unreachable_postgresql_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StateDatabaseBusy, match="Check that PostgreSQL is running"):
        StateStore(f"postgresql://postgres@127.0.0.1:{port}/seawall", busy_timeout=1)


def test_a_database_from_before_the_own_version_table_is_adopted(tmp_path: Path) -> None:
    """Early databases kept their revision in Alembic's default table; they still open."""
    url = f"sqlite:///{tmp_path / 'legacy.db'}"
    with StateStore(url) as s:
        s.add_site(Site("a", "sim"))
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"ALTER TABLE {VERSION_TABLE} RENAME TO alembic_version"))
    engine.dispose()
    with StateStore(url) as s:
        assert [x.name for x in s.list_sites()] == ["a"]
    assert VERSION_TABLE in _tables(url)
