"""The ``openstack`` driver: CloudDriver V1 over a real OpenStack cloud (openstacksdk).

A site names a clouds.yaml entry: ``params = {"cloud": "prod-east"}``, optionally
``clouds_yaml`` (a path; default: the usual search path), ``ceph_conf`` (enables the RBD
data path), ``rbd_pool`` (default ``volumes``), ``rbd_user`` (default ``admin``),
``timeout`` (seconds a create may wait, default 300) and ``placeholder_image`` (an image
to boot servers that have neither an image nor a volume).

Resources use the driver-neutral schema of :mod:`seawall.clouds.sim` (DESIGN.md §4):
volume ``size`` is in bytes (the Cinder volume is that rounded up to GiB, and the exact
size is kept in the volume's metadata), ports carry plain ``fixed_ips`` strings, etc.

Find-or-create: every resource seawall creates carries its ``seawall:key`` where the
kind allows it, so a resumed run finds it instead of creating a second one:

==================  ==================================================================
kind                where tags live
==================  ==================================================================
network, subnet,    Neutron tags ``key=value``
router, port, SG,
floating IP
server              metadata for ``seawall:*``; Nova tags ``key=value`` for the rest
volume              metadata (``seawall:size`` holds the byte size)
image               properties for ``seawall:*``; Glance tags ``key=value`` for the rest
flavor, volume      extra specs ``seawall:key`` / ``seawall:tag:<key>`` (the ``seawall``
type                scope is ignored by the Nova and Cinder capability filters)
keypair             no metadata: the tags (zlib + base64url) end the public key's comment;
                    the name (= its id) is ``<name>-sw<hash of the key>``
server group        no metadata: the tags are packed into the name, after `` sw ``
==================  ==================================================================

Projects: a discovered graph includes the project the credentials are scoped to, with
its record, its role assignments (user or group, role; when the credentials may list
them) and its quota limits, so a checkpoint says who held what where. Recovery never
creates a project: its create step resolves to the target site's own scoped project,
and a delete of a project is a no-op.

Data paths (:meth:`capabilities`): ``cbt`` when librbd (Debian ``python3-rbd``) and the
site's ``ceph_conf`` are available: extents come from ``diff_iterate`` between the RBD
snapshots that back Cinder snapshots (``volumes/volume-<id>@snapshot-<id>``), reads and
writes go straight to RBD. ``full`` otherwise: a snapshot is read by turning it into a
temporary volume and an image and downloading that (no changed-extent tracking; writing
a volume is not possible through the APIs and says so).

Errors: 5xx and dropped connections raise :class:`TransientError` (the orchestration
retries); a refused connection, a rejected login or a missing service raise
:class:`SiteUnavailable`; 404 is :class:`NotFound`, 409 and quota refusals
:class:`Conflict`, 400 :class:`InvalidInput`.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import ipaddress
import json
import math
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from seawall.clouds import DriverCapabilities, Extent, ResourceSpec, SnapshotInfo
from seawall.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PermanentError,
    SeawallError,
    SiteUnavailable,
    StepTimeout,
    TransientError,
    VerificationFailed,
)
from seawall.model import Resource, ResourceGraph, ResourceKind, ResourceRef, Selector, Site

K = ResourceKind
T = TypeVar("T")

KEY_TAG = "seawall:key"
SIZE_META = "seawall:size"
TAG_SPEC = "seawall:tag:"  #: extra-spec prefix of a user tag on flavors and volume types
PACK = " sw "  #: server group name separator before the packed tags (never in base64)
KEY_COMMENT = " seawall-tags:"  #: in a keypair's public key, before the packed tags
GiB = 1 << 30
_CHUNK = 4 << 20
#: attrs the cloud computes; a spec's values for them are ignored
RUNTIME_ATTRS = frozenset({"status", "access_address"})
_KIND_ORDER = {k: i for i, k in enumerate(ResourceKind)}
_NEUTRON_KINDS = {
    K.NETWORK: "network",
    K.SUBNET: "subnet",
    K.ROUTER: "router",
    K.PORT: "port",
    K.SECURITY_GROUP: "security_group",
    K.FLOATING_IP: "ip",
}
_RULE_KEYS = (
    "direction",
    "ethertype",
    "protocol",
    "port_range_min",
    "port_range_max",
    "remote_ip_prefix",
)


# --------------------------------------------------------------------------------------
# Tags: encodings per kind
# --------------------------------------------------------------------------------------


def tags_to_strings(tags: Mapping[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in sorted(tags.items())]


def strings_to_tags(strings: Iterable[str]) -> dict[str, str]:
    out = {}
    for s in strings or ():
        k, _, v = s.partition("=")
        out[k] = v
    return out


def _pack(name: str, tags: Mapping[str, str]) -> str:
    payload = json.dumps({"n": name, "t": dict(tags)}, sort_keys=True, separators=(",", ":"))
    return base64.urlsafe_b64encode(zlib.compress(payload.encode(), 9)).decode().rstrip("=")


def _unpack(packed: str) -> tuple[str, dict[str, str]] | None:
    try:
        raw = base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4))
        data = json.loads(zlib.decompress(raw))
        return str(data["n"]), {str(k): str(v) for k, v in data["t"].items()}
    except (ValueError, KeyError, TypeError, zlib.error):
        return None


def pack_name(name: str, tags: Mapping[str, str]) -> str:
    """``<name> sw <base64url(zlib(json))>``: a server group's only place for its tags.
    When that is longer than Nova's 255 characters, seawall's own bookkeeping tags go
    first, then the user's; ``seawall:key`` always stays (find-or-create needs it)."""
    kept = dict(tags)
    droppable = [k for k in sorted(kept) if k.startswith("seawall:") and k != KEY_TAG]
    droppable += [k for k in sorted(kept) if not k.startswith("seawall:")]
    while True:
        full = f"{name[:60]}{PACK}{_pack(name, kept)}"
        if len(full) <= 255:
            return full
        if not droppable:
            raise InvalidInput(
                f"the key of {name!r} is too long to keep on a server group", field="key"
            )
        kept.pop(droppable.pop(0))


def unpack_name(cloud_name: str) -> tuple[str, dict[str, str]]:
    _, sep, packed = cloud_name.rpartition(PACK)
    found = _unpack(packed) if sep else None
    return found if found is not None else (cloud_name, {})


def keypair_name(name: str, key: str) -> str:
    """Keypair names allow ``[_- a-zA-Z0-9]`` and are the keypair's id, which ends up in
    the keys of later runs: kept short, unique per key; the tags go in the public key's
    comment instead (see :func:`keypair_public_key`)."""
    safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)[:60]
    return f"{safe}-sw{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def keypair_public_key(public_key: str, name: str, tags: Mapping[str, str]) -> str:
    """The public key with the tags appended to its comment (Nova keeps the text as given
    and computes the fingerprint from the key alone)."""
    return f"{public_key.strip()}{KEY_COMMENT}{_pack(name, tags)}"


def split_public_key(stored: str) -> tuple[str, str | None, dict[str, str]]:
    """(public key as captured, name, tags) from what Nova stores."""
    head, sep, packed = (stored or "").rpartition(KEY_COMMENT)
    found = _unpack(packed.strip()) if sep else None
    if found is None:
        return stored, None, {}
    return head, found[0], found[1]


def _bool(value: Any) -> bool:
    return str(value).lower() in ("true", "1", "yes")


