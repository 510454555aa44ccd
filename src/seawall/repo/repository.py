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
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

from seawall.errors import (
    Cancelled,
    Conflict,
    CorruptObject,
    InvalidInput,
    KeyMissing,
    NotFound,
    PermanentError,
    RepositoryError,
    TransientError,
    WrongPassphrase,
)
from seawall.repo import keyfile
from seawall.repo.format import (
    HOLE,
    ID_SIZE,
    TRAILER_LEN,
    BlobEntry,
    Keys,
    ObjectType,
    canonical_json,
    decode_entries,
    decode_index,
    encode_entries,
    encode_index,
    hash_id,
    parse_header,
)
from seawall.storage import StorageBackend

log = logging.getLogger(__name__)

CONFIG_KEY = "config"
KEYS_PREFIX = "keys/"
DATA_PREFIX = "data/"
INDEX_PREFIX = "index/"
MANIFEST_PREFIX = "manifests/"
LOCK_PREFIX = "locks/"

#: Chosen by measurement (docs/design/repository-format.md, "Chunk size"): 64 KiB keeps
#: scattered 4-64 KiB changes to ~1.5x stored bytes where 1 MiB chunks cost ~10x.
DEFAULT_CHUNK_SIZE = 64 * 1024
DEFAULT_PACK_SIZE = 16 * 1024 * 1024
#: Chunk ids per chunk-list blob: 4096 x 64 KiB = 256 MiB of volume per list piece, so an
#: incremental image rewrites only the list pieces whose chunks changed.
LIST_PIECE = 4096
#: A writer publishes an index file after this many packs, so a killed writer loses at
#: most this much already-uploaded data to "unreferenced".
INDEX_EVERY_PACKS = 4
BATCH_BYTES = 8 * 1024 * 1024
#: Finished packs being hashed and uploaded at once while the next one fills.
UPLOADS_IN_FLIGHT = 2
#: A restore starts writing back (``fdatasync`` in the background) after this many bytes.
FLUSH_EVERY = 256 * 1024 * 1024
#: Offset and length granularity of the ``O_DIRECT`` restore writes.
DIRECT_ALIGN = 4096
STREAM_AVG, STREAM_MIN, STREAM_MAX = 1 << 20, 256 << 10, 4 << 20
LOCK_STALE_SECONDS = 30 * 60
LOCK_REFRESH_SECONDS = 5 * 60
DATA_KINDS = frozenset({"volume", "stream"})
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_KIND_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")

T = TypeVar("T")
R = TypeVar("R")


@runtime_checkable
class VolumeSource(Protocol):
    """What :meth:`Repository.write_volume` reads: a sized, randomly readable volume."""

    size: int

    def read(self, offset: int, length: int) -> bytes: ...


class FileSource:
    """A file or block device as a :class:`VolumeSource` (positional reads, thread-safe)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._fd = os.open(self.path, os.O_RDONLY)
        self.size = os.lseek(self._fd, 0, os.SEEK_END)

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self._fd, length, offset)

    def readinto(self, offset: int, view: memoryview) -> int:
        """Fill ``view`` from ``offset`` (short only at the end of the file)."""
        done = 0
        while done < len(view):
            n = os.preadv(self._fd, [view[done:]], offset + done)
            if n <= 0:
                break
            done += n
        return done

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class VolumeImage:
    """One volume's full logical image. ``chunks`` counts non-hole chunks; ``bytes_new``
    is the sealed size of the chunks this image added to the repository."""

    id: str
    name: str
    size: int
    created_at: datetime
    bytes_read: int
    bytes_new: int
    chunks: int
    chunks_new: int
    base: str | None


@dataclass(frozen=True)
class Manifest:
    """A sealed, labelled JSON document; ``refs`` are the manifests it keeps alive."""

    id: str
    kind: str
    labels: Mapping[str, str]
    body: Mapping[str, Any]
    refs: tuple[str, ...]
    created_at: datetime


@dataclass
class CheckReport:
    """``damaged`` names every volume image, stream and manifest a problem affects."""

    ok: bool
    errors: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SyncStats:
    bytes_sent: int
    objects_sent: int
    manifests_sent: int
    skipped: int


@dataclass(frozen=True, slots=True)
class Located:
    """Where a blob lives: its pack and its entry in that pack."""

    pack: bytes
    entry: BlobEntry


def pack_key(pack_id: bytes) -> str:
    h = pack_id.hex()
    return f"{DATA_PREFIX}{h[:2]}/{h}"


def _now() -> datetime:
    return datetime.now(UTC)


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


class _StreamReader:
    """Adapts an iterable of byte pieces to the ``read(n)`` reader pyfastcdc consumes."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._it = iter(pieces)
        self._buf = bytearray()
        self.total = 0

    def read(self, n: int) -> bytes:
        while len(self._buf) < n:
            try:
                piece = next(self._it)
            except StopIteration:
                break
            self._buf += piece
            self.total += len(piece)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out


