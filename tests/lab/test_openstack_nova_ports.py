"""Servers booted the ordinary way fail over with their ports as they were (issue 11).

``server create --network X`` lets Nova create each server's port, with an empty name.
The workload is built with openstacksdk directly, as an operator would (no seawall
helpers): a network, a subnet with a router interface, a security group, a flavor, an
image and two servers booted with ``networks=[{"uuid": net}]``. It is protected and
failed over to site B, and site B is read back with openstacksdk: both servers ACTIVE,
each with one port on the recovered network carrying its source's fixed IP, MAC and
(empty) name, and the cloud's own ports (DHCP/metadata, router interface) not doubled.

The servers are given their own security group, not the project's ``default`` (that
group is another slice of issue 11).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from seawall.model import RunState, Selector
from seawall.service import Service
from seawall_lab.layout import LabSite

from .conftest import ROOT

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(1800)]

CIDR = "10.73.0.0/24"


def connect(site: str) -> Any:
    import openstack.config
    import openstack.connection

    lab = LabSite(site, ROOT)
    config = openstack.config.OpenStackConfig(config_files=[str(lab.clouds_yaml)])
    return openstack.connection.Connection(config=config.get_one(cloud=lab.cloud))


def ports_of(conn: Any, network_id: str) -> list[Any]:
    return list(conn.network.ports(network_id=network_id))


def owners(ports: list[Any]) -> Counter[str]:
    """How many of the cloud's own ports (``network:*`` owners) a network has, by owner."""
    return Counter(str(p.device_owner) for p in ports if str(p.device_owner).startswith("network:"))


