"""The one operation pipeline: ``prepare -> execute -> finalize``, driven by one table.

:data:`OPERATIONS` says, for every kind of run, what its preflight checks, which pure
planner compiles it and what the run records as its parameters. Everything that
starts an operation goes through :class:`Pipeline`:

- the CLI through the :class:`~seawall.service.Service` methods (``protect`` ...
  ``failback`` are :meth:`Pipeline.run`: prepare, then execute, in the caller's thread);
- the API and the scheduler through ``prepare_operation`` (the preflight answers at once)
  and ``execute_prepared`` (on a worker thread) — the same two methods;
- the dry run (``plan show``) through :meth:`Pipeline.compile`, the first half of
  :meth:`Pipeline.prepare`, so it shows exactly what a real run would do;
- a resumed run (``seawall.service.resume``) through the same listeners and finalize.

:meth:`Pipeline.execute` ends in :meth:`~seawall.service.outcome.Outcome.finalize`, so
every run, whoever started it, gets the same final state, measurements and usage.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from seawall.model import Checkpoint, Run, RunKind, RunState, VolumeImageRef, Workload
from seawall.orchestrate.engine import Runner, owner
from seawall.orchestrate.plans import (
    FlowPlan,
    RecoverMode,
    plan_migrate,
    plan_protect,
    plan_recover,
)
from seawall.service import preflight
from seawall.service.audit import AuditRecord, AuditTrail, Initiator, local_initiator
from seawall.service.catalogue import Catalogue
from seawall.service.handles import new_id
from seawall.service.outcome import Outcome
from seawall.service.preflight import Checked

#: the run id of a dry run's plan (nothing is recorded under it)
DRY_RUN = "run-dry-run"

Preflight = Callable[[Catalogue, Workload, str | None, str | None], Checked]
Planner = Callable[[Catalogue, Workload, str, RunKind, Checked], FlowPlan]
RunParams = Callable[[Workload, Checked], dict[str, Any]]


@dataclass(frozen=True)
class Operation:
    """One row of the table: how a kind of run is checked, compiled and recorded."""

    #: (catalogue, workload, target, checkpoint id) -> what the planner compiles from
    preflight: Preflight
    #: (catalogue, workload, run id, kind, checked) -> the flow to run
    planner: Planner
    #: (workload, checked) -> what the run records in its params and result
    params: RunParams


# -- planners: compile what preflight established -----------------------------------------


def change_base(cat: Catalogue, workload: Workload) -> Checkpoint | None:
    """After a recovery to this site: the recovered volumes as a change-tracking base.

    The recovery's verification snapshots hold exactly the checkpoint's bytes, so the
    first checkpoint here reads only what changed since the recovery.
    """
    runs = cat.db.list_runs(workload=workload.name, states=[RunState.SUCCEEDED])
    for run in runs:
        if (
            run.kind in (RunKind.FAILOVER, RunKind.MIGRATE, RunKind.FAILBACK)
            and run.result.get("target") == workload.site
        ):
            volumes = [
                VolumeImageRef(
                    volume_id=value["volume_id"],
                    image_id=value["image_id"],
                    size=0,
                    snapshot_id=value["snapshot_id"],
                )
                for key, value in run.result.items()
                if key.startswith("verify:") and value.get("snapshot_id")
            ]
            if not volumes:
                return None
            return Checkpoint(
                id=str(run.result.get("checkpoint_id", "")),
                workload=workload.name,
                site=workload.site,
                created_at=run.created_at,
                graph=cat.resolve(workload),
                volumes=tuple(volumes),
            )
        if run.kind in (RunKind.PROTECT, RunKind.REPROTECT):
            return None
    return None


def compile_protect(
    cat: Catalogue, workload: Workload, run_id: str, kind: RunKind, checked: Checked
) -> FlowPlan:
    """A checkpoint, incremental on the newest one here (or on a recovery to here)."""
    policy = cat.get_policy(workload.policy)
    graph = cat.resolve(workload)
    previous = cat.latest_checkpoint(workload.name, workload.site)
    if kind is RunKind.REPROTECT:
        previous = change_base(cat, workload) or previous
    return plan_protect(
        run_id=run_id,
        workload=workload,
        policy=policy,
        graph=graph,
        checkpoint_id=new_id("cp"),
        created_at=time.time(),
        previous=previous,
        kind=kind,
    )


def compile_recover(
    cat: Catalogue, workload: Workload, run_id: str, kind: RunKind, checked: Checked
) -> FlowPlan:
    assert checked.checkpoint is not None and checked.plan is not None
    return plan_recover(
        run_id=run_id,
        kind=kind,
        mode=RecoverMode(kind.value),
        checkpoint=checked.checkpoint,
        plan=checked.plan,
        repository_site=checked.target,
    )


def compile_migrate(
    cat: Catalogue, workload: Workload, run_id: str, kind: RunKind, checked: Checked
) -> FlowPlan:
    assert checked.checkpoint is not None and checked.plan is not None
    assert checked.graph is not None
    previous = cat.latest_checkpoint(workload.name, workload.site) or change_base(cat, workload)
    return plan_migrate(
        run_id=run_id,
        kind=kind,
        workload=workload,
        policy=cat.get_policy(workload.policy),
        graph=checked.graph,
        checkpoint_id=checked.checkpoint.id,
        created_at=checked.checkpoint.created_at,
        previous=previous,
        plan=checked.plan,
    )


# -- run parameters -----------------------------------------------------------------------


def no_params(workload: Workload, checked: Checked) -> dict[str, Any]:
    return {}


def recovery_params(workload: Workload, checked: Checked) -> dict[str, Any]:
    """Where a recovery goes, from where, from which checkpoint (measure and the
    after-success role reversal read these from the run's result)."""
    assert checked.checkpoint is not None and checked.plan is not None
    return {
        "target": checked.plan.target,
        "source": workload.site,
        "checkpoint_id": checked.checkpoint.id,
    }


def _failover(cat: Catalogue, w: Workload, target: str | None, cp: str | None) -> Checked:
    return preflight.recover(cat, w, RecoverMode.FAILOVER, checkpoint_id=cp, target=target)


def _drill(cat: Catalogue, w: Workload, target: str | None, cp: str | None) -> Checked:
    return preflight.recover(cat, w, RecoverMode.DRILL, checkpoint_id=cp, target=target)


def _nothing(cat: Catalogue, w: Workload, target: str | None, cp: str | None) -> Checked:
    return preflight.protect(cat, w, target)


def _protect_back(cat: Catalogue, w: Workload, target: str | None, cp: str | None) -> Checked:
    return preflight.protect_back(cat, w, target)


def _migrate(cat: Catalogue, w: Workload, target: str | None, cp: str | None) -> Checked:
    return preflight.migrate(cat, w, target)


def _fail_back(cat: Catalogue, w: Workload, target: str | None, cp: str | None) -> Checked:
    return preflight.fail_back(cat, w, target)


#: every kind of run: its preflight, its planner, its run parameters
OPERATIONS: Mapping[RunKind, Operation] = {
    RunKind.PROTECT: Operation(_nothing, compile_protect, no_params),
    RunKind.REPROTECT: Operation(_protect_back, compile_protect, no_params),
    RunKind.FAILOVER: Operation(_failover, compile_recover, recovery_params),
    RunKind.DRILL: Operation(_drill, compile_recover, recovery_params),
    RunKind.MIGRATE: Operation(_migrate, compile_migrate, recovery_params),
    RunKind.FAILBACK: Operation(_fail_back, compile_migrate, recovery_params),
}


@dataclass(frozen=True)
class Compiled:
    """A preflighted, compiled operation, not yet recorded."""

    workload: Workload
    flow: FlowPlan
    params: Mapping[str, Any]  #: what the run records (:data:`OPERATIONS`' third column)
    checked: Checked  #: what its preflight established


class Pipeline:
    """``prepare -> execute -> finalize`` for every operation, whoever starts it."""

    def __init__(self, cat: Catalogue, runner: Runner, outcome: Outcome, audit: AuditTrail) -> None:
        self.cat = cat
        self.runner = runner
        self.outcome = outcome
        self.audit = audit
        self._listeners: tuple[Callable[[str], None], ...] = ()
        self._lock = threading.Lock()

    # -- listeners ----------------------------------------------------------------------
    def on_run_started(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(run_id)`` as each run starts (the CLI shows progress with it)."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def started(self, run_id: str) -> None:
        for listener in self._listeners:
            listener(run_id)

    # -- the pipeline -------------------------------------------------------------------
    def compile(
        self,
        kind: RunKind,
        workload: Workload | str,
        *,
        target: str | None = None,
        checkpoint_id: str | None = None,
        run_id: str = DRY_RUN,
        row: RunKind | None = None,
    ) -> Compiled:
        """Preflight and plan by the table (by ``row`` when it is not ``kind``'s own);
        nothing is recorded or created."""
        w = self.cat.db.get_workload(workload) if isinstance(workload, str) else workload
        op = OPERATIONS[row or kind]
        checked = op.preflight(self.cat, w, target, checkpoint_id)
        flow = op.planner(self.cat, w, run_id, kind, checked)
        return Compiled(w, flow, op.params(w, checked), checked)

    def prepare(
        self,
        kind: RunKind,
        workload_name: str,
        *,
        target: str | None = None,
        checkpoint_id: str | None = None,
        params: Mapping[str, Any] | None = None,
        initiator: Initiator | None = None,
    ) -> tuple[Run, FlowPlan]:
        """Preflight an operation and record its run as PENDING; nothing runs yet.

        Errors (PreflightFailed, NotFound, ...) come out here, before any run exists.
        The run's ``params["initiator"]`` says who started it (the local OS user unless
        ``initiator`` says otherwise), and the audit trail records ``run.start``.
        """
        who = initiator or local_initiator()
        run_id = new_id("run")
        c = self.compile(
            kind, workload_name, target=target, checkpoint_id=checkpoint_id, run_id=run_id
        )
        run = Run(
            id=run_id,
            kind=c.flow.kind,
            workload=c.workload.name,
            created_at=time.time(),
            params={
                "title": c.flow.title,
                **c.params,
                **dict(params or {}),
                "initiator": who.as_dict(),
            },
            project=c.workload.project,
        )
        db = self.cat.db
        db.add_run(run)
        db.update_run_result(run_id, {**c.params, "owner": owner()})
        self.audit.record(
            AuditRecord(
                action="run.start",
                outcome="pending",
                initiator=who,
                method="run",
                route=run.kind.value,
                target={"run_id": run_id, "workload": run.workload, "project": run.project},
            )
        )
        return db.get_run(run_id), c.flow

    def execute(self, run: Run, flow: FlowPlan) -> Run:
        """Run a prepared run to its end (unless it was cancelled while pending)."""
        db = self.cat.db
        current = db.get_run(run.id)
        if current.state is not RunState.PENDING:
            return current
        db.update_run_result(run.id, {"owner": owner()})
        db.set_run_state(run.id, RunState.RUNNING)
        self.started(run.id)
        state, error = self.runner.start(flow)
        return self.outcome.finalize(run.id, state, error)

    def run(
        self,
        kind: RunKind,
        workload_name: str,
        *,
        target: str | None = None,
        checkpoint_id: str | None = None,
    ) -> Run:
        """Prepare and execute in this thread (the CLI's way)."""
        run, flow = self.prepare(kind, workload_name, target=target, checkpoint_id=checkpoint_id)
        return self.execute(run, flow)
