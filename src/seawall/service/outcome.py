"""The end of every run: final state, measurements, role reversal, events and usage.

:meth:`Outcome.finalize` is the last stage of the operation pipeline and of a resumed
run alike, so a run records the same things whoever started it (CLI, API, scheduler)
and whichever process finished it:

- the final state from TaskFlow's flow state: SUCCEEDED, or PARTIALLY_FAILED when a
  drill's check or verification, a replication, or a drill clean-up fell short;
  REVERTED / CANCELLED / FAILED otherwise;
- :func:`measure`: duration, and for recoveries RTO, verified (volumes, checks and the
  fidelity check; :func:`unexplained` differences raise a warning event), data-loss window;
- after a successful failover, migration or failback the target becomes the workload's
  site (:meth:`Outcome.reverse_roles`);
- compute-hours for drills and recoveries (:meth:`Outcome.record_compute_hours`);
- ``run.end`` in the audit trail, with the run's initiator and final state.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from taskflow import states as tf_states

from seawall.db import StateStore
from seawall.errors import SeawallError
from seawall.fidelity import Difference
from seawall.model import (
    RUN_TRANSITIONS,
    Resource,
    ResourceKind,
    ResourceRef,
    Run,
    RunKind,
    RunState,
    Selector,
    Step,
    load,
)
from seawall.orchestrate.engine import owner
from seawall.service.audit import AuditRecord, AuditTrail, Initiator
from seawall.service.handles import Handles

#: states of a run that has not ended yet
UNFINISHED = (RunState.PENDING, RunState.RUNNING, RunState.CANCELLING, RunState.REVERTING)
#: kinds of run that recreate a workload somewhere (and so use compute there)
RECOVERIES = (RunKind.FAILOVER, RunKind.MIGRATE, RunKind.FAILBACK, RunKind.DRILL)
#: recoveries after which the target is the workload's site
MOVES = (RunKind.FAILOVER, RunKind.MIGRATE, RunKind.FAILBACK)


def shortfalls(run: Run, result: Mapping[str, Any]) -> list[str]:
    """Why a run whose flow succeeded is only partially successful ([] = it is not)."""
    partial = []
    for key, value in result.items():
        if (
            key.startswith(("check:", "verify:"))
            and isinstance(value, dict)
            and not value.get("ok", value.get("verified", True))
        ):
            partial.append(f"{key}: {value.get('why', 'failed')}")
        if key.startswith("replication:") and isinstance(value, dict) and not value.get("ok"):
            partial.append(f"{key}: {value.get('error', 'failed')}")
    if run.kind is RunKind.DRILL and result.get("residue", 0):
        partial.append(f"drill left {result['residue']} resource(s) behind")
    return partial


def unexplained(result: Mapping[str, Any]) -> list[str]:
    """The fidelity check's differences, one line each (``port web-1.fixed_ips: ...``).

    They do not make a run partially failed: the workload is up where it should be, so
    roles still reverse; they make it unverified, and a warning event names them."""
    fidelity = result.get("fidelity")
    if not isinstance(fidelity, dict):
        return []
    return [str(load(Difference, d)) for d in fidelity.get("differences", ())]


def fenced_gap(steps: Sequence[Step]) -> float:
    """A migration loses what was written after its final snapshots: nothing, when
    every server was fenced before the first of them was taken (else the overlap)."""
    fenced = [s.finished_at for s in steps if s.name.startswith("fence-server:")]
    snaps = [s.started_at for s in steps if s.name.startswith("final-snapshot-volume:")]
    if not fenced or not snaps:
        return 0.0
    return round(max(0.0, max(fenced) - min(snaps)), 3)


def measure(
    run: Run,
    result: Mapping[str, Any],
    *,
    steps: Sequence[Step] = (),
    checkpoint_created_at: float | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Duration; for a recovery also RTO (until the last passing health check), what was
    verified and whether all of it passed, and the data-loss window (a failover: the
    checkpoint's age at the start; a migration or failback: :func:`fenced_gap`).

    ``verified`` means every verification that applied passed: each volume byte for byte
    (``volumes_verified`` counts them; a workload without volumes has none to fail), each
    health check and script, and the fidelity check (``fidelity``: resources checked and
    unexplained differences). It is not a claim that something was verified at all; the
    counts say what was."""
    now = time.time() if now is None else now
    out: dict[str, Any] = {"duration_seconds": round(now - run.created_at, 3)}
    if run.kind not in RECOVERIES:
        return out
    checks = {k: v for k, v in result.items() if k.startswith("check:")}
    healthy = [v["at"] for v in checks.values() if isinstance(v, dict) and v.get("ok")]
    out["rto_seconds"] = round((max(healthy) if healthy else now) - run.created_at, 3)
    verifies = [v for k, v in result.items() if k.startswith("verify:")]
    fidelity = result.get("fidelity")
    out["volumes_verified"] = sum(1 for v in verifies if v.get("verified"))
    out["checks_passed"] = sum(1 for v in checks.values() if v.get("ok"))
    out["verified"] = (
        all(v.get("verified") for v in verifies)
        and all(v.get("ok") for v in checks.values())
        and (not isinstance(fidelity, dict) or bool(fidelity.get("ok")))
    )
    if run.kind in (RunKind.MIGRATE, RunKind.FAILBACK):
        out["data_loss_window_seconds"] = fenced_gap(steps)
    elif run.kind is not RunKind.DRILL and checkpoint_created_at is not None:
        out["data_loss_window_seconds"] = round(run.created_at - checkpoint_created_at, 3)
    return out


