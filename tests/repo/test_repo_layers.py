"""The layers under the facade used on their own: packs, the index, the blob store."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from seawall.errors import CorruptObject
from seawall.repo.format import Keys, ObjectType
from seawall.repo.index import INDEX_PREFIX, Index
from seawall.repo.pack import INDEX_EVERY_PACKS, PackWriter, read_blobs, read_trailer
from seawall.repo.store import BlobStore
from seawall.storage.memory import MemoryStorage


def _blobs(keys: Keys, n: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(n):
        plain = os.urandom(900) + bytes([i % 256])
        out.append((keys.chunk_id(plain), plain))
    return out


def test_pack_writer_publishes_every_few_packs_and_blobs_read_back() -> None:
    storage, keys = MemoryStorage(), Keys(os.urandom(32))
    index = Index(storage, keys)
    blobs = _blobs(keys, 42)  # 5 per 4 KiB pack: 8 full packs and 2 blobs left
    with ThreadPoolExecutor(2) as pool:
        writer = PackWriter(storage, keys, 4096, pool, index.publish)
        for bid, plain in blobs:
            sealed = keys.seal(ObjectType.BLOB_DATA, plain, bid)
            writer.add(bid, ObjectType.BLOB_DATA, sealed, len(plain))
        published_early = len(list(storage.list(INDEX_PREFIX)))
        writer.flush_index()
    # an index every INDEX_EVERY_PACKS packs while writing, one for the rest at the end
    assert published_early == 8 // INDEX_EVERY_PACKS
    assert len(list(storage.list(INDEX_PREFIX))) > published_early
    assert len(index) == len(blobs)
    locs = [index[bid] for bid, _ in blobs]
    assert read_blobs(storage, keys, locs, what="test") == [p for _, p in blobs]
    # another process sees the same by loading the index files, or from the trailers alone
    other = Index(storage, keys)
    other.refresh()
    assert other.by_pack() == index.by_pack() == other.rebuild()
    for pack_id, entries in index.by_pack().items():
        assert read_trailer(storage, keys, pack_id) == entries


def test_pack_writer_without_publish_leaves_indexing_to_the_caller() -> None:
    storage, keys = MemoryStorage(), Keys(os.urandom(32))
    with ThreadPoolExecutor(2) as pool:
        writer = PackWriter(storage, keys, 2048, pool)
        for bid, plain in _blobs(keys, 30):
            sealed = keys.seal(ObjectType.BLOB_DATA, plain, bid)
            writer.add(bid, ObjectType.BLOB_DATA, sealed, len(plain))
        packs = writer.finish()
    assert list(storage.list(INDEX_PREFIX)) == []
    assert sum(len(e) for e in packs.values()) == 30
    index = Index(storage, keys)
    index.publish(packs)
    assert len(index) == 30 and index.rebuild() == index.by_pack()


def test_blob_store_deduplicates_and_refuses_unknown_ids() -> None:
    storage, keys = MemoryStorage(), Keys(os.urandom(32))
    index = Index(storage, keys)
    store = BlobStore(storage, keys, index, chunk_size=4096, pack_size=8192, workers=2)
    items = [(bid, ObjectType.BLOB_STREAM, plain) for bid, plain in _blobs(keys, 12)]
    writer = store.writer()
    assert store.store_new(writer, items + items[:3])[0] == 12  # repeats in one call
    writer.flush_index()
    again = store.writer()
    assert store.store_new(again, items) == (0, 0)  # all indexed already
    assert store.read_blobs([bid for bid, _, _ in items], what="t") == [p for _, _, p in items]
    with pytest.raises(CorruptObject, match="not in the index"):
        store.read_blobs([bytes(31) + b"\x01"], what="t")
    store.close()
