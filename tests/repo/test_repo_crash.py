"""kill -9 of a real writer mid-`volume put` and mid-`repo sync`.

Afterwards the repository must check clean, and the next run must succeed and send only
what did not arrive before the kill.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from seawall.cli.repo import repo_group, volume_group
from seawall.repo import Repository
from seawall.storage.local import LocalStorage

PW = "crash test"
ENV = {**os.environ, "SEAWALL_PASSPHRASE": PW}
CLI = "import sys; from seawall.cli.repo import {g} as g; g(sys.argv[1:])"


def _cli(group: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", CLI.format(g=group), *args],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for(path: Path, pattern: str, count: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while len(list(path.glob(pattern))) < count:
        if proc.poll() is not None:
            pytest.fail(f"writer finished before it could be killed: {proc.stderr!r}")
        if time.monotonic() > deadline:
            pytest.fail("writer made no progress")
        time.sleep(0.005)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _volume(path: Path, mib: int) -> bytes:
    data = random.Random(41).randbytes(mib << 20)
    path.write_bytes(data)
    return data


@pytest.mark.slow
def test_kill_during_volume_put(tmp_path: Path) -> None:
    repo_dir = tmp_path / "repo"
    Repository.init(LocalStorage(repo_dir), PW, kdf="fast", pack_size=256 * 1024)
    img = tmp_path / "disk.img"
    data = _volume(img, 48)
    proc = _cli("volume_group", "put", str(repo_dir), "disk", str(img), "--json")
    _wait_for(repo_dir, "index/*", 2, proc)  # some packs are indexed, more are coming
    _kill(proc)
    repo = Repository.open(LocalStorage(repo_dir), PW)
    report = repo.check(read_data=True)
    assert report.ok, report.errors
    assert repo.list_volumes() == []  # no manifest, so nothing refers to partial data
    indexed_before = sum(len(es) for es in repo.indexed_packs().values())
    assert indexed_before > 0
    r = CliRunner().invoke(
        volume_group,
        ["put", str(repo_dir), "disk", str(img), "--json"],
        env={"SEAWALL_PASSPHRASE": PW},
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    # resent only the chunks that had not been indexed before the kill
    assert info["chunks_new"] == info["chunks"] - indexed_before
    repo = Repository.open(LocalStorage(repo_dir), PW)
    out = bytearray(len(data))
    for off, chunk in repo.read_volume(info["id"]):
        out[off : off + len(chunk)] = chunk
    assert out == data
    assert repo.check(read_data=True).ok
    repo.prune()  # removes the packs the killed writer never indexed
    assert not repo.check().warnings


@pytest.mark.slow
def test_kill_during_sync(tmp_path: Path) -> None:
    src_dir, dst_dir = tmp_path / "src", tmp_path / "dst"
    src = Repository.init(LocalStorage(src_dir), PW, kdf="fast", pack_size=512 * 1024)
    img = tmp_path / "disk.img"
    data = _volume(img, 24)
    from seawall.repo import FileSource

    with FileSource(img) as fs:
        vid = src.write_volume("disk", fs).id
    src.save_manifest("checkpoint", {"workload": "w"}, {}, id="cp", refs=[vid])
    total = sum(b.size for b in LocalStorage(src_dir).list("data/"))
    proc = _cli("repo_group", "sync", str(src_dir), str(dst_dir), "--limit-rate", "16MiB/s")
    _wait_for(dst_dir, "data/*/*", 6, proc)
    _kill(proc)
    dst = Repository.open(LocalStorage(dst_dir), PW)
    assert dst.check().ok
    arrived = sum(b.size for b in LocalStorage(dst_dir).list("data/"))
    assert 0 < arrived < total
    r = CliRunner().invoke(
        repo_group,
        ["sync", str(src_dir), str(dst_dir), "--json"],
        env={"SEAWALL_PASSPHRASE": PW},
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    stats = json.loads(r.output)
    assert stats["bytes_sent"] <= total - arrived + 64 * 1024  # + manifests
    dst = Repository.open(LocalStorage(dst_dir), PW)
    assert dst.check(read_data=True).ok
    out = bytearray(len(data))
    for off, chunk in dst.read_volume(vid):
        out[off : off + len(chunk)] = chunk
    assert out == data
