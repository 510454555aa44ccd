"""The command line with bad input: one clear message naming the field, the error tree's
exit code, and nothing created. Also the dry run and ``--json`` output.

Most cases run ``seawall`` in this process (``seawall.cli.main`` with its real error
handling and exit codes); a few run it as a subprocess, as a user would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from seawall import errors
from seawall.cli import main
from seawall.orchestrate.engine import install_runtime


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def seawall(*args: str) -> Result:
    """``seawall ARGS`` in this process, through ``main`` (error handling, exit codes)."""
    runner = CliRunner()
    with runner.isolation() as streams:
        argv = sys.argv
        sys.argv = ["seawall", *args]
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
        finally:
            sys.argv = argv
        out, err = streams[0].getvalue().decode(), streams[1].getvalue().decode()
    return Result(code, out, err)


def fails(result: Result, exc: type[errors.SeawallError], *phrases: str) -> str:
    """The command failed with ``exc``'s exit code and one line naming the problem."""
    assert result.code == exc.exit_code, (result.code, result.out, result.err)
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: "), lines[0]
    for p in phrases:
        assert p in lines[0], (p, lines[0])
    return lines[0]


def listed(*args: str) -> Any:
    r = seawall("--json", *args)
    assert r.code == 0, r.err
    return r.json()


@pytest.fixture
def env(seawall_env: dict[str, str], tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# --------------------------------------------------------------------------------------
# sites
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "exc", "phrases"),
    [
        (["A!", "--driver", "sim"], errors.InvalidInput, ["site.name: 'A!' is not a valid name"]),
        (["x", "--driver", "nope"], errors.InvalidInput, ["site.driver: unknown driver 'nope'"]),
        (["x", "--driver", "sim"], errors.InvalidInput, ["site.params.path: a sim site needs"]),
        (["x"], errors.InvalidInput, ["site.driver: is required"]),
        (["--driver", "sim"], errors.InvalidInput, ["site.name: is required"]),
        (
            ["x", "--driver", "sim", "--param", "path"],
            errors.InvalidInput,
            ["--param: expected KEY=VALUE, got 'path'"],
        ),
        (
            ["x", "--driver", "sim", "--param", "path={tmp}/s", "--key-from", "nosuch"],
            errors.NotFound,
            ["site 'nosuch' not found"],
        ),
    ],
)
def test_site_add_refuses(env: Path, args: list[str], exc: type, phrases: list[str]) -> None:
    args = [a.replace("{tmp}", str(env)) for a in args]
    fails(
        seawall("site", "add", *args, "--repository", str(env / "r"), "--init-repository"),
        exc,
        *phrases,
    )
    assert listed("site", "list") == []
    assert not (env / "r").exists()  # no repository was initialised either


@pytest.mark.parametrize(
    ("text", "phrases"),
    [
        ("name: x\ndriver: sim\nparms: {path: /tmp/x}\n", ["site: unknown field(s) 'parms'"]),
        ("name: x\ndriver: sim\nparams: {path: 5}\n", ["site.params.path: expected a string"]),
        ("name: x\ndriver: sim\nparams: [a]\n", ["site.params: expected a mapping"]),
        ("name: x\ndriver: [sim\n", ["file: ", "is not valid YAML/JSON"]),
        ("- name: x\n", ["file: ", "must hold a mapping at the top level"]),
        ("", ["file: ", "must hold a mapping"]),
    ],
)
def test_site_add_from_a_malformed_file(env: Path, text: str, phrases: list[str]) -> None:
    fails(
        seawall("site", "add", "--file", write(env / "site.yaml", text)),
        errors.InvalidInput,
        *phrases,
    )
    assert listed("site", "list") == []


def test_site_add_missing_file_and_duplicate(env: Path) -> None:
    fails(
        seawall("site", "add", "--file", str(env / "nope.yaml")),
        errors.InvalidInput,
        "file: cannot read",
        "No such file",
    )
    site = write(
        env / "site.json",
        json.dumps({"name": "s", "driver": "sim", "params": {"path": str(env / "s")}}),
    )
    assert seawall("site", "add", "--file", site).code == 0
    fails(seawall("site", "add", "--file", site), errors.Conflict, "site s already exists")
    assert [s["name"] for s in listed("site", "list")] == ["s"]
    fails(seawall("site", "remove", "nosuch"), errors.NotFound, "site 'nosuch' not found")


SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
S3_URL = "s3://backups/site-s?endpoint=http://127.0.0.1:7480"


def nothing_holds(root: Path, secret: str) -> None:
    """No file under ``root`` (the state database, the home, the sim site) holds
    ``secret`` in plain text."""
    holders = [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert holders == [], holders


def test_s3_credentials_are_kept_encrypted_apart_from_the_site(env: Path) -> None:
    key_file = write(env / "s3-secret", SECRET + "\n")
    added = seawall("--json", "site", "add", "s", "--driver", "sim", "--param",
                    f"path={env / 's'}", "--repository", S3_URL, "--s3-access-key-id",
                    "AKIDEXAMPLE", "--s3-secret-access-key-file", key_file)  # fmt: skip
    assert added.code == 0, added.err
    assert added.json()["repository"] == S3_URL
    (env / "s3-secret").unlink()
    nothing_holds(env, SECRET)
    nothing_holds(env, "AKIDEXAMPLE")
    sealed = env / "home" / "credentials" / "s.key"
    assert sealed.stat().st_mode & 0o777 == 0o600
    assert [s["repository"] for s in listed("site", "list")] == [S3_URL]
    assert SECRET not in seawall("site", "list").out


def test_credentials_written_into_a_repository_url_are_moved_out_of_it(env: Path) -> None:
    url = f"{S3_URL}&access_key_id=AKIDEXAMPLE&secret_access_key={SECRET}"
    added = seawall("--json", "site", "add", "s", "--driver", "sim", "--param",
                    f"path={env / 's'}", "--repository", url)  # fmt: skip
    assert added.code == 0, added.err
    assert SECRET not in added.out
    nothing_holds(env, SECRET)
    assert [s["repository"] for s in listed("site", "list")] == [S3_URL]


def test_a_site_added_with_credentials_in_its_url_is_masked_until_they_are_moved(
    env: Path,
) -> None:
    """A site an older seawall stored with its URL's credentials still works, is shown
    with ``***`` and ``seawall site credentials`` moves them out of the state database."""
    from seawall.db import StateStore
    from seawall.model import Site

    url = f"{S3_URL}&access_key_id=AKIDEXAMPLE&secret_access_key={SECRET}"
    with StateStore(f"sqlite:///{env / 'home' / 'state.db'}") as db:
        db.add_site(Site("old", "sim", {"path": str(env / "old")}, url))
    shown = " ".join(seawall("site", "list").out.split())  # the table wraps
    assert SECRET not in shown, shown  # the table cuts the URL: the JSON shows the mask
    assert "move them out with `seawall site credentials old`" in shown
    (listed_site,) = listed("site", "list")
    assert listed_site["repository"] == f"{S3_URL}&access_key_id=***&secret_access_key=***"
    moved = seawall("site", "credentials", "old")
    assert moved.code == 0, moved.err
    nothing_holds(env, SECRET)
    assert [s["repository"] for s in listed("site", "list")] == [S3_URL]
    half = seawall("site", "credentials", "old", "--s3-access-key-id", "AKID")
    fails(half, errors.InvalidInput, "give both --s3-access-key-id and --s3-secret-access-key")


def test_a_site_parameter_that_holds_a_password_is_refused(env: Path) -> None:
    fails(
        seawall(
            "site",
            "add",
            "os",
            "--driver",
            "sim",
            "--param",
            f"path={env / 'os'}",
            "--param",
            "password=hunter2",
        ),
        errors.InvalidInput,
        "password: a site's parameters are stored and shown in plain text",
        "clouds.yaml",
    )
    assert listed("site", "list") == []


# --------------------------------------------------------------------------------------
# policies
# --------------------------------------------------------------------------------------

PRESETS = ["gold", "silver", "bronze"]


@pytest.mark.parametrize(
    ("args", "file", "exc", "phrases"),
    [
        (["p", "--rpo", "abc"], None, errors.InvalidInput, ["--rpo: 'abc' is not a duration"]),
        (["p", "--rto", "1x"], None, errors.InvalidInput, ["--rto: '1x' is not a duration"]),
        (
            ["p", "--rpo", "10s"],
            None,
            errors.InvalidInput,
            ["policy.rpo_seconds: must be at least 60 seconds"],
        ),
        (
            ["p", "--keep-last", "0"],
            None,
            errors.InvalidInput,
            ["policy.retention.last: must keep at least the newest checkpoint"],
        ),
        (
            ["p", "--limit-rate", "fast"],
            None,
            errors.InvalidInput,
            ["--limit-rate: 'fast' is not a rate like 50MiB/s"],
        ),
        (
            ["p", "--consistency", "application"],
            None,
            errors.InvalidInput,
            ["policy.quiesce: application consistency needs at least one quiesce hook"],
        ),
        (["--rpo", "15m"], None, errors.InvalidInput, ["policy.name: is required"]),
        (["gold"], None, errors.Conflict, ["gold is a built-in tier"]),
        (["p", "--target", "nosuch"], None, errors.NotFound, ["site 'nosuch' not found"]),
        (
            [],
            "name: p\nrpo_seconds: abc\n",
            errors.InvalidInput,
            ["policy.rpo_seconds: expected an integer, got 'abc'"],
        ),
        (
            [],
            "name: p\nrpo: 900\n",
            errors.InvalidInput,
            ["policy: unknown field(s) 'rpo'; allowed:"],
        ),
        (
            [],
            "name: p\nretention: {daily: -1}\n",
            errors.InvalidInput,
            ["policy.retention.daily: must be >= 0"],
        ),
        (
            [],
            "name: p\nquiesce: [{agent: script, on_failure: ignore}]\n",
            errors.InvalidInput,
            ["policy.quiesce[0].on_failure: 'ignore' is not one of 'fail', 'degrade'"],
        ),
        (
            [],
            "name: p\nbandwidth: {windows: [{start_hour: 1, bytes_per_second: 5}]}\n",
            errors.InvalidInput,
            ["policy.bandwidth.windows[0].end_hour: is required"],
        ),
    ],
)
def test_policy_create_refuses(
    env: Path, args: list[str], file: str | None, exc: type, phrases: list[str]
) -> None:
    if file is not None:
        args = [*args, "--file", write(env / "policy.yaml", file)]
    fails(seawall("policy", "create", *args), exc, *phrases)
    assert [p["name"] for p in listed("policy", "list")] == PRESETS


def test_policy_create_and_show(env: Path) -> None:
    r = seawall(
        "--json",
        "policy",
        "create",
        "p",
        "--rpo",
        "15m",
        "--rto",
        "1h",
        "--keep-last",
        "3",
        "--keep-daily",
        "7",
        "--limit-rate",
        "10MiB/s",
    )
    assert r.code == 0, r.err
    p = r.json()
    assert p["rpo_seconds"] == 900 and p["rto_target_seconds"] == 3600
    assert p["retention"]["last"] == 3 and p["retention"]["daily"] == 7
    assert p["bandwidth"]["bytes_per_second"] == 10 << 20
    assert listed("policy", "show", "p") == p
    assert [x["name"] for x in listed("policy", "list")] == [*PRESETS, "p"]
    fails(seawall("policy", "show", "nosuch"), errors.NotFound, "policy 'nosuch' not found")


# --------------------------------------------------------------------------------------
# workloads
# --------------------------------------------------------------------------------------


@pytest.fixture
def two_sites(env: Path) -> Path:
    for name in ("a", "b"):
        r = seawall("site", "add", name, "--driver", "sim", "--param", f"path={env / name}")
        assert r.code == 0, r.err
    return env


@pytest.mark.parametrize(
    ("args", "exc", "phrases"),
    [
        (
            ["w", "--site", "a", "--policy", "gold", "--select", "tag:"],
            errors.InvalidInput,
            ["select: expected tag:key=value"],
        ),
        (
            ["w", "--site", "a", "--policy", "gold", "--select", "everything"],
            errors.InvalidInput,
            ["select: unknown selector 'everything'"],
        ),
        (
            ["w", "--site", "a", "--policy", "gold"],
            errors.InvalidInput,
            ["selector: give either --select or one or more --member"],
        ),
        (
            ["w", "--site", "a", "--policy", "gold", "--select", "project", "--member", "db"],
            errors.InvalidInput,
            ["selector: give either"],
        ),
        (
            ["W!", "--site", "a", "--policy", "gold", "--select", "project"],
            errors.InvalidInput,
            ["workload.name: 'W!' is not a valid name"],
        ),
        (
            ["w", "--site", "a", "--policy", "gold", "--select", "project", "--target", "a"],
            errors.InvalidInput,
            ["workload.targets: a workload cannot target its own site"],
        ),
        # every problem at once
        (
            ["w", "--site", "x", "--policy", "platinum", "--member", "db", "--target", "y"],
            errors.InvalidInput,
            [
                "workload: site 'x' does not exist",
                "site 'y' does not exist",
                "policy 'platinum' does not exist",
            ],
        ),
    ],
)
def test_workload_create_refuses(
    two_sites: Path, args: list[str], exc: type, phrases: list[str]
) -> None:
    fails(seawall("workload", "create", *args), exc, *phrases)
    assert listed("workload", "list") == []


def test_workload_create_needs_an_option(two_sites: Path) -> None:
    r = seawall("workload", "create", "w", "--policy", "gold", "--member", "db")
    assert r.code == 2 and "Missing option '--site'" in r.err
    assert listed("workload", "list") == []
    r = seawall("nosuch-command")
    assert r.code == 2 and "No such command" in r.err


def test_workload_with_a_selector_that_matches_nothing(two_sites: Path) -> None:
    assert (
        seawall(
            "workload",
            "create",
            "w",
            "--site",
            "a",
            "--policy",
            "gold",
            "--select",
            "tag:app=none",
            "--target",
            "b",
        ).code
        == 0
    )
    fails(
        seawall("workload", "show", "w"),
        errors.InvalidInput,
        "workload.selector: the selector matches nothing at site a",
    )
    fails(seawall("protect", "w"), errors.InvalidInput, "workload.selector: the selector")
    assert listed("run", "list") == [] and listed("checkpoint", "list") == []


# --------------------------------------------------------------------------------------
# recovery plans
# --------------------------------------------------------------------------------------


@pytest.fixture
def workload(two_sites: Path) -> Path:
    r = seawall(
        "workload",
        "create",
        "w",
        "--site",
        "a",
        "--policy",
        "gold",
        "--select",
        "tag:app=shop",
        "--target",
        "b",
    )
    assert r.code == 0, r.err
    return two_sites


@pytest.mark.parametrize(
    ("text", "exc", "phrases"),
    [
        ("workload: w\n", errors.InvalidInput, ["plan.target: is required"]),
        (
            "workload: w\ntarget: b\nboot_group: []\n",
            errors.InvalidInput,
            ["plan: unknown field(s) 'boot_group'"],
        ),
        (
            "workload: w\ntarget: b\nboot_groups: [{name: g, servers: db}]\n",
            errors.InvalidInput,
            ["plan.boot_groups[0].servers: expected a list, got 'db'"],
        ),
        (
            "workload: w\ntarget: b\nhealth_checks: [{server: db, kind: ping}]\n",
            errors.InvalidInput,
            ["plan.health_checks[0].kind: 'ping' is not one of"],
        ),
        (
            "workload: w\ntarget: b\nhealth_checks: [{server: db, port: '80'}]\n",
            errors.InvalidInput,
            ["plan.health_checks[0].port: expected an integer, got '80'"],
        ),
        (
            "workload: w\ntarget: b\nmappings: {ip_policy: static}\n",
            errors.InvalidInput,
            ["plan.mappings.ip_policy: 'static' is not one of 'preserve', 'dhcp'"],
        ),
        (
            "workload: w\ntarget: b\nscripts: [{stage: final}]\n",
            errors.InvalidInput,
            ["plan.scripts[0].command: is required"],
        ),
        ("workload: nosuch\ntarget: b\n", errors.NotFound, ["workload 'nosuch' not found"]),
        ("workload: w\ntarget: nosuch\n", errors.NotFound, ["site 'nosuch' not found"]),
    ],
)
def test_plan_set_refuses(workload: Path, text: str, exc: type, phrases: list[str]) -> None:
    from seawall.service import Service

    fails(seawall("plan", "set", "--file", write(workload / "plan.yaml", text)), exc, *phrases)
    svc = Service()
    try:
        assert svc.db.list_plans() == []
    finally:
        svc.close()


def test_run_and_checkpoint_commands_name_what_is_missing(workload: Path) -> None:
    fails(seawall("run", "show", "run-nope"), errors.NotFound, "run 'run-nope' not found")
    fails(seawall("run", "cancel", "run-nope"), errors.NotFound, "run 'run-nope' not found")
    fails(seawall("checkpoint", "show", "cp-nope"), errors.NotFound, "checkpoint 'cp-nope'")
    fails(seawall("failover", "nosuch"), errors.NotFound, "workload 'nosuch' not found")
    fails(
        seawall("plan", "show", "w", "--operation", "failover", "--target", "nosuch"),
        errors.NotFound,
        "site 'nosuch' not found",
    )
    r = seawall("plan", "show", "w", "--operation", "evacuate")
    assert r.code == 2 and "Invalid value for '--operation'" in r.err


def test_a_missing_passphrase_is_named(workload: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEAWALL_PASSPHRASE")
    fails(
        seawall(
            "site",
            "add",
            "c",
            "--driver",
            "sim",
            "--param",
            f"path={workload / 'c'}",
            "--repository",
            str(workload / "rc"),
            "--init-repository",
        ),
        errors.KeyMissing,
        "no repository passphrase: set SEAWALL_PASSPHRASE",
    )
    assert [s["name"] for s in listed("site", "list")] == ["a", "b"]


@pytest.fixture
def with_repository(two_sites: Path) -> Path:
    """Site ``c`` with a repository, and workload ``wc`` on it (whose selector matches
    nothing: a protect that passes its preflight fails later, at planning)."""
    r = seawall("site", "add", "c", "--driver", "sim", "--param", f"path={two_sites / 'c'}",
                "--repository", str(two_sites / "rc"), "--init-repository")  # fmt: skip
    assert r.code == 0, r.err
    r = seawall("workload", "create", "wc", "--site", "c", "--policy", "gold",
                "--select", "tag:app=none")  # fmt: skip
    assert r.code == 0, r.err
    return two_sites


def no_runs() -> None:
    from seawall.service import Service

    svc = Service()
    try:
        assert svc.list_runs() == []
    finally:
        svc.close()


def test_a_wrong_passphrase_stops_a_protect_at_preflight(
    with_repository: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exit 9 before any run exists or the workload is even resolved (it used to be a
    reverted run and exit 1)."""
    fails(seawall("protect", "wc"), errors.InvalidInput, "selector matches nothing")
    monkeypatch.setenv("SEAWALL_PASSPHRASE", "not the one")
    fails(seawall("protect", "wc"), errors.WrongPassphrase, "passphrase")
    no_runs()


def test_a_passphrase_file_is_taken_by_every_command_and_refused_when_loose(
    with_repository: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pp = with_repository / "pp"
    pp.write_text(os.environ["SEAWALL_PASSPHRASE"] + "\n")
    pp.chmod(0o644)
    monkeypatch.delenv("SEAWALL_PASSPHRASE")
    monkeypatch.setenv("SEAWALL_PASSPHRASE_FILE", str(pp))
    repo = str(with_repository / "rc")
    for args in (("protect", "wc"), ("repo", "stats", repo)):
        fails(seawall(*args), errors.KeyMissing, f"{pp} is open to group or others", "chmod 600")
    no_runs()
    pp.chmod(0o600)
    assert seawall("repo", "stats", repo).code == 0, "the repo commands read the file too"
    fails(seawall("protect", "wc"), errors.InvalidInput, "selector matches nothing")


def test_a_recovery_report_says_what_was_verified_and_names_each_difference(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from seawall.cli.context import Ctx
    from seawall.cli.operations import report_run
    from seawall.model import Run, RunKind, RunState

    difference = {
        "resource": "security_group db",
        "attribute": "rules[ingress IPv4 tcp 5432 from any]",
        "expected": None,
        "actual": {"protocol": "tcp"},
    }
    result = {
        "verified": False,
        "volumes_verified": 0,
        "fidelity": {"checked": 7, "ok": False, "differences": [difference]},
    }
    run = Run("run-1", RunKind.FAILOVER, "shop", RunState.SUCCEEDED, result=result)
    report_run(Ctx(None, False), run, [])  # a succeeded run: no exit
    lines = [line.strip() for line in capsys.readouterr().out.splitlines()]
    assert "verified: False" in lines and "volumes_verified: 0" in lines
    assert "fidelity: 7 resource(s) checked, 1 unexplained difference(s)" in lines
    assert (
        "security_group db.rules[ingress IPv4 tcp 5432 from any]: expected (absent), "
        'got {"protocol": "tcp"}'
    ) in lines


# --------------------------------------------------------------------------------------
# On a protected workload: preflight, dry runs, --json
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(shop_module: Any) -> Any:
    install_runtime(shop_module.svc)
    run = shop_module.svc.protect("shop")
    assert run.state.value == "succeeded", shop_module.explain(run)
    shop_module.checkpoint = run.result["checkpoint"]["id"]
    return shop_module


@pytest.fixture
def shop(world: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The protected world, with this process's environment pointing at it; whatever a
    test does through the CLI must leave both sites as they were."""
    for k in ("SEAWALL_HOME", "SEAWALL_PASSPHRASE", "SEAWALL_KDF", "SEAWALL_BACKOFF_START"):
        monkeypatch.setenv(k, world.env[k])
    monkeypatch.delenv("SEAWALL_PASSPHRASE_FILE", raising=False)
    before = {s: world.inventory(s) for s in ("a", "b")}
    runs = [r.id for r in world.svc.list_runs()]
    files = {s: world.files(s) for s in ("a", "b")}
    yield world
    install_runtime(world.svc)  # an in-process command installed (and closed) its own
    assert {s: world.inventory(s) for s in ("a", "b")} == before
    assert {s: world.files(s) for s in ("a", "b")} == files
    assert [r.id for r in world.svc.list_runs()] == runs


def test_failover_preflight_lists_every_problem_at_once_and_creates_nothing(shop: Any) -> None:
    plan = shop.plan(
        "b",
        mappings={"network": {"net": "prod-net"}, "flavor": {"small": "m1.xlarge"}},
    )
    plan["boot_groups"][0]["servers"] = ["db", "ghost"]
    shop.svc.set_plan(plan)
    quotas = shop.site_path("b") / "quotas.json"
    quotas.write_text(json.dumps({"servers": 2, "volume_bytes": 1 << 20}))
    # the checkpoint's manifest at b is damaged
    manifest = shop.root / "repos" / "b" / "manifests" / shop.checkpoint
    good = manifest.read_bytes()
    manifest.write_bytes(good[:-7] + b"garbage")
    try:
        r = seawall("failover", "shop", "--target", "b", "--checkpoint", shop.checkpoint)
    finally:
        manifest.write_bytes(good)
        quotas.unlink()
        shop.svc.set_plan(shop.plan("b"))
    line = fails(r, errors.PreflightFailed, "preflight failed (6 problem(s))")
    for phrase in (
        f"checkpoint {shop.checkpoint} unreadable at b",
        "mapping network 'net' -> 'prod-net': no network named 'prod-net' at site b",
        "mapping flavor 'small' -> 'm1.xlarge': no flavor named 'm1.xlarge' at site b",
        "boot group names server 'ghost', not in the checkpoint",
        "quota at b: needs 3 servers, only 2 left",
        "quota at b: needs 3145728 volume_bytes, only 1048576 left",
    ):
        assert phrase in line, phrase


def test_drill_preflight_over_quota_creates_nothing(shop: Any) -> None:
    quotas = shop.site_path("b") / "quotas.json"
    quotas.write_text(json.dumps({"networks": 0}))
    try:
        r = seawall("--json", "drill", "shop", "--target", "b")
    finally:
        quotas.unlink()
    fails(r, errors.PreflightFailed, "quota at b: needs 1 networks, only 0 left")
    assert r.out == ""


@pytest.mark.parametrize("operation", ["failover", "drill", "migrate", "protect"])
def test_plan_show_is_a_dry_run(shop: Any, operation: str) -> None:
    r = seawall("plan", "show", "shop", "--operation", operation, "--target", "b")
    assert r.code == 0, r.err
    assert r.out.splitlines()[-1].endswith(" steps")
    if operation != "protect":
        assert "create-server:db" in r.out and "check-health:web:http:8000" in r.out
    if operation == "drill":
        assert "cleanup-drill:b" in r.out and "floating_ip" not in r.out
    if operation == "migrate":
        assert "fence-server:db" in r.out
    data = listed("plan", "show", "shop", "--operation", operation, "--target", "b")
    steps = [s["name"] for st in data["stages"] for s in st["steps"]]
    assert f"{len(steps)} steps" in r.out
    fresh = re.compile(r"cp-\d{8}T\d{6}-[0-9a-f]{6}")  # each dry run names a new checkpoint
    assert all(fresh.sub("cp-*", name) in fresh.sub("cp-*", r.out) for name in steps)
    for name in ("db", "app", "web"):  # a dry run of a migration fences nothing
        assert shop.server("a", name).attrs["status"] == "ACTIVE"


def test_json_outputs_parse(shop: Any) -> None:
    sites = listed("site", "list")
    assert [s["name"] for s in sites] == ["a", "b"]
    workloads = listed("workload", "list")
    assert workloads[0]["name"] == "shop" and workloads[0]["achieved_rpo_seconds"] >= 0
    shown = listed("workload", "show", "shop")
    assert {"graph", "restore_order"} <= set(shown)
    assert shown["restore_order"].index("server/web") > shown["restore_order"].index(
        "port/web-port"
    )
    cps = listed("checkpoint", "list", "--workload", "shop")
    assert [c["id"] for c in cps] == [shop.checkpoint] and cps[0]["copies"] == ["a", "b"]
    assert listed("checkpoint", "list", "--site", "b")[0]["id"] == shop.checkpoint
    assert listed("checkpoint", "show", shop.checkpoint)["id"] == shop.checkpoint
    verify = listed("checkpoint", "verify", shop.checkpoint, "--site", "b")
    assert verify["ok"] is True
    runs = listed("run", "list")
    assert runs[0]["kind"] == "protect" and runs[0]["state"] == "succeeded"
    run = listed("run", "show", runs[0]["id"])
    assert run["steps"] and all(s["state"] == "done" for s in run["steps"])
    fails(
        seawall("run", "cancel", runs[0]["id"]),
        errors.Conflict,
        "is succeeded; only unfinished runs can be cancelled",
    )
    plugins = listed("plugins")
    assert any(p["kind"] == "clouds" and p["name"] == "sim" for p in plugins)
    assert listed("run", "resume") == []


def test_checkpoint_diff_shows_the_drift_between_two_checkpoints(shop: Any) -> None:
    """From the protected checkpoint to a later one (cached as a protect run would) in
    which server app is gone, server web has a metadata key and is powered off."""
    from dataclasses import replace

    from seawall.model import ResourceGraph, ResourceKind

    first = shop.svc.get_checkpoint(shop.checkpoint)
    resources = []
    for r in first.graph.resources:
        if r.kind is ResourceKind.SERVER and r.name == "app":
            continue
        if r.kind is ResourceKind.SERVER and r.name == "web":
            r = replace(r, attrs={**r.attrs, "metadata": {"role": "front"}, "status": "SHUTOFF"})
        resources.append(r)
    later = replace(
        first,
        id="cp-later",
        created_at=first.created_at + 60,
        graph=ResourceGraph(tuple(resources)),
    )
    other = replace(first, id="cp-ledger", workload="ledger")
    for cp in (later, other):
        shop.svc.db.put_checkpoint(cp, sites=["a"])
    try:
        assert listed("checkpoint", "diff", first.id, "cp-later") == {
            "workload": "shop",
            "older": first.id,
            "newer": "cp-later",
            "added": [],
            "removed": ["server app"],
            "changed": [
                {
                    "resource": "server web",
                    "attribute": "metadata.role",
                    "before": None,
                    "after": "front",
                }
            ],
        }
        backwards = listed("checkpoint", "diff", "cp-later", first.id)
        assert backwards["added"] == ["server app"] and backwards["removed"] == []
        human = seawall("checkpoint", "diff", first.id, "cp-later")
        assert human.code == 0, human.err
        lines = [line.strip() for line in human.out.splitlines()]
        assert lines == [
            f"checkpoint {first.id} -> cp-later (shop)",
            "- server app",
            '~ server web.metadata.role: (absent) -> "front"',
        ]
        same = seawall("checkpoint", "diff", first.id, first.id)
        assert same.code == 0 and "no changes" in same.out
        fails(
            seawall("checkpoint", "diff", first.id, "cp-ledger"),
            errors.InvalidInput,
            "diff two checkpoints of the same workload",
        )
        fails(seawall("checkpoint", "diff", first.id, "cp-nope"), errors.NotFound, "cp-nope")
    finally:
        for cp in (later, other):
            shop.svc.db.remove_checkpoint(cp.id)


def test_subprocess_exit_codes_and_json(shop: Any) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "seawall", *args],
            env=shop.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    r = run("--json", "checkpoint", "list")
    assert r.returncode == 0 and json.loads(r.stdout)[0]["id"] == shop.checkpoint
    r = run("workload", "create", "x", "--site", "a", "--policy", "gold", "--select", "tag:")
    assert r.returncode == errors.InvalidInput.exit_code
    assert r.stderr.strip() == "error: select: expected tag:key=value[,key=value], got 'tag:'"
    r = run("failover", "shop", "--target", "b", "--checkpoint", "cp-missing")
    assert r.returncode == errors.PreflightFailed.exit_code
    assert "checkpoint cp-missing of shop is not at site b" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
