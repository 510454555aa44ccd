"""Packs: sealed blobs followed by a sealed trailer that lists them (format §5.1).

This layer knows the byte layout of one pack and nothing of indexes or manifests:

- :class:`PackWriter` fills packs with already sealed blobs, seals the trailer, hashes
  and uploads finished packs on an I/O pool, and hands the packs it made to a
  ``publish`` callback (the index layer) every :data:`INDEX_EVERY_PACKS` packs, only
  after every pack it names is durable (write order, format §9);
- :func:`read_trailer` reads the blob list a pack carries itself (so an index can be
  rebuilt from packs alone);
- :func:`read_blobs` fetches blobs at known locations with one ranged read per run of
  neighbours and authenticates each one against its id.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass

from seawall.errors import CorruptObject, NotFound
from seawall.repo.format import (
    TRAILER_LEN,
    BlobEntry,
    Keys,
    ObjectType,
    decode_entries,
    encode_entries,
    hash_id,
)
from seawall.storage import StorageBackend

DATA_PREFIX = "data/"
#: A writer publishes an index file after this many packs, so a killed writer loses at
#: most this much already-uploaded data to "unreferenced".
INDEX_EVERY_PACKS = 4
#: Finished packs being hashed and uploaded at once while the next one fills.
UPLOADS_IN_FLIGHT = 2
#: Neighbouring blobs of one pack closer than this are fetched with one ranged read.
READ_GAP = 65536

#: What a pack writer hands to the index layer: pack id -> the entries of that pack.
Packs = Mapping[bytes, list[BlobEntry]]


@dataclass(frozen=True, slots=True)
class Located:
    """Where a blob lives: its pack and its entry in that pack."""

    pack: bytes
    entry: BlobEntry


def pack_key(pack_id: bytes) -> str:
    """The storage key of a pack: ``data/<first two hex digits>/<pack id>``."""
    h = pack_id.hex()
    return f"{DATA_PREFIX}{h[:2]}/{h}"


def pack_id_of(key: str) -> bytes:
    """The pack id a storage key under ``data/`` names."""
    return bytes.fromhex(key.rsplit("/", 1)[-1])


def stored_packs(storage: StorageBackend) -> dict[bytes, int]:
    """Every pack on storage with its size (indexed or not)."""
    return {pack_id_of(b.key): b.size for b in storage.list(DATA_PREFIX)}


def read_trailer(
    storage: StorageBackend, keys: Keys, pack_id: bytes, size: int | None = None
) -> list[BlobEntry]:
    """The blob list a pack carries itself, so the index can be rebuilt from packs."""
    key = pack_key(pack_id)
    what = f"pack {pack_id.hex()}"
    if size is None:
        size = storage.stat(key).size
    if size < TRAILER_LEN.size:
        raise CorruptObject(f"{what}: truncated ({size} bytes)")
    (tlen,) = TRAILER_LEN.unpack(storage.get(key, size - TRAILER_LEN.size, 4))
    if tlen + TRAILER_LEN.size > size:
        raise CorruptObject(f"{what}: truncated or damaged trailer")
    blob = storage.get(key, size - TRAILER_LEN.size - tlen, tlen)
    raw = keys.unseal(blob, b"pack trailer", expect_type=ObjectType.PACK_TRAILER, what=what)
    entries, _ = decode_entries(raw, 0, what)
    return entries


def read_blobs(
    storage: StorageBackend, keys: Keys, locs: Sequence[Located], *, what: str
) -> list[bytes]:
    """The plaintext of the blobs at ``locs`` (in that order), each authenticated and
    checked against its id and raw length before any byte of it is returned."""
    out: list[bytes | None] = [None] * len(locs)
    order = sorted(range(len(locs)), key=lambda i: (locs[i].pack, locs[i].entry.offset))
    i = 0
    while i < len(order):
        first = locs[order[i]]
        j, end = _run_end(locs, order, i)
        start = first.entry.offset
        try:
            data = storage.get(pack_key(first.pack), start, end - start)
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
            plain = keys.unseal(
                blob,
                e.id,
                expect_type=e.type,
                what=f"{what}: blob {e.id.hex()} in pack {first.pack.hex()}",
            )
            if len(plain) != e.raw_length or keys.chunk_id(plain) != e.id:
                raise CorruptObject(f"{what}: blob {e.id.hex()} does not match its id")
            out[k] = plain
        i = j
    return [b for b in out if b is not None]


def _run_end(locs: Sequence[Located], order: list[int], i: int) -> tuple[int, int]:
    """The end (in ``order``) and the byte end of the run of neighbours starting at ``i``."""
    first = locs[order[i]]
    end = first.entry.offset + first.entry.length
    j = i + 1
    while j < len(order):
        nxt = locs[order[j]]
        if nxt.pack != first.pack or nxt.entry.offset > end + READ_GAP:
            break
        end = max(end, nxt.entry.offset + nxt.entry.length)
        j += 1
    return j, end


class PackWriter:
    """Collects sealed blobs of one write operation into packs, then publishes an index.

    Blobs become visible to other writers only after the index file naming them is
    durable, so nobody can deduplicate against a pack that might never be indexed.
    Hashing and uploading a finished pack run on ``pool``, up to
    :data:`UPLOADS_IN_FLIGHT` at once, while the next pack fills. Without ``publish``
    nothing is indexed automatically; the caller takes the packs from :meth:`finish`
    (prune writes one index of its own).
    """

    def __init__(
        self,
        storage: StorageBackend,
        keys: Keys,
        pack_size: int,
        pool: Executor,
        publish: Callable[[Packs], object] | None = None,
    ) -> None:
        self.storage = storage
        self.keys = keys
        self.pack_size = pack_size
        self.pool = pool
        self.publish = publish
        #: Ids added by this writer (sealed or claimed), deduplicated against by callers.
        self.pending: set[bytes] = set()
        self._buf = bytearray()
        self._entries: list[BlobEntry] = []
        self._unindexed: dict[bytes, list[BlobEntry]] = {}
        self._packs_since_index = 0
        self._uploads: list[Future[tuple[bytes, list[BlobEntry]]]] = []

    def add(
        self, blob_id: bytes, type_: int, sealed: bytes | bytearray | memoryview, raw_length: int
    ) -> None:
        """Append one sealed blob; a pack that reached ``pack_size`` is sealed and sent."""
        self._entries.append(BlobEntry(blob_id, type_, len(self._buf), len(sealed), raw_length))
        self._buf += sealed
        self.pending.add(blob_id)
        if len(self._buf) >= self.pack_size:
            self.flush_pack()

    def flush_pack(self) -> None:
        """Seal the trailer of the pack being filled and hand it to the upload pool."""
        if not self._entries:
            return
        trailer = self.keys.seal(
            ObjectType.PACK_TRAILER, encode_entries(self._entries), b"pack trailer"
        )
        buf, entries = self._buf, self._entries
        buf += trailer
        buf += TRAILER_LEN.pack(len(trailer))
        self._buf = bytearray()
        self._entries = []
        while len(self._uploads) >= UPLOADS_IN_FLIGHT:
            self._collect(self._uploads.pop(0))
        self._uploads.append(self.pool.submit(self._upload, buf, entries))
        self._packs_since_index += 1
        if self.publish is not None and self._packs_since_index >= INDEX_EVERY_PACKS:
            self.flush_index()

    def _upload(self, data: bytearray, entries: list[BlobEntry]) -> tuple[bytes, list[BlobEntry]]:
        pack_id = hash_id(data)
        self.storage.put(pack_key(pack_id), data)
        return pack_id, entries

    def _collect(self, up: Future[tuple[bytes, list[BlobEntry]]]) -> None:
        pack_id, entries = up.result()
        self._unindexed[pack_id] = entries

    def finish(self) -> dict[bytes, list[BlobEntry]]:
        """Send the last pack, wait until every pack is durable (or raise its error), and
        return the packs not yet handed to ``publish`` (the caller indexes them)."""
        self.flush_pack()
        while self._uploads:
            self._collect(self._uploads.pop(0))
        self._packs_since_index = 0
        packs, self._unindexed = self._unindexed, {}
        return packs

    def flush_index(self) -> None:
        """:meth:`finish`, then publish an index of those packs (write order §9)."""
        packs = self.finish()
        if packs and self.publish is not None:
            self.publish(packs)

    def abort(self) -> None:
        """Wait for uploads in flight and drop their errors (the operation failed)."""
        while self._uploads:
            with contextlib.suppress(Exception):
                self._uploads.pop(0).result()
