"""Volume data on OpenStack: Cinder snapshots, changed extents, reads and writes.

Data paths: ``cbt`` when librbd (Debian ``python3-rbd``) and the site's ``ceph_conf`` are
available: extents come from ``diff_iterate`` between the RBD snapshots that back Cinder
snapshots (``volumes/volume-<id>@snapshot-<id>``), reads and writes go straight to RBD
(:mod:`.rbd`). ``full`` otherwise: a snapshot is read by turning it into a temporary
volume and an image and downloading that (no changed-extent tracking; writing a volume is
not possible through the APIs and says so).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from seawall.clouds import Extent, SnapshotInfo
from seawall.clouds.extents import clip_extents, merge_extents
from seawall.clouds.openstack import rbd
from seawall.clouds.openstack.connection import CloudConnection
from seawall.clouds.openstack.discovery import Discovery
from seawall.clouds.openstack.naming import SIZE_META
from seawall.clouds.tags import KEY_TAG
from seawall.errors import InvalidInput, NotFound, PermanentError, StepTimeout
from seawall.model import ResourceKind, ResourceRef

K = ResourceKind
_CHUNK = 4 << 20


class Snapshots:
    """Cinder snapshots of one project and the bytes of its volumes."""

    def __init__(
        self,
        connection: CloudConnection,
        discovery: Discovery,
        pool: rbd.RbdPool,
        *,
        timeout: float,
        delete: Callable[[ResourceRef], None],
    ) -> None:
        self.connection = connection
        self.discovery = discovery
        self.pool = pool
        self.site = connection.site
        self.timeout = timeout
        #: the driver's delete (the generic path removes its temporary volume and image)
        self.delete = delete
        self._generic_cache: dict[str, Path] = {}
        # Sizes never change under seawall (volumes are not resized, snapshots are
        # immutable); caching them keeps a restore or a read at one RBD call per chunk
        # instead of several API calls. Forgotten when seawall deletes the object; one
        # deleted elsewhere fails at the RBD call with NotFound.
        self._volume_sizes: dict[str, int] = {}
        self._snapshots: dict[str, tuple[str, int]] = {}

    @property
    def conn(self) -> Any:
        return self.connection.conn

    def forget_volume(self, volume_id: str) -> None:
        """Drop what is cached of a volume seawall deleted."""
        self._volume_sizes.pop(volume_id, None)

    def close(self) -> None:
        """Remove the local copies the generic path made."""
        for path in self._generic_cache.values():
            path.unlink(missing_ok=True)
        self._generic_cache.clear()

    def _volume_size(self, volume_id: str) -> int:
        if volume_id in self._volume_sizes:
            return self._volume_sizes[volume_id]
        volume = self.discovery.get(ResourceRef(K.VOLUME, volume_id))
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
        with self.connection.api(f"snapshotting volume {volume_id}"):
            snap = self.conn.block_storage.create_snapshot(
                volume_id=volume_id,
                name=f"seawall-{key}"[:255],
                force=True,
                metadata={KEY_TAG: key[:255], SIZE_META: str(size)},
            )
        deadline = time.monotonic() + self.timeout
        while True:
            got = self.connection.call(
                "reading snapshot", lambda: self.conn.block_storage.get_snapshot(snap.id)
            )
            if got.status == "available":
                return self._snapshot_info(got, size)
            if got.status == "error":
                raise PermanentError(f"snapshot {snap.id} of volume {volume_id} failed (error)")
            if time.monotonic() > deadline:
                raise StepTimeout(f"snapshot {snap.id} not available after {self.timeout:g}s")
            self.connection.wait(0.5)

    def list_snapshots(self, volume_id: str) -> list[SnapshotInfo]:
        """The volume's snapshots, oldest first; NotFound for a volume this project does
        not see. Filtered here, not by Cinder: its default resource filters refuse
        ``volume_id`` from a project member ("Invalid filters volume_id")."""
        size = self._volume_size(volume_id)
        snaps = self.connection.call(
            f"listing snapshots of {volume_id}",
            lambda: list(self.conn.block_storage.snapshots(details=True)),
        )
        live = [
            s for s in snaps if s.volume_id == volume_id and s.status in ("available", "creating")
        ]
        infos = [self._snapshot_info(s, size) for s in live]
        return sorted(infos, key=lambda s: (s.created_at, s.id))

    def delete_snapshot(self, snapshot_id: str) -> None:
        try:
            with self.connection.api(f"deleting snapshot {snapshot_id}"):
                self.conn.block_storage.delete_snapshot(snapshot_id, ignore_missing=True)
        except NotFound:
            return
        finally:
            self._snapshots.pop(snapshot_id, None)
        deadline = time.monotonic() + self.timeout
        while self._get_snapshot(snapshot_id) is not None:
            if time.monotonic() > deadline:
                raise StepTimeout(f"snapshot {snapshot_id} not deleted after {self.timeout:g}s")
            self.connection.wait(0.5)
        self._generic_cache.pop(snapshot_id, Path("/nonexistent")).unlink(missing_ok=True)

    def _get_snapshot(self, snapshot_id: str) -> Any:
        return self.connection.maybe(
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
        ioctx = self.pool.ioctx()
        if ioctx is None:
            if base is not None:
                raise NotFound("no changed-block tracking without RBD access; read in full")
            return [Extent(0, info.size)]
        base_id = base.id if base is not None else None
        found = rbd.diff(ioctx, snap.volume_id, snap.id, base_id, info.size)
        return merge_extents(clip_extents(found, info.size))

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
        ioctx = self.pool.ioctx()
        if ioctx is None:
            path = self._generic_copy(self._need_snapshot(snapshot_id))
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read(length)
        try:
            return rbd.read(ioctx, volume_id, snapshot_id, offset, length)
        except NotFound:
            self._snapshots.pop(snapshot_id, None)
            raise

    def _generic_copy(self, snap: Any) -> Path:
        """The generic path: snapshot -> temporary volume -> image -> local file (cached
        per snapshot, removed by ``delete_snapshot`` and ``close``)."""
        cached = self._generic_cache.get(snap.id)
        if cached is not None and cached.exists():
            return cached
        c = self.conn
        tmp_volume = tmp_image = None
        try:
            with self.connection.api(f"copying snapshot {snap.id} out through Cinder and Glance"):
                tmp_volume = c.block_storage.create_volume(
                    name=f"seawall-read-{snap.id}", snapshot_id=snap.id, size=snap.size
                )
                self.discovery.wait_for_status(
                    ResourceRef(K.VOLUME, tmp_volume.id), "available", self.timeout
                )
                upload = c.block_storage.upload_volume_to_image(
                    tmp_volume, f"seawall-read-{snap.id}", disk_format="raw",
                    container_format="bare", force=True,
                )  # fmt: skip
                tmp_image = upload["image_id"]
                self.discovery.wait_for_status(
                    ResourceRef(K.IMAGE, tmp_image), "active", self.timeout
                )
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
                self.discovery.wait_for_status(
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
        ioctx = self.pool.ioctx()
        if ioctx is None:
            raise PermanentError(
                f"openstack site {self.site.name!r}: writing volume data needs RBD access "
                "(site params ceph_conf and python3-rbd); the Cinder API cannot write bytes"
            )
        try:
            rbd.write(ioctx, volume_id, offset, data)
        except NotFound:
            self._volume_sizes.pop(volume_id, None)
            raise
