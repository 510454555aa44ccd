"""Usage per project (bytes protected, stored, replicated; compute-hours): the bill."""

from __future__ import annotations

from fastapi import APIRouter

from seawall.api.dependencies import Caller, Rules, Since, Svc, needs
from seawall.api.schemas import UsageOut

router = APIRouter()


@router.get("/usage", tags=["usage"], openapi_extra=needs("seawall:usage:get"))
def usage(p: Caller, svc: Svc, rbac: Rules, since: Since = None) -> UsageOut:
    rbac.authorize(p, "seawall:usage:get", p.project)
    if p.admin:
        return UsageOut(since=since, projects=svc.usage(None, since))
    # a Keystone caller's usage may be recorded under its project's name or its id
    projects: dict[str, dict[str, float]] = {}
    for name in {p.project, p.project_id} - {""}:
        projects.update(svc.usage(name, since))
    return UsageOut(since=since, projects=projects)
