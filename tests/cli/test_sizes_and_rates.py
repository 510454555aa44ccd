"""One size/rate grammar at every edge (seawall.units): ``--limit-rate 50M`` means the
same for ``policy create`` and ``repo sync``, a policy file reads the same text, and
``repo init --chunk-size`` takes a size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_cli import fails, listed, seawall

from seawall import errors
from seawall.cli.repo import repo_group

SAME = [("50M", 50_000_000), ("50MiB/s", 50 << 20), ("10MB/s", 10**7), ("1048576", 1 << 20)]


@pytest.mark.parametrize(("text", "rate"), SAME)
def test_policy_create_limit_rate(seawall_env: dict[str, str], text: str, rate: int) -> None:
    created = listed("policy", "create", "p", "--limit-rate", text)
    assert created["bandwidth"]["bytes_per_second"] == rate
    assert listed("policy", "show", "p")["bandwidth"]["bytes_per_second"] == rate


def test_policy_file_bandwidth_as_text(seawall_env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: p\nbandwidth:\n  bytes_per_second: 50M\n"
        "  windows: [{start_hour: 8, end_hour: 18, bytes_per_second: 1MiB/s}]\n"
    )
    bandwidth = listed("policy", "create", "--file", str(path))["bandwidth"]
    assert bandwidth["bytes_per_second"] == 50_000_000
    assert bandwidth["windows"][0]["bytes_per_second"] == 1 << 20
    path.write_text("name: q\nbandwidth: {bytes_per_second: 50 furlongs}\n")
    fails(
        seawall("policy", "create", "--file", str(path)),
        errors.InvalidInput,
        "policy.bandwidth.bytes_per_second: '50 furlongs' is not a rate like 50MiB/s",
    )


def test_repo_sync_limit_rate(tmp_path: Path) -> None:
    env = {"SEAWALL_PASSPHRASE": "rate passphrase"}
    runner = CliRunner()
    src = str(tmp_path / "src")
    init = runner.invoke(repo_group, ["init", src, "--kdf", "fast"], env=env)
    assert init.exit_code == 0, init.output
    for i, (text, _) in enumerate(SAME):
        dst = str(tmp_path / f"dst{i}")
        r = runner.invoke(repo_group, ["sync", src, dst, "--limit-rate", text], env=env)
        assert r.exit_code == 0, r.output
    for option, value in (("--limit-rate", "fast"), ("--limit-windows", "8-18=1M")):
        r = runner.invoke(repo_group, ["sync", src, str(tmp_path / "x"), option, value], env=env)
        assert r.exit_code == errors.InvalidInput.exit_code, r.output
        assert r.output.startswith(f"error: {option}: {value!r} is not a "), r.output
        assert r.output.count("\n") == 1


def test_repo_init_chunk_size(tmp_path: Path) -> None:
    env = {"SEAWALL_PASSPHRASE": "size passphrase"}
    runner = CliRunner()
    for i, (text, size) in enumerate([("1MiB", 1 << 20), ("8192", 8192), ("64 KiB", 64 << 10)]):
        args = ["init", str(tmp_path / f"r{i}"), "--kdf", "fast", "--chunk-size", text, "--json"]
        r = runner.invoke(repo_group, args, env=env)
        assert r.exit_code == 0, r.output
        assert json.loads(r.output)["chunk_size"] == size
    r = runner.invoke(repo_group, ["init", str(tmp_path / "x"), "--chunk-size", "1MiB/s"], env=env)
    assert r.exit_code == errors.InvalidInput.exit_code
    assert r.output.startswith("error: --chunk-size: '1MiB/s' is not a size like 10GiB")
    assert r.output.count("\n") == 1
