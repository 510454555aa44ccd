"""Tenant isolation with real Keystone tokens (the OpenStack lab; marked ``lab``).

Needs ``SEAWALL_LAB_KEYSTONE`` (the identity URL) and ``SEAWALL_LAB_TENANTS``:
``user:password:project[:domain],user:password:project[:domain]`` for two projects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from seawall.api.app import create_app
from seawall.api.auth import Authenticator, KeystoneTokens, LocalTokens
from seawall.model import Selector
from seawall.service import Service

pytestmark = pytest.mark.lab


def keystone_token(url: str, user: str, password: str, project: str, domain: str) -> str:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": user, "domain": {"name": domain}, "password": password}
                },
            },
            "scope": {"project": {"name": project, "domain": {"name": domain}}},
        }
    }
    base = url.rstrip("/").removesuffix("/v3")
    r = httpx.post(f"{base}/v3/auth/tokens", json=body, timeout=30)
    r.raise_for_status()
    return r.headers["X-Subject-Token"]


def test_keystone_projects_are_isolated(seawall_env: Any, tmp_path: Path) -> None:
    url = os.environ.get("SEAWALL_LAB_KEYSTONE")
    tenants = os.environ.get("SEAWALL_LAB_TENANTS")
    if not url or not tenants:
        pytest.skip("SEAWALL_LAB_KEYSTONE and SEAWALL_LAB_TENANTS are not set (seawall lab up)")
    creds = [[*t.split(":"), "Default"][:4] for t in tenants.split(",")][:2]
    tokens = [keystone_token(url, *c) for c in creds]
    projects = [c[2] for c in creds]
    svc = Service(tmp_path / "home")
    try:
        svc.add_site("a", "sim", {"path": str(tmp_path / "sites/a")})
        for i, project in enumerate(projects):
            svc.create_workload(f"w{i}", "a", Selector.parse("members:x"), "bronze", (), project)
        app = create_app(svc, Authenticator(LocalTokens(svc.home), KeystoneTokens(url)))
        with TestClient(app) as client:
            for i, token in enumerate(tokens):
                h = {"X-Auth-Token": token}
                mine, theirs = f"w{i}", f"w{1 - i}"
                listed = client.get("/v1/workloads", headers=h).json()["items"]
                assert [w["name"] for w in listed] == [mine]
                assert client.get(f"/v1/workloads/{mine}", headers=h).status_code == 200
                assert client.get(f"/v1/workloads/{theirs}", headers=h).status_code == 404
                r = client.post(
                    f"/v1/workloads/{theirs}/runs", json={"operation": "drill"}, headers=h
                )
                assert r.status_code == 404
            bad = client.get("/v1/workloads", headers={"X-Auth-Token": "not-a-token"})
            assert bad.status_code == 401
    finally:
        svc.close()
        from seawall.clouds.sim import destroy_site

        destroy_site(tmp_path / "sites/a")
