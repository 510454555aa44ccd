"""The data paths of volume images and streams, over the blob store.

Writing a volume image: each :data:`~seawall.repo.store.BATCH_BYTES` run of chunks is
read (``preadv`` into a reused buffer), split into memoryviews, zero-checked, hashed,
deduplicated (a locked claim set) and sealed on a worker thread; the calling thread only
appends the results to the pack in order, up to ``workers`` batches ahead. Restoring
writes whole batches on worker threads, a chunk only after it authenticated. Streams are
cut by FastCDC so an insert changes only the chunks around it. The manifests that name
the results are written by :class:`~seawall.repo.repository.Repository`; nothing here
locks the repository (the caller holds the lock and passes ``refresh_lock``).
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from seawall.errors import Cancelled, CorruptObject, InvalidInput, PermanentError
from seawall.repo.format import HOLE, ObjectType
from seawall.repo.store import BATCH_BYTES, BlobStore

#: A restore starts writing back (``fdatasync`` in the background) after this many bytes.
FLUSH_EVERY = 256 * 1024 * 1024
#: Offset and length granularity of the ``O_DIRECT`` restore writes.
DIRECT_ALIGN = 4096
STREAM_AVG, STREAM_MIN, STREAM_MAX = 1 << 20, 256 << 10, 4 << 20

#: What a worker returns per chunk of a batch: (index, id, sealed blob or None).
ChunkResult = tuple[int, bytes, bytearray | None]


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
class Stored:
    """What writing a volume image or stream stored: its chunk ids, the ids of its chunk
    list pieces, and how much of it was new."""

    ids: list[bytes]
    list_ids: list[str]
    bytes_read: int
    bytes_new: int
    chunks_new: int


# --------------------------------------------------------------------------------------
# Volume images
# --------------------------------------------------------------------------------------
def plan_reads(
    size: int,
    chunk_size: int,
    extents: Sequence[tuple[int, int]] | None,
    base_ids: Sequence[bytes] | None = None,
    base_size: int = 0,
) -> tuple[list[bytes], list[int]]:
    """The initial chunk ids of a new image and the chunk indices to read.

    Without ``extents`` every chunk is read. With a base, chunks outside the extents are
    the base's (plus any chunk past the base's end, and its last chunk if the size
    changed); without one, the extents are the source's allocated ranges and every other
    chunk is a hole."""
    cs = chunk_size
    n = -(-size // cs)
    ids: list[bytes] = [HOLE] * n
    if extents is None:
        return ids, list(range(n))
    wanted: set[int] = set()
    if base_ids is not None:
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
    return ids, sorted(wanted)


class _Claims:
    """Thread-safe "who stores this chunk": the first batch to see a new id claims it,
    every later one (and every id already in a published index) just refers to it."""

    def __init__(self, pending: set[bytes], index: Any) -> None:
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


class _VolumeBatches:
    """Reads, hashes, deduplicates and seals runs of chunks of one source on a worker
    thread each (the C code releases the GIL)."""

    def __init__(self, blobs: BlobStore, source: VolumeSource, size: int, claim: _Claims):
        self.keys = blobs.keys
        self.cs = blobs.chunk_size
        self.source = source
        self.size = size
        self.claim = claim
        self.buffers = _Buffers(max(1, BATCH_BYTES // self.cs) * self.cs, self.cs)

    def __call__(self, run: list[int]) -> list[ChunkResult]:
        """``(index, id, sealed or None)`` per chunk of ``run``: ``None`` for holes and for
        chunks the repository (or another batch) already has. The read goes into a
        reused buffer, chunks are views of it."""
        cs = self.cs
        off = run[0] * cs
        length = min(len(run) * cs, self.size - off)
        buf = self.buffers.take()
        try:
            view = memoryview(buf)[:length]
            got = self._read(off, view)
            if got != length:
                raise PermanentError(f"volume source: short read at {off} ({got} of {length})")
            keys = self.keys
            zero = self.buffers.zero
            out: list[ChunkResult] = []
            for k, idx in enumerate(run):
                piece = view[k * cs : (k + 1) * cs]
                if zero.startswith(piece):
                    out.append((idx, HOLE, None))
                    continue
                cid = keys.chunk_id(piece)
                if self.claim(cid):
                    out.append((idx, cid, keys.seal_buffer(ObjectType.BLOB_DATA, piece, cid)))
                else:
                    out.append((idx, cid, None))
            return out
        finally:
            self.buffers.give(buf)

    def _read(self, off: int, view: memoryview) -> int:
        readinto = getattr(self.source, "readinto", None)
        if readinto is not None:
            return int(readinto(off, view))
        data = self.source.read(off, len(view))
        view[: len(data)] = data
        return len(data)


def write_chunks(
    blobs: BlobStore,
    name: str,
    source: VolumeSource,
    ids: list[bytes],
    to_read: list[int],
    *,
    refresh_lock: Callable[[], None],
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Stored:
    """Store the chunks ``to_read`` of ``source`` and the chunk list ``ids`` (updated in
    place), then publish the index; packs -> index, the caller writes the manifest."""
    size = int(source.size)
    cs = blobs.chunk_size
    total = sum(min(cs, size - i * cs) for i in to_read)
    writer = blobs.writer()
    done = bytes_new = chunks_new = 0
    work = _VolumeBatches(blobs, source, size, _Claims(writer.pending, blobs.index))
    pool = blobs.cpu_pool()
    inflight: collections.deque[Future[list[ChunkResult]]] = collections.deque()

    def consume(results: list[ChunkResult]) -> None:
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
        refresh_lock()

    try:
        # Read, hash, deduplicate and seal whole batches on the worker threads; this
        # thread only packs the results in order.
        for run in _batches(to_read, max(1, BATCH_BYTES // cs)):
            if cancelled is not None and cancelled():
                raise Cancelled(f"writing volume image {name!r} was cancelled")
            inflight.append(pool.submit(work, run))
            if len(inflight) > blobs.workers:
                consume(inflight.popleft().result())
        while inflight:
            consume(inflight.popleft().result())
        list_ids = blobs.store_chunk_list(writer, ids)
        writer.flush_index()
    except BaseException:
        _drain(inflight)
        writer.abort()
        raise
    return Stored(ids, list_ids, total, bytes_new, chunks_new)


def _drain(inflight: Iterable[Future[Any]]) -> None:
    """Cancel what has not started and wait for the rest, dropping their errors."""
    pending = list(inflight)
    for f in pending:
        f.cancel()
    for f in pending:
        with contextlib.suppress(BaseException):
            f.result()


def check_chunk_list(ids: Sequence[bytes], size: int, cs: int, what: str) -> None:
    """A chunk list shorter than the volume means a damaged image."""
    if len(ids) < -(-size // cs):
        raise CorruptObject(f"{what}: chunk list is shorter than the volume")


def read_chunks(
    blobs: BlobStore, ids: Sequence[bytes], size: int, cs: int, what: str
) -> Iterator[tuple[int, bytes]]:
    """``(offset, data)`` of every non-hole chunk in order, each authenticated."""
    check_chunk_list(ids, size, cs, what)
    work = [(i * cs, cid) for i, cid in enumerate(ids) if cid != HOLE and i * cs < size]
    for off, data in blobs.fetch_ordered(work, what):
        if len(data) != min(cs, size - off):
            raise CorruptObject(f"{what}: chunk at offset {off} has the wrong length")
        yield off, data


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


class _RestoreBatches:
    """Fetches, authenticates and writes one batch of chunks per call (a worker
    thread): ``pwritev`` of each run of neighbouring chunks, ``O_DIRECT`` where aligned."""

    def __init__(
        self,
        blobs: BlobStore,
        ids: Sequence[bytes],
        size: int,
        cs: int,
        fd: int,
        direct: _DirectWriter,
        what: str,
    ) -> None:
        self.blobs = blobs
        self.ids = ids
        self.size = size
        self.cs = cs
        self.fd = fd
        self.direct = direct
        self.what = what

    def __call__(self, run: list[int]) -> int:
        cs, size = self.cs, self.size
        datas = self.blobs.read_blobs([self.ids[i] for i in run], what=self.what)
        written = 0
        start = 0
        for k in range(1, len(run) + 1):
            if k < len(run) and run[k] == run[k - 1] + 1:
                continue
            pieces = datas[start:k]
            for i, d in zip(run[start:k], pieces, strict=True):
                if len(d) != min(cs, size - i * cs):
                    raise CorruptObject(
                        f"{self.what}: chunk at offset {i * cs} has the wrong length"
                    )
            off = run[start] * cs
            nbytes = sum(len(d) for d in pieces)
            if not (nbytes % DIRECT_ALIGN == 0 and self.direct.write(pieces, nbytes, off)):
                _pwritev_all(self.fd, pieces, off)
            written += nbytes
            start = k
        return written


def restore_chunks(
    blobs: BlobStore,
    ids: Sequence[bytes],
    size: int,
    cs: int,
    fd: int,
    what: str,
    *,
    refresh_lock: Callable[[], None],
    progress: Callable[[int, int], None] | None = None,
    flush_every: int = FLUSH_EVERY,
    direct_fd: int | None = None,
) -> int:
    """Write every non-hole chunk into ``fd`` at its offset; return the bytes written.
    Every ``flush_every`` bytes a background ``fdatasync`` starts writing back what is
    done, so the caller's final ``fsync`` finds little left."""
    check_chunk_list(ids, size, cs, what)
    work = [i for i, cid in enumerate(ids) if cid != HOLE and i * cs < size]
    total = sum(min(cs, size - i * cs) for i in work)
    per = max(1, BATCH_BYTES // cs)
    batch = _RestoreBatches(blobs, ids, size, cs, fd, _DirectWriter(direct_fd, per * cs), what)
    pool = blobs.cpu_pool()
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
        if flush_every and since_flush >= flush_every and (flushing is None or flushing.done()):
            if flushing is not None:
                flushing.result()
            flushing = blobs.io_pool().submit(os.fdatasync, fd)
            since_flush = 0

    try:
        for b in range(0, len(work), per):
            inflight.append(pool.submit(batch, work[b : b + per]))
            if len(inflight) > blobs.workers:
                collect()
            refresh_lock()
        while inflight:
            collect()
        if flushing is not None:
            flushing.result()
    except BaseException:
        _drain([*inflight, *([flushing] if flushing is not None else [])])
        raise
    return done


# --------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------
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


def write_stream(
    blobs: BlobStore,
    chunker: Mapping[str, Any],
    chunks: Iterable[bytes],
    *,
    refresh_lock: Callable[[], None],
) -> Stored:
    """Store a byte stream cut by FastCDC with the repository's ``stream_chunker``
    parameters, then publish the index; the caller writes the manifest."""
    from pyfastcdc import FastCDC

    cdc = FastCDC(
        int(chunker.get("avg", STREAM_AVG)),
        min_size=int(chunker.get("min", STREAM_MIN)),
        max_size=int(chunker.get("max", STREAM_MAX)),
    )
    reader = _StreamReader(chunks)
    writer = blobs.writer()
    ids: list[bytes] = []
    chunks_new = bytes_new = 0
    batch: list[bytes] = []
    batch_bytes = 0

    def flush() -> None:
        nonlocal chunks_new, bytes_new
        hashes = blobs.parallel(lambda ps: [blobs.keys.chunk_id(p) for p in ps], batch)
        ids.extend(hashes)
        items = [(h, ObjectType.BLOB_STREAM, p) for h, p in zip(hashes, batch, strict=True)]
        c, b = blobs.store_new(writer, items)
        chunks_new, bytes_new = chunks_new + c, bytes_new + b

    try:
        for ch in cdc.cut_stream(reader):
            batch.append(bytes(ch.data))
            batch_bytes += ch.length
            if batch_bytes >= BATCH_BYTES:
                flush()
                batch, batch_bytes = [], 0
                refresh_lock()
        if batch:
            flush()
        list_ids = blobs.store_chunk_list(writer, ids)
        writer.flush_index()
    except BaseException:
        writer.abort()
        raise
    return Stored(ids, list_ids, reader.total, bytes_new, chunks_new)
