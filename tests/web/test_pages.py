"""Dashboard pages rendered in-process (FastAPI's TestClient, no browser): which actions a
role is offered and allowed, what the
workload page says about drift, what a run page says about fidelity."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_session import form_csrf, sign_in

from seawall.api.app import Launcher, create_app
from seawall.api.auth import Authenticator, LocalTokens
from seawall.model import Run, RunKind, RunState
from seawall.orchestrate.engine import install_runtime
from seawall.web import add_dashboard

pytestmark = pytest.mark.slow


@pytest.fixture
def dashboard(shop: Any) -> Iterator[TestClient]:
    """The dashboard over the shop world, signed in as the shop's project."""
    svc = shop.svc
    tokens = LocalTokens(svc.home)
    token = tokens.issue("default")
    auth = Authenticator(tokens)
    launcher = Launcher(svc, 1)
    app = create_app(svc, auth, launcher=launcher)
    add_dashboard(app, svc, auth.principal, launcher.start)
    with TestClient(app) as client:
        sign_in(client, token)
        yield client
    launcher.pool.shutdown(wait=True)


def edit(site_db: str, kind: str, name: str, key: str, value: Any) -> None:
    """Change one attribute of a resource on a sim site, through its own store (as
    another actor on the cloud could)."""
    con = sqlite3.connect(site_db)
    (attrs,) = con.execute(
        "SELECT attrs FROM resources WHERE kind = ? AND name = ?", (kind, name)
    ).fetchone()
    con.execute(
        "UPDATE resources SET attrs = ? WHERE kind = ? AND name = ?",
        (json.dumps({**json.loads(attrs), key: value}), kind, name),
    )
    con.commit()
    con.close()


def test_the_workload_page_shows_the_drift_since_the_last_checkpoint(
    shop: Any, dashboard: TestClient
) -> None:
    install_runtime(shop.svc)
    cp = shop.svc.protect("shop")
    assert cp.state is RunState.SUCCEEDED, shop.explain(cp)
    page = dashboard.get("/workloads/shop")
    assert page.status_code == 200 and "Drift since the last checkpoint" in page.text
    assert "No drift." in page.text

    edit(str(shop.site_path("a") / "site.db"), "server", "web", "metadata", {"role": "front"})
    page = dashboard.get("/workloads/shop").text
    drift = page.split('id="drift"', 1)[1].split("</table>", 1)[0]
    assert "server web" in drift and "metadata.role" in drift and "front" in drift
    assert "No drift." not in drift
    assert cp.result["checkpoint"]["id"] in page  # since which checkpoint

    shop.destroy("a")  # the page still shows what the database knows, and says why not more
    page = dashboard.get("/workloads/shop")
    assert page.status_code == 200 and "Cannot compare with site a now" in page.text


def test_a_run_page_lists_each_unexplained_difference(shop: Any, dashboard: TestClient) -> None:
    difference = {
        "resource": "port web-port",
        "attribute": "fixed_ips",
        "expected": ["10.30.0.12"],
        "actual": ["10.30.0.99"],
    }
    result = {
        "verified": False,
        "volumes_verified": 2,
        "fidelity": {"checked": 12, "ok": False, "differences": [difference]},
    }
    run = Run("run-fidelity", RunKind.FAILOVER, "shop", RunState.SUCCEEDED, result=result)
    shop.svc.db.add_run(run)
    page = dashboard.get("/runs/run-fidelity")
    assert page.status_code == 200, page.text
    assert "12 resource(s) compared with what the recovery asked for: 1 unexplained" in page.text
    table = page.text.split('id="fidelity"', 1)[1].split("</table>", 1)[0]
    assert "port web-port" in table and "fixed_ips" in table and "10.30.0.99" in table


def test_the_audit_page_is_for_admins_and_shows_who_did_what(shop: Any) -> None:
    svc = shop.svc
    tokens = LocalTokens(svc.home)
    admin, member = tokens.issue("ops", admin=True, name="olga"), tokens.issue("beta")
    auth = Authenticator(tokens)
    launcher = Launcher(svc, 1)
    app = create_app(svc, auth, launcher=launcher)
    add_dashboard(app, svc, auth.principal, launcher.start)
    with TestClient(app) as client:
        client.post(
            "/v1/workloads/shop/runs",
            json={"operation": "failover"},
            headers={"Authorization": f"Bearer {member}"},
        )  # another project's: 404
        sign_in(client, member)
        page = client.get("/audit")
        assert page.status_code == 403 and "admin" in page.text
        assert 'href="/audit"' not in client.get("/").text

        sign_in(client, admin)
        page = client.get("/audit")
        assert page.status_code == 200 and 'href="/audit"' in page.text
        table = page.text.split('id="audit"', 1)[1]
        assert "start_run" in table and "denied 404" in table
        assert "dashboard.login" in table and "olga" in table  # who signed in
        denied = client.get("/audit", params={"outcome": "denied"}).text.split('id="audit"')[1]
        assert "start_run" in denied and "dashboard.login" not in denied
        assert member not in page.text and admin not in page.text
    launcher.pool.shutdown(wait=True)


BUTTONS = {
    "drill": 'id="start-drill"',
    "protect": 'id="start-protect"',
    "failover": 'id="start-failover"',
}


def test_the_dashboard_applies_the_apis_rbac_rules(shop: Any) -> None:
    """A reader sees the workload but no button; a member may protect and drill but not
    fail over; the DR operator may fail over. A denied confirmation page or a forged
    start answers 403 and starts nothing."""
    svc = shop.svc
    tokens = LocalTokens(svc.home)
    auth = Authenticator(tokens)
    launcher = Launcher(svc, 1)
    app = create_app(svc, auth, launcher=launcher)
    add_dashboard(app, svc, auth.principal, launcher.start)
    may = {
        "reader": set(),
        "member": {"drill", "protect"},
        "dr-operator": {"drill", "protect", "failover"},
    }
    with TestClient(app) as client:
        for role, allowed in may.items():
            token = tokens.issue("default", roles=[role])
            client.cookies.clear()
            sign_in(client, token)
            page = client.get("/workloads/shop")
            assert page.status_code == 200, page.text
            assert f"project default · {role}\n" in page.text  # who, with which roles
            shown = {op for op, button in BUTTONS.items() if button in page.text}
            assert shown == allowed, role
            for op in BUTTONS:
                confirm = client.get(f"/workloads/shop/confirm/{op}")
                assert confirm.status_code == (200 if op in allowed else 403), (role, op)
                if op not in allowed:
                    assert f"seawall:run:create:{op} needs the" in confirm.text
                    forged = client.post(
                        f"/workloads/shop/start/{op}", data={"csrf": form_csrf(page.text)}
                    )
                    assert forged.status_code == 403, (role, op, forged.text)
    launcher.pool.shutdown(wait=True)
    assert svc.list_runs() == []  # nothing denied was started
