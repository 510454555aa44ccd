"""Security groups fail over as they were: remote groups, the project's ``default`` (issue 11).

Built with openstacksdk directly on site A, as an operator would: a network and subnet, a
group ``app`` with an ingress rule from itself and one from a prefix, a group ``db`` with
"tcp 5432 from remote group app" (and ``app`` "tcp 9000 from remote group db": the two
groups name each other), a rule added to the project's ``default`` group, and a
server on the network in the groups ``default`` and ``app`` (its port in them). Protected
and failed over to site B, then site B is read back with openstacksdk: every rule of each
recovered group is the source's, remote groups mapped by name (a rule from ``app`` must
not come back "from any source"), and B's own ``default`` group was reused, not
duplicated, holding every rule of A's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from seawall.model import RunState, Selector
from seawall.service import Service
from seawall_lab.layout import LabSite

from .conftest import ROOT

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(1800)]

CIDR = "10.74.0.0/24"


def connect(site: str) -> Any:
    import openstack.config
    import openstack.connection

    lab = LabSite(site, ROOT)
    config = openstack.config.OpenStackConfig(config_files=[str(lab.clouds_yaml)])
    return openstack.connection.Connection(config=config.get_one(cloud=lab.cloud))


def default_group(conn: Any) -> Any:
    groups = list(conn.network.security_groups(name="default", project_id=conn.current_project_id))
    assert len(groups) == 1, f"the project has {len(groups)} default groups"
    return groups[0]


def rules(conn: Any, group: Any) -> set[tuple[Any, ...]]:
    """A group's rules as comparable rows, the remote group by name (own group by its
    name too), read with openstacksdk."""
    out = set()
    for r in conn.network.security_group_rules(security_group_id=group.id):
        remote = (
            conn.network.get_security_group(r.remote_group_id).name if r.remote_group_id else None
        )
        out.add((r.direction, r.ether_type, r.protocol, r.port_range_min, r.port_range_max,
                 r.remote_ip_prefix, r.description or "", remote))  # fmt: skip
    return out


def build(conn: Any, marker: str) -> dict[str, Any]:
    w: dict[str, Any] = {}
    net = w["net"] = conn.network.create_network(name=f"{marker}-net")
    w["subnet"] = conn.network.create_subnet(
        name=f"{marker}-sub", network_id=net.id, cidr=CIDR, ip_version=4
    )
    app = w["app"] = conn.network.create_security_group(
        name=f"{marker}-app", description="app tier"
    )
    db = w["db"] = conn.network.create_security_group(name=f"{marker}-db", description="db tier")
    rule = conn.network.create_security_group_rule
    rule(security_group_id=app.id, direction="ingress", ethertype="IPv4", protocol="tcp",
         port_range_min=7000, port_range_max=7001, remote_group_id=app.id,
         description="app peers")  # fmt: skip
    rule(security_group_id=app.id, direction="ingress", ethertype="IPv4", protocol="tcp",
         port_range_min=443, port_range_max=443, remote_ip_prefix="10.10.0.0/16")  # fmt: skip
    rule(security_group_id=app.id, direction="ingress", ethertype="IPv6", protocol="udp",
         port_range_min=53, port_range_max=53, remote_ip_prefix="fd00:74::/64")  # fmt: skip
    rule(security_group_id=db.id, direction="ingress", ethertype="IPv4", protocol="tcp",
         port_range_min=5432, port_range_max=5432, remote_group_id=app.id,
         description="postgres from app")  # fmt: skip
    # and back: app takes callbacks from db, so the two groups name each other
    rule(security_group_id=app.id, direction="ingress", ethertype="IPv4", protocol="tcp",
         port_range_min=9000, port_range_max=9000, remote_group_id=db.id,
         description="callbacks from db")  # fmt: skip
    default = default_group(conn)
    w["default_rule"] = rule(
        security_group_id=default.id, direction="ingress", ethertype="IPv4", protocol="tcp",
        port_range_min=8443, port_range_max=8443, remote_ip_prefix="192.0.2.0/24",
        description=marker,
    )  # fmt: skip
    w["flavor"] = conn.compute.create_flavor(name=f"{marker}-tiny", ram=256, vcpus=1, disk=1)
    w["image"] = conn.image.create_image(
        name=f"{marker}-image", disk_format="raw", container_format="bare",
        data=b"\0" * (1 << 20), visibility="private", allow_duplicates=True,
    )  # fmt: skip
    boots = []
    for tier, groups in (("srv", [default.id, app.id]), ("db", [db.id])):
        port = conn.network.create_port(
            name=f"{marker}-{tier}-port", network_id=net.id, security_group_ids=groups
        )
        boots.append(conn.compute.create_server(
            name=f"{marker}-{tier}", flavor_id=w["flavor"].id, image_id=w["image"].id,
            networks=[{"port": port.id}],
        ))  # fmt: skip
    w["servers"] = [conn.compute.wait_for_server(s, status="ACTIVE", wait=300) for s in boots]
    return w


def clean_default_group(conn: Any, marker: str, before: set[str] | None, attempt: Any) -> None:
    """The default group's rules ``marker`` describes, and every rule not in ``before``."""
    default = default_group(conn)
    for r in conn.network.security_group_rules(security_group_id=default.id):
        if r.description == marker or (before is not None and r.id not in before):
            attempt(f"default rule {r.id}", conn.network.delete_security_group_rule, r)


