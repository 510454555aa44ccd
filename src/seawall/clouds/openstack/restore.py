"""Restoring onto an OpenStack project: find-or-create per kind, delete, power, quotas.

Find-or-create: every resource seawall creates carries its ``seawall:key`` where the
kind allows it (:mod:`.naming`), so a resumed run finds it instead of creating a second
one. Keypairs, flavors, volume types and server groups carry no mark: the target's
identical one is reused (and returned without ``seawall:key``: not the run's to delete),
a same-named one that differs is a :class:`~seawall.errors.Conflict` that says what to
do, and a resumed run converges by that same content match.

Recovery never creates a project: its create step resolves to the target site's own
scoped project, and a delete of a project is a no-op.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from seawall.clouds import ResourceSpec
from seawall.clouds.openstack.connection import CloudConnection, status_of
from seawall.clouds.openstack.discovery import RULE_KEYS, Discovery, GiB, rule_of
from seawall.clouds.openstack.naming import (
    MD5_TAG,
    NEUTRON_KINDS,
    SIZE_META,
    TAGS_META,
    UNMARKED_KINDS,
    hashed,
    key_material,
    nova_tag_fits,
    same_mark,
    tags_to_strings,
)
from seawall.clouds.schema import (
    ROLES,
    SELF_GROUP,
    check_identity,
    check_volume_size,
    remote_groups,
    user_attrs,
)
from seawall.clouds.tags import KEY_TAG, RUN_TAG, WORKLOAD_TAG, with_key
from seawall.errors import Conflict, InvalidInput, NotFound, PermanentError, SeawallError
from seawall.model import Resource, ResourceKind, ResourceRef

K = ResourceKind
#: a volume's bookkeeping marks, removed once its recovery is done (:meth:`Restore.release`)
RELEASED_MARKS = frozenset({KEY_TAG, RUN_TAG, WORKLOAD_TAG})
log = logging.getLogger(__name__)
#: the name of the security group Neutron gives every project (one per project)
DEFAULT_GROUP = "default"

#: kind -> (openstacksdk proxy, method): the kinds whose delete is one call that
#: tolerates "already gone" (``ignore_missing``); projects are never deleted
_DELETES: dict[ResourceKind, tuple[str, str]] = {
    K.NETWORK: ("network", "delete_network"),
    K.SUBNET: ("network", "delete_subnet"),
    K.SECURITY_GROUP: ("network", "delete_security_group"),
    K.PORT: ("network", "delete_port"),
    K.FLOATING_IP: ("network", "delete_ip"),
    K.FLAVOR: ("compute", "delete_flavor"),
    K.KEYPAIR: ("compute", "delete_keypair"),
    K.IMAGE: ("image", "delete_image"),
    K.VOLUME_TYPE: ("block_storage", "delete_type"),
    K.SERVER_GROUP: ("compute", "delete_server_group"),
    K.SERVER: ("compute", "delete_server"),
}


#: attr -> the Neutron field it is created with, per kind: the attrs discovery keeps only
#: when they differ from the cloud's default (so a missing one is left to the cloud)
NETWORK_FIELDS = {
    "description": "description",
    "port_security_enabled": "is_port_security_enabled",
    "shared": "is_shared",
    "admin_state_up": "is_admin_state_up",
    "dns_domain": "dns_domain",
}
SUBNET_FIELDS = {
    "description": "description",
    "ipv6_ra_mode": "ipv6_ra_mode",
    "ipv6_address_mode": "ipv6_address_mode",
}
ROUTER_FIELDS = {"description": "description", "admin_state_up": "is_admin_state_up"}
PORT_FIELDS = {
    "description": "description",
    "port_security_enabled": "is_port_security_enabled",
    "vnic_type": "binding_vnic_type",
    "admin_state_up": "is_admin_state_up",
    "dns_name": "dns_name",
}


def _optional(a: Mapping[str, Any], fields: Mapping[str, str]) -> dict[str, Any]:
    """The request fields for the optional attrs ``a`` has (see the ``*_FIELDS`` tables)."""
    return {field: a[attr] for attr, field in fields.items() if attr in a}


def _in(ip: str, cidr: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)
    except ValueError:
        return False


class Restore:
    """What a restore changes on the cloud: creates, deletes and power."""

    def __init__(
        self,
        connection: CloudConnection,
        discovery: Discovery,
        *,
        timeout: float,
        placeholder_image: str,
    ) -> None:
        self.connection = connection
        self.discovery = discovery
        self.site = connection.site
        self.timeout = timeout
        self.placeholder_image = placeholder_image

    @property
    def conn(self) -> Any:
        return self.connection.conn

    # -- quotas ---------------------------------------------------------------------------

    def quotas(self) -> Mapping[str, int]:
        def left(limit: Any, used: Any) -> int:
            lim = int(limit if limit is not None else -1)
            return -1 if lim < 0 else max(lim - int(used or 0), 0)

        c, pid = self.conn, self.connection.project_id
        with self.connection.api("reading quotas"):
            compute = c.compute.get_limits().absolute
            volume = c.block_storage.get_limits().absolute
            net = c.network.get_quota(pid, details=True)
        out = {
            "servers": left(compute.instances, compute.instances_used),
            "volumes": left(volume.max_total_volumes, volume.total_volumes_used),
            "volume_bytes": left(volume.max_total_volume_gigabytes, volume.total_gigabytes_used),
        }
        if out["volume_bytes"] > 0:
            out["volume_bytes"] *= GiB
        for name in ("networks", "ports", "floating_ips"):
            d = getattr(net, name) or {}
            out[name] = left(d.get("limit"), int(d.get("used", 0)) + int(d.get("reserved", 0)))
        return out

    # -- create ---------------------------------------------------------------------------

    def create(self, spec: ResourceSpec) -> Resource:
        """Find-or-create by ``spec.key``; volumes are returned once available.

        The unmarked kinds (:data:`~.naming.UNMARKED_KINDS`) are first matched by
        content (``_reuse_<kind>``): what the target already has and the spec describes
        is returned as the cloud has it, without ``seawall:key``, so the caller does not
        journal it and never deletes it; a same-named one that differs raises Conflict.
        One created here is returned with the spec's tags (in memory: the cloud holds
        none) and remembered for ``find``.
        """
        kind = ResourceKind(spec.kind)
        if kind is K.PROJECT:
            # projects are the operator's: a workload is recovered into the project this
            # site's credentials are scoped to, never into a new one
            return self.discovery.project_resource(details=False)
        check_identity(kind, spec.name, spec.key)
        attrs = user_attrs(spec.attrs)
        refs = {role: tuple(ids) for role, ids in spec.refs.items()}
        found = self.discovery.find(kind, spec.key)
        if found is not None:
            if kind is not K.SECURITY_GROUP:
                return found
            # the link of a group created before the groups its rules name
            self._check_refs(kind, refs)
            with self.connection.api(f"linking security group {spec.name}"):
                group = self.conn.network.get_security_group(found.id)
                self._add_missing_rules(group, self._wanted_rules(spec.name, attrs, refs))
            return self.discovery.get(found.ref) or found
        tags = with_key(spec.tags, spec.key)
        self._check_refs(kind, refs)
        reused = self._reuse(kind, spec.name, attrs)
        if reused is not None:
            return reused
        make = getattr(self, f"_create_{kind.value}")
        try:
            rid = make(spec.name, attrs, refs, tags)
        except Conflict:
            # another run made the same one since we looked (names are unique per
            # cloud for keypairs, flavors and volume types): reuse it if it matches
            reused = self._reuse(kind, spec.name, attrs)
            if reused is None:
                raise
            return reused
        if kind in NEUTRON_KINDS and not self._is_default_group(kind, spec.name):
            self._set_neutron_tags(kind, rid, tags)
        got = self.discovery.get(ResourceRef(kind, rid))
        if got is None:
            raise Conflict(f"{kind.value} {rid} vanished while it was being created")
        if got.tags.get(KEY_TAG) != spec.key and same_mark(got.tags.get(KEY_TAG), spec.key):
            got = dataclasses.replace(got, tags={**got.tags, KEY_TAG: spec.key})  # hashed
        if kind in UNMARKED_KINDS:
            self.discovery.remember(kind, spec.key, rid, tags)
            got = dataclasses.replace(got, tags={**got.tags, **tags})
        return got

    def _reuse(self, kind: ResourceKind, name: str, attrs: dict[str, Any]) -> Resource | None:
        """What the target already has that the spec describes (unmarked kinds only)."""
        if kind not in UNMARKED_KINDS:
            return None
        reuse: Callable[[str, dict[str, Any]], Resource | None]
        reuse = getattr(self, f"_reuse_{kind.value}")
        return reuse(name, attrs)

    @staticmethod
    def _is_default_group(kind: ResourceKind, name: str) -> bool:
        """The project's ``default`` security group: the cloud's, reused, never tagged."""
        return kind is K.SECURITY_GROUP and name == DEFAULT_GROUP

    def _set_neutron_tags(self, kind: ResourceKind, rid: str, tags: Mapping[str, str]) -> None:
        """Neutron here takes no tags in a create request: they are set right after, and
        the resource is removed again if that fails (an untagged one would be orphaned)."""
        getter = getattr(self.conn.network, f"get_{NEUTRON_KINDS[kind]}")
        try:
            with self.connection.api(f"tagging {kind.value} {rid}"):
                self.conn.network.set_tags(getter(rid), tags_to_strings(tags))
        except SeawallError:
            self.delete(ResourceRef(kind, rid))
            raise

    def _check_refs(self, kind: ResourceKind, refs: Mapping[str, tuple[str, ...]]) -> None:
        """Every ref names an existing resource of the right kind: a mapping to a network
        that does not exist fails here, before anything is created."""
        roles = {role: rule.kind for role, rule in ROLES.get(kind, {}).items()}
        for role, ids in refs.items():
            where = f"{kind.value}.refs.{role}"
            if role not in roles:
                raise InvalidInput(
                    f"unknown ref role; a {kind.value} may have: {', '.join(roles) or 'none'}",
                    field=where,
                )
            for i in ids:
                if self.discovery.get(ResourceRef(roles[role], i)) is None:
                    raise InvalidInput(
                        f"{roles[role].value} {i!r} does not exist on site {self.site.name!r}",
                        field=where,
                    )

    def _create_network(self, name: str, a: dict[str, Any], refs: Any, tags: dict[str, str]) -> str:
        if a.get("isolated"):
            tags["seawall:isolated"] = "true"  # set with the others by create()
        body: dict[str, Any] = {"name": name}
        if "mtu" in a:
            body["mtu"] = int(a["mtu"])
        if a.get("external"):
            body["is_router_external"] = True
        body.update(_optional(a, NETWORK_FIELDS))
        with self.connection.api(f"creating network {name}"):
            return str(self.conn.network.create_network(**body).id)

    def _create_subnet(self, name: str, a: dict[str, Any], refs: Any, tags: dict[str, str]) -> str:
        try:
            cidr = ipaddress.ip_network(str(a.get("cidr", "")))
        except ValueError as exc:
            raise InvalidInput(str(exc), field="subnet.attrs.cidr") from None
        body: dict[str, Any] = {
            "name": name,
            "network_id": refs["network"][0],
            "cidr": str(cidr),
            "ip_version": cidr.version,
            "is_dhcp_enabled": bool(a.get("enable_dhcp", True)),
        }
        if "gateway_ip" in a and a["gateway_ip"] != "":
            body["gateway_ip"] = a["gateway_ip"]
        for key in ("dns_nameservers", "allocation_pools", "host_routes"):
            if a.get(key):
                body[key] = a[key]
        body.update(_optional(a, SUBNET_FIELDS))
        with self.connection.api(f"creating subnet {name}"):
            return str(self.conn.network.create_subnet(**body).id)

    def _external_network(self, name: str | None = None) -> Any:
        nets = list(self.conn.network.networks(is_router_external=True))
        if name:
            nets = [n for n in nets if name in (n.name, n.id)] or nets
        return nets[0] if nets else None

    def _create_router(self, name: str, a: dict[str, Any], refs: Any, tags: dict[str, str]) -> str:
        """A router, its interfaces, then its extra routes (Neutron takes a route only
        once its next hop is on a subnet the router has an interface on). The gateway is
        on the target's external network of the captured name, else its first one."""
        body: dict[str, Any] = {"name": name, **_optional(a, ROUTER_FIELDS)}
        with self.connection.api(f"creating router {name}"):
            if a.get("external_gateway"):
                ext = self._external_network(a.get("external_network"))
                if ext is None:
                    raise InvalidInput(
                        f"site {self.site.name!r} has no external network for the router's "
                        "gateway; create one or map the router",
                        field="router.attrs.external_gateway",
                    )
                body["external_gateway_info"] = {"network_id": ext.id}
                if a.get("enable_snat") is False:
                    body["external_gateway_info"]["enable_snat"] = False
            router = self.conn.network.create_router(**body)
            try:
                for subnet in refs.get("subnets", ()):
                    self.conn.network.add_interface_to_router(router, subnet_id=subnet)
                if a.get("routes"):
                    routes = [dict(r) for r in a["routes"]]
                    self.conn.network.update_router(router, routes=routes)
            except Exception:
                self._delete_router(str(router.id))  # not tagged yet: nothing would find it
                raise
            return str(router.id)

    def _create_security_group(
        self, name: str, a: dict[str, Any], refs: Any, tags: dict[str, str]
    ) -> str:
        """A group holding exactly the captured rules, each rule's remote group pointing
        at the recovered copy of that group (``remote_groups`` refs; ``"self"`` at the new
        group itself). A rule whose remote cannot be resolved fails the step, naming the
        group and the rule: it is never created "from any source".

        The project's ``default`` group is the cloud's, never created (Neutron refuses a
        second one): see :meth:`_reconcile_default_group`.
        """
        rules = self._wanted_rules(name, a, refs)
        if name == DEFAULT_GROUP:
            return self._reconcile_default_group(rules)
        body: dict[str, Any] = {"name": name, "description": str(a.get("description", ""))}
        if a.get("stateful") is False:
            body["stateful"] = False  # only when set: a Neutron without it takes no field
        with self.connection.api(f"creating security group {name}"):
            group = self.conn.network.create_security_group(**body)
            try:
                # Neutron adds default egress rules; the group must hold exactly the
                # captured rules, so the defaults that were not captured go
                for rule in group.security_group_rules or []:
                    mine = rule_of(rule, group.id)
                    if mine in rules:
                        rules.remove(mine)
                    else:
                        self.conn.network.delete_security_group_rule(rule["id"])
                for rule in rules:
                    self._create_rule(group.id, rule)
            except Exception:
                self.conn.network.delete_security_group(group, ignore_missing=True)
                raise
            return str(group.id)

    def _wanted_rules(self, name: str, a: Mapping[str, Any], refs: Any) -> list[dict[str, Any]]:
        """The captured rules in the target's terms: remote groups mapped to the recovered
        copies (:func:`~seawall.clouds.schema.remote_groups`)."""
        captured = [dict(r) for r in a.get("rules", [])]
        mapping = remote_groups(name, captured, refs.get("remote_groups", ()))
        out = []
        for rule in captured:
            if rule.get("remote_address_group"):
                raise InvalidInput(
                    f"security group {name!r}: rule {rule} has a remote address group, "
                    "which seawall does not recover; it would allow any source",
                    field="security_group.attrs.rules",
                )
            want = {k: rule.get(k) for k in RULE_KEYS}
            if rule.get("description"):
                want["description"] = str(rule["description"])
            remote = rule.get("remote_group")
            if remote:
                want["remote_group"] = remote if remote == SELF_GROUP else mapping[str(remote)]
            out.append(want)
        return out

    def _create_rule(self, group_id: str, rule: Mapping[str, Any]) -> None:
        body = {k: v for k, v in rule.items() if v is not None and k != "remote_group"}
        remote = rule.get("remote_group")
        if remote:
            body["remote_group_id"] = group_id if remote == SELF_GROUP else remote
        self.conn.network.create_security_group_rule(security_group_id=group_id, **body)

    def _add_missing_rules(self, group: Any, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add the ``rules`` ``group`` lacks; returns the rules it holds beyond them
        (never removed here: a link or a reconcile only ever adds what the source had)."""
        have = [rule_of(r, group.id) for r in group.security_group_rules or []]
        for rule in rules:
            if rule not in have:
                self._create_rule(group.id, rule)
                have.append(rule)
        return [r for r in have if r not in rules]

    def _default_group(self) -> Any:
        """The target project's own ``default`` group (Neutron makes it on first use)."""
        pid = self.connection.project_id
        groups = list(self.conn.network.security_groups(name=DEFAULT_GROUP, project_id=pid))
        if not groups:
            raise NotFound(f"site {self.site.name!r} has no default security group in {pid}")
        return groups[0]

    def _reconcile_default_group(self, rules: list[dict[str, Any]]) -> str:
        """Reuse the target project's ``default`` group and add the captured rules it lacks.

        The rule: a recovery never removes a rule from, nor widens beyond the source, the
        target's ``default`` group by stealth. Rules the source had and the target lacks
        are added (the recovered servers need them, and the source granted exactly them).
        Rules the target has and the source did not are kept and reported (a warning
        naming each), never deleted: the group is the project's, shared with servers
        seawall does not own, and deleting would silently change their firewall. The
        group is not tagged (its tags are the project's) and is never deleted by a
        revert or a drill clean-up (:meth:`delete`); the rules a recovery added stay.
        """
        with self.connection.api(f"reconciling security group {DEFAULT_GROUP}"):
            group = self._default_group()
            extra = self._add_missing_rules(group, rules)
        if extra:
            log.warning(
                "site %s: security group default (%s) keeps %d rule(s) the source did not "
                "have (not removed: the group is the project's): %s",
                self.site.name,
                group.id,
                len(extra),
                extra,
            )
        return str(group.id)

    def _create_port(self, name: str, a: dict[str, Any], refs: Any, tags: dict[str, str]) -> str:
        """A port, created before its server and handed to Nova as ``{"port": id}``.

        Also for the unnamed ports Nova created itself (``server create --network X``):
        the copy is pre-created with the same, empty name rather than left to Nova at boot
        (``networks=[{"uuid": net, "fixed_ip": ip}]``), because only a pre-created port
        keeps what ``ip_policy: preserve`` promises: Nova's boot request takes a fixed IP
        but no MAC address, and it would create the port without seawall's key tag, so a
        resumed run could not find it. Neutron is told the same things either way (name,
        network, fixed IPs, groups); Nova sets the device owner when it attaches the port.
        The one difference: Nova deletes a port it created with its server, and keeps one
        it was given. The cloud's own ports (DHCP, router interfaces) are never captured
        (``Discovery``'s ``user_ports``), so they are never created here.
        """
        network = refs["network"][0]
        body: dict[str, Any] = {"name": name, "network_id": network}
        ips = list(a.get("fixed_ips") or [])
        label = name or f"(unnamed, {tags.get(KEY_TAG, '')}) on network {network}"
        with self.connection.api(f"creating port {label}"):
            subnets = list(self.conn.network.subnets(network_id=network))
            if ips:
                fixed = []
                for ip in ips:
                    subnet = next(
                        (
                            s.id
                            for s in subnets
                            if _in(ip, s.cidr) and (not refs.get("subnet") or len(ips) > 1)
                        ),
                        refs["subnet"][0] if refs.get("subnet") else None,
                    )
                    if subnet is None or not any(
                        s.id == subnet and _in(ip, s.cidr) for s in subnets
                    ):
                        raise InvalidInput(
                            f"{ip!r} is not inside a subnet of network {network}",
                            field="port.attrs.fixed_ips",
                        )
                    fixed.append({"subnet_id": subnet, "ip_address": ip})
                body["fixed_ips"] = fixed
            elif refs.get("subnet"):
                body["fixed_ips"] = [{"subnet_id": refs["subnet"][0]}]
            if a.get("mac_address"):
                body["mac_address"] = a["mac_address"]
            if a.get("allowed_address_pairs"):
                body["allowed_address_pairs"] = a["allowed_address_pairs"]
            if "security_groups" in refs:
                body["security_group_ids"] = list(refs["security_groups"])
            body.update(_optional(a, PORT_FIELDS))
            if a.get("extra_dhcp_opts"):
                body["extra_dhcp_opts"] = [dict(o) for o in a["extra_dhcp_opts"]]
            return str(self.conn.network.create_port(**body).id)

    def _create_floating_ip(
        self, name: str, a: dict[str, Any], refs: Any, tags: dict[str, str]
    ) -> str:
        with self.connection.api(f"creating floating IP {name}"):
            ext = self._external_network(a.get("floating_network"))
            if ext is None:
                raise InvalidInput(
                    f"site {self.site.name!r} has no external network for floating IPs",
                    field="floating_ip.attrs.floating_network",
                )
            body: dict[str, Any] = {
                "floating_network_id": ext.id,
                "description": name,
            }
            if a.get("address") and a.get("preserve_address"):
                body["floating_ip_address"] = a["address"]
            if refs.get("port"):
                body["port_id"] = refs["port"][0]
        try:
            with self.connection.api(f"creating floating IP {name}"):
                return str(self.conn.network.create_ip(**body).id)
        except NotFound as exc:
            if "not reachable" not in str(exc):
                raise
            raise Conflict(
                f"floating IP {name}: no router joins the port's subnet to the external "
                f"network {ext.name}; restore the router (with its gateway) first ({exc})"
            ) from None

    # -- the unmarked kinds: reuse what matches, else create exactly what was captured --

    @staticmethod
    def _flavor_body(a: Mapping[str, Any]) -> dict[str, int]:
        """A flavor's sizes as Nova takes them: what a reused flavor must match."""
        return {
            "vcpus": int(a.get("vcpus", 1)),
            "ram": int(a.get("ram_mb", 512)),
            "disk": int(a.get("disk_gb", 1)),
            "ephemeral": int(a.get("ephemeral_gb", 0)),
            "swap": int(a.get("swap_mb", 0) or 0),
        }

    @staticmethod
    def _specs(a: Mapping[str, Any]) -> dict[str, str]:
        """The user's extra specs as Nova and Cinder hold them (strings)."""
        return {str(k): str(v) for k, v in (a.get("extra_specs") or {}).items()}

    def _by_name(self, kind: ResourceKind, listing: Any, name: str) -> list[Resource]:
        """The target's resources of ``kind`` named ``name``, read in full (sorted by id,
        so every attempt of a run picks the same one)."""
        with self.connection.api(f"looking for {kind.value} {name}"):
            ids = sorted(str(x.id) for x in listing() if x.name == name)
        found = [self.discovery.get(ResourceRef(kind, i)) for i in ids]
        return [r for r in found if r is not None]

    def _reuse_flavor(self, name: str, a: dict[str, Any]) -> Resource | None:
        """The target's same-named flavor, when its sizes and the user's extra specs are
        the captured ones (a server on it gets what the source's got). One that differs
        is a Conflict: Nova names are unique, and a silently different flavor would
        change what the servers run on. A differing description or visibility is
        reported, not refused."""
        listing = lambda: self.conn.compute.flavors(is_public=None)  # noqa: E731
        have = self._by_name(K.FLAVOR, listing, name)
        if not have:
            return None
        flavor, want = have[0], self._flavor_body(a)
        got = self._flavor_body(flavor.attrs)
        diffs = [f"{k} {got[k]} (checkpoint: {v})" for k, v in want.items() if got[k] != v]
        want_specs, got_specs = self._specs(a), self._specs(flavor.attrs)
        if want_specs != got_specs:
            diffs.append(f"extra specs {got_specs} (checkpoint: {want_specs})")
        if diffs:
            raise Conflict(
                f"flavor {name!r} already exists on site {self.site.name!r} and differs from "
                f"the checkpoint's: {'; '.join(diffs)}. Map it in the recovery plan "
                f"(mappings.flavor: {{{name!r}: <a flavor at {self.site.name}>}}) or remove "
                "that flavor, then run the recovery again"
            )
        for field in ("description", "is_public"):
            if field in a and flavor.attrs.get(field) != a[field]:
                log.warning(
                    "site %s: reusing flavor %s (%s), whose %s is %r (checkpoint: %r)",
                    self.site.name, name, flavor.id, field, flavor.attrs.get(field), a[field],
                )  # fmt: skip
        return flavor

    def _create_flavor(self, name: str, a: dict[str, Any], refs: Any, tags: dict[str, str]) -> str:
        """The captured flavor under its own name, with exactly the user's extra specs
        (the scheduler reads them: no seawall entry goes there). A private flavor is
        opened to the project the workload is recovered into (the source's access list
        names the source's projects, which mean nothing here)."""
        body: dict[str, Any] = {
            "name": name,
            **self._flavor_body(a),
            "is_public": bool(a.get("is_public", True)),
        }
        if a.get("description"):
            body["description"] = str(a["description"])  # Nova 2.55 and later
        with self.connection.api(f"creating flavor {name}"):
            flavor = self.conn.compute.create_flavor(**body)
            specs = self._specs(a)
            try:
                if specs:
                    self.conn.compute.create_flavor_extra_specs(flavor, specs)
                if not body["is_public"]:
                    pid = self.connection.project_id
                    self.conn.compute.flavor_add_tenant_access(flavor, pid)
            except Exception:
                self.conn.compute.delete_flavor(flavor, ignore_missing=True)
                raise
            return str(flavor.id)

    def _reuse_keypair(self, name: str, a: dict[str, Any]) -> Resource | None:
        """The target's keypair of that name when it holds the same key (a comment that
        differs is only reported: it is a label, see :func:`~.naming.key_material`). A
        different key under the name is a Conflict: Nova puts a keypair's key into the
        guests booted with it, so reusing it would lock the owner out."""
        have = self.discovery.get(ResourceRef(K.KEYPAIR, name))
        if have is None:
            return None
        want = str(a.get("public_key", ""))
        got = str(have.attrs.get("public_key", ""))
        if key_material(got) != key_material(want):
            raise Conflict(
                f"keypair {name!r} already exists on site {self.site.name!r} with a "
                "different public key than the checkpoint's; the recovered servers need "
                f"the captured key under that name: delete or rename the keypair {name!r} "
                f"at {self.site.name} (as the user who runs the recovery), then run the "
                "recovery again"
            )
        if got.strip() != want.strip():
            log.warning(
                "site %s: reusing keypair %s: same key, different comment (%r, checkpoint: %r)",
                self.site.name, name, got[len(key_material(got)):].strip(),
                want[len(key_material(want)):].strip(),
            )  # fmt: skip
        return have

    def _create_keypair(self, name: str, a: dict[str, Any], refs: Any, tags: dict[str, str]) -> str:
        """The captured name and exactly the captured public key: the recovered servers'
        ``key_name`` is the source's, and their guests get the same key."""
        public_key = str(a.get("public_key", "")).strip()
        if not public_key:
            raise InvalidInput(
                f"keypair {name!r} has no public key in the checkpoint; Nova would make a "
                "new key, which no one holds the private half of",
                field="keypair.attrs.public_key",
            )
        body: dict[str, Any] = {"name": name, "public_key": public_key}
        if a.get("type") and a["type"] != "ssh":
            body["type"] = str(a["type"])  # Nova 2.2 and later
        with self.connection.api(f"creating keypair {name}"):
            return str(self.conn.compute.create_keypair(**body).name)

    def _create_image(self, name: str, a: dict[str, Any], refs: Any, tags: dict[str, str]) -> str:
        """An image record (its data is uploaded by RestoreImage) with every captured
        property, its visibility (``private`` for a checkpoint that did not keep one),
        ``protected`` and ``os_hidden``.

        Created through the ``Image`` resource rather than ``image.create_image``: that
        helper adds properties of its own (``owner_specified.openstack.*``) and would
        overwrite the captured ones of that name. A ``public`` image needs Glance's
        ``publicize_image`` right (an admin's by default); without it the step fails with
        what to do, rather than quietly narrowing who may use the image.
        """
        from openstack.image.v2.image import Image

        body: dict[str, Any] = {str(k): str(v) for k, v in (a.get("properties") or {}).items()}
        marks = dict(tags)  # seawall's as Glance tags too, never as properties
        if a.get("checksum"):
            marks[MD5_TAG] = str(a["checksum"])
        visibility = str(a.get("visibility") or "private")
        body.update(
            name=name,
            disk_format=str(a.get("disk_format", "raw")),
            container_format=str(a.get("container_format", "bare")),
            visibility=visibility,
            min_disk=int(a.get("min_disk", 0)),
            min_ram=int(a.get("min_ram", 0)),
            tags=tags_to_strings(marks),
        )
        if a.get("protected"):
            body["protected"] = True
        if a.get("os_hidden"):
            body["os_hidden"] = True
        try:
            with self.connection.api(f"creating image {name}"):
                return str(Image.new(**body).create(self.conn.image).id)
        except PermanentError as exc:
            if visibility != "public" or "forbidden" not in str(exc):
                raise
            raise PermanentError(
                f"image {name} is public at the source, and making an image public on site "
                f"{self.site.name!r} needs Glance's publicize_image right (an admin's by "
                "default): recover with credentials that hold it, or map the image to one "
                f"of that site's images (mappings.image) ({exc})"
            ) from None

    def _reuse_volume_type(self, name: str, a: dict[str, Any]) -> Resource | None:
        """The target's same-named volume type, always: types are the operator's, per
        cloud (``__DEFAULT__``, a backend's), and the target's is what that name means
        there. Extra specs that differ from the captured ones are logged (the fidelity
        check reports them), never changed."""
        have = self._by_name(K.VOLUME_TYPE, self.conn.block_storage.types, name)
        if not have:
            return None
        vtype = have[0]
        want, got = self._specs(a), self._specs(vtype.attrs)
        if want != got:
            diffs = sorted(k for k in {*want, *got} if want.get(k) != got.get(k))
            log.warning(
                "site %s: reusing volume type %s (%s), whose extra specs differ from the "
                "checkpoint's in %s (site: %s, checkpoint: %s)",
                self.site.name, name, vtype.id, ", ".join(diffs),
                {k: got.get(k) for k in diffs}, {k: want.get(k) for k in diffs},
            )  # fmt: skip
        return vtype

    def _create_volume_type(
        self, name: str, a: dict[str, Any], refs: Any, tags: dict[str, str]
    ) -> str:
        """Only when the target has no type of that name: the captured name, exactly the
        user's extra specs and the description."""
        body: dict[str, Any] = {"name": name, "extra_specs": self._specs(a)}
        if a.get("description"):
            body["description"] = str(a["description"])
        with self.connection.api(f"creating volume type {name}"):
            return str(self.conn.block_storage.create_type(**body).id)

    @staticmethod
    def _group_policy(a: Mapping[str, Any]) -> str:
        return str((list(a.get("policies") or []) or ["soft-anti-affinity"])[0])

    def _reuse_server_group(self, name: str, a: dict[str, Any]) -> Resource | None:
        """A same-named group with the same policy and rules and no members: the one an
        interrupted attempt of this run created (server group names are not unique, and
        a group with members is someone's placement, never joined)."""
        policy, rules = self._group_policy(a), dict(a.get("rules") or {})
        with self.connection.api(f"looking for server group {name}"):
            empty = sorted(
                str(g.id)
                for g in self.conn.compute.server_groups()
                if g.name == name and not g.member_ids
            )
        for gid in empty:
            group = self.discovery.get(ResourceRef(K.SERVER_GROUP, gid))
            if (
                group is not None
                and self._group_policy(group.attrs) == policy
                and dict(group.attrs.get("rules") or {}) == rules
            ):
                return group
        return None

    def _create_server_group(
        self, name: str, a: dict[str, Any], refs: Any, tags: dict[str, str]
    ) -> str:
        """The captured name, policy and rules (rules need Nova 2.64: a cloud without
        it refuses the group rather than drop them)."""
        from openstack import exceptions as os_exc

        body: dict[str, Any] = {"name": name, "policy": self._group_policy(a)}
        if a.get("rules"):
            body["rules"] = dict(a["rules"])
        with self.connection.api(f"creating server group {name}"):
            try:
                return str(self.conn.compute.create_server_group(**body).id)
            except os_exc.NotSupported as exc:
                raise PermanentError(
                    f"server group {name!r}: site {self.site.name!r} cannot keep its rules "
                    f"{body.get('rules')} ({exc}); recover it to a cloud with Nova 2.64"
                ) from None

    def _create_volume(self, name: str, a: dict[str, Any], refs: Any, tags: dict[str, str]) -> str:
        """A blank volume (its bytes are written by RestoreVolume) with the user's
        metadata beside seawall's tags, its description, the bootable flag and a boot
        volume's image metadata (Cinder's ``os-set_image_metadata``; ``image_id`` is not
        set: it would name an image of the source site). ``multiattach`` comes with the
        volume type, as Cinder wants it.

        The user's tags (a checkpoint taken before the user's metadata was captured apart
        holds it as tags) become plain metadata keys, and ``seawall:tags`` names them, so
        they are read back as the tags they were."""
        size = check_volume_size(a.get("size"))
        meta = {str(k): str(v)[:255] for k, v in (a.get("metadata") or {}).items()}
        meta.update({k: str(v)[:255] for k, v in tags.items()})
        user_tags = ",".join(sorted(k for k in tags if not k.startswith("seawall:")))
        if user_tags and len(user_tags) <= 255:
            meta[TAGS_META] = user_tags
        if size % GiB:
            meta[SIZE_META] = str(size)  # Cinder counts whole GiB
        body: dict[str, Any] = {"name": name, "size": math.ceil(size / GiB), "metadata": meta}
        if a.get("description"):
            body["description"] = str(a["description"])
        if refs.get("volume_type"):
            body["volume_type"] = refs["volume_type"][0]
        if refs.get("image"):
            body["image_id"] = refs["image"][0]
        if a.get("availability_zone") and a["availability_zone"] != "nova":
            body["availability_zone"] = a["availability_zone"]
        with self.connection.api(f"creating volume {name}"):
            volume = self.conn.block_storage.create_volume(**body)
        ref = ResourceRef(K.VOLUME, volume.id)
        self.discovery.wait_for_status(ref, "available", self.timeout)
        try:
            if a.get("bootable") and not refs.get("image"):
                with self.connection.api(f"marking volume {name} bootable"):
                    self.conn.block_storage.set_volume_bootable_status(volume, True)
            image_meta = {str(k): str(v) for k, v in (a.get("image_metadata") or {}).items()}
            if image_meta:
                with self.connection.api(f"setting the image metadata of volume {name}"):
                    self.conn.block_storage.set_volume_image_metadata(volume, **image_meta)
        except SeawallError:
            self.delete(ref)  # its key is on it, but a resumed run would take it as done
            raise
        return str(volume.id)

    def _boot_image(self) -> str:
        """An image for a server captured without a boot source (a sim server, say)."""
        if self.placeholder_image:
            return self.placeholder_image
        key = "seawall-placeholder"
        for image in self.conn.image.images(name=key):
            if image.status == "active":
                return str(image.id)
        image = self.conn.image.create_image(
            name=key, disk_format="raw", container_format="bare", data=b"\0" * 512,
            visibility="private", allow_duplicates=True,
        )  # fmt: skip
        return str(image.id)

    @staticmethod
    def _server_tags(a: dict[str, Any], tags: dict[str, str]) -> tuple[dict[str, str], list[str]]:
        """(metadata, Nova tags): every tag a Nova tag, seawall's too (its value hashed
        when Nova cannot hold it, see :func:`~.naming.hashed`); the metadata is the
        user's, plus a user tag no Nova tag can hold (over 60 characters, ``/`` or ``,``)."""
        meta = {str(k): str(v) for k, v in (a.get("metadata") or {}).items()}
        nova = []
        marks = dict(tags)
        if a.get("guest_agent"):
            marks["seawall:guest_agent"] = "true"
        for k, v in marks.items():
            (text,) = tags_to_strings({k: v})
            if nova_tag_fits(text):
                nova.append(text)
            elif k.startswith("seawall:"):
                nova.append(f"{k}={hashed(str(v))}")
            else:
                meta[k] = str(v)[:255]
        return meta, sorted(nova)

    def _create_server(self, name: str, a: dict[str, Any], refs: Any, tags: dict[str, str]) -> str:
        meta, user_tags = self._server_tags(a, tags)
        body: dict[str, Any] = {
            "name": name,
            "flavor_id": refs["flavor"][0],
            "metadata": meta,
            "tags": user_tags,
        }
        hostname = str(a.get("hostname") or "")
        if hostname:
            body["hostname"] = hostname
        if a.get("user_data"):
            body["user_data"] = str(a["user_data"])  # base64, as Nova returned it
        if a.get("description"):
            body["description"] = str(a["description"])
        if a.get("config_drive"):
            body["config_drive"] = True
        if a.get("availability_zone") and a["availability_zone"] != "nova":
            body["availability_zone"] = a["availability_zone"]
        if refs.get("keypair"):
            body["key_name"] = refs["keypair"][0]
        ports = list(refs.get("ports", ()))
        body["networks"] = [{"port": p} for p in ports] if ports else "none"
        volumes = list(refs.get("volumes", ()))
        bdm: list[dict[str, Any]] = []
        image = refs["image"][0] if refs.get("image") else None
        boot_volume = None
        if image is None and volumes:
            # attach order puts the boot volume first; it must be bootable to boot from
            first = self.discovery.get(ResourceRef(K.VOLUME, volumes[0]))
            if first is not None and first.attrs.get("bootable"):
                boot_volume = volumes[0]
        for vid in volumes:
            bdm.append({
                "uuid": vid, "source_type": "volume", "destination_type": "volume",
                "boot_index": 0 if vid == boot_volume else -1, "delete_on_termination": False,
            })  # fmt: skip
        with self.connection.api(f"creating server {name}"):
            if image is None and boot_volume is None:
                image = self._boot_image()
            if image:
                body["image_id"] = image
                if bdm:
                    bdm.insert(0, {
                        "uuid": image, "source_type": "image", "destination_type": "local",
                        "boot_index": 0, "delete_on_termination": True,
                    })  # fmt: skip
            if bdm:
                body["block_device_mapping_v2"] = bdm
            if refs.get("server_group"):
                body["scheduler_hints"] = {"group": refs["server_group"][0]}
            server_id = str(self.conn.compute.create_server(**body).id)
        self._wait_while_building(server_id)
        return server_id

    def _wait_while_building(self, server_id: str) -> None:
        """Like the sim, create returns a server that has left BUILD: its ports and
        volumes are attached by then, so what create returns describes it fully. A server
        still building at the deadline is returned as it is (its status says so)."""
        deadline = time.monotonic() + self.timeout
        while True:
            server = self.discovery.get(ResourceRef(K.SERVER, server_id))
            status = server.attrs.get("status") if server else None
            if status != "BUILD" or time.monotonic() > deadline:
                return
            self.connection.wait(1)

    # -- release --------------------------------------------------------------------------

    def release(self, ref: ResourceRef) -> None:
        """A volume's ``seawall:key``, ``seawall:run`` and ``seawall:workload`` leave its
        metadata (Cinder has no tags, so they lived where the user reads them while the
        recovery could still need to find the volume by its key). What encodes the
        user's own data stays: ``seawall:size`` (a size that is not whole GiB) and
        ``seawall:tags``. The other kinds keep their marks in tags: nothing to do."""
        if ref.kind is not K.VOLUME:
            return
        try:
            with self.connection.api(f"releasing {ref}"):
                volume = self.conn.block_storage.get_volume(ref.id)
                marks = [k for k in (volume.metadata or {}) if k in RELEASED_MARKS]
                if marks:
                    self.conn.block_storage.delete_volume_metadata(volume, keys=marks)
        except NotFound:
            return

    # -- delete ---------------------------------------------------------------------------

    def delete(self, ref: ResourceRef) -> bool:
        """Delete; "already gone" is success. Servers and volumes are waited for, so what
        they held (ports, volumes, RBD images) is free when this returns. False when the
        cloud said "not found" on the way (nothing was waited for)."""
        c, k, i = self.conn, ref.kind, ref.id
        try:
            with self.connection.api(f"deleting {ref}"):
                if k is K.SECURITY_GROUP and self._is_default_group(
                    k, getattr(c.network.find_security_group(i), "name", "")
                ):
                    return True  # the project's own, reused by a recovery (never deleted)
                if k is K.IMAGE:
                    self._unprotect_image(i)
                if k in _DELETES:
                    proxy, method = _DELETES[k]
                    getattr(getattr(c, proxy), method)(i, ignore_missing=True)
                elif k is K.ROUTER:
                    self._delete_router(i)
                elif k is K.VOLUME:
                    volume = c.block_storage.get_volume(i)
                    if volume.status == "in-use":
                        raise Conflict(f"{ref} is still attached to a server; delete that first")
                    c.block_storage.delete_volume(i, ignore_missing=True, cascade=True)
        except NotFound:
            return False
        if k in (K.SERVER, K.VOLUME):
            self.discovery.wait_for_status(ref, "DELETED", self.timeout)
        return True

    def _unprotect_image(self, image_id: str) -> None:
        """Glance refuses to delete a protected image: a recovered copy of one is made
        deletable first, so a revert or a drill clean-up can remove it."""
        image = self.conn.image.find_image(image_id, ignore_missing=True)
        if image is not None and image.is_protected:
            self.conn.image.update_image(image, protected=False)

    def _delete_router(self, router_id: str) -> None:
        """Its extra routes, then its interfaces: Neutron refuses to remove an interface a
        route needs, and to delete a router that has any."""
        c = self.conn
        router = c.network.get_router(router_id)
        if router.routes:
            router = c.network.update_router(router, routes=[])
        for port in c.network.ports(device_id=router_id):
            if port.device_owner == "network:router_interface":
                for ip in port.fixed_ips:
                    c.network.remove_interface_from_router(router, subnet_id=ip["subnet_id"])
        c.network.delete_router(router_id, ignore_missing=True)

    # -- power ----------------------------------------------------------------------------

    def power_off(self, server_id: str) -> None:
        self._power(server_id, "stop", "SHUTOFF")

    def power_on(self, server_id: str) -> None:
        self._power(server_id, "start", "ACTIVE")

    def _power(self, server_id: str, action: str, target: str) -> None:
        with self.connection.api(f"{action} server {server_id}"):
            server = self.conn.compute.get_server(server_id)
            if server.status == target:
                return
            try:
                getattr(self.conn.compute, f"{action}_server")(server)
            except Exception as exc:
                if status_of(exc) != 409:  # already in (or moving to) that state
                    raise
