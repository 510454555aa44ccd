"""A tenant's workload on real OpenStack acts with the tenant's own credentials, inside
its own project only (issue 12, the cloud boundary).

A tenant project with a member user of its own exists on both lab sites
(``seawall_lab.tenants``); the sites are given its credentials as an operator would
(``project.<tenant>.cloud``). The tenant builds its application with openstacksdk as
itself: a network and subnet, a private image, a volume attached to a server booted from
the image (the flavor is the operator's, public, on both sites). The operator's own
project holds a server of the same name on site A.

The tenant's workload selects by that name: only its own server is captured; it fails
over to site B, where the server comes back in the tenant's project; the operator's
server on A is still running. A second project the sites hold no credentials for cannot
even create a workload there (403).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from seawall.errors import Forbidden
from seawall.model import RunState, Selector
from seawall.service import Service
from seawall_lab.layout import LabSite
from seawall_lab.tenants import tenant_cloud

from .conftest import ROOT, site_params
from .test_openstack_nova_ports import active, cleanup, connect, wait_until

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(1800)]

CIDR = "10.74.0.0/24"


def tenant_connection(path: str, entry: str) -> Any:
    import openstack.config
    import openstack.connection

    config = openstack.config.OpenStackConfig(config_files=[path])
    return openstack.connection.Connection(config=config.get_one(cloud=entry))


@pytest.fixture
def tenant_world(lab_service: Service, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Sites ``ta``/``tb``: the lab's two sites with the tenant's credentials added."""
    svc, marker = lab_service, f"tn{uuid.uuid4().hex[:6]}"
    world: dict[str, Any] = {"svc": svc, "marker": marker, "admin": {}, "tenant": {}}
    for name in ("a", "b"):
        lab = LabSite(name, ROOT)
        project, entry, path = tenant_cloud(lab.cloud, str(lab.clouds_yaml), 1)
        params = {
            **site_params(name),
            f"project.{project}.cloud": entry,
            f"project.{project}.clouds_yaml": path,
        }
        key_from = {"key_from": "ta"} if name == "b" else {}
        svc.add_site(f"t{name}", "openstack", params, str(tmp_path / f"repos/t{name}"),
                     init_repository=True, **key_from)  # fmt: skip
        world["project"] = project
        world["admin"][name] = connect(name)
        world["tenant"][name] = tenant_connection(path, entry)
    try:
        yield world
    finally:
        for name in ("b", "a"):
            t, admin = world["tenant"][name], world["admin"][name]
            cleanup(t, marker)
            for v in t.block_storage.volumes():  # detached with their servers by now
                if str(v.name or "").startswith(marker):
                    try:
                        t.block_storage.wait_for_status(v, status="available", wait=120)
                        t.block_storage.delete_volume(v, cascade=True)  # its snapshots too
                    except Exception as exc:  # keep cleaning
                        print(f"[tenant] cleanup volume {v.name}: {exc}")
            cleanup(admin, marker)
            t.close()
            admin.close()


def build_as_tenant(t: Any, marker: str, flavor_id: str) -> dict[str, Any]:
    w: dict[str, Any] = {}
    w["net"] = t.network.create_network(name=f"{marker}-net")
    w["subnet"] = t.network.create_subnet(
        name=f"{marker}-sub", network_id=w["net"].id, cidr=CIDR, ip_version=4
    )
    w["image"] = t.image.create_image(
        name=f"{marker}-image", disk_format="raw", container_format="bare",
        data=b"\0" * (1 << 20), visibility="private", allow_duplicates=True,
    )  # fmt: skip
    w["volume"] = t.block_storage.create_volume(name=f"{marker}-data", size=1)
    t.block_storage.wait_for_status(w["volume"], status="available", wait=300)
    server = t.compute.create_server(
        name=f"{marker}-app", flavor_id=flavor_id, image_id=w["image"].id,
        networks=[{"uuid": w["net"].id}],
    )  # fmt: skip
    w["server"] = t.compute.wait_for_server(server, status="ACTIVE", wait=300)
    t.compute.create_volume_attachment(w["server"], volume_id=w["volume"].id)
    wait_until(
        "the volume attached",
        lambda: t.block_storage.get_volume(w["volume"].id).status == "in-use",
    )
    return w


