"""kill -9 at every step of protect, failover and drill, for real; then resume.

Each case runs ``python -m seawall <operation>`` as a subprocess that SIGKILLs itself at
one step (``SEAWALL_FAULT_KILL_AT``: as the step starts; ``SEAWALL_FAULT_KILL_AFTER``:
after its work, before TaskFlow records it; ``SEAWALL_FAULT_KILL_REVERT``: as its revert
starts), asserts that it died of SIGKILL with TaskFlow's record showing the step in
flight, then runs ``seawall run resume`` in a new process and asserts the outcome:

- protect: the run succeeded; its checkpoint is in both repositories and the state
  database, each volume image holds exactly the bytes of the run's snapshot, the server
  was thawed, only this run's snapshots remain at the source;
- failover: the run succeeded; exactly one target resource per checkpoint resource (a
  step run twice created nothing twice), every volume verified by VerifyVolume and equal
  byte for byte to the checkpoint, the server ACTIVE;
- drill: the run succeeded with residue 0; nothing tagged with the run is left at the
  target, which has as many resources as before;
- every case: both repositories pass ``check`` (with ``read_data`` too).

Beyond one kill per step: a failing failover killed while reverting goes on reverting
and leaves nothing; kills inside TaskFlow's own write transactions to ``engine.db``
(the one that records a new run, the next ones, mid-flow, the final one); a resuming
process killed in turn; and a killed drill finished by the next operation command.

The step lists are written out so that each case is named by its step; the first test
asserts they are exactly the dry run's steps, so a plan change cannot leave a step
untested. The target site and the workload are put back between cases.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator

import pytest
from taskflow import exceptions as tf_exc

from seawall.model import Checkpoint, ResourceKind, Run, RunState, load
from seawall.repo import Repository

from .conftest import SOURCE, TARGET, WORKLOAD, World

pytestmark = pytest.mark.slow

K = ResourceKind

PROTECT_STEPS = [
    "check-site:a",
    "freeze-server:db",
    "snapshot-volume:boot",
    "snapshot-volume:data",
    "thaw-server:db",
    "upload-volume:boot",
    "upload-volume:data",
    "commit-checkpoint:*",  # the name embeds the new checkpoint's id
    "replicate-checkpoint:b",
    "expire-snapshots:w",
    "apply-retention:w",
]
RECOVERY_STEPS = [
    "check-site:b",
    "create-network:net",
    "create-subnet:sn",
    "create-security_group:sg",
    "create-flavor:tiny",
    "create-volume:boot",
    "restore-volume:boot",
    "create-volume:data",
    "restore-volume:data",
    "create-port:p0",
    "create-server:db",
    "wait-server:db",
    "check-health:db:status",
    "verify-volume:boot",
    "verify-volume:data",
    "verify-fidelity:b",
]
FAILOVER_STEPS = [*RECOVERY_STEPS, "release-marks:b"]  # a drill's copies go, marks and all
DRILL_STEPS = [*RECOVERY_STEPS, "cleanup-drill:b"]

#: killed after the step's work, before TaskFlow recorded it: the step runs twice
PROTECT_AFTER = ["freeze-server:db", "upload-volume:data", "commit-checkpoint:*"]
FAILOVER_AFTER = ["restore-volume:data", "create-server:db", "verify-volume:boot"]
DRILL_AFTER = ["cleanup-drill:b"]

#: SIGKILL inside the N-th write transaction to engine.db, counted from the one that
#: records the run's logbook (N=1), or inside the one that records the flow finished
#: ("final"): after its statements, before its COMMIT (SQLite rolls it back)
KILL_IN_ENGINE_COMMIT = r"""
import os, signal, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine

target = os.environ["CRASHTEST_ENGINE_COMMIT"]  # a number, or "final"
state = {"recording": False, "commits": 0, "final": False}

def _ours(conn):
    return str(conn.engine.url).endswith("/engine.db")

@event.listens_for(Engine, "before_cursor_execute")
def _statement(conn, cursor, statement, *args):
    if not _ours(conn):
        return
    head = statement.lstrip().upper()
    if head.startswith("INSERT INTO LOGBOOKS"):
        state["recording"] = True
    if head.startswith("UPDATE FLOWDETAILS") and "'SUCCESS'" in repr(args[0]):
        state["final"] = True  # the transaction that records the flow finished

@event.listens_for(Engine, "commit")
def _before_commit(conn):
    if _ours(conn) and state["recording"]:
        state["commits"] += 1
        if str(state["commits"]) == target or (target == "final" and state["final"]):
            os.kill(os.getpid(), signal.SIGKILL)

