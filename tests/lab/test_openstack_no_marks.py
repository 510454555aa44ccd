"""Keypairs, flavors, volume types and server groups fail over without seawall's marks
(issue 11).

Built with openstacksdk directly on site A, as an operator would: a keypair (a real
ed25519 public key with a comment), a flavor with a description and a user extra spec, a
``soft-anti-affinity`` server group, a network and subnet, an image, a data volume of the
project's default volume type, and a server using all of them (the volume attached).
Protected and failed over to site B, then site B is read back with openstacksdk: the
keypair's name and public key, the flavor's name, sizes, description and extra specs, the
server group's name and policy, the server's ``key_name``, flavor and group, and the
volume's type name are exactly the source's; no ``seawall`` text appears in any of them;
and B's own same-named volume type was reused (B has no new volume type).
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

CIDR = "10.75.0.0/24"
GiB = 1 << 30
EXTRA_SPECS = {"acme:tier": "gold"}  #: a user's scoped spec no scheduler filter reads


def connect(site: str) -> Any:
    import openstack.config
    import openstack.connection

    lab = LabSite(site, ROOT)
    config = openstack.config.OpenStackConfig(config_files=[str(lab.clouds_yaml)])
    return openstack.connection.Connection(config=config.get_one(cloud=lab.cloud))


def public_key(comment: str) -> str:
    """A real OpenSSH public key (Nova computes its fingerprint and refuses made-up ones)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate().public_key()
    raw = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{raw.decode()} {comment}"


def wait_until(what: str, fn: Any, timeout: float = 300.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f}s")
        time.sleep(2)


def build(conn: Any, marker: str) -> dict[str, Any]:
    w: dict[str, Any] = {}
    w["key"] = conn.compute.create_keypair(
        name=f"{marker}-key", public_key=public_key(f"{marker}@ops")
    )
    flavor = conn.compute.create_flavor(
        name=f"{marker}-flavor", ram=256, vcpus=1, disk=1, description=f"{marker} flavor"
    )
    conn.compute.create_flavor_extra_specs(flavor, EXTRA_SPECS)
    w["flavor"] = conn.compute.fetch_flavor_extra_specs(conn.compute.get_flavor(flavor.id))
    w["group"] = conn.compute.create_server_group(
        name=f"{marker}-group", policy="soft-anti-affinity"
    )
    net = w["net"] = conn.network.create_network(name=f"{marker}-net")
    conn.network.create_subnet(name=f"{marker}-sub", network_id=net.id, cidr=CIDR, ip_version=4)
    w["image"] = conn.image.create_image(
        name=f"{marker}-image", disk_format="raw", container_format="bare",
        data=b"\0" * (1 << 20), visibility="private", allow_duplicates=True,
    )  # fmt: skip
    volume = conn.block_storage.create_volume(name=f"{marker}-data", size=1)  # default type
    w["volume"] = conn.block_storage.wait_for_status(volume, status="available", wait=300)
    port = conn.network.create_port(name=f"{marker}-port", network_id=net.id)
    server = conn.compute.create_server(
        name=f"{marker}-srv", flavor_id=flavor.id, image_id=w["image"].id,
        networks=[{"port": port.id}], key_name=w["key"].name,
        scheduler_hints={"group": w["group"].id},
    )  # fmt: skip
    w["server"] = conn.compute.wait_for_server(server, status="ACTIVE", wait=300)
    conn.compute.create_volume_attachment(w["server"], volume_id=volume.id)
    wait_until(
        "volume attached",
        lambda: conn.block_storage.get_volume(volume.id).status == "in-use",
    )
    return w


