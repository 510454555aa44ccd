"""The `repo` and `volume` click groups, driven through CliRunner on the groups."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from repo_helpers import make_volume

from seawall.cli.repo import repo_group, volume_group
from seawall.errors import CorruptObject, KeyMissing, UnsupportedVersion, WrongPassphrase

PW = "cli passphrase"


@pytest.fixture
def env() -> dict[str, str]:
    return {"SEAWALL_PASSPHRASE": PW}


def run(group: object, args: list[str], env: dict[str, str]) -> Result:
    runner = CliRunner()
    return runner.invoke(group, args, env=env, catch_exceptions=False)  # type: ignore[arg-type]


@pytest.fixture
def repo_url(tmp_path: Path, env: dict[str, str]) -> str:
    url = str(tmp_path / "repo")
    r = run(repo_group, ["init", url, "--kdf", "fast", "--chunk-size", "4096"], env)
    assert r.exit_code == 0, r.output
    return url


def test_put_get_list_round_trip(tmp_path: Path, repo_url: str, env: dict[str, str]) -> None:
    data = make_volume(300_000, seed=31)
    src = tmp_path / "disk.img"
    src.write_bytes(data)
    r = run(volume_group, ["put", repo_url, "disk0", str(src), "--json"], env)
    assert r.exit_code == 0, r.output
    first = json.loads(r.output)["id"]
    changed = bytearray(data)
    changed[5000:5100] = b"Z" * 100
    src.write_bytes(changed)
    ext = tmp_path / "ext.json"
    ext.write_text(json.dumps([[5000, 100]]))
    r = run(
        volume_group,
        ["put", repo_url, "disk0", str(src), "--base", first[:10], "--changed-extents", str(ext)],
        env,
    )
    assert r.exit_code == 0, r.output
    second = r.output.strip()
    assert len(second) == 64 and second != first
    out = tmp_path / "restored.img"
    r = run(volume_group, ["get", repo_url, "disk0", str(out)], env)  # latest
    assert r.exit_code == 0, r.output
    assert out.read_bytes() == bytes(changed)
    assert os.stat(out).st_blocks * 512 < len(data)  # holes were not written
    r = run(volume_group, ["get", repo_url, f"disk0@{first[:12]}", str(out)], env)
    assert out.read_bytes() == data
    r = run(volume_group, ["list", repo_url, "--json"], env)
    assert [v["id"] for v in json.loads(r.output)] == [first, second]


def test_repo_commands(tmp_path: Path, repo_url: str, env: dict[str, str]) -> None:
    src = tmp_path / "d.img"
    src.write_bytes(make_volume(100_000, seed=32))
    for _ in range(3):
        assert run(volume_group, ["put", repo_url, "d", str(src)], env).exit_code == 0
    r = run(repo_group, ["check", repo_url, "--read-data", "--json"], env)
    assert r.exit_code == 0 and json.loads(r.output)["ok"] is True
    r = run(repo_group, ["stats", repo_url, "--json"], env)
    assert json.loads(r.output)["manifests"] == {"volume": 3}
    r = run(repo_group, ["forget", repo_url, "--kind", "volume", "--keep-last", "1", "--json"], env)
    assert r.exit_code == 0 and len(json.loads(r.output)["removed"]) == 2
    r = run(repo_group, ["prune", repo_url, "--json"], env)
    assert r.exit_code == 0, r.output
    r = run(repo_group, ["forget", repo_url], env)
    assert r.exit_code == 2  # no keep rule: refused, nothing done
    dst = str(tmp_path / "dst")
    r = run(repo_group, ["sync", repo_url, dst, "--limit-rate", "100MiB/s", "--json"], env)
    assert r.exit_code == 0 and json.loads(r.output)["manifests_sent"] == 1
    media, site = str(tmp_path / "media"), str(tmp_path / "site")
    assert run(repo_group, ["export", repo_url, media], env).exit_code == 0
    assert run(repo_group, ["import", media, site], env).exit_code == 0
    r = run(repo_group, ["check", site, "--read-data"], env)
    assert r.exit_code == 0 and "no errors" in r.output


def test_key_commands(tmp_path: Path, repo_url: str, env: dict[str, str]) -> None:
    new_pw = tmp_path / "new.txt"
    new_pw.write_text("second passphrase\n")
    new_pw.chmod(0o600)
    r = run(
        repo_group,
        ["key", "add", repo_url, "--kdf", "fast", "--new-passphrase-file", str(new_pw), "--json"],
        env,
    )
    assert r.exit_code == 0, r.output
    slot = json.loads(r.output)["id"]
    r = run(repo_group, ["key", "list", repo_url, "--json"], env)
    assert len(json.loads(r.output)) == 2
    # the second passphrase works from a file, with no environment variable
    r = run(repo_group, ["stats", repo_url, "--passphrase-file", str(new_pw)], {})
    assert r.exit_code == 0, r.output
    assert run(repo_group, ["key", "remove", repo_url, slot], env).exit_code == 0
    r = run(
        repo_group,
        ["key", "passwd", repo_url, "--kdf", "fast", "--new-passphrase-file", str(new_pw)],
        env,
    )
    assert r.exit_code == 0
    assert run(repo_group, ["stats", repo_url], env).exit_code == WrongPassphrase.exit_code


def test_errors_are_one_line_with_distinct_exit_codes(
    tmp_path: Path, repo_url: str, env: dict[str, str]
) -> None:
    src = tmp_path / "d.img"
    src.write_bytes(make_volume(50_000, seed=33))
    assert run(volume_group, ["put", repo_url, "d", str(src)], env).exit_code == 0
    codes = {}
    r = run(volume_group, ["list", repo_url], {"SEAWALL_PASSPHRASE": "nope"})
    codes["wrong"] = r.exit_code
    assert r.output.count("\n") == 1 and "passphrase" in r.output
    r = run(volume_group, ["list", repo_url], {})
    # no passphrase at all: KeyMissing, as for every other command (seawall.passphrases)
    assert r.exit_code == KeyMissing.exit_code and "SEAWALL_PASSPHRASE" in r.output
    # truncated pack
    packs = sorted((Path(repo_url) / "data").rglob("*"))
    pack = next(p for p in packs if p.is_file())
    pack.write_bytes(pack.read_bytes()[:100])
    out = tmp_path / "out.img"
    r = run(volume_group, ["get", repo_url, "d", str(out)], env)
    codes["truncated"] = r.exit_code
    assert not out.exists()  # nothing written out
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())
    r = run(repo_group, ["check", repo_url], env)
    assert r.exit_code != 0 and "truncated" in r.output
    cfg = Path(repo_url) / "config"
    raw = bytearray(cfg.read_bytes())
    raw[2] = 7
    cfg.write_bytes(bytes(raw))
    codes["version"] = run(volume_group, ["list", repo_url], env).exit_code
    raw[2] = 1
    cfg.write_bytes(bytes(raw))
    for k in (Path(repo_url) / "keys").iterdir():
        k.unlink()
    codes["keys"] = run(volume_group, ["list", repo_url], env).exit_code
    assert codes == {
        "wrong": WrongPassphrase.exit_code,
        "truncated": CorruptObject.exit_code,
        "version": UnsupportedVersion.exit_code,
        "keys": KeyMissing.exit_code,
    }
    assert len(set(codes.values())) == 4


def test_passphrase_never_taken_from_argv() -> None:
    for group in (repo_group, volume_group):
        for cmd in group.commands.values():  # type: ignore[attr-defined]
            names = {o for p in cmd.params for o in getattr(p, "opts", [])}
            assert "--passphrase" not in names
