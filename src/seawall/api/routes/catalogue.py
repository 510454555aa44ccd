"""Sites and policies: the shared catalogue every caller reads and only admins extend."""

from __future__ import annotations

from croniter import croniter
from fastapi import APIRouter

from seawall.api.dependencies import Caller, Limit, Marker, Rules, Svc, needs, paginate
from seawall.api.schemas import Page, PolicyIn, PolicyOut, SiteOut
from seawall.errors import InvalidInput
from seawall.model import dump

router = APIRouter()


@router.get("/sites", tags=["sites"], openapi_extra=needs("seawall:site:list"))
def list_sites(
    p: Caller, svc: Svc, rbac: Rules, limit: Limit = 100, marker: Marker = None
) -> Page[SiteOut]:
    rbac.authorize(p, "seawall:site:list", p.project)
    sites = [SiteOut(name=s.name, driver=s.driver) for s in svc.list_sites()]
    items, nxt = paginate(sites, lambda s: s.name, limit, marker)
    return Page[SiteOut](items=items, next_marker=nxt)


@router.get("/sites/{name}", tags=["sites"], openapi_extra=needs("seawall:site:get"))
def get_site(p: Caller, svc: Svc, rbac: Rules, name: str) -> SiteOut:
    rbac.authorize(p, "seawall:site:get", p.project)
    s = svc.site(name)
    return SiteOut(name=s.name, driver=s.driver)


@router.get("/policies", tags=["policies"], openapi_extra=needs("seawall:policy:list"))
def list_policies(
    p: Caller, svc: Svc, rbac: Rules, limit: Limit = 100, marker: Marker = None
) -> Page[PolicyOut]:
    rbac.authorize(p, "seawall:policy:list", p.project)
    pols = [PolicyOut(**dump(x)) for x in svc.list_policies()]
    items, nxt = paginate(pols, lambda x: x.name, limit, marker)
    return Page[PolicyOut](items=items, next_marker=nxt)


@router.get("/policies/{name}", tags=["policies"], openapi_extra=needs("seawall:policy:get"))
def get_policy(p: Caller, svc: Svc, rbac: Rules, name: str) -> PolicyOut:
    rbac.authorize(p, "seawall:policy:get", p.project)
    return PolicyOut(**dump(svc.get_policy(name)))


@router.post(
    "/policies", tags=["policies"], status_code=201, openapi_extra=needs("seawall:policy:create")
)
def create_policy(p: Caller, svc: Svc, rbac: Rules, body: PolicyIn) -> PolicyOut:
    rbac.authorize(p, "seawall:policy:create", p.project)
    # Cron expressions are checked here so a bad one answers 422 naming the field,
    # before the service stores a policy the scheduler could never run.
    for field in ("schedule", "drill_schedule"):
        expr = getattr(body, field)
        if expr and not croniter.is_valid(expr):
            raise InvalidInput(f"{expr!r} is not a cron expression", field=f"policy.{field}")
    return PolicyOut(**dump(svc.create_policy(body.model_dump())))
