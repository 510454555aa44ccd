"""The embedded simulated site (``sim``): a whole cloud kept in one directory.

It is clearly a simulator, but its moving parts are real, so that what seawall proves on
it (byte-exact volumes, incremental reads, boot order, health checks, isolation of a
drill's networks) is proven for real rather than asserted by a mock:

- resources live in a small SQLite database, one transaction per call, so several
  processes (the service, a worker, a test) can share a site (:mod:`.store`);
- volumes are sparse files; every write goes through :class:`VolumeWriter`, which records
  the written extent in the volume's change journal *before* it writes the data, so
  changed-block tracking can never miss a write, even across a crash (:mod:`.journal`);
- snapshots are sparse copies that remember the journal position they were taken at
  (:mod:`.volumes`);
- servers with a ``command`` are real, detached processes bound to a loopback address of
  their own, with their volumes' paths and their network peers in their environment
  (:mod:`.servers`, :mod:`.processes`; the sample program is :mod:`.app`).

Site layout (format 1)::

    <site>/site.db                 resources, snapshots, server processes (SQLite, WAL)
    <site>/volumes/<id>.img        volume bytes (sparse; size = attrs["size"])
    <site>/volumes/<id>.cbt        the volume's change journal (see :mod:`.journal`)
    <site>/snapshots/<id>.img      snapshot bytes (a sparse copy of the data regions)
    <site>/images/<id>.img         image bytes
    <site>/logs/<name>-<id8>.log   a server process's stdout and stderr
    <site>/quotas.json             optional limits, e.g. {"servers": 4, "volume_bytes": 1e9}
    <site>/DOWN                    optional marker: every call raises SiteUnavailable

A damaged change journal makes ``changed_extents`` raise NotFound, so the caller reads the
volume in full. Where the sim is stricter than OpenStack, it says so (:mod:`.resources`).

:class:`SimDriver` is the CloudDriver V1 face of the site; the work is done by the parts
it holds: the :class:`~.store.SiteStore`, :class:`~.resources.Resources`,
:class:`~.servers.Servers` and :class:`~.volumes.Volumes`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from seawall import procfs
from seawall.clouds import DriverCapabilities, Extent, ResourceSpec, SnapshotInfo
from seawall.clouds.extents import merge_extents
from seawall.clouds.graph import reachable
from seawall.clouds.schema import ROLES, RUNTIME_ATTRS, sort_resources
from seawall.clouds.sim import processes
from seawall.clouds.sim.journal import VolumeWriter, journal_path_for
from seawall.clouds.sim.resources import Resources
from seawall.clouds.sim.servers import ACTIVE, BUILD, ERROR, SHUTOFF, Servers, server_status
from seawall.clouds.sim.store import FORMAT_VERSION, SiteStore, Stored, owner
from seawall.clouds.sim.volumes import Volumes
from seawall.clouds.tags import KEY_TAG
from seawall.clouds.waiting import wait_for_status
from seawall.errors import Conflict, InvalidInput, NotFound, PermanentError, SeawallError
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
    "ACTIVE",
    "BUILD",
    "ERROR",
    "FORMAT_VERSION",
    "KEY_TAG",
    "RUNTIME_ATTRS",
    "SHUTOFF",
    "SimDriver",
    "VolumeWriter",
    "destroy_site",
    "journal_path_for",
    "merge_extents",
    "open_sim",
]

K = ResourceKind


class SimDriver:
    """CloudDriver V1 over a site directory (see the module docstring for the layout).

    ``clock`` and ``new_id`` are injectable so tests can be reproducible; ``stop_grace``
    is how long ``power_off`` waits after SIGTERM before SIGKILL; ``lock_timeout`` bounds
    how long a snapshot or freeze waits for in-flight writes.

    ``project`` is the tenant boundary (:meth:`for_project`): every row records the
    project that made it, and a driver sees, changes and reads only its own project's
    resources, volumes, snapshots and images; another project's are, to it, missing.
    """

    site: Site

    def __init__(
        self,
        site: Site,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        stop_grace: float = 5.0,
        lock_timeout: float = 30.0,
        project: str = DEFAULT_PROJECT,
    ) -> None:
        if not project:
            raise InvalidInput("a project is required", field="project")
        self.site = site
        self.path = Path(path).resolve()
        self.clock = clock
        self.new_id = new_id
        self.stop_grace = stop_grace
        self.lock_timeout = lock_timeout
        self.project = project
        self._store = SiteStore(site, self.path)
        self._volumes = Volumes(self._store, clock, new_id)
        self._resources = Resources(self._store, self._volumes, clock, new_id, project)
        self._servers = Servers(self._store)
        #: (kind, id) already found to be this project's: a row never changes project, so
        #: the per-chunk calls (read_snapshot) check ownership once, not per call
        self._owned: set[tuple[str, str]] = set()

    def for_project(self, project: str) -> SimDriver:
        """The same site directory, seen by ``project`` (the sim needs no credentials:
        its boundary is the project recorded on each row)."""
        if project == self.project:
            return self
        return SimDriver(
            self.site,
            self.path,
            clock=self.clock,
            new_id=self.new_id,
            stop_grace=self.stop_grace,
            lock_timeout=self.lock_timeout,
            project=project,
        )

    # -- the tenant boundary ------------------------------------------------------------

    def _mine(self, row: Stored) -> bool:
        return owner(row) == self.project

    def _own(self, kind: ResourceKind, id_: str) -> None:
        """NotFound, in the words of a missing one, unless ``id_`` is this project's."""
        if (kind.value, id_) in self._owned:
            return
        with self._store.tx() as con:
            row = self._store.row(con, kind, id_)
        if row is None or not self._mine(row):
            raise NotFound(f"{kind.value} {id_!r} does not exist on site {self.site.name!r}")
        self._owned.add((kind.value, id_))

    def _own_snapshot(self, snapshot_id: str, what: str = "snapshot") -> None:
        """A snapshot is its volume's project's; a missing one is left to the call."""
        if ("snapshot", snapshot_id) in self._owned:
            return
        with self._store.tx() as con:
            found = con.execute(
                "SELECT volume_id FROM snapshots WHERE id = ?", (snapshot_id,)
            ).fetchone()
        if found is None:
            return
        try:
            self._own(K.VOLUME, str(found[0]))
        except NotFound:
            site = self.site.name
            raise NotFound(f"{what} {snapshot_id!r} does not exist on site {site!r}") from None
        self._owned.add(("snapshot", snapshot_id))

    # -- site ---------------------------------------------------------------------------

    def ping(self) -> None:
        """Raise SiteUnavailable if the directory is gone (destroyed) or marked DOWN."""
        self._store.ping()

    def capabilities(self) -> DriverCapabilities:
        return DriverCapabilities(
            data_paths=("cbt", "full"),
            group_snapshots=False,
            isolated_networks=True,
            live_servers=True,
            guest_agent=True,
        )

    # -- reading ------------------------------------------------------------------------

    def _materialize(self, con: sqlite3.Connection, rows: list[Stored]) -> list[Resource]:
        """This project's rows -> Resources, with the runtime attrs (status,
        access_address) filled in; other projects' rows are left out."""
        store = self._store
        rows = [r for r in rows if self._mine(r)]
        procs = store.procs(con) if any(r.kind is K.SERVER for r in rows) else {}
        attached: set[str] = set()
        if any(r.kind is K.VOLUME for r in rows):
            for s in store.rows(con, "kind = ?", K.SERVER.value):
                attached.update(s.refs.get("volumes", []))
        out = []
        for r in rows:
            attrs = dict(r.attrs)
            if r.kind is K.SERVER:
                attrs["status"] = server_status(r, procs.get(r.id))
                attrs["access_address"] = r.runtime.get("access_address", "")
            elif r.kind is K.VOLUME:
                attrs["status"] = "in-use" if r.id in attached else "available"
            elif r.kind is K.IMAGE:
                attrs["status"] = r.runtime.get("status", "queued")
            roles = ROLES.get(r.kind, {})
            refs = {
                role: tuple(ResourceRef(roles[role].kind, i) for i in ids)
                for role, ids in r.refs.items()
                if ids
            }
            out.append(Resource(r.kind, r.id, r.name, attrs, refs, dict(r.tags)))
        return out

    def list_resources(self, kind: ResourceKind | None = None) -> list[Resource]:
        store = self._store
        with store.tx() as con:
            rows = store.rows(con, "kind = ?", kind.value) if kind else store.rows(con)
            return sort_resources(self._materialize(con, rows))

    def get(self, ref: ResourceRef) -> Resource | None:
        with self._store.tx() as con:
            row = self._store.row(con, ref.kind, ref.id)
            found = self._materialize(con, [row]) if row else []
            return found[0] if found else None

    def find(self, kind: ResourceKind, key: str) -> Resource | None:
        with self._store.tx() as con:
            rows = self._store.rows(con, "kind = ? AND key = ?", kind.value, key)
            found = self._materialize(con, rows)
            return found[0] if found else None

    def discover(self, selector: Selector) -> ResourceGraph:
        """Selected servers, everything they reference, routers on included subnets and
        floating IPs on included ports (and, in turn, what those reference)."""
        with self._store.tx() as con:
            everything = self._materialize(con, self._store.rows(con))
        return ResourceGraph(tuple(sort_resources(reachable(everything, selector))))

    def quotas(self) -> Mapping[str, int]:
        return self._resources.quotas()

    # -- create / delete ----------------------------------------------------------------

    def create(self, spec: ResourceSpec) -> Resource:
        """Find-or-create by ``spec.key``; a server with a command is started at once. A
        found security group gains the spec's rules it lacks (the contract's link)."""
        kind = ResourceKind(spec.kind)
        with self._store.tx(write=True) as con:
            existing = self._store.rows(con, "kind = ? AND key = ?", kind.value, spec.key)
            if existing and not self._mine(existing[0]):
                raise Conflict(
                    f"{kind.value} key {spec.key!r} is taken on site {self.site.name!r} "
                    "outside this project; give the resource another key"
                )
            row = existing[0] if existing else self._resources.insert(con, kind, spec)
            if existing:
                self._resources.link(con, row, spec)
        if row.kind is K.SERVER and row.runtime.get("power") == "building":
            self._servers.boot(row.id)  # also resumes a create interrupted before the boot
        found = self.get(ResourceRef(kind, row.id))
        if found is None:  # deleted by someone else in between
            raise Conflict(f"{kind.value} {row.id} vanished while it was being created")
        return found

    def delete(self, ref: ResourceRef) -> None:
        """Delete; "already gone" is success. A server's process is killed first; a
        volume's file, journal and snapshots go with it. Another project's resource is,
        here too, one that is gone: nothing is done."""
        try:
            self._own(ref.kind, ref.id)
        except NotFound:
            return
        self._resources.delete(ref, self.stop_grace)

    # -- servers ------------------------------------------------------------------------

    def power_off(self, server_id: str) -> None:
        """SIGTERM, then SIGKILL after ``stop_grace`` seconds; the server is SHUTOFF."""
        self._own(K.SERVER, server_id)
        self._servers.power_off(server_id, self.stop_grace)

    def power_on(self, server_id: str) -> None:
        """Start the process again (a crashed one too), with a fresh view of its peers."""
        self._own(K.SERVER, server_id)
        self._servers.power_on(server_id)

    def stop_all(self) -> None:
        """Power off every server of the site at once (clean-up for tests and the demo)."""
        self._servers.stop_all(self.stop_grace)

    def guest_agent(self, server_id: str, command: str) -> None:
        """``fsfreeze-freeze`` stops the process once its in-flight writes are done (it
        takes each volume's journal lock first); ``fsfreeze-thaw`` resumes it."""
        self._own(K.SERVER, server_id)
        self._servers.guest_agent(server_id, command, self.lock_timeout)

    def release(self, ref: ResourceRef) -> None:
        """Nothing to do: the sim keeps a resource's key and tags in fields of their own,
        never in what its user reads."""

    def wait_for_status(self, ref: ResourceRef, status: str, timeout: float) -> Resource:
        """Poll until ``attrs["status"]`` is ``status`` (case-insensitive; resources
        without one count as ACTIVE; ``DELETED`` waits for it to be gone). A server that
        falls into ERROR while waiting for something else fails at once."""

        def failed(found: Resource, last: str, want: str) -> SeawallError | None:
            if last == ERROR and ref.kind is K.SERVER:
                return PermanentError(
                    f"server {found.name} is in ERROR while waiting for {want}; "
                    f"see {self.log_path(found.id, found.name)}"
                )
            return None

        return wait_for_status(
            self.get,
            ref,
            status,
            timeout,
            site=self.site.name,
            status_of=lambda found: str(found.attrs.get("status", ACTIVE)),
            failed=failed,
            delay=0.02,
            factor=2.0,
            max_delay=0.25,
        )

    def log_path(self, server_id: str, name: str | None = None) -> Path:
        """Where a server process's output goes (``logs/<name>-<id8>.log``)."""
        return self._servers.log_path(server_id, name)

    def server_pid(self, server_id: str) -> int | None:
        """The pid of the server's live process, or None (for tests and diagnostics)."""
        self._own(K.SERVER, server_id)
        return self._servers.pid(server_id)

    # -- volumes, snapshots and images --------------------------------------------------

    def volume_path(self, volume_id: str) -> Path:
        """The volume's file (what server processes get in SEAWALL_VOLUMES)."""
        return self._store.volume_path(volume_id)

    def write_volume(self, volume_id: str, offset: int, data: bytes) -> None:
        self._own(K.VOLUME, volume_id)
        self._volumes.write_volume(volume_id, offset, data)

    def create_snapshot(self, volume_id: str, key: str) -> SnapshotInfo:
        """Find-or-create by (volume, key). The copy and the journal position are taken
        under the journal's exclusive lock, so they describe the same instant."""
        self._own(K.VOLUME, volume_id)
        return self._volumes.create_snapshot(volume_id, key, self.lock_timeout)

    def list_snapshots(self, volume_id: str) -> list[SnapshotInfo]:
        self._own(K.VOLUME, volume_id)
        return self._volumes.list_snapshots(volume_id)

    def delete_snapshot(self, snapshot_id: str) -> None:
        try:
            self._own_snapshot(snapshot_id)
        except NotFound:
            return  # another project's: as if already gone
        self._volumes.delete_snapshot(snapshot_id)

    def changed_extents(self, snapshot_id: str, base_snapshot_id: str | None) -> list[Extent]:
        """Journaled writes between ``base`` and ``snapshot`` (merged), or the snapshot's
        allocated extents when there is no base. NotFound for an unknown base or a damaged
        journal: both mean "read it in full"."""
        self._own_snapshot(snapshot_id)
        if base_snapshot_id:
            self._own_snapshot(base_snapshot_id, "base snapshot")
        return self._volumes.changed_extents(snapshot_id, base_snapshot_id)

    def read_snapshot(self, snapshot_id: str, offset: int, length: int) -> bytes:
        """Snapshot-time bytes; fewer than ``length`` only at the end of the snapshot."""
        self._own_snapshot(snapshot_id)
        return self._volumes.read_snapshot(snapshot_id, offset, length)

    def read_image(self, image_id: str) -> Iterator[bytes]:
        self._own(K.IMAGE, image_id)
        return self._volumes.read_image(image_id)

    def write_image(self, image_id: str, chunks: Iterable[bytes]) -> None:
        """Upload once (Glance's rule); uploading the same bytes again is a no-op. When
        the image was created with a ``checksum`` (md5, as Glance's), the data must match."""
        self._own(K.IMAGE, image_id)
        self._volumes.write_image(image_id, chunks)