def test_a_tenant_fails_over_its_own_servers_only_with_its_own_credentials(
    tenant_world: dict[str, Any],
) -> None:
    svc, marker, project = tenant_world["svc"], tenant_world["marker"], tenant_world["project"]
    admin_a, admin_b = tenant_world["admin"]["a"], tenant_world["admin"]["b"]
    t_a, t_b = tenant_world["tenant"]["a"], tenant_world["tenant"]["b"]
    t0 = time.monotonic()
    flavors = {
        site: conn.compute.create_flavor(name=f"{marker}-tiny", ram=256, vcpus=1, disk=1)
        for site, conn in (("a", admin_a), ("b", admin_b))
    }  # the operator's flavors, public, the same on both sites
    w = build_as_tenant(t_a, marker, flavors["a"].id)
    # the operator's own server of the same name, on its own network, in its own project
    net = admin_a.network.create_network(name=f"{marker}-opnet")
    admin_a.network.create_subnet(network_id=net.id, cidr=CIDR, ip_version=4, name=f"{marker}-ops")
    image = admin_a.image.create_image(
        name=f"{marker}-opimage", disk_format="raw", container_format="bare",
        data=b"\0" * (1 << 20), allow_duplicates=True,
    )  # fmt: skip
    theirs = admin_a.compute.wait_for_server(
        admin_a.compute.create_server(
            name=f"{marker}-app", flavor_id=flavors["a"].id, image_id=image.id,
            networks=[{"uuid": net.id}],
        ),
        status="ACTIVE", wait=300,
    )  # fmt: skip
    print(f"[tenant] built on A in {time.monotonic() - t0:.1f}s")

    with pytest.raises(Forbidden, match="holds no credentials for project"):
        svc.create_workload(f"{marker}-x", "ta", Selector.parse("project"), "gold", ["tb"],
                            "seawall-tenant-2")  # fmt: skip

    svc.create_workload(marker, "ta", Selector.parse(f"members:{marker}-app"), "gold", ["tb"],
                        project)  # fmt: skip
    svc.set_plan({"workload": marker, "target": "tb"})
    t1 = time.monotonic()
    protect = svc.protect(marker)
    assert protect.state is RunState.SUCCEEDED, protect.error
    cp = svc.get_checkpoint(protect.result["checkpoint"]["id"])
    captured = {r.id for r in cp.graph.resources}
    assert w["server"].id in captured and w["volume"].id in captured
    assert theirs.id not in captured and net.id not in captured and image.id not in captured
    t2 = time.monotonic()
    run = svc.failover(marker, target="tb")
    assert run.state is RunState.SUCCEEDED, run.error
    print(f"[tenant] protect {t2 - t1:.1f}s, failover {time.monotonic() - t2:.1f}s")

    (recovered,) = [s for s in t_b.compute.servers() if s.name == f"{marker}-app"]
    server = wait_until("the tenant's server ACTIVE on B", lambda: active(t_b, recovered.id))
    assert server.project_id == t_b.current_project_id
    (volume,) = [v for v in t_b.block_storage.volumes() if v.name == f"{marker}-data"]
    assert volume.project_id == t_b.current_project_id
    assert [a["server_id"] for a in volume.attachments] == [server.id]
    # nothing of the tenant's landed in the operator's project on B
    admin_pid = admin_b.current_project_id
    assert not [s for s in admin_b.compute.servers() if s.name == f"{marker}-app"
                and s.project_id == admin_pid]  # fmt: skip
    # and the operator's server on A is untouched by the tenant's failover
    assert admin_a.compute.get_server(theirs.id).status == "ACTIVE"