def cleanup(conn: Any, marker: str) -> None:
    """Everything named for ``marker`` (never a volume type: the lab's are its own)."""

    def attempt(what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # keep cleaning
            print(f"[no-marks] cleanup {what}: {exc}")

    mine = lambda items: [x for x in items if marker in str(x.name or "")]  # noqa: E731
    servers = mine(conn.compute.servers())
    for s in servers:
        attempt(f"server {s.name}", conn.compute.delete_server, s, ignore_missing=True)
    for s in servers:
        attempt(f"wait {s.name}", conn.compute.wait_for_delete, s, wait=300)
    for v in mine(conn.block_storage.volumes()):
        attempt(f"volume {v.name}", conn.block_storage.wait_for_status, v, status="available",
                failures=["error"], wait=120)  # fmt: skip
        attempt(f"volume {v.name}", conn.block_storage.delete_volume, v, ignore_missing=True,
                cascade=True)  # fmt: skip
    for n in mine(conn.network.networks()):
        for p in conn.network.ports(network_id=n.id):
            if not str(p.device_owner or "").startswith("network:"):
                attempt(f"port {p.id}", conn.network.delete_port, p, ignore_missing=True)
        attempt(f"network {n.name}", conn.network.delete_network, n, ignore_missing=True)
    for g in mine(conn.compute.server_groups()):
        attempt(f"group {g.name}", conn.compute.delete_server_group, g, ignore_missing=True)
    for k in mine(conn.compute.keypairs()):
        attempt(f"keypair {k.name}", conn.compute.delete_keypair, k, ignore_missing=True)
    for f in mine(conn.compute.flavors(is_public=None)):
        attempt(f"flavor {f.name}", conn.compute.delete_flavor, f, ignore_missing=True)
    for i in mine(conn.image.images()):
        attempt(f"image {i.name}", conn.image.delete_image, i, ignore_missing=True)


@pytest.fixture
def sites(lab_service: Service) -> Iterator[tuple[Any, Any, str]]:
    marker = f"nm{uuid.uuid4().hex[:6]}"
    a, b = connect("a"), connect("b")
    try:
        yield a, b, marker
    finally:
        cleanup(b, marker)
        cleanup(a, marker)
        for conn in (a, b):
            conn.close()


def test_keypairs_flavors_volume_types_and_server_groups_come_back_without_marks(
    lab_service: Service, sites: tuple[Any, Any, str]
) -> None:
    svc, (a, b, marker) = lab_service, sites
    t0 = time.monotonic()
    w = build(a, marker)
    source_type = a.block_storage.get_volume(w["volume"].id).volume_type
    types_b = {t.name: t.id for t in b.block_storage.types()}
    assert source_type in types_b, f"site B has no {source_type!r} volume type to reuse"
    print(f"[no-marks] built on A in {time.monotonic() - t0:.1f}s (volume type {source_type})")

    svc.create_workload(marker, "site-a", Selector.parse(f"members:{w['server'].name}"), "gold",
                        ["site-b"])  # fmt: skip
    svc.set_plan({"workload": marker, "target": "site-b"})
    t1 = time.monotonic()
    protect = svc.protect(marker)
    assert protect.state is RunState.SUCCEEDED, protect.error
    t2 = time.monotonic()
    run = svc.failover(marker, target="site-b")
    assert run.state is RunState.SUCCEEDED, run.error
    print(f"[no-marks] protect {t2 - t1:.1f}s, failover {time.monotonic() - t2:.1f}s")

    # site B, read with openstacksdk
    (server,) = [s for s in b.compute.servers() if s.name == w["server"].name]
    assert server.key_name == w["key"].name  # not renamed: no -sw<hex>
    keys = [k for k in b.compute.keypairs() if marker in k.name]
    assert [k.name for k in keys] == [w["key"].name]
    assert b.compute.get_keypair(w["key"].name).public_key == w["key"].public_key

    flavors = [f for f in b.compute.flavors(is_public=None) if marker in f.name]
    assert [f.name for f in flavors] == [w["flavor"].name]
    flavor = b.compute.fetch_flavor_extra_specs(b.compute.get_flavor(flavors[0].id))
    src = w["flavor"]
    assert (flavor.vcpus, flavor.ram, flavor.disk) == (src.vcpus, src.ram, src.disk)
    assert flavor.description == src.description
    assert dict(flavor.extra_specs) == EXTRA_SPECS == dict(src.extra_specs)
    assert (server.flavor.get("original_name") or server.flavor.get("name")) == src.name

    groups = [g for g in b.compute.server_groups() if marker in g.name]
    assert [g.name for g in groups] == [w["group"].name]
    group = groups[0]
    assert (group.policy or (group.policies or [None])[0]) == "soft-anti-affinity"
    assert server.id in (group.member_ids or [])

    (volume,) = [v for v in b.block_storage.volumes() if v.name == w["volume"].name]
    assert volume.volume_type == source_type  # by name: not __DEFAULT__-<hex>
    after = {t.name: t.id for t in b.block_storage.types()}
    # B's own type, reused (names are unique: the same id means it was not replaced);
    # other engineers' runs may add types meanwhile, so only this one is compared
    assert after[source_type] == types_b[source_type]

    for text in (keys[0].public_key, flavor.name, group.name, *flavor.extra_specs):
        assert "seawall" not in text and " sw " not in text, text
