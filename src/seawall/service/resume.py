"""Runs that outlive their process: resume the dead ones, cancel the unwanted ones.

A run's ``owner`` (host, pid, kernel start time) says who runs it; a run whose owner is
gone is resumed by whoever gets its lease first, and finished through the same
:meth:`~seawall.service.outcome.Outcome.finalize` as a run that never stopped.
"""

from __future__ import annotations

from taskflow import states as tf_states

from seawall.db import StateStore
from seawall.errors import Conflict, NotFound
from seawall.model import Run, RunState
from seawall.orchestrate.engine import owner, owner_alive
from seawall.service.operations import Pipeline
from seawall.service.outcome import UNFINISHED


def cancel(db: StateStore, run_id: str) -> Run:
    """Ask a run to stop: a pending one is cancelled now, a running one reverts."""
    run = db.get_run(run_id)
    if run.state not in UNFINISHED:
        raise Conflict(f"run {run_id} is {run.state.value}; only unfinished runs can be cancelled")
    db.request_cancel(run_id)
    if run.state is RunState.PENDING:
        return db.set_run_state(run_id, RunState.CANCELLED)
    if run.state is RunState.RUNNING:
        return db.set_run_state(run_id, RunState.CANCELLING)
    return db.get_run(run_id)


def resume_unfinished(pipeline: Pipeline) -> list[Run]:
    """Continue every run whose process died: resumed to the end, or reverted."""
    db = pipeline.cat.db
    done = []
    me = owner()
    holder = f"{me['host']}:{me['pid']}"
    for run in db.list_runs(states=UNFINISHED, limit=1000):
        info = run.result.get("owner", {})
        if isinstance(info, dict) and owner_alive(info):
            continue
        lease = f"run:{run.id}"
        if isinstance(info, dict) and info.get("pid"):
            # a resumer killed in turn still holds the run's lease (for an hour): free it
            db.release_lease(lease, f"{info.get('host')}:{info.get('pid')}")
        if not db.acquire_lease(lease, holder, ttl=3600):
            continue
        try:
            resumed = _resume_one(pipeline, run.id, info)
            if resumed is not None:
                done.append(resumed)
        finally:
            db.release_lease(lease, holder)
    return done


def _resume_one(pipeline: Pipeline, run_id: str, info: object) -> Run | None:
    """Resume one run under its lease; None when another resumer finished or took it."""
    db = pipeline.cat.db
    run = db.get_run(run_id)
    now = run.result.get("owner", {})
    if run.state not in UNFINISHED or (isinstance(now, dict) and now != info and owner_alive(now)):
        return None
    db.update_run_result(run.id, {"owner": owner(), "resumed": True})
    if run.state is RunState.PENDING:
        db.set_run_state(run.id, RunState.RUNNING)
    pipeline.started(run.id)
    try:
        state, error = pipeline.runner.resume(run.id)
    except NotFound as exc:
        state, error = tf_states.FAILURE, str(exc)
    return pipeline.outcome.finalize(run.id, state, error)
