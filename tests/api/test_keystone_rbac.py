"""RBAC with real Keystone roles (the OpenStack lab; marked ``lab``).

Three users of one project, holding Keystone's ``reader`` and ``member`` roles and
seawall's ``dr-operator`` (created if the lab lacks it), call the API with their own
Keystone tokens over the sim ``shop`` world, where the project owns a server of its own:
a reader sees the workload but cannot start a run, a member protects but cannot fail
over, the operator fails over.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from seawall.api.app import Launcher, create_app
from seawall.api.auth import Authenticator, KeystoneTokens, LocalTokens
from seawall.model import Selector
from seawall.service.rbac import OPERATOR

from .keystone_lab import identity_url, keystone_token, lab_admin, lab_user

pytestmark = pytest.mark.lab

PROJECT = "seawall-rbac"
FINAL = {"succeeded", "partially_failed", "reverted", "failed", "cancelled"}


def finished(client: TestClient, headers: dict[str, str], run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 180
    while True:
        body: dict[str, Any] = client.get(f"/v1/runs/{run_id}", headers=headers).json()
        if body["state"] in FINAL:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.3)


def test_keystone_roles_decide_who_may_start_which_run(shop: Any) -> None:
    conn = lab_admin()
    try:
        creds = {
            role: lab_user(conn, f"seawall-rbac-{role}", PROJECT, role)
            for role in ("reader", "member", OPERATOR)
        }
        url = identity_url(conn)
    finally:
        conn.close()
    h = {role: {"X-Auth-Token": keystone_token(url, *c)} for role, c in creds.items()}
    svc = shop.svc
    shop.deploy_ledger(PROJECT)  # the project's own server (shop's are the default project's)
    svc.create_workload("kshop", "a", Selector.parse("members:db"), "gold", ["b"], PROJECT)
    svc.set_plan({"workload": "kshop", "target": "b"})
    launcher = Launcher(svc, 1)
    auth = Authenticator(LocalTokens(svc.home), KeystoneTokens(url))
    app = create_app(svc, auth, launcher=launcher)
    runs = "/v1/workloads/kshop/runs"
    try:
        with TestClient(app) as client:
            # the reader sees its project's workload and cannot start anything
            assert client.get("/v1/workloads/kshop", headers=h["reader"]).status_code == 200
            for op in ("protect", "drill", "failover"):
                r = client.post(runs, json={"operation": op}, headers=h["reader"])
                assert r.status_code == 403, r.text
                assert "needs the" in r.json()["detail"]
            # the member protects, and may not fail over
            r = client.post(runs, json={"operation": "protect"}, headers=h["member"])
            assert r.status_code == 202, r.text
            assert finished(client, h["member"], r.json()["id"])["state"] == "succeeded"
            r = client.post(runs, json={"operation": "failover"}, headers=h["member"])
            assert r.status_code == 403, r.text
            assert "needs the dr-operator role" in r.json()["detail"]
            # the DR operator fails over
            r = client.post(runs, json={"operation": "failover"}, headers=h[OPERATOR])
            assert r.status_code == 202, r.text
            done = finished(client, h[OPERATOR], r.json()["id"])
            assert done["state"] == "succeeded", done
            assert done["project"] == PROJECT
    finally:
        launcher.pool.shutdown(wait=True)
