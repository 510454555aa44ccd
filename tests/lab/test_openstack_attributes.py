"""Every attribute a user set comes back after a failover (issue 11, "faithful recovery").

Built with openstacksdk directly on site A, as an operator would: a network (description,
MTU), a subnet (description, DNS servers, host routes, allocation pool, gateway), a router
(description, extra routes, a gateway without SNAT), a port (description, allowed address
pair, extra DHCP option), an image with properties (``hw_disk_bus``,
``hw_qemu_guest_agent``, ``os_distro``, a custom one), tags, min disk/RAM, shared and
protected, a data volume with description and metadata, a boot volume made from the image
(its image metadata, plus one key set by hand), a server booted from the image with
user_data, description, metadata, tags and a config drive on a Nova-created port and the
port above, and a server booted from the volume. Protected and failed over to site B
with the ``Service``; then site B is read back with openstacksdk and the raw APIs (never
with seawall's discovery) and every attribute is compared with the source's.

Not covered here: QoS policies (the lab's Neutron has no ``qos`` extension), keypairs,
flavors, volume types and server groups (their own slices of issue 11), security groups
(``test_openstack_security_groups.py``).
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from seawall.model import RunState, Selector
from seawall.service import Service

from .test_openstack_nova_ports import active, connect, wait_until

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(2400)]

CIDR = "10.76.0.0/24"
RAW_CIDR = "10.77.0.0/24"
USER_DATA = base64.b64encode(b"#cloud-config\nhostname: web\nruncmd:\n  - [touch, /ok]\n").decode()
ROUTES = [
    {"destination": "192.168.76.0/24", "nexthop": "10.76.0.5"},
    {"destination": "192.168.77.0/24", "nexthop": "10.76.0.6"},
]
IMAGE_PROPS = {
    "hw_disk_bus": "scsi",
    "hw_qemu_guest_agent": "yes",
    "os_distro": "debian",
    "shop_build": "2026.12-4",
}
#: what Glance computes or keeps per site: not an image's user-set properties
GLANCE_OWN = {"id", "created_at", "updated_at", "owner", "self", "file", "schema", "status",
              "direct_url", "locations", "stores", "size", "virtual_size", "checksum",
              "os_hash_algo", "os_hash_value", "name", "tags"}  # fmt: skip


def user_tags(tags: Any) -> list[str]:
    """A resource's tags without seawall's own (``seawall:*``): issue 11 lets seawall
    keep its marks in tags where the API has them (docs/reference/attributes.md)."""
    return sorted(t for t in tags or [] if not str(t).startswith("seawall:"))


def image_json(conn: Any, image_id: str) -> dict[str, Any]:
    """An image as Glance's API returns it (not through seawall, nor openstacksdk's
    typed attributes)."""
    body: dict[str, Any] = conn.image.get(f"/images/{image_id}").json()
    return body


def image_props(body: dict[str, Any]) -> dict[str, Any]:
    """What the user set on an image: everything but Glance's own fields, its reserved
    ``os_glance_*`` and seawall's ``seawall:*`` properties."""
    return {
        k: v
        for k, v in body.items()
        if k not in GLANCE_OWN and not k.startswith(("os_glance_", "seawall:"))
    }


def user_meta(meta: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (meta or {}).items() if not k.startswith("seawall:")}


