"""The audit middleware: every call of ``seawall serve`` that is not a read is recorded.

It wraps the whole application (the ``/v1`` API and the dashboard's form posts), so a
call refused before any route runs (401, 404 of an unknown path, a body too large, a
rate limit) is recorded as surely as one that succeeds. What it records is
:class:`seawall.service.audit.AuditRecord`: who (the principal the ``Caller`` dependency
or the dashboard authenticated, left on the request's state under
:data:`~seawall.service.audit.CALLER`; failing that, the token of the request looked up
again; failing that, nobody), what (the route's name, method and template, its path
parameters, the ``Location`` of what it created, the status), when, and from where (the
client's address, user agent and request id).

It never reads a body and never looks at a header but the token (only to know who),
the user agent and ``X-Request-Id``, which it answers with (a new one when the client
sent none), so a client can quote it and an operator find the record.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seawall.api.auth import Authenticator
from seawall.api.dependencies import token_of
from seawall.errors import SeawallError
from seawall.service import Service
from seawall.service.audit import CALLER, AuditRecord, Initiator, initiator_of, outcome_of

log = logging.getLogger("seawall.audit")

#: methods that change nothing and are not audited
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
REQUEST_ID = "x-request-id"


class AuditMiddleware:
    """Pure ASGI (no body buffering), so it sees the status of every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE:
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})  # shared with the routes' Request objects
        request_id = _request_id(Request(scope).headers.get(REQUEST_ID))
        answer: dict[str, Any] = {"status": 500, "location": "", "started": False}

        async def send_noting(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"], answer["started"] = int(message["status"]), True
                headers = list(message.get("headers", []))
                for name, value in headers:
                    if name.lower() == b"location":
                        answer["location"] = value.decode("latin-1")
                headers.append((REQUEST_ID.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_noting)
        except Exception as exc:  # answered further out: by its status, else as a 500
            if not answer["started"]:
                answer["status"] = int(getattr(exc, "status_code", 500))
            raise
        finally:
            record = describe(scope, answer["status"], answer["location"], request_id)
            await anyio.to_thread.run_sync(_store, scope, record)


def _request_id(sent: str | None) -> str:
    """The client's request id when it is a short token, else a new one."""
    if sent and len(sent) <= 128 and sent.replace("-", "").replace("_", "").isalnum():
        return sent
    return "req-" + uuid.uuid4().hex


def template_of(path: str, route_path: str) -> str:
    """The full route template of ``path``: a route included under a prefix knows only
    its own part (``/workloads/{name}/runs``), and the prefixes (``/v1``) are literal, so
    they are the leading segments of the path that the route's part does not cover."""
    if not route_path:
        return path
    segments = path.split("/")
    return "/".join(segments[: max(1, len(segments) - route_path.count("/"))]) + route_path


def describe(scope: Scope, status: int, location: str, request_id: str) -> AuditRecord:
    """The record of one finished call (who is filled in by :func:`_store`)."""
    route = scope.get("route")
    path = str(scope.get("path", ""))
    template = template_of(path, str(getattr(route, "path", "")))
    name = str(getattr(route, "name", "") or "unknown")
    action = name if path.startswith("/v1/") or route is None else f"dashboard.{name}"
    target = {str(k): str(v) for k, v in dict(scope.get("path_params") or {}).items()}
    if location:
        target["location"] = location
    request = Request(scope)
    client = scope.get("client")
    return AuditRecord(
        action=action,
        outcome=outcome_of(status),
        initiator=Initiator(),
        method=str(scope["method"]),
        route=template,
        target=target,
        status=status,
        client=str(client[0]) if client else "",
        user_agent=request.headers.get("user-agent", ""),
        request_id=request_id,
    )


def _who(scope: Scope) -> Initiator:
    caller = scope.get("state", {}).get(CALLER)
    if caller is None:
        auth: Authenticator = scope["app"].state.auth
        try:
            caller = auth.principal(token_of(Request(scope)))
        except SeawallError:  # no token, a bad one, or Keystone away: nobody known
            return Initiator()
    return initiator_of(caller)


def _store(scope: Scope, record: AuditRecord) -> None:
    """Fill in who and store the record; a failure to store is logged, not raised (the
    answer has been sent), as an error an operator's alerting sees."""
    try:
        svc: Service = scope["app"].state.service
        svc.audit.record(replace(record, initiator=_who(scope)))
    except Exception:
        log.exception("could not record the audit record of %s %s", record.method, record.route)
