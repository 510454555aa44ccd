"""Shared by the lab tests: a Service on the two lab sites, known byte patterns."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from seawall.service import Service
from seawall_lab.layout import DEFAULT_ROOT, LabSite

ROOT = DEFAULT_ROOT  #: SEAWALL_LAB_ROOT, as `seawall-lab` reads it


def site_params(name: str) -> dict[str, str]:
    site = LabSite(name, ROOT)
    return {
        "cloud": site.cloud,
        "clouds_yaml": str(site.clouds_yaml),
        "ceph_conf": str(site.ceph_conf),
    }


def pattern(seed: str, n: int) -> bytes:
    out = bytearray()
    h = seed.encode()
    while len(out) < n:
        h = hashlib.sha256(h).digest()
        out += h
    return bytes(out[:n])


@pytest.fixture
def lab_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    if not os.environ.get("SEAWALL_LAB_CLOUD"):
        pytest.skip("set SEAWALL_LAB_CLOUD (as lab/openstack/ci.sh does) to run against the lab")
    for name in ("a", "b"):
        if not LabSite(name, ROOT).clouds_yaml.exists():
            pytest.skip(f"lab site {name} is not up (seawall-lab up --site {name})")
    pytest.importorskip("rbd")
    pp = tmp_path / "passphrase"
    pp.write_text(secrets.token_urlsafe(24))
    pp.chmod(0o600)
    monkeypatch.setenv("SEAWALL_PASSPHRASE_FILE", str(pp))
    monkeypatch.delenv("SEAWALL_PASSPHRASE", raising=False)
    monkeypatch.setenv("SEAWALL_KDF", "fast")
    svc = Service(tmp_path / "home")
    svc.add_site("site-a", "openstack", site_params("a"), str(tmp_path / "repos/a"),
                 init_repository=True)  # fmt: skip
    svc.add_site("site-b", "openstack", site_params("b"), str(tmp_path / "repos/b"),
                 init_repository=True, key_from="site-a")  # fmt: skip
    try:
        yield svc
    finally:
        svc.close()
