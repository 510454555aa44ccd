"""Real Keystone for the lab tests of the API: tokens, and projects with users holding
given roles, made through the lab's admin account (``SEAWALL_LAB_CLOUD`` and
``SEAWALL_LAB_CLOUDS_YAML``, set by ``lab/openstack/ci.sh`` and ``seawall-lab env``).

Against another Keystone, set ``SEAWALL_LAB_KEYSTONE`` (the identity URL) and
``SEAWALL_LAB_TENANTS``: ``user:password:project[:domain],user:password:project[:domain]``
(two member users of two projects; the role tests need the lab's admin account).
"""

from __future__ import annotations

import os
import time
from typing import Any

import httpx
import pytest

from seawall_lab.tenants import ensure_user


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


def lab_admin() -> Any:
    """An openstacksdk connection as the lab's admin; skips the test without a lab."""
    cloud, clouds_yaml = (
        os.environ.get("SEAWALL_LAB_CLOUD"),
        os.environ.get("SEAWALL_LAB_CLOUDS_YAML"),
    )
    if not cloud or not clouds_yaml:
        pytest.skip("no Keystone: set SEAWALL_LAB_CLOUD(S_YAML) (seawall-lab up) or _KEYSTONE")
    import openstack
    import openstack.config

    config = openstack.config.OpenStackConfig(config_files=[clouds_yaml])
    return openstack.connection.Connection(config=config.get_one(cloud=cloud))


def lab_user(conn: Any, name: str, project_name: str, role_name: str) -> list[str]:
    """User ``name`` holding ``role_name`` in ``project_name``, made if missing
    (``seawall_lab.tenants.ensure_user``); its (name, password, project, domain)."""
    return [name, ensure_user(conn, name, project_name, role_name), project_name, "Default"]


def identity_url(conn: Any) -> str:
    return str(conn.session.get_endpoint(service_type="identity", interface="public"))


def lab_tenants() -> tuple[str, list[list[str]]]:
    """The identity URL and two (user, password, project, domain) with member roles."""
    url = os.environ.get("SEAWALL_LAB_KEYSTONE")
    tenants = os.environ.get("SEAWALL_LAB_TENANTS")
    if url and tenants:
        return url, [[*t.split(":"), "Default"][:4] for t in tenants.split(",")][:2]
    conn = lab_admin()
    try:
        creds = [
            lab_user(conn, f"seawall-tenant-{i}", f"seawall-tenant-{i}", "member") for i in (1, 2)
        ]
        return identity_url(conn), creds
    finally:
        conn.close()
