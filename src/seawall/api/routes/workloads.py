"""Workloads: what a project protects, each shown with its achieved RPO."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from seawall.api.auth import Principal
from seawall.api.dependencies import Caller, Limit, Marker, Rules, Svc, needs, paginate
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


@router.get("/workloads", tags=["workloads"], openapi_extra=needs("seawall:workload:list"))
def list_workloads(
    p: Caller, svc: Svc, rbac: Rules, limit: Limit = 100, marker: Marker = None
) -> Page[WorkloadOut]:
    rbac.authorize(p, "seawall:workload:list", p.project)
    rows = rpo_rows(svc, p)
    out = [workload_out(w, rows.get(w.name)) for w in access.visible_workloads(svc, p)]
    items, nxt = paginate(out, lambda w: w.name, limit, marker)
    return Page[WorkloadOut](items=items, next_marker=nxt)


@router.post(
    "/workloads",
    tags=["workloads"],
    status_code=201,
    openapi_extra=needs("seawall:workload:create"),
)
def create_workload(p: Caller, svc: Svc, rbac: Rules, body: WorkloadIn) -> WorkloadOut:
    project = body.project or p.project
    # the rule checks the project too: creating in another project is an admin's act
    rbac.authorize(p, "seawall:workload:create", project)
    w = svc.create_workload(
        body.name, body.site, Selector.parse(body.selector), body.policy, body.targets, project
    )
    return workload_out(w, None)


@router.get("/workloads/{name}", tags=["workloads"], openapi_extra=needs("seawall:workload:get"))
def get_workload(p: Caller, svc: Svc, rbac: Rules, name: str) -> WorkloadOut:
    w = access.visible_workload(svc, p, name)
    rbac.authorize(p, "seawall:workload:get", w.project)
    return workload_out(w, rpo_rows(svc, p).get(name))