class _PackWriter:
    """Collects sealed blobs of one write operation into packs, then publishes an index.

    Blobs become visible to other writers only after the index file naming them is
    durable, so nobody can deduplicate against a pack that might never be indexed.
    Hashing and uploading a finished pack run on the I/O pool, up to
    :data:`UPLOADS_IN_FLIGHT` at once, while the next pack fills.
    """

    def __init__(self, repo: Repository, *, auto_index: bool = True) -> None:
        self.repo = repo
        self.auto_index = auto_index
        self.buf = bytearray()
        self.entries: list[BlobEntry] = []
        self.pending: set[bytes] = set()
        self.unindexed: dict[bytes, list[BlobEntry]] = {}
        self.packs_since_index = 0
        self._uploads: list[Future[tuple[bytes, list[BlobEntry]]]] = []

    def add(
        self, blob_id: bytes, type_: int, sealed: bytes | bytearray | memoryview, raw_length: int
    ) -> None:
        self.entries.append(BlobEntry(blob_id, type_, len(self.buf), len(sealed), raw_length))
        self.buf += sealed
        self.pending.add(blob_id)
        if len(self.buf) >= self.repo.pack_size:
            self.flush_pack()

    def flush_pack(self) -> None:
        if not self.entries:
            return
        keys = self.repo.keys
        trailer = keys.seal(ObjectType.PACK_TRAILER, encode_entries(self.entries), b"pack trailer")
        buf, entries = self.buf, self.entries
        buf += trailer
        buf += TRAILER_LEN.pack(len(trailer))
        self.buf = bytearray()
        self.entries = []
        while len(self._uploads) >= UPLOADS_IN_FLIGHT:
            self._collect(self._uploads.pop(0))
        self._uploads.append(self.repo._io_pool().submit(self._upload, buf, entries))
        self.packs_since_index += 1
        if self.auto_index and self.packs_since_index >= INDEX_EVERY_PACKS:
            self.flush_index()

    def _upload(self, data: bytearray, entries: list[BlobEntry]) -> tuple[bytes, list[BlobEntry]]:
        pack_id = hash_id(data)
        self.repo.storage.put(pack_key(pack_id), data)
        return pack_id, entries

    def _collect(self, up: Future[tuple[bytes, list[BlobEntry]]]) -> None:
        pack_id, entries = up.result()
        self.unindexed[pack_id] = entries

    def _wait_upload(self) -> None:
        """Wait until every pack handed to the I/O pool is durable (or raise its error)."""
        while self._uploads:
            self._collect(self._uploads.pop(0))

    def flush_index(self) -> None:
        self.flush_pack()
        self._wait_upload()
        self.packs_since_index = 0
        if self.unindexed:
            self.repo._publish_index(self.unindexed)
            self.unindexed = {}

    def abort(self) -> None:
        while self._uploads:
            with contextlib.suppress(Exception):
                self._uploads.pop(0).result()


class _Claims:
    """Thread-safe "who stores this chunk": the first batch to see a new id claims it,
    every later one (and every id already in a published index) just refers to it."""

    def __init__(self, pending: set[bytes], index: Mapping[bytes, Located]) -> None:
        self._pending = pending
        self._index = index
        self._lock = threading.Lock()

    def __call__(self, blob_id: bytes) -> bool:
        with self._lock:
            if blob_id in self._pending or blob_id in self._index:
                return False
            self._pending.add(blob_id)
            return True


class _Buffers:
    """Reused read buffers: touching fresh memory costs ~1 GB/s per core on this kind of
    machine, copying into memory already touched ~10 GB/s."""

    def __init__(self, size: int, chunk_size: int) -> None:
        self.size = size
        self.zero = bytes(chunk_size)
        self._free: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self) -> bytearray:
        with self._lock:
            if self._free:
                return self._free.pop()
        return bytearray(self.size)

    def give(self, buf: bytearray) -> None:
        with self._lock:
            self._free.append(buf)