class Outcome:
    """Turns the engine's outcome into the run's record (see the module docstring)."""

    def __init__(self, handles: Handles, audit: AuditTrail) -> None:
        self.handles = handles
        self.audit = audit

    @property
    def db(self) -> StateStore:
        return self.handles.db

    def finalize(self, run_id: str, engine_state: str, error: str) -> Run:
        """The run's final state from the flow's, with its measurements and usage."""
        if engine_state == tf_states.SUCCESS:
            self._succeeded(run_id)
        else:
            self._failed(run_id, engine_state, error)
        self.record_compute_hours(run_id)
        run = self.db.get_run(run_id)
        self.audit.record(
            AuditRecord(
                action="run.end",
                outcome="allowed" if run.state is RunState.SUCCEEDED else "failed",
                initiator=Initiator.from_dict(run.params.get("initiator") or {}),
                method="run",
                route=run.kind.value,
                target={
                    "run_id": run.id,
                    "workload": run.workload,
                    "project": run.project,
                    "state": run.state.value,
                },
            )
        )
        return run

    def _succeeded(self, run_id: str) -> Run:
        run = self.db.get_run(run_id)
        result = dict(run.result)
        partial = shortfalls(run, result)
        self.db.update_run_result(run_id, self.measure(run, result))
        final = RunState.PARTIALLY_FAILED if partial else RunState.SUCCEEDED
        run = self.db.set_run_state(run_id, final, error="; ".join(partial) or None)
        unfaithful = unexplained(result)
        if unfaithful:
            self.db.add_event(
                "fidelity-differences",
                f"{run.kind.value} {run.workload}: {len(unfaithful)} unexplained "
                f"difference(s), not verified: {'; '.join(unfaithful[:10])}"
                + (f"; and {len(unfaithful) - 10} more" if len(unfaithful) > 10 else ""),
                severity="warning",
                workload=run.workload,
                run_id=run_id,
            )
        if final is RunState.SUCCEEDED:
            self.reverse_roles(run)
        else:
            self.db.add_event(
                "run-partially-failed",
                f"{run.kind.value} {run.workload}: {'; '.join(partial)}",
                severity="warning",
                workload=run.workload,
                run_id=run_id,
            )
        return run

    def _failed(self, run_id: str, engine_state: str, error: str) -> Run:
        run = self.db.get_run(run_id)
        cancelled = self.db.cancel_requested(run_id)
        if engine_state == tf_states.REVERTED:
            final = RunState.CANCELLED if cancelled else RunState.REVERTED
            if run.state is RunState.RUNNING and not cancelled:
                run = self.db.set_run_state(run_id, RunState.REVERTING)
        else:
            final = RunState.FAILED
        if final not in RUN_TRANSITIONS[run.state]:
            final = RunState.FAILED
        run = self.db.set_run_state(run_id, final, error=error or engine_state)
        self.db.add_event(
            "run-failed" if final is not RunState.CANCELLED else "run-cancelled",
            f"{run.kind.value} {run.workload} {final.value}: {error}",
            severity="error" if final is not RunState.CANCELLED else "info",
            workload=run.workload,
            run_id=run_id,
        )
        return run

    def measure(self, run: Run, result: Mapping[str, Any]) -> dict[str, Any]:
        """:func:`measure` with what it needs from the state database."""
        steps: list[Step] = []
        created_at = None
        if run.kind in (RunKind.MIGRATE, RunKind.FAILBACK):
            steps = self.db.list_steps(run.id)
        elif run.kind is RunKind.FAILOVER:
            with contextlib.suppress(SeawallError):
                created_at = self.db.get_checkpoint(str(result.get("checkpoint_id"))).created_at
        return measure(run, result, steps=steps, checkpoint_created_at=created_at)

    def reverse_roles(self, run: Run) -> None:
        """A successful recovery makes the target the workload's site (reversed roles)."""
        if run.kind not in MOVES:
            return
        w = self.db.get_workload(run.workload)
        target = str(run.result["target"])
        source = str(run.result["source"])
        names = tuple(s.name for s in self._recovered_servers(run))
        selector = w.selector
        if selector.kind.value == "members" and names:
            selector = Selector(selector.kind, members=names)
        targets = (source, *[t for t in w.targets if t not in (target, source)])
        self.db.update_workload(replace(w, site=target, targets=targets, selector=selector))
        self.db.add_event(
            f"{run.kind.value}-completed",
            f"{w.name} now runs at {target}; protect it back with `seawall reprotect {w.name}`",
            workload=w.name,
            run_id=run.id,
        )

    def _recovered_servers(self, run: Run) -> list[Resource]:
        out = []
        for rec in self.db.list_created(run.id):
            if rec.kind == ResourceKind.SERVER.value and not rec.removed:
                r = self.handles.driver(rec.site, run.project).get(
                    ResourceRef(ResourceKind.SERVER, rec.resource_id)
                )
                if r is not None:
                    out.append(r)
        return out

    def record_compute_hours(self, run_id: str) -> float:
        """Usage for a finished drill or recovery: servers it created x hours it ran.

        Recorded once per run, whichever process gets there first (a lease per run).
        """
        run = self.db.get_run(run_id)
        if run.kind not in RECOVERIES or run.state in UNFINISHED or "compute_hours" in run.result:
            return 0.0
        me = owner()
        if not self.db.acquire_lease(f"usage:{run_id}", f"{me['host']}:{me['pid']}", 86400):
            return 0.0
        servers = sum(
            1 for r in self.db.list_created(run_id) if r.kind == ResourceKind.SERVER.value
        )
        hours = servers * max(0.0, (run.finished_at or time.time()) - run.created_at) / 3600
        self.db.add_usage(run.project, "compute_hours", hours, workload=run.workload)
        self.db.update_run_result(run_id, {"compute_hours": round(hours, 6)})
        return hours
