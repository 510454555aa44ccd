"""The sim's resources: creating them (validated and allocated per kind), deleting them,
and the quotas that bound them.

Where the sim is stricter than OpenStack, it says so: a resource that another resource
still references cannot be deleted (Conflict names the referrer), except a port with a
floating IP, which is disassociated as Neutron does.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import random
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from seawall.clouds import ResourceSpec
from seawall.clouds.schema import (
    ROLES,
    SELF_GROUP,
    check_identity,
    check_volume_size,
    remote_groups,
    user_attrs,
)
from seawall.clouds.sim import processes
from seawall.clouds.sim.journal import journal_path_for
from seawall.clouds.sim.servers import free_loopback_address
from seawall.clouds.sim.store import SiteStore, Stored, owner
from seawall.clouds.sim.volumes import Volumes
from seawall.clouds.tags import with_key
from seawall.errors import Conflict, InvalidInput
from seawall.model import DEFAULT_PROJECT, ResourceKind, ResourceRef

K = ResourceKind

#: attrs filled in when a spec leaves them out (the driver-neutral schema, DESIGN.md §4)
_DEFAULTS: dict[ResourceKind, dict[str, Any]] = {
    K.NETWORK: {"external": False, "isolated": False, "mtu": 1500},
    K.SUBNET: {
        "enable_dhcp": True,
        "dns_nameservers": [],
        "allocation_pools": [],
        "host_routes": [],
    },
    K.ROUTER: {"external_gateway": False},
    K.SECURITY_GROUP: {"rules": []},
    K.PORT: {"fixed_ips": [], "mac_address": "", "allowed_address_pairs": []},
    K.KEYPAIR: {"public_key": ""},
    K.FLAVOR: {"vcpus": 1, "ram_mb": 512, "disk_gb": 1, "extra_specs": {}},
    K.IMAGE: {"size": 0, "disk_format": "raw", "checksum": ""},
    K.VOLUME_TYPE: {"extra_specs": {}},
    K.SERVER_GROUP: {"policies": []},
    K.VOLUME: {"bootable": False, "availability_zone": "nova"},
    K.SERVER: {"availability_zone": "nova", "metadata": {}, "guest_agent": False},
    K.FLOATING_IP: {"floating_network": "public"},
    K.PROJECT: {},
}

#: referrer kind -> referenced kind pairs that do NOT block a delete (handled instead)
_NON_BLOCKING = frozenset({(K.FLOATING_IP, K.PORT)})

#: quota name -> the kind it counts
_QUOTA_KINDS: dict[str, ResourceKind] = {
    "servers": K.SERVER,
    "volumes": K.VOLUME,
    "networks": K.NETWORK,
    "ports": K.PORT,
    "floating_ips": K.FLOATING_IP,
}


def _in_subnet(ip: Any, cidr: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        return ipaddress.ip_address(str(ip)) in cidr
    except ValueError:
        return False


def _ip_range(start: Any, end: Any) -> Iterator[Any]:
    while start <= end:
        yield start
        start += 1


class Resources:
    """The rows of one site's resources: what ``create`` and ``delete`` change."""

    def __init__(
        self,
        store: SiteStore,
        volumes: Volumes,
        clock: Callable[[], float],
        new_id: Callable[[], str],
        project: str = DEFAULT_PROJECT,
    ) -> None:
        self.store = store
        self.volumes = volumes
        self.clock = clock
        self.new_id = new_id
        #: the project new rows belong to and refs must stay inside
        self.project = project

    # -- quotas -------------------------------------------------------------------------

    def _limits(self) -> dict[str, int]:
        path = self.store.path / "quotas.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"cannot read {path}: {exc}", field="quotas.json") from None
        names = (*_QUOTA_KINDS, "volume_bytes")
        if not isinstance(data, dict) or set(data) - set(names):
            raise InvalidInput(
                f"{path} must map some of {', '.join(names)} to integers", field="quotas.json"
            )
        return {n: int(data.get(n, -1)) for n in names}

    def _usage(self, con: sqlite3.Connection) -> dict[str, int]:
        used = {name: 0 for name in _QUOTA_KINDS}
        counts = dict(con.execute("SELECT kind, COUNT(*) FROM resources GROUP BY kind").fetchall())
        for name, kind in _QUOTA_KINDS.items():
            used[name] = counts.get(kind.value, 0)
        used["volume_bytes"] = sum(
            int(r.attrs.get("size", 0)) for r in self.store.rows(con, "kind = ?", K.VOLUME.value)
        )
        return used

    def quotas(self) -> Mapping[str, int]:
        limits = self._limits()
        with self.store.tx() as con:
            used = self._usage(con)
        return {n: -1 if lim < 0 else max(lim - used[n], 0) for n, lim in limits.items()}

    def _check_quota(self, con: sqlite3.Connection, kind: ResourceKind, size: int) -> None:
        need = {n: 1 for n, k in _QUOTA_KINDS.items() if k is kind}
        if kind is K.VOLUME:
            need["volume_bytes"] = size
        if not need:
            return
        limits, used = self._limits(), self._usage(con)
        over = [
            f"{n}: {used[n]} used + {amount} > limit {limits[n]}"
            for n, amount in need.items()
            if limits[n] >= 0 and used[n] + amount > limits[n]
        ]
        if over:
            raise Conflict(
                f"quota exceeded on site {self.store.site.name!r} creating a {kind.value} "
                f"({'; '.join(over)}); raise the limit in {self.store.path / 'quotas.json'} "
                "or free resources"
            )

    # -- create -------------------------------------------------------------------------

    def insert(self, con: sqlite3.Connection, kind: ResourceKind, spec: ResourceSpec) -> Stored:
        """A new row for ``spec`` inside the caller's write transaction: defaults filled
        in, refs checked, the kind's ``_prepare_<kind>`` run (validation and what the
        cloud allocates), the quota checked; a volume gets its file."""
        check_identity(kind, spec.name, spec.key)
        attrs = {**_DEFAULTS.get(kind, {})}
        attrs.update(user_attrs(spec.attrs))
        refs = self._check_refs(con, kind, spec)
        row = Stored(
            id=self.new_id(),
            kind=kind,
            name=spec.name,
            key=spec.key,
            attrs=attrs,
            refs=refs,
            tags=with_key(spec.tags, spec.key),
            runtime={} if self.project == DEFAULT_PROJECT else {"project": self.project},
        )
        prepare = getattr(self, f"_prepare_{kind.value}", None)
        if prepare is not None:
            prepare(con, row)
        self._check_quota(con, kind, int(attrs.get("size", 0)) if kind is K.VOLUME else 0)
        con.execute(
            "INSERT INTO resources VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.id,
                kind.value,
                row.name,
                row.key,
                json.dumps(row.attrs, sort_keys=True),
                json.dumps(row.refs, sort_keys=True),
                json.dumps(row.tags, sort_keys=True),
                json.dumps(row.runtime, sort_keys=True),
                self.clock(),
            ),
        )
        if kind is K.VOLUME:
            self.volumes.create_file(row)
        return row

    def _check_refs(
        self, con: sqlite3.Connection, kind: ResourceKind, spec: ResourceSpec
    ) -> dict[str, list[str]]:
        roles = ROLES.get(kind, {})
        unknown = sorted(set(spec.refs) - set(roles))
        if unknown:
            raise InvalidInput(
                f"unknown ref role(s) {', '.join(unknown)}; a {kind.value} may have: "
                f"{', '.join(sorted(roles)) or 'none'}",
                field=f"{kind.value}.refs",
            )
        refs: dict[str, list[str]] = {}
        for role, rule in roles.items():
            ids = list(spec.refs.get(role, ()))
            where = f"{kind.value}.refs.{role}"
            if rule.required and not ids:
                raise InvalidInput(f"a {kind.value} needs a {rule.kind.value}", field=where)
            if not rule.many and len(ids) > 1:
                raise InvalidInput(f"takes one {rule.kind.value}, got {len(ids)}", field=where)
            for id_ in ids:
                found = self.store.row(con, rule.kind, id_)
                if found is None or owner(found) != self.project:
                    site = self.store.site.name
                    raise InvalidInput(
                        f"{rule.kind.value} {id_!r} does not exist on site {site!r}",
                        field=where,
                    )
            if ids:
                refs[role] = ids
        return refs

    # Per-kind preparation: validate attrs and fill in what the cloud allocates.

    def _prepare_network(self, con: sqlite3.Connection, row: Stored) -> None:
        mtu = row.attrs["mtu"]
        if not isinstance(mtu, int) or isinstance(mtu, bool) or not 68 <= mtu <= 9216:
            raise InvalidInput(f"expected an integer 68..9216, got {mtu!r}", field="network.mtu")

    def _prepare_subnet(self, con: sqlite3.Connection, row: Stored) -> None:
        try:
            cidr = ipaddress.ip_network(str(row.attrs.get("cidr", "")))
        except ValueError as exc:
            raise InvalidInput(str(exc), field="subnet.attrs.cidr") from None
        row.attrs["cidr"] = str(cidr)
        hosts = list(cidr.hosts()) if cidr.num_addresses <= 2 else None
        gateway = row.attrs.get("gateway_ip", "")
        if gateway == "":
            first = hosts[0] if hosts is not None else cidr.network_address + 1
            row.attrs["gateway_ip"] = str(first)
        elif gateway is not None and not _in_subnet(gateway, cidr):
            raise InvalidInput(f"{gateway!r} is not inside {cidr}", field="subnet.attrs.gateway_ip")
        for i, pool in enumerate(row.attrs["allocation_pools"]):
            for end in ("start", "end"):
                if not isinstance(pool, dict) or not _in_subnet(pool.get(end), cidr):
                    raise InvalidInput(
                        f"{pool!r} must be {{start, end}} inside {cidr}",
                        field=f"subnet.attrs.allocation_pools[{i}]",
                    )
        network = row.refs["network"][0]
        for other in self.store.rows(con, "kind = ?", K.SUBNET.value):
            if other.refs.get("network") == [network] and cidr.overlaps(
                ipaddress.ip_network(other.attrs["cidr"])
            ):
                raise Conflict(f"{cidr} overlaps subnet {other.name} ({other.attrs['cidr']})")

    def _prepare_security_group(self, con: sqlite3.Connection, row: Stored) -> None:
        """Rules name their remote group by the source group's id (or ``"self"``); the
        stored rule names the recovered copy, as Neutron's would."""
        rules = [dict(r) for r in row.attrs.get("rules") or []]
        mapping = remote_groups(row.name, rules, row.refs.get("remote_groups", ()))
        for rule in rules:
            remote = rule.get("remote_group")
            if remote and remote != SELF_GROUP:
                rule["remote_group"] = mapping[str(remote)]
        row.attrs["rules"] = rules

    def link(self, con: sqlite3.Connection, row: Stored, spec: ResourceSpec) -> None:
        """A found security group gains the spec's rules it lacks, remote groups mapped
        (a recovery links a group's rules naming other groups once those exist); a rule
        it holds is never removed here, so a repeated link changes nothing."""
        if row.kind is not K.SECURITY_GROUP:
            return
        refs = self._check_refs(con, row.kind, spec)
        wanted = dataclasses.replace(row, attrs={**row.attrs, **user_attrs(spec.attrs)}, refs=refs)
        self._prepare_security_group(con, wanted)
        rules = [dict(r) for r in row.attrs.get("rules") or []]
        rules += [r for r in wanted.attrs["rules"] if r not in rules]
        merged = {**row.refs, **refs}
        if rules == row.attrs.get("rules") and merged == row.refs:
            return
        row.attrs["rules"], row.refs = rules, merged
        con.execute(
            "UPDATE resources SET attrs = ?, refs = ? WHERE id = ?",
            (json.dumps(row.attrs, sort_keys=True), json.dumps(row.refs, sort_keys=True), row.id),
        )

    def _prepare_port(self, con: sqlite3.Connection, row: Stored) -> None:
        network = row.refs["network"][0]
        subnets = [
            s
            for s in self.store.rows(con, "kind = ?", K.SUBNET.value)
            if s.refs.get("network") == [network]
        ]
        subnets.sort(key=lambda s: (s.attrs["cidr"], s.id))
        peers = [
            p
            for p in self.store.rows(con, "kind = ?", K.PORT.value)
            if p.refs.get("network") == [network]
        ]
        used = {ip: p.name for p in peers for ip in p.attrs.get("fixed_ips", [])}
        if "subnet" in row.refs:
            subnet = next((s for s in subnets if s.id == row.refs["subnet"][0]), None)
            if subnet is None:
                raise InvalidInput(
                    f"subnet {row.refs['subnet'][0]!r} is not on network {network!r}",
                    field="port.refs.subnet",
                )
        else:
            subnet = subnets[0] if subnets else None
        ips = row.attrs["fixed_ips"]
        if not isinstance(ips, list):
            raise InvalidInput(f"expected a list, got {ips!r}", field="port.attrs.fixed_ips")
        if ips and subnet is None:
            raise InvalidInput("the port's network has no subnet", field="port.attrs.fixed_ips")
        if subnet is not None:
            row.refs["subnet"] = [subnet.id]
            cidr = ipaddress.ip_network(subnet.attrs["cidr"])
            for i, ip in enumerate(ips):
                where = f"port.attrs.fixed_ips[{i}]"
                if not _in_subnet(ip, cidr) or ipaddress.ip_address(ip) in (
                    cidr.network_address,
                    cidr.broadcast_address if cidr.num_addresses > 2 else None,
                ):
                    raise InvalidInput(f"{ip!r} is not a host address in {cidr}", field=where)
                if ip == subnet.attrs.get("gateway_ip"):
                    raise Conflict(f"{ip} is the gateway of subnet {subnet.name}")
                if ip in used:
                    raise Conflict(f"{ip} is already used by port {used[ip]} on this network")
                used[ip] = row.name
            if not ips:
                row.attrs["fixed_ips"] = [self._allocate_ip(subnet, set(used))]
        macs = {p.attrs.get("mac_address") for p in peers}
        mac = row.attrs.get("mac_address") or ""
        if mac and mac in macs:
            raise Conflict(f"MAC address {mac} is already used on this network")
        rng = random.Random(row.id)
        while not mac or mac in macs:
            mac = "fa:16:3e:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(3))
        row.attrs["mac_address"] = mac

    @staticmethod
    def _allocate_ip(subnet: Stored, used: set[str]) -> str:
        cidr = ipaddress.ip_network(subnet.attrs["cidr"])
        taken = used | {subnet.attrs.get("gateway_ip")}
        pools = subnet.attrs.get("allocation_pools") or []
        ranges: Iterable[Iterable[Any]]
        if pools:
            ranges = (
                _ip_range(ipaddress.ip_address(p["start"]), ipaddress.ip_address(p["end"]))
                for p in pools
            )
        else:
            ranges = (cidr.hosts(),)
        for candidates in ranges:
            for ip in candidates:
                if str(ip) not in taken:
                    return str(ip)
        raise Conflict(f"subnet {subnet.name} ({cidr}) has no free address left")

    def _prepare_volume(self, con: sqlite3.Connection, row: Stored) -> None:
        size = check_volume_size(row.attrs.get("size"))
        if "image" in row.refs:
            image = self.store.need(con, K.IMAGE, row.refs["image"][0])
            if image.runtime.get("status") != "active":
                raise Conflict(f"image {image.name} has no data yet; upload it first")
            if int(image.attrs["size"]) > size:
                raise InvalidInput(
                    f"{size} bytes is smaller than image {image.name} ({image.attrs['size']})",
                    field="volume.attrs.size",
                )

    def _prepare_image(self, con: sqlite3.Connection, row: Stored) -> None:
        row.runtime["status"] = "queued"
        self.store.image_path(row.id).write_bytes(b"")

    def _prepare_server(self, con: sqlite3.Connection, row: Stored) -> None:
        a = row.attrs
        a.setdefault("hostname", row.name)
        command = a.get("command")
        if command is not None and (
            not isinstance(command, list)
            or not command
            or not all(isinstance(c, str) for c in command)
        ):
            raise InvalidInput(
                f"expected a non-empty argv list, got {command!r}", field="server.attrs.command"
            )
        port = a.get("listen_port")
        if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
            raise InvalidInput(
                f"expected a TCP port, got {port!r}", field="server.attrs.listen_port"
            )
        for other in self.store.rows(con, "kind = ?", K.SERVER.value):
            for role in ("ports", "volumes"):
                shared = set(other.refs.get(role, ())) & set(row.refs.get(role, ()))
                if shared:
                    raise Conflict(
                        f"{role[:-1]} {sorted(shared)[0]} is already attached to server "
                        f"{other.name}; detach it or delete that server first"
                    )
        servers = self.store.rows(con, "kind = ?", K.SERVER.value)
        taken = {s.runtime.get("access_address") for s in servers}
        address = free_loopback_address(self.store.path, row.id, taken, port or 0)
        row.runtime.update(power="building", access_address=address)

    def _prepare_floating_ip(self, con: sqlite3.Connection, row: Stored) -> None:
        fips = self.store.rows(con, "kind = ?", K.FLOATING_IP.value)
        used = {f.attrs.get("address") for f in fips}
        address = row.attrs.get("address")
        if address and address in used:
            raise Conflict(f"floating IP {address} is already allocated")
        if not address:
            pool = ipaddress.ip_network("203.0.113.0/24").hosts()  # TEST-NET-3
            address = next((str(ip) for ip in pool if str(ip) not in used), None)
            if address is None:
                raise Conflict("the floating IP pool 203.0.113.0/24 is exhausted")
            row.attrs["address"] = address

    def delete(self, ref: ResourceRef, grace: float) -> None:
        """Delete; "already gone" is success. A server's process is killed first; a
        volume's file, journal and snapshots go with it."""
        with self.store.tx(write=True) as con:
            row = self.store.row(con, ref.kind, ref.id)
            if row is None:
                return
            for other in self.store.rows(con):
                roles = [role for role, ids in other.refs.items() if ref.id in ids]
                if not roles or other.id == ref.id:
                    continue
                if (other.kind, ref.kind) in _NON_BLOCKING:
                    continue
                raise Conflict(
                    f"{ref} is still used by {other.kind.value} {other.name} ({other.id}); "
                    "delete that first"
                )
            proc = self.store.procs(con).get(ref.id)
        if proc is not None:
            processes.terminate([(proc.pid, proc.start_time)], grace=min(grace, 2.0))
        with self.store.tx(write=True) as con:
            for fip in self.store.rows(con, "kind = ?", K.FLOATING_IP.value):
                if ref.id in fip.refs.get("port", []):
                    fip.refs.pop("port")
                    con.execute(
                        "UPDATE resources SET refs = ? WHERE id = ?", (json.dumps(fip.refs), fip.id)
                    )
            snaps = [
                r["id"]
                for r in con.execute("SELECT id FROM snapshots WHERE volume_id = ?", (ref.id,))
            ]
            con.execute("DELETE FROM snapshots WHERE volume_id = ?", (ref.id,))
            con.execute("DELETE FROM processes WHERE server_id = ?", (ref.id,))
            con.execute("DELETE FROM resources WHERE id = ? AND kind = ?", (ref.id, ref.kind.value))
        for snap in snaps:
            self.store.snapshot_path(snap).unlink(missing_ok=True)
        if ref.kind is K.VOLUME:
            self.store.volume_path(ref.id).unlink(missing_ok=True)
            journal_path_for(self.store.volume_path(ref.id)).unlink(missing_ok=True)
        if ref.kind is K.IMAGE:
            self.store.image_path(ref.id).unlink(missing_ok=True)
