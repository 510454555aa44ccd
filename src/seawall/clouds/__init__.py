"""Cloud drivers: the :class:`CloudDriver` contract and how a site opens its driver."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from seawall.model import (
    Resource,
    ResourceGraph,
    ResourceKind,
    ResourceRef,
    Selector,
    Site,
)
from seawall.plugins import registry

# --------------------------------------------------------------------------------------
# Cloud drivers
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Extent:
    """A byte range of a volume."""

    offset: int
    length: int


@dataclass(frozen=True)
class SnapshotInfo:
    """A cloud volume snapshot (the cloud's own; never a checkpoint)."""

    id: str
    volume_id: str
    size: int
    key: str
    created_at: float


@dataclass(frozen=True)
class ResourceSpec:
    """What to create on a target: captured attrs with refs resolved to target ids.

    ``key`` is deterministic (run + source id) so that a resumed run finds what it
    already created instead of creating a duplicate.
    """

    kind: ResourceKind
    name: str
    key: str
    attrs: Mapping[str, Any] = field(default_factory=dict)
    refs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DriverCapabilities:
    #: volume data paths: "cbt" (changed-block tracking between snapshots), "full"
    data_paths: tuple[str, ...] = ("full",)
    group_snapshots: bool = False
    isolated_networks: bool = True
    #: servers run real processes whose TCP/HTTP health can be checked
    live_servers: bool = False
    guest_agent: bool = False
    #: kinds the cloud can hold no seawall mark for (no tags, no metadata): ``create``
    #: may reuse an identical resource the target has, and ``find`` finds what this
    #: driver object created (see :class:`CloudDriver`)
    unmarked_kinds: tuple[ResourceKind, ...] = ()


@runtime_checkable
class CloudDriver(Protocol):
    """CloudDriver V1: everything seawall asks of a cloud.

    Idempotency is part of the contract: ``create`` finds by ``spec.key`` before it
    creates, ``create_snapshot`` by its key; ``delete`` and ``delete_snapshot`` tolerate
    "already gone". ``discover`` returns the full graph reachable from the selected
    servers (ports, networks, subnets, routers, groups, volumes, flavors, ...).

    Ownership: the resource ``create`` returns carries ``seawall:key`` == ``spec.key``
    exactly when it is the caller's, i.e. created under that key (now or by an earlier
    attempt). A driver may instead reuse what the target already has and the spec
    describes (the project's ``default`` security group; for the kinds in
    ``capabilities().unmarked_kinds``, an identical resource: a same-named volume type,
    a keypair with the same key...); that one comes back without ``seawall:key`` and is
    not the caller's to delete in a revert or a clean-up. For the unmarked kinds the
    cloud keeps no key, so ``find`` finds only what this driver object created, the
    resource seawall lists carries no ``seawall:*`` tags, and a resumed run converges by
    ``create``'s reuse plus the caller's own journal of what it created.
    """

    site: Site

    def capabilities(self) -> DriverCapabilities: ...

    def for_project(self, project: str) -> CloudDriver:
        """This site as seen by ``project``: a driver that lists, selects, changes and
        reads only that project's resources and creates what it creates there (the
        tenant boundary; ``model.DEFAULT_PROJECT`` is the driver itself). A resource of
        another project is, to it, a resource that does not exist. Raises
        :class:`~seawall.errors.Forbidden` when the site holds no means to act for
        ``project`` (no credentials scoped to it)."""
        ...

    def ping(self) -> None:
        """Raise SiteUnavailable if the site cannot be used."""

    def discover(self, selector: Selector) -> ResourceGraph: ...

    def list_resources(self, kind: ResourceKind | None = None) -> list[Resource]: ...

    def get(self, ref: ResourceRef) -> Resource | None: ...

    def find(self, kind: ResourceKind, key: str) -> Resource | None: ...

    def quotas(self) -> Mapping[str, int]:
        """Remaining headroom by name (servers, volumes, volume_bytes...); -1 = unlimited."""

    def create(self, spec: ResourceSpec) -> Resource: ...

    def delete(self, ref: ResourceRef) -> None: ...

    def power_off(self, server_id: str) -> None: ...

    def power_on(self, server_id: str) -> None: ...

    def wait_for_status(self, ref: ResourceRef, status: str, timeout: float) -> Resource: ...

    def create_snapshot(self, volume_id: str, key: str) -> SnapshotInfo: ...

    def list_snapshots(self, volume_id: str) -> list[SnapshotInfo]: ...

    def delete_snapshot(self, snapshot_id: str) -> None: ...

    def changed_extents(self, snapshot_id: str, base_snapshot_id: str | None) -> list[Extent]:
        """Extents that differ from the base snapshot (all allocated extents if None)."""

    def read_snapshot(self, snapshot_id: str, offset: int, length: int) -> bytes: ...

    def write_volume(self, volume_id: str, offset: int, data: bytes) -> None: ...

    def read_image(self, image_id: str) -> Iterator[bytes]:
        """The image's bytes, in order."""

    def write_image(self, image_id: str, chunks: Iterable[bytes]) -> None:
        """Upload data into an image created (queued) by ``create``."""

    def guest_agent(self, server_id: str, command: str) -> None:
        """Run a guest-agent command (``fsfreeze-freeze`` / ``fsfreeze-thaw``)."""

    def release(self, ref: ResourceRef) -> None:
        """Remove the marks ``create`` left in fields the user reads (a kind with no tags
        keeps its key where the user sees it while a recovery may still need to find it);
        tags stay. Called once a recovery is done with them; "already gone" is success.
        Afterwards ``find`` may no longer find it by its key (where the key lived in
        such a field); everything the user set is as it was."""


#: ``factory(site) -> CloudDriver``
CloudFactory = Callable[[Site], CloudDriver]


def open_site(site: Site) -> CloudDriver:
    """The driver for ``site``, loaded from the ``seawall.clouds`` entry points."""
    factory: CloudFactory = registry().load("clouds", site.driver)
    return factory(site)
