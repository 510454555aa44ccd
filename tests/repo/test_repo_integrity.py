"""Damage is detected, attributed and never turned into wrong bytes."""

from __future__ import annotations

import pytest
from repo_helpers import PASS, BytesSource, make_volume, restore

from seawall.errors import CorruptObject, RepositoryError, WrongPassphrase
from seawall.repo import Repository
from seawall.storage.memory import MemoryStorage


def _flip(storage: MemoryStorage, key: str, pos: int | None = None) -> None:
    data = bytearray(storage.get(key))
    i = len(data) // 2 if pos is None else pos
    data[i] ^= 0x01
    storage.put(key, bytes(data))


@pytest.fixture
def filled(repo: Repository) -> tuple[Repository, str, str, bytes]:
    data = make_volume(200_000, seed=11)
    a = repo.write_volume("alpha", BytesSource(data))
    b = repo.write_volume("beta", BytesSource(make_volume(100_000, seed=12)))
    repo.save_manifest("checkpoint", {"workload": "w"}, {}, id="cp", refs=[a.id])
    return repo, a.id, b.id, data


def test_flipped_byte_in_every_object_is_detected(
    filled: tuple[Repository, str, str, bytes],
) -> None:
    repo, _, _, _ = filled
    storage = repo.storage
    assert isinstance(storage, MemoryStorage)
    keys = [b.key for b in storage.list() if b.key.split("/")[0] in ("data", "index", "manifests")]
    assert len(keys) > 5
    for key in keys:
        pristine = storage.get(key)
        _flip(storage, key)
        try:
            fresh = Repository.open(storage, PASS)
            report = fresh.check(read_data=True)
            assert not report.ok, f"flipped byte in {key} went unnoticed"
        finally:
            storage.put(key, pristine)
    assert Repository.open(storage, PASS).check(read_data=True).ok


def test_flipped_chunk_names_the_image_and_read_refuses(
    filled: tuple[Repository, str, str, bytes],
) -> None:
    repo, a, b, data = filled
    storage = repo.storage
    assert isinstance(storage, MemoryStorage)
    # find a data chunk of `alpha` that `beta` does not share and damage its pack there
    ids_a = {c for c in repo.chunk_list(repo.load_manifest(a)) if any(c)}
    ids_b = set(repo.chunk_list(repo.load_manifest(b)))
    victim = sorted(ids_a - ids_b)[0]
    loc = repo.index[victim]
    _flip(storage, f"data/{loc.pack.hex()[:2]}/{loc.pack.hex()}", loc.entry.offset + 40)
    fresh = Repository.open(storage, PASS)
    assert fresh.check().ok  # structure is intact ...
    report = fresh.check(read_data=True)  # ... but reading every byte is not
    assert not report.ok
    assert a in report.damaged and "cp" in report.damaged  # the checkpoint that keeps it
    assert b not in report.damaged
    assert any("alpha" in e for e in report.errors)
    out = bytearray(len(data))
    with pytest.raises(CorruptObject, match=a):
        for off, chunk in fresh.read_volume(a):
            out[off : off + len(chunk)] = chunk
            assert chunk == data[off : off + len(chunk)]  # never a wrong byte before the error
    assert restore(fresh, b)  # the other image still restores


def test_truncated_pack_is_found_by_structural_check(
    filled: tuple[Repository, str, str, bytes],
) -> None:
    repo, a, _, _ = filled
    storage = repo.storage
    assert isinstance(storage, MemoryStorage)
    loc = repo.index[next(c for c in repo.chunk_list(repo.load_manifest(a)) if any(c))]
    key = f"data/{loc.pack.hex()[:2]}/{loc.pack.hex()}"
    storage.put(key, storage.get(key)[: loc.entry.offset + 10])
    fresh = Repository.open(storage, PASS)
    report = fresh.check()
    assert not report.ok and any("truncated" in e for e in report.errors)
    assert a in report.damaged
    with pytest.raises(CorruptObject):
        list(fresh.read_volume(a))


def test_missing_pack_is_reported(filled: tuple[Repository, str, str, bytes]) -> None:
    repo, a, _, _ = filled
    loc = repo.index[next(c for c in repo.chunk_list(repo.load_manifest(a)) if any(c))]
    repo.storage.delete(f"data/{loc.pack.hex()[:2]}/{loc.pack.hex()}")
    report = Repository.open(repo.storage, PASS).check()
    assert not report.ok and a in report.damaged


def test_damaged_config_and_key_file(storage: MemoryStorage) -> None:
    Repository.init(storage, PASS, kdf="fast")
    key = next(storage.list("keys/")).key
    pristine = storage.get(key)
    doc = pristine.replace(b'"wrapped": "', b'"wrapped": "AAAA')
    storage.put(key, doc)
    with pytest.raises((WrongPassphrase, RepositoryError)):
        Repository.open(storage, PASS)
    storage.put(key, pristine)
    _flip(storage, "config")
    with pytest.raises(CorruptObject):
        Repository.open(storage, PASS)


def test_corrupt_index_is_recovered_by_prune(filled: tuple[Repository, str, str, bytes]) -> None:
    repo, a, _, data = filled
    storage = repo.storage
    assert isinstance(storage, MemoryStorage)
    for blob in storage.list("index/"):
        _flip(storage, blob.key)
    fresh = Repository.open(storage, PASS)
    assert not fresh.check().ok
    fresh.prune()  # rebuilds the index from the pack trailers
    again = Repository.open(storage, PASS)
    assert again.check(read_data=True).ok
    assert restore(again, a) == data
