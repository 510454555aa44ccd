"""Recovery plans: the stored plan per target, or the default one an operation would use."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from seawall.api.dependencies import Caller, Rules, Svc, needs
from seawall.api.schemas import PlanOut
from seawall.model import dump
from seawall.service import access

router = APIRouter()


@router.get("/workloads/{name}/plans", tags=["plans"], openapi_extra=needs("seawall:plan:list"))
def workload_plans(p: Caller, svc: Svc, rbac: Rules, name: str) -> list[PlanOut]:
    w = access.visible_workload(svc, p, name)
    rbac.authorize(p, "seawall:plan:list", w.project)
    plans = {pl.target: pl for pl in svc.list_plans(name)}
    out = [PlanOut(**dump(pl)) for pl in plans.values()]
    for t in w.targets:
        if t not in plans:  # the default plan the operation would use
            cps = svc.list_checkpoints(workload=name, site=t)
            if cps:
                out.append(PlanOut(**dump(svc.recovery_plan(w, t, cps[0].graph))))
    return out


@router.put(
    "/workloads/{name}/plans/{target}", tags=["plans"], openapi_extra=needs("seawall:plan:update")
)
def set_plan(
    p: Caller, svc: Svc, rbac: Rules, name: str, target: str, body: dict[str, Any]
) -> PlanOut:
    w = access.visible_workload(svc, p, name)
    rbac.authorize(p, "seawall:plan:update", w.project)
    plan = svc.set_plan({**body, "workload": name, "target": target})
    return PlanOut(**dump(plan))