# --------------------------------------------------------------------------------------
# Error mapping
# --------------------------------------------------------------------------------------


def _limit(value: Any) -> int:
    """A quota limit as an int; -1 (unlimited) when the cloud reports none."""
    return -1 if value is None else int(value)


def _status_of(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    return int(code) if isinstance(code, int) else None


class OpenStackDriver:
    """CloudDriver V1 over one OpenStack project (see the module docstring)."""

    site: Site

    def __init__(self, site: Site) -> None:
        self.site = site
        p = site.params
        self.cloud = str(p.get("cloud") or "")
        if not self.cloud:
            raise InvalidInput("an openstack site needs a clouds.yaml entry", field="params.cloud")
        self.clouds_yaml = str(p["clouds_yaml"]) if p.get("clouds_yaml") else None
        self.ceph_conf = str(p["ceph_conf"]) if p.get("ceph_conf") else None
        self.rbd_pool = str(p.get("rbd_pool", "volumes"))
        self.rbd_user = str(p.get("rbd_user", "admin"))
        self.timeout = float(p.get("timeout", 300))
        self.placeholder_image = str(p.get("placeholder_image", ""))
        self._conn: Any = None
        self._rados: Any = None
        self._ioctx: Any = None
        self._lock = threading.Lock()
        self._generic_cache: dict[str, Path] = {}
        # Sizes never change under seawall (volumes are not resized, snapshots are
        # immutable); caching them keeps a restore or a read at one RBD call per chunk
        # instead of several API calls. Forgotten when seawall deletes the object; one
        # deleted elsewhere fails at the RBD call with NotFound.
        self._volume_sizes: dict[str, int] = {}
        self._snapshots: dict[str, tuple[str, int]] = {}
        #: seconds spent inside cloud API calls and waiting for the cloud (status polls,
        #: retry back-off), summed over threads: what a run's wall time owes to the cloud
        self.cloud_seconds = 0.0
        self._clock = threading.local()
        self._clock_lock = threading.Lock()

    # -- connection and errors ------------------------------------------------------------

    @property
    def conn(self) -> Any:
        if self._conn is None:
            with self._lock:
                if self._conn is None:
                    self._conn = self._connect()
        return self._conn

    def _connect(self) -> Any:
        try:
            import openstack
            import openstack.config
        except ImportError as exc:  # pragma: no cover - openstacksdk is a dependency
            raise PermanentError(f"openstacksdk is not installed: {exc}") from None
        try:
            files = [self.clouds_yaml] if self.clouds_yaml else None
            config = openstack.config.OpenStackConfig(config_files=files)
            region = config.get_one(cloud=self.cloud)
        except Exception as exc:
            where = self.clouds_yaml or "the clouds.yaml search path"
            raise SiteUnavailable(
                f"openstack site {self.site.name!r}: cloud {self.cloud!r} is not usable from "
                f"{where}: {exc}"
            ) from None
        return openstack.connection.Connection(config=region)

    @contextlib.contextmanager
    def _api(self, what: str) -> Iterator[None]:
        """Map SDK and transport errors onto seawall's tree, naming ``what`` was asked."""
        depth = getattr(self._clock, "depth", 0)
        self._clock.depth = depth + 1
        t0 = time.monotonic()
        try:
            yield
        except SeawallError:
            raise
        except Exception as exc:
            raise self._translate(exc, what) from None
        finally:
            self._clock.depth = depth
            if depth == 0:  # nested calls are already inside the outer one's time
                self._count_cloud(time.monotonic() - t0)

    def _count_cloud(self, seconds: float) -> None:
        with self._clock_lock:
            self.cloud_seconds += seconds

    def _wait(self, seconds: float) -> None:
        """Sleep while the cloud works (a poll interval or a back-off), counted as its time."""
        if seconds > 0:
            time.sleep(seconds)
            self._count_cloud(seconds)

    def _translate(self, exc: BaseException, what: str) -> SeawallError:
        from keystoneauth1 import exceptions as ka
        from openstack import exceptions as os_exc

        site = f"openstack site {self.site.name!r} ({self.cloud})"
        # openstacksdk wraps keystoneauth's errors (authorize, discovery): use the cause
        cause = exc.__cause__ or exc.__context__
        if (
            isinstance(exc, os_exc.SDKException)
            and not isinstance(exc, os_exc.HttpException)
            and isinstance(cause, ka.ClientException)
        ):
            return self._translate(cause, what)
        text = str(exc)
        if isinstance(exc, os_exc.SDKException) and not isinstance(exc, os_exc.HttpException):
            if "requires authentication" in text or "HTTP 401" in text:
                exc = ka.Unauthorized(text)
            elif "Unable to establish connection" in text:
                exc = ka.ConnectFailure(text)
        msg = str(getattr(exc, "details", "") or exc).strip() or type(exc).__name__
        if isinstance(exc, ka.Unauthorized) or _status_of(exc) == 401:
            return SiteUnavailable(
                f"{site}: the credentials were rejected ({msg}); check the user, password "
                "and project in clouds.yaml"
            )
        if isinstance(exc, ka.ConnectFailure | ka.DiscoveryFailure) and not isinstance(
            exc, ka.ConnectTimeout
        ):
            text = str(exc)
            if "reset" in text.lower() or "aborted" in text.lower():
                return TransientError(f"{site}: connection dropped during {what}: {text}")
            return SiteUnavailable(f"{site}: cannot reach the endpoint for {what}: {text}")
        if isinstance(exc, ka.EndpointNotFound | os_exc.ServiceDiscoveryException):
            return SiteUnavailable(f"{site}: a service needed for {what} is missing: {msg}")
        if isinstance(exc, ka.ConnectTimeout | ka.RetriableConnectionFailure | ConnectionError):
            return TransientError(f"{site}: {what} timed out or was dropped: {msg}")
        status = _status_of(exc)
        if status == 404 or isinstance(exc, os_exc.NotFoundException):
            return NotFound(f"{site}: {what}: not found ({msg})")
        if status == 409 or isinstance(exc, os_exc.ConflictException):
            return Conflict(f"{site}: {what}: {msg}")
        if status in (403, 413) and ("quota" in msg.lower() or "limit" in msg.lower()):
            return Conflict(f"{site}: {what}: quota exceeded ({msg})")
        if status == 400 or isinstance(exc, os_exc.BadRequestException):
            return InvalidInput(f"{site}: {what}: {msg}")
        if status is not None and status >= 500:
            return TransientError(f"{site}: {what}: server error {status} ({msg})")
        if status == 403 or isinstance(exc, os_exc.ForbiddenException):
            return PermanentError(f"{site}: {what}: forbidden ({msg}); the user lacks a role")
        return PermanentError(f"{site}: {what}: {type(exc).__name__}: {msg}")

    def _call(self, what: str, fn: Callable[[], T], *, retries: int = 2) -> T:
        """``fn()`` under :meth:`_api`; reads are retried on transient errors."""
        delay = 0.5
        for attempt in range(retries + 1):
            try:
                with self._api(what):
                    return fn()
            except TransientError:
                if attempt == retries:
                    raise
                self._wait(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def _maybe(self, what: str, fn: Callable[[], T]) -> T | None:
        try:
            return self._call(what, fn)
        except NotFound:
            return None

    # -- site ---------------------------------------------------------------------------

    def ping(self) -> None:
        """Authenticate and make sure every service seawall uses is in the catalog."""
        with self._api("authenticating"):
            self.conn.authorize()
        missing = []
        for service in ("compute", "network", "block-storage", "image"):
            with self._api(f"looking up the {service} endpoint"):
                try:
                    self.conn.endpoint_for(service)
                except Exception:
                    missing.append(service)
                    continue
        if missing:
            raise SiteUnavailable(
                f"openstack site {self.site.name!r} ({self.cloud}) has no "
                f"{', '.join(missing)} service in its catalog; seawall needs compute, "
                "network, block-storage and image"
            )

    @property
    def project_id(self) -> str:
        return str(self.conn.current_project_id)

    def _rbd_ioctx(self) -> Any:
        """librbd's I/O context on the volume pool, or None when RBD is not reachable."""
        if self._ioctx is not None or not self.ceph_conf:
            return self._ioctx
        with self._lock:
            if self._ioctx is None:
                try:
                    import rados
                except ImportError:
                    return None
                cluster = rados.Rados(conffile=self.ceph_conf, rados_id=self.rbd_user)
                try:
                    cluster.connect(timeout=10)
                    self._ioctx = cluster.open_ioctx(self.rbd_pool)
                except Exception as exc:
                    raise SiteUnavailable(
                        f"openstack site {self.site.name!r}: Ceph at {self.ceph_conf} "
                        f"(pool {self.rbd_pool}) is not reachable: {exc}"
                    ) from None
                self._rados = cluster
        return self._ioctx

    def _has_rbd(self) -> bool:
        if not self.ceph_conf:
            return False
        try:
            import rbd  # noqa: F401
        except ImportError:
            return False
        return Path(self.ceph_conf).is_file()

    def capabilities(self) -> DriverCapabilities:
        return DriverCapabilities(
            data_paths=("cbt", "full") if self._has_rbd() else ("full",),
            group_snapshots=False,
            isolated_networks=True,
            live_servers=False,
            guest_agent=False,
        )

    def close(self) -> None:
        if self._ioctx is not None:
            self._ioctx.close()
            self._rados.shutdown()
            self._ioctx = self._rados = None
        for path in self._generic_cache.values():
            path.unlink(missing_ok=True)
        self._generic_cache.clear()

    # -- reading: one converter per kind ---------------------------------------------------

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
        refs = {"network": self._ref(K.NETWORK, s.network_id)}
        return Resource(K.SUBNET, s.id, s.name or "", attrs, refs, strings_to_tags(s.tags))

    def _router(self, r: Any, subnets: list[str]) -> Resource:
        gateway = r.external_gateway_info or {}
        attrs = {"external_gateway": bool(gateway.get("network_id")), "status": r.status or ""}
        refs = {"subnets": self._ref(K.SUBNET, *sorted(subnets))} if subnets else {}
        return Resource(K.ROUTER, r.id, r.name or "", attrs, refs, strings_to_tags(r.tags))

    def _security_group(self, g: Any) -> Resource:
        rules = sorted(
            ({k: r.get(k) for k in _RULE_KEYS} for r in g.security_group_rules or []),
            key=lambda r: json.dumps(r, sort_keys=True, default=str),
        )
        attrs = {"rules": rules, "description": g.description or ""}
        return Resource(K.SECURITY_GROUP, g.id, g.name or "", attrs, {}, strings_to_tags(g.tags))

    def _port(self, p: Any) -> Resource:
        ips = p.fixed_ips or []
        attrs = {
            "fixed_ips": [i["ip_address"] for i in ips],
            "mac_address": p.mac_address,
            "allowed_address_pairs": [dict(a) for a in p.allowed_address_pairs or []],
            "status": p.status or "",
        }
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

    @staticmethod
    def _split_specs(specs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        attrs, tags = {}, {}
        for k, v in (specs or {}).items():
            if k == KEY_TAG:
                tags[KEY_TAG] = str(v)
            elif k.startswith(TAG_SPEC):
                tags[k[len(TAG_SPEC) :]] = str(v)
            else:
                attrs[k] = v
        return attrs, tags

    def _flavor(self, f: Any) -> Resource:
        specs, tags = self._split_specs(f.extra_specs or {})
        attrs = {
            "vcpus": int(f.vcpus),
            "ram_mb": int(f.ram),
            "disk_gb": int(f.disk),
            "ephemeral_gb": int(f.ephemeral or 0),
            "swap_mb": int(f.swap or 0),
            "is_public": bool(f.is_public),
            "extra_specs": specs,
        }
        return Resource(K.FLAVOR, f.id, f.name, attrs, {}, tags)

    def _keypair(self, k: Any) -> Resource:
        public_key, name, tags = split_public_key(k.public_key)
        attrs = {"public_key": public_key, "type": k.type or "ssh"}
        return Resource(K.KEYPAIR, k.name, name or k.name, attrs, {}, tags)

    def _image(self, i: Any) -> Resource:
        props = dict(i.properties or {})
        tags = strings_to_tags(i.tags or [])
        tags.update({k: str(v) for k, v in props.items() if k.startswith("seawall:")})
        attrs = {
            "size": int(i.size or 0),
            "disk_format": i.disk_format or "raw",
            "container_format": i.container_format or "bare",
            "checksum": i.checksum or "",
            "min_disk": int(i.min_disk or 0),
            "min_ram": int(i.min_ram or 0),
            "status": i.status,
        }
        return Resource(K.IMAGE, i.id, i.name or "", attrs, {}, tags)

    def _volume_type(self, t: Any) -> Resource:
        specs, tags = self._split_specs(t.extra_specs or {})
        attrs = {"extra_specs": specs, "description": t.description or ""}
        return Resource(K.VOLUME_TYPE, t.id, t.name, attrs, {}, tags)

    def _server_group(self, g: Any) -> Resource:
        name, tags = unpack_name(g.name)
        policies = list(g.policies or ([g.policy] if g.policy else []))
        return Resource(K.SERVER_GROUP, g.id, name, {"policies": policies}, {}, tags)

    def _volume(self, v: Any, types: Mapping[str, str]) -> Resource:
        meta = dict(v.metadata or {})
        size = int(meta.pop(SIZE_META, 0)) or int(v.size) * GiB
        tags = {k: str(x) for k, x in meta.items()}
        attrs = {
            "size": size,
            "bootable": _bool(v.is_bootable),
            "availability_zone": v.availability_zone or "nova",
            "status": v.status,
        }
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

    def _mine(self, items: Iterable[Any]) -> list[Any]:
        pid = self.project_id
        return [i for i in items if getattr(i, "project_id", pid) in (pid, None)]

    def _list_kind(self, kind: ResourceKind, ctx: _Context) -> list[Resource]:
        c = self.conn
        if kind is K.NETWORK:
            return [self._network(n) for n in self._mine(c.network.networks())]
        if kind is K.SUBNET:
            return [self._subnet(s) for s in self._mine(c.network.subnets())]
        if kind is K.ROUTER:
            return [self._router(r, ctx.router_subnets(r.id)) for r in ctx.routers]
        if kind is K.SECURITY_GROUP:
            return [self._security_group(g) for g in self._mine(c.network.security_groups())]
        if kind is K.PORT:
            return [self._port(p) for p in ctx.user_ports]
        if kind is K.FLOATING_IP:
            nets = {n.id: n.name for n in c.network.networks(is_router_external=True)}
            return [self._floating_ip(f, nets) for f in self._mine(c.network.ips())]
        if kind is K.FLAVOR:
            return [self._flavor(f) for f in ctx.flavors]
        if kind is K.KEYPAIR:
            return [self._keypair(k) for k in c.compute.keypairs()]
        if kind is K.IMAGE:
            pid = self.project_id
            return [self._image(i) for i in c.image.images() if i.owner_id == pid]
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
        ctx = _Context(self)
        for k in kinds:
            listing = functools.partial(self._list_kind, k, ctx)
            out.extend(self._call(f"listing {k.value}s", listing))
        return sorted(out, key=lambda r: (_KIND_ORDER[r.kind], r.name, r.id))

    def get(self, ref: ResourceRef) -> Resource | None:
        c, k, i = self.conn, ref.kind, ref.id
        what = f"reading {ref}"
        try:
            with self._api(what):
                if k is K.NETWORK:
                    return self._network(c.network.get_network(i))
                if k is K.SUBNET:
                    return self._subnet(c.network.get_subnet(i))
                if k is K.ROUTER:
                    r = c.network.get_router(i)
                    return self._router(r, _Context(self).router_subnets(i))
                if k is K.SECURITY_GROUP:
                    return self._security_group(c.network.get_security_group(i))
                if k is K.PORT:
                    return self._port(c.network.get_port(i))
                if k is K.FLOATING_IP:
                    f = c.network.get_ip(i)
                    net = c.network.get_network(f.floating_network_id)
                    return self._floating_ip(f, {net.id: net.name})
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
                    return self._server(s, _Context(self, servers=[s]))
        except NotFound:
            return None
        return None

    def find(self, kind: ResourceKind, key: str) -> Resource | None:
        """The resource created with ``key`` (looked up where that kind keeps its tags)."""
        if kind in _NEUTRON_KINDS:
            tag = f"{KEY_TAG}={key}"
            if "," not in tag:
                lister = getattr(self.conn.network, f"{_NEUTRON_KINDS[kind]}s")
                hits = self._call(f"finding {kind.value} {key}", lambda: list(lister(tags=tag)))
                return self.get(ResourceRef(kind, hits[0].id)) if hits else None
        if kind is K.VOLUME:  # Cinder's metadata filter is not reliable: filter here
            hits = self._call(
                f"finding volume {key}", lambda: list(self.conn.block_storage.volumes())
            )
            hits = [v for v in hits if (v.metadata or {}).get(KEY_TAG) == key]
            return self.get(ResourceRef(kind, hits[0].id)) if hits else None
        for r in self.list_resources(kind):
            if r.tags.get(KEY_TAG) == key:
                return r
        return None

    def discover(self, selector: Selector) -> ResourceGraph:
        """Selected servers, everything they reference, routers on included subnets and
        floating IPs on included ports (and, in turn, what those reference)."""
        everything = self.list_resources()
        by_ref = {r.ref: r for r in everything}
        chosen: set[ResourceRef] = set()
        todo = [r.ref for r in everything if r.kind is K.SERVER and selector.matches(r)]
        while todo:
            while todo:
                ref = todo.pop()
                if ref in chosen:
                    continue
                if ref not in by_ref:  # shared (a public image or flavor): fetch it
                    found = self.get(ref)
                    if found is None:
                        continue
                    by_ref[ref] = found
                chosen.add(ref)
                todo.extend(by_ref[ref].depends_on)
            for r in everything:
                if r.ref in chosen:
                    continue
                if r.kind is K.ROUTER and chosen.intersection(r.refs.get("subnets", ())):
                    todo.append(r.ref)
                if r.kind is K.FLOATING_IP and chosen.intersection(r.refs.get("port", ())):
                    todo.append(r.ref)
        picked = [by_ref[ref] for ref in chosen]
        if picked:
            picked.append(self._project_resource(details=True))
        resources = sorted(picked, key=lambda r: (_KIND_ORDER[r.kind], r.name, r.id))
        return ResourceGraph(tuple(resources))

    def _project_resource(self, *, details: bool) -> Resource:
        """The project the workload lives in. With ``details``: its record, who holds which
        role in it (when the credentials may list role assignments: an operator can re-grant
        them at the recovery site) and its quota limits (what the copy will need there)."""
        c, pid = self.conn, self.project_id
        auth = dict(getattr(c, "auth", None) or {})
        name = str(auth.get("project_name") or pid)
        attrs: dict[str, Any] = {}
        if not details:
            return Resource(K.PROJECT, pid, name, attrs)
        with contextlib.suppress(NotFound, PermanentError):  # members may not read it
            with self._api("reading the project"):
                p = c.identity.get_project(pid)
            name = str(p.name or name)
            attrs.update(
                domain_id=str(p.domain_id or ""),
                description=str(p.description or ""),
                enabled=bool(p.is_enabled),
            )
        with contextlib.suppress(NotFound, PermanentError):  # needs an admin or a reader
            with self._api("listing the project's role assignments"):
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
            with self._api("reading quota limits"):
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

    # -- quotas ---------------------------------------------------------------------------

    def quotas(self) -> Mapping[str, int]:
        def left(limit: Any, used: Any) -> int:
            lim = int(limit if limit is not None else -1)
            return -1 if lim < 0 else max(lim - int(used or 0), 0)

        c, pid = self.conn, self.project_id
        with self._api("reading quotas"):
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
        """Find-or-create by ``spec.key``; volumes are returned once available."""
        kind = ResourceKind(spec.kind)
        if kind is K.PROJECT:
            # projects are the operator's: a workload is recovered into the project this
            # site's credentials are scoped to, never into a new one
            return self._project_resource(details=False)
        if not spec.name:
            raise InvalidInput("is required", field=f"{kind.value}.name")
        if not spec.key:
            raise InvalidInput("is required (find-or-create needs it)", field=f"{kind.value}.key")
        found = self.find(kind, spec.key)
        if found is not None:
            return found
        attrs = {k: v for k, v in spec.attrs.items() if k not in RUNTIME_ATTRS}
        tags = {**spec.tags, KEY_TAG: spec.key}
        refs = {role: tuple(ids) for role, ids in spec.refs.items()}
        self._check_refs(kind, refs)
        make = getattr(self, f"_create_{kind.value}")
        rid = make(spec.name, attrs, refs, tags)
        if kind in _NEUTRON_KINDS:
            self._set_neutron_tags(kind, rid, tags)
        got = self.get(ResourceRef(kind, rid))
        if got is None:
            raise Conflict(f"{kind.value} {rid} vanished while it was being created")
        return got

    def _set_neutron_tags(self, kind: ResourceKind, rid: str, tags: Mapping[str, str]) -> None:
        """Neutron here takes no tags in a create request: they are set right after, and
        the resource is removed again if that fails (an untagged one would be orphaned)."""
        getter = getattr(self.conn.network, f"get_{_NEUTRON_KINDS[kind]}")
        try:
            with self._api(f"tagging {kind.value} {rid}"):
                self.conn.network.set_tags(getter(rid), tags_to_strings(tags))
        except SeawallError:
            self.delete(ResourceRef(kind, rid))
            raise

    _REF_KINDS: dict[ResourceKind, dict[str, ResourceKind]] = {
        K.SUBNET: {"network": K.NETWORK},
        K.ROUTER: {"subnets": K.SUBNET},
        K.PORT: {"network": K.NETWORK, "subnet": K.SUBNET, "security_groups": K.SECURITY_GROUP},
        K.VOLUME: {"volume_type": K.VOLUME_TYPE, "image": K.IMAGE},
        K.SERVER: {
            "flavor": K.FLAVOR,
            "image": K.IMAGE,
            "keypair": K.KEYPAIR,
            "ports": K.PORT,
            "volumes": K.VOLUME,
            "server_group": K.SERVER_GROUP,
        },
        K.FLOATING_IP: {"port": K.PORT},
    }

    def _check_refs(self, kind: ResourceKind, refs: Mapping[str, tuple[str, ...]]) -> None:
        """Every ref names an existing resource of the right kind: a mapping to a network
        that does not exist fails here, before anything is created."""
        roles = self._REF_KINDS.get(kind, {})
        for role, ids in refs.items():
            where = f"{kind.value}.refs.{role}"
            if role not in roles:
                raise InvalidInput(
                    f"unknown ref role; a {kind.value} may have: {', '.join(roles) or 'none'}",
                    field=where,
                )
            for i in ids:
                if self.get(ResourceRef(roles[role], i)) is None:
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
        with self._api(f"creating network {name}"):
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
        with self._api(f"creating subnet {name}"):
            return str(self.conn.network.create_subnet(**body).id)

    def _external_network(self, name: str | None = None) -> Any:
        nets = list(self.conn.network.networks(is_router_external=True))
        if name:
            nets = [n for n in nets if name in (n.name, n.id)] or nets
        return nets[0] if nets else None

    def _create_router(self, name: str, a: dict[str, Any], refs: Any, tags: dict[str, str]) -> str:
        body: dict[str, Any] = {"name": name}
        with self._api(f"creating router {name}"):
            if a.get("external_gateway"):
                ext = self._external_network(a.get("external_network"))
                if ext is None:
                    raise InvalidInput(
                        f"site {self.site.name!r} has no external network for the router's "
                        "gateway; create one or map the router",
                        field="router.attrs.external_gateway",
                    )
                body["external_gateway_info"] = {"network_id": ext.id}
            router = self.conn.network.create_router(**body)
            for subnet in refs.get("subnets", ()):
                self.conn.network.add_interface_to_router(router, subnet_id=subnet)
            return str(router.id)

    def _create_security_group(
        self, name: str, a: dict[str, Any], refs: Any, tags: dict[str, str]
    ) -> str:
        rules = [{k: r.get(k) for k in _RULE_KEYS} for r in a.get("rules", [])]
        with self._api(f"creating security group {name}"):
            group = self.conn.network.create_security_group(
                name=name, description=str(a.get("description", ""))
            )
            try:
                # Neutron adds default egress rules; the group must hold exactly the
                # captured rules, so the defaults that were not captured go
                for rule in group.security_group_rules or []:
                    mine = {k: rule.get(k) for k in _RULE_KEYS}
                    if mine in rules:
                        rules.remove(mine)
                    else:
                        self.conn.network.delete_security_group_rule(rule["id"])
                for rule in rules:
                    body = {k: v for k, v in rule.items() if v is not None}
                    self.conn.network.create_security_group_rule(security_group_id=group.id, **body)
            except Exception:
                self.conn.network.delete_security_group(group, ignore_missing=True)
                raise
            return str(group.id)

    def _create_port(self, name: str, a: dict[str, Any], refs: Any, tags: dict[str, str]) -> str:
        network = refs["network"][0]
        body: dict[str, Any] = {"name": name, "network_id": network}
        ips = list(a.get("fixed_ips") or [])
        with self._api(f"creating port {name}"):
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
            return str(self.conn.network.create_port(**body).id)

    def _create_floating_ip(
        self, name: str, a: dict[str, Any], refs: Any, tags: dict[str, str]
    ) -> str:
        with self._api(f"creating floating IP {name}"):
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
            with self._api(f"creating floating IP {name}"):
                return str(self.conn.network.create_ip(**body).id)
        except NotFound as exc:
            if "not reachable" not in str(exc):
                raise
            raise Conflict(
                f"floating IP {name}: no router joins the port's subnet to the external "
                f"network {ext.name}; restore the router (with its gateway) first ({exc})"
            ) from None

    def _unique_name(self, taken: Iterable[str], name: str, key: str) -> str:
        """Flavor and volume type names are unique per cloud: on a clash, suffix a hash
        of the key (deterministic, so a resumed run picks the same name)."""
        if name not in set(taken):
            return name
        return f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"

    @staticmethod
    def _tag_specs(tags: Mapping[str, str]) -> dict[str, str]:
        return {
            (k if k == KEY_TAG else TAG_SPEC + k): str(v)[:255] for k, v in sorted(tags.items())
        }

    def _create_flavor(self, name: str, a: dict[str, Any], refs: Any, tags: dict[str, str]) -> str:
        with self._api(f"creating flavor {name}"):
            taken = [f.name for f in self.conn.compute.flavors(is_public=None)]
            flavor = self.conn.compute.create_flavor(
                name=self._unique_name(taken, name, tags[KEY_TAG]),
                vcpus=int(a.get("vcpus", 1)),
                ram=int(a.get("ram_mb", 512)),
                disk=int(a.get("disk_gb", 1)),
                ephemeral=int(a.get("ephemeral_gb", 0)),
                swap=int(a.get("swap_mb", 0)) or 0,
                is_public=bool(a.get("is_public", True)),
            )
            try:
                specs = {**{str(k): str(v) for k, v in a.get("extra_specs", {}).items()}}
                self.conn.compute.create_flavor_extra_specs(
                    flavor, {**specs, **self._tag_specs(tags)}
                )
            except Exception:
                self.conn.compute.delete_flavor(flavor, ignore_missing=True)
                raise
            return str(flavor.id)

    def _create_keypair(self, name: str, a: dict[str, Any], refs: Any, tags: dict[str, str]) -> str:
        with self._api(f"creating keypair {name}"):
            kp = self.conn.compute.create_keypair(
                name=keypair_name(name, tags[KEY_TAG]),
                public_key=keypair_public_key(str(a.get("public_key", "")), name, tags),
            )
            return str(kp.name)

    def _create_image(self, name: str, a: dict[str, Any], refs: Any, tags: dict[str, str]) -> str:
        props = {k: v for k, v in tags.items() if k.startswith("seawall:")}
        user = [f"{k}={v}" for k, v in sorted(tags.items()) if not k.startswith("seawall:")]
        if a.get("checksum"):
            props["seawall:md5"] = str(a["checksum"])
        with self._api(f"creating image {name}"):
            image = self.conn.image.create_image(
                name=name,
                disk_format=str(a.get("disk_format", "raw")),
                container_format=str(a.get("container_format", "bare")),
                visibility="private",
                min_disk=int(a.get("min_disk", 0)),
                min_ram=int(a.get("min_ram", 0)),
                tags=user,
                allow_duplicates=True,
                **props,
            )
            return str(image.id)

    def _create_volume_type(
        self, name: str, a: dict[str, Any], refs: Any, tags: dict[str, str]
    ) -> str:
        with self._api(f"creating volume type {name}"):
            taken = [t.name for t in self.conn.block_storage.types()]
            specs = {str(k): str(v) for k, v in a.get("extra_specs", {}).items()}
            vt = self.conn.block_storage.create_type(
                name=self._unique_name(taken, name, tags[KEY_TAG]),
                extra_specs={**specs, **self._tag_specs(tags)},
            )
            return str(vt.id)

    def _create_server_group(
        self, name: str, a: dict[str, Any], refs: Any, tags: dict[str, str]
    ) -> str:
        policies = list(a.get("policies") or ["soft-anti-affinity"])
        with self._api(f"creating server group {name}"):
            group = self.conn.compute.create_server_group(
                name=pack_name(name, tags), policy=policies[0]
            )
            return str(group.id)

    def _create_volume(self, name: str, a: dict[str, Any], refs: Any, tags: dict[str, str]) -> str:
        size = a.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise InvalidInput(
                f"expected a positive number of bytes, got {size!r}", field="volume.attrs.size"
            )
        meta = {k: str(v)[:255] for k, v in tags.items()}
        meta[SIZE_META] = str(size)
        body: dict[str, Any] = {"name": name, "size": math.ceil(size / GiB), "metadata": meta}
        if refs.get("volume_type"):
            body["volume_type"] = refs["volume_type"][0]
        if refs.get("image"):
            body["image_id"] = refs["image"][0]
        if a.get("availability_zone") and a["availability_zone"] != "nova":
            body["availability_zone"] = a["availability_zone"]
        with self._api(f"creating volume {name}"):
            volume = self.conn.block_storage.create_volume(**body)
        ref = ResourceRef(K.VOLUME, volume.id)
        self.wait_for_status(ref, "available", self.timeout)
        if a.get("bootable") and not refs.get("image"):
            with self._api(f"marking volume {name} bootable"):
                self.conn.block_storage.set_volume_bootable_status(volume, True)
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

    def _create_server(self, name: str, a: dict[str, Any], refs: Any, tags: dict[str, str]) -> str:
        meta = {str(k): str(v) for k, v in (a.get("metadata") or {}).items()}
        user_tags = []
        for k, v in tags.items():
            text = f"{k}={v}"
            if k.startswith("seawall:") or len(text) > 60 or "/" in text or "," in text:
                meta[k] = str(v)[:255]
            else:
                user_tags.append(text)
        if a.get("guest_agent"):
            meta["seawall:guest_agent"] = "true"
        body: dict[str, Any] = {
            "name": name,
            "flavor_id": refs["flavor"][0],
            "metadata": meta,
            "tags": user_tags,
        }
        hostname = str(a.get("hostname") or "")
        if hostname:
            body["hostname"] = hostname
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
            first = self.get(ResourceRef(K.VOLUME, volumes[0]))
            if first is not None and first.attrs.get("bootable"):
                boot_volume = volumes[0]
        for vid in volumes:
            bdm.append({
                "uuid": vid, "source_type": "volume", "destination_type": "volume",
                "boot_index": 0 if vid == boot_volume else -1, "delete_on_termination": False,
            })  # fmt: skip
        with self._api(f"creating server {name}"):
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
        # like the sim, return a server that has left BUILD: its ports and volumes are
        # attached by then, so what create returns describes it fully
        deadline = time.monotonic() + self.timeout
        while True:
            server = self.get(ResourceRef(K.SERVER, server_id))
            status = server.attrs.get("status") if server else None
            if status != "BUILD" or time.monotonic() > deadline:
                return server_id
            self._wait(1)

    # -- delete ---------------------------------------------------------------------------

    def delete(self, ref: ResourceRef) -> None:
        """Delete; "already gone" is success. Servers and volumes are waited for, so what
        they held (ports, volumes, RBD images) is free when this returns."""
        c, k, i = self.conn, ref.kind, ref.id
        try:
            with self._api(f"deleting {ref}"):
                if k is K.NETWORK:
                    c.network.delete_network(i, ignore_missing=True)
                elif k is K.SUBNET:
                    c.network.delete_subnet(i, ignore_missing=True)
                elif k is K.ROUTER:
                    router = c.network.get_router(i)
                    for port in c.network.ports(device_id=i):
                        if port.device_owner == "network:router_interface":
                            for ip in port.fixed_ips:
                                c.network.remove_interface_from_router(
                                    router, subnet_id=ip["subnet_id"]
                                )
                    c.network.delete_router(i, ignore_missing=True)
                elif k is K.SECURITY_GROUP:
                    c.network.delete_security_group(i, ignore_missing=True)
                elif k is K.PORT:
                    c.network.delete_port(i, ignore_missing=True)
                elif k is K.FLOATING_IP:
                    c.network.delete_ip(i, ignore_missing=True)
                elif k is K.FLAVOR:
                    c.compute.delete_flavor(i, ignore_missing=True)
                elif k is K.KEYPAIR:
                    c.compute.delete_keypair(i, ignore_missing=True)
                elif k is K.IMAGE:
                    c.image.delete_image(i, ignore_missing=True)
                elif k is K.VOLUME_TYPE:
                    c.block_storage.delete_type(i, ignore_missing=True)
                elif k is K.SERVER_GROUP:
                    c.compute.delete_server_group(i, ignore_missing=True)
                elif k is K.VOLUME:
                    volume = c.block_storage.get_volume(i)
                    if volume.status == "in-use":
                        raise Conflict(f"{ref} is still attached to a server; delete that first")
                    c.block_storage.delete_volume(i, ignore_missing=True, cascade=True)
                elif k is K.SERVER:
                    c.compute.delete_server(i, ignore_missing=True)
        except NotFound:
            return
        if k in (K.SERVER, K.VOLUME):
            self.wait_for_status(ref, "DELETED", self.timeout)
        self._volume_sizes.pop(i, None)

    # -- servers --------------------------------------------------------------------------

    def power_off(self, server_id: str) -> None:
        self._power(server_id, "stop", "SHUTOFF")

    def power_on(self, server_id: str) -> None:
        self._power(server_id, "start", "ACTIVE")

    def _power(self, server_id: str, action: str, target: str) -> None:
        with self._api(f"{action} server {server_id}"):
            server = self.conn.compute.get_server(server_id)
            if server.status == target:
                return
            try:
                getattr(self.conn.compute, f"{action}_server")(server)
            except Exception as exc:
                if _status_of(exc) != 409:  # already in (or moving to) that state
                    raise

    def guest_agent(self, server_id: str, command: str) -> None:
        server = self.get(ResourceRef(K.SERVER, server_id))
        if server is None:
            raise NotFound(f"server {server_id!r} does not exist on site {self.site.name!r}")
        raise PermanentError(
            f"server {server.name}: the OpenStack APIs offer no guest-agent channel "
            "(fsfreeze); use a script quiesce hook or crash consistency"
        )

    def wait_for_status(self, ref: ResourceRef, status: str, timeout: float) -> Resource:
        """Poll until ``attrs["status"]`` is ``status`` (case-insensitive; resources
        without one count as ACTIVE; ``DELETED`` waits for it to be gone). A server or
        volume that falls into ERROR while waiting for something else fails at once."""
        want = status.upper()
        deadline = time.monotonic() + timeout
        delay = 0.2
        while True:
            found = self.get(ref)
            if found is None:
                if want == "DELETED":
                    return Resource(ref.kind, ref.id, "", {"status": "DELETED"})
                raise NotFound(f"{ref} does not exist on site {self.site.name!r}")
            last = str(found.attrs.get("status") or "ACTIVE").upper()
            if last == want or (want == "ACTIVE" and ref.kind is K.IMAGE and last == "ACTIVE"):
                return found
            if last in ("ERROR", "ERROR_DELETING") and want != last:
                raise PermanentError(
                    f"{ref.kind.value} {found.name} ({ref.id}) is in {last} while waiting for "
                    f"{want}; see the cloud's logs for it"
                )
            if time.monotonic() >= deadline:
                raise StepTimeout(
                    f"{ref.kind.value} {found.name} ({ref.id}) did not reach status {want} "
                    f"within {timeout:g}s (last seen: {last})"
                )
            self._wait(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, 2.0)

    # -- volumes and snapshots ------------------------------------------------------------

    def _volume_size(self, volume_id: str) -> int:
        if volume_id in self._volume_sizes:
            return self._volume_sizes[volume_id]
        volume = self.get(ResourceRef(K.VOLUME, volume_id))
        if volume is None:
            raise NotFound(f"volume {volume_id!r} does not exist on site {self.site.name!r}")
        self._volume_sizes[volume_id] = int(volume.attrs["size"])
        return self._volume_sizes[volume_id]

    def _snapshot_info(self, s: Any, size: int | None = None) -> SnapshotInfo:
        meta = s.metadata or {}
        created = s.created_at or ""
        try:
            from datetime import UTC, datetime

            when = datetime.fromisoformat(str(created).rstrip("Z"))
            stamp = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
        except ValueError:
            stamp = 0.0
        if size is None:
            size = int(meta.get(SIZE_META, 0)) or self._volume_size(s.volume_id)
        return SnapshotInfo(s.id, s.volume_id, size, str(meta.get(KEY_TAG, "")), stamp)

    def create_snapshot(self, volume_id: str, key: str) -> SnapshotInfo:
        """Find-or-create by (volume, key); waits until Cinder says ``available``."""
        for snap in self.list_snapshots(volume_id):
            if snap.key == key:
                return snap
        size = self._volume_size(volume_id)
        with self._api(f"snapshotting volume {volume_id}"):
            snap = self.conn.block_storage.create_snapshot(
                volume_id=volume_id,
                name=f"seawall-{key}"[:255],
                force=True,
                metadata={KEY_TAG: key[:255], SIZE_META: str(size)},
            )
        deadline = time.monotonic() + self.timeout
        while True:
            got = self._call(
                "reading snapshot", lambda: self.conn.block_storage.get_snapshot(snap.id)
            )
            if got.status == "available":
                return self._snapshot_info(got, size)
            if got.status == "error":
                raise PermanentError(f"snapshot {snap.id} of volume {volume_id} failed (error)")
            if time.monotonic() > deadline:
                raise StepTimeout(f"snapshot {snap.id} not available after {self.timeout:g}s")
            self._wait(0.5)

    def list_snapshots(self, volume_id: str) -> list[SnapshotInfo]:
        snaps = self._call(
            f"listing snapshots of {volume_id}",
            lambda: list(self.conn.block_storage.snapshots(details=True, volume_id=volume_id)),
        )
        live = [s for s in snaps if s.status in ("available", "creating")]
        size = self._volume_size(volume_id) if live else 0
        infos = [self._snapshot_info(s, size) for s in live]
        return sorted(infos, key=lambda s: (s.created_at, s.id))

    def delete_snapshot(self, snapshot_id: str) -> None:
        try:
            with self._api(f"deleting snapshot {snapshot_id}"):
                self.conn.block_storage.delete_snapshot(snapshot_id, ignore_missing=True)
        except NotFound:
            return
        finally:
            self._snapshots.pop(snapshot_id, None)
        deadline = time.monotonic() + self.timeout
        while self._get_snapshot(snapshot_id) is not None:
            if time.monotonic() > deadline:
                raise StepTimeout(f"snapshot {snapshot_id} not deleted after {self.timeout:g}s")
            self._wait(0.5)
        self._generic_cache.pop(snapshot_id, Path("/nonexistent")).unlink(missing_ok=True)

    def _get_snapshot(self, snapshot_id: str) -> Any:
        return self._maybe(
            f"reading snapshot {snapshot_id}",
            lambda: self.conn.block_storage.get_snapshot(snapshot_id),
        )

    def _need_snapshot(self, snapshot_id: str, what: str = "snapshot") -> Any:
        snap = self._get_snapshot(snapshot_id)
        if snap is None or snap.status not in ("available", "creating"):
            raise NotFound(f"{what} {snapshot_id!r} does not exist on site {self.site.name!r}")
        return snap

    def changed_extents(self, snapshot_id: str, base_snapshot_id: str | None) -> list[Extent]:
        """RBD ``diff_iterate`` between the backing RBD snapshots (whole objects at worst),
        clipped to the volume's byte size. Without RBD: the whole volume when there is no
        base, NotFound ("read it in full") when there is one."""
        snap = self._need_snapshot(snapshot_id)
        info = self._snapshot_info(snap)
        base = self._need_snapshot(base_snapshot_id, "base snapshot") if base_snapshot_id else None
        if base is not None and base.volume_id != snap.volume_id:
            raise InvalidInput(
                f"base snapshot {base.id} is of another volume", field="base_snapshot_id"
            )
        ioctx = self._rbd_ioctx()
        if ioctx is None:
            if base is not None:
                raise NotFound("no changed-block tracking without RBD access; read in full")
            return [Extent(0, info.size)]
        import rbd

        found: list[tuple[int, int]] = []
        from_snap = f"snapshot-{base.id}" if base is not None else None
        try:
            with rbd.Image(
                ioctx, f"volume-{snap.volume_id}", snapshot=f"snapshot-{snap.id}", read_only=True
            ) as image:
                image.diff_iterate(
                    0,
                    min(image.size(), info.size),
                    from_snap,
                    lambda off, n, exists: found.append((off, n)),
                    whole_object=False,
                )
        except rbd.ImageNotFound as exc:
            raise NotFound(f"RBD image or snapshot for {snapshot_id} is missing: {exc}") from None
        return _merge((o, min(o + n, info.size) - o) for o, n in found if o < info.size)

    def read_snapshot(self, snapshot_id: str, offset: int, length: int) -> bytes:
        """Snapshot-time bytes; fewer than ``length`` only at the end of the volume."""
        if snapshot_id not in self._snapshots:
            snap = self._need_snapshot(snapshot_id)
            self._snapshots[snapshot_id] = (snap.volume_id, self._snapshot_info(snap).size)
        volume_id, size = self._snapshots[snapshot_id]
        if offset < 0 or length < 0 or offset > size:
            raise InvalidInput(
                f"cannot read {length} bytes at {offset} of a {size}-byte snapshot",
                field="offset",
            )
        length = min(length, size - offset)
        if not length:
            return b""
        ioctx = self._rbd_ioctx()
        if ioctx is None:
            path = self._generic_copy(self._need_snapshot(snapshot_id))
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read(length)
        import rbd

        try:
            with rbd.Image(
                ioctx, f"volume-{volume_id}", snapshot=f"snapshot-{snapshot_id}", read_only=True
            ) as image:
                return bytes(image.read(offset, length))
        except rbd.ImageNotFound as exc:
            self._snapshots.pop(snapshot_id, None)
            raise NotFound(f"RBD snapshot for {snapshot_id} is missing: {exc}") from None

    def _generic_copy(self, snap: Any) -> Path:
        """The generic path: snapshot -> temporary volume -> image -> local file (cached
        per snapshot, removed by ``delete_snapshot`` and ``close``)."""
        cached = self._generic_cache.get(snap.id)
        if cached is not None and cached.exists():
            return cached
        c = self.conn
        tmp_volume = tmp_image = None
        try:
            with self._api(f"copying snapshot {snap.id} out through Cinder and Glance"):
                tmp_volume = c.block_storage.create_volume(
                    name=f"seawall-read-{snap.id}", snapshot_id=snap.id, size=snap.size
                )
                self.wait_for_status(
                    ResourceRef(K.VOLUME, tmp_volume.id), "available", self.timeout
                )
                upload = c.block_storage.upload_volume_to_image(
                    tmp_volume, f"seawall-read-{snap.id}", disk_format="raw",
                    container_format="bare", force=True,
                )  # fmt: skip
                tmp_image = upload["image_id"]
                self.wait_for_status(ResourceRef(K.IMAGE, tmp_image), "active", self.timeout)
                fd, name = tempfile.mkstemp(prefix="seawall-snap-")
                with open(fd, "wb") as out:
                    for chunk in c.image.download_image(tmp_image, stream=True).iter_content(
                        _CHUNK
                    ):
                        out.write(chunk)
        finally:
            if tmp_image:
                self.delete(ResourceRef(K.IMAGE, tmp_image))
            if tmp_volume is not None:
                self.wait_for_status(
                    ResourceRef(K.VOLUME, tmp_volume.id), "available", self.timeout
                )
                self.delete(ResourceRef(K.VOLUME, tmp_volume.id))
        path = Path(name)
        self._generic_cache[snap.id] = path
        return path

    def write_volume(self, volume_id: str, offset: int, data: bytes) -> None:
        size = self._volume_size(volume_id)
        if offset < 0 or offset + len(data) > size:
            raise InvalidInput(
                f"cannot write {len(data)} bytes at {offset} of a {size}-byte volume",
                field="offset",
            )
        ioctx = self._rbd_ioctx()
        if ioctx is None:
            raise PermanentError(
                f"openstack site {self.site.name!r}: writing volume data needs RBD access "
                "(site params ceph_conf and python3-rbd); the Cinder API cannot write bytes"
            )
        import rbd

        try:
            with rbd.Image(ioctx, f"volume-{volume_id}") as image:
                image.write(data, offset)
        except rbd.ImageNotFound:
            self._volume_sizes.pop(volume_id, None)
            raise NotFound(f"RBD image volume-{volume_id} is missing") from None

    # -- images -----------------------------------------------------------------------------

    def read_image(self, image_id: str) -> Iterator[bytes]:
        image = self._call(f"reading image {image_id}", lambda: self.conn.image.get_image(image_id))
        if image.status != "active":
            raise Conflict(f"image {image.name} has no data yet (status {image.status})")

        def chunks() -> Iterator[bytes]:
            with self._api(f"downloading image {image_id}"):
                resp = self.conn.image.download_image(image, stream=True)
                yield from resp.iter_content(_CHUNK)

        return chunks()

    def write_image(self, image_id: str, chunks: Iterable[bytes]) -> None:
        """Upload once (Glance's rule); the same bytes again are a no-op. When created
        with a ``checksum`` (md5) the data must match it."""
        image = self._call(f"reading image {image_id}", lambda: self.conn.image.get_image(image_id))
        fd, name = tempfile.mkstemp(prefix="seawall-image-")
        md5 = hashlib.md5(usedforsecurity=False)
        try:
            with open(fd, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
                    md5.update(chunk)
            checksum = md5.hexdigest()
            expected = (image.properties or {}).get("seawall:md5") or ""
            if image.status == "active":
                if checksum != image.checksum:
                    raise Conflict(f"image {image.name} already holds other data")
                return
            if expected and expected != checksum:
                raise VerificationFailed(
                    f"image {image.name}: uploaded data has md5 {checksum}, expected {expected}"
                )
            with self._api(f"uploading image {image_id}"), open(name, "rb") as data:
                from openstack import exceptions as os_exc

                os_exc.raise_from_response(image.upload(self.conn.image, data=data))
        finally:
            Path(name).unlink(missing_ok=True)
        self.wait_for_status(ResourceRef(K.IMAGE, image_id), "active", self.timeout)


class _Context:
    """What several converters need, listed once per call (ports, attachments, groups)."""

    def __init__(self, driver: OpenStackDriver, servers: list[Any] | None = None) -> None:
        self.d = driver
        self._servers = servers
        self._cache: dict[str, Any] = {}

    def _get(self, name: str, fn: Callable[[], Any]) -> Any:
        if name not in self._cache:
            self._cache[name] = fn()
        return self._cache[name]

    @property
    def servers(self) -> list[Any]:
        if self._servers is None:
            self._servers = list(self.d.conn.compute.servers(details=True))
        return self._servers

    @property
    def ports(self) -> list[Any]:
        return self._get("ports", lambda: self.d._mine(self.d.conn.network.ports()))  # type: ignore[no-any-return]

    @property
    def user_ports(self) -> list[Any]:
        """Ports a workload owns: not the cloud's own (DHCP, router interfaces, gateways)."""
        return [p for p in self.ports if not str(p.device_owner or "").startswith("network:")]

    @property
    def routers(self) -> list[Any]:
        return self._get("routers", lambda: self.d._mine(self.d.conn.network.routers()))  # type: ignore[no-any-return]

    def router_subnets(self, router_id: str) -> list[str]:
        ports = self._get(
            f"rports-{router_id}",
            lambda: list(self.d.conn.network.ports(device_id=router_id)),
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
            for f in self.d.conn.compute.flavors(details=True, is_public=None):
                if f.extra_specs is None:
                    f = self.d.conn.compute.fetch_flavor_extra_specs(f)
                out.append(f)
            return out

        return self._get("flavors", load)  # type: ignore[no-any-return]

    @property
    def flavor_by_name(self) -> dict[str, str]:
        return {f.name: f.id for f in self.flavors}

    @property
    def volume_types(self) -> list[Any]:
        return self._get("vtypes", lambda: list(self.d.conn.block_storage.types()))  # type: ignore[no-any-return]

    @property
    def server_groups(self) -> list[Any]:
        return self._get("groups", lambda: list(self.d.conn.compute.server_groups()))  # type: ignore[no-any-return]

    @property
    def group_of(self) -> dict[str, str]:
        return {m: g.id for g in self.server_groups for m in g.member_ids or []}

    def ports_of(self, server_id: str) -> list[str]:
        """The server's ports in attach order (Nova's interface list)."""
        ifaces = list(self.d.conn.compute.server_interfaces(server_id))
        return [i.port_id for i in ifaces]

    def volumes_of(self, server: Any) -> list[str]:
        """Attached volumes, the boot volume first, then by device name."""
        attached = list(self.d.conn.compute.volume_attachments(server))
        root = server.root_device_name or "/dev/vda"
        attached.sort(key=lambda a: (a.device != root, a.device or "", a.volume_id))
        return [a.volume_id for a in attached]


def _in(ip: str, cidr: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)
    except ValueError:
        return False


def _merge(extents: Iterable[tuple[int, int]]) -> list[Extent]:
    merged: list[list[int]] = []
    for offset, length in sorted(e for e in extents if e[1] > 0):
        if merged and offset <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], offset + length)
        else:
            merged.append([offset, offset + length])
    return [Extent(start, end - start) for start, end in merged]


def open_openstack(site: Site) -> OpenStackDriver:
    """The ``openstack`` driver factory (entry point)."""
    return OpenStackDriver(site)
