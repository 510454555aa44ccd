"""Where a passphrase comes from, and each way of not having a usable one (issue 13)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from seawall.errors import KeyMissing
from seawall.passphrases import DESTINATION, read_passphrase


def secret(path: Path, text: str = "s3cret\n", mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_first_source_wins(tmp_path: Path) -> None:
    given = secret(tmp_path / "given", "from-option\n")
    named = secret(tmp_path / "named", "from-file-variable")
    home = tmp_path / "home"
    home.mkdir()
    secret(home / "passphrase", "from-home")
    env = {"SEAWALL_PASSPHRASE": "from-variable", "SEAWALL_PASSPHRASE_FILE": str(named)}
    assert read_passphrase(path=given, env=env, home=home) == "from-option"
    assert read_passphrase(env=env, home=home) == "from-variable"
    assert read_passphrase(env={"SEAWALL_PASSPHRASE_FILE": str(named)}, home=home) == (
        "from-file-variable"
    )
    assert read_passphrase(env={}, home=home) == "from-home"
    assert read_passphrase(DESTINATION, env={"SEAWALL_DST_PASSPHRASE": "dst"}) == "dst"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "does not exist"),
        (lambda p: secret(p, mode=0o644), r"open to group or others \(mode 644\).*chmod 600"),
        (lambda p: secret(p, mode=0o620), r"open to group or others \(mode 620\)"),
        (lambda p: secret(p, "\n"), "is empty"),
        (lambda p: p.mkdir() or p, "not a regular file"),
        (lambda p: secret(p) and p.write_bytes(b"\xff\xfe\x00") and p, "not UTF-8"),
    ],
    ids=["missing", "world-readable", "group-writable", "empty", "directory", "binary"],
)
def test_each_unusable_file_has_its_own_message(tmp_path: Path, make: object, message: str) -> None:
    path = make(tmp_path / "pp")  # type: ignore[operator]
    with pytest.raises(KeyMissing, match=message):
        read_passphrase(env={"SEAWALL_PASSPHRASE_FILE": str(path)})


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_an_unreadable_file_says_so(tmp_path: Path) -> None:
    path = secret(tmp_path / "pp", mode=0o000)
    with pytest.raises(
        KeyMissing, match=r"cannot read repository passphrase file .*Permission denied"
    ):
        read_passphrase(path=path, env={})


def test_none_configured_says_where_to_put_one(tmp_path: Path) -> None:
    with pytest.raises(
        KeyMissing, match="no repository passphrase: set SEAWALL_PASSPHRASE or SEAWALL_PASS"
    ):
        read_passphrase(env={}, home=tmp_path)
    with pytest.raises(KeyMissing, match="passphrase \\(mode 600\\)"):
        read_passphrase(env={}, home=tmp_path)
