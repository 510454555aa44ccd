"""Checkpoints: listed per workload or across the caller's workloads, shown by id, and
the drift between two of one workload."""

from __future__ import annotations

from fastapi import APIRouter

from seawall.api.auth import Principal
from seawall.api.dependencies import Caller, Limit, Marker, Rules, Svc, needs, paginate
from seawall.api.schemas import CheckpointDiffOut, CheckpointOut, Page
from seawall.errors import NotFound
from seawall.model import Checkpoint, dump
from seawall.service import Service, access

router = APIRouter()


def checkpoint_out(cp: Checkpoint) -> CheckpointOut:
    return CheckpointOut(
        id=cp.id,
        workload=cp.workload,
        site=cp.site,
        created_at=cp.created_at,
        consistency=cp.consistency.value,
        parent=cp.parent,
        volumes=[dump(v) for v in cp.volumes],
        notes=list(cp.notes),
        resources=len(cp.graph.resources),
    )


@router.get(
    "/workloads/{name}/checkpoints",
    tags=["checkpoints"],
    openapi_extra=needs("seawall:checkpoint:list"),
)
def workload_checkpoints(
    p: Caller,
    svc: Svc,
    rbac: Rules,
    name: str,
    site: str | None = None,
    limit: Limit = 100,
    marker: Marker = None,
) -> Page[CheckpointOut]:
    w = access.visible_workload(svc, p, name)
    rbac.authorize(p, "seawall:checkpoint:list", w.project)
    cps = [checkpoint_out(c) for c in svc.list_checkpoints(workload=name, site=site)]
    items, nxt = paginate(cps, lambda c: c.id, limit, marker)
    return Page[CheckpointOut](items=items, next_marker=nxt)


@router.get("/checkpoints", tags=["checkpoints"], openapi_extra=needs("seawall:checkpoint:list"))
def list_checkpoints(
    p: Caller,
    svc: Svc,
    rbac: Rules,
    workload: str | None = None,
    site: str | None = None,
    limit: Limit = 100,
    marker: Marker = None,
) -> Page[CheckpointOut]:
    names = {w.name for w in access.visible_workloads(svc, p)}
    owner = p.project
    if workload is not None:
        owner = access.visible_workload(svc, p, workload).project
    rbac.authorize(p, "seawall:checkpoint:list", owner)
    cps = [
        checkpoint_out(c)
        for c in svc.list_checkpoints(workload=workload, site=site)
        if c.workload in names
    ]
    items, nxt = paginate(cps, lambda c: c.id, limit, marker)
    return Page[CheckpointOut](items=items, next_marker=nxt)


def visible_checkpoint(p: Principal, svc: Service, checkpoint_id: str) -> Checkpoint:
    """The checkpoint, if the caller may see its workload; else "no such checkpoint"
    (not which workload it belongs to)."""
    cp = svc.get_checkpoint(checkpoint_id)
    try:
        access.visible_workload(svc, p, cp.workload)
    except NotFound:
        raise NotFound(f"checkpoint {checkpoint_id!r} not found") from None
    return cp


@router.get(
    "/checkpoints/{checkpoint_id}",
    tags=["checkpoints"],
    openapi_extra=needs("seawall:checkpoint:get"),
)
def get_checkpoint(p: Caller, svc: Svc, rbac: Rules, checkpoint_id: str) -> CheckpointOut:
    cp = visible_checkpoint(p, svc, checkpoint_id)
    rbac.authorize(p, "seawall:checkpoint:get", svc.get_workload(cp.workload).project)
    return checkpoint_out(cp)


@router.get(
    "/checkpoints/{older}/diff/{newer}",
    tags=["checkpoints"],
    openapi_extra=needs("seawall:checkpoint:get"),
)
def diff_checkpoints(p: Caller, svc: Svc, rbac: Rules, older: str, newer: str) -> CheckpointDiffOut:
    """What changed from checkpoint ``older`` to ``newer`` (of one workload): resources
    added and removed, and every attribute changed, with its before and after."""
    for checkpoint_id in (older, newer):
        cp = visible_checkpoint(p, svc, checkpoint_id)
        rbac.authorize(p, "seawall:checkpoint:get", svc.get_workload(cp.workload).project)
    a, b, drift = svc.diff_checkpoints(older, newer)
    return CheckpointDiffOut(workload=a.workload, older=a.id, newer=b.id, **drift.report())
