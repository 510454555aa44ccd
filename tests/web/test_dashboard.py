"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright)
against ``seawall serve`` on 127.0.0.1: overview, a workload, a drill started through the
confirmation page and watched to completion. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from seawall.api.auth import LocalTokens
from seawall.web import COOKIE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
from test_serve import serve

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]


def test_overview_workload_and_a_drill_in_a_browser(shop: Any) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    svc = shop.svc
    protect = svc.protect("shop")
    assert protect.state.value == "succeeded", shop.explain(protect)
    svc.close()
    token = LocalTokens(svc.home).issue("default", name="alice")
    ARTIFACTS.mkdir(exist_ok=True)
    with (
        serve(svc.home, shop.env, "--no-scheduler", name="web") as srv,
        playwright.sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(srv.url + "/")
            assert "/login" in page.url  # not signed in yet
            page.fill("input[name=token]", token)
            page.click("button[type=submit]")
            page.wait_for_selector("#workloads")
            (cookie,) = page.context.cookies()  # the session id only, never the token
            assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == (
                COOKIE,
                True,
                "Strict",
            )
            assert token not in cookie["value"] and len(cookie["value"]) >= 43
            row = page.locator("tr[data-workload=shop]")
            assert "within RPO" in row.inner_text()
            page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)

            row.locator("a").first.click()
            page.wait_for_selector("#graph")
            assert page.locator("#graph g").count() >= 10  # servers, volumes, network...
            assert page.locator("#checkpoints tr").count() >= 2
            assert page.locator("#drift").inner_text().strip() == "No drift."
            page.screenshot(path=str(ARTIFACTS / "dashboard-workload.png"), full_page=True)

            page.click("#start-drill")
            page.wait_for_selector("#confirm")
            assert "isolated test bubble" in page.content()
            page.screenshot(path=str(ARTIFACTS / "dashboard-confirm-drill.png"))
            page.click("#confirm")
            page.wait_for_url("**/runs/run-*")
            page.wait_for_selector("#steps tr:nth-child(2)", timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "dashboard-drill-running.png"), full_page=True)
            page.wait_for_function(
                "['succeeded','partially_failed','failed','reverted','cancelled']"
                ".includes(document.getElementById('run-state').dataset.state)",
                timeout=180_000,
            )
            page.screenshot(path=str(ARTIFACTS / "dashboard-drill-done.png"), full_page=True)
            assert page.locator("#run-state").inner_text() == "succeeded", srv.tail()
            assert page.locator("#run-progress").inner_text() == "100"
            assert "0 unexplained difference(s)" in page.locator("#fidelity-summary").inner_text()

            page.goto(srv.url + "/drills")
            assert "succeeded" in page.locator("#drills").inner_text()
            page.screenshot(path=str(ARTIFACTS / "dashboard-drills.png"), full_page=True)

            page.click("header button")  # sign out: the form carries its CSRF token
            page.wait_for_url("**/login")
            page.context.add_cookies([{**cookie, "sameSite": "Strict"}])  # a kept cookie
            page.goto(srv.url + "/")
            assert "/login" in page.url  # revoked on the server
        finally:
            browser.close()


def test_an_admin_reads_and_filters_the_audit_trail_in_a_browser(shop: Any) -> None:
    """`seawall serve --audit-file`: a refused call of another project is on the admin's
    audit page, the filter form narrows it, and the same record is a line of the file."""
    playwright = pytest.importorskip("playwright.sync_api")
    import httpx

    svc = shop.svc
    svc.close()
    tokens = LocalTokens(svc.home)
    admin, beta = tokens.issue("ops", admin=True, name="olga"), tokens.issue("beta")
    trail = shop.root / "audit.jsonl"
    args = ("--no-scheduler", "--audit-file", str(trail))
    with (
        serve(svc.home, shop.env, *args, name="audit") as srv,
        playwright.sync_playwright() as pw,
    ):
        refused = httpx.post(
            srv.url + "/v1/workloads/shop/runs",
            json={"operation": "failover"},
            headers={"Authorization": f"Bearer {beta}"},
        )
        assert refused.status_code == 404
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(srv.url + "/login")
            page.fill("input[name=token]", admin)
            page.click("button[type=submit]")
            page.wait_for_selector("#workloads")
            page.click("a[href='/audit']")
            page.wait_for_selector("#audit")
            assert page.locator("#audit tr[data-outcome=denied]").count() == 1
            assert "start_run" in page.locator("#audit tr[data-outcome=denied]").inner_text()
            assert "dashboard.login" in page.locator("#audit").inner_text()
            page.select_option("select[name=outcome]", "denied")
            page.click("#audit-filter button[type=submit]")
            page.wait_for_url("**/audit?*outcome=denied*")
            rows = page.locator("#audit tr[data-outcome]")
            assert rows.count() == 1 and "beta" in rows.inner_text()
            page.screenshot(path=str(ARTIFACTS / "dashboard-audit.png"), full_page=True)
        finally:
            browser.close()
    lines = [json.loads(line) for line in trail.read_text().splitlines()]
    assert [(e["action"], e["reason"]["outcome"]) for e in lines] == [
        ("start_run", "denied"),
        ("dashboard.login", "allowed"),
    ]
    assert lines[1]["initiator"]["name"] == "olga"
    assert admin not in trail.read_text() and beta not in trail.read_text()