def cleanup(conn: Any, marker: str, default_rules_before: set[str] | None) -> None:
    """Everything named for ``marker``; on the default group, the rules ``marker``
    describes and every rule not there before (``default_rules_before``)."""

    def attempt(what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # keep cleaning
            print(f"[security-groups] cleanup {what}: {exc}")

    mine = lambda items: [x for x in items if str(x.name or "").startswith(marker)]  # noqa: E731
    servers = mine(conn.compute.servers())
    for s in servers:
        attempt(f"server {s.name}", conn.compute.delete_server, s, ignore_missing=True)
    for s in servers:
        attempt(f"wait {s.name}", conn.compute.wait_for_delete, s, wait=300)
    for n in mine(conn.network.networks()):
        for p in conn.network.ports(network_id=n.id):
            if not str(p.device_owner or "").startswith("network:"):
                attempt(f"port {p.id}", conn.network.delete_port, p, ignore_missing=True)
        attempt(f"network {n.name}", conn.network.delete_network, n, ignore_missing=True)
    clean_default_group(conn, marker, default_rules_before, attempt)
    groups = mine(conn.network.security_groups())
    for g in groups:  # rules naming another group first, so the groups can go
        for r in conn.network.security_group_rules(security_group_id=g.id):
            if r.remote_group_id:
                attempt(f"rule {r.id}", conn.network.delete_security_group_rule, r)
    for g in groups:
        attempt(f"group {g.name}", conn.network.delete_security_group, g, ignore_missing=True)
    for f in mine(conn.compute.flavors(is_public=None)):
        attempt(f"flavor {f.name}", conn.compute.delete_flavor, f, ignore_missing=True)
    for i in mine(conn.image.images()):
        attempt(f"image {i.name}", conn.image.delete_image, i, ignore_missing=True)


@pytest.fixture
def sites(lab_service: Service) -> Iterator[tuple[Any, Any, str, set[str]]]:
    marker = f"sg{uuid.uuid4().hex[:6]}"
    a, b = connect("a"), connect("b")
    before_b = {r.id for r in b.network.security_group_rules(security_group_id=default_group(b).id)}
    try:
        yield a, b, marker, before_b
    finally:
        cleanup(b, marker, before_b)
        cleanup(a, marker, None)
        for conn in (a, b):
            conn.close()


def test_security_groups_fail_over_with_their_remote_groups_and_the_default_group(
    lab_service: Service, sites: tuple[Any, Any, str, set[str]]
) -> None:
    svc, (a, b, marker, before_b) = lab_service, sites
    t0 = time.monotonic()
    w = build(a, marker)
    source = {
        name: rules(a, g)
        for name, g in (("app", w["app"]), ("db", w["db"]), ("default", default_group(a)))
    }
    app_name = w["app"].name
    assert ("ingress", "IPv4", "tcp", 5432, 5432, None, "postgres from app", app_name) in source[
        "db"
    ]
    db_name = w["db"].name
    assert ("ingress", "IPv4", "tcp", 9000, 9000, None, "callbacks from db", db_name) in source[
        "app"
    ]
    print(f"[security-groups] built on A in {time.monotonic() - t0:.1f}s")

    names = ",".join(s.name for s in w["servers"])
    svc.create_workload(marker, "site-a", Selector.parse(f"members:{names}"), "gold", ["site-b"])
    svc.set_plan({"workload": marker, "target": "site-b"})
    t1 = time.monotonic()
    protect = svc.protect(marker)
    assert protect.state is RunState.SUCCEEDED, protect.error
    cp = svc.get_checkpoint(protect.result["checkpoint"]["id"])
    captured = {r.id for r in cp.graph.resources}
    assert {w["app"].id, w["db"].id, default_group(a).id} <= captured
    t2 = time.monotonic()
    run = svc.failover(marker, target="site-b")
    assert run.state is RunState.SUCCEEDED, run.error
    print(f"[security-groups] protect {t2 - t1:.1f}s, failover {time.monotonic() - t2:.1f}s")

    # site B, read with openstacksdk
    default_b = default_group(b)  # exactly one: reused, not duplicated
    (app_b,) = [g for g in b.network.security_groups() if g.name == app_name]
    assert app_b.description == "app tier"
    assert rules(b, app_b) == source["app"]
    got_default = rules(b, default_b)
    assert source["default"] <= got_default, source["default"] - got_default
    added = [
        r
        for r in b.network.security_group_rules(security_group_id=default_b.id)
        if r.id not in before_b
    ]
    print(f"[security-groups] rules added to B's default group: {len(added)}")
    assert {r.description for r in added} <= {marker, ""}, "only A's default rules were added"
    assert marker in {r.description for r in added}
    (db_b,) = [g for g in b.network.security_groups() if g.name == w["db"].name]
    assert db_b.description == "db tier"
    assert rules(b, db_b) == source["db"]
    for s in w["servers"]:
        (server,) = [x for x in b.compute.servers() if x.name == s.name]
        (port,) = list(b.network.ports(device_id=server.id))
        want = {default_b.id, app_b.id} if s.name.endswith("-srv") else {db_b.id}
        assert set(port.security_group_ids) == want, s.name
