"""Hypothesis properties of the repository (the acceptance list of issue 4)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from repo_helpers import PASS, BytesSource, restore

from seawall.repo import Repository
from seawall.storage.memory import MemoryStorage

CHUNK = 4096
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _new_repo() -> Repository:
    return Repository.init(MemoryStorage(), PASS, kdf="fast", chunk_size=CHUNK, pack_size=16 * 1024)


@st.composite
def sparse_volume(draw: st.DrawFn) -> bytes:
    size = draw(st.integers(0, 12 * CHUNK + 100))
    data = bytearray(size)
    for _ in range(draw(st.integers(0, 6))):
        if size == 0:
            break
        off = draw(st.integers(0, size - 1))
        payload = draw(st.binary(min_size=1, max_size=3 * CHUNK))
        data[off : off + len(payload)] = payload[: size - off]
    return bytes(data)


@st.composite
def volume_and_writes(draw: st.DrawFn) -> tuple[bytes, bytes, list[tuple[int, int]]]:
    base = draw(sparse_volume())
    new = bytearray(base)
    extents: list[tuple[int, int]] = []
    for _ in range(draw(st.integers(0, 5))):
        if not new:
            break
        off = draw(st.integers(0, len(new) - 1))
        payload = draw(
            st.one_of(
                st.binary(min_size=1, max_size=2 * CHUNK), st.integers(1, 2 * CHUNK).map(bytes)
            )
        )
        payload = payload[: len(new) - off]
        new[off : off + len(payload)] = payload
        extents.append((off, len(payload)))
    return base, bytes(new), extents


@SETTINGS
@given(sparse_volume())
def test_get_put_is_identity(data: bytes) -> None:
    repo = _new_repo()
    img = repo.write_volume("v", BytesSource(data))
    assert restore(repo, img.id) == data


@SETTINGS
@given(volume_and_writes())
def test_incremental_with_extents_is_identity(
    case: tuple[bytes, bytes, list[tuple[int, int]]],
) -> None:
    base, new, extents = case
    repo = _new_repo()
    b = repo.write_volume("v", BytesSource(base))
    inc = repo.write_volume("v", BytesSource(new), base=b.id, extents=extents)
    assert restore(repo, inc.id) == new
    assert restore(repo, b.id) == base
    touched = {o // CHUNK for o, n in extents for o in range(o, o + n, 1)}
    assert inc.bytes_read <= len(touched) * CHUNK


@SETTINGS
@given(sparse_volume())
def test_writing_the_same_data_twice_stores_nothing_new(data: bytes) -> None:
    repo = _new_repo()
    repo.write_volume("v", BytesSource(data))
    before = sum(b.size for b in repo.storage.list("data/"))
    again = repo.write_volume("w", BytesSource(data))
    assert again.bytes_new == 0 and again.chunks_new == 0
    after = sum(b.size for b in repo.storage.list("data/"))
    # only the (deduplicated) chunk list may add a pack, and it is not new either
    assert after == before


@SETTINGS
@given(st.lists(sparse_volume(), min_size=1, max_size=4), st.data())
def test_prune_keeps_everything_still_referenced(vols: list[bytes], data: st.DataObject) -> None:
    repo = _new_repo()
    imgs = [repo.write_volume(f"v{i}", BytesSource(v)).id for i, v in enumerate(vols)]
    cps = []
    for i in range(data.draw(st.integers(1, 3))):
        refs = data.draw(st.lists(st.sampled_from(imgs), unique=True))
        cps.append(repo.save_manifest("checkpoint", {"w": "x"}, {"i": i}, refs=refs))
    for cp in data.draw(st.lists(st.sampled_from(cps), unique=True)):
        repo.delete_manifest(cp)
    repo.prune()
    fresh = Repository.open(repo.storage, PASS)
    assert fresh.check(read_data=True).ok
    remaining = {m.id for m in fresh.list_manifests("volume")}
    for i, img in enumerate(imgs):
        if img in remaining:
            assert restore(fresh, img) == vols[i]
    for m in fresh.list_manifests("checkpoint"):
        assert set(m.refs) <= remaining


@SETTINGS
@given(st.lists(sparse_volume(), min_size=1, max_size=3))
def test_index_rebuilt_from_packs_equals_saved(vols: list[bytes]) -> None:
    repo = _new_repo()
    for i, v in enumerate(vols):
        repo.write_volume(f"v{i}", BytesSource(v))
    saved = {
        (p, e) for p, es in Repository.open(repo.storage, PASS).indexed_packs().items() for e in es
    }
    rebuilt = {(p, e) for p, es in repo.rebuild_index().items() for e in es}
    assert rebuilt == saved
