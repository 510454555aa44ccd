"""The dashboard's session, through real HTTP (FastAPI's TestClient) on a real state
database: the cookie holds a random server-side session id, never the API token; every
form's CSRF token is bound to its session and checked, the sign-in form's too; signing
out revokes the id on the server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from seawall.api.app import Launcher, create_app
from seawall.api.auth import Authenticator, LocalTokens
from seawall.service import Service
from seawall.web import COOKIE, add_dashboard
from seawall.web.session import MAX_AGE, SIGN_IN_AGE, Sessions


@pytest.fixture
def world(seawall_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[Service, str]]:
    svc = Service(tmp_path / "home")
    token = LocalTokens(svc.home).issue("default", name="alice")
    yield svc, token
    svc.close()


def client(svc: Service, base_url: str = "http://testserver") -> TestClient:
    auth = Authenticator(LocalTokens(svc.home))
    app = create_app(svc, auth, launcher=Launcher(svc, 1))
    add_dashboard(app, svc, auth.principal, lambda *a, **k: None)  # type: ignore[arg-type,return-value]
    return TestClient(app, base_url=base_url, follow_redirects=False)


def form_csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]*)"', html)
    assert found, html
    return found.group(1)


def sign_in(c: TestClient, token: str) -> str:
    """Sign in as a browser does (the form, then its POST); the session cookie's value."""
    csrf = form_csrf(c.get("/login").text)
    answer = c.post(
        "/login", data={"token": token, "next": "/", "csrf": csrf}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    return c.cookies[COOKIE]


def test_the_cookie_is_a_server_side_session_id_not_the_token(
    world: tuple[Service, str],
) -> None:
    svc, token = world
    with client(svc) as c:
        csrf = form_csrf(c.get("/login").text)
        answer = c.post("/login", data={"token": token, "next": "/", "csrf": csrf})
        assert answer.status_code == 303
        set_cookie = answer.headers["set-cookie"]
        assert token not in set_cookie and "HttpOnly" in set_cookie
        assert "SameSite=strict" in set_cookie and "Secure" not in set_cookie
        assert token not in "".join(c.cookies.values())
        assert len(c.cookies[COOKIE]) >= 43  # 256 random bits
        assert c.get("/").status_code == 200  # signed in
        # the API's GETs take the session (the run page polls /v1/runs/{id} with it)
        assert c.get("/v1/workloads").status_code == 200
        # a forged cookie (the raw token, as the dashboard used to set) opens nothing
        c.cookies.set(COOKIE, token)
        assert c.get("/").status_code == 303
        assert c.get("/v1/workloads").status_code == 401


def test_over_https_the_cookie_is_secure(world: tuple[Service, str]) -> None:
    svc, token = world
    with client(svc, "https://testserver") as c:
        csrf = form_csrf(c.get("/login").text)
        answer = c.post("/login", data={"token": token, "next": "/", "csrf": csrf})
        assert "Secure" in answer.headers["set-cookie"]


def test_sign_in_without_the_forms_csrf_token_is_refused(world: tuple[Service, str]) -> None:
    """Login CSRF: another site posting its own token to sign the victim in as itself."""
    svc, token = world
    with client(svc) as c:
        blind = c.post("/login", data={"token": token, "next": "/"})
        assert blind.status_code == 400 and "sign in again" in blind.text
        assert c.get("/").status_code == 303  # not signed in
        c.get("/login")
        forged = c.post("/login", data={"token": token, "next": "/", "csrf": "guessed"})
        assert forged.status_code == 400
        assert c.get("/").status_code == 303


def test_sign_in_replaces_the_anonymous_session(world: tuple[Service, str]) -> None:
    """No session fixation: the id a sign-in form was served under is never signed in."""
    svc, token = world
    with client(svc) as c:
        csrf = form_csrf(c.get("/login").text)
        planted = c.cookies[COOKIE]
        c.post("/login", data={"token": token, "next": "/", "csrf": csrf})
        assert c.cookies[COOKIE] != planted
        c.cookies.set(COOKIE, planted)
        assert c.get("/").status_code == 303


def test_sign_out_revokes_the_session_on_the_server(world: tuple[Service, str]) -> None:
    svc, token = world
    with client(svc) as c:
        sid = sign_in(c, token)
        page = c.get("/")
        refused = c.post("/logout", data={"csrf": "wrong"})
        assert refused.status_code == 200 and "stale form" in refused.text
        assert c.get("/").status_code == 200  # a forged sign-out does nothing
        out = c.post("/logout", data={"csrf": form_csrf(page.text)})
        assert out.status_code == 303
        c.cookies.set(COOKIE, sid)  # a kept (or stolen) cookie
        assert c.get("/").status_code == 303
        assert c.get("/v1/workloads").status_code == 401


def test_a_session_expires_and_the_sign_in_forms_sooner() -> None:
    now = [1000.0]
    sessions = Sessions(clock=lambda: now[0])
    (signed_in, _), (anonymous, _) = sessions.open("tok"), sessions.open(None)
    now[0] += SIGN_IN_AGE
    assert sessions.get(anonymous) is None
    assert sessions.get(signed_in) is not None
    now[0] += MAX_AGE - SIGN_IN_AGE
    assert sessions.get(signed_in) is None


def test_a_flood_of_sign_in_forms_signs_nobody_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("seawall.web.session.MAX_SESSIONS", 3)
    sessions = Sessions()
    signed_in, _ = sessions.open("tok")
    forms = [sessions.open(None)[0] for _ in range(10)]
    assert sessions.get(signed_in) is not None
    assert [sessions.get(f) is not None for f in forms] == [False] * 7 + [True] * 3
