"""The golden repository of format v1 (tests/data/repo-v1) still opens and verifies."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from seawall.repo import Repository
from seawall.storage.local import LocalStorage
from seawall.storage.wrappers import ReadOnly

DATA = Path(__file__).resolve().parent.parent / "data"


def test_golden_v1_repository_opens_and_restores() -> None:
    expect = json.loads((DATA / "repo-v1.json").read_text())
    repo = Repository.open(ReadOnly(LocalStorage(DATA / "repo-v1")), expect["passphrase"])
    for vid, digest in expect["volumes"].items():
        out = bytearray(expect["sizes"][vid])
        for off, chunk in repo.read_volume(vid):
            out[off : off + len(chunk)] = chunk
        assert hashlib.sha256(out).hexdigest() == digest
    sid, digest = expect["stream"]
    assert hashlib.sha256(b"".join(repo.get_stream(sid))).hexdigest() == digest
    cp = repo.load_manifest(expect["checkpoint"])
    assert set(cp.refs) <= set(expect["volumes"]) | {sid}


def test_golden_v1_repository_checks_clean(tmp_path: Path) -> None:
    expect = json.loads((DATA / "repo-v1.json").read_text())
    copy = tmp_path / "repo"
    shutil.copytree(DATA / "repo-v1", copy)  # check takes a lock: work on a copy
    repo = Repository.open(LocalStorage(copy), expect["passphrase"])
    report = repo.check(read_data=True)
    assert report.ok, report.errors
