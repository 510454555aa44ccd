"""The dashboard of ``seawall serve`` (``/``): server-rendered Jinja2, no JS build step.

Pages: overview (every visible workload with its RPO compliance at a glance), a
workload (resource graph drawn as SVG on the server, checkpoints, recovery plans, runs),
runs with live step progress (a few lines of vanilla JS poll ``/v1/runs/{id}``), drill
reports, usage and events.

Sign-in: the browser posts an API token (local or Keystone) once; it is kept in an
HttpOnly, SameSite=Strict cookie. Pages that change something (start a drill or a
failover) go through a confirmation page whose form carries a CSRF token derived from
the session token, and the API never honours the cookie for anything but GET.

This package does not import :mod:`seawall.api` (the layers are independent):
``seawall serve`` passes in how to authenticate a token and how to start a run.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from seawall.errors import NotFound, SeawallError
from seawall.model import ResourceGraph, Run, RunKind, dump
from seawall.service import Service
from seawall.units import format_bytes

COOKIE = "seawall_token"
CONFIRMABLE = ("drill", "failover", "protect")


class Caller(Protocol):
    @property
    def project(self) -> str: ...
    @property
    def admin(self) -> bool: ...
    @property
    def user(self) -> str: ...

    def sees(self, project: str) -> bool: ...


PrincipalOf = Callable[[str | None], Caller]
StartRun = Callable[..., tuple[Run, bool]]


def _ago(ts: float | None) -> str:
    if not ts:
        return "—"
    s = max(0, int(time.time() - ts))
    if s < 120:
        return f"{s}s ago"
    if s < 7200:
        return f"{s // 60}m ago"
    if s < 172800:
        return f"{s // 3600}h ago"
    return f"{s // 86400}d ago"


def _duration(s: float | None) -> str:
    if s is None:
        return "—"
    s = float(s)
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.1f}m"
    return f"{s / 3600:.1f}h"


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + "Z" if ts else "—"


def csrf_token(session: str) -> str:
    return hashlib.sha256(b"seawall-csrf:" + session.encode()).hexdigest()[:32]


def graph_svg(graph: ResourceGraph) -> dict[str, Any]:
    """A layered drawing: a column per dependency depth, an edge per reference."""
    by_ref = {r.ref: r for r in graph.resources}
    depth: dict[Any, int] = {}

    def d(ref: Any, trail: frozenset[Any] = frozenset()) -> int:
        if ref in depth:
            return depth[ref]
        r = by_ref.get(ref)
        deps = [x for x in (r.depends_on if r else ()) if x in by_ref and x not in trail]
        depth[ref] = 1 + max((d(x, trail | {ref}) for x in deps), default=-1)
        return depth[ref]

    for ref in by_ref:
        d(ref)
    columns: dict[int, list[Any]] = {}
    for ref in sorted(by_ref, key=lambda x: (x.kind.value, by_ref[x].name)):
        columns.setdefault(depth[ref], []).append(ref)
    w, h, cw, rh = 150, 30, 190, 44
    pos: dict[Any, tuple[int, int]] = {}
    for col, refs in columns.items():
        for row, ref in enumerate(refs):
            pos[ref] = (20 + col * cw, 20 + row * rh)
    nodes = [
        {
            "x": x,
            "y": y,
            "w": w,
            "h": h,
            "kind": ref.kind.value,
            "name": (by_ref[ref].name or ref.id)[:18],
            "title": f"{ref.kind.value} {by_ref[ref].name} ({ref.id})",
        }
        for ref, (x, y) in pos.items()
    ]
    edges = []
    for ref, r in by_ref.items():
        x1, y1 = pos[ref]
        for dep in r.depends_on:
            if dep in pos:
                x2, y2 = pos[dep]
                edges.append({"x1": x1, "y1": y1 + h // 2, "x2": x2 + w, "y2": y2 + h // 2})
    width = 40 + (max(columns, default=0) + 1) * cw
    height = 40 + max((len(v) for v in columns.values()), default=0) * rh
    return {"nodes": nodes, "edges": edges, "width": width, "height": height}


def add_dashboard(
    app: FastAPI, service: Service, principal_of: PrincipalOf, start_run: StartRun
) -> None:
    """Mount the dashboard's pages on ``app``."""
    svc = service
    env = Environment(
        loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=select_autoescape(["html"]),
    )
    env.filters.update(ago=_ago, duration=_duration, bytes=format_bytes, when=_when)
    env.globals["quote"] = quote

    def render(name: str, request: Request, caller: Caller | None, **ctx: Any) -> HTMLResponse:
        session = request.cookies.get(COOKIE, "")
        html = env.get_template(name).render(
            caller=caller, csrf=csrf_token(session) if session else "", path=request.url.path, **ctx
        )
        return HTMLResponse(html)

    def who(request: Request) -> Caller | None:
        try:
            return principal_of(request.cookies.get(COOKIE))
        except SeawallError:
            return None

    def login_redirect(request: Request) -> RedirectResponse:
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)

    def visible_workload(caller: Caller, name: str) -> Any:
        w = svc.get_workload(name)
        if not caller.sees(w.project):
            raise NotFound(f"workload {name!r} not found")
        return w

    def page(fn: Callable[..., Response]) -> Callable[..., Response]:
        """Signed-in pages: redirect to the login page, render errors as a page."""

        def wrapper(request: Request, **kw: Any) -> Response:
            caller = who(request)
            if caller is None:
                return login_redirect(request)
            try:
                return fn(request, caller, **kw)
            except SeawallError as exc:
                resp = render("error.html", request, caller, error=exc, kind=type(exc).__name__)
                resp.status_code = exc.http_status
                return resp

        wrapper.__name__ = fn.__name__
        sig = inspect.signature(fn)
        params = [p for n, p in sig.parameters.items() if n != "caller"]
        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        return wrapper

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request, next: str = "/") -> Response:
        return render("login.html", request, None, next=next if next.startswith("/") else "/")

    @app.post("/login", include_in_schema=False)
    def login(request: Request, token: str = Form(...), next: str = Form("/")) -> Response:
        try:
            principal_of(token.strip())
        except SeawallError as exc:
            failed = render("login.html", request, None, next=next, error=str(exc))
            failed.status_code = 401
            return failed
        target = next if next.startswith("/") and not next.startswith("//") else "/"
        resp = RedirectResponse(target, status_code=303)
        resp.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict", max_age=86400)
        return resp

    @app.post("/logout", include_in_schema=False)
    def logout() -> Response:
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE)
        return resp

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    @page
    def overview(request: Request, caller: Caller) -> Response:
        rows = [r for r in svc.rpo_report() if caller.sees(r["project"])]
        latest = svc.latest_runs()
        for r in rows:
            r["last_protect"] = latest.get((r["workload"], "protect"))
            r["last_drill"] = latest.get((r["workload"], "drill"))
        breached = sum(1 for r in rows if r["compliant"] is False)
        unknown = sum(1 for r in rows if r["compliant"] is None)
        return render(
            "overview.html",
            request,
            caller,
            rows=sorted(rows, key=lambda r: (r["compliant"] is not False, r["workload"])),
            breached=breached,
            unknown=unknown,
        )

    @app.get("/workloads/{name}", response_class=HTMLResponse, include_in_schema=False)
    @page
    def workload(request: Request, caller: Caller, name: str) -> Response:
        w = visible_workload(caller, name)
        row = next((r for r in svc.rpo_report() if r["workload"] == name), None)
        cps = svc.list_checkpoints(workload=name)
        graph = None
        if cps:
            graph = cps[0].graph
        else:
            try:
                graph = svc.resolve(w)
            except SeawallError:
                graph = None
        plans = {p.target: p for p in svc.list_plans(name)}
        for t in w.targets:
            if t not in plans and graph is not None:
                plans[t] = svc.recovery_plan(w, t, graph)
        held: dict[str, list[str]] = {c.id: [] for c in cps}
        for site in {w.site, *w.targets}:
            for c in svc.list_checkpoints(workload=name, site=site):
                held.setdefault(c.id, []).append(site)
        return render(
            "workload.html",
            request,
            caller,
            w=w,
            row=row,
            checkpoints=cps[:50],
            held=held,
            graph=graph_svg(graph) if graph is not None else None,
            restore=graph.restore_order() if graph is not None else (),
            plans=[dump(p) for p in plans.values()],
            runs=svc.list_runs(workload=name, limit=20),
            events=svc.list_events(workload=name, limit=20),
        )

    @app.get(
        "/workloads/{name}/confirm/{operation}",
        response_class=HTMLResponse,
        include_in_schema=False,
    )
    @page
    def confirm(request: Request, caller: Caller, name: str, operation: str) -> Response:
        w = visible_workload(caller, name)
        if operation not in CONFIRMABLE:
            raise NotFound(f"no operation {operation!r} here")
        target = w.targets[0] if w.targets else w.site
        cps = svc.list_checkpoints(workload=name, site=target)
        return render(
            "confirm.html",
            request,
            caller,
            w=w,
            operation=operation,
            target=target,
            checkpoint=cps[0] if cps else None,
        )

    @app.post("/workloads/{name}/start/{operation}", include_in_schema=False)
    def start(request: Request, name: str, operation: str, csrf: str = Form("")) -> Response:
        caller = who(request)
        session = request.cookies.get(COOKIE, "")
        if caller is None:
            return login_redirect(request)
        if not session or not hmac.compare_digest(csrf, csrf_token(session)):
            return render("error.html", request, caller, error="stale form; reload the page")
        try:
            w = visible_workload(caller, name)
            if operation not in CONFIRMABLE:
                raise NotFound(f"no operation {operation!r} here")
            run, _ = start_run(operation, w.name, project=w.project, by="dashboard")
        except SeawallError as exc:
            resp = render("error.html", request, caller, error=exc, kind=type(exc).__name__)
            resp.status_code = exc.http_status
            return resp
        return RedirectResponse(f"/runs/{run.id}", status_code=303)

    @app.get("/runs", response_class=HTMLResponse, include_in_schema=False)
    @page
    def runs(request: Request, caller: Caller) -> Response:
        items = [r for r in svc.list_runs(limit=500) if caller.sees(r.project)][:100]
        return render("runs.html", request, caller, runs=items)

    @app.get("/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)
    @page
    def run_page(request: Request, caller: Caller, run_id: str) -> Response:
        run = svc.get_run(run_id)
        if not caller.sees(run.project):
            raise NotFound(f"run {run_id!r} not found")
        return render("run.html", request, caller, run=run, steps=svc.steps(run_id))

    @app.get("/drills", response_class=HTMLResponse, include_in_schema=False)
    @page
    def drills(request: Request, caller: Caller) -> Response:
        items = [
            r
            for r in svc.list_runs(limit=1000)
            if r.kind is RunKind.DRILL and caller.sees(r.project)
        ]
        return render("drills.html", request, caller, drills=items[:100])

    @app.get("/usage", response_class=HTMLResponse, include_in_schema=False)
    @page
    def usage(request: Request, caller: Caller) -> Response:
        all_usage: Mapping[str, Mapping[str, float]] = svc.usage()
        shown = {p: m for p, m in all_usage.items() if caller.sees(p)}
        return render("usage.html", request, caller, usage=shown)

    @app.get("/events", response_class=HTMLResponse, include_in_schema=False)
    @page
    def events(request: Request, caller: Caller) -> Response:
        projects = {w.name: w.project for w in svc.list_workloads()}
        items = [
            e
            for e in svc.list_events(limit=1000)
            if caller.admin or (e.workload in projects and caller.sees(projects[e.workload]))
        ]
        return render("events.html", request, caller, events=items[:200])
