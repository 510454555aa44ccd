"""Reading an OpenStack project into seawall's model: one converter per kind, listings,
``get``, ``find`` by key, ``discover`` and waiting for a status.

Resources use the driver-neutral schema (:mod:`seawall.clouds.schema`, DESIGN.md §4):
volume ``size`` is in bytes (the Cinder volume is that rounded up to GiB, and the exact
size is kept in the volume's metadata), ports carry plain ``fixed_ips`` strings, etc.; the
tags come back from wherever :mod:`.naming` put them.

Projects: a discovered graph includes the project the credentials are scoped to, with
its record, its role assignments (user or group, role; when the credentials may list
them) and its quota limits, so a checkpoint says who held what where.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

from seawall.clouds.graph import reachable
from seawall.clouds.openstack.connection import CloudConnection
from seawall.clouds.openstack.naming import (
    NEUTRON_KINDS,
    SIZE_META,
    TAGS_META,
    UNMARKED_KINDS,
    same_mark,
    split_public_key,
    split_specs,
    strings_to_tags,
    unpack_name,
)
from seawall.clouds.schema import SELF_GROUP, sort_resources
from seawall.clouds.tags import KEY_TAG
from seawall.clouds.waiting import wait_for_status
from seawall.errors import NotFound, PermanentError, SeawallError
from seawall.model import Resource, ResourceGraph, ResourceKind, ResourceRef, Selector

K = ResourceKind
GiB = 1 << 30
#: the fields of a security group rule that seawall keeps (and restores)
RULE_KEYS = (
    "direction",
    "ethertype",
    "protocol",
    "port_range_min",
    "port_range_max",
    "remote_ip_prefix",
)


def rule_of(rule: Mapping[str, Any], group_id: str) -> dict[str, Any]:
    """A Neutron rule (a dict, as in a group's ``security_group_rules``) in seawall's
    shape: :data:`RULE_KEYS` always, ``description``, ``remote_group`` (``"self"`` for
    the rule's own group) and ``remote_address_group`` only when set."""
    out = {k: rule.get(k) for k in RULE_KEYS}
    if rule.get("description"):
        out["description"] = str(rule["description"])
    remote = rule.get("remote_group_id")
    if remote:
        out["remote_group"] = SELF_GROUP if remote == group_id else str(remote)
    if rule.get("remote_address_group_id"):
        out["remote_address_group"] = str(rule["remote_address_group_id"])
    return out


def _bool(value: Any) -> bool:
    return str(value).lower() in ("true", "1", "yes")


def _limit(value: Any) -> int:
    """A quota limit as an int; -1 (unlimited) when the cloud reports none."""
    return -1 if value is None else int(value)


def _put(attrs: dict[str, Any], key: str, value: Any, default: Any) -> None:
    """Set ``key`` only when the cloud holds something other than its default for it.

    The attrs added for faithful recovery (issue 11) appear only where the user set them,
    so checkpoints of resources that use the defaults keep the shape they always had, and
    a restore reads a missing key as "the cloud's default" (which is also how a checkpoint
    taken before those keys existed restores).
    """
    if value != default and value is not None:
        attrs[key] = value


#: Glance's own fields of an image (its record and what Glance computes): everything
#: else an image carries at the top level of its JSON is a property the user set
IMAGE_FIELDS = frozenset(
    {
        "checksum", "container_format", "created_at", "direct_url", "disk_format", "file",
        "id", "locations", "metadata", "min_disk", "min_ram", "name", "os_hash_algo",
        "os_hash_value", "os_hidden", "owner", "properties", "protected", "schema", "self",
        "size", "status", "store", "stores", "tags", "updated_at", "url", "virtual_size",
        "visibility",
    }
)  # fmt: skip


def image_properties(image: Any) -> dict[str, str]:
    """Every property the user set on a Glance image, as the strings Glance holds.

    openstacksdk's ``Image`` keeps the properties it knows by name (``hw_disk_bus``,
    ``os_distro``, ...) as typed attributes and the rest in ``properties``; the body it
    was built from has both as Glance sent them, so that is read (falling back to the
    typed attributes, turned back into Glance's strings). Left out: Glance's own fields
    (:data:`IMAGE_FIELDS`), its reserved ``os_glance_*`` properties (a user cannot set
    them) and seawall's ``seawall:*`` (those are seawall's tags, see :mod:`.naming`).
    """
    body = getattr(getattr(image, "_body", None), "attributes", None)
    if not isinstance(body, Mapping):
        body = image.to_dict(computed=False, headers=False, original_names=True)
    raw = {**body, **(body.get("properties") or {})}
    out = {}
    for k, v in raw.items():
        if v is None or k in IMAGE_FIELDS or k.startswith(("os_glance_", "seawall:")):
            continue
        out[str(k)] = str(v).lower() if isinstance(v, bool) else str(v)
    return dict(sorted(out.items()))


def _routes(routes: Any) -> list[dict[str, str]]:
    """A router's extra routes, sorted (Neutron returns them in no particular order)."""
    rows = [
        {"destination": str(r["destination"]), "nexthop": str(r["nexthop"])} for r in routes or []
    ]
    return sorted(rows, key=lambda r: (r["destination"], r["nexthop"]))


def _dhcp_options(opts: Any) -> list[dict[str, Any]]:
    """A port's extra DHCP options (name, value, IP version), sorted."""
    rows = [
        {"opt_name": str(o["opt_name"]), "opt_value": str(o["opt_value"]),
         "ip_version": int(o.get("ip_version") or 4)}
        for o in opts or []
    ]  # fmt: skip
    return sorted(rows, key=lambda o: (o["ip_version"], o["opt_name"], o["opt_value"]))


class Discovery:
    """What is on the cloud, read into seawall's model (``Resource``, ``ResourceGraph``)."""

    def __init__(self, connection: CloudConnection) -> None:
        self.connection = connection
        self.site = connection.site
        #: (kind, key) -> (id, tags) of what this object created of the kinds that hold
        #: no mark on the cloud (:data:`~.naming.UNMARKED_KINDS`): how ``find`` finds them
        self._created: dict[tuple[ResourceKind, str], tuple[str, dict[str, str]]] = {}
        self._lock = threading.Lock()

    def remember(self, kind: ResourceKind, key: str, rid: str, tags: Mapping[str, str]) -> None:
        """Note that ``create`` made ``rid`` under ``key`` (an unmarked kind): ``find``
        answers it, with the spec's tags, for as long as this driver object lives."""
        with self._lock:
            self._created[(kind, key)] = (rid, dict(tags))

    @property
    def conn(self) -> Any:
        return self.connection.conn

    # -- one converter per kind -----------------------------------------------------------

    def _ref(self, kind: ResourceKind, *ids: str | None) -> tuple[ResourceRef, ...]:
        return tuple(ResourceRef(kind, i) for i in ids if i)

    def _network(self, n: Any) -> Resource:
        tags = strings_to_tags(n.tags)
        attrs = {
            "external": bool(n.is_router_external),
            "isolated": _bool(tags.pop("seawall:isolated", "false")),
            "mtu": int(n.mtu or 1500),
            "status": str(n.status or ""),
        }
        _put(attrs, "description", n.description or "", "")
        _put(attrs, "port_security_enabled", n.is_port_security_enabled is not False, True)
        _put(attrs, "shared", bool(n.is_shared), False)
        _put(attrs, "admin_state_up", n.is_admin_state_up is not False, True)
        _put(attrs, "dns_domain", n.dns_domain or "", "")
        return Resource(K.NETWORK, n.id, n.name or "", attrs, {}, tags)

    def _subnet(self, s: Any) -> Resource:
        attrs = {
            "cidr": str(s.cidr),
            "gateway_ip": s.gateway_ip,
            "enable_dhcp": bool(s.is_dhcp_enabled),
            "dns_nameservers": list(s.dns_nameservers or []),
            "allocation_pools": [dict(p) for p in s.allocation_pools or []],
            "host_routes": [dict(r) for r in s.host_routes or []],
            "ip_version": int(s.ip_version),
        }
        _put(attrs, "description", s.description or "", "")
        _put(attrs, "ipv6_ra_mode", s.ipv6_ra_mode or "", "")
        _put(attrs, "ipv6_address_mode", s.ipv6_address_mode or "", "")
        refs = {"network": self._ref(K.NETWORK, s.network_id)}
        return Resource(K.SUBNET, s.id, s.name or "", attrs, refs, strings_to_tags(s.tags))

    def _router(self, r: Any, subnets: list[str]) -> Resource:
        """A router with its interfaces (``subnets`` refs), extra routes and gateway: the
        gateway's network is kept by name (``external_network``; the target's network of
        that name, else its first external one) and ``enable_snat`` only when off."""
        gateway = r.external_gateway_info or {}
        attrs: dict[str, Any] = {
            "external_gateway": bool(gateway.get("network_id")),
            "status": r.status or "",
        }
        _put(attrs, "description", r.description or "", "")
        _put(attrs, "routes", _routes(r.routes), [])
        _put(attrs, "admin_state_up", r.is_admin_state_up is not False, True)
        if gateway.get("network_id"):
            attrs["external_network"] = self._network_name(str(gateway["network_id"]))
            _put(attrs, "enable_snat", gateway.get("enable_snat") is not False, True)
        refs = {"subnets": self._ref(K.SUBNET, *sorted(subnets))} if subnets else {}
        return Resource(K.ROUTER, r.id, r.name or "", attrs, refs, strings_to_tags(r.tags))

    def _network_name(self, network_id: str) -> str:
        """A network's name (an external one a router's gateway is on), or its id when it
        cannot be read."""
        from openstack import exceptions as os_exc

        try:
            return str(self.conn.network.get_network(network_id).name or network_id)
        except os_exc.SDKException:
            return network_id

    def _security_group(self, g: Any) -> Resource:
        """A group with its rules. A rule's remote group is kept as ``remote_group``: the
        source group's id, or ``"self"`` for the group itself, and the other groups are
        the group's ``remote_groups`` refs (sorted, once each), so a restore points the
        rule at the recovered copy; ``description`` and ``remote_group`` appear only when
        set, ``remote_address_group`` too (a restore refuses it rather than drop it)."""
        rules = sorted(
            (rule_of(r, g.id) for r in g.security_group_rules or []),
            key=lambda r: json.dumps(r, sort_keys=True, default=str),
        )
        others = sorted(
            {
                str(r["remote_group"])
                for r in rules
                if r.get("remote_group") not in (None, SELF_GROUP)
            }
        )
        attrs = {
            "rules": rules,
            "description": g.description or "",
            "stateful": g.stateful is not False,
        }
        refs = {"remote_groups": self._ref(K.SECURITY_GROUP, *others)} if others else {}
        tags = strings_to_tags(g.tags)
        return Resource(K.SECURITY_GROUP, g.id, g.name or "", attrs, refs, tags)

    def _port(self, p: Any) -> Resource:
        ips = p.fixed_ips or []
        attrs = {
            "fixed_ips": [i["ip_address"] for i in ips],
            "mac_address": p.mac_address,
            "allowed_address_pairs": [dict(a) for a in p.allowed_address_pairs or []],
            "status": p.status or "",
        }
        _put(attrs, "description", p.description or "", "")
        _put(attrs, "port_security_enabled", p.is_port_security_enabled is not False, True)
        _put(attrs, "vnic_type", p.binding_vnic_type or "normal", "normal")
        _put(attrs, "extra_dhcp_opts", _dhcp_options(p.extra_dhcp_opts), [])
        _put(attrs, "admin_state_up", p.is_admin_state_up is not False, True)
        _put(attrs, "dns_name", p.dns_name or "", "")
        refs: dict[str, tuple[ResourceRef, ...]] = {"network": self._ref(K.NETWORK, p.network_id)}
        if ips:
            refs["subnet"] = self._ref(K.SUBNET, ips[0]["subnet_id"])
        if p.security_group_ids:
            refs["security_groups"] = self._ref(K.SECURITY_GROUP, *p.security_group_ids)
        return Resource(K.PORT, p.id, p.name or "", attrs, refs, strings_to_tags(p.tags))

    def _floating_ip(self, f: Any, networks: Mapping[str, str]) -> Resource:
        attrs = {
            "address": f.floating_ip_address,
            "floating_network": networks.get(f.floating_network_id, f.floating_network_id),
            "status": f.status or "",
        }
        refs = {"port": self._ref(K.PORT, f.port_id)} if f.port_id else {}
        name = f.description or f.floating_ip_address
        return Resource(K.FLOATING_IP, f.id, name, attrs, refs, strings_to_tags(f.tags))

    def _flavor(self, f: Any) -> Resource:
        """A flavor; its extra specs are the user's alone (an earlier version's
        ``seawall:*`` entries are read as tags, see :mod:`.naming`)."""
        specs, tags = split_specs(f.extra_specs or {})
        attrs = {
            "vcpus": int(f.vcpus),
            "ram_mb": int(f.ram),
            "disk_gb": int(f.disk),
            "ephemeral_gb": int(f.ephemeral or 0),
            "swap_mb": int(f.swap or 0),
            "is_public": bool(f.is_public),
            "extra_specs": specs,
            "description": str(f.description or ""),
        }
        return Resource(K.FLAVOR, f.id, f.name, attrs, {}, tags)

    def _keypair(self, k: Any) -> Resource:
        public_key, name, tags = split_public_key(k.public_key)
        attrs = {"public_key": public_key, "type": k.type or "ssh"}
        return Resource(K.KEYPAIR, k.name, name or k.name, attrs, {}, tags)

    def _image(self, i: Any) -> Resource:
        """An image with every property the user set (:func:`image_properties`), its
        visibility unless ``private``, and ``protected``/``os_hidden`` when on."""
        props = dict(i.properties or {})
        tags = strings_to_tags(i.tags or [])
        tags.update({k: str(v) for k, v in props.items() if k.startswith("seawall:")})
        attrs: dict[str, Any] = {
            "size": int(i.size or 0),
            "disk_format": i.disk_format or "raw",
            "container_format": i.container_format or "bare",
            "checksum": i.checksum or "",
            "min_disk": int(i.min_disk or 0),
            "min_ram": int(i.min_ram or 0),
            "status": i.status,
        }
        # private is what a restore makes of an image whose checkpoint has no visibility
        _put(attrs, "visibility", str(i.visibility or "shared"), "private")
        _put(attrs, "properties", image_properties(i), {})
        _put(attrs, "protected", bool(i.is_protected), False)
        _put(attrs, "os_hidden", bool(i.is_hidden), False)
        return Resource(K.IMAGE, i.id, i.name or "", attrs, {}, tags)

    def _volume_type(self, t: Any) -> Resource:
        specs, tags = split_specs(t.extra_specs or {})
        attrs = {"extra_specs": specs, "description": t.description or ""}
        return Resource(K.VOLUME_TYPE, t.id, t.name, attrs, {}, tags)

    def _server_group(self, g: Any) -> Resource:
        """A server group: its policy (as ``policies``, one before microversion 2.64)
        and, when set, its ``rules`` (``max_server_per_host``); an earlier version's
        packed name is read back as the name and tags (see :mod:`.naming`)."""
        name, tags = unpack_name(g.name)
        policies = list(g.policies or ([g.policy] if g.policy else []))
        attrs: dict[str, Any] = {"policies": policies}
        if g.rules:
            attrs["rules"] = dict(g.rules)
        return Resource(K.SERVER_GROUP, g.id, name, attrs, {}, tags)

    def _volume(self, v: Any, types: Mapping[str, str]) -> Resource:
        """A volume: its metadata split into the tags (seawall's ``seawall:*`` keys and the
        keys ``seawall:tags`` names: Cinder has no tags) and the user's (``metadata``), and
        a boot volume's image metadata (``image_metadata``, what Nova reads as the image
        properties of a server booted from it) without ``image_id``, the ``image`` ref."""
        meta = dict(v.metadata or {})
        size = int(meta.pop(SIZE_META, 0)) or int(v.size) * GiB
        tag_keys = set(str(meta.pop(TAGS_META, "")).split(","))
        tags = {k: str(x) for k, x in meta.items() if k.startswith("seawall:") or k in tag_keys}
        attrs: dict[str, Any] = {
            "size": size,
            "bootable": _bool(v.is_bootable),
            "availability_zone": v.availability_zone or "nova",
            "status": v.status,
        }
        user = {str(k): str(x) for k, x in meta.items() if k not in tags}
        _put(attrs, "metadata", dict(sorted(user.items())), {})
        _put(attrs, "description", v.description or "", "")
        image_meta = {
            str(k): str(x) for k, x in (v.volume_image_metadata or {}).items() if k != "image_id"
        }
        _put(attrs, "image_metadata", dict(sorted(image_meta.items())), {})
        _put(attrs, "multiattach", bool(v.is_multiattach), False)
        refs: dict[str, tuple[ResourceRef, ...]] = {}
        if v.volume_type and v.volume_type in types:
            refs["volume_type"] = self._ref(K.VOLUME_TYPE, types[v.volume_type])
        image = (v.volume_image_metadata or {}).get("image_id")
        if image:
            refs["image"] = self._ref(K.IMAGE, image)
        return Resource(K.VOLUME, v.id, v.name or "", attrs, refs, tags)

    def _server(self, s: Any, ctx: _Context) -> Resource:
        meta = dict(s.metadata or {})
        tags = strings_to_tags(s.tags or [])
        for k in [k for k in meta if k.startswith("seawall:")]:
            tags[k] = str(meta.pop(k))
        guest_agent = _bool(tags.pop("seawall:guest_agent", "false"))
        attrs = {
            "hostname": s.hostname or s.name,
            "status": s.status,
            "availability_zone": s.availability_zone or "nova",
            "metadata": meta,
            "guest_agent": guest_agent,
        }
        # user_data comes back (base64, as it was given) at microversion 2.3 and later to
        # whoever may read the extended attributes (by default the project's admin);
        # description at 2.19 and later: openstacksdk negotiates up to 2.100
        _put(attrs, "user_data", s.user_data or "", "")
        _put(attrs, "description", s.description or "", "")
        _put(attrs, "config_drive", _bool(s.config_drive), False)
        refs: dict[str, tuple[ResourceRef, ...]] = {}
        # since microversion 2.47 a server embeds its flavor by name, not id
        embedded = s.flavor or {}
        flavor_name = embedded.get("original_name") or embedded.get("name") or ""
        flavor_id = ctx.flavor_by_name.get(flavor_name) or embedded.get("id")
        refs["flavor"] = self._ref(K.FLAVOR, flavor_id)
        image_id = (s.image or {}).get("id") if s.image else None
        if image_id:
            refs["image"] = self._ref(K.IMAGE, image_id)
        if s.key_name:
            refs["keypair"] = self._ref(K.KEYPAIR, s.key_name)
        ports = ctx.ports_of(s.id)
        if ports:
            refs["ports"] = self._ref(K.PORT, *ports)
        volumes = ctx.volumes_of(s)
        if volumes:
            refs["volumes"] = self._ref(K.VOLUME, *volumes)
        group = ctx.group_of.get(s.id)
        if group:
            refs["server_group"] = self._ref(K.SERVER_GROUP, group)
        return Resource(K.SERVER, s.id, s.name, attrs, refs, tags)

    # -- listing ---------------------------------------------------------------------------

    def _list_kind(self, kind: ResourceKind, ctx: _Context) -> list[Resource]:
        c = self.conn
        if kind is K.NETWORK:
            return [self._network(n) for n in self.connection.mine(c.network.networks())]
        if kind is K.SUBNET:
            return [self._subnet(s) for s in self.connection.mine(c.network.subnets())]
        if kind is K.ROUTER:
            return [self._router(r, ctx.router_subnets(r.id)) for r in ctx.routers]
        if kind is K.SECURITY_GROUP:
            groups = self.connection.mine(c.network.security_groups())
            return [self._security_group(g) for g in groups]
        if kind is K.PORT:
            return [self._port(p) for p in ctx.user_ports]
        if kind is K.FLOATING_IP:
            nets = {n.id: n.name for n in c.network.networks(is_router_external=True)}
            return [self._floating_ip(f, nets) for f in self.connection.mine(c.network.ips())]
        if kind is K.FLAVOR:
            return [self._flavor(f) for f in ctx.flavors]
        if kind is K.KEYPAIR:
            return [self._keypair(k) for k in c.compute.keypairs()]
        if kind is K.IMAGE:
            # Glance leaves hidden images (``os_hidden``) out of a listing unless asked
            pid = self.connection.project_id
            images = {i.id: i for i in [*c.image.images(), *c.image.images(is_hidden=True)]}
            return [self._image(i) for i in images.values() if i.owner_id == pid]
        if kind is K.VOLUME_TYPE:
            return [self._volume_type(t) for t in ctx.volume_types]
        if kind is K.SERVER_GROUP:
            return [self._server_group(g) for g in ctx.server_groups]
        if kind is K.VOLUME:
            types = {t.name: t.id for t in ctx.volume_types}
            return [self._volume(v, types) for v in c.block_storage.volumes()]
        if kind is K.SERVER:
            return self._servers(ctx)
        return []  # projects are the operator's, not part of a workload's resources

    def _servers(self, ctx: _Context) -> list[Resource]:
        """Servers; one deleted while it is being described is left out, not an error."""
        from openstack import exceptions as os_exc

        out = []
        for s in ctx.servers:
            if s.status == "DELETED":  # gone; Nova lists it until its row is purged
                continue
            try:
                out.append(self._server(s, ctx))
            except os_exc.NotFoundException:
                continue
        return out

    def list_resources(self, kind: ResourceKind | None = None) -> list[Resource]:
        kinds = [kind] if kind else [k for k in ResourceKind if k is not K.PROJECT]
        out: list[Resource] = []
        ctx = _Context(self.connection)
        for k in kinds:
            listing = functools.partial(self._list_kind, k, ctx)
            out.extend(self.connection.call(f"listing {k.value}s", listing))
        return sort_resources(out)

    def get(self, ref: ResourceRef) -> Resource | None:
        what = f"reading {ref}"
        try:
            with self.connection.api(what):
                if ref.kind in NEUTRON_KINDS:
                    return self._get_network_kind(ref.kind, ref.id)
                return self._get_other_kind(ref.kind, ref.id)
        except NotFound:
            return None

    def _get_network_kind(self, k: ResourceKind, i: str) -> Resource | None:
        c = self.conn
        if k is K.NETWORK:
            return self._network(c.network.get_network(i))
        if k is K.SUBNET:
            return self._subnet(c.network.get_subnet(i))
        if k is K.ROUTER:
            r = c.network.get_router(i)
            return self._router(r, _Context(self.connection).router_subnets(i))
        if k is K.SECURITY_GROUP:
            return self._security_group(c.network.get_security_group(i))
        if k is K.PORT:
            return self._port(c.network.get_port(i))
        if k is K.FLOATING_IP:
            f = c.network.get_ip(i)
            net = c.network.get_network(f.floating_network_id)
            return self._floating_ip(f, {net.id: net.name})
        return None

    def _get_other_kind(self, k: ResourceKind, i: str) -> Resource | None:
        c = self.conn
        if k is K.FLAVOR:
            f = c.compute.get_flavor(i)
            if f.extra_specs is None:
                f = c.compute.fetch_flavor_extra_specs(f)
            return self._flavor(f)
        if k is K.KEYPAIR:
            return self._keypair(c.compute.get_keypair(i))
        if k is K.IMAGE:
            return self._image(c.image.get_image(i))
        if k is K.VOLUME_TYPE:
            return self._volume_type(c.block_storage.get_type(i))
        if k is K.SERVER_GROUP:
            return self._server_group(c.compute.get_server_group(i))
        if k is K.VOLUME:
            v = c.block_storage.get_volume(i)
            types = {t.name: t.id for t in c.block_storage.types()}
            return self._volume(v, types)
        if k is K.SERVER:
            s = c.compute.get_server(i)
            if s.status == "DELETED":  # Nova shows it until its row is purged
                return None
            return self._server(s, _Context(self.connection, servers=[s]))
        return None  # projects are read by project_resource

    def find(self, kind: ResourceKind, key: str) -> Resource | None:
        """The resource created with ``key`` (looked up where that kind keeps its tags).

        The unmarked kinds keep no key on the cloud: what this object created is
        answered from memory (with the spec's tags, so the caller sees it is its own),
        and only an earlier version's marks are looked up on the cloud."""
        if kind in UNMARKED_KINDS:
            with self._lock:
                mine = self._created.get((kind, key))
            if mine is not None:
                got = self.get(ResourceRef(kind, mine[0]))
                if got is not None:
                    return dataclasses.replace(got, tags={**got.tags, **mine[1]})
        if kind in NEUTRON_KINDS:
            tag = f"{KEY_TAG}={key}"
            if "," not in tag:
                lister = getattr(self.conn.network, f"{NEUTRON_KINDS[kind]}s")
                hits = self.connection.call(
                    f"finding {kind.value} {key}", lambda: list(lister(tags=tag))
                )
                return self.get(ResourceRef(kind, hits[0].id)) if hits else None
        if kind is K.VOLUME:  # Cinder's metadata filter is not reliable: filter here
            hits = self.connection.call(
                f"finding volume {key}", lambda: list(self.conn.block_storage.volumes())
            )
            hits = [v for v in hits if (v.metadata or {}).get(KEY_TAG) == key]
            return self.get(ResourceRef(kind, hits[0].id)) if hits else None
        for r in self.list_resources(kind):
            if same_mark(r.tags.get(KEY_TAG), key):  # a server's may be hashed
                return dataclasses.replace(r, tags={**r.tags, KEY_TAG: key})
        return None

    def discover(self, selector: Selector) -> ResourceGraph:
        """Selected servers, everything they reference, routers on included subnets and
        floating IPs on included ports (and, in turn, what those reference)."""
        # a reference to what the project does not own (a public image or flavor) is
        # fetched by id
        picked = reachable(self.list_resources(), selector, self.get)
        if picked:
            picked.append(self.project_resource(details=True))
        return ResourceGraph(tuple(sort_resources(picked)))

    def project_resource(self, *, details: bool) -> Resource:
        """The project the workload lives in. With ``details``: its record, who holds which
        role in it (when the credentials may list role assignments: an operator can re-grant
        them at the recovery site) and its quota limits (what the copy will need there)."""
        c, pid = self.conn, self.connection.project_id
        auth = dict(getattr(c, "auth", None) or {})
        name = str(auth.get("project_name") or pid)
        attrs: dict[str, Any] = {}
        if not details:
            return Resource(K.PROJECT, pid, name, attrs)
        with contextlib.suppress(NotFound, PermanentError):  # members may not read it
            with self.connection.api("reading the project"):
                p = c.identity.get_project(pid)
            name = str(p.name or name)
            attrs.update(
                domain_id=str(p.domain_id or ""),
                description=str(p.description or ""),
                enabled=bool(p.is_enabled),
            )
        with contextlib.suppress(NotFound, PermanentError):  # needs an admin or a reader
            with self.connection.api("listing the project's role assignments"):
                rows = list(c.identity.role_assignments(scope_project_id=pid, include_names=True))
            grants = set()
            for row in rows:
                who = row.user or row.group or {}
                what = "user" if row.user else "group"
                role = (row.role or {}).get("name") or (row.role or {}).get("id", "")
                grants.add((what, str(who.get("name") or who.get("id", "")), str(role)))
            attrs["role_assignments"] = [
                {what: who, "role": role} for what, who, role in sorted(grants)
            ]
        with contextlib.suppress(NotFound, PermanentError):
            with self.connection.api("reading quota limits"):
                compute = c.compute.get_limits().absolute
                volume = c.block_storage.get_limits().absolute
            attrs["quotas"] = {
                "servers": _limit(compute.instances),
                "cores": _limit(compute.total_cores),
                "ram_mb": _limit(compute.total_ram),
                "volumes": _limit(volume.max_total_volumes),
                "volume_gigabytes": _limit(volume.max_total_volume_gigabytes),
            }
        return Resource(K.PROJECT, pid, name, attrs)

    def wait_for_status(self, ref: ResourceRef, status: str, timeout: float) -> Resource:
        """Poll until ``attrs["status"]`` is ``status`` (case-insensitive; resources
        without one count as ACTIVE; ``DELETED`` waits for it to be gone). A server or
        volume that falls into ERROR while waiting for something else fails at once."""

        def failed(found: Resource, last: str, want: str) -> SeawallError | None:
            if last in ("ERROR", "ERROR_DELETING") and want != last:
                return PermanentError(
                    f"{ref.kind.value} {found.name} ({ref.id}) is in {last} while waiting for "
                    f"{want}; see the cloud's logs for it"
                )
            return None

        return wait_for_status(
            self.get,
            ref,
            status,
            timeout,
            site=self.site.name,
            status_of=lambda found: str(found.attrs.get("status") or "ACTIVE"),
            failed=failed,
            delay=0.2,
            factor=1.5,
            max_delay=2.0,
            sleep=self.connection.wait,
        )


class _Context:
    """What several converters need, listed once per call (ports, attachments, groups)."""

    def __init__(self, connection: CloudConnection, servers: list[Any] | None = None) -> None:
        self.c = connection
        self._servers = servers
        self._cache: dict[str, Any] = {}

    def _get(self, name: str, fn: Callable[[], Any]) -> Any:
        if name not in self._cache:
            self._cache[name] = fn()
        return self._cache[name]

    @property
    def servers(self) -> list[Any]:
        if self._servers is None:
            self._servers = list(self.c.conn.compute.servers(details=True))
        return self._servers

    @property
    def ports(self) -> list[Any]:
        return self._get("ports", lambda: self.c.mine(self.c.conn.network.ports()))  # type: ignore[no-any-return]

    @property
    def user_ports(self) -> list[Any]:
        """Ports a workload owns: not the cloud's own (DHCP, router interfaces, gateways)."""
        return [p for p in self.ports if not str(p.device_owner or "").startswith("network:")]

    @property
    def routers(self) -> list[Any]:
        return self._get("routers", lambda: self.c.mine(self.c.conn.network.routers()))  # type: ignore[no-any-return]

    def router_subnets(self, router_id: str) -> list[str]:
        ports = self._get(
            f"rports-{router_id}",
            lambda: list(self.c.conn.network.ports(device_id=router_id)),
        )
        return [
            ip["subnet_id"]
            for p in ports
            if p.device_owner == "network:router_interface"
            for ip in p.fixed_ips
        ]

    @property
    def flavors(self) -> list[Any]:
        def load() -> list[Any]:
            out = []
            for f in self.c.conn.compute.flavors(details=True, is_public=None):
                if f.extra_specs is None:
                    f = self.c.conn.compute.fetch_flavor_extra_specs(f)
                out.append(f)
            return out

        return self._get("flavors", load)  # type: ignore[no-any-return]

    @property
    def flavor_by_name(self) -> dict[str, str]:
        return {f.name: f.id for f in self.flavors}

    @property
    def volume_types(self) -> list[Any]:
        return self._get("vtypes", lambda: list(self.c.conn.block_storage.types()))  # type: ignore[no-any-return]

    @property
    def server_groups(self) -> list[Any]:
        return self._get("groups", lambda: list(self.c.conn.compute.server_groups()))  # type: ignore[no-any-return]

    @property
    def group_of(self) -> dict[str, str]:
        return {m: g.id for g in self.server_groups for m in g.member_ids or []}

    def ports_of(self, server_id: str) -> list[str]:
        """The server's ports in attach order (Nova's interface list)."""
        ifaces = list(self.c.conn.compute.server_interfaces(server_id))
        return [i.port_id for i in ifaces]

    def volumes_of(self, server: Any) -> list[str]:
        """Attached volumes, the boot volume first, then by device name."""
        attached = list(self.c.conn.compute.volume_attachments(server))
        root = server.root_device_name or "/dev/vda"
        attached.sort(key=lambda a: (a.device != root, a.device or "", a.volume_id))
        return [a.volume_id for a in attached]
