"""The CloudDriver V1 conformance suite: one set of tests, every driver.

Tests speak the protocol only; what the protocol cannot do (take a site down, set quotas)
goes through the harness, which skips where a driver cannot oblige. Where the sim is
exact and a real cloud may be coarser (changed extents at object granularity), the
assertion is "covers" for every driver and "equals" where ``harness.exact_cbt``.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seawall.clouds import CloudDriver, Extent, ResourceSpec
from seawall.clouds.extents import merge_extents
from seawall.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PermanentError,
    SiteUnavailable,
    StepTimeout,
)
from seawall.model import ResourceKind, Selector

from .conftest import Harness

K = ResourceKind

#: every kind a driver creates from captured metadata (projects are the operator's)
KINDS = [k for k in ResourceKind if k is not K.PROJECT]


def covers(extents: list[Extent], writes: list[tuple[int, int]]) -> bool:
    return all(
        any(e.offset <= off and off + n <= e.offset + e.length for e in extents)
        for off, n in writes
        if n
    )


def ssh_public_key(comment: str) -> str:
    """A real OpenSSH public key: Nova computes its fingerprint and refuses made-up ones."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate().public_key()
    raw = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{raw.decode()} {comment}"


PUBLIC_KEY = ssh_public_key("seawall-test")


def exact(harness: Harness) -> bool:
    return harness.name == "sim"


def prerequisites(
    h: Harness, kind: ResourceKind
) -> tuple[dict[str, Any], dict[str, tuple[str, ...]]]:
    """attrs and refs of a valid spec of ``kind``, creating what it refers to."""
    if kind is K.NETWORK:
        return {"mtu": 1400, "external": False, "isolated": True}, {}
    if kind is K.SUBNET:
        net = h.make(K.NETWORK, "pre-net")
        return {"cidr": "10.20.0.0/24", "dns_nameservers": ["10.20.0.2"]}, {"network": (net.id,)}
    if kind is K.ROUTER:
        _, sub = h.network("pre-rnet", "10.21.0.0/24")
        return {"external_gateway": False}, {"subnets": (sub.id,)}
    if kind is K.SECURITY_GROUP:
        rule = {
            "direction": "ingress",
            "ethertype": "IPv4",
            "protocol": "tcp",
            "port_range_min": 8080,
            "port_range_max": 8080,
            "remote_ip_prefix": "10.0.0.0/8",
        }
        return {"rules": [rule]}, {}
    if kind is K.PORT:
        net, sub = h.network("pre-pnet", "10.22.0.0/24")
        sg = h.make(K.SECURITY_GROUP, "pre-sg")
        refs = {"network": (net.id,), "subnet": (sub.id,), "security_groups": (sg.id,)}
        return {"fixed_ips": ["10.22.0.10"]}, refs
    if kind is K.KEYPAIR:
        return {"public_key": PUBLIC_KEY}, {}
    if kind is K.FLAVOR:
        return {"vcpus": 2, "ram_mb": 1024, "disk_gb": 5, "extra_specs": {"hw:cpu": "x"}}, {}
    if kind is K.IMAGE:
        return {"disk_format": "raw"}, {}
    if kind is K.VOLUME_TYPE:
        return {"extra_specs": {"volume_backend_name": "ceph"}}, {}
    if kind is K.SERVER_GROUP:
        return {"policies": ["anti-affinity"]}, {}
    if kind is K.VOLUME:
        vtype = h.make(K.VOLUME_TYPE, "pre-vtype")
        return {"size": 65536, "bootable": False}, {"volume_type": (vtype.id,)}
    if kind is K.SERVER:
        flavor = h.make(K.FLAVOR, "pre-flavor")
        net, _ = h.network("pre-snet", "10.23.0.0/24")
        port = h.make(K.PORT, "pre-sport", refs={"network": (net.id,)})
        vol = h.make(K.VOLUME, "pre-svol", {"size": 65536})
        group = h.make(K.SERVER_GROUP, "pre-group", {"policies": ["affinity"]})
        key = h.make(K.KEYPAIR, "pre-key", {"public_key": PUBLIC_KEY})
        refs = {
            "flavor": (flavor.id,),
            "ports": (port.id,),
            "volumes": (vol.id,),
            "server_group": (group.id,),
            "keypair": (key.id,),
        }
        return {"hostname": "srv", "metadata": {"role": "x"}}, refs
    if kind is K.FLOATING_IP:
        # a floating IP needs a route from the port's subnet to the external network
        net, sub = h.network("pre-fnet", "10.24.0.0/24")
        h.make(K.ROUTER, "pre-frouter", {"external_gateway": True}, {"subnets": (sub.id,)})
        port = h.make(K.PORT, "pre-fport", refs={"network": (net.id,)})
        return {}, {"port": (port.id,)}
    raise AssertionError(kind)


