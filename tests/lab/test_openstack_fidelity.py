"""A three-tier workload built by hand fails over and back with every attribute (issue 11).

As an operator would: the workload is made with openstacksdk directly on site A, every
attribute class set to a non-default value — networks and subnets with descriptions, an
MTU, DNS servers, host routes and allocation pools; a router with extra routes; security
groups that name each other, and the project's ``default`` group; a port with a
description and allowed address pairs; Nova-created (unnamed) ports; an image with
properties, tags and minimums; a flavor with extra specs and a description; a keypair; a
server group; servers with user_data, a description, metadata and tags, booted from an
image and from a volume; a data volume with a description and metadata.

Then only the ``seawall`` CLI: sites, workload, plan, protect, failover to B, reprotect,
failback to A. The checker (:mod:`.cloud_view`) reads both sites' raw API JSON and shares
no code with seawall. After the failover, B's copy must equal A's source field by field;
after the failback, the copies the failback created on A must equal it too. The project's
``default`` group is the target project's own: it must hold every rule of the source's
(it may keep rules of its own, which seawall never deletes).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .cloud_view import CloudView, differences
from .conftest import ROOT, site_params
from .test_openstack_e2e import public_key
from .test_openstack_nova_ports import cleanup, connect
from .test_openstack_twenty_servers import cleanup_volumes

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(3600)]

USER_DATA = "#cloud-config\nwrite_files:\n  - path: /etc/motd\n    content: restored\n"


def build(conn: Any, m: str) -> dict[str, Any]:
    n, w = conn.network, {}
    front = n.create_network(name=f"{m}-front", description="front tier", mtu=1400)
    back = n.create_network(name=f"{m}-back", description="back tier")
    fsub = n.create_subnet(
        name=f"{m}-front-sub", network_id=front.id, cidr="10.81.0.0/24", ip_version=4,
        description="front subnet", dns_nameservers=["192.0.2.53"],
        allocation_pools=[{"start": "10.81.0.50", "end": "10.81.0.200"}],
    )  # fmt: skip
    bsub = n.create_subnet(
        name=f"{m}-back-sub", network_id=back.id, cidr="10.82.0.0/24", ip_version=4,
        description="back subnet", gateway_ip="10.82.0.254",
        host_routes=[{"destination": "198.51.100.0/24", "nexthop": "10.82.0.10"}],
    )  # fmt: skip
    router = n.create_router(name=f"{m}-router", description="edge")
    n.add_interface_to_router(router, subnet_id=fsub.id)
    n.add_interface_to_router(router, subnet_id=bsub.id)
    n.update_router(router, routes=[{"destination": "203.0.113.0/24", "nexthop": "10.81.0.9"}])
    web = n.create_security_group(name=f"{m}-web", description="web tier")
    app = n.create_security_group(name=f"{m}-app", description="app tier")
    db = n.create_security_group(name=f"{m}-db", description="db tier")
    rule = n.create_security_group_rule
    rule(security_group_id=web.id, direction="ingress", ethertype="IPv4", protocol="tcp",
         port_range_min=443, port_range_max=443, remote_ip_prefix="0.0.0.0/0",
         description="https")  # fmt: skip
    rule(security_group_id=app.id, direction="ingress", ethertype="IPv4", protocol="tcp",
         port_range_min=8080, port_range_max=8080, remote_group_id=web.id,
         description="from web")  # fmt: skip
    rule(security_group_id=db.id, direction="ingress", ethertype="IPv4", protocol="tcp",
         port_range_min=5432, port_range_max=5432, remote_group_id=app.id,
         description="postgres from app")  # fmt: skip
    rule(security_group_id=app.id, direction="ingress", ethertype="IPv4", protocol="tcp",
         port_range_min=9000, port_range_max=9000, remote_group_id=db.id,
         description="callbacks from db")  # fmt: skip
    w["image"] = image = conn.image.create_image(
        name=f"{m}-image", disk_format="raw", container_format="bare",
        data=secrets.token_bytes(1 << 20), visibility="private", allow_duplicates=True,
        min_disk=1, min_ram=64, tags=["base", "cirros"], hw_disk_bus="scsi",
        hw_qemu_guest_agent="yes", os_distro="cirros", seawall_test_custom="kept",
    )  # fmt: skip
    flavor = conn.compute.create_flavor(
        name=f"{m}-small", ram=192, vcpus=1, disk=1, description="small tier flavor"
    )
    conn.compute.create_flavor_extra_specs(flavor, {"custom:tier": "gold"})
    keypair = conn.compute.create_keypair(name=f"{m}-key", public_key=public_key())
    group = conn.compute.create_server_group(name=f"{m}-spread", policy="soft-anti-affinity")
    app_port = n.create_port(
        name=f"{m}-app-port", network_id=back.id, description="app's port",
        fixed_ips=[{"subnet_id": bsub.id, "ip_address": "10.82.0.21"}],
        security_group_ids=[app.id], allowed_address_pairs=[{"ip_address": "10.82.0.99"}],
    )  # fmt: skip
    boot = conn.block_storage.create_volume(
        name=f"{m}-app-boot", size=1, image_id=image.id, description="app boot disk"
    )
    data = conn.block_storage.create_volume(
        name=f"{m}-db-data", size=1, description="db data", metadata={"backup": "nightly"}
    )
    for v in (boot, data):
        conn.block_storage.wait_for_status(v, status="available", wait=300)
    user_data = base64.b64encode(USER_DATA.encode()).decode()  # Nova takes it encoded
    common = {"flavor_id": flavor.id, "key_name": keypair.name, "user_data": user_data,
              "scheduler_hints": {"group": group.id}}  # fmt: skip
    servers = [
        conn.compute.create_server(
            name=f"{m}-web", image_id=image.id, networks=[{"uuid": front.id}],
            security_groups=[{"name": "default"}, {"name": web.name}], description="web server",
            metadata={"role": "web"}, tags=["tier-web"], **common,
        ),
        conn.compute.create_server(
            name=f"{m}-app", networks=[{"port": app_port.id}], description="app server",
            block_device_mapping_v2=[{
                "boot_index": 0, "uuid": boot.id, "source_type": "volume",
                "destination_type": "volume", "delete_on_termination": False}],
            metadata={"role": "app"}, tags=["tier-app"], **common,
        ),
        conn.compute.create_server(
            name=f"{m}-db", image_id=image.id, networks=[{"uuid": back.id}],
            security_groups=[{"name": db.name}], description="db server",
            metadata={"role": "db"}, tags=["tier-db"], **common,
        ),
    ]  # fmt: skip
    w["servers"] = [conn.compute.wait_for_server(s, status="ACTIVE", wait=300) for s in servers]
    conn.compute.create_volume_attachment(w["servers"][2], volume_id=data.id)
    conn.block_storage.wait_for_status(data, status="in-use", wait=300)
    return w


def rules_of_default(view: CloudView) -> set[Any]:
    return set(view.resources.pop("security_group default")["rules"])


class Cli:
    """The ``seawall`` command, as an operator runs it (``--json`` for the reads)."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home, self.env = home, env

    def __call__(self, *args: str) -> Any:
        argv = [
            str(Path(sys.executable).parent / "seawall"),
            "--home",
            str(self.home),
            "--json",
            *args,
        ]
        t = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, env=self.env, check=False)
        print(f"[fidelity] seawall {' '.join(args)}: rc {done.returncode} "
              f"in {time.monotonic() - t:.1f}s")  # fmt: skip
        assert done.returncode == 0, f"seawall {' '.join(args)}: {done.stderr[-3000:]}"
        return json.loads(done.stdout) if done.stdout.strip() else None


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Any, Any, str, Cli]]:
    if not os.environ.get("SEAWALL_LAB_CLOUD"):
        pytest.skip("set SEAWALL_LAB_CLOUD (as lab/openstack/ci.sh does) to run against the lab")
    from seawall_lab.layout import LabSite

    for name in ("a", "b"):
        if not LabSite(name, ROOT).clouds_yaml.exists():
            pytest.skip(f"lab site {name} is not up (seawall-lab up --site {name})")
    pp = tmp_path / "passphrase"
    pp.write_text(secrets.token_urlsafe(24))
    pp.chmod(0o600)
    env = {**os.environ, "SEAWALL_PASSPHRASE_FILE": str(pp), "SEAWALL_KDF": "fast"}
    env.pop("SEAWALL_PASSPHRASE", None)
    cli = Cli(tmp_path / "home", env)
    marker = f"fi{uuid.uuid4().hex[:6]}"
    a, b = connect("a"), connect("b")
    try:
        yield a, b, marker, cli
    finally:
        for conn in (b, a):
            wipe(conn, marker)
            conn.close()


