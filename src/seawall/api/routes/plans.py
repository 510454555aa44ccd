"""Recovery plans: the stored plan per target, or the default one an operation would use."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from seawall.api.dependencies import Caller, Svc
from seawall.api.schemas import PlanOut
from seawall.model import dump
from seawall.service import access

router = APIRouter()


@router.get("/workloads/{name}/plans", tags=["plans"])
def workload_plans(p: Caller, svc: Svc, name: str) -> list[PlanOut]:
    w = access.visible_workload(svc, p, name)
    plans = {pl.target: pl for pl in svc.list_plans(name)}
    out = [PlanOut(**dump(pl)) for pl in plans.values()]
    for t in w.targets:
        if t not in plans:  # the default plan the operation would use
            cps = svc.list_checkpoints(workload=name, site=t)
            if cps:
                out.append(PlanOut(**dump(svc.recovery_plan(w, t, cps[0].graph))))
    return out


@router.put("/workloads/{name}/plans/{target}", tags=["plans"])
def set_plan(p: Caller, svc: Svc, name: str, target: str, body: dict[str, Any]) -> PlanOut:
    access.visible_workload(svc, p, name)
    plan = svc.set_plan({**body, "workload": name, "target": target})
    return PlanOut(**dump(plan))
