"""Workloads: what a project protects, each shown with its achieved RPO."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from seawall.api.auth import Principal
from seawall.api.dependencies import Caller, Limit, Marker, Svc, paginate
from seawall.api.schemas import Page, RpoOut, WorkloadIn, WorkloadOut
from seawall.model import Selector, Workload, dump
from seawall.service import Service, access

router = APIRouter()


def rpo_rows(svc: Service, p: Principal) -> dict[str, dict[str, Any]]:
    """The RPO report's rows the caller may see, by workload name (also the RPO/RTO report's)."""
    return {r["workload"]: r for r in svc.rpo_report() if p.sees(r["project"])}


def workload_out(w: Workload, row: dict[str, Any] | None) -> WorkloadOut:
    rpo = None
    if row is not None:
        rpo = RpoOut(**{k: row[k] for k in RpoOut.model_fields})
    return WorkloadOut(
        name=w.name,
        site=w.site,
        selector=dump(w.selector),
        policy=w.policy,
        targets=list(w.targets),
        project=w.project,
        rpo=rpo,
    )


@router.get("/workloads", tags=["workloads"])
def list_workloads(
    p: Caller, svc: Svc, limit: Limit = 100, marker: Marker = None
) -> Page[WorkloadOut]:
    rows = rpo_rows(svc, p)
    out = [workload_out(w, rows.get(w.name)) for w in access.visible_workloads(svc, p)]
    items, nxt = paginate(out, lambda w: w.name, limit, marker)
    return Page[WorkloadOut](items=items, next_marker=nxt)


@router.post("/workloads", tags=["workloads"], status_code=201)
def create_workload(p: Caller, svc: Svc, body: WorkloadIn) -> WorkloadOut:
    project = body.project or p.project
    if not p.sees(project):  # creating in another project is an admin's act
        p.require_admin()
    w = svc.create_workload(
        body.name, body.site, Selector.parse(body.selector), body.policy, body.targets, project
    )
    return workload_out(w, None)


@router.get("/workloads/{name}", tags=["workloads"])
def get_workload(p: Caller, svc: Svc, name: str) -> WorkloadOut:
    w = access.visible_workload(svc, p, name)
    return workload_out(w, rpo_rows(svc, p).get(name))