# -- identity, find-or-create, delete ----------------------------------------------------


def test_ping_and_capabilities(driver: CloudDriver) -> None:
    driver.ping()
    caps = driver.capabilities()
    assert "full" in caps.data_paths
    assert isinstance(driver, CloudDriver)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.value)
def test_create_is_find_or_create(harness: Harness, kind: ResourceKind) -> None:
    driver = harness.driver
    attrs, refs = prerequisites(harness, kind)
    spec = ResourceSpec(
        kind, f"c-{kind.value}", harness.key(f"c-{kind.value}"), attrs, refs, {"app": "demo"}
    )
    first = harness.create(spec)
    again = driver.create(spec)
    assert again.id == first.id
    assert (first.kind, first.name) == (kind, spec.name)
    assert first.tags["app"] == "demo" and first.tags["seawall:key"] == spec.key
    for name, value in attrs.items():
        assert first.attrs[name] == value, name
    for role, ids in refs.items():
        assert tuple(r.id for r in first.refs[role]) == ids, role
        assert all(r.kind for r in first.refs[role])
    found = driver.find(kind, spec.key)
    assert found is not None and found.id == first.id
    got = driver.get(first.ref)
    assert got is not None and got.id == first.id
    listed = [r for r in driver.list_resources(kind) if r.id == first.id]
    if kind in driver.capabilities().unmarked_kinds:
        # the cloud holds no mark of seawall's on these: the listing shows none
        assert [sorted(r.tags) for r in listed] == [[]]
    else:
        same_key = [r for r in driver.list_resources(kind) if r.tags.get("seawall:key") == spec.key]
        assert [r.id for r in same_key] == [first.id] == [r.id for r in listed]
    assert driver.find(kind, harness.key("never-created")) is None


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.value)
def test_delete_tolerates_gone(harness: Harness, kind: ResourceKind) -> None:
    driver = harness.driver
    attrs, refs = prerequisites(harness, kind)
    made = harness.make(kind, f"d-{kind.value}", attrs, refs)
    driver.delete(made.ref)
    driver.delete(made.ref)
    assert driver.get(made.ref) is None
    assert driver.find(kind, harness.key(f"d-{kind.value}")) is None


def test_create_names_a_missing_ref(harness: Harness) -> None:
    with pytest.raises(InvalidInput, match=r"subnet\.refs\.network"):
        harness.make(K.SUBNET, "orphan", {"cidr": "10.30.0.0/24"}, {"network": ("no-such-id",)})


