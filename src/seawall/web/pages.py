"""The dashboard's pages, one method each, over the :class:`~seawall.service.Service`.

Every page but the sign-in form needs a signed-in caller (others are sent to
``/login?next=<path>``) and renders a :class:`~seawall.errors.SeawallError` as the error
page with the error's HTTP status. What a caller may see is decided by ``Caller.sees``
(``seawall.service.access.sees``); objects of another project are *not found*, like
objects that do not exist. What it may do is decided by the API's RBAC rules
(:class:`~seawall.service.rbac.Rbac`, the same rule names as the routes'): a page the
caller's roles do not allow answers 403, and a button it may not press is not shown.
The dashboard's not-found messages carry no hint at the ``/v1`` API, unlike the API's.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response

from seawall.errors import NotFound, SeawallError
from seawall.fidelity import Drift
from seawall.model import Checkpoint, RecoveryPlan, ResourceGraph, Run, RunKind, Workload, dump
from seawall.service import Service
from seawall.service.audit import OUTCOMES, AuditFilter, initiator_of
from seawall.service.rbac import Rbac
from seawall.web.graph import graph_svg
from seawall.web.render import Renderer
from seawall.web.session import (
    COOKIE,
    MAX_AGE,
    SIGN_IN_AGE,
    Caller,
    PrincipalOf,
    Sessions,
    end_session,
    for_audit,
    local_target,
    login_redirect,
)

CONFIRMABLE = ("drill", "failover", "protect")

StartRun = Callable[..., tuple[Run, bool]]
Page = Callable[..., Response]


def confirmable(operation: str) -> str:
    """The operations the dashboard starts (through the confirmation page)."""
    if operation not in CONFIRMABLE:
        raise NotFound(f"no operation {operation!r} here")
    return operation


class Dashboard:
    """The pages, holding what they need: the service, how to authenticate a token and
    how to start a run (``seawall serve`` passes the API's; this package does not import
    :mod:`seawall.api`)."""

    def __init__(
        self, service: Service, principal_of: PrincipalOf, start_run: StartRun, rbac: Rbac
    ) -> None:
        self.svc = service
        self.principal_of = principal_of
        self.start_run = start_run
        self.rbac = rbac
        self.sessions = Sessions()
        self.renderer = Renderer(self.sessions.csrf)
        self.render = self.renderer.render

    # -- visibility ---------------------------------------------------------------

    def visible_workload(self, caller: Caller, name: str, action: str) -> Workload:
        """The workload if the caller sees it (else not found) and its roles allow
        ``action`` on it (else forbidden)."""
        w = self.svc.get_workload(name)
        if not caller.sees(w.project):
            raise NotFound(f"workload {name!r} not found")
        self.rbac.authorize(caller, action, w.project)
        return w

    def visible_run(self, caller: Caller, run_id: str) -> Run:
        run = self.svc.get_run(run_id)
        if not caller.sees(run.project):
            raise NotFound(f"run {run_id!r} not found")
        self.rbac.authorize(caller, "seawall:run:get", run.project)
        return run

    def signed_in(self, fn: Page) -> Page:
        """A page for signed-in callers: FastAPI sees ``fn``'s parameters but ``caller``;
        no caller redirects to the login page, errors render as the error page."""

        def wrapper(request: Request, **kw: Any) -> Response:
            caller = self.sessions.who(self.principal_of, request)
            if caller is None:
                return login_redirect(request)
            try:
                return fn(request, caller, **kw)
            except SeawallError as exc:
                return self.renderer.error(request, caller, exc)

        wrapper.__name__ = fn.__name__
        sig = inspect.signature(fn)
        params = [p for n, p in sig.parameters.items() if n != "caller"]
        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        return wrapper

    # -- signing in and out -------------------------------------------------------

    def login_form(self, request: Request, next: str = "/") -> Response:
        return self._login_page(request, local_target(next))

    def _login_page(self, request: Request, next: str, error: str = "") -> Response:
        """The sign-in form, under a fresh anonymous session whose CSRF token it carries."""
        sid, session = self.sessions.open(None)
        resp = self.render("login.html", request, None, next=next, error=error, csrf=session.csrf)
        self.sessions.set_cookie(request, resp, sid, SIGN_IN_AGE)
        return resp

    def login(
        self, request: Request, token: str = Form(...), next: str = Form("/"), csrf: str = Form("")
    ) -> Response:
        """Check the form's CSRF token, then the API token; a new session id on success
        (the anonymous one is revoked: a planted id is never signed in)."""
        if not self.sessions.csrf_matches(request, csrf):
            failed = self._login_page(
                request, local_target(next), "the sign-in form expired; sign in again"
            )
            failed.status_code = 400
            return failed
        try:
            for_audit(request, self.principal_of(token.strip()))
        except SeawallError as exc:
            failed = self._login_page(request, local_target(next), str(exc))
            failed.status_code = 401
            return failed
        self.sessions.close(request.cookies.get(COOKIE))
        resp = RedirectResponse(local_target(next), status_code=303)
        sid, _ = self.sessions.open(token.strip())
        self.sessions.set_cookie(request, resp, sid, MAX_AGE)
        return resp

    def logout(self, request: Request, csrf: str = Form("")) -> Response:
        """Revoke the session server-side (a kept cookie opens nothing) and drop the cookie."""
        if not self.sessions.csrf_matches(request, csrf):
            caller = self.sessions.who(self.principal_of, request)
            return self.render("error.html", request, caller, error="stale form; reload the page")
        self.sessions.close(request.cookies.get(COOKIE))
        resp = RedirectResponse("/login", status_code=303)
        end_session(resp)
        return resp

    # -- pages --------------------------------------------------------------------

    def overview(self, request: Request, caller: Caller) -> Response:
        self.rbac.authorize(caller, "seawall:workload:list", caller.project)
        rows = [r for r in self.svc.rpo_report() if caller.sees(r["project"])]
        latest = self.svc.latest_runs()
        for r in rows:
            r["last_protect"] = latest.get((r["workload"], "protect"))
            r["last_drill"] = latest.get((r["workload"], "drill"))
        breached = sum(1 for r in rows if r["compliant"] is False)
        unknown = sum(1 for r in rows if r["compliant"] is None)
        return self.render(
            "overview.html",
            request,
            caller,
            rows=sorted(rows, key=lambda r: (r["compliant"] is not False, r["workload"])),
            breached=breached,
            unknown=unknown,
        )

    def workload(self, request: Request, caller: Caller, name: str) -> Response:
        w = self.visible_workload(caller, name, "seawall:workload:get")
        row = next((r for r in self.svc.rpo_report() if r["workload"] == name), None)
        cps = self.svc.list_checkpoints(workload=name)
        graph = cps[0].graph if cps else self._resolved(w)
        plans = self._plans(w, graph)
        held: dict[str, list[str]] = {c.id: [] for c in cps}
        for site in {w.site, *w.targets}:
            for c in self.svc.list_checkpoints(workload=name, site=site):
                held.setdefault(c.id, []).append(site)
        return self.render(
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
            runs=self.svc.list_runs(workload=name, limit=20),
            events=self.svc.list_events(workload=name, limit=20),
            drift=self._drift(w),
            may_start=self.rbac.allowed_runs(caller, w.project, CONFIRMABLE),
        )

    def _drift(self, w: Workload) -> tuple[Checkpoint | None, Drift] | str:
        """What changed on the workload's site since its last checkpoint, or why that
        cannot be told now (the page still shows what the database knows)."""
        try:
            return self.svc.drift_since_checkpoint(w.name)
        except SeawallError as exc:
            return str(exc)

    def _resolved(self, w: Workload) -> ResourceGraph | None:
        """The live graph of a workload without checkpoints; None if its site is away."""
        try:
            return self.svc.resolve(w)
        except SeawallError:
            return None

    def _plans(self, w: Workload, graph: ResourceGraph | None) -> dict[str, RecoveryPlan]:
        """The stored plan per target, and the default one where none is stored."""
        plans = {p.target: p for p in self.svc.list_plans(w.name)}
        for t in w.targets:
            if t not in plans and graph is not None:
                plans[t] = self.svc.recovery_plan(w, t, graph)
        return plans

    def confirm(self, request: Request, caller: Caller, name: str, operation: str) -> Response:
        w = self.visible_workload(caller, name, f"seawall:run:create:{confirmable(operation)}")
        target = w.targets[0] if w.targets else w.site
        cps = self.svc.list_checkpoints(workload=name, site=target)
        return self.render(
            "confirm.html",
            request,
            caller,
            w=w,
            operation=operation,
            target=target,
            checkpoint=cps[0] if cps else None,
        )

    def start(self, request: Request, name: str, operation: str, csrf: str = Form("")) -> Response:
        """The confirmation form's POST; a stale form is answered 200 with the error page."""
        caller = self.sessions.who(self.principal_of, request)
        if caller is None:
            return login_redirect(request)
        if not self.sessions.csrf_matches(request, csrf):
            return self.render("error.html", request, caller, error="stale form; reload the page")
        try:
            operation = confirmable(operation)
            w = self.visible_workload(caller, name, f"seawall:run:create:{operation}")
            run, _ = self.start_run(
                operation, w.name, project=w.project, by="dashboard", initiator=initiator_of(caller)
            )
        except SeawallError as exc:
            return self.renderer.error(request, caller, exc)
        return RedirectResponse(f"/runs/{run.id}", status_code=303)

    def runs(self, request: Request, caller: Caller) -> Response:
        self.rbac.authorize(caller, "seawall:run:list", caller.project)
        items = [r for r in self.svc.list_runs(limit=500) if caller.sees(r.project)][:100]
        return self.render("runs.html", request, caller, runs=items)

    def run_page(self, request: Request, caller: Caller, run_id: str) -> Response:
        run = self.visible_run(caller, run_id)
        return self.render("run.html", request, caller, run=run, steps=self.svc.steps(run_id))

    def drills(self, request: Request, caller: Caller) -> Response:
        self.rbac.authorize(caller, "seawall:run:list", caller.project)
        items = [
            r
            for r in self.svc.list_runs(limit=1000)
            if r.kind is RunKind.DRILL and caller.sees(r.project)
        ]
        return self.render("drills.html", request, caller, drills=items[:100])

    def usage(self, request: Request, caller: Caller) -> Response:
        self.rbac.authorize(caller, "seawall:usage:get", caller.project)
        all_usage: Mapping[str, Mapping[str, float]] = self.svc.usage()
        shown = {p: m for p, m in all_usage.items() if caller.sees(p)}
        return self.render("usage.html", request, caller, usage=shown)

    def events(self, request: Request, caller: Caller) -> Response:
        self.rbac.authorize(caller, "seawall:events:list", caller.project)
        projects = {w.name: w.project for w in self.svc.list_workloads()}
        items = [
            e
            for e in self.svc.list_events(limit=1000)
            if caller.admin or (e.workload in projects and caller.sees(projects[e.workload]))
        ]
        return self.render("events.html", request, caller, events=items[:200])

    def audit(
        self,
        request: Request,
        caller: Caller,
        user: str | None = None,
        project: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
    ) -> Response:
        """The audit trail, newest first, for admins (others get the 403 error page);
        the form filters by user, project (name or id), action and outcome."""
        self.rbac.authorize(caller, "seawall:audit:list", caller.project)
        given = {"user": user, "project": project, "action": action, "outcome": outcome}
        chosen = {k: (v.strip()[:255] or None) if v else None for k, v in given.items()}
        if chosen["outcome"] not in OUTCOMES:
            chosen["outcome"] = None
        selected = AuditFilter(
            project=chosen["project"],
            user=chosen["user"],
            action=chosen["action"],
            outcome=chosen["outcome"],
        )
        records = self.svc.audit.list(selected, limit=200)
        return self.render(
            "audit.html", request, caller, records=records, chosen=chosen, outcomes=OUTCOMES
        )