def build(conn: Any, marker: str) -> dict[str, Any]:
    """On site A, with openstacksdk only."""
    w: dict[str, Any] = {}
    net = w["net"] = conn.network.create_network(
        name=f"{marker}-net", description="front tier network", mtu=1400
    )
    w["subnet"] = conn.network.create_subnet(
        name=f"{marker}-sub", network_id=net.id, cidr=CIDR, ip_version=4,
        description="front tier subnet", gateway_ip="10.76.0.254",
        dns_nameservers=["10.76.0.2", "10.76.0.3"],
        allocation_pools=[{"start": "10.76.0.10", "end": "10.76.0.200"}],
        host_routes=[{"destination": "172.16.76.0/24", "nexthop": "10.76.0.7"}],
    )  # fmt: skip
    raw = w["raw"] = conn.network.create_network(
        name=f"{marker}-raw", description="no port security", port_security_enabled=False
    )
    conn.network.create_subnet(
        name=f"{marker}-raw-sub", network_id=raw.id, cidr=RAW_CIDR, ip_version=4,
        enable_dhcp=False, gateway_ip=None,
    )  # fmt: skip
    (public,) = [n for n in conn.network.networks(is_router_external=True) if n.name == "public"]
    router = w["router"] = conn.network.create_router(
        name=f"{marker}-router", description="edge router",
        external_gateway_info={"network_id": public.id, "enable_snat": False},
    )  # fmt: skip
    conn.network.add_interface_to_router(router, subnet_id=w["subnet"].id)
    w["router"] = conn.network.update_router(router, routes=ROUTES)
    w["port"] = conn.network.create_port(
        name=f"{marker}-vip", network_id=net.id, description="vip holder",
        allowed_address_pairs=[{"ip_address": "10.76.0.250"}],
        extra_dhcp_opts=[{"opt_name": "mtu", "opt_value": "1400", "ip_version": 4}],
    )  # fmt: skip
    w["flavor"] = conn.compute.create_flavor(name=f"{marker}-tiny", ram=256, vcpus=1, disk=1)
    image = conn.image.create_image(
        name=f"{marker}-image", disk_format="raw", container_format="bare",
        data=b"\1" * (1 << 20), visibility="shared", allow_duplicates=True,
        min_disk=1, min_ram=64, tags=["web", "os=debian"], **IMAGE_PROPS,
    )  # fmt: skip
    w["image"] = conn.image.update_image(image, protected=True, is_hidden=True)
    w["data"] = conn.block_storage.create_volume(
        name=f"{marker}-data", size=1, description="db data",
        metadata={"tier": "db", "owner": "team-a"},
    )  # fmt: skip
    w["boot"] = conn.block_storage.create_volume(
        name=f"{marker}-boot", size=1, image_id=image.id, description="db boot disk"
    )
    for v in ("data", "boot"):
        w[v] = conn.block_storage.wait_for_status(w[v], status="available", wait=300)
    conn.block_storage.set_volume_image_metadata(w["boot"], custom_boot="by-hand")
    web = conn.compute.create_server(
        name=f"{marker}-web", flavor_id=w["flavor"].id, image_id=image.id,
        networks=[{"uuid": net.id}, {"port": w["port"].id}], user_data=USER_DATA,
        description="the web server", metadata={"role": "web", "owner": "team-a"},
        tags=["web", "app=shop"], config_drive=True, availability_zone="nova",
    )  # fmt: skip
    db = conn.compute.create_server(
        name=f"{marker}-db", flavor_id=w["flavor"].id,
        networks=[{"uuid": net.id}, {"uuid": raw.id}],
        description="the db server", metadata={"role": "db"}, tags=["db"],
        block_device_mapping_v2=[{"uuid": w["boot"].id, "source_type": "volume",
                                  "destination_type": "volume", "boot_index": 0,
                                  "delete_on_termination": False}],
    )  # fmt: skip
    w["servers"] = [conn.compute.wait_for_server(s, status="ACTIVE", wait=300) for s in (web, db)]
    conn.compute.create_volume_attachment(w["servers"][0], volume_id=w["data"].id)
    conn.block_storage.wait_for_status(w["data"], status="in-use", wait=300)
    return w


