"""The journal of runs: runs and their steps, cancel requests, what each run created.

This is the part of the state database that orchestration writes while a run goes on
(:class:`RunStore`); a task that needs only it can be given only it.

- Run and step states change only through :func:`seawall.model.transition` with
  ``RUN_TRANSITIONS`` and ``STEP_TRANSITIONS``; a step seen for the first time may be
  recorded in any state (a resumed run may report a step it finished before a crash).
- Read-modify-write of a run locks its row first (``SELECT ... FOR NO KEY UPDATE`` on
  PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so steps reporting in parallel lose nothing.
- :meth:`RunStore.record_created` has committed when it returns: after a crash, revert
  and drill clean-up find everything the run created, at worst plus one resource that is
  found by its deterministic key.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from seawall import model
from seawall.db.connection import Database, inserted
from seawall.db.errors import conflict, not_found
from seawall.db.schema import created_t, runs_t, steps_t
from seawall.errors import InvalidTransition
from seawall.model import (
    FINAL_RUN_STATES,
    RUN_TRANSITIONS,
    STEP_TRANSITIONS,
    Run,
    RunKind,
    RunState,
    Step,
    StepState,
)


@dataclass(frozen=True)
class CreatedRecord:
    """One cloud resource a run created, kept so revert and drill clean-up can find it.

    Written before the run moves on (see :meth:`RunStore.record_created`), so a crash
    right after creating a resource still leaves a record of it.
    """

    run_id: str
    site: str
    kind: str
    resource_id: str
    key: str  #: the deterministic name/tag the resource was created under (find-or-create)
    created_at: float
    removed: bool = False


class RunStore:
    """Runs (newest first; same clock tick by creation order), steps, created resources."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # ---- runs ----------------------------------------------------------------------

    def add_run(self, run: Run) -> None:
        """Record a new run; a zero ``created_at`` is stamped with the current time."""
        if not run.created_at:
            run = dataclasses.replace(run, created_at=time.time())
        values = {**_run_row(run), "cancel_requested": run.state is RunState.CANCELLING}
        with self._db.tx(write=True) as conn:
            stmt = self._db.insert(runs_t).values(values).on_conflict_do_nothing()
            if not inserted(conn, stmt):
                raise conflict("run", run.id)

    def get_run(self, id: str) -> Run:
        return model.load(Run, self._run_column(runs_t.c.doc, id))

    def _run_column(self, column: sa.Column[Any], id: str) -> Any:
        """One column of run ``id``'s row; NotFound if there is no such run."""
        with self._db.tx() as conn:
            value = conn.execute(sa.select(column).where(runs_t.c.id == id)).scalar_one_or_none()
        if value is None:
            raise not_found("run", id)
        return value

    def list_runs(
        self,
        workload: str | None = None,
        states: Iterable[RunState] | None = None,
        kind: RunKind | str | None = None,
        limit: int = 100,
    ) -> list[Run]:
        """Runs, newest first, at most ``limit`` of them."""
        q = sa.select(runs_t.c.doc).order_by(runs_t.c.created_at.desc(), runs_t.c.pk.desc())
        if workload is not None:
            q = q.where(runs_t.c.workload == workload)
        if states is not None:
            q = q.where(runs_t.c.state.in_([RunState(s).value for s in states]))
        if kind is not None:
            q = q.where(runs_t.c.kind == RunKind(kind).value)
        with self._db.tx() as conn:
            docs = conn.execute(q.limit(limit)).scalars().all()
        return [model.load(Run, d) for d in docs]

    def latest_runs(self) -> dict[tuple[str, str], Run]:
        """(workload, run kind) -> that workload's newest run of that kind.

        One query for every workload (scheduler, API, metrics).
        """
        newest = sa.select(sa.func.max(runs_t.c.pk)).group_by(runs_t.c.workload, runs_t.c.kind)
        q = sa.select(runs_t.c.doc).where(runs_t.c.pk.in_(newest))
        with self._db.tx() as conn:
            runs = [model.load(Run, d) for d in conn.execute(q).scalars()]
        return {(r.workload, r.kind.value): r for r in runs}

    def set_run_state(
        self,
        id: str,
        state: RunState,
        *,
        error: str | None = None,
        result: Mapping[str, Any] | None = None,
    ) -> Run:
        """Move a run along RUN_TRANSITIONS (InvalidTransition otherwise) and return it.

        Final states stamp ``finished_at``; ``result`` is merged into the run's result so
        steps that reported figures earlier keep them.
        """
        with self._db.tx(write=True) as conn:
            run, cancel = self._lock_run(conn, id)
            new = model.transition(run.state, RunState(state), RUN_TRANSITIONS)
            changes: dict[str, Any] = {"state": new}
            if new in FINAL_RUN_STATES:
                changes["finished_at"] = time.time()
            if error is not None:
                changes["error"] = error
            if result:
                changes["result"] = {**run.result, **result}
            run = dataclasses.replace(run, **changes)
            self._write_run(conn, run, cancel or new is RunState.CANCELLING)
        return run

    def update_run_result(self, id: str, result: Mapping[str, Any]) -> None:
        """Merge ``result`` into the run's result (figures arrive step by step)."""
        with self._db.tx(write=True) as conn:
            run, cancel = self._lock_run(conn, id)
            self._write_run(conn, dataclasses.replace(run, result={**run.result, **result}), cancel)

    def request_cancel(self, id: str) -> None:
        """Ask a run to stop at its next step boundary; the runner reads :meth:`cancel_requested`.

        Conflict if the run already finished, so ``seawall run cancel`` can say so.
        """
        with self._db.tx(write=True) as conn:
            run, _ = self._lock_run(conn, id)
            if run.state in FINAL_RUN_STATES:
                raise InvalidTransition(
                    f"run {id!r} already finished ({run.state.value}); nothing to cancel"
                )
            conn.execute(sa.update(runs_t).where(runs_t.c.id == id).values(cancel_requested=True))

    def cancel_requested(self, id: str) -> bool:
        return bool(self._run_column(runs_t.c.cancel_requested, id))

    def _lock_run(self, conn: Connection, id: str) -> tuple[Run, bool]:
        row = conn.execute(
            sa.select(runs_t.c.doc, runs_t.c.cancel_requested)
            .where(runs_t.c.id == id)
            # NO KEY UPDATE: steps' foreign-key checks on this run need not wait for us
            .with_for_update(key_share=True)
        ).first()
        if row is None:
            raise not_found("run", id)
        return model.load(Run, row.doc), bool(row.cancel_requested)

    def _write_run(self, conn: Connection, run: Run, cancel: bool) -> None:
        conn.execute(
            sa.update(runs_t)
            .where(runs_t.c.id == run.id)
            .values({**_run_row(run), "cancel_requested": cancel})
        )

    # ---- steps ---------------------------------------------------------------------

    def set_step(
        self,
        run_id: str,
        name: str,
        state: StepState,
        *,
        progress: float | None = None,
        detail: str | None = None,
    ) -> None:
        """Create or move a step of a run.

        A step seen for the first time may be recorded in any state (a resumed run may
        report a step it finished before the crash); after that every change follows
        STEP_TRANSITIONS. RUNNING stamps ``started_at`` once; DONE, FAILED, SKIPPED and
        REVERTED stamp ``finished_at``.
        """
        state = StepState(state)
        now = time.time()
        with self._db.tx(write=True) as conn:
            if not conn.execute(sa.select(runs_t.c.pk).where(runs_t.c.id == run_id)).first():
                raise not_found("run", run_id)
            fresh = _step_times(Step(run_id, name, StepState.PENDING), state, now, progress, detail)
            stmt = self._db.insert(steps_t).values(_step_row(fresh)).on_conflict_do_nothing()
            if inserted(conn, stmt):
                return
            row = conn.execute(
                sa.select(steps_t)
                .where(steps_t.c.run_id == run_id, steps_t.c.name == name)
                .with_for_update()
            ).one()
            step = _step_from(row)
            model.transition(step.state, state, STEP_TRANSITIONS)
            step = _step_times(step, state, now, progress, detail)
            conn.execute(sa.update(steps_t).where(steps_t.c.pk == row.pk).values(_step_row(step)))

    def list_steps(self, run_id: str) -> list[Step]:
        """The run's steps in the order they were first reported."""
        with self._db.tx() as conn:
            rows = conn.execute(
                sa.select(steps_t).where(steps_t.c.run_id == run_id).order_by(steps_t.c.pk)
            ).all()
        return [_step_from(r) for r in rows]

    # ---- what runs created ---------------------------------------------------------

    def record_created(self, run_id: str, site: str, kind: str, resource_id: str, key: str) -> None:
        """Remember a resource the run created; committed before returning, and idempotent.

        Callers record right after the cloud answers and before the next step, so a crash
        loses at most a resource that can still be found by its deterministic ``key``.
        """
        values = {
            "run_id": run_id,
            "site": site,
            "kind": str(kind),
            "resource_id": resource_id,
            "key": key,
            "created_at": time.time(),
            "removed": False,
        }
        with self._db.tx(write=True) as conn:
            if not conn.execute(sa.select(runs_t.c.pk).where(runs_t.c.id == run_id)).first():
                raise not_found("run", run_id)
            conn.execute(self._db.insert(created_t).values(values).on_conflict_do_nothing())

    def list_created(self, run_id: str) -> list[CreatedRecord]:
        """In creation order; revert walks it backwards."""
        with self._db.tx() as conn:
            rows = conn.execute(
                sa.select(created_t).where(created_t.c.run_id == run_id).order_by(created_t.c.pk)
            ).all()
        return [
            CreatedRecord(
                run_id=r.run_id,
                site=r.site,
                kind=r.kind,
                resource_id=r.resource_id,
                key=r.key,
                created_at=r.created_at,
                removed=bool(r.removed),
            )
            for r in rows
        ]

    def mark_removed(self, run_id: str, kind: str, resource_id: str) -> None:
        """Note that a created resource is gone; a no-op if it was never recorded."""
        with self._db.tx(write=True) as conn:
            conn.execute(
                sa.update(created_t)
                .where(
                    created_t.c.run_id == run_id,
                    created_t.c.kind == str(kind),
                    created_t.c.resource_id == resource_id,
                )
                .values(removed=True)
            )