class Repository:
    """An open repository. Thread-safe: several threads may write volumes at once."""

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
        self.workers = max(1, min(4, os.cpu_count() or 1))
        self.lock_wait = 0.0
        self._mutex = threading.RLock()
        self._index: dict[bytes, Located] = {}
        self._index_files: set[str] = set()
        self.index_errors: dict[str, str] = {}
        self._manifests: dict[str, Manifest] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._iopool: ThreadPoolExecutor | None = None
        self._lock_key: str | None = None
        self._lock_depth = 0
        self._lock_exclusive = False
        self._lock_time = 0.0
        self._closed = False
        self._refresh_index()

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
            "created_at": _now().isoformat(),
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
        with self._mutex:
            if self._lock_key is not None:
                self.storage.delete(self._lock_key)
                self._lock_key = None
                self._lock_depth = 0
            for pool in (self._pool, self._iopool):
                if pool is not None:
                    pool.shutdown(wait=True)
            self._pool = self._iopool = None
            self._closed = True

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
    # Thread pools
    # ----------------------------------------------------------------------------------
    def _cpu_pool(self) -> ThreadPoolExecutor:
        with self._mutex:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="seawall-cpu")
            return self._pool

    def _io_pool(self) -> ThreadPoolExecutor:
        with self._mutex:
            if self._iopool is None:
                self._iopool = ThreadPoolExecutor(
                    max(2, self.workers), thread_name_prefix="seawall-io"
                )
            return self._iopool

    def _parallel(self, fn: Callable[[list[T]], list[R]], items: list[T]) -> list[R]:
        """Run ``fn`` over ``items`` split into one contiguous group per worker.

        Grouping keeps per-task overhead far below the cost of hashing a 64 KiB chunk;
        the C libraries release the GIL, so the threads really run in parallel.
        """
        if len(items) < 2 or self.workers == 1:
            return fn(items)
        step = -(-len(items) // self.workers)
        groups = [items[i : i + step] for i in range(0, len(items), step)]
        futures = [self._cpu_pool().submit(fn, g) for g in groups]
        out: list[R] = []
        for f in futures:
            out.extend(f.result())
        return out

    # ----------------------------------------------------------------------------------
    # Locks
    # ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        """Hold a shared (writers, readers) or exclusive (prune) repository lock."""
        with self._mutex:
            if self._lock_depth:
                if exclusive and not self._lock_exclusive:
                    raise Conflict("cannot take the exclusive lock while this process writes")
                self._lock_depth += 1
            else:
                self._acquire_lock(exclusive)
                self._lock_depth = 1
        try:
            yield
        finally:
            with self._mutex:
                self._lock_depth -= 1
                if self._lock_depth == 0 and self._lock_key is not None:
                    self.storage.delete(self._lock_key)
                    self._lock_key = None

    def _lock_record(self, exclusive: bool) -> bytes:
        doc = {
            "exclusive": exclusive,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "time": time.time(),
        }
        return self.keys.seal_json(ObjectType.LOCK, doc, b"lock")

    def read_locks(self) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for b in self.storage.list(LOCK_PREFIX):
            try:
                doc = self.keys.unseal_json(
                    self.storage.get(b.key), b"lock", expect_type=ObjectType.LOCK, what=b.key
                )
            except (NotFound, CorruptObject):
                continue
            out.append((b.key, doc))
        return out

    @staticmethod
    def lock_is_stale(doc: Mapping[str, Any]) -> bool:
        """Stale: not refreshed for 30 minutes, or its process on this host is gone."""
        if time.time() - float(doc.get("time", 0)) > LOCK_STALE_SECONDS:
            return True
        if doc.get("host") == socket.gethostname():
            pid = int(doc.get("pid", 0))
            if pid == os.getpid():
                return False
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return False

    def _acquire_lock(self, exclusive: bool) -> None:
        deadline = time.monotonic() + self.lock_wait
        while True:
            key = LOCK_PREFIX + secrets.token_hex(16)
            try:
                self.storage.put(key, self._lock_record(exclusive))
            except PermanentError:
                if exclusive:
                    raise
                # Read-only storage (a recovery site mounted read-only): nobody can prune
                # it through us either, so reading without a lock record is safe.
                log.info("%s: read-only, proceeding without a lock", self.storage.url)
                self._lock_key = None
                return
            blockers = []
            for other, doc in self.read_locks():
                if other == key:
                    continue
                if self.lock_is_stale(doc):
                    if exclusive:
                        log.warning(
                            "removing stale lock %s (%s pid %s)",
                            other,
                            doc.get("host"),
                            doc.get("pid"),
                        )
                        self.storage.delete(other)
                    continue
                if exclusive or doc.get("exclusive"):
                    blockers.append(doc)
            if not blockers:
                self._lock_key = key
                self._lock_exclusive = exclusive
                self._lock_time = time.monotonic()
                return
            self.storage.delete(key)
            if time.monotonic() >= deadline:
                b = blockers[0]
                since = datetime.fromtimestamp(float(b.get("time", 0)), UTC).isoformat()
                kind = "exclusively" if b.get("exclusive") else "by a writer"
                raise TransientError(
                    f"{self.storage.url}: repository is locked {kind} "
                    f"(host {b.get('host')}, pid {b.get('pid')}, since {since}); retry later"
                )
            time.sleep(0.2)

    def _refresh_lock(self) -> None:
        """Rewrite the lock record of a long operation so others do not think it stale."""
        with self._mutex:
            if self._lock_key and time.monotonic() - self._lock_time > LOCK_REFRESH_SECONDS:
                self.storage.put(self._lock_key, self._lock_record(self._lock_exclusive))
                self._lock_time = time.monotonic()

    # ----------------------------------------------------------------------------------
    # Index
    # ----------------------------------------------------------------------------------
    def _refresh_index(self) -> None:
        """Load index files written since the last look (by this or another process)."""
        names = [b.key for b in self.storage.list(INDEX_PREFIX)]
        damaged = False
        for name in names:
            if name in self._index_files or name in self.index_errors:
                continue
            try:
                packs = self._load_index_file(name)
            except NotFound:
                continue
            except CorruptObject as exc:
                log.warning("%s", exc)
                self.index_errors[name] = str(exc)
                damaged = True
                continue
            with self._mutex:
                self._merge(packs)
                self._index_files.add(name)
        if damaged:
            # Packs describe themselves: recover what the damaged index files listed from
            # the trailers of packs no readable index names (prune rewrites the index).
            with self._mutex:
                covered = {loc.pack for loc in self._index.values()}
            for b in self.storage.list(DATA_PREFIX):
                pack_id = bytes.fromhex(b.key.rsplit("/", 1)[-1])
                if pack_id in covered:
                    continue
                try:
                    entries = self.read_pack_trailer(pack_id, b.size)
                except (CorruptObject, NotFound) as exc:
                    log.warning("%s", exc)
                    continue
                with self._mutex:
                    self._merge({pack_id: entries})

    def _load_index_file(self, name: str) -> dict[bytes, list[BlobEntry]]:
        data = self.storage.get(name)
        if hash_id(data).hex() != name.rsplit("/", 1)[-1]:
            raise CorruptObject(f"{name}: content does not match its name (damaged)")
        raw = self.keys.unseal(data, b"index", expect_type=ObjectType.INDEX, what=name)
        return decode_index(raw, name)

    def _merge(self, packs: Mapping[bytes, Iterable[BlobEntry]]) -> None:
        for pack_id, entries in packs.items():
            for e in entries:
                self._index.setdefault(e.id, Located(pack_id, e))

    def _publish_index(self, packs: Mapping[bytes, list[BlobEntry]]) -> str:
        data = self.keys.seal(ObjectType.INDEX, encode_index(packs), b"index")
        name = INDEX_PREFIX + hash_id(data).hex()
        self.storage.put(name, data)
        with self._mutex:
            self._merge(packs)
            self._index_files.add(name)
        return name

    def _lookup(self, blob_id: bytes) -> Located | None:
        loc = self._index.get(blob_id)
        if loc is None:
            self._refresh_index()
            loc = self._index.get(blob_id)
        return loc

    def read_pack_trailer(self, pack_id: bytes, size: int | None = None) -> list[BlobEntry]:
        """The blob list a pack carries itself, so the index can be rebuilt from packs."""
        key = pack_key(pack_id)
        what = f"pack {pack_id.hex()}"
        if size is None:
            size = self.storage.stat(key).size
        if size < TRAILER_LEN.size:
            raise CorruptObject(f"{what}: truncated ({size} bytes)")
        (tlen,) = TRAILER_LEN.unpack(self.storage.get(key, size - TRAILER_LEN.size, 4))
        if tlen + TRAILER_LEN.size > size:
            raise CorruptObject(f"{what}: truncated or damaged trailer")
        blob = self.storage.get(key, size - TRAILER_LEN.size - tlen, tlen)
        raw = self.keys.unseal(
            blob, b"pack trailer", expect_type=ObjectType.PACK_TRAILER, what=what
        )
        entries, _ = decode_entries(raw, 0, what)
        return entries

    def rebuild_index(self) -> dict[bytes, list[BlobEntry]]:
        """Index recomputed from every pack trailer (what ``repair``/``prune`` rely on)."""
        out: dict[bytes, list[BlobEntry]] = {}
        for b in self.storage.list(DATA_PREFIX):
            pack_id = bytes.fromhex(b.key.rsplit("/", 1)[-1])
            out[pack_id] = self.read_pack_trailer(pack_id, b.size)
        return out

    def indexed_packs(self) -> dict[bytes, list[BlobEntry]]:
        """The loaded index grouped by pack (each blob once, at its indexed location)."""
        out: dict[bytes, list[BlobEntry]] = {}
        with self._mutex:
            for loc in self._index.values():
                out.setdefault(loc.pack, []).append(loc.entry)
        for entries in out.values():
            entries.sort(key=lambda e: e.offset)
        return out

    # ----------------------------------------------------------------------------------
    # Blobs
    # ----------------------------------------------------------------------------------
    def _hash_group(self, pieces: list[bytes]) -> list[bytes]:
        zero = bytes(self.chunk_size)
        out = []
        for p in pieces:
            if p == (zero if len(p) == len(zero) else bytes(len(p))):
                out.append(HOLE)
            else:
                out.append(self.keys.chunk_id(p))
        return out

    def _seal_group(self, items: list[tuple[bytes, int, bytes]]) -> list[bytes]:
        return [self.keys.seal(t, data, bid) for bid, t, data in items]

    def _store_new(
        self, writer: _PackWriter, items: list[tuple[bytes, int, bytes]]
    ) -> tuple[int, int]:
        """Seal and pack blobs nobody has yet; returns (count, sealed bytes) added."""
        new = []
        for bid, t, data in items:
            if bid in writer.pending or bid in self._index:
                continue
            writer.pending.add(bid)
            new.append((bid, t, data))
        sealed = self._parallel(self._seal_group, new)
        nbytes = 0
        for (bid, t, data), s in zip(new, sealed, strict=True):
            writer.add(bid, t, s, len(data))
            nbytes += len(s)
        return len(new), nbytes

    def read_blob(self, blob_id: bytes, *, what: str) -> bytes:
        """One blob, authenticated and checked against its id."""
        return self._read_blobs([blob_id], what=what)[0]

    def _read_blobs(self, ids: Sequence[bytes], *, what: str) -> list[bytes]:
        """Fetch blobs with one ranged read per run of neighbours in the same pack."""
        locs: list[Located] = []
        for bid in ids:
            loc = self._lookup(bid)
            if loc is None:
                raise CorruptObject(
                    f"{what}: blob {bid.hex()} is not in the index (pack or index lost); "
                    "run `seawall repo check`"
                )
            locs.append(loc)
        out: list[bytes | None] = [None] * len(ids)
        order = sorted(range(len(ids)), key=lambda i: (locs[i].pack, locs[i].entry.offset))
        i = 0
        while i < len(order):
            j = i + 1
            first = locs[order[i]]
            end = first.entry.offset + first.entry.length
            while j < len(order):
                nxt = locs[order[j]]
                if nxt.pack != first.pack or nxt.entry.offset > end + 65536:
                    break
                end = max(end, nxt.entry.offset + nxt.entry.length)
                j += 1
            start = first.entry.offset
            try:
                data = self.storage.get(pack_key(first.pack), start, end - start)
            except NotFound:
                raise CorruptObject(
                    f"{what}: pack {first.pack.hex()} is missing; run `seawall repo check`"
                ) from None
            view = memoryview(data)
            for k in order[i:j]:
                e = locs[k].entry
                blob = view[e.offset - start : e.offset - start + e.length]
                if len(blob) != e.length:
                    raise CorruptObject(f"{what}: pack {first.pack.hex()} is truncated")
                plain = self.keys.unseal(
                    blob,
                    e.id,
                    expect_type=e.type,
                    what=f"{what}: blob {e.id.hex()} in pack {first.pack.hex()}",
                )
                if len(plain) != e.raw_length or self.keys.chunk_id(plain) != e.id:
                    raise CorruptObject(f"{what}: blob {e.id.hex()} does not match its id")
                out[k] = plain
            i = j
        return [b for b in out if b is not None]

    # ----------------------------------------------------------------------------------
    # Chunk lists
    # ----------------------------------------------------------------------------------
    def _store_chunk_list(self, writer: _PackWriter, ids: Sequence[bytes]) -> list[str]:
        items = []
        for start in range(0, max(len(ids), 1), LIST_PIECE):
            blob = b"".join(ids[start : start + LIST_PIECE])
            items.append((self.keys.chunk_id(blob), ObjectType.BLOB_LIST, blob))
        self._store_new(writer, items)
        return [bid.hex() for bid, _, _ in items]

    def chunk_list(self, m: Manifest) -> list[bytes]:
        """The chunk ids of a volume image or stream (``HOLE`` for zero chunks)."""
        out: list[bytes] = []
        pieces = [bytes.fromhex(h) for h in m.body.get("chunk_list", [])]
        what = f"{m.kind} {m.id} ({m.body.get('name', '')})"
        for raw in self._read_blobs(pieces, what=what):
            if len(raw) % ID_SIZE:
                raise CorruptObject(f"{what}: malformed chunk list")
            out.extend(raw[i : i + ID_SIZE] for i in range(0, len(raw), ID_SIZE))
        return out

    # ----------------------------------------------------------------------------------
    # Volumes
    # ----------------------------------------------------------------------------------
    def _volume_batch(
        self,
        source: VolumeSource,
        run: list[int],
        size: int,
        claim: _Claims,
        buffers: _Buffers,
    ) -> list[tuple[int, bytes, bytearray | None]]:
        """Read one run of chunks and return ``(index, id, sealed or None)`` per chunk:
        ``None`` for holes and for chunks the repository (or another batch) already has.
        Runs on a worker thread; the read goes into a reused buffer, chunks are views."""
        cs = self.chunk_size
        off = run[0] * cs
        length = min(len(run) * cs, size - off)
        buf = buffers.take()
        try:
            view = memoryview(buf)[:length]
            readinto = getattr(source, "readinto", None)
            if readinto is not None:
                got = readinto(off, view)
            else:
                data = source.read(off, length)
                got = len(data)
                view[:got] = data
            if got != length:
                raise PermanentError(f"volume source: short read at {off} ({got} of {length})")
            keys = self.keys
            zero = buffers.zero
            out: list[tuple[int, bytes, bytearray | None]] = []
            for k, idx in enumerate(run):
                piece = view[k * cs : (k + 1) * cs]
                if zero.startswith(piece):
                    out.append((idx, HOLE, None))
                    continue
                cid = keys.chunk_id(piece)
                if claim(cid):
                    out.append((idx, cid, keys.seal_buffer(ObjectType.BLOB_DATA, piece, cid)))
                else:
                    out.append((idx, cid, None))
            return out
        finally:
            buffers.give(buf)

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
        n = -(-size // cs)
        with self._locked(False):
            self._refresh_index()
            ids: list[bytes] = [HOLE] * n
            to_read: list[int]
            base_id = None
            if base is not None:
                bm = self._data_manifest(base, "volume")
                base_id = bm.id
                if int(bm.body["chunk_size"]) != cs:
                    raise InvalidInput("base image has another chunk size", field="base")
            if extents is not None:
                # With a base, chunks outside the extents are the base's; without one,
                # the extents are the source's allocated ranges and the rest are holes.
                wanted: set[int] = set()
                if base is not None:
                    base_ids = self.chunk_list(bm)
                    base_size = int(bm.body["size"])
                    base_n = len(base_ids)
                    ids[: min(n, base_n)] = base_ids[:n]
                    wanted = set(range(base_n, n))
                    if base_size != size and base_n:
                        wanted.add(min(base_n, n) - 1)
                for off, length in extents:
                    off, length = int(off), int(length)
                    if off < 0 or length < 0:
                        raise InvalidInput(f"bad extent {[off, length]}", field="extents")
                    if length == 0 or off >= size:
                        continue
                    last = min(off + length, size) - 1
                    wanted.update(range(off // cs, last // cs + 1))
                to_read = sorted(wanted)
            else:
                to_read = list(range(n))
            total = sum(min(cs, size - i * cs) for i in to_read)
            writer = _PackWriter(self)
            done = bytes_new = chunks_new = 0
            claim = _Claims(writer.pending, self._index)
            buffers = _Buffers(max(1, BATCH_BYTES // cs) * cs, cs)
            pool = self._cpu_pool()
            inflight: collections.deque[Future[list[tuple[int, bytes, bytearray | None]]]]
            inflight = collections.deque()

            def consume(results: list[tuple[int, bytes, bytearray | None]]) -> None:
                nonlocal done, bytes_new, chunks_new
                for idx, cid, sealed in results:
                    ids[idx] = cid
                    if sealed is not None:
                        writer.add(cid, ObjectType.BLOB_DATA, sealed, min(cs, size - idx * cs))
                        chunks_new += 1
                        bytes_new += len(sealed)
                    done += min(cs, size - idx * cs)
                if progress is not None:
                    progress(done, total)
                self._refresh_lock()

            try:
                # Read, hash, deduplicate and seal whole batches on the worker threads (the
                # C code releases the GIL); this thread only packs the results in order.
                for run in _batches(to_read, max(1, BATCH_BYTES // cs)):
                    if cancelled is not None and cancelled():
                        raise Cancelled(f"writing volume image {name!r} was cancelled")
                    inflight.append(
                        pool.submit(self._volume_batch, source, run, size, claim, buffers)
                    )
                    if len(inflight) > self.workers:
                        consume(inflight.popleft().result())
                while inflight:
                    consume(inflight.popleft().result())
                list_ids = self._store_chunk_list(writer, ids)
                writer.flush_index()
            except BaseException:
                for f in inflight:
                    f.cancel()
                for f in inflight:
                    with contextlib.suppress(BaseException):
                        f.result()
                writer.abort()
                raise
            body = {
                "name": name,
                "size": size,
                "chunk_size": cs,
                "chunk_list": list_ids,
                "bytes_read": total,
                "bytes_new": bytes_new,
                "chunks": sum(1 for i in ids if i != HOLE),
                "chunks_new": chunks_new,
                "base": base_id,
            }
            mid = self._save_manifest("volume", {"name": name}, body, None, ())
        return _volume_image(self.load_manifest(mid))

    def read_volume(self, image_id: str) -> Iterator[tuple[int, bytes]]:
        """Yield ``(offset, data)`` of every non-hole chunk in order, each authenticated
        before it is yielded; damage raises :class:`CorruptObject` naming the image."""
        m = self._data_manifest(image_id, "volume")
        return self._read_volume(m)

    def _read_volume(self, m: Manifest) -> Iterator[tuple[int, bytes]]:
        with self._locked(False):
            cs = int(m.body["chunk_size"])
            size = int(m.body["size"])
            what = f"volume image {m.id} ({m.body.get('name', '')})"
            ids = self.chunk_list(m)
            if len(ids) < -(-size // cs):
                raise CorruptObject(f"{what}: chunk list is shorter than the volume")
            work = [(i * cs, cid) for i, cid in enumerate(ids) if cid != HOLE and i * cs < size]
            for off, data in self._fetch_ordered(work, what):
                if len(data) != min(cs, size - off):
                    raise CorruptObject(f"{what}: chunk at offset {off} has the wrong length")
                yield off, data

    def _fetch_ordered(
        self, work: list[tuple[int, bytes]], what: str
    ) -> Iterator[tuple[int, bytes]]:
        """Fetch and authenticate batches in parallel, yield in order, bounded read-ahead."""
        per = max(1, BATCH_BYTES // 4 // self.chunk_size)
        batches = [work[i : i + per] for i in range(0, len(work), per)]

        def fetch(batch: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
            datas = self._read_blobs([cid for _, cid in batch], what=what)
            return [(off, d) for (off, _), d in zip(batch, datas, strict=True)]

        pool = self._io_pool()
        inflight: list[Future[list[tuple[int, bytes]]]] = []
        it = iter(batches)
        try:
            for b in it:
                inflight.append(pool.submit(fetch, b))
                if len(inflight) > self.workers:
                    yield from inflight.pop(0).result()
            while inflight:
                yield from inflight.pop(0).result()
        finally:
            for f in inflight:
                f.cancel()

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
        with self._locked(False):
            cs = int(m.body["chunk_size"])
            size = int(m.body["size"])
            what = f"volume image {m.id} ({m.body.get('name', '')})"
            ids = self.chunk_list(m)
            if len(ids) < -(-size // cs):
                raise CorruptObject(f"{what}: chunk list is shorter than the volume")
            work = [i for i, cid in enumerate(ids) if cid != HOLE and i * cs < size]
            total = sum(min(cs, size - i * cs) for i in work)
            per = max(1, BATCH_BYTES // cs)

            def batch(run: list[int]) -> int:
                datas = self._read_blobs([ids[i] for i in run], what=what)
                written = 0
                start = 0
                for k in range(1, len(run) + 1):
                    if k < len(run) and run[k] == run[k - 1] + 1:
                        continue
                    pieces = datas[start:k]
                    for i, d in zip(run[start:k], pieces, strict=True):
                        if len(d) != min(cs, size - i * cs):
                            raise CorruptObject(
                                f"{what}: chunk at offset {i * cs} has the wrong length"
                            )
                    off = run[start] * cs
                    nbytes = sum(len(d) for d in pieces)
                    if nbytes % DIRECT_ALIGN == 0 and direct.write(pieces, nbytes, off):
                        written += nbytes
                        start = k
                        continue
                    written += _pwritev_all(fd, pieces, off)
                    start = k
                return written

            direct = _DirectWriter(direct_fd, per * cs)

            pool = self._cpu_pool()
            inflight: collections.deque[Future[int]] = collections.deque()
            flushing: Future[None] | None = None
            done = since_flush = 0

            def collect() -> None:
                nonlocal done, since_flush, flushing
                n = inflight.popleft().result()
                done += n
                since_flush += n
                if progress is not None:
                    progress(done, total)
                if (
                    flush_every
                    and since_flush >= flush_every
                    and (flushing is None or flushing.done())
                ):
                    if flushing is not None:
                        flushing.result()
                    flushing = self._io_pool().submit(os.fdatasync, fd)
                    since_flush = 0

            try:
                for b in range(0, len(work), per):
                    inflight.append(pool.submit(batch, work[b : b + per]))
                    if len(inflight) > self.workers:
                        collect()
                    self._refresh_lock()
                while inflight:
                    collect()
                if flushing is not None:
                    flushing.result()
            except BaseException:
                for f in inflight:
                    f.cancel()
                for f in inflight:
                    with contextlib.suppress(BaseException):
                        f.result()
                if flushing is not None:
                    with contextlib.suppress(BaseException):
                        flushing.result()
                raise
            return done

    def volume_info(self, image_id: str) -> VolumeImage:
        return _volume_image(self._data_manifest(image_id, "volume"))

    def list_volumes(self, name: str | None = None) -> list[VolumeImage]:
        labels = {"name": name} if name is not None else None
        return [_volume_image(m) for m in self.list_manifests("volume", labels)]

    # ----------------------------------------------------------------------------------
    # Streams
    # ----------------------------------------------------------------------------------
    def put_stream(self, name: str, chunks: Iterable[bytes]) -> str:
        """Store a byte stream (an image, an export) with content-defined chunking, so an
        insert only changes the chunks around it."""
        from pyfastcdc import FastCDC

        sc = self.config.get("stream_chunker", {})
        cdc = FastCDC(
            int(sc.get("avg", STREAM_AVG)),
            min_size=int(sc.get("min", STREAM_MIN)),
            max_size=int(sc.get("max", STREAM_MAX)),
        )
        reader = _StreamReader(chunks)
        with self._locked(False):
            self._refresh_index()
            writer = _PackWriter(self)
            ids: list[bytes] = []
            chunks_new = bytes_new = 0
            batch: list[bytes] = []
            batch_bytes = 0

            def flush() -> tuple[int, int]:
                hashes = self._parallel(lambda ps: [self.keys.chunk_id(p) for p in ps], batch)
                ids.extend(hashes)
                items = [(h, ObjectType.BLOB_STREAM, p) for h, p in zip(hashes, batch, strict=True)]
                return self._store_new(writer, items)

            try:
                for ch in cdc.cut_stream(reader):
                    batch.append(bytes(ch.data))
                    batch_bytes += ch.length
                    if batch_bytes >= BATCH_BYTES:
                        c, b = flush()
                        chunks_new, bytes_new = chunks_new + c, bytes_new + b
                        batch, batch_bytes = [], 0
                        self._refresh_lock()
                if batch:
                    c, b = flush()
                    chunks_new, bytes_new = chunks_new + c, bytes_new + b
                list_ids = self._store_chunk_list(writer, ids)
                writer.flush_index()
            except BaseException:
                writer.abort()
                raise
            body = {
                "name": name,
                "size": reader.total,
                "chunk_list": list_ids,
                "chunks": len(ids),
                "chunks_new": chunks_new,
                "bytes_new": bytes_new,
                "bytes_read": reader.total,
            }
            return self._save_manifest("stream", {"name": name}, body, None, ())

    def get_stream(self, stream_id: str) -> Iterator[bytes]:
        m = self._data_manifest(stream_id, "stream")

        def gen() -> Iterator[bytes]:
            with self._locked(False):
                what = f"stream {m.id} ({m.body.get('name', '')})"
                ids = self.chunk_list(m)
                work = [(i, cid) for i, cid in enumerate(ids)]
                for _, data in self._fetch_ordered(work, what):
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
        if not _KIND_RE.match(kind or ""):
            raise InvalidInput(f"bad manifest kind {kind!r}", field="kind")
        if kind in DATA_KINDS:
            raise InvalidInput(f"kind {kind!r} is written by the repository itself", field="kind")
        with self._locked(False):
            return self._save_manifest(kind, labels, body, id, refs)

    def _save_manifest(
        self,
        kind: str,
        labels: Mapping[str, str],
        body: Mapping[str, Any],
        id: str | None,
        refs: Sequence[str],
    ) -> str:
        labels = {str(k): str(v) for k, v in labels.items()}
        refs = list(dict.fromkeys(str(r) for r in refs))
        content = {"kind": kind, "labels": labels, "body": dict(body), "refs": refs}
        try:
            canonical_json(content)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"manifest body is not JSON: {exc}", field="body") from None
        created = _now().isoformat()
        if id is None:
            id = self.keys.chunk_id(canonical_json({**content, "created_at": created})).hex()
        else:
            if not _ID_RE.match(id):
                raise InvalidInput(f"bad manifest id {id!r}", field="id")
            try:
                old = self.load_manifest(id)
            except NotFound:
                pass
            else:
                same = {
                    "kind": old.kind,
                    "labels": dict(old.labels),
                    "body": dict(old.body),
                    "refs": list(old.refs),
                }
                if canonical_json(same) == canonical_json(content):
                    return id
                raise Conflict(f"manifest {id} already exists with other content")
        for r in refs:
            if not self._manifest_exists(r):
                raise InvalidInput(f"referenced manifest {r} does not exist", field="refs")
        doc = {"v": 1, "id": id, **content, "created_at": created}
        key = MANIFEST_PREFIX + id
        self.storage.put(key, self.keys.seal_json(ObjectType.MANIFEST, doc, key.encode()))
        # A concurrent forget may have removed a ref between the check and the write.
        gone = [r for r in refs if not self._manifest_exists(r)]
        if gone:
            self.storage.delete(key)
            raise Conflict(f"referenced manifests vanished while saving {id}: {gone}")
        m = _manifest(doc)
        with self._mutex:
            self._manifests[id] = m
        return id

    def _manifest_exists(self, id: str) -> bool:
        try:
            self.storage.stat(MANIFEST_PREFIX + id)
        except NotFound:
            return False
        return True

    def load_manifest(self, id: str) -> Manifest:
        with self._mutex:
            cached = self._manifests.get(id)
        if cached is not None:
            return cached
        if not _ID_RE.match(id or ""):
            raise NotFound(f"no manifest {id!r}")
        key = MANIFEST_PREFIX + id
        try:
            data = self.storage.get(key)
        except NotFound:
            raise NotFound(f"no manifest {id} in {self.storage.url}") from None
        doc = self.keys.unseal_json(
            data, key.encode(), expect_type=ObjectType.MANIFEST, what=f"manifest {id}"
        )
        if doc.get("id") != id:
            raise CorruptObject(f"manifest {id}: stored id does not match its name")
        m = _manifest(doc)
        with self._mutex:
            self._manifests[id] = m
        return m

    def manifest_ids(self) -> list[str]:
        return [b.key[len(MANIFEST_PREFIX) :] for b in self.storage.list(MANIFEST_PREFIX)]

    def list_manifests(
        self, kind: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[Manifest]:
        """Manifests oldest first; damaged ones are skipped with a warning (see ``check``)."""
        out = []
        for mid in self.manifest_ids():
            try:
                m = self.load_manifest(mid)
            except (CorruptObject, NotFound) as exc:
                log.warning("skipping manifest %s: %s", mid, exc)
                continue
            if kind is not None and m.kind != kind:
                continue
            if labels and any(m.labels.get(k) != v for k, v in labels.items()):
                continue
            out.append(m)
        out.sort(key=lambda m: (m.created_at, m.id))
        return out

    def _data_manifest(self, id: str, kind: str) -> Manifest:
        m = self.load_manifest(id)
        if m.kind != kind:
            raise InvalidInput(f"manifest {id} is a {m.kind}, not a {kind}")
        return m

    def delete_manifest(self, id: str) -> None:
        """Delete a manifest; volume images and streams only it kept alive go with it."""
        with self._locked(False):
            self._delete_manifests([id])

    def _delete_manifests(self, ids: Sequence[str]) -> list[str]:
        doomed = list(dict.fromkeys(ids))
        refs: set[str] = set()
        for mid in doomed:
            with contextlib.suppress(NotFound, CorruptObject):
                refs.update(self.load_manifest(mid).refs)
        for mid in doomed:
            self.storage.delete(MANIFEST_PREFIX + mid)
            with self._mutex:
                self._manifests.pop(mid, None)
        removed = list(doomed)
        if refs:
            still: set[str] = set()
            for m in self.list_manifests():
                still.update(m.refs)
            orphans = []
            for r in sorted(refs - still - set(doomed)):
                try:
                    if self.load_manifest(r).kind in DATA_KINDS:
                        orphans.append(r)
                except (NotFound, CorruptObject):
                    continue
            for r in orphans:
                self.storage.delete(MANIFEST_PREFIX + r)
                with self._mutex:
                    self._manifests.pop(r, None)
            removed.extend(orphans)
        return removed

    # ----------------------------------------------------------------------------------
    # Maintenance (implemented in seawall.repo.maintenance)
    # ----------------------------------------------------------------------------------
    def check(
        self, *, read_data: bool = False, progress: Callable[[int, int], None] | None = None
    ) -> CheckReport:
        from seawall.repo.maintenance import check

        with self._locked(False):
            return check(self, read_data=read_data, progress=progress)

    def stats(self) -> dict[str, Any]:
        from seawall.repo.maintenance import stats

        return stats(self)

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
        from seawall.repo.maintenance import forget

        with self._locked(False):
            return forget(
                self,
                kind,
                group_by,
                keep_last=keep_last,
                keep_hourly=keep_hourly,
                keep_daily=keep_daily,
                keep_weekly=keep_weekly,
                keep_monthly=keep_monthly,
                dry_run=dry_run,
            )

    def prune(self) -> dict[str, Any]:
        from seawall.repo.maintenance import prune

        with self._locked(True):
            return prune(self)


def _batches(indices: list[int], most: int) -> Iterator[list[int]]:
    """Runs of consecutive chunk indices, at most ``most`` long (one source read each)."""
    run: list[int] = []
    for i in indices:
        if run and (i != run[-1] + 1 or len(run) >= most):
            yield run
            run = []
        run.append(i)
    if run:
        yield run


class _DirectWriter:
    """``O_DIRECT`` writes through per-thread page-aligned staging buffers (anonymous
    ``mmap``s, touched once and reused). Gives up for good on the first ``EINVAL``."""

    def __init__(self, fd: int | None, size: int) -> None:
        self.fd = fd
        self.size = size
        self._local = threading.local()

    def write(self, pieces: Sequence[bytes], nbytes: int, offset: int) -> bool:
        import errno
        import mmap

        fd = self.fd
        if fd is None or offset % DIRECT_ALIGN or nbytes > self.size:
            return False
        stage = getattr(self._local, "stage", None)
        if stage is None:
            stage = self._local.stage = mmap.mmap(-1, self.size)
        pos = 0
        for p in pieces:
            stage[pos : pos + len(p)] = p
            pos += len(p)
        view = memoryview(stage)
        try:
            done = 0
            while done < nbytes:
                n = os.pwrite(fd, view[done:nbytes], offset + done)
                if n <= 0:
                    raise OSError(f"write returned {n} at offset {offset + done}")
                done += n
        except OSError as exc:
            if exc.errno != errno.EINVAL or done:
                raise
            self.fd = None  # this file system does not do O_DIRECT: buffered from now on
            return False
        finally:
            view.release()
        return True


def _pwritev_all(fd: int, pieces: Sequence[bytes], offset: int) -> int:
    """``os.pwritev`` until every byte of ``pieces`` is at ``offset`` onwards."""
    total = sum(len(p) for p in pieces)
    done = os.pwritev(fd, pieces, offset)
    if done < total:  # short write (rare): finish the rest piece by piece
        rest = b"".join(pieces)
        while done < total:
            n = os.pwrite(fd, memoryview(rest)[done:], offset + done)
            if n <= 0:
                raise OSError(f"write returned {n} at offset {offset + done}")
            done += n
    return total


def _manifest(doc: Mapping[str, Any]) -> Manifest:
    return Manifest(
        id=str(doc["id"]),
        kind=str(doc["kind"]),
        labels=dict(doc.get("labels", {})),
        body=dict(doc.get("body", {})),
        refs=tuple(doc.get("refs", ())),
        created_at=_parse_time(str(doc["created_at"])),
    )


def _volume_image(m: Manifest) -> VolumeImage:
    b = m.body
    return VolumeImage(
        id=m.id,
        name=str(b["name"]),
        size=int(b["size"]),
        created_at=m.created_at,
        bytes_read=int(b.get("bytes_read", 0)),
        bytes_new=int(b.get("bytes_new", 0)),
        chunks=int(b.get("chunks", 0)),
        chunks_new=int(b.get("chunks_new", 0)),
        base=b.get("base"),
    )