sys.argv = ["seawall", *sys.argv[1:]]
from seawall.cli import main
main()
"""


def _matches(pattern: str, name: str) -> bool:
    return pattern == name or (pattern.endswith("*") and name.startswith(pattern[:-1]))


def _atom(world: World, run_id: str, pattern: str) -> str:
    states = world.atom_states(run_id)
    found = [state for name, state in states.items() if _matches(pattern, name)]
    assert len(found) == 1, f"{pattern} is not one step of run {run_id}: {sorted(states)}"
    return found[0]


@pytest.fixture
def world(crash_world: World) -> Iterator[World]:
    crash_world.reset()
    yield crash_world


def _checkpoint(world: World) -> Checkpoint:
    with world.repository(TARGET) as repo:
        return load(Checkpoint, repo.load_manifest(world.checkpoint).body)


def _repositories_clean(world: World, *, read_data: bool = True) -> None:
    for site in (SOURCE, TARGET):
        report = world.check(site, read_data=read_data)
        assert report.ok, f"repository of {site}: {report.errors}"


def _volume_bytes(repo: Repository, image_id: str, size: int) -> bytes:
    buf = bytearray(size)
    for offset, data in repo.read_volume(image_id):
        buf[offset : offset + len(data)] = data
    return bytes(buf)


# --------------------------------------------------------------------------------------


def test_step_lists_are_the_dry_runs_steps(crash_world: World) -> None:
    svc = crash_world.svc
    for op, expected in (
        ("protect", PROTECT_STEPS),
        ("failover", FAILOVER_STEPS),
        ("drill", DRILL_STEPS),
    ):
        names = svc.plan_operation(op, WORKLOAD, target=TARGET).step_names()
        assert len(names) == len(expected), (op, names)
        assert all(_matches(p, n) for p, n in zip(expected, names, strict=True)), (op, names)


# -- protect ----------------------------------------------------------------------------


def _protect_case(world: World, point: str, step: str) -> None:
    run_id = world.killed(["protect", WORKLOAD], point=point, step=step)
    assert _atom(world, run_id, step) == "RUNNING"
    run = world.resume(run_id)
    assert run.state is RunState.SUCCEEDED, world.explain(run)
    _protect_succeeded(world, run)
    _repositories_clean(world)


def _protect_succeeded(world: World, run: Run) -> None:
    cp_id = str(run.result["checkpoint"]["id"])
    assert set(world.svc.db.checkpoint_sites(cp_id)) == {SOURCE, TARGET}
    source = world.svc.driver(SOURCE)
    with world.repository(SOURCE) as repo_a, world.repository(TARGET) as repo_b:
        cp = load(Checkpoint, repo_a.load_manifest(cp_id).body)
        assert repo_b.load_manifest(cp_id).body == repo_a.load_manifest(cp_id).body
        volumes = cp.graph.of_kind(K.VOLUME)
        assert {v.volume_id for v in cp.volumes} == {v.id for v in volumes}
        for ref in cp.volumes:
            snap = next(s for s in source.list_snapshots(ref.volume_id) if s.id == ref.snapshot_id)
            want = source.read_snapshot(snap.id, 0, snap.size)
            assert _volume_bytes(repo_a, ref.image_id, ref.size) == want, ref.volume_id
            assert _volume_bytes(repo_b, ref.image_id, ref.size) == want, ref.volume_id
    for v in volumes:  # expire-snapshots kept only this run's, the next change base
        keys = [s.key for s in source.list_snapshots(v.id)]
        assert keys == [f"{run.id}/snap/{v.id}"], keys
    (server,) = cp.graph.of_kind(K.SERVER)
    pid = source.server_pid(server.id)  # type: ignore[attr-defined]
    assert pid is not None, "the protected server's process is gone"
    with open(f"/proc/{pid}/stat") as f:
        state = f.read().rsplit(")", 1)[1].split()[0]
    assert state != "T", "the server was left frozen (SIGSTOPped)"


@pytest.mark.parametrize("step", PROTECT_STEPS)
def test_protect_killed_at_step_resumes(world: World, step: str) -> None:
    _protect_case(world, "SEAWALL_FAULT_KILL_AT", step)


@pytest.mark.parametrize("step", PROTECT_AFTER)
def test_protect_killed_after_step_resumes(world: World, step: str) -> None:
    _protect_case(world, "SEAWALL_FAULT_KILL_AFTER", step)


# -- failover ---------------------------------------------------------------------------


def _failover_argv(world: World) -> list[str]:
    return ["failover", WORKLOAD, "--target", TARGET, "--checkpoint", world.checkpoint]


def _failover_succeeded(world: World, run: Run) -> None:
    cp = _checkpoint(world)
    created = world.tagged(TARGET, run.id)
    # every resource exactly once: a step run again found what it had made
    assert Counter((r.kind, r.name) for r in created) == Counter(
        (r.kind, r.name) for r in cp.graph.resources
    )
    verified = {k: v for k, v in run.result.items() if k.startswith("verify:")}
    assert len(verified) == len(cp.volumes), sorted(run.result)
    assert all(v["verified"] for v in verified.values()), verified
    assert run.result["verified"] is True
    assert run.result["fidelity"]["ok"] is True, run.result["fidelity"]
    driver = world.svc.driver(TARGET)
    with world.repository(TARGET) as repo:
        for vol in (r for r in created if r.kind is K.VOLUME):
            source_id = vol.tags["seawall:key"].rsplit("/", 1)[1]
            ref = cp.volume(source_id)
            got = driver.volume_path(vol.id).read_bytes()  # type: ignore[attr-defined]
            assert got == _volume_bytes(repo, ref.image_id, ref.size), vol.name
    (server,) = (r for r in created if r.kind is K.SERVER)
    assert server.attrs["status"] == "ACTIVE"
    assert world.svc.get_workload(WORKLOAD).site == TARGET


def _failover_case(world: World, point: str, step: str) -> None:
    run_id = world.killed(_failover_argv(world), point=point, step=step)
    assert _atom(world, run_id, step) == "RUNNING"
    run = world.resume(run_id)
    assert run.state is RunState.SUCCEEDED, world.explain(run)
    _failover_succeeded(world, run)
    _repositories_clean(world)


@pytest.mark.parametrize("step", FAILOVER_STEPS)
def test_failover_killed_at_step_resumes(world: World, step: str) -> None:
    _failover_case(world, "SEAWALL_FAULT_KILL_AT", step)


@pytest.mark.parametrize("step", FAILOVER_AFTER)
def test_failover_killed_after_step_resumes(world: World, step: str) -> None:
    _failover_case(world, "SEAWALL_FAULT_KILL_AFTER", step)


# -- drill ------------------------------------------------------------------------------


def _drill_case(world: World, point: str, step: str) -> None:
    before = len(world.svc.driver(TARGET).list_resources())
    argv = ["drill", WORKLOAD, "--target", TARGET, "--checkpoint", world.checkpoint]
    run_id = world.killed(argv, point=point, step=step)
    assert _atom(world, run_id, step) == "RUNNING"
    run = world.resume(run_id)
    assert run.state is RunState.SUCCEEDED, world.explain(run)
    assert run.result["residue"] == 0
    assert run.result["verified"] is True
    assert world.tagged(TARGET, run_id) == []
    assert len(world.svc.driver(TARGET).list_resources()) == before
    records = world.svc.db.list_created(run_id)
    assert records and all(r.removed for r in records), records
    assert world.svc.get_workload(WORKLOAD) == world.workload  # a drill changes no roles
    _repositories_clean(world)


@pytest.mark.parametrize("step", DRILL_STEPS)
def test_drill_killed_at_step_resumes_and_cleans_up(world: World, step: str) -> None:
    _drill_case(world, "SEAWALL_FAULT_KILL_AT", step)


@pytest.mark.parametrize("step", DRILL_AFTER)
def test_drill_killed_after_step_resumes_and_cleans_up(world: World, step: str) -> None:
    _drill_case(world, "SEAWALL_FAULT_KILL_AFTER", step)


# -- revert -----------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_failover_killed_while_reverting_goes_on_reverting(world: World) -> None:
    """A health check on a port nothing listens on fails the failover for real; the
    process dies as it reverts the server; the resumed run reverts the rest."""
    port = _closed_port()
    world.svc.set_plan(
        {
            **world.plan,
            "health_checks": [{"server": "db", "kind": "tcp", "port": port, "timeout_seconds": 1}],
        }
    )
    before = len(world.svc.driver(TARGET).list_resources())
    run_id = world.killed(
        _failover_argv(world), point="SEAWALL_FAULT_KILL_REVERT", step="create-server:db"
    )
    states = world.atom_states(run_id)
    # the failed check and the wait before it were reverted; the server's revert began
    assert states[f"check-health:db:tcp:{port}"] == "REVERTED", states
    assert states["wait-server:db"] == "REVERTED", states
    assert states["create-server:db"] == "REVERTING", states
    assert world.tagged(TARGET, run_id), "nothing was created before the failure"
    run = world.resume(run_id)
    assert run.state is RunState.REVERTED, world.explain(run)
    assert "health check" in run.error, run.error
    assert world.tagged(TARGET, run_id) == []
    assert len(world.svc.driver(TARGET).list_resources()) == before
    records = world.svc.db.list_created(run_id)
    assert records and all(r.removed for r in records), records
    assert world.svc.get_workload(WORKLOAD) == world.workload  # no roles reversed
    _repositories_clean(world)


# -- killed inside TaskFlow's own write -------------------------------------------------


def _engine_killed(world: World, argv: list[str], commit: str) -> str:
    return world.killed(
        argv,
        point="",
        step="",
        wrapper=KILL_IN_ENGINE_COMMIT,
        env={"CRASHTEST_ENGINE_COMMIT": commit},
    )


def test_killed_before_the_engine_recorded_the_run_fails_it_cleanly(world: World) -> None:
    """Killed inside the transaction that records the run's flow: nothing ran, nothing
    can be resumed; the run ends failed (not stuck), and the next command works."""
    before = len(world.svc.driver(TARGET).list_resources())
    run_id = _engine_killed(world, _failover_argv(world), "1")
    with pytest.raises(tf_exc.NotFound):
        world.atom_states(run_id)  # the transaction was rolled back
    run = world.resume(run_id)
    assert run.state is RunState.FAILED, world.explain(run)
    assert "no engine record" in run.error, run.error
    assert world.tagged(TARGET, run_id) == []
    assert len(world.svc.driver(TARGET).list_resources()) == before


@pytest.mark.parametrize("commit", ["2", "3", "30", "final"])
def test_failover_killed_inside_an_engine_write_resumes(world: World, commit: str) -> None:
    """Killed between a TaskFlow write to engine.db and its COMMIT: in the first writes
    after the run was recorded (2, 3: once the run is recorded at all, it can be
    rebuilt and resumed), mid-flow (30), or as the finished flow is recorded (final).
    The resumed run finishes from what was committed."""
    run_id = _engine_killed(world, _failover_argv(world), commit)
    states = world.atom_states(run_id)
    if commit == "30":
        assert "SUCCESS" in states.values() and "PENDING" in states.values(), states
    if commit == "final":
        assert set(states.values()) <= {"SUCCESS", "RUNNING"}, states
    run = world.resume(run_id)
    assert run.state is RunState.SUCCEEDED, world.explain(run)
    _failover_succeeded(world, run)
    _repositories_clean(world, read_data=False)


def test_drill_killed_inside_an_engine_write_resumes_and_cleans_up(world: World) -> None:
    before = len(world.svc.driver(TARGET).list_resources())
    argv = ["drill", WORKLOAD, "--target", TARGET, "--checkpoint", world.checkpoint]
    run_id = _engine_killed(world, argv, "35")
    run = world.resume(run_id)
    assert run.state is RunState.SUCCEEDED, world.explain(run)
    assert run.result["residue"] == 0
    assert world.tagged(TARGET, run_id) == []
    assert len(world.svc.driver(TARGET).list_resources()) == before


# -- killed again, and resumed by the next command ----------------------------------------


def test_failover_killed_again_while_resuming_resumes(world: World) -> None:
    """The resuming process is killed too; a third process still finishes the run."""
    run_id = world.killed(
        _failover_argv(world), point="SEAWALL_FAULT_KILL_AT", step="create-volume:data"
    )
    proc = world.cli("run", "resume", env={"SEAWALL_FAULT_KILL_AT": "create-server:db"})
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert _atom(world, run_id, "create-volume:data") == "SUCCESS"
    assert _atom(world, run_id, "create-server:db") == "RUNNING"
    run = world.resume(run_id)
    assert run.state is RunState.SUCCEEDED, world.explain(run)
    _failover_succeeded(world, run)


def test_next_operation_resumes_a_killed_drill_first(world: World) -> None:
    """Every operation command resumes unfinished runs before its own."""
    before = len(world.svc.driver(TARGET).list_resources())
    argv = ["drill", WORKLOAD, "--target", TARGET, "--checkpoint", world.checkpoint]
    drill_id = world.killed(argv, point="SEAWALL_FAULT_KILL_AT", step="restore-volume:data")
    known = world.run_ids()
    proc = world.cli("protect", WORKLOAD)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    drill = world.svc.get_run(drill_id)
    assert drill.state is RunState.SUCCEEDED, world.explain(drill)
    assert drill.result["residue"] == 0
    assert world.tagged(TARGET, drill_id) == []
    assert len(world.svc.driver(TARGET).list_resources()) == before
    (protect_id,) = world.run_ids() - known
    protect = world.svc.get_run(protect_id)
    assert protect.state is RunState.SUCCEEDED, world.explain(protect)
    assert 0 < drill.finished_at <= protect.created_at  # resumed before protect began
