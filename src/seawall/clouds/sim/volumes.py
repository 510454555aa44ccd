"""The sim's volume data: volume files, snapshots, changed extents, reads, writes, images.

Volumes are sparse files; every write goes through :class:`~.journal.VolumeWriter`, which
records the written extent in the volume's change journal *before* it writes the data, so
changed-block tracking can never miss a write, even across a crash. Snapshots are sparse
copies that remember the journal position they were taken at; the extents between two
snapshots are the journal's records between their positions.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator

from seawall.clouds import Extent, SnapshotInfo
from seawall.clouds.extents import clip_extents, merge_extents
from seawall.clouds.schema import check_image_upload
from seawall.clouds.sim.journal import (
    CHUNK,
    JournalDamaged,
    VolumeWriter,
    data_regions,
    exclusive,
    journal_path_for,
    read_journal,
    repair_journal,
    sparse_copy,
)
from seawall.clouds.sim.store import SiteStore, Stored
from seawall.errors import Conflict, InvalidInput, NotFound
from seawall.model import ResourceKind

K = ResourceKind


def _snapshot_info(row: sqlite3.Row) -> SnapshotInfo:
    return SnapshotInfo(row["id"], row["volume_id"], row["size"], row["key"], row["created_at"])


def _find_snapshot(con: sqlite3.Connection, volume_id: str, key: str) -> sqlite3.Row | None:
    return con.execute(  # type: ignore[no-any-return]
        "SELECT * FROM snapshots WHERE volume_id = ? AND key = ?", (volume_id, key)
    ).fetchone()


class Volumes:
    """Volume, snapshot and image bytes of one site (their rows live in ``site.db``)."""

    def __init__(
        self, store: SiteStore, clock: Callable[[], float], new_id: Callable[[], str]
    ) -> None:
        self.store = store
        self.clock = clock
        self.new_id = new_id

    def create_file(self, row: Stored) -> None:
        """A new volume's sparse file, filled from its image if it has one."""
        path = self.store.volume_path(row.id)
        with open(path, "wb") as f:
            f.truncate(int(row.attrs["size"]))
        journal_path_for(path).unlink(missing_ok=True)
        if "image" in row.refs:
            # Through the writer, so the journal also accounts for the initial content.
            image = self.store.image_path(row.refs["image"][0])
            with VolumeWriter(path) as w, open(image, "rb") as f:
                offset = 0
                while buf := f.read(CHUNK):
                    if buf.count(0) != len(buf):
                        w.write(offset, buf)
                    offset += len(buf)

    def write_volume(self, volume_id: str, offset: int, data: bytes) -> None:
        with self.store.tx() as con:
            self.store.need(con, K.VOLUME, volume_id)
        with VolumeWriter(self.store.volume_path(volume_id)) as writer:
            writer.write(offset, data)

    def create_snapshot(self, volume_id: str, key: str, lock_timeout: float) -> SnapshotInfo:
        """Find-or-create by (volume, key). The copy and the journal position are taken
        under the journal's exclusive lock, so they describe the same instant."""
        store = self.store
        with store.tx() as con:
            found = _find_snapshot(con, volume_id, key)
            if found is not None:
                return _snapshot_info(found)
            volume = store.need(con, K.VOLUME, volume_id)
        snap_id = self.new_id()
        now = self.clock()
        size = int(volume.attrs["size"])
        path = store.volume_path(volume_id)
        journal = os.open(journal_path_for(path), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            with exclusive(journal, f"snapshot of volume {volume.name}", lock_timeout):
                position = repair_journal(journal)
                src = os.open(path, os.O_RDONLY)
                try:
                    sparse_copy(src, store.snapshot_path(snap_id), size)
                finally:
                    os.close(src)
        finally:
            os.close(journal)
        try:
            with store.tx(write=True) as con:
                store.need(con, K.VOLUME, volume_id)
                con.execute(
                    "INSERT INTO snapshots VALUES (?, ?, ?, ?, ?, ?)",
                    (snap_id, volume_id, key, size, now, position),
                )
        except (sqlite3.IntegrityError, NotFound):
            store.snapshot_path(snap_id).unlink(missing_ok=True)  # lost a race, or gone
            with store.tx() as con:
                found = _find_snapshot(con, volume_id, key)
            if found is None:
                raise
            return _snapshot_info(found)
        return SnapshotInfo(snap_id, volume_id, size, key, now)

    def list_snapshots(self, volume_id: str) -> list[SnapshotInfo]:
        with self.store.tx() as con:
            rows = con.execute(
                "SELECT * FROM snapshots WHERE volume_id = ? ORDER BY journal_pos, created_at, id",
                (volume_id,),
            ).fetchall()
        return [_snapshot_info(r) for r in rows]

    def delete_snapshot(self, snapshot_id: str) -> None:
        with self.store.tx(write=True) as con:
            con.execute("DELETE FROM snapshots WHERE id = ?", (snapshot_id,))
        self.store.snapshot_path(snapshot_id).unlink(missing_ok=True)

    def _snapshot_row(self, con: sqlite3.Connection, snapshot_id: str, what: str) -> sqlite3.Row:
        row = con.execute("SELECT * FROM snapshots WHERE id = ?", (snapshot_id,)).fetchone()
        if row is None:
            site = self.store.site.name
            raise NotFound(f"{what} {snapshot_id!r} does not exist on site {site!r}")
        return row  # type: ignore[no-any-return]

    def changed_extents(self, snapshot_id: str, base_snapshot_id: str | None) -> list[Extent]:
        """Journaled writes between ``base`` and ``snapshot`` (merged), or the snapshot's
        allocated extents when there is no base. NotFound for an unknown base or a damaged
        journal: both mean "read it in full"."""
        with self.store.tx() as con:
            snap = self._snapshot_row(con, snapshot_id, "snapshot")
            base = (
                self._snapshot_row(con, base_snapshot_id, "base snapshot")
                if base_snapshot_id
                else None
            )
        size = int(snap["size"])
        if base is None:
            fd = os.open(self.store.snapshot_path(snapshot_id), os.O_RDONLY)
            try:
                return merge_extents(data_regions(fd, size))
            finally:
                os.close(fd)
        if base["volume_id"] != snap["volume_id"]:
            raise InvalidInput(
                f"base snapshot {base['id']} is of another volume", field="base_snapshot_id"
            )
        if base["journal_pos"] > snap["journal_pos"]:
            raise InvalidInput(
                f"base snapshot {base['id']} is newer than {snap['id']}", field="base_snapshot_id"
            )
        journal = journal_path_for(self.store.volume_path(snap["volume_id"]))
        try:
            records = read_journal(journal, base["journal_pos"], snap["journal_pos"])
        except JournalDamaged as exc:
            raise NotFound(f"no reliable change record ({exc}); read the volume in full") from None
        return merge_extents(clip_extents(records, size))

    def read_snapshot(self, snapshot_id: str, offset: int, length: int) -> bytes:
        """Snapshot-time bytes; fewer than ``length`` only at the end of the snapshot."""
        with self.store.tx() as con:
            snap = self._snapshot_row(con, snapshot_id, "snapshot")
        if offset < 0 or length < 0 or offset > snap["size"]:
            raise InvalidInput(
                f"cannot read {length} bytes at {offset} of a {snap['size']}-byte snapshot",
                field="offset",
            )
        length = min(length, snap["size"] - offset)
        with open(self.store.snapshot_path(snapshot_id), "rb") as f:
            return os.pread(f.fileno(), length, offset) if length else b""

    # -- images -------------------------------------------------------------------------

    def read_image(self, image_id: str) -> Iterator[bytes]:
        with self.store.tx() as con:
            image = self.store.need(con, K.IMAGE, image_id)
        if image.runtime.get("status") != "active":
            raise Conflict(f"image {image.name} has no data yet (status queued)")
        path = self.store.image_path(image_id)

        def chunks() -> Iterator[bytes]:
            with open(path, "rb") as f:
                while buf := f.read(CHUNK):
                    yield buf

        return chunks()

    def write_image(self, image_id: str, chunks: Iterable[bytes]) -> None:
        """Upload once (Glance's rule); uploading the same bytes again is a no-op. When
        the image was created with a ``checksum`` (md5, as Glance's), the data must match."""
        with self.store.tx() as con:
            image = self.store.need(con, K.IMAGE, image_id)
        final = self.store.image_path(image_id)
        tmp = final.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        md5 = hashlib.md5(usedforsecurity=False)
        size = 0
        try:
            with open(tmp, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
                    md5.update(chunk)
                    size += len(chunk)
                f.flush()
                os.fsync(f.fileno())
            checksum = md5.hexdigest()
            expected = image.attrs.get("checksum")
            active = image.runtime.get("status") == "active"
            if not check_image_upload(
                image.name, checksum, active=active, held=expected, expected=expected
            ):
                return
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        with self.store.tx(write=True) as con:
            row = self.store.need(con, K.IMAGE, image_id)
            row.attrs.update(size=size, checksum=checksum)
            row.runtime["status"] = "active"
            con.execute(
                "UPDATE resources SET attrs = ?, runtime = ? WHERE id = ?",
                (json.dumps(row.attrs, sort_keys=True), json.dumps(row.runtime), image_id),
            )