def wait_until(what: str, fn: Any, timeout: float = 300.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(2)


def build(conn: Any, marker: str) -> dict[str, Any]:
    """On site A, with openstacksdk only: Nova creates the servers' ports."""
    w: dict[str, Any] = {}
    w["net"] = conn.network.create_network(name=f"{marker}-net")
    w["subnet"] = conn.network.create_subnet(
        name=f"{marker}-sub", network_id=w["net"].id, cidr=CIDR, ip_version=4
    )
    w["router"] = conn.network.create_router(name=f"{marker}-router")
    conn.network.add_interface_to_router(w["router"], subnet_id=w["subnet"].id)
    w["sg"] = conn.network.create_security_group(name=f"{marker}-sg", description="nova ports")
    conn.network.create_security_group_rule(
        security_group_id=w["sg"].id, direction="ingress", ethertype="IPv4",
        protocol="tcp", port_range_min=22, port_range_max=22, remote_ip_prefix="0.0.0.0/0",
    )  # fmt: skip
    w["flavor"] = conn.compute.create_flavor(name=f"{marker}-tiny", ram=256, vcpus=1, disk=1)
    w["image"] = conn.image.create_image(
        name=f"{marker}-image", disk_format="raw", container_format="bare",
        data=b"\0" * (1 << 20), visibility="private", allow_duplicates=True,
    )  # fmt: skip
    servers = [
        conn.compute.create_server(
            name=f"{marker}-s{i}",
            flavor_id=w["flavor"].id,
            image_id=w["image"].id,
            networks=[{"uuid": w["net"].id}],
            security_groups=[{"name": w["sg"].name}],
        )
        for i in range(2)
    ]
    w["servers"] = [conn.compute.wait_for_server(s, status="ACTIVE", wait=300) for s in servers]
    return w


def active(conn: Any, server_id: str) -> Any:
    """The server once it is ACTIVE, else None."""
    server = conn.compute.get_server(server_id)
    return server if server.status == "ACTIVE" else None


def server_ports(conn: Any, server_id: str) -> list[Any]:
    return list(conn.network.ports(device_id=server_id))


def cleanup(conn: Any, marker: str) -> None:
    """Everything named for ``marker`` and every port on its networks; errors are printed
    and cleaning goes on."""

    def attempt(what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # keep cleaning
            print(f"[nova-ports] cleanup {what}: {exc}")

    mine = lambda items: [x for x in items if str(x.name or "").startswith(marker)]  # noqa: E731
    servers = mine(conn.compute.servers())
    for s in servers:
        attempt(f"server {s.name}", conn.compute.delete_server, s, ignore_missing=True)
    for s in servers:
        attempt(f"wait {s.name}", conn.compute.wait_for_delete, s, wait=300)
    nets = mine(conn.network.networks())
    for r in mine(conn.network.routers()):
        for p in conn.network.ports(device_id=r.id):
            if p.device_owner == "network:router_interface":
                for ip in p.fixed_ips:
                    attempt(f"interface {ip}", conn.network.remove_interface_from_router, r,
                            subnet_id=ip["subnet_id"])  # fmt: skip
        attempt(f"router {r.name}", conn.network.delete_router, r, ignore_missing=True)
    for n in nets:
        for p in conn.network.ports(network_id=n.id):
            if not str(p.device_owner or "").startswith("network:"):
                attempt(f"port {p.id}", conn.network.delete_port, p, ignore_missing=True)
        attempt(f"network {n.name}", conn.network.delete_network, n, ignore_missing=True)
    for g in mine(conn.network.security_groups()):
        attempt(f"group {g.name}", conn.network.delete_security_group, g, ignore_missing=True)
    for f in mine(conn.compute.flavors(is_public=None)):
        attempt(f"flavor {f.name}", conn.compute.delete_flavor, f, ignore_missing=True)
    for i in mine(conn.image.images()):
        attempt(f"image {i.name}", conn.image.delete_image, i, ignore_missing=True)


@pytest.fixture
def sites(lab_service: Service) -> Iterator[tuple[Any, Any, str]]:
    marker = f"np{uuid.uuid4().hex[:6]}"
    a, b = connect("a"), connect("b")
    try:
        yield a, b, marker
    finally:
        for conn in (b, a):
            cleanup(conn, marker)
            conn.close()


def test_nova_created_ports_fail_over_as_they_were(
    lab_service: Service, sites: tuple[Any, Any, str]
) -> None:
    svc, (a, b, marker) = lab_service, sites
    t0 = time.monotonic()
    w = build(a, marker)
    source = {}
    for s in w["servers"]:
        (port,) = server_ports(a, s.id)
        assert port.name == "", "Nova names the ports it creates ''"
        assert port.device_owner.startswith("compute:")
        source[s.name] = port
    cloud_ports = owners(ports_of(a, w["net"].id))
    assert cloud_ports["network:router_interface"] == 1
    print(f"[nova-ports] built on A in {time.monotonic() - t0:.1f}s; cloud's own ports on "
          f"the network: {dict(cloud_ports)}")  # fmt: skip

    names = ",".join(s.name for s in w["servers"])
    svc.create_workload(marker, "site-a", Selector.parse(f"members:{names}"), "gold", ["site-b"])
    svc.set_plan({"workload": marker, "target": "site-b"})
    t1 = time.monotonic()
    protect = svc.protect(marker)
    assert protect.state is RunState.SUCCEEDED, protect.error
    cp = svc.get_checkpoint(protect.result["checkpoint"]["id"])
    captured = {r.id for r in cp.graph.resources}
    assert {p.id for p in source.values()} <= captured
    for p in ports_of(a, w["net"].id):  # the cloud's own ports are not the workload's
        if str(p.device_owner).startswith("network:"):
            assert p.id not in captured, p.device_owner
    t2 = time.monotonic()
    run = svc.failover(marker, target="site-b")
    assert run.state is RunState.SUCCEEDED, run.error
    print(f"[nova-ports] protect {t2 - t1:.1f}s, failover {time.monotonic() - t2:.1f}s")

    # site B, read with openstacksdk
    (net,) = [n for n in b.network.networks() if n.name == w["net"].name]
    (sub,) = list(b.network.subnets(network_id=net.id))
    assert sub.cidr == CIDR
    recovered = {s.name: s for s in b.compute.servers() if s.name in source}
    assert set(recovered) == set(source)
    for name, src in source.items():
        server = wait_until(f"{name} ACTIVE on B", lambda n=name: active(b, recovered[n].id))
        (port,) = server_ports(b, server.id)
        assert port.network_id == net.id, name
        assert port.name == src.name == "", name
        assert [i["ip_address"] for i in port.fixed_ips] == [
            i["ip_address"] for i in src.fixed_ips
        ], name
        assert port.mac_address == src.mac_address, name
        assert port.device_owner.startswith("compute:"), name
        (group,) = [b.network.get_security_group(g) for g in port.security_group_ids]
        assert group.name == w["sg"].name, name
    on_b = ports_of(b, net.id)
    user = [p for p in on_b if not str(p.device_owner or "").startswith("network:")]
    assert sorted(p.mac_address for p in user) == sorted(p.mac_address for p in source.values())
    assert owners(on_b) == owners(ports_of(a, w["net"].id)), "a cloud-owned port was doubled"
