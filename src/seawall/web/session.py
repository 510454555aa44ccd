"""Who the browser is: the session cookie, its CSRF token and the signed-in caller.

The browser posts an API token (local or Keystone) once; it is kept in an HttpOnly,
SameSite=Strict cookie and authenticated again on every request, so revoking the token
ends the session. A form that changes something carries a CSRF token derived from the
session token: another site can make the browser send the cookie, but cannot read the
page that holds the derived token.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Protocol
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from seawall.errors import SeawallError
from seawall.service import access, audit

COOKIE = "seawall_token"
MAX_AGE = 86400  # a day; the token itself may live longer


class Caller(access.Caller, Protocol):
    """The authenticated caller (``seawall.api.auth.Principal``; this package does not
    import :mod:`seawall.api`). ``sees`` is ``seawall.service.access.sees``: every
    visibility decision of the dashboard goes through it."""

    @property
    def user(self) -> str: ...

    @property
    def roles(self) -> frozenset[str]: ...

    def sees(self, project: str) -> bool: ...


PrincipalOf = Callable[[str | None], Caller]


def csrf_token(session: str) -> str:
    return hashlib.sha256(b"seawall-csrf:" + session.encode()).hexdigest()[:32]


def session_csrf(request: Request) -> str:
    """The CSRF token forms of this session carry; empty when not signed in."""
    session = request.cookies.get(COOKIE, "")
    return csrf_token(session) if session else ""


def csrf_matches(request: Request, csrf: str) -> bool:
    session = request.cookies.get(COOKIE, "")
    return bool(session) and hmac.compare_digest(csrf, csrf_token(session))


def who(principal_of: PrincipalOf, request: Request) -> Caller | None:
    """The signed-in caller (:func:`for_audit`), or None for no, an expired or a revoked
    token."""
    try:
        caller = principal_of(request.cookies.get(COOKIE))
    except SeawallError:
        return None
    return for_audit(request, caller)


def for_audit(request: Request, caller: Caller) -> Caller:
    """Leave ``caller`` on the request's state for the audit middleware of ``seawall
    serve``, which cannot tell who posted a form (it reads no bodies or cookies)."""
    setattr(request.state, audit.CALLER, caller)
    return caller


def login_redirect(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)


def local_target(next: str) -> str:
    """Where to go after signing in: a path on this site only (no open redirect)."""
    return next if next.startswith("/") and not next.startswith("//") else "/"


def start_session(resp: Response, token: str) -> None:
    resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", max_age=MAX_AGE)


def end_session(resp: Response) -> None:
    resp.delete_cookie(COOKIE)
