"""Replication: copy only what the target lacks, resumable, throttled, verifiable."""

from __future__ import annotations

import time

import pytest
from repo_helpers import PASS, BytesSource, make_volume, restore

from seawall.errors import Cancelled, RepositoryError, TransientError
from seawall.repo import Repository, init_sharing, sync
from seawall.storage.local import LocalStorage
from seawall.storage.memory import MemoryStorage
from seawall.storage.wrappers import Faulty


@pytest.fixture
def src() -> Repository:
    r = Repository.init(MemoryStorage(), PASS, kdf="fast", chunk_size=4096, pack_size=16 * 1024)
    for i in range(3):
        v = r.write_volume(f"vm{i}", BytesSource(make_volume(120_000, seed=20 + i)))
        r.save_manifest("checkpoint", {"workload": f"w{i}"}, {"i": i}, id=f"cp{i}", refs=[v.id])
    return r


def test_sync_copies_everything_then_nothing(src: Repository) -> None:
    dst = init_sharing(src, MemoryStorage())
    first = sync(src, dst)
    assert first.manifests_sent == 6 and first.bytes_sent > 0
    assert dst.check(read_data=True).ok
    for v in src.list_volumes():
        assert restore(dst, v.id) == restore(src, v.id)
    second = sync(src, dst)
    assert (second.bytes_sent, second.objects_sent, second.manifests_sent) == (0, 0, 0)
    assert second.skipped == 6


def test_sync_selected_manifests_takes_their_refs(src: Repository) -> None:
    dst = init_sharing(src, MemoryStorage())
    stats = sync(src, dst, manifests=["cp1"])
    assert stats.manifests_sent == 2
    assert {m.id for m in dst.list_manifests("checkpoint")} == {"cp1"}
    assert dst.check(read_data=True).ok


def test_sync_resumes_after_a_cut_link_without_resending(src: Repository) -> None:
    full = init_sharing(src, MemoryStorage())
    total = sync(src, full).bytes_sent
    target = MemoryStorage()
    dst = init_sharing(src, target)
    cut = Faulty(target, cut_after_bytes=total // 2)
    dst.storage = cut
    with pytest.raises(TransientError):
        sync(src, dst)
    sent_before_cut = cut.bytes_written
    assert 0 < sent_before_cut < total
    dst = Repository.open(target, PASS)
    assert dst.check().ok  # the cut left only unreferenced data
    resumed = sync(src, dst)
    assert resumed.bytes_sent <= total - sent_before_cut + 4096  # index/manifests only extra
    assert dst.check(read_data=True).ok
    assert {m.id for m in dst.list_manifests()} == {m.id for m in src.list_manifests()}


def test_sync_rate_limit_slows_it_down(src: Repository) -> None:
    dst = init_sharing(src, MemoryStorage())
    t0 = time.monotonic()
    stats = sync(src, dst, rate_limit=200_000)
    elapsed = time.monotonic() - t0
    # one second of burst, the rest at 200 kB/s
    assert elapsed >= (stats.bytes_sent - 200_000) / 200_000 * 0.9


def test_sync_cancel_then_resume(src: Repository) -> None:
    dst = init_sharing(src, MemoryStorage())
    calls = iter(range(1000))
    with pytest.raises(Cancelled):
        sync(src, dst, cancelled=lambda: next(calls) >= 2)
    assert sync(src, dst).manifests_sent == 6
    assert dst.check(read_data=True).ok


def test_sync_refuses_foreign_keys(src: Repository) -> None:
    other = Repository.init(MemoryStorage(), PASS, kdf="fast")
    with pytest.raises(RepositoryError, match="master key"):
        sync(src, other)


def test_key_from_shares_key_material(src: Repository) -> None:
    dst = Repository.init(MemoryStorage(), "another", kdf="fast", key_from=src, chunk_size=4096)
    assert dst.id != src.id
    sync(src, dst)
    assert dst.check(read_data=True).ok


def test_export_and_import_through_a_directory(src: Repository, tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    media = init_sharing(src, LocalStorage(tmp_path / "media"))
    sync(src, media)
    # at the recovery site: open the media with the same passphrase, import it
    on_media = Repository.open(LocalStorage(tmp_path / "media"), PASS)
    site = init_sharing(on_media, MemoryStorage())
    sync(on_media, site)
    assert site.check(read_data=True).ok
    for v in src.list_volumes():
        assert restore(site, v.id) == restore(src, v.id)
