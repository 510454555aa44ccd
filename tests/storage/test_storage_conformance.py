"""One conformance suite that every backend and every wrapper passes.

Each case yields ``(writer, store)``: normally the same object; for the read-only
wrapper the data is written through the backend it wraps and read back through it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from seawall.errors import NotFound, PermanentError, TransientError
from seawall.storage import BlobInfo, StorageBackend, open_storage
from seawall.storage.local import LocalStorage
from seawall.storage.memory import MemoryStorage
from seawall.storage.wrappers import (
    Fault,
    Faulty,
    RateLimited,
    ReadOnly,
    Retrying,
    TokenBucket,
)

Pair = tuple[StorageBackend, StorageBackend]
CASES = [
    "memory",
    "local",
    "s3",
    pytest.param("rgw", marks=pytest.mark.lab),  # Ceph RGW of the OpenStack lab: real S3
    "retrying",
    "ratelimited",
    "readonly",
    "faulty",
    "retry-faulty",
]


@pytest.fixture(params=CASES)
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pair]:
    kind = request.param
    no_sleep: Callable[[float], None] = lambda s: None  # noqa: E731
    if kind == "memory":
        m = MemoryStorage()
        yield m, m
    elif kind == "local":
        loc = open_storage(str(tmp_path / "store"))
        yield loc, loc
    elif kind == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        options = request.getfixturevalue("s3_options")
        s3 = open_storage(f"s3://{bucket}/some/prefix", options)
        yield s3, s3
    elif kind == "rgw":
        bucket, options = request.getfixturevalue("rgw_a")
        rgw = open_storage(f"s3://{bucket}/some/prefix", options)
        yield rgw, rgw
    elif kind == "retrying":
        r = Retrying(MemoryStorage(), sleep=no_sleep)
        yield r, r
    elif kind == "ratelimited":
        rl = RateLimited(MemoryStorage(), TokenBucket(100 << 20))
        yield rl, rl
    elif kind == "readonly":
        inner = MemoryStorage()
        yield inner, ReadOnly(inner)
    elif kind == "faulty":
        f = Faulty(MemoryStorage())
        yield f, f
    else:  # transient faults on every 2nd call are hidden by the retry wrapper
        faults = [Fault(method="*", after=i, times=1) for i in range(1, 200, 2)]
        rf = Retrying(Faulty(MemoryStorage(), faults), sleep=no_sleep)
        yield rf, rf


def test_put_get_round_trip(pair: Pair) -> None:
    w, s = pair
    w.put("data/ab/abcdef", b"hello world")
    assert s.get("data/ab/abcdef") == b"hello world"
    w.put("config", b"")
    assert s.get("config") == b""


def test_put_replaces_whole_blob(pair: Pair) -> None:
    w, s = pair
    w.put("k", b"long long value")
    w.put("k", b"short")
    assert s.get("k") == b"short"


def test_ranged_get(pair: Pair) -> None:
    w, s = pair
    w.put("r", bytes(range(256)))
    assert s.get("r", 10, 5) == bytes(range(10, 15))
    assert s.get("r", 250) == bytes(range(250, 256))
    assert s.get("r", 0, 256) == bytes(range(256))


def test_get_missing_raises_not_found(pair: Pair) -> None:
    _, s = pair
    with pytest.raises(NotFound):
        s.get("nope/missing")
    with pytest.raises(NotFound):
        s.stat("nope/missing")


def test_stat_reports_size(pair: Pair) -> None:
    w, s = pair
    w.put("index/x", b"12345")
    assert s.stat("index/x") == BlobInfo("index/x", 5)


def test_list_by_prefix_sorted(pair: Pair) -> None:
    w, s = pair
    for k in ["data/00/a", "data/01/b", "data/00/c", "index/i", "manifests/m", "config"]:
        w.put(k, k.encode())
    assert [b.key for b in s.list("data/")] == ["data/00/a", "data/00/c", "data/01/b"]
    assert [b.key for b in s.list("data/00/")] == ["data/00/a", "data/00/c"]
    assert [b.key for b in s.list("man")] == ["manifests/m"]
    assert [(b.key, b.size) for b in s.list("index/")] == [("index/i", 7)]
    assert len(list(s.list())) == 6
    assert list(s.list("zzz/")) == []


def test_delete_tolerates_missing(pair: Pair) -> None:
    w, s = pair
    w.put("gone", b"x")
    w.delete("gone")
    w.delete("gone")
    with pytest.raises(NotFound):
        s.get("gone")


def test_large_blob(pair: Pair) -> None:
    w, s = pair
    data = bytes(range(256)) * 8192  # 2 MiB
    w.put("data/big", data)
    assert s.get("data/big") == data
    assert s.get("data/big", 1 << 20, 1000) == data[1 << 20 : (1 << 20) + 1000]


def test_is_a_storage_backend(pair: Pair) -> None:
    _, s = pair
    assert isinstance(s, StorageBackend)
    assert isinstance(s.url, str)


# -- wrapper-specific behaviour ----------------------------------------------------------


def test_read_only_refuses_writes() -> None:
    ro = ReadOnly(MemoryStorage())
    with pytest.raises(PermanentError):
        ro.put("k", b"v")
    with pytest.raises(PermanentError):
        ro.delete("k")


def test_retrying_gives_up_and_never_retries_not_found() -> None:
    inner = Faulty(MemoryStorage(), [Fault(method="get", times=-1)])
    r = Retrying(inner, attempts=3, sleep=lambda s: None)
    with pytest.raises(TransientError):
        r.get("k")
    assert inner.calls["get"] == 3
    plain = Faulty(MemoryStorage())
    with pytest.raises(NotFound):
        Retrying(plain, sleep=lambda s: None).get("missing")
    assert plain.calls["get"] == 1


def test_faulty_cut_link_drops_everything_after_budget() -> None:
    f = Faulty(MemoryStorage(), cut_after_bytes=10)
    f.put("a", b"0123456789")
    with pytest.raises(TransientError):
        f.put("b", b"x")
    with pytest.raises(TransientError):
        f.get("a")


def test_local_put_leaves_no_temp_files(tmp_path: Path) -> None:
    s = LocalStorage(tmp_path)
    s.put("data/aa/x", b"1")
    s.put("data/aa/x", b"2")
    names = [p.name for p in (tmp_path / "data" / "aa").iterdir()]
    assert names == ["x"]
    (tmp_path / "data" / "aa" / ".tmp-dead").write_bytes(b"partial")
    assert [b.key for b in s.list("data/")] == ["data/aa/x"]


def test_memory_url_is_shared_per_name() -> None:
    a = open_storage("memory://shared-test")
    b = open_storage("memory://shared-test")
    a.put("k", b"v")
    assert b.get("k") == b"v"
