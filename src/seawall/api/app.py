"""The ``/v1`` REST API: a thin edge over :class:`~seawall.service.Service`.

Pydantic lives here only; the service speaks the model's dataclasses. Rules every route
keeps:

- **Authorisation by project on every call.** Objects of another project answer 404,
  exactly as objects that do not exist (no existence oracle). Sites and policies are
  shared catalogue objects: every caller reads them, only admins create them.
- **Errors are problem+json** (RFC 9457), the status taken from the ``http_status`` of
  the :class:`~seawall.errors.SeawallError` class.
- **Lists page** with ``limit`` and ``marker`` (the last id/name of the previous page);
  the answer's ``next_marker`` is null on the last page.
- **Operations never block.** Starting a run preflights it synchronously (problems come
  back at once, 409, nothing created), records the run, hands it to a worker thread and
  answers 202 with the run and a ``Location``; ``GET /v1/runs/{id}`` shows its steps.
  An ``Idempotency-Key`` header makes a retried POST return the run it started first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Generic, Literal, TypeVar

from croniter import croniter
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from seawall import __version__
from seawall.api.auth import Authenticator, Principal
from seawall.errors import InvalidInput, NotFound, SeawallError
from seawall.model import Checkpoint, Run, RunKind, Selector, Workload, dump
from seawall.service import Service, access

log = logging.getLogger("seawall.api")

PROBLEM = "application/problem+json"
T = TypeVar("T")

# --------------------------------------------------------------------------------------
# Schemas (the edge only)
# --------------------------------------------------------------------------------------


class Problem(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    field: str | None = None
    problems: list[str] | None = None


class SiteOut(BaseModel):
    name: str
    driver: str


class PolicyOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    rpo_seconds: int
    rto_target_seconds: int
    schedule: str
    drill_schedule: str
    targets: list[str]


class RpoOut(BaseModel):
    rpo_seconds: int | None
    achieved_rpo_seconds: float | None
    compliant: bool | None
    recovery_site: str
    newest_checkpoint_at: float | None


class WorkloadOut(BaseModel):
    name: str
    site: str
    selector: dict[str, Any]
    policy: str
    targets: list[str]
    project: str
    rpo: RpoOut | None = None


NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class WorkloadIn(BaseModel):
    name: str = Field(pattern=NAME)
    site: str = Field(min_length=1, max_length=63)
    selector: str = Field(min_length=1, description="tag:k=v, project or members:a,b")
    policy: str = Field(min_length=1, max_length=63)
    targets: list[str] = []
    project: str | None = Field(None, description="admins only; default: the caller's")


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(pattern=NAME)
    rpo_seconds: int = Field(3600, ge=60, le=10**8)
    schedule: str = Field("", description="cron window; empty: driven by rpo_seconds")
    drill_schedule: str = Field("", description="cron expression; empty: no drills")


class CheckpointOut(BaseModel):
    id: str
    workload: str
    site: str
    created_at: float
    consistency: str
    parent: str
    volumes: list[dict[str, Any]]
    notes: list[str]
    resources: int


class PlanOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    workload: str
    target: str


class StepOut(BaseModel):
    name: str
    state: str
    progress: float
    detail: str
    started_at: float
    finished_at: float


class RunOut(BaseModel):
    id: str
    kind: str
    workload: str
    state: str
    project: str
    created_at: float
    finished_at: float
    error: str
    params: dict[str, Any]
    result: dict[str, Any]
    progress: float = Field(description="fraction of steps finished, 0..1")
    steps: list[StepOut] | None = None


class OperationIn(BaseModel):
    operation: Literal["protect", "drill", "failover", "migrate", "reprotect", "failback"]
    target: str | None = None
    checkpoint_id: str | None = None


class DrillIn(BaseModel):
    workload: str = Field(min_length=1)
    target: str | None = None
    checkpoint_id: str | None = None


class DrillReport(BaseModel):
    run: str
    workload: str
    state: str
    created_at: float
    target: str | None
    checkpoint_id: str | None
    rto_seconds: float | None
    verified: bool | None
    residue: int | None
    error: str


class ReportRow(BaseModel):
    workload: str
    project: str
    policy: str
    rpo_seconds: int | None
    achieved_rpo_seconds: float | None
    compliant: bool | None
    rto_target_seconds: int | None
    last_rto_seconds: float | None
    last_drill: DrillReport | None


class EventOut(BaseModel):
    id: int
    at: float
    kind: str
    severity: str
    message: str
    workload: str | None
    run_id: str | None
    data: dict[str, Any]


class UsageOut(BaseModel):
    since: float | None
    projects: dict[str, dict[str, float]]


ItemT = TypeVar("ItemT")


class Page(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    next_marker: str | None


class Health(BaseModel):
    status: str
    version: str
    leader: bool | None


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {PROBLEM: {}}, "description": why}
    for code, why in (
        (401, "no or invalid token"),
        (403, "not allowed"),
        (404, "not found (or not visible to the caller's project)"),
        (409, "conflict or failed preflight"),
        (422, "invalid input"),
        (503, "a dependency is unavailable; retry"),
    )
}


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def paginate(
    items: Sequence[T], key: Callable[[T], str], limit: int, marker: str | None
) -> tuple[list[T], str | None]:
    start = 0
    if marker:
        keys = [key(i) for i in items]
        if marker not in keys:
            raise NotFound(f"marker {marker!r} is not in this list (was it removed?)")
        start = keys.index(marker) + 1
    page = list(items[start : start + limit])
    more = start + limit < len(items)
    return page, (key(page[-1]) if more and page else None)


def run_out(run: Run, steps: Iterable[Any] | None = None) -> RunOut:
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


# --------------------------------------------------------------------------------------
# Run launcher: preflight now, execute on a worker thread
# --------------------------------------------------------------------------------------


class Launcher:
    """Starts operations without blocking the request (shared with the dashboard)."""

    def __init__(self, service: Service, workers: int = 2) -> None:
        self.svc = service
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="seawall-api-run")
        self._lock = threading.Lock()

    def start(
        self,
        operation: str,
        workload: str,
        *,
        target: str | None = None,
        checkpoint_id: str | None = None,
        idempotency_key: str | None = None,
        project: str = "",
        by: str = "api",
    ) -> tuple[Run, bool]:
        """(the run, whether it was started now) — False when the key was seen before."""
        params: dict[str, Any] = {"started_by": by}
        with self._lock:
            if idempotency_key:
                seen = self.svc.find_run(project=project, key=idempotency_key)
                if seen is not None:
                    return seen, False
                params["idempotency_key"] = idempotency_key
            run, flow = self.svc.prepare_operation(
                operation, workload, target=target, checkpoint_id=checkpoint_id, params=params
            )
        self.pool.submit(self._execute, run, flow)
        return run, True

    def _execute(self, run: Run, flow: Any) -> None:
        try:
            self.svc.execute_prepared(run, flow)
        except Exception:
            log.exception("run %s crashed", run.id)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------------------
# The application
# --------------------------------------------------------------------------------------


def token_of(request: Request) -> str | None:
    """``Authorization: Bearer``, ``X-Auth-Token``, or (safe methods only) the dashboard's
    session cookie — never a cookie for a change, so a forged cross-site POST has no power."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    token = request.headers.get("x-auth-token")
    if token:
        return token
    if request.method in ("GET", "HEAD"):
        return request.cookies.get("seawall_token")
    return None