def test_security_group_rules_keep_their_remote_groups(harness: Harness) -> None:
    """A rule's remote group is named by the source group's id (``"self"`` for its own
    group) and resolved through the ``remote_groups`` refs; one that cannot be resolved
    fails, naming the group, instead of becoming a rule from any source."""
    h = harness
    base = {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp"}
    base = {**base, "remote_ip_prefix": None}
    own = {**base, "port_range_min": 7000, "port_range_max": 7000, "remote_group": "self"}
    app = h.make(K.SECURITY_GROUP, "rg-app", {"rules": [own]})
    assert app.attrs["rules"] == [own]
    pg = {
        **base,
        "port_range_min": 5432,
        "port_range_max": 5432,
        "remote_group": "source-app-id",
        "description": "postgres from app",
    }
    db = h.make(K.SECURITY_GROUP, "rg-db", {"rules": [pg]}, {"remote_groups": (app.id,)})
    assert db.attrs["rules"] == [{**pg, "remote_group": app.id}]
    assert [r.id for r in db.refs["remote_groups"]] == [app.id]
    with pytest.raises(InvalidInput, match="rg-lost"):
        h.make(K.SECURITY_GROUP, "rg-lost", {"rules": [pg]})


def test_groups_that_name_each_other_are_linked_after_both_exist(harness: Harness) -> None:
    """app and db name each other as remote groups (a cycle, so neither can be created
    first with all its rules): each is created with its other rules, then a second
    create with the same key and the full rules (the link) adds the rules naming the
    other group, mapped to its copy; a repeated link changes nothing."""
    h = harness
    base = {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp"}
    base = {**base, "remote_ip_prefix": None}
    own = {**base, "port_range_min": 22, "port_range_max": 22, "remote_group": "self"}
    to_db = {**base, "port_range_min": 5432, "port_range_max": 5432, "remote_group": "src-app"}
    to_app = {**base, "port_range_min": 9000, "port_range_max": 9000, "remote_group": "src-db"}
    app = h.make(K.SECURITY_GROUP, "ln-app", {"rules": [own]})
    db = h.make(K.SECURITY_GROUP, "ln-db", {"rules": []})
    assert app.attrs["rules"] == [own] and db.attrs["rules"] == []
    for _ in range(2):
        app = h.make(K.SECURITY_GROUP, "ln-app", {"rules": [own, to_app]},
                     {"remote_groups": (db.id,)})  # fmt: skip
        db = h.make(K.SECURITY_GROUP, "ln-db", {"rules": [to_db]}, {"remote_groups": (app.id,)})
    by_port = {r["port_range_min"]: r for r in app.attrs["rules"]}
    assert sorted(by_port) == [22, 9000], app.attrs["rules"]
    assert by_port[22]["remote_group"] == "self"
    assert by_port[9000]["remote_group"] == db.id
    assert [r["remote_group"] for r in db.attrs["rules"]] == [app.id]
    assert [r.id for r in app.refs["remote_groups"]] == [db.id]


def test_release_leaves_what_the_user_set_and_tolerates_gone(harness: Harness) -> None:
    """``release`` (the end of a recovery) takes seawall's marks out of fields the user
    reads; the resource, its user attrs and its user tags are as they were."""
    h = harness
    vol = h.make(K.VOLUME, "rel-vol", {"size": 1 << 30, "metadata": {"backup": "nightly"}},
                 tags={"tier": "db"})  # fmt: skip
    h.driver.release(vol.ref)
    h.driver.release(vol.ref)
    got = h.driver.get(vol.ref)
    assert got is not None
    assert got.attrs.get("metadata") == {"backup": "nightly"}
    assert got.tags.get("tier") == "db"
    assert not [k for k in (got.attrs.get("metadata") or {}) if k.startswith("seawall:")]
    h.driver.delete(vol.ref)
    h.driver.release(vol.ref)  # already gone: success


def test_runtime_attrs_of_a_spec_are_not_copied(harness: Harness) -> None:
    server = harness.make(
        K.SERVER,
        "copied",
        {"status": "ERROR", "access_address": "192.0.2.1"},
        {"flavor": (harness.make(K.FLAVOR, "f").id,)},
    )
    assert server.attrs["status"] in ("ACTIVE", "BUILD")
    assert server.attrs.get("access_address") != "192.0.2.1"


def user_set_attrs(
    h: Harness, kind: ResourceKind
) -> tuple[dict[str, Any], dict[str, tuple[str, ...]]]:
    """A spec of ``kind`` with every attribute a user may set given a non-default value
    (issue 11), in the driver-neutral shape: what a checkpoint of such a resource holds."""
    if kind is K.NETWORK:
        return {"description": "front tier", "mtu": 1400, "port_security_enabled": False}, {}
    if kind is K.SUBNET:
        net = h.make(K.NETWORK, "ua-net")
        attrs = {
            "cidr": "10.40.0.0/24",
            "description": "front subnet",
            "gateway_ip": "10.40.0.254",
            "dns_nameservers": ["10.40.0.2", "10.40.0.3"],
            "allocation_pools": [{"start": "10.40.0.10", "end": "10.40.0.99"}],
            "host_routes": [{"destination": "192.168.40.0/24", "nexthop": "10.40.0.5"}],
        }
        return attrs, {"network": (net.id,)}
    if kind is K.ROUTER:
        _, sub = h.network("ua-rnet", "10.41.0.0/24")
        attrs = {
            "description": "edge",
            "external_gateway": False,
            "routes": [{"destination": "192.168.41.0/24", "nexthop": "10.41.0.5"}],
        }
        return attrs, {"subnets": (sub.id,)}
    if kind is K.PORT:
        net, sub = h.network("ua-pnet", "10.42.0.0/24")
        attrs = {
            "description": "vip holder",
            "fixed_ips": ["10.42.0.10"],
            "allowed_address_pairs": [
                {"ip_address": "10.42.0.200", "mac_address": "fa:16:3e:42:00:c8"}
            ],
            "extra_dhcp_opts": [{"opt_name": "mtu", "opt_value": "1400", "ip_version": 4}],
        }
        return attrs, {"network": (net.id,), "subnet": (sub.id,)}
    if kind is K.IMAGE:
        attrs = {
            "disk_format": "qcow2",
            "container_format": "bare",
            "min_disk": 1,
            "min_ram": 64,
            "visibility": "shared",
            "os_hidden": True,
            "protected": True,  # and the harness's clean-up deletes it all the same
            "properties": {
                "hw_disk_bus": "scsi",
                "hw_qemu_guest_agent": "yes",
                "os_distro": "debian",
                "shop_build": "2026.12-4",
            },
        }
        return attrs, {}
    if kind is K.VOLUME:
        attrs = {
            "size": 65536,
            "bootable": True,
            "description": "db data",
            "metadata": {"tier": "db", "owner": "team-a"},
            "image_metadata": {"hw_disk_bus": "scsi", "os_distro": "debian"},
        }
        return attrs, {}
    if kind is K.SERVER:
        flavor = h.make(K.FLAVOR, "ua-flavor", {"vcpus": 1, "ram_mb": 256, "disk_gb": 1})
        attrs = {
            "hostname": "ua-srv",
            "description": "the web server",
            "metadata": {"role": "web"},
            # base64 of "#cloud-config\nhostname: web\n", as Nova returns it
            "user_data": "I2Nsb3VkLWNvbmZpZwpob3N0bmFtZTogd2ViCg==",
            "config_drive": True,
        }
        return attrs, {"flavor": (flavor.id,)}
    raise AssertionError(kind)


USER_SET_KINDS = [K.NETWORK, K.SUBNET, K.ROUTER, K.PORT, K.IMAGE, K.VOLUME, K.SERVER]


@pytest.mark.parametrize("kind", USER_SET_KINDS, ids=lambda k: k.value)
def test_user_set_attrs_come_back_as_given(harness: Harness, kind: ResourceKind) -> None:
    """Every attribute a user set on a resource is kept by create and read back by get,
    find and list_resources, unchanged: what a recovery from a checkpoint restores."""
    attrs, refs = user_set_attrs(harness, kind)
    made = harness.make(kind, f"ua-{kind.value}", attrs, refs, {"app": "shop", "web": ""})
    assert made.tags["app"] == "shop" and made.tags["web"] == ""
    found = harness.driver.find(kind, harness.key(f"ua-{kind.value}"))
    got = harness.driver.get(made.ref)
    listed = [r for r in harness.driver.list_resources(kind) if r.id == made.id]
    for resource in (made, found, got, *listed):
        assert resource is not None
        for name, value in attrs.items():
            assert resource.attrs.get(name) == value, (name, resource.attrs.get(name))
        assert not any(k.startswith("seawall:") for k in resource.attrs.get("metadata", {}))


@pytest.mark.parametrize("kind", USER_SET_KINDS, ids=lambda k: k.value)
def test_a_spec_without_the_user_set_attrs_gets_the_defaults(
    harness: Harness, kind: ResourceKind
) -> None:
    """A checkpoint taken before these attrs were captured has none of them: each one
    missing from a spec is the cloud's default, never an error."""
    attrs, refs = prerequisites(harness, kind)
    made = harness.make(kind, f"ud-{kind.value}", attrs, refs)
    defaults: dict[str, Any] = {
        "description": "",
        "port_security_enabled": True,
        "routes": [],
        "extra_dhcp_opts": [],
        "properties": {},
        "visibility": "private",
        "os_hidden": False,
        "protected": False,
        "image_metadata": {},
        "user_data": "",
        "config_drive": False,
        "multiattach": False,
    }
    for name, default in defaults.items():
        assert made.attrs.get(name, default) == default, name
    if kind is K.VOLUME:
        assert made.attrs.get("metadata", {}) == {}


# -- discovery -----------------------------------------------------------------------------


def build_shop(h: Harness) -> dict[str, Any]:
    front, front_sub = h.network("front", "10.1.0.0/24")
    back, back_sub = h.network("back", "10.2.0.0/24")
    router = h.make(
        K.ROUTER, "router", {"external_gateway": True}, {"subnets": (front_sub.id, back_sub.id)}
    )
    data = h.make(K.VOLUME, "data", {"size": 65536})
    web = h.server("web", networks=(front,), tags={"app": "shop", "tier": "web"})
    db = h.server("db", networks=(back,), volumes=(data,), tags={"app": "shop", "tier": "db"})
    other_net, _ = h.network("other", "10.3.0.0/24")
    other = h.server("other", networks=(other_net,), tags={"app": "blog"})
    fip = h.make(K.FLOATING_IP, "web-fip", refs={"port": (web.refs["ports"][0].id,)})
    return dict(web=web, db=db, other=other, router=router, fip=fip, data=data, other_net=other_net)


def test_discover_follows_refs_routers_and_floating_ips(harness: Harness) -> None:
    shop = build_shop(harness)
    graph = harness.driver.discover(Selector.parse("tag:app=shop"))
    ids = {r.id for r in graph.resources}
    for name in ("web", "db", "router", "fip", "data"):
        assert shop[name].id in ids, name
    assert shop["other"].id not in ids and shop["other_net"].id not in ids
    assert graph.dangling() == []
    kinds = {r.kind for r in graph.resources}
    assert {K.NETWORK, K.SUBNET, K.PORT, K.FLAVOR, K.VOLUME, K.SERVER} <= kinds
    graph.restore_order()  # acyclic and complete
    again = harness.driver.discover(Selector.parse("tag:app=shop"))
    assert [r.ref for r in again.resources] == [r.ref for r in graph.resources]


def test_discover_selector_kinds(harness: Harness) -> None:
    shop = build_shop(harness)
    d = harness.driver
    members = d.discover(Selector.parse("members:web"))
    servers = {r.name for r in members.of_kind(K.SERVER)}
    assert servers == {"web"}
    assert shop["router"].id in {r.id for r in members.resources}  # router on web's subnet
    assert members.dangling() == []
    by_id = d.discover(Selector.parse(f"members:{shop['db'].id}"))
    assert {r.name for r in by_id.of_kind(K.SERVER)} == {"db"}
    tiers = d.discover(Selector.parse("tag:app=shop,tier=db"))
    assert {r.name for r in tiers.of_kind(K.SERVER)} == {"db"}
    project = d.discover(Selector.parse("project"))
    assert {"web", "db", "other"} <= {r.name for r in project.of_kind(K.SERVER)}
    assert d.discover(Selector.parse("tag:app=none")).resources == ()


# -- networks --------------------------------------------------------------------------------


def test_fixed_ips_are_validated_and_allocated(harness: Harness) -> None:
    h = harness
    net, sub = h.network("ipnet", "10.5.0.0/28")
    refs = {"network": (net.id,), "subnet": (sub.id,)}
    pinned = h.make(K.PORT, "pinned", {"fixed_ips": ["10.5.0.5"]}, refs)
    assert pinned.attrs["fixed_ips"] == ["10.5.0.5"]
    with pytest.raises(InvalidInput):
        h.make(K.PORT, "outside", {"fixed_ips": ["10.9.0.5"]}, refs)
    with pytest.raises(Conflict):
        h.make(K.PORT, "taken", {"fixed_ips": ["10.5.0.5"]}, refs)
    auto = [h.make(K.PORT, f"auto{i}", refs={"network": (net.id,)}) for i in range(3)]
    ips = [p.attrs["fixed_ips"][0] for p in auto]
    assert len(set(ips)) == 3 and "10.5.0.5" not in ips
    assert sub.attrs["gateway_ip"] not in ips
    assert all(ip.startswith("10.5.0.") for ip in ips)
    macs = {p.attrs["mac_address"] for p in [pinned, *auto]}
    assert len(macs) == 4
    assert all(tuple(r.id for r in p.refs["subnet"]) == (sub.id,) for p in auto)
    net2, _ = h.network("ipnet2", "10.5.0.0/28")  # same range, another network: allowed
    h.make(K.PORT, "elsewhere", {"fixed_ips": ["10.5.0.5"]}, {"network": (net2.id,)})


def test_unnamed_ports_are_found_by_key_not_by_name(harness: Harness) -> None:
    """Nova's own ports (``server create --network X``) have no name: two unnamed ports on
    one network are two resources, each found again by its key, and a server boots on them."""
    h, d = harness, harness.driver
    net, sub = h.network("anon", "10.6.0.0/28")
    refs = {"network": (net.id,), "subnet": (sub.id,)}
    specs = [
        ResourceSpec(K.PORT, "", h.key(f"anon-{i}"), {"fixed_ips": [ip]}, refs)
        for i, ip in enumerate(("10.6.0.5", "10.6.0.6"))
    ]
    first = [d.create(s) for s in specs]
    again = [d.create(s) for s in specs]
    assert [p.id for p in again] == [p.id for p in first]
    assert first[0].id != first[1].id
    assert [p.name for p in first] == ["", ""]
    assert [p.attrs["fixed_ips"] for p in first] == [["10.6.0.5"], ["10.6.0.6"]]
    for spec, port in zip(specs, first, strict=True):
        found = d.find(K.PORT, spec.key)
        assert found is not None and found.id == port.id and found.name == ""
    flavor = h.make(K.FLAVOR, "anon-flavor", {"vcpus": 1, "ram_mb": 256, "disk_gb": 1})
    server = h.make(K.SERVER, "anon-srv", {}, {"flavor": (flavor.id,), "ports": (first[0].id,)})
    graph = d.discover(Selector.parse(f"members:{server.id}"))
    (port,) = graph.of_kind(K.PORT)
    assert (port.id, port.name) == (first[0].id, "")


# -- volumes, snapshots, changed-block tracking -----------------------------------------


def test_snapshots_and_changed_extents(harness: Harness) -> None:
    d, h = harness.driver, harness
    vol = h.make(K.VOLUME, "cbt", {"size": 1 << 20})
    first = [(0, b"a" * 4096), (300_000, b"b" * 100)]
    for off, data in first:
        d.write_volume(vol.id, off, data)
    s1 = d.create_snapshot(vol.id, h.key("s1"))
    assert d.create_snapshot(vol.id, h.key("s1")).id == s1.id
    assert (s1.volume_id, s1.size) == (vol.id, 1 << 20)
    second = [(4096, b"c" * 10), (8192, b"d" * 10), (500_000, b"e" * 5000), (502_000, b"f" * 100)]
    for off, data in second:
        d.write_volume(vol.id, off, data)
    s2 = d.create_snapshot(vol.id, h.key("s2"))

    changed = d.changed_extents(s2.id, s1.id)
    assert covers(changed, [(o, len(b)) for o, b in second])
    if exact(harness):
        assert changed == [Extent(4096, 10), Extent(8192, 10), Extent(500_000, 5000)]
    full = d.changed_extents(s1.id, None)
    assert covers(full, [(o, len(b)) for o, b in first])
    assert d.changed_extents(s2.id, s2.id) == [] or not exact(harness)

    assert d.read_snapshot(s1.id, 0, 4096) == b"a" * 4096
    assert d.read_snapshot(s1.id, 4096, 10) == bytes(10)  # snapshot time, not now
    assert d.read_snapshot(s2.id, 4096, 10) == b"c" * 10
    assert d.read_snapshot(s2.id, 502_000, 100) == b"f" * 100
    assert d.read_snapshot(s2.id, (1 << 20) - 10, 100) == bytes(10)  # short at the end

    assert [s.id for s in d.list_snapshots(vol.id)] == [s1.id, s2.id]
    d.delete_snapshot(s1.id)
    d.delete_snapshot(s1.id)
    with pytest.raises(NotFound):
        d.changed_extents(s2.id, s1.id)  # unknown base: the caller reads in full
    with pytest.raises(NotFound):
        d.read_snapshot(s1.id, 0, 1)
    assert [s.id for s in d.list_snapshots(vol.id)] == [s2.id]


def test_write_volume_checks_bounds(harness: Harness) -> None:
    vol = harness.make(K.VOLUME, "small", {"size": 4096})
    harness.driver.write_volume(vol.id, 4000, b"x" * 96)
    with pytest.raises(InvalidInput):
        harness.driver.write_volume(vol.id, 4000, b"x" * 97)
    with pytest.raises(NotFound):
        harness.driver.write_volume("no-such-volume", 0, b"x")


SIZE = 64 * 1024
_writes = st.lists(
    st.tuples(st.integers(0, SIZE - 1), st.integers(1, 6000), st.integers(1, 255)), max_size=6
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(first=_writes, second=_writes)
def test_cbt_matches_a_model(harness: Harness, first: list[Any], second: list[Any]) -> None:
    """Random writes: snapshots read back the model; changed extents cover the writes."""
    d = harness.driver
    tag = uuid.uuid4().hex[:8]
    vol = harness.make(K.VOLUME, f"h-{tag}", {"size": SIZE})
    model = bytearray(SIZE)
    snaps = []
    applied: list[list[tuple[int, int]]] = []
    for phase in (first, second):
        done = []
        for off, n, byte in phase:
            n = min(n, SIZE - off)
            d.write_volume(vol.id, off, bytes([byte]) * n)
            model[off : off + n] = bytes([byte]) * n
            done.append((off, n))
        applied.append(done)
        snaps.append((d.create_snapshot(vol.id, f"{tag}-{len(snaps)}"), bytes(model)))
    (s1, m1), (s2, m2) = snaps
    assert d.read_snapshot(s1.id, 0, SIZE) == m1
    assert d.read_snapshot(s2.id, 0, SIZE) == m2
    changed = d.changed_extents(s2.id, s1.id)
    assert covers(changed, applied[1])
    if exact(harness):
        assert changed == merge_extents(applied[1])
    allocated = d.changed_extents(s1.id, None)
    nonzero = [(i, 1) for i, b in enumerate(m1) if b]
    assert covers(allocated, nonzero)
    d.delete(vol.ref)


# -- images ----------------------------------------------------------------------------------


def test_image_upload_download_and_volume_from_image(harness: Harness) -> None:
    d = harness.driver
    payload = bytes(range(256)) * 40
    image = harness.make(K.IMAGE, "img", {"disk_format": "raw"})
    d.write_image(image.id, [payload[:5000], payload[5000:]])
    assert b"".join(d.read_image(image.id)) == payload
    active = d.wait_for_status(image.ref, "active", 5)
    assert active.attrs["size"] == len(payload)
    assert active.attrs["checksum"] == hashlib.md5(payload, usedforsecurity=False).hexdigest()
    d.write_image(image.id, [payload])  # same bytes again: a no-op (resumable upload step)
    vol = harness.make(
        K.VOLUME, "from-img", {"size": 65536, "bootable": True}, {"image": (image.id,)}
    )
    snap = d.create_snapshot(vol.id, harness.key("img-snap"))
    assert d.read_snapshot(snap.id, 0, len(payload)) == payload
    assert covers(d.changed_extents(snap.id, None), [(0, len(payload))])


# -- the tenant boundary ---------------------------------------------------------------------


def test_another_project_sees_and_touches_nothing_of_this_one(harness: Harness) -> None:
    """``for_project``: a project's driver lists, finds, selects, fences, snapshots, reads
    and deletes nothing of another project's, and cannot build on its resources; to it
    they do not exist (the attack of issue 12: a workload of project B selecting A's
    servers and powering them off)."""
    h, mine = harness, harness.driver
    net, _ = h.network("own", "10.70.0.0/24")
    vol = h.make(K.VOLUME, "own-vol", {"size": 1 << 20})
    mine.write_volume(vol.id, 0, b"tenant-a" * 512)
    snap = mine.create_snapshot(vol.id, h.key("own-snap"))
    server = h.server("own-srv", networks=(net,), tags={"app": h.prefix})
    mine.wait_for_status(server.ref, "ACTIVE", 60)
    theirs = h.other_project()

    own_ids = {net.id, vol.id, server.id}
    assert own_ids.isdisjoint(r.id for r in theirs.list_resources())
    assert all(theirs.get(r) is None for r in (net.ref, vol.ref, server.ref))
    assert theirs.find(K.VOLUME, h.key("own-vol")) is None
    selected = theirs.discover(Selector.parse(f"tag:app={h.prefix}"))
    assert own_ids.isdisjoint(r.id for r in selected.resources)
    with pytest.raises(NotFound):
        theirs.power_off(server.id)
    with pytest.raises(NotFound):
        theirs.create_snapshot(vol.id, h.key("their-snap"))
    with pytest.raises(NotFound):
        theirs.read_snapshot(snap.id, 0, 4096)
    with pytest.raises((InvalidInput, NotFound)):
        theirs.create(
            ResourceSpec(K.PORT, "their-port", h.key("their-port"), {}, {"network": (net.id,)})
        )
    theirs.delete(vol.ref)  # "already gone", as far as it knows: nothing happens
    theirs.delete(server.ref)

    assert mine.get(vol.ref) is not None
    assert mine.wait_for_status(server.ref, "ACTIVE", 5).attrs["status"] == "ACTIVE"
    assert mine.read_snapshot(snap.id, 0, 8) == b"tenant-a"
    assert mine.find(K.PORT, h.key("their-port")) is None


# -- servers ---------------------------------------------------------------------------------


def test_power_off_and_on(harness: Harness) -> None:
    d = harness.driver
    server = harness.server("pow")
    d.wait_for_status(server.ref, "ACTIVE", 30)
    d.power_off(server.id)
    assert d.wait_for_status(server.ref, "SHUTOFF", 30).attrs["status"] == "SHUTOFF"
    d.power_on(server.id)
    assert d.wait_for_status(server.ref, "ACTIVE", 30).attrs["status"] == "ACTIVE"
    with pytest.raises(NotFound):
        d.power_on("no-such-server")


def test_wait_for_status_times_out_naming_the_status(harness: Harness) -> None:
    d = harness.driver
    server = harness.server("waiter")
    d.wait_for_status(server.ref, "ACTIVE", 30)
    with pytest.raises(StepTimeout, match="SHUTOFF"):
        d.wait_for_status(server.ref, "SHUTOFF", 0.3)
    d.delete(server.ref)
    assert d.wait_for_status(server.ref, "DELETED", 5).attrs["status"] == "DELETED"


def test_guest_agent_needs_an_agent(harness: Harness) -> None:
    server = harness.server("noagent", guest_agent=False)
    with pytest.raises(PermanentError):
        harness.driver.guest_agent(server.id, "fsfreeze-freeze")


# -- quotas and availability --------------------------------------------------------------


def test_quotas_and_conflict_beyond_them(harness: Harness) -> None:
    d = harness.driver
    assert set(d.quotas()) >= {
        "servers",
        "volumes",
        "volume_bytes",
        "networks",
        "ports",
        "floating_ips",
    }
    harness.limit_quotas(volumes=2, volume_bytes=100_000, servers=1)
    left = d.quotas()
    assert (left["volumes"], left["volume_bytes"], left["servers"]) == (2, 100_000, 1)
    assert left["networks"] == -1
    harness.make(K.VOLUME, "q1", {"size": 60_000})
    assert d.quotas()["volume_bytes"] == 40_000
    with pytest.raises(Conflict, match="volume_bytes"):
        harness.make(K.VOLUME, "q2", {"size": 60_000})
    assert harness.driver.find(K.VOLUME, harness.key("q2")) is None
    harness.make(K.VOLUME, "q3", {"size": 1000})
    with pytest.raises(Conflict, match="volumes"):
        harness.make(K.VOLUME, "q4", {"size": 1000})
    harness.server("s1")
    with pytest.raises(Conflict, match="servers"):
        harness.server("s2")
    assert d.quotas()["servers"] == 0


def test_site_unavailable_when_down(harness: Harness) -> None:
    d = harness.driver
    d.ping()
    harness.take_down()
    with pytest.raises(SiteUnavailable):
        d.ping()
    with pytest.raises(SiteUnavailable):
        d.list_resources()
    with pytest.raises(SiteUnavailable):
        harness.make(K.NETWORK, "while-down")
