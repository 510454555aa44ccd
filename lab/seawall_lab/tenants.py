"""Tenant projects of the lab: a project with one user of its own per tenant, made through
the lab's admin account, and a clouds.yaml entry that acts as that user in that project
(what an operator gives a site for a tenant: ``project.<name>.cloud``).

The lab tests that need a second project (tenant isolation at the cloud, Keystone tokens)
share these, so each tenant is made once per lab and found afterwards.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

#: Keystone's default roles (``reader`` < ``member`` < ``admin``)
MEMBER = "member"


def ensure_user(conn: Any, name: str, project_name: str, role_name: str = MEMBER) -> str:
    """Project ``project_name`` and user ``name`` holding ``role_name`` in it (the role
    too, if Keystone lacks it: it has reader, member and admin by default), made if
    missing, through an admin ``conn``; returns the user's password (``<name>-secret``).

    The password is reset only when it does not work: Keystone revokes a user's tokens
    when it changes, and treats a token issued in the same second as that revocation as
    revoked too (fernet timestamps are whole seconds), so after any change here the
    function waits for the next second."""
    identity = conn.identity
    password = f"{name}-secret"
    changed = False
    role = identity.find_role(role_name)
    if role is None:
        role = identity.create_role(name=role_name)
    project = identity.find_project(project_name, domain_id="default")
    if project is None:
        project = identity.create_project(name=project_name, domain_id="default")
        changed = True
    user = identity.find_user(name, domain_id="default")
    if user is None:
        user = identity.create_user(
            name=name, password=password, domain_id="default", default_project_id=project.id
        )
        changed = True
    elif not _password_works(conn, name, password, project_name):
        identity.update_user(user, password=password)
        changed = True
    if not identity.validate_user_has_project_role(project, user, role):
        identity.assign_project_role_to_user(project, user, role)
        changed = True
    if changed:
        time.sleep(1.1)
    return password


def ensure_tenant(conn: Any, i: int, role: str = MEMBER) -> tuple[str, str]:
    """Tenant ``i``: project and user ``seawall-tenant-<i>`` (see :func:`ensure_user`);
    returns (name, password)."""
    name = f"seawall-tenant-{i}"
    return name, ensure_user(conn, name, name, role)


def _password_works(conn: Any, user: str, password: str, project: str) -> bool:
    import httpx

    url = str(conn.session.get_endpoint(service_type="identity", interface="public"))
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": user, "domain": {"name": "Default"}, "password": password}
                },
            },
            "scope": {"project": {"name": project, "domain": {"name": "Default"}}},
        }
    }
    base = url.rstrip("/").removesuffix("/v3")
    return httpx.post(f"{base}/v3/auth/tokens", json=body, timeout=30).status_code == 201


def tenant_cloud(admin_cloud: str, clouds_yaml: str, i: int) -> tuple[str, str, str]:
    """(project, clouds.yaml entry, clouds.yaml path) acting as tenant ``i``'s user in its
    project, at the lab site whose admin entry is ``admin_cloud`` in ``clouds_yaml``."""
    import openstack
    import openstack.config

    config = openstack.config.OpenStackConfig(config_files=[clouds_yaml])
    conn = openstack.connection.Connection(config=config.get_one(cloud=admin_cloud))
    try:
        name, password = ensure_tenant(conn, i)
    finally:
        conn.close()
    admin = json.loads(Path(clouds_yaml).read_text())["clouds"][admin_cloud]
    entry = f"{admin_cloud}-{name}"
    cloud = {
        "auth": {
            "auth_url": admin["auth"]["auth_url"],
            "username": name,
            "password": password,
            "user_domain_name": "Default",
            "project_name": name,
            "project_domain_name": "Default",
        },
        "region_name": admin.get("region_name", "RegionOne"),
        "identity_api_version": 3,
        "interface": admin.get("interface", "public"),
    }
    out = Path(tempfile.gettempdir()) / f"seawall-lab-{entry}.clouds.yaml"
    out.write_text(json.dumps({"clouds": {entry: cloud}}, indent=2))
    out.chmod(0o600)
    return name, entry, str(out)