# --------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------


def open_sim(site: Site) -> SimDriver:
    """The ``sim`` driver factory (entry point): ``site.params["path"]`` is the site's
    directory, created if missing. A site marked DOWN opens, but every call raises."""
    path = site.params.get("path")
    if not path:
        raise InvalidInput("a sim site needs a directory", field="site.params.path")
    return SimDriver(site, path)


def destroy_site(path: str | os.PathLike[str]) -> None:
    """The disaster: kill every server process of the site and remove its directory.

    Processes are found in site.db and, as a safety net, by the SEAWALL_SITE variable of
    every process, so a half-written database cannot leave servers behind.
    """
    root = Path(path).resolve()
    procs: list[tuple[int, int]] = []
    db = root / "site.db"
    if db.is_file():
        with contextlib.suppress(sqlite3.Error):
            con = sqlite3.connect(db.as_uri() + "?mode=ro", uri=True, timeout=5)
            try:
                rows = con.execute("SELECT pid, start_time FROM processes").fetchall()
                procs = [(int(pid), int(start)) for pid, start in rows]
            finally:
                con.close()
    for pid in processes.site_processes(root):
        start = procfs.start_time(pid)
        if start is not None:
            procs.append((pid, start))
    processes.terminate(procs, grace=0.0)
    shutil.rmtree(root, ignore_errors=True)
