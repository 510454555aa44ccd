"""The Repository facade: round trips, incrementals, dedup, manifests, keys, errors."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from repo_helpers import PASS, BytesSource, make_volume, restore

from seawall.errors import (
    Cancelled,
    Conflict,
    InvalidInput,
    KeyMissing,
    NotFound,
    RepositoryError,
    TransientError,
    UnsupportedVersion,
    WrongPassphrase,
)
from seawall.repo import Repository, VolumeSource
from seawall.storage.memory import MemoryStorage


def test_volume_round_trip_with_holes(repo: Repository) -> None:
    data = make_volume(300_000, seed=3)
    img = repo.write_volume("vm1-disk0", BytesSource(data))
    assert restore(repo, img.id) == data
    assert img.size == len(data)
    assert img.bytes_read == len(data)
    zero_chunks = sum(
        1 for i in range(0, len(data), 4096) if data[i : i + 4096] == bytes(len(data[i : i + 4096]))
    )
    total = -(-len(data) // 4096)
    assert img.chunks == total - zero_chunks  # holes are not chunks
    yielded = [off for off, _ in repo.read_volume(img.id)]
    assert yielded == sorted(yielded) and len(yielded) == img.chunks


def test_bytes_source_satisfies_protocol() -> None:
    assert isinstance(BytesSource(b"x"), VolumeSource)


def test_same_data_twice_stores_no_new_chunks(repo: Repository) -> None:
    data = make_volume(200_000, seed=4)
    first = repo.write_volume("v", BytesSource(data))
    second = repo.write_volume("v", BytesSource(data))
    assert first.chunks_new > 0
    assert second.chunks_new == 0 and second.bytes_new == 0
    assert restore(repo, second.id) == data


def test_incremental_reads_only_changed_extents(repo: Repository) -> None:
    data = bytearray(make_volume(400_000, seed=5))
    base = repo.write_volume("v", BytesSource(bytes(data)))
    data[10_000:10_010] = b"X" * 10
    data[200_000:204_100] = b"Y" * 4100  # crosses a chunk boundary
    src = BytesSource(bytes(data))
    inc = repo.write_volume("v", src, base=base.id, extents=[(10_000, 10), (200_000, 4100)])
    assert src.bytes_read == 4096 * 3  # 1 chunk + 2 chunks, rounded to chunks
    assert inc.bytes_read == 4096 * 3
    assert inc.base == base.id
    assert inc.chunks_new <= 3
    assert restore(repo, inc.id) == bytes(data)
    assert restore(repo, base.id) != bytes(data)  # the base is untouched


def test_incremental_with_growing_volume(repo: Repository) -> None:
    data = make_volume(50_000, seed=6)
    base = repo.write_volume("v", BytesSource(data))
    grown = data + make_volume(30_000, seed=7)
    inc = repo.write_volume("v", BytesSource(grown), base=base.id, extents=[])
    assert restore(repo, inc.id) == grown


def test_extents_without_base_read_only_allocated_ranges(repo: Repository) -> None:
    """A first checkpoint reads only what the cloud says is allocated; the rest is holes."""
    data = bytearray(64 * 4096)
    data[4096 * 3 : 4096 * 3 + 100] = b"a" * 100
    data[4096 * 40 : 4096 * 42] = b"b" * 8192
    src = BytesSource(bytes(data))
    img = repo.write_volume("v", src, extents=[(4096 * 3, 100), (4096 * 40, 8192)])
    assert src.bytes_read == 4096 * 3
    assert img.chunks == 3
    assert restore(repo, img.id) == bytes(data)


def test_progress_and_cancel(repo: Repository) -> None:
    data = make_volume(64 * 4096 * 3, seed=8)
    seen: list[tuple[int, int]] = []
    repo.write_volume("v", BytesSource(data), progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (len(data), len(data))
    with pytest.raises(Cancelled):
        repo.write_volume("v", BytesSource(data), cancelled=lambda: True)
    assert len(repo.list_volumes("v")) == 1  # the cancelled write left no image


def test_volume_info_and_list(repo: Repository) -> None:
    a = repo.write_volume("a", BytesSource(b"1" * 5000))
    b = repo.write_volume("b", BytesSource(b"2" * 5000))
    assert repo.volume_info(a.id) == a
    assert [v.id for v in repo.list_volumes()] == [a.id, b.id]
    assert [v.id for v in repo.list_volumes("b")] == [b.id]
    with pytest.raises(NotFound):
        repo.volume_info("0" * 64)


def test_streams_round_trip_and_dedup(repo: Repository) -> None:
    import random

    rng = random.Random(1)
    blob = rng.randbytes(3 << 20)
    pieces = [blob[i : i + 100_000] for i in range(0, len(blob), 100_000)]
    sid = repo.put_stream("cirros.qcow2", pieces)
    assert b"".join(repo.get_stream(sid)) == blob
    shifted = blob[:1000] + b"inserted" + blob[1000:]
    sid2 = repo.put_stream("cirros2.qcow2", [shifted])
    m = repo.load_manifest(sid2)
    assert m.kind == "stream"
    assert m.body["chunks_new"] <= 2  # CDC: an insert only changes the chunk around it
    assert b"".join(repo.get_stream(sid2)) == shifted


def test_manifest_save_load_list_idempotent(repo: Repository) -> None:
    v = repo.write_volume("disk", BytesSource(b"abc" * 3000))
    mid = repo.save_manifest("checkpoint", {"workload": "w1"}, {"n": 1}, id="cp-1", refs=[v.id])
    assert mid == "cp-1"
    again = repo.save_manifest("checkpoint", {"workload": "w1"}, {"n": 1}, id="cp-1", refs=[v.id])
    assert again == "cp-1"
    with pytest.raises(Conflict):
        repo.save_manifest("checkpoint", {"workload": "w1"}, {"n": 2}, id="cp-1")
    m = repo.load_manifest("cp-1")
    assert (m.kind, dict(m.labels), dict(m.body), m.refs) == (
        "checkpoint",
        {"workload": "w1"},
        {"n": 1},
        (v.id,),
    )
    auto = repo.save_manifest("checkpoint", {"workload": "w2"}, {"n": 3})
    assert [x.id for x in repo.list_manifests("checkpoint", {"workload": "w2"})] == [auto]
    assert {x.id for x in repo.list_manifests("checkpoint")} == {"cp-1", auto}
    with pytest.raises(InvalidInput):
        repo.save_manifest("checkpoint", {}, {}, refs=["nope"])
    with pytest.raises(InvalidInput):
        repo.save_manifest("checkpoint", {}, {"x": object()})
    # a fresh open sees the same manifest
    again_repo = Repository.open(repo.storage, PASS)
    assert again_repo.load_manifest("cp-1") == m


def test_delete_manifest_cascades_to_its_volume_images(repo: Repository) -> None:
    v1 = repo.write_volume("d", BytesSource(b"a" * 9000))
    v2 = repo.write_volume("d", BytesSource(b"b" * 9000))
    standalone = repo.write_volume("e", BytesSource(b"c" * 9000))
    repo.save_manifest("checkpoint", {}, {}, id="c1", refs=[v1.id])
    repo.save_manifest("checkpoint", {}, {}, id="c2", refs=[v1.id, v2.id])
    repo.delete_manifest("c2")
    ids = {m.id for m in repo.list_manifests()}
    assert v1.id in ids  # still kept alive by c1
    assert v2.id not in ids  # only c2 kept it
    assert standalone.id in ids  # never referenced: a root of its own


def test_open_errors_are_distinct(storage: MemoryStorage) -> None:
    with pytest.raises(RepositoryError):
        Repository.open(storage, PASS)
    Repository.init(storage, PASS, kdf="fast")
    with pytest.raises(WrongPassphrase) as wp:
        Repository.open(storage, "wrong")
    with pytest.raises(Conflict):
        Repository.init(storage, PASS, kdf="fast")
    for b in list(storage.list("keys/")):
        saved = storage.get(b.key)
        storage.delete(b.key)
    with pytest.raises(KeyMissing) as km:
        Repository.open(storage, PASS)
    storage.put(b.key, saved)
    cfg = bytearray(storage.get("config"))
    cfg[2] = 99  # format version byte
    storage.put("config", bytes(cfg))
    with pytest.raises(UnsupportedVersion) as uv:
        Repository.open(storage, PASS)
    codes = {wp.value.exit_code, km.value.exit_code, uv.value.exit_code}
    assert len(codes) == 3


def test_key_slots_add_remove_change(storage: MemoryStorage) -> None:
    repo = Repository.init(storage, PASS, kdf="fast")
    slot = repo.add_key("second", kdf="fast")
    assert len(repo.list_keys()) == 2
    v = repo.write_volume("x", BytesSource(b"q" * 10_000))
    assert restore(Repository.open(storage, "second"), v.id) == b"q" * 10_000
    repo.remove_key(slot)
    with pytest.raises(WrongPassphrase):
        Repository.open(storage, "second")
    repo.change_passphrase("third", kdf="fast")
    with pytest.raises(WrongPassphrase):
        Repository.open(storage, PASS)
    assert restore(Repository.open(storage, "third"), v.id) == b"q" * 10_000
    with pytest.raises(Conflict):
        repo.remove_key(repo.slot_id)  # never the last slot
    text = b"".join(storage.get(b.key) for b in storage.list("keys/"))
    assert b"third" not in text and repo.keys.master not in text


def test_two_writers_share_the_repository(storage: MemoryStorage) -> None:
    Repository.init(storage, PASS, kdf="fast", chunk_size=4096, pack_size=32 * 1024)
    a, b = Repository.open(storage, PASS), Repository.open(storage, PASS)
    datas = {n: make_volume(120_000, seed=n) for n in range(4)}
    results: dict[int, str] = {}

    def write(r: Repository, n: int) -> None:
        results[n] = r.write_volume(f"v{n}", BytesSource(datas[n])).id

    threads = [threading.Thread(target=write, args=(a if n % 2 else b, n)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c = Repository.open(storage, PASS)
    for n, img in results.items():
        assert restore(c, img) == datas[n]
    assert c.check(read_data=True).ok


def test_prune_waits_for_no_writer(storage: MemoryStorage) -> None:
    a = Repository.init(storage, PASS, kdf="fast")
    b = Repository.open(storage, PASS)
    with a.locked(False), pytest.raises(TransientError):
        b.prune()
    b.prune()  # lock released: fine now


def test_stale_lock_of_dead_process_is_ignored(storage: MemoryStorage) -> None:
    import subprocess
    import sys

    a = Repository.init(storage, PASS, kdf="fast")
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    import json
    import socket
    import time

    doc = {"exclusive": True, "host": socket.gethostname(), "pid": p.pid, "time": time.time()}
    from seawall.repo.format import ObjectType

    storage.put("locks/dead", a.keys.seal(ObjectType.LOCK, json.dumps(doc).encode(), b"lock"))
    a.write_volume("v", BytesSource(b"z" * 5000))  # not blocked by the dead exclusive lock
    a.prune()
    assert list(storage.list("locks/")) == []


def test_restore_volume_into_a_file_equals_read_volume(repo: Repository, tmp_path: Path) -> None:
    import os

    from seawall.repo import FileSource

    data = make_volume(1_500_000, seed=11)
    src_path = tmp_path / "src.img"
    src_path.write_bytes(data)
    with FileSource(src_path) as src:  # readinto path (reused buffers, memoryviews)
        img = repo.write_volume("disk", src)
    assert restore(repo, img.id) == data
    out = tmp_path / "out.img"
    fd = os.open(out, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, img.size)
        seen: list[int] = []
        n = repo.restore_volume(img.id, fd, progress=lambda d, t: seen.append(d), flush_every=1)
    finally:
        os.close(fd)
    assert out.read_bytes() == data
    out.unlink()
    fd = os.open(out, os.O_RDWR | os.O_CREAT, 0o600)
    dfd = os.open(out, os.O_WRONLY | getattr(os, "O_DIRECT", 0))  # whole chunks bypass the cache
    try:
        os.ftruncate(fd, img.size)
        assert repo.restore_volume(img.id, fd, direct_fd=dfd) == n
    finally:
        os.close(dfd)
        os.close(fd)
    assert out.read_bytes() == data
    nonzero = sum(
        len(data[i : i + 4096])
        for i in range(0, len(data), 4096)
        if data[i : i + 4096].strip(b"\0")
    )
    assert n == nonzero and seen[-1] == n


def test_incompressible_chunks_are_stored_raw_and_text_compressed(repo: Repository) -> None:
    import random

    from seawall.repo.format import Codec

    rnd = random.Random(5).randbytes(64 * 1024)
    text = (b"2025-01-01 INFO request served status=200 id=12345\n" * 2000)[: 64 * 1024]
    mixed = rnd[: 48 * 1024] + text[: 16 * 1024]  # one compressible probe sample is enough
    for payload, codec in ((rnd, Codec.NONE), (text, Codec.ZSTD), (mixed, Codec.ZSTD)):
        sealed = repo.keys.seal_buffer(16, payload, b"c" * 32)
        assert sealed[4] == codec
        assert repo.keys.unseal(bytes(sealed), b"c" * 32, expect_type=16, what="t") == payload
        assert bytes(sealed[:4]) == repo.keys.seal(16, payload, b"c" * 32)[:4]
