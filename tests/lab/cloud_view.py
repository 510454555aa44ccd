"""What a project looks like to its user, read from the OpenStack APIs' raw JSON.

The checker of the lab's fidelity tests. It shares no code with seawall (no import from
``seawall``): every resource whose name starts with a marker is read with the REST API
(Nova at microversion 2.79, Neutron, Cinder 3.x, Glance v2), ids are replaced by the
names they point to (a port's network, a rule's remote group, a volume's server), and
what the cloud computes or allocates per site (ids, timestamps, status, hosts, project
ids, revision numbers, links, locations) is dropped. Two views of the same workload on
two sites then compare equal field by field; :func:`differences` lists what does not.

One convention of seawall's is accepted, the one issue 11 allows: its bookkeeping may
live in the ``tags`` of the kinds whose API has tags (Neutron's, Nova servers', Glance
images'), as ``seawall:<name>=<value>``; those tags are left out of a view. Anything else
seawall writes — a ``seawall:*`` entry in metadata, a property, an extra spec, a changed
name or key — is a difference like any other.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

#: fields the cloud computes or allocates per site; never what a user set
DROP = frozenset(
    {
        "id", "created", "created_at", "updated", "updated_at", "links", "project_id",
        "tenant_id", "user_id", "revision_number", "status", "OS-EXT-STS:task_state",
        "OS-EXT-STS:power_state", "OS-EXT-STS:vm_state", "OS-SRV-USG:launched_at",
        "OS-SRV-USG:terminated_at", "OS-EXT-SRV-ATTR:host", "OS-EXT-SRV-ATTR:hostname",
        "OS-EXT-SRV-ATTR:hypervisor_hostname", "OS-EXT-SRV-ATTR:instance_name",
        "OS-EXT-SRV-ATTR:launch_index", "OS-EXT-SRV-ATTR:reservation_id",
        "OS-EXT-SRV-ATTR:kernel_id", "OS-EXT-SRV-ATTR:ramdisk_id",
        "OS-EXT-SRV-ATTR:root_device_name", "hostId", "host_status", "progress",
        "addresses", "accessIPv4", "accessIPv6", "locked", "locked_reason", "fault",
        "trusted_image_certificates", "pinned_availability_zone", "OS-DCF:diskConfig",
        "os-extended-volumes:volumes_attached", "security_groups", "image", "flavor",
        "self", "file", "schema", "direct_url", "locations", "stores", "owner",
        "os_hash_algo", "os_hash_value", "checksum", "size", "virtual_size",
        "os-vol-host-attr:host", "os-vol-mig-status-attr:migstat",
        "os-vol-mig-status-attr:name_id", "os-vol-tenant-attr:tenant_id", "replication_status",
        "consistencygroup_id", "group_id", "encrypted", "snapshot_id", "source_volid",
        "attachments", "migration_status", "cluster_name", "service_uuid", "shared_targets",
        "provider_id", "consumes_quota", "volume_type_id", "availability_zone_hints",
        "availability_zones", "ipv4_address_scope", "ipv6_address_scope", "subnets",
        "standard_attr_id", "router:external", "provider:network_type",
        "provider:physical_network", "provider:segmentation_id", "l2_adjacency",
        "network_id", "subnetpool_id", "segment_id", "security_group_rules", "device_id",
        "device_owner", "binding:host_id", "binding:vif_details", "binding:vif_type",
        "binding:profile", "dns_assignment", "ip_allocation", "resource_request",
        "propagate_uplink_status", "hardware_offload_type", "trunk_details", "dns_domain",
        "dns_name", "fixed_ips", "external_gateway_info",
        "availability_zone", "qos_policy_id", "qos_network_policy_id", "members",
        "is_default", "os-volume-type-access:is_public", "flavor_id",
        "fingerprint", "deleted", "deleted_at", "quota_details",
        "enable_ndp_proxy", "ha", "distributed",
        "conntrack_helpers", "interfaces_info",
    }
)  # fmt: skip


def _json(response: Any) -> Any:
    response.raise_for_status()
    return response.json()


def _mine(items: Iterable[Mapping[str, Any]], marker: str) -> list[Mapping[str, Any]]:
    return [x for x in items if str(x.get("name") or "").startswith(marker)]


def _keep(raw: Mapping[str, Any]) -> dict[str, Any]:
    row = {k: v for k, v in raw.items() if k not in DROP}
    if isinstance(row.get("tags"), list):
        row["tags"] = sorted(t for t in row["tags"] if not str(t).startswith("seawall:"))
    return row


class CloudView:
    """One site's view of everything named for ``marker`` (and the ports, rules and
    attachments that belong to it), as ``{"<kind> <name>": {field: value}}``."""

    def __init__(self, conn: Any, marker: str) -> None:
        self.conn = conn
        self.marker = marker
        self.names: dict[str, str] = {}
        self.resources: dict[str, dict[str, Any]] = {}
        self._read()

    def name(self, id_: Any) -> str:
        """The name an id points to (``?<id>`` for one this view did not read)."""
        if id_ in (None, ""):
            return ""
        return self.names.get(str(id_), f"?{id_}")

    # -- reading --------------------------------------------------------------------------

    def _read(self) -> None:
        c, m = self.conn, self.marker
        net = c.network
        networks = _mine(_json(net.get("/networks"))["networks"], m)
        subnets = [s for s in _json(net.get("/subnets"))["subnets"]
                   if any(s["network_id"] == n["id"] for n in networks)]  # fmt: skip
        routers = _mine(_json(net.get("/routers"))["routers"], m)
        groups = _json(net.get("/security-groups"))["security_groups"]
        mine_groups = [g for g in groups if str(g["name"]).startswith(m) or g["name"] == "default"]
        mine_groups = [g for g in mine_groups if g["project_id"] == c.current_project_id]
        ports = [p for p in _json(net.get("/ports"))["ports"]
                 if any(p["network_id"] == n["id"] for n in networks)]  # fmt: skip
        servers = _mine(_json(c.compute.get("/servers/detail", microversion="2.79"))["servers"], m)
        keypairs = [k["keypair"] for k in _json(c.compute.get("/os-keypairs"))["keypairs"]]
        keypairs = _mine(keypairs, m)
        server_groups = _mine(
            _json(c.compute.get("/os-server-groups", microversion="2.64"))["server_groups"], m
        )
        volumes = _mine(_json(c.block_storage.get("/volumes/detail"))["volumes"], m)
        types = _json(c.block_storage.get("/types"))["volume_types"]
        images = _mine(_json(c.image.get("/images"))["images"], m)
        for x in (*networks, *subnets, *routers, *mine_groups, *servers, *server_groups,
                  *volumes, *types, *images):  # fmt: skip
            self.names[str(x["id"])] = str(x.get("name") or "")
        for p in ports:
            self.names[str(p["id"])] = self._port_label(p, servers)
        for n in networks:
            self._put("network", n["name"], _keep(n))
        for s in subnets:
            row = _keep(s)
            row["network"] = self.name(s["network_id"])
            self._put("subnet", s["name"], row)
        for r in routers:
            row = _keep(r)
            row["external_gateway"] = bool(r.get("external_gateway_info"))
            row["interfaces"] = sorted(
                self.name(ip["subnet_id"])
                for p in ports
                if p["device_id"] == r["id"] and p["device_owner"] == "network:router_interface"
                for ip in p["fixed_ips"]
            )
            row["routes"] = sorted(r.get("routes") or [], key=str)
            self._put("router", r["name"], row)
        for g in mine_groups:
            self._put("security_group", g["name"], self._group(g))
        for p in ports:
            if str(p["device_owner"]).startswith("network:"):
                continue  # the cloud's own (DHCP, router interfaces)
            self._put("port", self.names[str(p["id"])], self._port(p))
        for s in servers:
            self._put("server", s["name"], self._server(s))
        for k in keypairs:
            self._put("keypair", k["name"], {"public_key": k["public_key"].strip(),
                                              "type": k.get("type")})  # fmt: skip
        for g in server_groups:
            self._put("server_group", g["name"], {
                "policy": g.get("policy"), "rules": g.get("rules") or {},
                "members": sorted(self.name(i) for i in g.get("members") or []),
            })  # fmt: skip
        for v in volumes:
            self._put("volume", v["name"], self._volume(v))
        for i in images:
            self._put("image", i["name"], _keep(i))

    def _put(self, kind: str, name: str, row: dict[str, Any]) -> None:
        key = f"{kind} {name}"
        assert key not in self.resources, f"two {kind}s named {name!r}: {self.marker}"
        self.resources[key] = row

    def _port_label(self, p: Mapping[str, Any], servers: list[Mapping[str, Any]]) -> str:
        """A port by its name, or for an unnamed one (Nova's) by its server and network."""
        if p.get("name"):
            return str(p["name"])
        owner = next((s["name"] for s in servers if s["id"] == p["device_id"]), p["device_id"])
        return f"(unnamed) {owner} on {self.name(p['network_id'])}"

    def _group(self, g: Mapping[str, Any]) -> dict[str, Any]:
        row = _keep(g)
        rules = []
        for r in g.get("security_group_rules") or []:
            remote = r.get("remote_group_id")
            rules.append((
                r["direction"], r["ethertype"], r.get("protocol"), r.get("port_range_min"),
                r.get("port_range_max"), r.get("remote_ip_prefix"), r.get("description") or "",
                ("self" if remote == g["id"] else self.name(remote)) if remote else None,
                r.get("remote_address_group_id"),
            ))  # fmt: skip
        row["rules"] = sorted(rules, key=str)
        return row

    def _port(self, p: Mapping[str, Any]) -> dict[str, Any]:
        row = _keep(p)
        row["network"] = self.name(p["network_id"])
        row["fixed_ips"] = sorted(
            (self.name(ip["subnet_id"]), ip["ip_address"]) for ip in p["fixed_ips"]
        )
        row["security_groups"] = sorted(self.name(i) for i in p.get("security_groups") or [])
        row["server"] = self.name(p["device_id"])
        row["allowed_address_pairs"] = sorted(
            (x["ip_address"], x.get("mac_address")) for x in p.get("allowed_address_pairs") or []
        )
        return row

    def _server(self, s: Mapping[str, Any]) -> dict[str, Any]:
        row = _keep(s)
        flavor = s.get("flavor") or {}
        row["flavor"] = {k: flavor.get(k) for k in
                         ("original_name", "vcpus", "ram", "disk", "ephemeral", "swap",
                          "extra_specs")}  # fmt: skip
        image = s.get("image")
        row["image"] = self.name(image["id"]) if isinstance(image, dict) else ""
        row["volumes"] = sorted(
            self.name(v["id"]) for v in s.get("os-extended-volumes:volumes_attached") or []
        )
        row["server_groups"] = sorted(self.name(g) for g in s.get("server_groups") or [])
        row["tags"] = sorted(t for t in s.get("tags") or [] if not t.startswith("seawall:"))
        ud = s.get("OS-EXT-SRV-ATTR:user_data")
        row["OS-EXT-SRV-ATTR:user_data"] = base64.b64decode(ud).decode() if ud else None
        row["security_groups"] = sorted({g["name"] for g in s.get("security_groups") or []})
        return row

    def _volume(self, v: Mapping[str, Any]) -> dict[str, Any]:
        row = _keep(v)
        row["server"] = sorted(self.name(a["server_id"]) for a in v.get("attachments") or [])
        meta = dict(v.get("volume_image_metadata") or {})
        for derived in ("image_id", "checksum", "size", "os_hash_value", "os_hash_algo"):
            meta.pop(derived, None)  # the copy's image has its own id (its name is kept)
        row["volume_image_metadata"] = meta
        return row


def differences(
    source: CloudView, target: CloudView, *, rename: Mapping[str, str] | None = None
) -> list[str]:
    """Every field that differs between two views, as ``"<kind> <name>.<field>: a != b"``,
    and every resource that is in one view only. ``rename`` maps a source key to the
    target key it should be compared with."""
    rename = dict(rename or {})
    out = []
    seen = set()
    for key, want in sorted(source.resources.items()):
        other = rename.get(key, key)
        seen.add(other)
        got = target.resources.get(other)
        if got is None:
            out.append(f"{key}: missing on the target")
            continue
        for field in sorted(set(want) | set(got)):
            if want.get(field) != got.get(field):
                out.append(f"{key}.{field}: {want.get(field)!r} != {got.get(field)!r}")
    for key in sorted(set(target.resources) - seen):
        out.append(f"{key}: on the target only")
    return out
