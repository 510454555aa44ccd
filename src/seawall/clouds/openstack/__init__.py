"""The ``openstack`` driver: CloudDriver V1 over a real OpenStack cloud (openstacksdk).

A site names a clouds.yaml entry: ``params = {"cloud": "prod-east"}``, optionally
``clouds_yaml`` (a path; default: the usual search path), ``ceph_conf`` (enables the RBD
data path), ``rbd_pool`` (default ``volumes``), ``rbd_user`` (default ``admin``),
``timeout`` (seconds a create may wait, default 300) and ``placeholder_image`` (an image
to boot servers that have neither an image nor a volume).

The tenant boundary (:meth:`OpenStackDriver.for_project`): the site's own credentials
(``cloud``) are the operator's and act for seawall's default project only. A workload of
any other project acts only with credentials scoped to that project, named by the site's
params ``project.<project>.cloud`` (a clouds.yaml entry: best a Keystone application
credential the tenant created in its project) and optionally ``project.<project>.clouds_yaml``;
the driver checks on connecting that they are scoped to that project. A project the site
holds no credentials for is refused (Forbidden), never served with the operator's view.

Resources use the driver-neutral schema of :mod:`seawall.clouds.schema` (DESIGN.md §4):
volume ``size`` is in bytes (the Cinder volume is that rounded up to GiB, and the exact
size is kept in the volume's metadata), ports carry plain ``fixed_ips`` strings, etc.

Find-or-create: every resource seawall creates carries its ``seawall:key`` where the
kind allows it, so a resumed run finds it instead of creating a second one; keypairs,
flavors, volume types and server groups carry none (nothing in what a user reads or the
scheduler acts on) and are matched by content instead, the target's identical one reused
(the table of what marks remain, and where, is in :mod:`.naming`). A discovered graph
includes the project the credentials are scoped to; recovery never creates a project.

Data paths (:meth:`OpenStackDriver.capabilities`): ``cbt`` when librbd (Debian
``python3-rbd``) and the site's ``ceph_conf`` are available, ``full`` otherwise (see
:mod:`.snapshots`). Errors are mapped onto seawall's tree in :mod:`.connection`.

The parts, each over the one :class:`~.connection.CloudConnection`:

- :mod:`.connection`: openstacksdk, error mapping, retries of reads, ``cloud_seconds``;
- :mod:`.naming`: where each kind keeps its tags (tags, metadata), and which keep none;
- :mod:`.discovery`: reading resources into the model, ``find``, ``discover``, waiting;
- :mod:`.restore`: find-or-create per kind, delete, power, quotas;
- :mod:`.snapshots`: Cinder snapshots and volume bytes (the generic Cinder/Glance path);
- :mod:`.rbd`: the RBD data path (``diff_iterate``, reads, writes);
- :mod:`.images`: Glance image data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from seawall.clouds import DriverCapabilities, Extent, ResourceSpec, SnapshotInfo
from seawall.clouds.openstack.connection import CloudConnection
from seawall.clouds.openstack.discovery import Discovery, GiB
from seawall.clouds.openstack.images import Images
from seawall.clouds.openstack.naming import (
    KEY_COMMENT,
    PACK,
    SIZE_META,
    TAG_SPEC,
    UNMARKED_KINDS,
    split_public_key,
    strings_to_tags,
    tags_to_strings,
    unpack_name,
)
from seawall.clouds.openstack.rbd import RbdPool
from seawall.clouds.openstack.restore import Restore
from seawall.clouds.openstack.snapshots import Snapshots
from seawall.clouds.schema import RUNTIME_ATTRS
from seawall.clouds.tags import KEY_TAG
from seawall.errors import Forbidden, InvalidInput, NotFound, PermanentError, SiteUnavailable
from seawall.model import (
    DEFAULT_PROJECT,
    Resource,
    ResourceGraph,
    ResourceKind,
    ResourceRef,
    Selector,
    Site,
)

__all__ = [
    "KEY_COMMENT",
    "KEY_TAG",
    "PACK",
    "RUNTIME_ATTRS",
    "SIZE_META",
    "TAG_SPEC",
    "UNMARKED_KINDS",
    "GiB",
    "OpenStackDriver",
    "open_openstack",
    "split_public_key",
    "strings_to_tags",
    "tags_to_strings",
    "unpack_name",
]

K = ResourceKind

#: site params ``project.<project>.<param>``: the credentials of one tenant project
PROJECT_PARAMS = "project."


def project_params(params: Mapping[str, str], project: str) -> dict[str, str]:
    """The site's params as ``project`` acts with them: the site's own without any
    project's credentials, then that project's ``cloud`` / ``clouds_yaml`` over them.
    Empty when the site holds no credentials for ``project``."""
    prefix = f"{PROJECT_PARAMS}{project}."
    own = {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}
    if not own.get("cloud"):
        return {}
    shared = {k: v for k, v in params.items() if not k.startswith(PROJECT_PARAMS)}
    shared.pop("clouds_yaml", None)
    return {**shared, **{k: v for k, v in own.items() if k in ("cloud", "clouds_yaml")}}


class OpenStackDriver:
    """CloudDriver V1 over one OpenStack project (see the module docstring).

    The work is done by the parts it holds, all over one :class:`CloudConnection`:
    :class:`Discovery` (reading), :class:`Restore` (create, delete, power, quotas),
    :class:`Snapshots` (Cinder snapshots and volume bytes, over :class:`RbdPool` when
    Ceph is reachable) and :class:`Images` (Glance data).
    """

    site: Site

    def __init__(self, site: Site, *, project: str = DEFAULT_PROJECT) -> None:
        self.site = site
        #: the project this driver acts for; its credentials must be scoped to it
        self.project = project
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
        self.connection = CloudConnection(
            site,
            self.cloud,
            self.clouds_yaml,
            expect_project=None if project == DEFAULT_PROJECT else project,
        )
        self._rbd = RbdPool(site, self.ceph_conf, self.rbd_pool, self.rbd_user)
        self._discovery = Discovery(self.connection)
        self._restore = Restore(
            self.connection,
            self._discovery,
            timeout=self.timeout,
            placeholder_image=self.placeholder_image,
        )
        self._snapshots = Snapshots(
            self.connection, self._discovery, self._rbd, timeout=self.timeout, delete=self.delete
        )
        self._images = Images(self.connection, self._discovery, timeout=self.timeout)

    # -- site ---------------------------------------------------------------------------

    def for_project(self, project: str) -> OpenStackDriver:
        """A driver acting with ``project``'s own credentials at this site (see the module
        docstring); Forbidden when the site holds none."""
        if project == self.project:
            return self
        operator = self.project == DEFAULT_PROJECT  # a tenant's driver acts for it alone
        params = project_params(self.site.params, project) if operator else {}
        if not params:
            raise Forbidden(
                f"openstack site {self.site.name!r} holds no credentials for project "
                f"{project!r}: seawall acts for a tenant only with credentials scoped to its "
                f"project (an operator adds them with `seawall site add ... --param "
                f"project.{project}.cloud=ENTRY`, ENTRY a clouds.yaml entry such as an "
                "application credential of that project)"
            )
        return OpenStackDriver(dataclasses.replace(self.site, params=params), project=project)

    @property
    def conn(self) -> Any:
        """The openstacksdk connection (opened on first use)."""
        return self.connection.conn

    @property
    def project_id(self) -> str:
        return self.connection.project_id

    @property
    def cloud_seconds(self) -> float:
        """Seconds spent inside cloud API calls and waiting for the cloud (status polls,
        retry back-off), summed over threads: what a run's wall time owes to the cloud."""
        return self.connection.cloud_seconds

    def ping(self) -> None:
        """Authenticate and make sure every service seawall uses is in the catalog."""
        with self.connection.api("authenticating"):
            self.conn.authorize()
        missing = []
        for service in ("compute", "network", "block-storage", "image"):
            with self.connection.api(f"looking up the {service} endpoint"):
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

    def capabilities(self) -> DriverCapabilities:
        return DriverCapabilities(
            data_paths=("cbt", "full") if self._rbd.available() else ("full",),
            group_snapshots=False,
            isolated_networks=True,
            live_servers=False,
            guest_agent=False,
            unmarked_kinds=tuple(k for k in ResourceKind if k in UNMARKED_KINDS),
        )

    def close(self) -> None:
        self._rbd.close()
        self._snapshots.close()

    # -- reading ------------------------------------------------------------------------

    def list_resources(self, kind: ResourceKind | None = None) -> list[Resource]:
        return self._discovery.list_resources(kind)

    def get(self, ref: ResourceRef) -> Resource | None:
        return self._discovery.get(ref)

    def find(self, kind: ResourceKind, key: str) -> Resource | None:
        """The resource created with ``key`` (looked up where that kind keeps its tags)."""
        return self._discovery.find(kind, key)

    def discover(self, selector: Selector) -> ResourceGraph:
        """Selected servers, everything they reference, routers on included subnets and
        floating IPs on included ports (and, in turn, what those reference), and the
        project."""
        return self._discovery.discover(selector)

    def wait_for_status(self, ref: ResourceRef, status: str, timeout: float) -> Resource:
        """Poll until ``attrs["status"]`` is ``status`` (case-insensitive; resources
        without one count as ACTIVE; ``DELETED`` waits for it to be gone). A server or
        volume that falls into ERROR while waiting for something else fails at once."""
        return self._discovery.wait_for_status(ref, status, timeout)

    # -- restoring ----------------------------------------------------------------------

    def quotas(self) -> Mapping[str, int]:
        return self._restore.quotas()

    def create(self, spec: ResourceSpec) -> Resource:
        """Find-or-create by ``spec.key``; volumes are returned once available."""
        return self._restore.create(spec)

    def delete(self, ref: ResourceRef) -> None:
        """Delete; "already gone" is success. Servers and volumes are waited for, so what
        they held (ports, volumes, RBD images) is free when this returns."""
        if self._restore.delete(ref):
            self._snapshots.forget_volume(ref.id)

    def power_off(self, server_id: str) -> None:
        self._restore.power_off(server_id)

    def power_on(self, server_id: str) -> None:
        self._restore.power_on(server_id)

    def release(self, ref: ResourceRef) -> None:
        self._restore.release(ref)

    def guest_agent(self, server_id: str, command: str) -> None:
        server = self.get(ResourceRef(K.SERVER, server_id))
        if server is None:
            raise NotFound(f"server {server_id!r} does not exist on site {self.site.name!r}")
        raise PermanentError(
            f"server {server.name}: the OpenStack APIs offer no guest-agent channel "
            "(fsfreeze); use a script quiesce hook or crash consistency"
        )

    # -- volume and image data ----------------------------------------------------------

    def create_snapshot(self, volume_id: str, key: str) -> SnapshotInfo:
        """Find-or-create by (volume, key); waits until Cinder says ``available``."""
        return self._snapshots.create_snapshot(volume_id, key)

    def list_snapshots(self, volume_id: str) -> list[SnapshotInfo]:
        return self._snapshots.list_snapshots(volume_id)

    def delete_snapshot(self, snapshot_id: str) -> None:
        self._snapshots.delete_snapshot(snapshot_id)

    def changed_extents(self, snapshot_id: str, base_snapshot_id: str | None) -> list[Extent]:
        """RBD ``diff_iterate`` between the backing RBD snapshots (whole objects at worst),
        clipped to the volume's byte size. Without RBD: the whole volume when there is no
        base, NotFound ("read it in full") when there is one."""
        return self._snapshots.changed_extents(snapshot_id, base_snapshot_id)

    def read_snapshot(self, snapshot_id: str, offset: int, length: int) -> bytes:
        """Snapshot-time bytes; fewer than ``length`` only at the end of the volume."""
        return self._snapshots.read_snapshot(snapshot_id, offset, length)

    def write_volume(self, volume_id: str, offset: int, data: bytes) -> None:
        self._snapshots.write_volume(volume_id, offset, data)

    def read_image(self, image_id: str) -> Iterator[bytes]:
        return self._images.read_image(image_id)

    def write_image(self, image_id: str, chunks: Iterable[bytes]) -> None:
        """Upload once (Glance's rule); the same bytes again are a no-op. When created
        with a ``checksum`` (md5) the data must match it."""
        self._images.write_image(image_id, chunks)


def open_openstack(site: Site) -> OpenStackDriver:
    """The ``openstack`` driver factory (entry point)."""
    return OpenStackDriver(site)
