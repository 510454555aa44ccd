"""The repository facade: volumes, streams and manifests over a dumb storage backend.

Layout on storage (all names lower-case hex)::

    config                    sealed repository parameters (format version in clear)
    keys/<slot>               key slots: the master key wrapped per passphrase
    data/<xx>/<pack id>       packs: sealed blobs + sealed trailer listing them
    index/<index id>          sealed lists of (pack -> blob entries)
    manifests/<manifest id>   sealed JSON documents: volume images, streams, checkpoints
    locks/<token>             sealed lock records (shared for writers, exclusive for prune)

The write order is packs -> index -> manifest, so a crash leaves unreferenced data and
never a reference to something missing. See docs/design/repository-format.md.

:class:`Repository` coordinates the layers below it and adds none of their mechanics:
it opens the repository (config, key slots), holds the lock around every operation, and
writes the manifests that name what the data paths stored. The layers, each using only
the public API of the ones under it::

    repository             this facade
    maintenance | volume   check/stats/forget/prune; the volume image and stream paths
    store                  BlobStore: lookups, authenticated reads, deduplicated writes
    manifest | index       ManifestStore; Index (blob id -> pack location)
    pack                   PackWriter, trailers, ranged blob reads
    locks | keyfile        lock records; key slots
    format                 sealing and the binary entry lists
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from seawall.errors import (
    Conflict,
    InvalidInput,
    KeyMissing,
    NotFound,
    RepositoryError,
    WrongPassphrase,
)
from seawall.repo import keyfile, maintenance, volume
from seawall.repo.format import HOLE, BlobEntry, Keys, ObjectType, parse_header
from seawall.repo.index import Index
from seawall.repo.keyfile import KEYS_PREFIX
from seawall.repo.locks import RepositoryLock, lock_is_stale
from seawall.repo.maintenance import CheckReport
from seawall.repo.manifest import (
    DATA_KINDS,
    KIND_RE,
    Manifest,
    ManifestStore,
    VolumeImage,
    now,
    volume_image,
)
from seawall.repo.pack import read_trailer
from seawall.repo.store import BlobStore
from seawall.repo.volume import (
    FLUSH_EVERY,
    STREAM_AVG,
    STREAM_MAX,
    STREAM_MIN,
    VolumeSource,
    plan_reads,
)
from seawall.retention import KeepRules
from seawall.storage import StorageBackend

CONFIG_KEY = "config"

#: Chosen by measurement (docs/design/repository-format.md, "Chunk size"): 64 KiB keeps
#: scattered 4-64 KiB changes to ~1.5x stored bytes where 1 MiB chunks cost ~10x.
DEFAULT_CHUNK_SIZE = 64 * 1024
DEFAULT_PACK_SIZE = 16 * 1024 * 1024


class Repository:
    """An open repository. Thread-safe: several threads may write volumes at once.

    ``index`` (:class:`~seawall.repo.index.Index`), ``blobs``
    (:class:`~seawall.repo.store.BlobStore`) and ``manifests``
    (:class:`~seawall.repo.manifest.ManifestStore`) are the layers it coordinates; code
    that needs more than this facade (``sync``) uses their public methods.
    """

    def __init__(
        self,
        storage: StorageBackend,
        keys: Keys,
        config: Mapping[str, Any],
        slot_id: str,
    ) -> None:
        self.storage = storage
        self.keys = keys
        self.config = dict(config)
        self.id: str = str(config["id"])
        self.chunk_size: int = int(config["chunk_size"])
        self.pack_size: int = int(config["pack_size"])
        self.slot_id = slot_id
        self.index = Index(storage, keys)
        self.blobs = BlobStore(
            storage,
            keys,
            self.index,
            chunk_size=self.chunk_size,
            pack_size=self.pack_size,
            workers=max(1, min(4, os.cpu_count() or 1)),
        )
        self.manifests = ManifestStore(storage, keys)
        self._lock = RepositoryLock(storage, keys)
        self._closed = False
        self.index.refresh()

    # ----------------------------------------------------------------------------------
    # Creating and opening
    # ----------------------------------------------------------------------------------
    @classmethod
    def init(
        cls,
        storage: StorageBackend,
        passphrase: str,
        *,
        chunk_size: int | None = None,
        key_from: Repository | None = None,
        kdf: str = "default",
        pack_size: int | None = None,
    ) -> Repository:
        """Create a repository. ``key_from`` shares that repository's master key so that
        :func:`seawall.repo.sync` can copy sealed objects without re-encrypting them."""
        try:
            storage.stat(CONFIG_KEY)
        except NotFound:
            pass
        else:
            raise Conflict(f"{storage.url}: a repository already exists here")
        chunk_size = DEFAULT_CHUNK_SIZE if chunk_size is None else int(chunk_size)
        if chunk_size < 4096 or chunk_size > 16 << 20 or chunk_size % 4096:
            raise InvalidInput(
                "chunk size must be a multiple of 4096 between 4 KiB and 16 MiB",
                field="chunk_size",
            )
        pack_size = DEFAULT_PACK_SIZE if pack_size is None else int(pack_size)
        if pack_size < 1024 or pack_size > 1 << 30:
            raise InvalidInput("pack size must be between 1 KiB and 1 GiB", field="pack_size")
        master = key_from.keys.master if key_from is not None else os.urandom(32)
        slot_id, slot = keyfile.make_slot(master, passphrase, kdf)
        keys = Keys(master)
        config = {
            "id": secrets.token_hex(16),
            "chunk_size": chunk_size,
            "pack_size": pack_size,
            "zstd_level": keys.zstd_level,
            "stream_chunker": {
                "algorithm": "fastcdc2020",
                "min": STREAM_MIN,
                "avg": STREAM_AVG,
                "max": STREAM_MAX,
            },
            "created_at": now().isoformat(),
        }
        # Key slot first, config last: the config's presence means "initialised".
        storage.put(KEYS_PREFIX + slot_id, slot)
        storage.put(CONFIG_KEY, keys.seal_json(ObjectType.CONFIG, config, b"config"))
        return cls(storage, keys, config, slot_id)

    @classmethod
    def open(cls, storage: StorageBackend, passphrase: str) -> Repository:
        """Open with the first key slot the passphrase unlocks."""
        try:
            raw = storage.get(CONFIG_KEY)
        except NotFound:
            raise RepositoryError(
                f"{storage.url}: no seawall repository here (no config); "
                "run `seawall repo init` first"
            ) from None
        parse_header(raw, "config")  # unknown format versions fail before any key work
        slots = [b.key for b in storage.list(KEYS_PREFIX)]
        if not slots:
            raise KeyMissing(f"{storage.url}: the repository has no key slots; restore keys/")
        for key in slots:
            doc = keyfile.parse_slot(storage.get(key), key)
            master = keyfile.unwrap_slot(doc, passphrase)
            if master is not None:
                keys = Keys(master)
                config = keys.unseal_json(
                    raw, b"config", expect_type=ObjectType.CONFIG, what="config"
                )
                keys.zstd_level = int(config.get("zstd_level", 1))
                return cls(storage, keys, config, str(doc["id"]))
        raise WrongPassphrase(
            f"{storage.url}: no key slot opens with this passphrase "
            "(check SEAWALL_PASSPHRASE or --passphrase-file)"
        )

    def close(self) -> None:
        """Release the lock (if any) and the worker threads; the object is unusable after."""
        self._lock.release()
        self.blobs.close()
        self._closed = True

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def workers(self) -> int:
        """Worker threads for hashing, sealing and transfers."""
        return self.blobs.workers

    @workers.setter
    def workers(self, n: int) -> None:
        self.blobs.workers = max(1, int(n))

    # ----------------------------------------------------------------------------------
    # Key slots
    # ----------------------------------------------------------------------------------
    def add_key(self, passphrase: str, *, kdf: str = "default") -> str:
        slot_id, slot = keyfile.make_slot(self.keys.master, passphrase, kdf)
        self.storage.put(KEYS_PREFIX + slot_id, slot)
        return slot_id

    def list_keys(self) -> list[keyfile.KeySlot]:
        out = []
        for b in self.storage.list(KEYS_PREFIX):
            out.append(keyfile.slot_info(keyfile.parse_slot(self.storage.get(b.key), b.key)))
        return sorted(out, key=lambda s: (s.created_at, s.id))

    def remove_key(self, slot_id: str) -> None:
        ids = [s.id for s in self.list_keys()]
        if slot_id not in ids:
            raise NotFound(f"no key slot {slot_id!r} (see `seawall repo key list`)")
        if len(ids) == 1:
            raise Conflict("refusing to remove the last key slot: the repository would be lost")
        self.storage.delete(KEYS_PREFIX + slot_id)

    def change_passphrase(self, passphrase: str, *, kdf: str = "default") -> str:
        """Add a slot for the new passphrase, then remove the slot this session opened."""
        new = self.add_key(passphrase, kdf=kdf)
        self.storage.delete(KEYS_PREFIX + self.slot_id)
        self.slot_id = new
        return new

    # ----------------------------------------------------------------------------------
    # Locks
    # ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self, exclusive: bool = False) -> Iterator[None]:
        """Hold a shared (writers, readers) or exclusive (prune) repository lock; nested
        holds in this process share one lock record."""
        with self._lock.held(exclusive):
            yield

    def refresh_lock(self) -> None:
        """Rewrite this process's lock record if it is due (long operations call it)."""
        self._lock.refresh()

    @property
    def lock_wait(self) -> float:
        """Seconds to retry a busy repository before giving up (default: do not wait)."""
        return self._lock.wait

    @lock_wait.setter
    def lock_wait(self, seconds: float) -> None:
        self._lock.wait = float(seconds)

    def read_locks(self) -> list[tuple[str, dict[str, Any]]]:
        return self._lock.read()

    lock_is_stale = staticmethod(lock_is_stale)

    # ----------------------------------------------------------------------------------
    # Index and blobs
    # ----------------------------------------------------------------------------------
    @property
    def index_errors(self) -> dict[str, str]:
        """Index files that could not be read (name -> why); prune rebuilds from packs."""
        return self.index.errors

    def read_pack_trailer(self, pack_id: bytes, size: int | None = None) -> list[BlobEntry]:
        """The blob list a pack carries itself, so the index can be rebuilt from packs."""
        return read_trailer(self.storage, self.keys, pack_id, size)

    def rebuild_index(self) -> dict[bytes, list[BlobEntry]]:
        """Index recomputed from every pack trailer (what ``repair``/``prune`` rely on)."""
        return self.index.rebuild()

    def indexed_packs(self) -> dict[bytes, list[BlobEntry]]:
        """The loaded index grouped by pack (each blob once, at its indexed location)."""
        return self.index.by_pack()

    def read_blob(self, blob_id: bytes, *, what: str) -> bytes:
        """One blob, authenticated and checked against its id."""
        return self.blobs.read_blobs([blob_id], what=what)[0]

    def chunk_list(self, m: Manifest) -> list[bytes]:
        """The chunk ids of a volume image or stream (``HOLE`` for zero chunks)."""
        return self.blobs.chunk_list(m)

    # ----------------------------------------------------------------------------------
    # Volumes
    # ----------------------------------------------------------------------------------
    def write_volume(
        self,
        name: str,
        source: VolumeSource,
        *,
        base: str | None = None,
        extents: Sequence[tuple[int, int]] | None = None,
        progress: Callable[[int, int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> VolumeImage:
        """Store a full logical image of ``source``; with ``base`` + ``extents`` read only
        the chunks the extents touch and take every other chunk id from ``base``. With
        ``extents`` and no base, the extents are the allocated ranges of a sparse source
        and every other chunk is a hole."""
        if not name:
            raise InvalidInput("a volume image needs a name", field="name")
        size = int(source.size)
        cs = self.chunk_size
        with self._lock.held(False):
            self.index.refresh()
            base_id = base_ids = None
            base_size = 0
            if base is not None:
                bm = self._data_manifest(base, "volume")
                base_id = bm.id
                if int(bm.body["chunk_size"]) != cs:
                    raise InvalidInput("base image has another chunk size", field="base")
                if extents is not None:
                    base_ids, base_size = self.blobs.chunk_list(bm), int(bm.body["size"])
            ids, to_read = plan_reads(size, cs, extents, base_ids, base_size)
            done = volume.write_chunks(
                self.blobs,
                name,
                source,
                ids,
                to_read,
                refresh_lock=self._lock.refresh,
                progress=progress,
                cancelled=cancelled,
            )
            body = {
                "name": name,
                "size": size,
                "chunk_size": cs,
                "chunk_list": done.list_ids,
                "bytes_read": done.bytes_read,
                "bytes_new": done.bytes_new,
                "chunks": sum(1 for i in done.ids if i != HOLE),
                "chunks_new": done.chunks_new,
                "base": base_id,
            }
            mid = self.manifests.save("volume", {"name": name}, body, None, ())
        return volume_image(self.manifests.load(mid))

    def read_volume(self, image_id: str) -> Iterator[tuple[int, bytes]]:
        """Yield ``(offset, data)`` of every non-hole chunk in order, each authenticated
        before it is yielded; damage raises :class:`CorruptObject` naming the image."""
        m = self._data_manifest(image_id, "volume")
        return self._read_volume(m)

    def _read_volume(self, m: Manifest) -> Iterator[tuple[int, bytes]]:
        with self._lock.held(False):
            cs, size, what = self._image_shape(m)
            yield from volume.read_chunks(self.blobs, self.blobs.chunk_list(m), size, cs, what)

    @staticmethod
    def _image_shape(m: Manifest) -> tuple[int, int, str]:
        what = f"volume image {m.id} ({m.body.get('name', '')})"
        return int(m.body["chunk_size"]), int(m.body["size"]), what

    def restore_volume(
        self,
        image_id: str,
        fd: int,
        *,
        progress: Callable[[int, int], None] | None = None,
        flush_every: int = FLUSH_EVERY,
        direct_fd: int | None = None,
    ) -> int:
        """Write every non-hole chunk of an image into ``fd`` at its offset; return the
        bytes written. The caller sizes the file (holes stay holes) and ``fsync``s it.

        Worker threads fetch, authenticate and write whole batches (``os.pwritev`` of
        runs of neighbouring chunks); a chunk is written only after it authenticated and
        matched its id. Every ``flush_every`` bytes a background ``fdatasync`` starts
        writing back what is done, so the caller's final ``fsync`` finds little left.

        ``direct_fd`` (the same file opened with ``O_DIRECT``) takes the runs of whole,
        block-aligned chunks through a page-aligned staging buffer, bypassing the page
        cache; if the file system refuses direct I/O, everything goes through ``fd``."""
        m = self._data_manifest(image_id, "volume")
        with self._lock.held(False):
            cs, size, what = self._image_shape(m)
            return volume.restore_chunks(
                self.blobs,
                self.blobs.chunk_list(m),
                size,
                cs,
                fd,
                what,
                refresh_lock=self._lock.refresh,
                progress=progress,
                flush_every=flush_every,
                direct_fd=direct_fd,
            )

    def volume_info(self, image_id: str) -> VolumeImage:
        return volume_image(self._data_manifest(image_id, "volume"))

    def list_volumes(self, name: str | None = None) -> list[VolumeImage]:
        labels = {"name": name} if name is not None else None
        return [volume_image(m) for m in self.list_manifests("volume", labels)]

    # ----------------------------------------------------------------------------------
    # Streams
    # ----------------------------------------------------------------------------------
    def put_stream(self, name: str, chunks: Iterable[bytes]) -> str:
        """Store a byte stream (an image, an export) with content-defined chunking, so an
        insert only changes the chunks around it."""
        with self._lock.held(False):
            self.index.refresh()
            done = volume.write_stream(
                self.blobs,
                self.config.get("stream_chunker", {}),
                chunks,
                refresh_lock=self._lock.refresh,
            )
            body = {
                "name": name,
                "size": done.bytes_read,
                "chunk_list": done.list_ids,
                "chunks": len(done.ids),
                "chunks_new": done.chunks_new,
                "bytes_new": done.bytes_new,
                "bytes_read": done.bytes_read,
            }
            return self.manifests.save("stream", {"name": name}, body, None, ())

    def get_stream(self, stream_id: str) -> Iterator[bytes]:
        m = self._data_manifest(stream_id, "stream")

        def gen() -> Iterator[bytes]:
            with self._lock.held(False):
                what = f"stream {m.id} ({m.body.get('name', '')})"
                work = list(enumerate(self.blobs.chunk_list(m)))
                for _, data in self.blobs.fetch_ordered(work, what):
                    yield data

        return gen()

    # ----------------------------------------------------------------------------------
    # Manifests
    # ----------------------------------------------------------------------------------
    def save_manifest(
        self,
        kind: str,
        labels: Mapping[str, str],
        body: Mapping[str, Any],
        *,
        id: str | None = None,
        refs: Sequence[str] = (),
    ) -> str:
        """Seal a JSON document. With an explicit ``id`` saving equal content again is a
        no-op (resumed runs call it again); different content under that id conflicts."""
        if not KIND_RE.match(kind or ""):
            raise InvalidInput(f"bad manifest kind {kind!r}", field="kind")
        if kind in DATA_KINDS:
            raise InvalidInput(f"kind {kind!r} is written by the repository itself", field="kind")
        with self._lock.held(False):
            return self.manifests.save(kind, labels, body, id, refs)

    def load_manifest(self, id: str) -> Manifest:
        return self.manifests.load(id)

    def manifest_ids(self) -> list[str]:
        return self.manifests.ids()

    def list_manifests(
        self, kind: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[Manifest]:
        """Manifests oldest first; damaged ones are skipped with a warning (see ``check``)."""
        return self.manifests.find(kind, labels)

    def _data_manifest(self, id: str, kind: str) -> Manifest:
        m = self.manifests.load(id)
        if m.kind != kind:
            raise InvalidInput(f"manifest {id} is a {m.kind}, not a {kind}")
        return m

    def delete_manifest(self, id: str) -> None:
        """Delete a manifest; volume images and streams only it kept alive go with it."""
        self.delete_manifests([id])

    def delete_manifests(self, ids: Sequence[str]) -> list[str]:
        """Delete manifests and the volume images and streams only they kept alive;
        return every id deleted."""
        with self._lock.held(False):
            return self.manifests.delete(ids)

    # ----------------------------------------------------------------------------------
    # Maintenance (implemented in seawall.repo.maintenance)
    # ----------------------------------------------------------------------------------
    def check(
        self, *, read_data: bool = False, progress: Callable[[int, int], None] | None = None
    ) -> CheckReport:
        with self._lock.held(False):
            return maintenance.check(
                self.blobs, self.manifests, read_data=read_data, progress=progress
            )

    def stats(self) -> dict[str, Any]:
        return maintenance.stats(self.blobs, self.manifests, self.id)

    def forget(
        self,
        kind: str,
        group_by: Sequence[str],
        keep_last: int = 0,
        keep_hourly: int = 0,
        keep_daily: int = 0,
        keep_weekly: int = 0,
        keep_monthly: int = 0,
        dry_run: bool = False,
    ) -> list[str]:
        """Forget the manifests of ``kind`` that restic's ``--keep-*`` rules do not keep,
        per group of ``group_by`` labels (:mod:`seawall.retention`)."""
        rules = KeepRules(keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly)
        with self._lock.held(False):
            return maintenance.forget(self.manifests, kind, group_by, rules, dry_run=dry_run)

    def prune(self) -> dict[str, Any]:
        with self._lock.held(True):
            return maintenance.prune(self.blobs, self.manifests)