def principal(request: Request) -> Principal:
    auth: Authenticator = request.app.state.auth
    return auth.principal(token_of(request))


Caller = Annotated[Principal, Depends(principal)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Marker = Annotated[str | None, Query(max_length=255)]
IdempotencyKey = Annotated[str | None, Header(max_length=255)]


def create_app(
    service: Service,
    auth: Authenticator,
    *,
    launcher: Launcher | None = None,
    leader: Callable[[], bool] | None = None,
    public_metrics: bool = False,
) -> FastAPI:
    """The API (``/v1``), ``/metrics`` and ``/healthz``; the dashboard is added by serve."""
    svc = service
    launch = launcher or Launcher(svc)
    app = FastAPI(
        title="seawall",
        version=__version__,
        description="Disaster recovery as a service for OpenStack.",
        openapi_url="/v1/openapi.json",
        docs_url="/v1/docs",
        redoc_url=None,
    )
    app.state.service = svc
    app.state.auth = auth
    app.state.launcher = launch

    @app.exception_handler(SeawallError)
    async def seawall_error(_req: Request, exc: SeawallError) -> JSONResponse:
        return problem(
            exc.http_status,
            type(exc).__name__,
            str(exc),
            field=getattr(exc, "field", None),
            problems=getattr(exc, "problems", None),
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        ]
        return problem(422, "InvalidInput", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, "HTTPError", str(exc.detail))

    def visible_workload(p: Principal, name: str) -> Workload:
        return access.visible_workload(svc, p, name)

    def visible_workloads(p: Principal) -> list[Workload]:
        return access.visible_workloads(svc, p)

    def visible_run(p: Principal, run_id: str) -> Run:
        return access.visible_run(svc, p, run_id)

    def rpo_rows(p: Principal) -> dict[str, dict[str, Any]]:
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

    v1 = APIRouter(prefix="/v1", responses=ERRORS)

    # -- sites and policies (shared catalogue) --------------------------------------------
    @v1.get("/sites", tags=["sites"])
    def list_sites(p: Caller, limit: Limit = 100, marker: Marker = None) -> Page[SiteOut]:
        sites = [SiteOut(name=s.name, driver=s.driver) for s in svc.list_sites()]
        items, nxt = paginate(sites, lambda s: s.name, limit, marker)
        return Page[SiteOut](items=items, next_marker=nxt)

    @v1.get("/sites/{name}", tags=["sites"])
    def get_site(p: Caller, name: str) -> SiteOut:
        s = svc.site(name)
        return SiteOut(name=s.name, driver=s.driver)

    @v1.get("/policies", tags=["policies"])
    def list_policies(p: Caller, limit: Limit = 100, marker: Marker = None) -> Page[PolicyOut]:
        pols = [PolicyOut(**dump(x)) for x in svc.list_policies()]
        items, nxt = paginate(pols, lambda x: x.name, limit, marker)
        return Page[PolicyOut](items=items, next_marker=nxt)

    @v1.get("/policies/{name}", tags=["policies"])
    def get_policy(p: Caller, name: str) -> PolicyOut:
        return PolicyOut(**dump(svc.get_policy(name)))

    @v1.post("/policies", tags=["policies"], status_code=201)
    def create_policy(p: Caller, body: PolicyIn) -> PolicyOut:
        p.require_admin()
        for field in ("schedule", "drill_schedule"):
            expr = getattr(body, field)
            if expr and not croniter.is_valid(expr):
                raise InvalidInput(f"{expr!r} is not a cron expression", field=f"policy.{field}")
        return PolicyOut(**dump(svc.create_policy(body.model_dump())))

    # -- workloads ----------------------------------------------------------------------
    @v1.get("/workloads", tags=["workloads"])
    def list_workloads(p: Caller, limit: Limit = 100, marker: Marker = None) -> Page[WorkloadOut]:
        rows = rpo_rows(p)
        out = [workload_out(w, rows.get(w.name)) for w in visible_workloads(p)]
        items, nxt = paginate(out, lambda w: w.name, limit, marker)
        return Page[WorkloadOut](items=items, next_marker=nxt)

    @v1.post("/workloads", tags=["workloads"], status_code=201)
    def create_workload(p: Caller, body: WorkloadIn) -> WorkloadOut:
        project = body.project or p.project
        if not p.sees(project):
            p.require_admin()
        w = svc.create_workload(
            body.name, body.site, Selector.parse(body.selector), body.policy, body.targets, project
        )
        return workload_out(w, None)

    @v1.get("/workloads/{name}", tags=["workloads"])
    def get_workload(p: Caller, name: str) -> WorkloadOut:
        w = visible_workload(p, name)
        return workload_out(w, rpo_rows(p).get(name))

    @v1.get("/workloads/{name}/checkpoints", tags=["checkpoints"])
    def workload_checkpoints(
        p: Caller, name: str, site: str | None = None, limit: Limit = 100, marker: Marker = None
    ) -> Page[CheckpointOut]:
        visible_workload(p, name)
        cps = [checkpoint_out(c) for c in svc.list_checkpoints(workload=name, site=site)]
        items, nxt = paginate(cps, lambda c: c.id, limit, marker)
        return Page[CheckpointOut](items=items, next_marker=nxt)

    @v1.get("/workloads/{name}/plans", tags=["plans"])
    def workload_plans(p: Caller, name: str) -> list[PlanOut]:
        w = visible_workload(p, name)
        plans = {pl.target: pl for pl in svc.list_plans(name)}
        out = [PlanOut(**dump(pl)) for pl in plans.values()]
        for t in w.targets:
            if t not in plans:  # the default plan the operation would use
                cps = svc.list_checkpoints(workload=name, site=t)
                if cps:
                    out.append(PlanOut(**dump(svc.recovery_plan(w, t, cps[0].graph))))
        return out

    @v1.put("/workloads/{name}/plans/{target}", tags=["plans"])
    def set_plan(p: Caller, name: str, target: str, body: dict[str, Any]) -> PlanOut:
        visible_workload(p, name)
        plan = svc.set_plan({**body, "workload": name, "target": target})
        return PlanOut(**dump(plan))

    @v1.post("/workloads/{name}/runs", tags=["runs"], status_code=202)
    def start_run(
        p: Caller,
        name: str,
        body: OperationIn,
        response: Response,
        idempotency_key: IdempotencyKey = None,
    ) -> RunOut:
        """Start an operation; answers 202 at once (200 for a repeated Idempotency-Key)."""
        w = visible_workload(p, name)
        run, fresh = launch.start(
            body.operation,
            w.name,
            target=body.target,
            checkpoint_id=body.checkpoint_id,
            idempotency_key=idempotency_key,
            project=w.project,
        )
        response.headers["Location"] = f"/v1/runs/{run.id}"
        if not fresh:
            response.status_code = 200
        return run_out(run)

    # -- checkpoints --------------------------------------------------------------------
    @v1.get("/checkpoints", tags=["checkpoints"])
    def list_checkpoints(
        p: Caller,
        workload: str | None = None,
        site: str | None = None,
        limit: Limit = 100,
        marker: Marker = None,
    ) -> Page[CheckpointOut]:
        names = {w.name for w in visible_workloads(p)}
        if workload is not None:
            visible_workload(p, workload)
        cps = [
            checkpoint_out(c)
            for c in svc.list_checkpoints(workload=workload, site=site)
            if c.workload in names
        ]
        items, nxt = paginate(cps, lambda c: c.id, limit, marker)
        return Page[CheckpointOut](items=items, next_marker=nxt)

    @v1.get("/checkpoints/{checkpoint_id}", tags=["checkpoints"])
    def get_checkpoint(p: Caller, checkpoint_id: str) -> CheckpointOut:
        cp = svc.get_checkpoint(checkpoint_id)
        try:
            visible_workload(p, cp.workload)
        except NotFound:
            raise NotFound(f"checkpoint {checkpoint_id!r} not found") from None
        return checkpoint_out(cp)

    # -- runs ---------------------------------------------------------------------------
    @v1.get("/runs", tags=["runs"])
    def list_runs(
        p: Caller,
        workload: str | None = None,
        kind: RunKind | None = None,
        limit: Limit = 100,
        marker: Marker = None,
    ) -> Page[RunOut]:
        if workload is not None:
            visible_workload(p, workload)
        runs = [
            r
            for r in svc.list_runs(workload=workload, limit=5000)
            if p.sees(r.project) and (kind is None or r.kind is kind)
        ]
        items, nxt = paginate(runs, lambda r: r.id, limit, marker)
        return Page[RunOut](items=[run_out(r) for r in items], next_marker=nxt)

    @v1.get("/runs/{run_id}", tags=["runs"])
    def get_run(p: Caller, run_id: str) -> RunOut:
        run = visible_run(p, run_id)
        return run_out(run, svc.steps(run_id))

    @v1.post("/runs/{run_id}/cancel", tags=["runs"], status_code=202)
    def cancel_run(p: Caller, run_id: str) -> RunOut:
        visible_run(p, run_id)
        return run_out(svc.cancel(run_id))

    # -- drills and reports ---------------------------------------------------------------
    @v1.get("/drills", tags=["drills"])
    def list_drills(
        p: Caller, workload: str | None = None, limit: Limit = 100, marker: Marker = None
    ) -> Page[DrillReport]:
        if workload is not None:
            visible_workload(p, workload)
        runs = [
            r
            for r in svc.list_runs(workload=workload, limit=5000)
            if r.kind is RunKind.DRILL and p.sees(r.project)
        ]
        items, nxt = paginate(runs, lambda r: r.id, limit, marker)
        return Page[DrillReport](items=[drill_report(r) for r in items], next_marker=nxt)

    @v1.post("/drills", tags=["drills"], status_code=202)
    def start_drill(
        p: Caller,
        body: DrillIn,
        response: Response,
        idempotency_key: IdempotencyKey = None,
    ) -> RunOut:
        return start_run(
            p,
            body.workload,
            OperationIn(operation="drill", target=body.target, checkpoint_id=body.checkpoint_id),
            response,
            idempotency_key,
        )

    @v1.get("/reports", tags=["reports"])
    def report(p: Caller) -> list[ReportRow]:
        """RPO and RTO per workload: achieved vs policy, last measured RTO, last drill."""
        latest = svc.latest_runs()
        out = []
        for row in rpo_rows(p).values():
            name = row["workload"]
            try:
                target = svc.get_policy(row["policy"]).rto_target_seconds
            except NotFound:
                target = None
            drill = latest.get((name, "drill"))
            rtos = [
                r
                for k in ("drill", "failover", "migrate", "failback")
                if (r := latest.get((name, k))) is not None and "rto_seconds" in r.result
            ]
            last_rto = max(rtos, key=lambda r: r.created_at).result["rto_seconds"] if rtos else None
            out.append(
                ReportRow(
                    workload=name,
                    project=row["project"],
                    policy=row["policy"],
                    rpo_seconds=row["rpo_seconds"],
                    achieved_rpo_seconds=row["achieved_rpo_seconds"],
                    compliant=row["compliant"],
                    rto_target_seconds=target,
                    last_rto_seconds=last_rto,
                    last_drill=drill_report(drill) if drill else None,
                )
            )
        return out

    # -- usage and events ---------------------------------------------------------------
    @v1.get("/usage", tags=["usage"])
    def usage(p: Caller, since: Annotated[float | None, Query(ge=0, le=1e11)] = None) -> UsageOut:
        if p.admin:
            return UsageOut(since=since, projects=svc.usage(None, since))
        projects: dict[str, dict[str, float]] = {}
        for name in {p.project, p.project_id} - {""}:
            projects.update(svc.usage(name, since))
        return UsageOut(since=since, projects=projects)

    @v1.get("/events", tags=["events"])
    def events(
        p: Caller,
        workload: str | None = None,
        since: Annotated[float | None, Query(ge=0, le=1e11)] = None,
        limit: Limit = 100,
        marker: Marker = None,
    ) -> Page[EventOut]:
        if workload is not None:
            visible_workload(p, workload)
        projects = {w.name: w.project for w in svc.list_workloads()}
        run_projects: dict[str, str] = {}

        def visible(ev: Any) -> bool:
            if p.admin:
                return True
            if ev.workload:
                return ev.workload in projects and p.sees(projects[ev.workload])
            if ev.run_id:
                if ev.run_id not in run_projects:
                    try:
                        run_projects[ev.run_id] = svc.get_run(ev.run_id).project
                    except NotFound:
                        run_projects[ev.run_id] = ""
                return p.sees(run_projects[ev.run_id])
            return False

        evs = [
            EventOut(
                id=e.id,
                at=e.at,
                kind=e.kind,
                severity=e.severity,
                message=e.message,
                workload=e.workload,
                run_id=e.run_id,
                data=dict(e.data),
            )
            for e in svc.list_events(workload=workload, since=since, limit=5000)
            if visible(e)
        ]
        items, nxt = paginate(evs, lambda e: str(e.id), limit, marker)
        return Page[EventOut](items=items, next_marker=nxt)

    @v1.get("/health", tags=["health"])
    def health() -> Health:
        return Health(status="ok", version=__version__, leader=leader() if leader else None)

    app.include_router(v1)

    from seawall.api.metrics import metrics_route

    metrics_route(app, svc, auth, token_of, public=public_metrics)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "at": time.time()}

    return app