# --------------------------------------------------------------------------------------
# Rows <-> model
# --------------------------------------------------------------------------------------


def _run_row(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "kind": run.kind.value,
        "workload": run.workload,
        "state": run.state.value,
        "created_at": run.created_at,
        "doc": model.dump(run),
    }


_STEP_FINISHED = frozenset(
    {StepState.DONE, StepState.FAILED, StepState.SKIPPED, StepState.REVERTED}
)


def _step_times(
    step: Step, state: StepState, now: float, progress: float | None, detail: str | None
) -> Step:
    started, finished = step.started_at, step.finished_at
    if state is StepState.RUNNING:
        started = started or now
        finished = 0.0
    elif state in _STEP_FINISHED:
        finished = now
    if progress is None and state is StepState.DONE:
        progress = 1.0
    return dataclasses.replace(
        step,
        state=state,
        progress=step.progress if progress is None else float(progress),
        detail=step.detail if detail is None else detail,
        started_at=started,
        finished_at=finished,
    )


def _step_row(step: Step) -> dict[str, Any]:
    return {
        "run_id": step.run_id,
        "name": step.name,
        "state": step.state.value,
        "progress": step.progress,
        "detail": step.detail,
        "started_at": step.started_at,
        "finished_at": step.finished_at,
    }


def _step_from(row: sa.Row[Any]) -> Step:
    return Step(
        run_id=row.run_id,
        name=row.name,
        state=StepState(row.state),
        progress=row.progress,
        detail=row.detail,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )
