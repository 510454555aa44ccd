"""Who the browser is: the server-side session, its CSRF token and the signed-in caller.

The browser posts an API token (local or Keystone) once. The token never goes back to the
browser: sign-in opens a server-side session under a random id (``secrets``, 256 bits),
and only that id is in the cookie (HttpOnly, SameSite=Strict, Secure over https). The
session holds the token, which is authenticated again on every request, so revoking the
token ends the session; signing out revokes the session id itself; a session expires
after :data:`MAX_AGE` whatever happens.

Sessions live in the memory of the ``seawall serve`` process, on purpose: the token is
the principal lookup material and is never written to disk (the state database is
shared and backed up), a restart simply asks for a new sign-in, and nothing needs a
schema. Two servers behind one load balancer need sticky sessions.

Every form carries a CSRF token bound to its session and checked on POST, the sign-in
form too: ``GET /login`` opens a short-lived anonymous session for it (so another site
cannot sign a victim's browser into the attacker's account), and a successful sign-in
replaces it with a new id (no session fixation).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from seawall.errors import SeawallError
from seawall.service import access, audit

COOKIE = "seawall_session"
MAX_AGE = 86400  # a day; the token itself may live longer
SIGN_IN_AGE = 900  # the sign-in form's anonymous session: a quarter of an hour
#: sessions kept of each kind (signed in, anonymous), the oldest dropped beyond it: a flood
#: of GET /login neither exhausts memory nor signs anyone out
MAX_SESSIONS = 10_000


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


@dataclass(frozen=True)
class Session:
    csrf: str  #: what every form of this session carries
    expires: float  #: monotonic clock
    token: str | None  #: the API token; None for the sign-in form's anonymous session


class Sessions:
    """The server-side sessions of one ``seawall serve`` process (thread-safe: pages run
    on FastAPI's worker threads)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        #: by kind (signed in or not), oldest first
        self._kinds: dict[bool, OrderedDict[str, Session]] = {
            True: OrderedDict(),
            False: OrderedDict(),
        }

    def open(self, token: str | None) -> tuple[str, Session]:
        """A new session and its id: signed in with ``token``, or anonymous (the sign-in
        form's)."""
        sid = secrets.token_urlsafe(32)
        age = MAX_AGE if token is not None else SIGN_IN_AGE
        session = Session(secrets.token_urlsafe(24), self._clock() + age, token)
        kind = self._kinds[token is not None]
        with self._lock:
            kind[sid] = session
            while len(kind) > MAX_SESSIONS:
                kind.popitem(last=False)
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        """The live session ``sid`` names; an expired one is forgotten here."""
        if not sid:
            return None
        with self._lock:
            for kind in self._kinds.values():
                session = kind.get(sid)
                if session is None:
                    continue
                if session.expires <= self._clock():
                    del kind[sid]
                    return None
                return session
            return None

    def close(self, sid: str | None) -> None:
        """Revoke ``sid`` (sign-out): the cookie, if kept or stolen, opens nothing."""
        with self._lock:
            for kind in self._kinds.values():
                kind.pop(sid or "", None)

    def of(self, request: Request) -> Session | None:
        return self.get(request.cookies.get(COOKIE))

    def token_for(self, request: Request) -> str | None:
        """The API token behind the request's session cookie (the API's GETs, e.g. the run
        page polling ``/v1/runs/{id}``); None without a signed-in session."""
        session = self.of(request)
        return session.token if session is not None else None

    def csrf(self, request: Request) -> str:
        """The CSRF token forms of this session carry; empty without a session."""
        session = self.of(request)
        return session.csrf if session is not None else ""

    def csrf_matches(self, request: Request, csrf: str) -> bool:
        session = self.of(request)
        return session is not None and hmac.compare_digest(csrf.encode(), session.csrf.encode())

    def who(self, principal_of: PrincipalOf, request: Request) -> Caller | None:
        """The signed-in caller, or None for no, an expired or a revoked session or token."""
        token = self.token_for(request)
        if token is None:
            return None
        try:
            return for_audit(request, principal_of(token))
        except SeawallError:
            return None

    def set_cookie(self, request: Request, resp: Response, sid: str, max_age: int) -> None:
        resp.set_cookie(
            COOKIE,
            sid,
            max_age=max_age,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )


def login_redirect(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)


def local_target(next: str) -> str:
    """Where to go after signing in: a path on this site only (no open redirect)."""
    return next if next.startswith("/") and not next.startswith("//") else "/"


def end_session(resp: Response) -> None:
    resp.delete_cookie(COOKIE)


def for_audit(request: Request, caller: Caller) -> Caller:
    """Leave ``caller`` on the request's state for the audit middleware of ``seawall
    serve``, which cannot tell who posted a form (it reads no bodies or cookies)."""
    setattr(request.state, audit.CALLER, caller)
    return caller