def attempt(what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
    """One clean-up call; an error is printed and cleaning goes on."""
    try:
        fn(*args, **kwargs)
    except Exception as exc:  # keep cleaning
        print(f"[attributes] cleanup {what}: {exc}")


def mine(items: Any, marker: str) -> list[Any]:
    return [x for x in items if str(x.name or "").startswith(marker)]


def cleanup_network(conn: Any, marker: str) -> None:
    """Routers (routes, interfaces), then every port on the networks, then the networks."""
    for r in mine(conn.network.routers(), marker):
        attempt(f"routes {r.name}", conn.network.update_router, r, routes=[])
        for p in conn.network.ports(device_id=r.id):
            if p.device_owner == "network:router_interface":
                for ip in p.fixed_ips:
                    attempt(f"interface {ip}", conn.network.remove_interface_from_router, r,
                            subnet_id=ip["subnet_id"])  # fmt: skip
        attempt(f"router {r.name}", conn.network.delete_router, r, ignore_missing=True)
    for n in mine(conn.network.networks(), marker):
        for p in conn.network.ports(network_id=n.id):
            if not str(p.device_owner or "").startswith("network:"):
                attempt(f"port {p.id}", conn.network.delete_port, p, ignore_missing=True)
        attempt(f"network {n.name}", conn.network.delete_network, n, ignore_missing=True)


def cleanup(conn: Any, marker: str) -> None:
    """Everything named for ``marker`` (and every port on its networks)."""
    servers = mine(conn.compute.servers(), marker)
    for s in servers:
        attempt(f"server {s.name}", conn.compute.delete_server, s, ignore_missing=True)
    for s in servers:
        attempt(f"wait {s.name}", conn.compute.wait_for_delete, s, wait=300)
    volumes = mine(conn.block_storage.volumes(), marker)
    for v in volumes:
        attempt(f"wait {v.name}", conn.block_storage.wait_for_status, v,
                status="available", failures=["error"], wait=120)  # fmt: skip
        attempt(f"volume {v.name}", conn.block_storage.delete_volume, v, ignore_missing=True,
                cascade=True)  # fmt: skip
    cleanup_network(conn, marker)
    for f in mine(conn.compute.flavors(is_public=None), marker):
        attempt(f"flavor {f.name}", conn.compute.delete_flavor, f, ignore_missing=True)
    for i in mine([*conn.image.images(), *conn.image.images(is_hidden=True)], marker):
        if i.is_protected:
            attempt(f"unprotect {i.name}", conn.image.update_image, i, protected=False)
        attempt(f"image {i.name}", conn.image.delete_image, i, ignore_missing=True)
    for v in volumes:
        attempt(f"wait {v.name}", conn.block_storage.wait_for_delete, v, wait=300)


@pytest.fixture
def sites(lab_service: Service) -> Iterator[tuple[Any, Any, str]]:
    marker = f"at{uuid.uuid4().hex[:6]}"
    a, b = connect("a"), connect("b")
    try:
        yield a, b, marker
    finally:
        for conn in (b, a):
            cleanup(conn, marker)
            conn.close()


def one(items: Any, name: str) -> Any:
    found = [x for x in items if x.name == name]
    assert len(found) == 1, f"{len(found)} resources named {name!r} on site B"
    return found[0]


def test_every_user_set_attribute_fails_over(
    lab_service: Service, sites: tuple[Any, Any, str]
) -> None:
    svc, (a, b, marker) = lab_service, sites
    t0 = time.monotonic()
    w = build(a, marker)
    src_boot = a.block_storage.get_volume(w["boot"].id)
    assert src_boot.volume_image_metadata["hw_disk_bus"] == "scsi"  # Cinder copied them
    src_web = a.compute.get_server(w["servers"][0].id)
    # what is compared below is there to compare: these credentials see user_data
    assert (src_web.user_data, src_web.description) == (USER_DATA, "the web server")
    assert IMAGE_PROPS.items() <= image_json(a, w["image"].id).items()
    print(f"[attributes] built on A in {time.monotonic() - t0:.1f}s")

    names = ",".join(s.name for s in w["servers"])
    svc.create_workload(marker, "site-a", Selector.parse(f"members:{names}"), "gold", ["site-b"])
    svc.set_plan({"workload": marker, "target": "site-b"})
    t1 = time.monotonic()
    protect = svc.protect(marker)
    assert protect.state is RunState.SUCCEEDED, protect.error
    t2 = time.monotonic()
    run = svc.failover(marker, target="site-b")
    failed = [(st.name, st.state.value, st.detail) for st in svc.steps(run.id) if st.detail]
    assert run.state is RunState.SUCCEEDED, (run.error, failed)
    print(f"[attributes] protect {t2 - t1:.1f}s, failover {time.monotonic() - t2:.1f}s")

    diffs: list[str] = []

    def same(what: str, want: Any, got: Any) -> None:
        if want != got:
            diffs.append(f"{what}: source {want!r}, site B {got!r}")

    # network and subnet
    src_net, net = a.network.get_network(w["net"].id), one(b.network.networks(), w["net"].name)
    for f in ("description", "mtu", "is_port_security_enabled", "is_shared"):
        same(f"network.{f}", getattr(src_net, f), getattr(net, f))
    src_raw, raw = a.network.get_network(w["raw"].id), one(b.network.networks(), w["raw"].name)
    for f in ("description", "mtu", "is_port_security_enabled"):
        same(f"network raw.{f}", getattr(src_raw, f), getattr(raw, f))
    fields = ("description", "cidr", "gateway_ip", "dns_nameservers", "host_routes")
    fields += ("allocation_pools", "is_dhcp_enabled", "ipv6_ra_mode", "ipv6_address_mode")
    for src_net_id, net_id in ((src_net.id, net.id), (src_raw.id, raw.id)):
        (src_sub,) = a.network.subnets(network_id=src_net_id)
        sub = one(b.network.subnets(network_id=net_id), src_sub.name)
        for f in fields:
            same(f"subnet {src_sub.name}.{f}", getattr(src_sub, f), getattr(sub, f))
    sub = one(b.network.subnets(network_id=net.id), w["subnet"].name)

    # router
    src_router = a.network.get_router(w["router"].id)
    router = one(b.network.routers(), src_router.name)
    same("router.description", src_router.description, router.description)
    by_route = lambda rs: sorted((r["destination"], r["nexthop"]) for r in rs or [])  # noqa: E731
    same("router.routes", by_route(src_router.routes), by_route(router.routes))
    gw, src_gw = router.external_gateway_info or {}, src_router.external_gateway_info or {}
    same("router.gateway network", "public", b.network.get_network(gw["network_id"]).name)
    same("router.enable_snat", src_gw.get("enable_snat"), gw.get("enable_snat"))
    interfaces = [p for p in b.network.ports(device_id=router.id)
                  if p.device_owner == "network:router_interface"]  # fmt: skip
    same("router.interfaces", [sub.id], [ip["subnet_id"] for p in interfaces for ip in p.fixed_ips])

    # the port seawall's plan pre-creates, and the one Nova created
    src_port = a.network.get_port(w["port"].id)
    port = one(b.network.ports(network_id=net.id), src_port.name)
    for f in ("description", "allowed_address_pairs", "extra_dhcp_opts",
              "is_port_security_enabled", "binding_vnic_type", "mac_address"):  # fmt: skip
        want, got = getattr(src_port, f), getattr(port, f)
        if f == "extra_dhcp_opts":
            want, got = (sorted(o.items()) for o in want), (sorted(o.items()) for o in got)
            want, got = list(want), list(got)
        same(f"port.{f}", want, got)
    same("port.fixed_ips", [i["ip_address"] for i in src_port.fixed_ips],
         [i["ip_address"] for i in port.fixed_ips])  # fmt: skip

    # image: every property, visibility, tags, flags, as Glance's API returns them
    src_image = image_json(a, w["image"].id)
    images = [*b.image.images(), *b.image.images(is_hidden=True)]
    image = image_json(b, one(images, src_image["name"]).id)
    same("image.properties", image_props(src_image), image_props(image))
    same("image.tags", user_tags(src_image["tags"]), user_tags(image["tags"]))
    for f in ("visibility", "protected", "os_hidden", "min_disk", "min_ram", "disk_format",
              "container_format", "checksum", "size"):  # fmt: skip
        same(f"image.{f}", src_image[f], image.get(f))
    assert IMAGE_PROPS.items() <= image.items(), "the named properties are on B's image"

    # volumes
    for v in ("data", "boot"):
        src = a.block_storage.get_volume(w[v].id)
        vol = one(b.block_storage.volumes(), src.name)
        for f in ("description", "is_bootable", "size", "availability_zone", "is_multiattach"):
            same(f"volume {v}.{f}", getattr(src, f), getattr(vol, f))
        same(f"volume {v}.metadata", user_meta(src.metadata), user_meta(vol.metadata))
        src_vim = {k: x for k, x in (src.volume_image_metadata or {}).items() if k != "image_id"}
        vim = {k: x for k, x in (vol.volume_image_metadata or {}).items() if k != "image_id"}
        same(f"volume {v}.volume_image_metadata", src_vim, vim)

    # servers
    for s in w["servers"]:
        src = a.compute.get_server(s.id)
        rec = one(b.compute.servers(), src.name)
        server = wait_until(f"{src.name} ACTIVE on B", lambda i=rec.id: active(b, i))
        for f in ("user_data", "description", "availability_zone", "key_name", "hostname"):
            same(f"server {src.name}.{f}", getattr(src, f), getattr(server, f))
        same(f"server {src.name}.config_drive", bool(src.config_drive),
             bool(server.config_drive))  # fmt: skip
        same(f"server {src.name}.metadata", user_meta(src.metadata), user_meta(server.metadata))
        same(f"server {src.name}.tags", user_tags(src.tags), user_tags(server.tags))
        src_image_id = (src.image or {}).get("id")
        got_image_id = (server.image or {}).get("id")
        if src_image_id:
            got = b.image.get_image(got_image_id).name if got_image_id else None
            same(f"server {src.name}.image", a.image.get_image(src_image_id).name, got)
        else:  # booted from a volume: so is the copy, from the copy of that volume
            same(f"server {src.name}.image", None, got_image_id or None)
            attached = {a_.volume_id: a_.device for a_ in b.compute.volume_attachments(server)}
            (boot,) = [v for v in b.block_storage.volumes() if v.name == w["boot"].name]
            same(f"server {src.name}.boot volume", True, boot.id in attached)
        nics = lambda conn, sid: sorted(  # noqa: E731
            (conn.network.get_network(p.network_id).name, p.is_port_security_enabled,
             p.description or "", len(p.security_group_ids or []))
            for p in conn.network.ports(device_id=sid)
        )  # fmt: skip
        same(f"server {src.name}.ports", nics(a, src.id), nics(b, server.id))
    assert diffs == [], "\n".join(diffs)
    web = b.compute.get_server(one(b.compute.servers(), w["servers"][0].name).id)
    assert base64.b64decode(web.user_data).startswith(b"#cloud-config\n")
