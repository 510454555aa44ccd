"""What every ``/v1`` route takes from the request: the caller, paging, the service.

Routes declare these as parameters (``p: Caller, svc: Svc, limit: Limit = 100``) instead
of closing over ``create_app``'s arguments, so a route module is plain module-level code.
:func:`~seawall.api.app.create_app` puts the service, the authenticator and the
launcher on ``app.state``; the dependencies read them from there. Only the query and
header parameters (``Limit``, ``Marker``, ``Since``, ``IdempotencyKey``) appear in the OpenAPI
document; the others come from the request itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import Depends, Header, Query, Request

from seawall.api.auth import Authenticator, Principal
from seawall.api.launcher import Launcher
from seawall.errors import NotFound
from seawall.service import Service
from seawall.service.audit import CALLER
from seawall.service.rbac import Rbac

T = TypeVar("T")


class SessionTokens(Protocol):
    """The dashboard's server-side sessions (``seawall.web.session.Sessions``, put on
    ``app.state.sessions`` by ``add_dashboard``; this package does not import ``web``)."""

    def token_for(self, request: Request) -> str | None: ...


def token_of(request: Request) -> str | None:
    """``Authorization: Bearer``, ``X-Auth-Token``, or (safe methods only) the token behind
    the dashboard's session cookie — never a cookie for a change, so a forged cross-site
    POST has no power. Never the URL: ``?token=`` is refused before any route runs."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    token = request.headers.get("x-auth-token")
    if token:
        return token
    sessions: SessionTokens | None = getattr(request.app.state, "sessions", None)
    if request.method in ("GET", "HEAD") and sessions is not None:
        return sessions.token_for(request)
    return None


def principal(request: Request) -> Principal:
    """The caller, also left on the request's state for the audit middleware."""
    auth: Authenticator = request.app.state.auth
    caller = auth.principal(token_of(request))
    setattr(request.state, CALLER, caller)
    return caller


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


def rbac(request: Request) -> Rbac:
    rules: Rbac = request.app.state.rbac
    return rules


def needs(*rules: str) -> dict[str, Any]:
    """The route's ``openapi_extra``: the RBAC rules it checks (``x-rbac-rules`` in the
    OpenAPI document). The RBAC matrix test walks the document and fails on a route
    that declares none, so a new route cannot skip authorisation unseen."""
    return {"x-rbac-rules": list(rules)}


def launcher(request: Request) -> Launcher:
    launch: Launcher = request.app.state.launcher
    return launch


Caller = Annotated[Principal, Depends(principal)]
Svc = Annotated[Service, Depends(service)]
Launch = Annotated[Launcher, Depends(launcher)]
Rules = Annotated[Rbac, Depends(rbac)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Marker = Annotated[str | None, Query(max_length=255)]
IdempotencyKey = Annotated[str | None, Header(max_length=255)]
#: A point in time as the API takes it: seconds since the epoch (up to the year 5138).
Since = Annotated[float | None, Query(ge=0, le=1e11)]


def paginate(
    items: Sequence[T], key: Callable[[T], str], limit: int, marker: str | None
) -> tuple[list[T], str | None]:
    """One page of ``items`` after ``marker`` (the key of the previous page's last item).

    A marker that is not in the list is an error rather than an empty page: the item was
    removed between two pages, and silently restarting would list items twice.
    """
    start = 0
    if marker:
        keys = [key(i) for i in items]
        if marker not in keys:
            raise NotFound(f"marker {marker!r} is not in this list (was it removed?)")
        start = keys.index(marker) + 1
    page = list(items[start : start + limit])
    more = start + limit < len(items)
    return page, (key(page[-1]) if more and page else None)
