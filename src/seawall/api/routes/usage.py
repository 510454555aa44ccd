"""Usage per project (bytes protected, stored, replicated; compute-hours): the bill."""

from __future__ import annotations

from fastapi import APIRouter

from seawall.api.dependencies import Caller, Since, Svc
from seawall.api.schemas import UsageOut

router = APIRouter()


@router.get("/usage", tags=["usage"])
def usage(p: Caller, svc: Svc, since: Since = None) -> UsageOut:
    if p.admin:
        return UsageOut(since=since, projects=svc.usage(None, since))
    # a Keystone caller's usage may be recorded under its project's name or its id
    projects: dict[str, dict[str, float]] = {}
    for name in {p.project, p.project_id} - {""}:
        projects.update(svc.usage(name, since))
    return UsageOut(since=since, projects=projects)
