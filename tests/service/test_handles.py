"""The process's handles: a site's repository on real S3 (``moto_server``) opens with the
credentials kept encrypted in the home, and with nothing else: not the URL, not seawall's
environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from seawall.errors import InvalidInput, SeawallError
from seawall.service import Service
from seawall.service.handles import SiteCredentials

KEYS = {"access_key_id": "testing", "secret_access_key": "testing"}


@pytest.fixture
def no_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials must come from the home, never from the standard AWS chain."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")


def test_a_repository_on_s3_opens_with_the_kept_credentials(
    seawall_env: dict[str, str],
    tmp_path: Path,
    moto_endpoint: str,
    s3_bucket: str,
    no_aws_environment: None,
) -> None:
    home = tmp_path / "home"
    url = f"s3://{s3_bucket}/repo?endpoint={moto_endpoint}"
    svc = Service(home)
    try:
        site = svc.add_site("s", "sim", {"path": str(tmp_path / "s")}, url,
                            init_repository=True, credentials=KEYS)  # fmt: skip
        assert site.repository == url
    finally:
        svc.close()
    svc = Service(home)  # a new process: the credentials come from the home
    try:
        assert svc.repository("s").list_manifests("checkpoint") == []
        svc.forget_site_handles("s")
        (home / "credentials" / "s.key").unlink()
        with pytest.raises(SeawallError):
            svc.repository("s").list_manifests("checkpoint")
    finally:
        svc.close()


def test_kept_credentials_open_with_the_passphrase_only(tmp_path: Path) -> None:
    SiteCredentials(tmp_path, lambda: "right passphrase").save("s", KEYS)
    assert SiteCredentials(tmp_path, lambda: "right passphrase").load("s") == KEYS
    with pytest.raises(InvalidInput, match="give them again with `seawall site credentials s`"):
        SiteCredentials(tmp_path, lambda: "wrong passphrase").load("s")
