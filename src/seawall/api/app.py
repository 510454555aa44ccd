"""The ``/v1`` REST API: a thin edge over :class:`~seawall.service.Service`.

Pydantic lives here only; the service speaks the model's dataclasses. Rules every route
keeps:

- **Authorisation by project and role on every call.** Objects of another project
  answer 404, exactly as objects that do not exist (no existence oracle); then one
  :meth:`~seawall.service.rbac.Rbac.authorize` call per route checks the caller's roles
  against the route's rule (declared with ``needs(...)``, shown as ``x-rbac-rules``),
  403 naming the role needed. Sites and policies are shared catalogue objects: every
  caller reads them, only admins create them.
- **Errors are problem+json** (RFC 9457), the status taken from the ``http_status`` of
  the :class:`~seawall.errors.SeawallError` class.
- **Lists page** with ``limit`` and ``marker`` (the last id/name of the previous page);
  the answer's ``next_marker`` is null on the last page.
- **Operations never block.** Starting a run preflights it synchronously (problems come
  back at once, 409, nothing created), records the run, hands it to a worker thread and
  answers 202 with the run and a ``Location``; ``GET /v1/runs/{id}`` shows its steps.
  An ``Idempotency-Key`` header makes a retried POST return the run it started first.
- **Every change is audited**, refused ones too (:mod:`.audit`); admins read the trail
  at ``GET /v1/audit``.
- **Credentials travel in headers, never in the URL.** A URL is kept by proxies, access
  logs and browser history; a request with ``?token=`` (:data:`URL_CREDENTIALS`) is
  refused with 400 before it reaches a route or the dashboard, and
  :class:`RedactUrlCredentials` keeps the value out of the access log.

The package, highest layer first: this module builds the app; :mod:`.routes` holds the
routes, one module per resource group; :mod:`.dependencies` what the routes take from a
request; :mod:`.launcher` the worker threads; :mod:`.problems` the error answers;
:mod:`.schemas` the wire models; :mod:`.metrics` ``/metrics``; :mod:`.auth` who calls;
:mod:`.audit` the middleware that records every call that is not a read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, FastAPI, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from seawall import __version__
from seawall.api.audit import AuditMiddleware
from seawall.api.auth import Authenticator
from seawall.api.dependencies import needs, token_of
from seawall.api.launcher import Launcher
from seawall.api.metrics import metrics_route
from seawall.api.problems import ERRORS, add_problem_handlers, problem
from seawall.api.routes import (
    audit,
    catalogue,
    checkpoints,
    events,
    plans,
    reports,
    runs,
    usage,
    workloads,
)
from seawall.api.schemas import Health
from seawall.service import Service
from seawall.service.rbac import Rbac

__all__ = ["URL_CREDENTIALS", "Launcher", "RedactUrlCredentials", "create_app"]

#: query parameters (compared case-insensitively) that would carry a credential in a URL
URL_CREDENTIALS = frozenset({"token", "access_token", "auth_token", "x-auth-token"})


def _carries_credentials(query: str) -> bool:
    return any(k.lower() in URL_CREDENTIALS for k, _ in parse_qsl(query, keep_blank_values=True))


def redact_url(path: str) -> str:
    """``path`` with the value of every :data:`URL_CREDENTIALS` parameter replaced by
    ``***`` (the other parameters kept, for the operator reading the log)."""
    base, sep, query = path.partition("?")
    if not sep or not _carries_credentials(query):
        return path
    pairs = [
        (k, "***" if k.lower() in URL_CREDENTIALS else v)
        for k, v in parse_qsl(query, keep_blank_values=True)
    ]
    return f"{base}?{urlencode(pairs, safe='*')}"


class RefuseUrlCredentials:
    """ASGI middleware: a request with a credential in its query string gets 400, for
    every route of the app (the API, /metrics and the dashboard mounted on it later), so
    no client is ever taught that a URL token works."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.get("query_string", b"").decode("latin-1")
        if scope["type"] == "http" and query and _carries_credentials(query):
            answer = problem(
                400,
                "TokenInURL",
                "a token in the URL is refused (URLs end up in logs and history): send it "
                "as 'Authorization: Bearer <token>' or 'X-Auth-Token: <token>'",
            )
            await answer(scope, receive, send)
            return
        await self.app(scope, receive, send)


class RedactUrlCredentials(logging.Filter):
    """For uvicorn's access logger: the request line of a refused ``?token=`` request is
    logged with ``***`` for the value (uvicorn's record args are ``(client, method,
    path, http_version, status)``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_url(args[2]), *args[3:])
        return True


#: The resource groups in the order of the OpenAPI document's tags.
ROUTES = (catalogue, workloads, checkpoints, plans, runs, reports, usage, events, audit)

health_router = APIRouter()


@health_router.get("/health", tags=["health"], openapi_extra=needs())
def health(request: Request) -> Health:
    leader: Callable[[], bool] | None = request.app.state.leader
    return Health(status="ok", version=__version__, leader=leader() if leader else None)


def healthz() -> dict[str, Any]:
    return {"status": "ok", "at": time.time()}


def create_app(
    service: Service,
    auth: Authenticator,
    *,
    launcher: Launcher | None = None,
    leader: Callable[[], bool] | None = None,
    public_metrics: bool = False,
    rbac: Rbac | None = None,
) -> FastAPI:
    """The API (``/v1``), ``/metrics`` and ``/healthz``; the dashboard is added by serve."""
    app = FastAPI(
        title="seawall",
        version=__version__,
        description="Disaster recovery as a service for OpenStack.",
        openapi_url="/v1/openapi.json",
        docs_url="/v1/docs",
        redoc_url=None,
    )
    # what the routes' dependencies read (seawall.api.dependencies)
    app.state.service = service
    app.state.auth = auth
    app.state.launcher = launcher or Launcher(service)
    app.state.leader = leader
    app.state.rbac = rbac or Rbac()
    add_problem_handlers(app)
    app.add_middleware(RefuseUrlCredentials)

    v1 = APIRouter(prefix="/v1", responses=ERRORS)
    for module in ROUTES:
        v1.include_router(module.router)
    v1.include_router(health_router)
    app.include_router(v1)

    metrics_route(app, service, auth, token_of, public=public_metrics)
    app.add_api_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
    # outermost of the app's own middleware (added last), so it sees every refusal
    app.add_middleware(AuditMiddleware)
    return app
