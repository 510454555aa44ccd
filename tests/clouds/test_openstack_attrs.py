"""The openstack driver keeps every attribute a user set (issue 11), without a cloud.

Each test builds openstacksdk resources from the JSON an OpenStack API returns, reads them
with the driver's discovery into the driver-neutral shape, hands that to the driver's
restore with a recording stand-in for openstacksdk's proxies, and checks that what
restore asks the cloud for is what the source held. The lab test
``tests/lab/test_openstack_attributes.py`` does the same against the real two sites.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from openstack.block_storage.v3.volume import Volume
from openstack.compute.v2.server import Server
from openstack.image.v2.image import Image
from openstack.network.v2.network import Network
from openstack.network.v2.port import Port
from openstack.network.v2.router import Router
from openstack.network.v2.subnet import Subnet

from seawall.clouds.openstack.connection import CloudConnection
from seawall.clouds.openstack.discovery import Discovery, image_properties
from seawall.clouds.openstack.naming import tags_to_strings
from seawall.clouds.openstack.restore import Restore
from seawall.clouds.schema import user_attrs
from seawall.errors import PermanentError
from seawall.model import Resource, ResourceKind, Site

K = ResourceKind
#: openstacksdk warns about its own internals when resources are built from API bodies
pytestmark = pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK50Warning")


class Cloud:
    """A Discovery and a Restore over one recording stand-in for openstacksdk."""

    def __init__(self) -> None:
        self.conn = mock.MagicMock(name="conn")
        connection = CloudConnection(Site("a", "openstack", {"cloud": "x"}), "x", None)
        connection._conn = self.conn
        self.discovery = Discovery(connection)
        self.restore = Restore(connection, self.discovery, timeout=5, placeholder_image="")

    def create(self, kind: ResourceKind, source: Resource, refs: dict[str, Any]) -> Any:
        """Run the kind's create with the captured attrs (as a recovery's spec holds
        them: runtime attrs left out) and the tags, and return the mock it called."""
        make = getattr(self.restore, f"_create_{kind.value}")
        make(source.name, user_attrs(source.attrs), refs, dict(source.tags))
        return self.conn


@pytest.fixture
def cloud() -> Cloud:
    return Cloud()


def test_a_plain_tag_keeps_its_shape() -> None:
    assert tags_to_strings({"web": "", "app": "shop"}) == ["app=shop", "web"]


def test_networks_keep_description_port_security_and_mtu(cloud: Cloud) -> None:
    src = Network.existing(
        id="n1", name="front", description="front tier", mtu=1400, status="ACTIVE",
        port_security_enabled=False, shared=False, admin_state_up=True, tags=["app=shop"],
        **{"router:external": False},
    )  # fmt: skip
    got = cloud.discovery._network(src)
    assert got.attrs["description"] == "front tier"
    assert got.attrs["port_security_enabled"] is False
    assert "shared" not in got.attrs and "admin_state_up" not in got.attrs  # defaults
    cloud.create(K.NETWORK, got, {})
    body = cloud.conn.network.create_network.call_args.kwargs
    made = Network.new(**body)
    assert (made.description, made.mtu, made.is_port_security_enabled) == (
        "front tier",
        1400,
        False,
    )


def test_a_network_left_at_the_defaults_has_the_old_shape(cloud: Cloud) -> None:
    """A checkpoint taken before issue 11 holds exactly these keys for such a network."""
    src = Network.existing(id="n1", name="n", mtu=1500, status="ACTIVE", description="",
                           port_security_enabled=True, **{"router:external": False})  # fmt: skip
    assert set(cloud.discovery._network(src).attrs) == {"external", "isolated", "mtu", "status"}
    old = Resource(K.NETWORK, "n1", "n", {"external": False, "isolated": False, "mtu": 1500})
    cloud.create(K.NETWORK, old, {})
    assert cloud.conn.network.create_network.call_args.kwargs == {"name": "n", "mtu": 1500}


def test_subnets_keep_routes_pools_dns_gateway_and_ipv6_modes(cloud: Cloud) -> None:
    src = Subnet.existing(
        id="s1", name="v6", network_id="n1", cidr="fd00:40::/64", ip_version=6,
        gateway_ip="fd00:40::1", enable_dhcp=True, description="v6 subnet",
        dns_nameservers=["fd00:40::2"], ipv6_ra_mode="slaac", ipv6_address_mode="slaac",
        allocation_pools=[{"start": "fd00:40::10", "end": "fd00:40::ff"}],
        host_routes=[{"destination": "fd00:99::/64", "nexthop": "fd00:40::5"}],
    )  # fmt: skip
    got = cloud.discovery._subnet(src)
    cloud.create(K.SUBNET, got, {"network": ("n2",)})
    made = Subnet.new(**cloud.conn.network.create_subnet.call_args.kwargs)
    fields = ("cidr", "gateway_ip", "description", "dns_nameservers", "ipv6_ra_mode")
    fields += ("ipv6_address_mode", "allocation_pools", "host_routes", "ip_version")
    for field in fields:
        assert getattr(made, field) == getattr(src, field), field
    assert made.network_id == "n2"


def test_routers_keep_description_extra_routes_and_the_gateway(cloud: Cloud) -> None:
    src = Router.existing(
        id="r1", name="edge", description="edge router", status="ACTIVE",
        routes=[{"destination": "192.168.9.0/24", "nexthop": "10.0.0.5"},
                {"destination": "192.168.8.0/24", "nexthop": "10.0.0.6"}],
        external_gateway_info={"network_id": "ext-a", "enable_snat": False},
    )  # fmt: skip
    cloud.conn.network.get_network.return_value = SimpleNamespace(name="public")
    got = cloud.discovery._router(src, ["s1"])
    assert got.attrs["external_network"] == "public" and got.attrs["enable_snat"] is False
    ext_b = SimpleNamespace(id="ext-b", name="public")
    cloud.conn.network.networks.return_value = [SimpleNamespace(id="x", name="other"), ext_b]
    cloud.create(K.ROUTER, got, {"subnets": ("s2",)})
    net = cloud.conn.network
    body = net.create_router.call_args.kwargs
    assert body["description"] == "edge router"
    assert body["external_gateway_info"] == {"network_id": "ext-b", "enable_snat": False}
    router = net.create_router.return_value
    net.add_interface_to_router.assert_called_once_with(router, subnet_id="s2")
    (call,) = net.update_router.call_args_list
    assert sorted(call.kwargs["routes"], key=str) == sorted(src.routes, key=str)
    names = [c[0] for c in net.method_calls]
    assert names.index("add_interface_to_router") < names.index("update_router")


def test_ports_keep_description_pairs_dhcp_options_and_port_security(cloud: Cloud) -> None:
    src = Port.existing(
        id="p1", name="", network_id="n1", mac_address="fa:16:3e:00:00:01",
        fixed_ips=[{"subnet_id": "s1", "ip_address": "10.0.0.10"}], description="vip",
        allowed_address_pairs=[{"ip_address": "10.0.0.200", "mac_address": "fa:16:3e:00:00:01"}],
        extra_dhcp_opts=[{"opt_name": "mtu", "opt_value": "1400", "ip_version": 4}],
        port_security_enabled=False, security_group_ids=[],
        **{"binding:vnic_type": "direct"},
    )  # fmt: skip
    got = cloud.discovery._port(src)
    cloud.conn.network.subnets.return_value = [SimpleNamespace(id="s2", cidr="10.0.0.0/24")]
    cloud.create(K.PORT, got, {"network": ("n2",), "subnet": ("s2",)})
    made = Port.new(**cloud.conn.network.create_port.call_args.kwargs)
    for field in ("description", "allowed_address_pairs", "extra_dhcp_opts",
                  "is_port_security_enabled", "binding_vnic_type", "mac_address"):  # fmt: skip
        assert getattr(made, field) == getattr(src, field), field
    assert made.fixed_ips == [{"subnet_id": "s2", "ip_address": "10.0.0.10"}]


IMAGE = {
    "id": "i1", "name": "debian", "status": "active", "visibility": "community",
    "protected": True, "os_hidden": True, "min_disk": 2, "min_ram": 256,
    "disk_format": "qcow2", "container_format": "bare", "size": 1024, "checksum": "abc",
    "owner": "p1", "tags": ["web", "os=debian"], "hw_disk_bus": "scsi",
    "hw_qemu_guest_agent": "yes", "os_distro": "debian", "hw_cpu_sockets": "2",
    "hw_boot_menu": "true", "shop_build": "2026.12-4", "seawall:md5": "abc",
    "os_glance_importing_to_stores": "", "owner_specified.openstack.md5": "abc",
    "stores": "ceph", "file": "/v2/images/i1/file", "schema": "/v2/schemas/image",
}  # fmt: skip


def test_every_image_property_is_captured_as_glance_holds_it() -> None:
    props = image_properties(Image.existing(**IMAGE))
    assert props == {
        "hw_boot_menu": "true",
        "hw_cpu_sockets": "2",
        "hw_disk_bus": "scsi",
        "hw_qemu_guest_agent": "yes",
        "os_distro": "debian",
        "owner_specified.openstack.md5": "abc",
        "shop_build": "2026.12-4",
    }


def test_images_keep_properties_visibility_tags_and_flags(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    got = cloud.discovery._image(Image.existing(**IMAGE))
    assert got.tags == {"web": "", "os": "debian", "seawall:md5": "abc"}
    made: list[Image] = []

    def create(self: Image, session: Any, **kwargs: Any) -> Any:
        made.append(self)
        return SimpleNamespace(id="i2")

    monkeypatch.setattr(Image, "create", create)
    cloud.create(K.IMAGE, got, {})
    body = made[0]._prepare_request_body(prepend_key=False)
    for field in ("visibility", "protected", "os_hidden", "min_disk", "min_ram", "disk_format",
                  "container_format", "hw_disk_bus", "hw_qemu_guest_agent", "os_distro",
                  "shop_build", "hw_cpu_sockets", "hw_boot_menu"):  # fmt: skip
        assert body[field] == IMAGE[field], field
    # seawall's marks are Glance tags (an earlier version's property is read back as one)
    assert sorted(body["tags"]) == sorted([*IMAGE["tags"], "seawall:md5=abc"])
    assert not [k for k in body if k.startswith("seawall:")], "no seawall property"
    assert "os_glance_importing_to_stores" not in body
    assert not {"stores", "file", "schema", "owner", "id"} & set(body)  # Glance's, read-only


def test_a_public_image_the_target_refuses_names_what_to_do(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openstack import exceptions as os_exc

    def refuse(self: Image, session: Any, **kwargs: Any) -> Any:
        raise os_exc.ForbiddenException("Forbidden to set public image", http_status=403)

    monkeypatch.setattr(Image, "create", refuse)
    got = cloud.discovery._image(Image.existing(**{**IMAGE, "visibility": "public"}))
    with pytest.raises(PermanentError, match=r"public.*mappings\.image"):
        cloud.create(K.IMAGE, got, {})


def test_a_protected_image_is_unprotected_before_a_delete(cloud: Cloud) -> None:
    from seawall.model import ResourceRef

    image = cloud.conn.image.find_image.return_value
    image.is_protected = True
    cloud.restore.delete(ResourceRef(K.IMAGE, "i1"))
    cloud.conn.image.update_image.assert_called_once_with(image, protected=False)
    cloud.conn.image.delete_image.assert_called_once_with("i1", ignore_missing=True)


def test_volumes_keep_metadata_description_and_image_metadata(cloud: Cloud) -> None:
    src = Volume.existing(
        id="v1", name="boot", size=1, status="available", bootable="true",
        availability_zone="nova", description="boot disk", multiattach=False,
        metadata={"tier": "db", "seawall:key": "k1", "seawall:size": str(1 << 30)},
        volume_image_metadata={"image_id": "i1", "image_name": "debian",
                               "hw_disk_bus": "scsi", "os_distro": "debian"},
    )  # fmt: skip
    got = cloud.discovery._volume(src, {})
    assert got.attrs["metadata"] == {"tier": "db"} and got.tags == {"seawall:key": "k1"}
    assert got.attrs["image_metadata"] == {
        "hw_disk_bus": "scsi",
        "image_name": "debian",
        "os_distro": "debian",
    }
    cloud.discovery.wait_for_status = mock.MagicMock()  # type: ignore[method-assign]
    cloud.create(K.VOLUME, got, {})
    bs = cloud.conn.block_storage
    body = bs.create_volume.call_args.kwargs
    assert body["description"] == "boot disk"
    # a whole-GiB size needs no seawall:size; the key stays until the recovery releases it
    assert body["metadata"] == {"tier": "db", "seawall:key": "k1"}
    volume = bs.create_volume.return_value
    bs.set_volume_bootable_status.assert_called_once_with(volume, True)
    bs.set_volume_image_metadata.assert_called_once_with(
        volume, hw_disk_bus="scsi", image_name="debian", os_distro="debian"
    )


def test_a_volume_of_an_old_checkpoint_keeps_its_metadata_in_the_tags(cloud: Cloud) -> None:
    """Before issue 11 the user's volume metadata was captured as tags: it still comes back."""
    old = Resource(K.VOLUME, "v1", "data", {"size": 1 << 30, "bootable": False}, {},
                   {"tier": "db", "seawall:key": "k1"})  # fmt: skip
    cloud.discovery.wait_for_status = mock.MagicMock()  # type: ignore[method-assign]
    cloud.create(K.VOLUME, old, {})
    meta = cloud.conn.block_storage.create_volume.call_args.kwargs["metadata"]
    assert meta["tier"] == "db" and meta["seawall:key"] == "k1"
    assert meta["seawall:tags"] == "tier"
    cloud.conn.block_storage.set_volume_image_metadata.assert_not_called()
    copy = Volume.existing(id="v2", name="data", size=1, status="available", metadata=meta)
    got = cloud.discovery._volume(copy, {})
    assert got.tags == {"tier": "db", "seawall:key": "k1"}  # the checkpoint's shape
    assert "metadata" not in got.attrs


