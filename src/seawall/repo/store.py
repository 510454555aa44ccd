"""The blob store: content-addressed blobs over the index and the packs.

:class:`BlobStore` is the layer the data paths (volume images, streams) and maintenance
use to turn ids into authenticated bytes and new bytes into deduplicated, sealed blobs:
it looks ids up in the :class:`~seawall.repo.index.Index`, reads them with
:func:`~seawall.repo.pack.read_blobs`, and writes new ones through a
:class:`~seawall.repo.pack.PackWriter` that publishes to that index. It also owns the
worker threads (hashing and sealing on the CPU pool, pack transfers on the I/O pool).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from seawall.errors import CorruptObject
from seawall.repo.format import ID_SIZE, Keys, ObjectType
from seawall.repo.index import Index
from seawall.repo.manifest import Manifest
from seawall.repo.pack import Located, PackWriter, read_blobs
from seawall.storage import StorageBackend

#: Chunk ids per chunk-list blob: 4096 x 64 KiB = 256 MiB of volume per list piece, so an
#: incremental image rewrites only the list pieces whose chunks changed.
LIST_PIECE = 4096
#: Bytes of volume or stream read, hashed and sealed as one unit of work.
BATCH_BYTES = 8 * 1024 * 1024

T = TypeVar("T")
R = TypeVar("R")

#: A blob to store: (id, object type, plaintext).
NewBlob = tuple[bytes, int, bytes]


class BlobStore:
    """Blobs of one repository: lookups, authenticated reads, deduplicated writes."""

    def __init__(
        self,
        storage: StorageBackend,
        keys: Keys,
        index: Index,
        *,
        chunk_size: int,
        pack_size: int,
        workers: int,
    ) -> None:
        self.storage = storage
        self.keys = keys
        self.index = index
        self.chunk_size = chunk_size
        self.pack_size = pack_size
        self.workers = workers
        self._lock = threading.Lock()
        self._cpu: ThreadPoolExecutor | None = None
        self._io: ThreadPoolExecutor | None = None

    # -- worker threads ----------------------------------------------------------------
    def cpu_pool(self) -> ThreadPoolExecutor:
        """Threads for hashing, sealing and authenticating (the C code releases the GIL)."""
        with self._lock:
            if self._cpu is None:
                self._cpu = ThreadPoolExecutor(self.workers, thread_name_prefix="seawall-cpu")
            return self._cpu

    def io_pool(self) -> ThreadPoolExecutor:
        """Threads for pack uploads and downloads."""
        with self._lock:
            if self._io is None:
                self._io = ThreadPoolExecutor(max(2, self.workers), thread_name_prefix="seawall-io")
            return self._io

    def parallel(self, fn: Callable[[list[T]], list[R]], items: list[T]) -> list[R]:
        """Run ``fn`` over ``items`` split into one contiguous group per worker.

        Grouping keeps per-task overhead far below the cost of hashing a 64 KiB chunk;
        the C libraries release the GIL, so the threads really run in parallel.
        """
        if len(items) < 2 or self.workers == 1:
            return fn(items)
        step = -(-len(items) // self.workers)
        groups = [items[i : i + step] for i in range(0, len(items), step)]
        futures = [self.cpu_pool().submit(fn, g) for g in groups]
        out: list[R] = []
        for f in futures:
            out.extend(f.result())
        return out

    def close(self) -> None:
        """Stop the worker threads (after the work handed to them is done)."""
        with self._lock:
            pools, self._cpu, self._io = (self._cpu, self._io), None, None
        for pool in pools:
            if pool is not None:
                pool.shutdown(wait=True)

    # -- writing -----------------------------------------------------------------------
    def writer(self, *, publish: bool = True) -> PackWriter:
        """A pack writer for one operation; it publishes its packs to the index unless
        ``publish`` is false (then the caller indexes :meth:`PackWriter.finish`)."""
        return PackWriter(
            self.storage,
            self.keys,
            self.pack_size,
            self.io_pool(),
            self.index.publish if publish else None,
        )

    def _seal_group(self, items: list[NewBlob]) -> list[bytes]:
        return [self.keys.seal(t, data, bid) for bid, t, data in items]

    def store_new(self, writer: PackWriter, items: list[NewBlob]) -> tuple[int, int]:
        """Seal and pack blobs nobody has yet; returns (count, sealed bytes) added."""
        new = []
        for bid, t, data in items:
            if bid in writer.pending or bid in self.index:
                continue
            writer.pending.add(bid)
            new.append((bid, t, data))
        sealed = self.parallel(self._seal_group, new)
        nbytes = 0
        for (bid, t, data), s in zip(new, sealed, strict=True):
            writer.add(bid, t, s, len(data))
            nbytes += len(s)
        return len(new), nbytes

    def store_chunk_list(self, writer: PackWriter, ids: Sequence[bytes]) -> list[str]:
        """Store a chunk list as pieces of :data:`LIST_PIECE` ids; return the piece ids."""
        items = []
        for start in range(0, max(len(ids), 1), LIST_PIECE):
            blob = b"".join(ids[start : start + LIST_PIECE])
            items.append((self.keys.chunk_id(blob), ObjectType.BLOB_LIST, blob))
        self.store_new(writer, items)
        return [bid.hex() for bid, _, _ in items]

    # -- reading -----------------------------------------------------------------------
    def read_blobs(self, ids: Sequence[bytes], *, what: str) -> list[bytes]:
        """Blobs by id, authenticated; one ranged read per run of neighbours in a pack."""
        locs: list[Located] = []
        for bid in ids:
            loc = self.index.lookup(bid)
            if loc is None:
                raise CorruptObject(
                    f"{what}: blob {bid.hex()} is not in the index (pack or index lost); "
                    "run `seawall repo check`"
                )
            locs.append(loc)
        return read_blobs(self.storage, self.keys, locs, what=what)

    def chunk_list(self, m: Manifest) -> list[bytes]:
        """The chunk ids of a volume image or stream (``HOLE`` for zero chunks)."""
        out: list[bytes] = []
        pieces = [bytes.fromhex(h) for h in m.body.get("chunk_list", [])]
        what = f"{m.kind} {m.id} ({m.body.get('name', '')})"
        for raw in self.read_blobs(pieces, what=what):
            if len(raw) % ID_SIZE:
                raise CorruptObject(f"{what}: malformed chunk list")
            out.extend(raw[i : i + ID_SIZE] for i in range(0, len(raw), ID_SIZE))
        return out

    def fetch_ordered(
        self, work: list[tuple[int, bytes]], what: str
    ) -> Iterator[tuple[int, bytes]]:
        """Fetch and authenticate ``(key, id)`` batches in parallel; yield ``(key, data)``
        in order with bounded read-ahead."""
        per = max(1, BATCH_BYTES // 4 // self.chunk_size)
        batches = [work[i : i + per] for i in range(0, len(work), per)]

        def fetch(batch: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
            datas = self.read_blobs([cid for _, cid in batch], what=what)
            return [(off, d) for (off, _), d in zip(batch, datas, strict=True)]

        pool = self.io_pool()
        inflight: list[Future[list[tuple[int, bytes]]]] = []
        try:
            for b in batches:
                inflight.append(pool.submit(fetch, b))
                if len(inflight) > self.workers:
                    yield from inflight.pop(0).result()
            while inflight:
                yield from inflight.pop(0).result()
        finally:
            for f in inflight:
                f.cancel()