def wipe(conn: Any, marker: str) -> None:
    """Everything named for ``marker`` on one site (the project's ``default`` group and
    its rules stay: they are the project's)."""
    for r in conn.network.routers():
        if str(r.name).startswith(marker) and r.routes:
            conn.network.update_router(r, routes=[])  # an interface a route needs stays
    cleanup(conn, marker)
    cleanup_volumes(conn, marker)
    for k in conn.compute.keypairs():
        if k.name.startswith(marker):
            conn.compute.delete_keypair(k, ignore_missing=True)
    for g in conn.compute.server_groups():
        if str(g.name).startswith(marker):
            conn.compute.delete_server_group(g, ignore_missing=True)


def test_a_hand_built_workload_fails_over_and_back_with_every_attribute(
    lab: tuple[Any, Any, str, Cli], tmp_path: Path
) -> None:
    a, b, marker, cli = lab
    t0 = time.monotonic()
    w = build(a, marker)
    source = CloudView(a, marker)
    default_a = rules_of_default(source)
    print(f"[fidelity] built {len(source.resources)} resources on A in "
          f"{time.monotonic() - t0:.1f}s")  # fmt: skip

    for name, site in (("site-a", "a"), ("site-b", "b")):
        params = [x for k, v in site_params(site).items() for x in ("--param", f"{k}={v}")]
        extra = ["--key-from", "site-a"] if name == "site-b" else []
        repo = str(tmp_path / f"repo-{site}")
        cli("site", "add", name, "--driver", "openstack", *params,
            "--repository", repo, "--init-repository", *extra)  # fmt: skip
    members = [x for s in w["servers"] for x in ("--member", s.name)]
    cli("workload", "create", marker, "--site", "site-a", "--policy", "gold",
        "--target", "site-b", *members)  # fmt: skip
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({
        "workload": marker, "target": "site-b",
        "boot_groups": [{"name": "db", "servers": [f"{marker}-db"]},
                        {"name": "app", "servers": [f"{marker}-app"]},
                        {"name": "web", "servers": [f"{marker}-web"]}],
    }))  # fmt: skip
    cli("plan", "set", "--file", str(plan))
    cli("protect", marker)
    cli("protect", marker)
    run = cli("failover", marker, "--target", "site-b")
    print(f"[fidelity] failover: {json.dumps(run['result'].get('fidelity'), default=str)}")
    # seawall's own check agrees: nothing it cannot explain, so the recovery is verified
    assert run["result"]["fidelity"]["ok"], run["result"]["fidelity"]["differences"]
    assert run["result"]["verified"] is True

    on_b = CloudView(b, marker)
    default_b = rules_of_default(on_b)
    missing = default_a - default_b
    assert not missing, f"B's default group lacks rules of A's: {missing}"
    diffs = differences(source, on_b)
    assert not diffs, "after the failover, B differs from A's source:\n" + "\n".join(diffs)

    # site A was lost and rebuilt empty (its project and default group remain): what
    # comes back there is made by the failback alone, from B's checkpoints
    wipe(a, marker)
    assert not CloudView(a, marker).resources.keys() - {"security_group default"}
    cli("reprotect", marker)
    back = cli("failback", marker)
    assert back["result"]["fidelity"]["ok"], back["result"]["fidelity"]["differences"]
    assert back["result"]["verified"] is True
    after = CloudView(a, marker)
    assert not default_a - rules_of_default(after)
    diffs = differences(source, after)
    assert not diffs, "after the failback, A differs from its source:\n" + "\n".join(diffs)