def test_servers_keep_user_data_description_metadata_tags_and_config_drive(
    cloud: Cloud,
) -> None:
    src = Server.existing(
        id="s1", name="web", status="ACTIVE", description="the web server",
        config_drive="True", key_name="deploy", metadata={"role": "web", "seawall:key": "k"},
        tags=["web", "app=shop"], flavor={"original_name": "m1"}, image={"id": "i1"},
        **{"OS-EXT-SRV-ATTR:user_data": "I2Nsb3VkLWNvbmZpZwo=",
           "OS-EXT-SRV-ATTR:hostname": "web", "OS-EXT-AZ:availability_zone": "az1"},
    )  # fmt: skip
    ctx = SimpleNamespace(
        flavor_by_name={"m1": "f1"}, ports_of=lambda i: ["p1"], volumes_of=lambda s: [],
        group_of={},
    )  # fmt: skip
    got = cloud.discovery._server(src, ctx)  # type: ignore[arg-type]
    assert got.attrs["metadata"] == {"role": "web"}
    assert got.tags == {"web": "", "app": "shop", "seawall:key": "k"}
    assert [r.id for r in got.refs["keypair"]] == ["deploy"]
    cloud.discovery.get = mock.MagicMock(  # type: ignore[method-assign]
        return_value=Resource(K.SERVER, "s2", "web", {"status": "ACTIVE"})
    )
    refs = {"flavor": ("f2",), "image": ("i2",), "ports": ("p2",), "keypair": ("deploy",)}
    cloud.create(K.SERVER, got, refs)
    body = cloud.conn.compute.create_server.call_args.kwargs
    assert body["user_data"] == "I2Nsb3VkLWNvbmZpZwo="
    assert body["description"] == "the web server"
    assert body["config_drive"] is True
    # the metadata is the user's; seawall's marks are Nova tags
    assert body["metadata"] == {"role": "web"}
    assert sorted(body["tags"]) == ["app=shop", "seawall:key=k", "web"]
    assert (body["key_name"], body["image_id"], body["availability_zone"]) == (
        "deploy",
        "i2",
        "az1",
    )
    assert body["networks"] == [{"port": "p2"}]


