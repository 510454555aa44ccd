"""Tenant isolation with real Keystone tokens (the OpenStack lab; marked ``lab``).

Against the lab (``SEAWALL_LAB_CLOUD`` and ``SEAWALL_LAB_CLOUDS_YAML`` set by
``lab/openstack/ci.sh``) the test makes two projects with one member user each through
the lab's admin account. Against another Keystone, set ``SEAWALL_LAB_KEYSTONE`` (the
identity URL) and ``SEAWALL_LAB_TENANTS``:
``user:password:project[:domain],user:password:project[:domain]``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from seawall.api.app import create_app
from seawall.api.auth import Authenticator, KeystoneTokens, LocalTokens
from seawall.model import Selector
from seawall.service import Service
from seawall_lab.tenants import ensure_tenant

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
    # Fernet tokens carry their issue time in whole seconds, and Keystone treats a token
    # issued in the same second as a revocation event (a password change, a new role
    # assignment just made by lab_tenants) as revoked. So a token is only handed out once
    # Keystone itself accepts it; a token issued too early is replaced a second later.
    deadline = time.monotonic() + 15
    while True:
        r = httpx.post(f"{base}/v3/auth/tokens", json=body, timeout=30)
        r.raise_for_status()
        token = r.headers["X-Subject-Token"]
        check = httpx.get(
            f"{base}/v3/auth/tokens",
            headers={"X-Auth-Token": token, "X-Subject-Token": token},
            timeout=30,
        )
        if check.status_code == 200:
            return token
        if time.monotonic() > deadline:
            raise AssertionError(f"Keystone does not accept its own token: {check.text}")
        time.sleep(1.1)


def lab_tenants() -> tuple[str, list[list[str]]]:
    """The identity URL and two (user, password, project, domain) with member roles."""
    url = os.environ.get("SEAWALL_LAB_KEYSTONE")
    tenants = os.environ.get("SEAWALL_LAB_TENANTS")
    if url and tenants:
        return url, [[*t.split(":"), "Default"][:4] for t in tenants.split(",")][:2]
    cloud, clouds_yaml = (
        os.environ.get("SEAWALL_LAB_CLOUD"),
        os.environ.get("SEAWALL_LAB_CLOUDS_YAML"),
    )
    if not cloud or not clouds_yaml:
        pytest.skip("no Keystone: set SEAWALL_LAB_CLOUD(S_YAML) (seawall-lab up) or _KEYSTONE")
    import openstack
    import openstack.config

    config = openstack.config.OpenStackConfig(config_files=[clouds_yaml])
    conn = openstack.connection.Connection(config=config.get_one(cloud=cloud))
    try:
        creds = []
        for i in (1, 2):
            name, password = ensure_tenant(conn, i)
            creds.append([name, password, name, "Default"])
        url = conn.session.get_endpoint(service_type="identity", interface="public")
    finally:
        conn.close()
    return str(url), creds


def test_keystone_projects_are_isolated(seawall_env: Any, tmp_path: Path) -> None:
    url, creds = lab_tenants()
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
                r = client.get("/v1/workloads", headers=h)
                assert r.status_code == 200, r.text
                listed = r.json()["items"]
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
