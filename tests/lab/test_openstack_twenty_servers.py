"""Twenty servers booted the ordinary way fail over in three boot groups (issue 11).

The workload is what an operator makes with ``server create --network X``: one network
with a router interface, the project's ``default`` security group (Nova's choice when
none is named), Nova-created ports (unnamed), servers booted from an image, and four of
them (the db tier) each with a data volume attached. It is built with openstacksdk
directly, protected and failed over to site B with a plan of three boot groups
(db -> app -> web), and site B is read back with openstacksdk: every server ACTIVE with
its source's fixed IP and MAC on an unnamed port, B's ``default`` group reused (one per
project), each data volume attached to its server.

The failover's time is printed split three ways, for the issue's note: wall time, the
time seawall's own process spent on the CPU (``getrusage`` of this process, which runs
the whole recovery in-process), and the time spent inside cloud API calls and waits
(the openstack driver's ``cloud_seconds``).
"""

from __future__ import annotations

import resource
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from seawall.model import RunState, Selector
from seawall.service import Service

from .test_openstack_nova_ports import active, cleanup, connect, server_ports, wait_until

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(2400)]

CIDR = "10.76.0.0/24"
TIERS = (("db", 4), ("app", 8), ("web", 8))  #: boot groups, in boot order


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def build(conn: Any, marker: str) -> dict[str, Any]:
    """On site A, with openstacksdk only, the way ``openstack server create`` does it."""
    w: dict[str, Any] = {}
    w["net"] = conn.network.create_network(name=f"{marker}-net")
    w["subnet"] = conn.network.create_subnet(
        name=f"{marker}-sub", network_id=w["net"].id, cidr=CIDR, ip_version=4
    )
    w["router"] = conn.network.create_router(name=f"{marker}-router")
    conn.network.add_interface_to_router(w["router"], subnet_id=w["subnet"].id)
    w["flavor"] = conn.compute.create_flavor(name=f"{marker}-tiny", ram=128, vcpus=1, disk=1)
    w["image"] = conn.image.create_image(
        name=f"{marker}-image", disk_format="raw", container_format="bare",
        data=b"\0" * (1 << 20), visibility="private", allow_duplicates=True,
    )  # fmt: skip
    boots = []
    for tier, count in TIERS:
        for i in range(count):
            boots.append(conn.compute.create_server(
                name=f"{marker}-{tier}{i}", flavor_id=w["flavor"].id, image_id=w["image"].id,
                networks=[{"uuid": w["net"].id}],
            ))  # fmt: skip
    w["servers"] = [conn.compute.wait_for_server(s, status="ACTIVE", wait=600) for s in boots]
    w["volumes"] = {}
    for s in w["servers"]:
        if "-db" in s.name:
            v = conn.block_storage.create_volume(name=f"{s.name}-data", size=1)
            conn.block_storage.wait_for_status(v, status="available", wait=300)
            conn.compute.create_volume_attachment(s, volume_id=v.id)
            w["volumes"][s.name] = v
    for v in w["volumes"].values():
        conn.block_storage.wait_for_status(v, status="in-use", wait=300)
    return w


def cleanup_volumes(conn: Any, marker: str) -> None:
    """The data volumes, with the snapshots seawall keeps of them (the change-tracking
    base on A, the reprotect base on B): Cinder deletes no volume that has snapshots."""
    for v in conn.block_storage.volumes():
        if not str(v.name or "").startswith(marker):
            continue
        try:
            conn.block_storage.wait_for_status(v, status="available", wait=300)
            snaps = list(conn.block_storage.snapshots(volume_id=v.id))
            for snap in snaps:
                conn.block_storage.delete_snapshot(snap, ignore_missing=True)
            for snap in snaps:
                conn.block_storage.wait_for_delete(snap, wait=300)
            conn.block_storage.delete_volume(v, ignore_missing=True)
        except Exception as exc:  # keep cleaning
            print(f"[twenty] cleanup volume {v.name}: {exc}")


@pytest.fixture
def sites(lab_service: Service) -> Iterator[tuple[Any, Any, str]]:
    marker = f"tw{uuid.uuid4().hex[:6]}"
    a, b = connect("a"), connect("b")
    try:
        yield a, b, marker
    finally:
        for conn in (b, a):
            cleanup(conn, marker)  # servers first, so their volumes come free
            cleanup_volumes(conn, marker)
            conn.close()


def test_twenty_nova_booted_servers_fail_over_in_three_boot_groups(
    lab_service: Service, sites: tuple[Any, Any, str]
) -> None:
    svc, (a, b, marker) = lab_service, sites
    t0 = time.monotonic()
    w = build(a, marker)
    source = {}
    for s in w["servers"]:
        (port,) = server_ports(a, s.id)
        assert port.name == "" and port.security_group_ids, s.name
        source[s.name] = port
    print(f"[twenty] built {len(source)} servers on A in {time.monotonic() - t0:.1f}s")

    names = ",".join(s.name for s in w["servers"])
    svc.create_workload(marker, "site-a", Selector.parse(f"members:{names}"), "gold", ["site-b"])
    groups = [
        {"name": tier, "servers": [s.name for s in w["servers"] if f"-{tier}" in s.name]}
        for tier, _ in TIERS
    ]
    svc.set_plan({"workload": marker, "target": "site-b", "boot_groups": groups})
    t1 = time.monotonic()
    protect = svc.protect(marker)
    assert protect.state is RunState.SUCCEEDED, protect.error
    t2 = time.monotonic()

    driver_b = svc.handles.driver("site-b")
    cloud0 = float(getattr(driver_b, "cloud_seconds", 0.0))
    cpu0 = cpu_seconds()
    run = svc.failover(marker, target="site-b")
    wall = time.monotonic() - t2
    cloud = float(getattr(driver_b, "cloud_seconds", 0.0)) - cloud0
    cpu = cpu_seconds() - cpu0
    assert run.state is RunState.SUCCEEDED, run.error
    print(
        f"[twenty] protect {t2 - t1:.1f}s; failover of {len(source)} servers in "
        f"{len(groups)} boot groups: wall {wall:.1f}s; inside site B's API calls and waits "
        f"{cloud:.1f}s (summed over the steps running in parallel); seawall's own CPU "
        f"{cpu:.1f}s ({100 * cpu / wall:.0f}% of wall), "
        f"RTO {run.result.get('rto_seconds')}s"
    )

    # site B, read with openstacksdk
    defaults = list(b.network.security_groups(name="default", project_id=b.current_project_id))
    assert len(defaults) == 1, "B's default group was reused, not duplicated"
    (net,) = [n for n in b.network.networks() if n.name == w["net"].name]
    recovered = {s.name: s for s in b.compute.servers() if s.name in source}
    assert set(recovered) == set(source)
    for name, src in source.items():
        server = wait_until(f"{name} ACTIVE on B", lambda n=name: active(b, recovered[n].id))
        (port,) = server_ports(b, server.id)
        assert port.network_id == net.id, name
        assert port.name == "", name
        assert port.mac_address == src.mac_address, name
        assert [ip["ip_address"] for ip in port.fixed_ips] == [
            ip["ip_address"] for ip in src.fixed_ips
        ], name
        assert port.security_group_ids == [defaults[0].id], name
        if name in w["volumes"]:
            attached = [x.volume_id for x in b.compute.volume_attachments(server)]
            (vol,) = [v for v in b.block_storage.volumes() if v.name == f"{name}-data"]
            assert attached == [vol.id], name