def test_a_router_loses_its_extra_routes_before_its_interfaces(cloud: Cloud) -> None:
    """Neutron refuses to remove an interface a route's next hop needs, so a revert of a
    router with extra routes would fail without this order."""
    from seawall.model import ResourceRef

    net = cloud.conn.network
    router = net.get_router.return_value
    router.routes = [{"destination": "192.168.9.0/24", "nexthop": "10.0.0.5"}]
    cleared = net.update_router.return_value
    net.ports.return_value = [
        SimpleNamespace(device_owner="network:router_interface", fixed_ips=[{"subnet_id": "s1"}])
    ]
    cloud.restore.delete(ResourceRef(K.ROUTER, "r1"))
    net.update_router.assert_called_once_with(router, routes=[])
    net.remove_interface_from_router.assert_called_once_with(cleared, subnet_id="s1")
    names = [c[0] for c in net.method_calls]
    assert names.index("update_router") < names.index("remove_interface_from_router")
    assert names[-1] == "delete_router"


def test_an_image_left_at_the_defaults_has_the_old_shape(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A private image without properties is captured with the keys a checkpoint held
    before issue 11, and such a checkpoint restores a private image."""
    plain = {"id": "i1", "name": "plain", "status": "active", "visibility": "private",
             "protected": False, "os_hidden": False, "disk_format": "raw",
             "container_format": "bare", "size": 512, "checksum": "abc", "min_disk": 0,
             "min_ram": 0, "owner": "p1", "tags": []}  # fmt: skip
    got = cloud.discovery._image(Image.existing(**plain))
    old_keys = {"size", "disk_format", "container_format", "checksum", "min_disk", "min_ram"}
    assert set(got.attrs) == {*old_keys, "status"}
    made: list[Image] = []
    monkeypatch.setattr(Image, "create", lambda self, s, **k: made.append(self) or self)
    cloud.create(K.IMAGE, got, {})
    body = made[0]._prepare_request_body(prepend_key=False)
    assert body["visibility"] == "private" and "protected" not in body
