"""The dashboard of ``seawall serve`` (``/``): server-rendered Jinja2, no JS build step.

Pages: overview (every visible workload with its RPO compliance at a glance), a
workload (resource graph drawn as SVG on the server, checkpoints, recovery plans, runs),
runs with live step progress (a few lines of vanilla JS poll ``/v1/runs/{id}``), drill
reports, usage, events and (for admins) the audit trail.

Sign-in: the browser posts an API token (local or Keystone) once; it stays on the
server, in a session whose random id is all the HttpOnly, SameSite=Strict cookie holds
(:mod:`.session`). Every form (sign-in, sign-out, the confirmation page of a drill or a
failover) carries a CSRF token bound to its session, and the API honours the session
cookie for GET only (``app.state.sessions``, read by ``seawall.api.dependencies``).

This package does not import :mod:`seawall.api` (the layers are independent):
``seawall serve`` passes in how to authenticate a token and how to start a run.

Modules, highest first: ``pages`` (a method per page, over the service), ``render``
(templates, filters, the shared context), ``graph`` (the resource graph as SVG),
``session`` (the cookie, CSRF, who the caller is).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.datastructures import Default
from fastapi.responses import HTMLResponse, JSONResponse, Response

from seawall.service import Service
from seawall.service.rbac import Rbac
from seawall.web.graph import graph_svg
from seawall.web.pages import CONFIRMABLE, Dashboard, StartRun
from seawall.web.session import COOKIE, Caller, PrincipalOf, Sessions

__all__ = [
    "CONFIRMABLE",
    "COOKIE",
    "Caller",
    "PrincipalOf",
    "Sessions",
    "StartRun",
    "add_dashboard",
    "graph_svg",
]

# (method, path, page, signed in): in this order, after the API's routes. GET pages
# answer text/html; none of them is in the OpenAPI document.
ROUTES = (
    ("GET", "/login", "login_form", False),
    ("POST", "/login", "login", False),
    ("POST", "/logout", "logout", False),
    ("GET", "/", "overview", True),
    ("GET", "/workloads/{name}", "workload", True),
    ("GET", "/workloads/{name}/confirm/{operation}", "confirm", True),
    ("POST", "/workloads/{name}/start/{operation}", "start", False),
    ("GET", "/runs", "runs", True),
    ("GET", "/runs/{run_id}", "run_page", True),
    ("GET", "/drills", "drills", True),
    ("GET", "/usage", "usage", True),
    ("GET", "/events", "events", True),
    ("GET", "/audit", "audit", True),
)


def add_dashboard(
    app: FastAPI,
    service: Service,
    principal_of: PrincipalOf,
    start_run: StartRun,
    *,
    rbac: Rbac | None = None,
) -> None:
    """Mount the dashboard's pages on ``app``; ``rbac`` should be the API's (the same
    rules for the same actions), by default the API's on ``app.state`` if it is there.
    Its sessions go on ``app.state.sessions``, where the API's GETs find the token
    behind a session cookie."""
    rules = rbac or getattr(app.state, "rbac", None) or Rbac()
    dashboard = Dashboard(service, principal_of, start_run, rules)
    app.state.sessions = dashboard.sessions
    for method, path, name, signed_in in ROUTES:
        page = getattr(dashboard, name)
        endpoint = dashboard.signed_in(page) if signed_in else page
        # the POSTs keep FastAPI's default response class, as with ``@app.post``
        kind: type[Response] = HTMLResponse if method == "GET" else Default(JSONResponse)
        app.add_api_route(
            path, endpoint, methods=[method], response_class=kind, include_in_schema=False
        )
