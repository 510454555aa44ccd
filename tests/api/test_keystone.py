"""Tenant isolation with real Keystone tokens (the OpenStack lab; marked ``lab``).

Against the lab (``SEAWALL_LAB_CLOUD`` and ``SEAWALL_LAB_CLOUDS_YAML`` set by
``lab/openstack/ci.sh``) the test makes two projects with one member user each through
the lab's admin account. Against another Keystone, set ``SEAWALL_LAB_KEYSTONE`` (the
identity URL) and ``SEAWALL_LAB_TENANTS``:
``user:password:project[:domain],user:password:project[:domain]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from seawall.api.app import create_app
from seawall.api.auth import Authenticator, KeystoneTokens, LocalTokens
from seawall.model import Selector
from seawall.service import Service

from .keystone_lab import keystone_token, lab_tenants

pytestmark = pytest.mark.lab


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
