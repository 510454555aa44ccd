"""Drills and the RPO/RTO report: the evidence that recovery works, per workload.

A drill is a run of kind ``drill``; ``POST /drills`` starts one exactly as
``POST /workloads/{name}/runs`` would (same preflight, same Idempotency-Key handling).
The report sets each workload's achieved RPO and newest measured RTO (from a drill,
failover, migrate or failback) beside its policy's targets.
"""

from __future__ import annotations

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
from seawall.api.routes.runs import start_run
from seawall.api.routes.workloads import rpo_rows
from seawall.api.schemas import DrillIn, DrillReport, OperationIn, Page, ReportRow, RunOut
from seawall.errors import NotFound
from seawall.model import Run, RunKind
from seawall.service import access

router = APIRouter()

#: The run kinds that measure an RTO (``result["rto_seconds"]``).
MEASURES_RTO = ("drill", "failover", "migrate", "failback")


def drill_report(run: Run) -> DrillReport:
    r = run.result
    return DrillReport(
        run=run.id,
        workload=run.workload,
        state=run.state.value,
        created_at=run.created_at,
        target=r.get("target"),
        checkpoint_id=r.get("checkpoint_id"),
        rto_seconds=r.get("rto_seconds"),
        verified=r.get("verified"),
        residue=r.get("residue"),
        error=run.error or "",
    )


@router.get("/drills", tags=["drills"], openapi_extra=needs("seawall:run:list"))
def list_drills(
    p: Caller,
    svc: Svc,
    rbac: Rules,
    workload: str | None = None,
    limit: Limit = 100,
    marker: Marker = None,
) -> Page[DrillReport]:
    owner = p.project
    if workload is not None:
        owner = access.visible_workload(svc, p, workload).project
    rbac.authorize(p, "seawall:run:list", owner)
    runs = [
        r
        for r in svc.list_runs(workload=workload, limit=5000)
        if r.kind is RunKind.DRILL and p.sees(r.project)
    ]
    items, nxt = paginate(runs, lambda r: r.id, limit, marker)
    return Page[DrillReport](items=[drill_report(r) for r in items], next_marker=nxt)


@router.post(
    "/drills", tags=["drills"], status_code=202, openapi_extra=needs("seawall:run:create:drill")
)
def start_drill(
    p: Caller,
    svc: Svc,
    rbac: Rules,
    launch: Launch,
    body: DrillIn,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> RunOut:
    operation = OperationIn(operation="drill", target=body.target, checkpoint_id=body.checkpoint_id)
    return start_run(p, svc, rbac, launch, body.workload, operation, response, idempotency_key)


def last_rto(latest: dict[tuple[str, str], Run], workload: str) -> float | None:
    """The newest measured RTO of ``workload`` over the kinds that measure one."""
    rtos = [
        r
        for k in MEASURES_RTO
        if (r := latest.get((workload, k))) is not None and "rto_seconds" in r.result
    ]
    if not rtos:
        return None
    value: float = max(rtos, key=lambda r: r.created_at).result["rto_seconds"]
    return value


@router.get("/reports", tags=["reports"], openapi_extra=needs("seawall:report:get"))
def report(p: Caller, svc: Svc, rbac: Rules) -> list[ReportRow]:
    """RPO and RTO per workload: achieved vs policy, last measured RTO, last drill."""
    rbac.authorize(p, "seawall:report:get", p.project)
    latest = svc.latest_runs()
    out = []
    for row in rpo_rows(svc, p).values():
        name = row["workload"]
        try:
            target = svc.get_policy(row["policy"]).rto_target_seconds
        except NotFound:
            target = None
        drill = latest.get((name, "drill"))
        out.append(
            ReportRow(
                workload=name,
                project=row["project"],
                policy=row["policy"],
                rpo_seconds=row["rpo_seconds"],
                achieved_rpo_seconds=row["achieved_rpo_seconds"],
                compliant=row["compliant"],
                rto_target_seconds=target,
                last_rto_seconds=last_rto(latest, name),
                last_drill=drill_report(drill) if drill else None,
            )
        )
    return out
