"""Runs: start an operation (202 at once), list, show with steps, cancel.

Starting never blocks: :class:`~seawall.api.launcher.Launcher` preflights synchronously
(problems answer 409 and nothing is created), records the run and executes it on a
worker thread. A repeated ``Idempotency-Key`` answers 200 with the run the first attempt
started; both answers carry the run's ``Location``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Response

from seawall.api.dependencies import (
    Caller,
    IdempotencyKey,
    Launch,
    Limit,
    Marker,
    Rules,
    Svc,
    needs,
    paginate,
)
from seawall.api.schemas import OperationIn, Page, RunOut, StepOut
from seawall.model import Run, RunKind, dump
from seawall.service import access
from seawall.service.audit import initiator_of
from seawall.service.rbac import RUN_ROLES

router = APIRouter()


def run_out(run: Run, steps: Iterable[Any] | None = None) -> RunOut:
    """The run; with ``steps``, those too and its progress counted over them."""
    step_list = list(steps) if steps is not None else None
    finished = 1.0 if run.state.value in ("succeeded", "partially_failed") else 0.0
    if step_list:
        finished = sum(
            1.0 if s.state.value in ("done", "skipped") else s.progress for s in step_list
        ) / len(step_list)
    return RunOut(
        id=run.id,
        kind=run.kind.value,
        workload=run.workload,
        state=run.state.value,
        project=run.project,
        created_at=run.created_at,
        finished_at=run.finished_at,
        error=run.error or "",
        params=dump(dict(run.params)),
        result=dump(dict(run.result)),
        progress=round(finished, 4),
        steps=[StepOut(**dump(s)) for s in step_list] if step_list is not None else None,
    )


@router.post(
    "/workloads/{name}/runs",
    tags=["runs"],
    status_code=202,
    openapi_extra=needs(*(f"seawall:run:create:{kind}" for kind in RUN_ROLES)),
)
def start_run(
    p: Caller,
    svc: Svc,
    rbac: Rules,
    launch: Launch,
    name: str,
    body: OperationIn,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> RunOut:
    """Start an operation; answers 202 at once (200 for a repeated Idempotency-Key).
    Each kind has its rule: ``seawall:run:create:<operation>``."""
    w = access.visible_workload(svc, p, name)
    rbac.authorize(p, f"seawall:run:create:{body.operation}", w.project)
    run, fresh = launch.start(
        body.operation,
        w.name,
        target=body.target,
        checkpoint_id=body.checkpoint_id,
        idempotency_key=idempotency_key,
        project=w.project,
        initiator=initiator_of(p),
    )
    response.headers["Location"] = f"/v1/runs/{run.id}"
    if not fresh:
        response.status_code = 200
    return run_out(run)


@router.get("/runs", tags=["runs"], openapi_extra=needs("seawall:run:list"))
def list_runs(
    p: Caller,
    svc: Svc,
    rbac: Rules,
    workload: str | None = None,
    kind: RunKind | None = None,
    limit: Limit = 100,
    marker: Marker = None,
) -> Page[RunOut]:
    owner = p.project
    if workload is not None:
        owner = access.visible_workload(svc, p, workload).project
    rbac.authorize(p, "seawall:run:list", owner)
    runs = [
        r
        for r in svc.list_runs(workload=workload, limit=5000)
        if p.sees(r.project) and (kind is None or r.kind is kind)
    ]
    items, nxt = paginate(runs, lambda r: r.id, limit, marker)
    return Page[RunOut](items=[run_out(r) for r in items], next_marker=nxt)


@router.get("/runs/{run_id}", tags=["runs"], openapi_extra=needs("seawall:run:get"))
def get_run(p: Caller, svc: Svc, rbac: Rules, run_id: str) -> RunOut:
    run = access.visible_run(svc, p, run_id)
    rbac.authorize(p, "seawall:run:get", run.project)
    return run_out(run, svc.steps(run_id))


@router.post(
    "/runs/{run_id}/cancel",
    tags=["runs"],
    status_code=202,
    openapi_extra=needs("seawall:run:cancel"),
)
def cancel_run(p: Caller, svc: Svc, rbac: Rules, run_id: str) -> RunOut:
    run = access.visible_run(svc, p, run_id)
    rbac.authorize(p, "seawall:run:cancel", run.project)
    return run_out(svc.cancel(run_id))
