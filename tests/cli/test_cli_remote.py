"""Client mode: ``seawall --url URL ...`` against a real ``seawall serve`` on 127.0.0.1.

The server runs over the module's ``shop`` world (tests/conftest.py) with a second
tenant, project ``beta``, owning ``ledger`` (as in tests/api/conftest.py); every command
runs as a subprocess, as a user would, with an empty ``SEAWALL_HOME`` of its own, so
whatever it shows came through the API. The drill (the slow part) starts with the server
and runs while the other tests use it; independent commands run side by side.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from seawall import errors
from seawall.api.auth import LocalTokens, Unauthorized
from seawall.model import Selector

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
from test_serve import free_port, serve

pytestmark = pytest.mark.slow


@dataclass
class World:
    url: str
    shop: Any
    client_home: Path
    tokens: dict[str, str]
    checkpoint: str
    drill: subprocess.Popen[str] | None = None

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in self.shop.env.items() if k not in CLIENT_VARS}
        return {**env, "SEAWALL_HOME": str(self.client_home), **extra}

    def remote_args(self, who: str | None, *args: str) -> list[str]:
        """``--url URL [--token T] ARGS``; ``who`` names a token (or is a token itself)."""
        token = ["--token", self.tokens.get(who, who)] if who else []
        return ["--url", self.url, *token, *args]

    def remote(self, who: str | None, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """``seawall --url URL [--token T] ARGS`` with an empty local state directory."""
        return run(self.remote_args(who, *args), self.env(**env))

    def local(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The same command in local mode, on the state directory the server uses."""
        return run(list(args), {k: v for k, v in self.shop.env.items() if k not in CLIENT_VARS})


CLIENT_VARS = {"SEAWALL_URL", "SEAWALL_TOKEN", "OS_AUTH_TOKEN"}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seawall", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def side_by_side(*calls: Callable[[], Any]) -> list[Any]:
    """Independent commands at the same time (each is mostly Python starting up)."""
    with ThreadPoolExecutor(4) as pool:
        return [f.result() for f in [pool.submit(c) for c in calls]]


def ok(r: subprocess.CompletedProcess[str]) -> Any:
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return json.loads(r.stdout) if r.stdout.lstrip().startswith(("[", "{")) else r.stdout


def error_line(r: subprocess.CompletedProcess[str], code: int, *phrases: str) -> str:
    """The command failed with ``code`` and one line on stderr naming the problem."""
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for p in phrases:
        assert p in lines[0], (p, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def world(shop_module: Any) -> Iterator[World]:
    shop = shop_module
    svc = shop.svc
    shop.deploy_ledger("beta")
    svc.create_workload("ledger", "a", Selector.parse("members:db"), "bronze", ["b"], "beta")
    protect = svc.protect("shop")
    assert protect.state.value == "succeeded", shop.explain(protect)
    svc.close()
    tokens = LocalTokens(svc.home)
    issued = {
        "alpha": tokens.issue("default", roles=["dr-operator"]),  # it fails over and cancels
        "beta": tokens.issue("beta"),
        "admin": tokens.issue("admin", admin=True),
    }
    env = {k: v for k, v in shop.env.items() if k not in CLIENT_VARS}
    with serve(svc.home, env, "--no-scheduler", name="remote-cli") as srv:
        w = World(
            srv.url, shop, shop.root / "client-home", issued, protect.result["checkpoint"]["id"]
        )
        w.drill = subprocess.Popen(
            [sys.executable, "-m", "seawall", *w.remote_args("alpha", "--json", "drill", "shop")],
            env=w.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            yield w
        finally:
            if w.drill.poll() is None:
                w.drill.kill()
            if w.drill.stdout is not None and not w.drill.stdout.closed:
                w.drill.communicate()
        assert not w.client_home.exists(), "client mode touched the local state directory"


def test_lists_show_what_the_server_has_as_local_mode_does(world: World) -> None:
    cp_id = world.checkpoint
    listing = ("--json", "workload", "list")
    policies, cps = (
        ("--json", "policy", "list"),
        ("--json", "checkpoint", "list", "--workload", "shop"),
    )
    answers = side_by_side(
        lambda: world.remote("admin", *listing),
        lambda: world.local(*listing),
        lambda: world.remote("admin", "workload", "list"),
        lambda: world.remote("admin", *policies),
        lambda: world.local(*policies),
        lambda: world.remote("alpha", *cps),
        lambda: world.local(*cps),
        lambda: world.remote("alpha", "--json", "site", "list"),
        lambda: world.remote("alpha", "--json", "run", "list", "--workload", "shop"),
        lambda: world.remote("alpha", "--json", "workload", "show", "shop"),
        lambda: world.remote("alpha", "workload", "show", "shop"),
        lambda: world.remote("alpha", "--json", "checkpoint", "diff", cp_id, cp_id),
        lambda: world.local("--json", "checkpoint", "diff", cp_id, cp_id),
    )
    (
        remote,
        local,
        table,
        pol,
        pol_local,
        cp,
        cp_local,
        sites,
        runs,
        shown,
        human,
        drift,
        drift_local,
    ) = map(ok, answers)
    assert sorted(w["name"] for w in remote) == ["ledger", "shop"]
    for r, loc in zip(remote, local, strict=True):  # the same rows; the RPO ages meanwhile
        rpo, loc_rpo = r.pop("achieved_rpo_seconds"), loc.pop("achieved_rpo_seconds")
        assert (rpo is None) == (loc_rpo is None) == (r["name"] == "ledger")
        assert r == loc
    assert "shop" in table and "ledger" in table and "achieved RPO" in table
    assert pol == pol_local and any(p["name"] == "gold" for p in pol)
    assert cp == cp_local  # the drill running meanwhile takes no checkpoint
    assert [(c["id"], c["copies"]) for c in cp] == [(world.checkpoint, ["a", "b"])]
    assert [s["name"] for s in sites] == ["a", "b"]
    protects = [r for r in runs if r["kind"] == "protect"]
    assert [r["state"] for r in protects] == ["succeeded"]
    assert shown["name"] == "shop" and shown["rpo"]["recovery_site"] == "b"
    assert "policy gold" in human
    assert drift == drift_local and drift["workload"] == "shop" and drift["changed"] == []


def test_a_tenant_sees_only_its_projects_workloads(world: World) -> None:
    alpha, beta, beta_cps, beta_runs, alpha_runs, show, drill = side_by_side(
        lambda: world.remote("alpha", "--json", "workload", "list"),
        lambda: world.remote("beta", "--json", "workload", "list"),
        lambda: world.remote("beta", "--json", "checkpoint", "list"),
        lambda: world.remote("beta", "--json", "run", "list"),
        lambda: world.remote("alpha", "--json", "run", "list"),
        lambda: world.remote("beta", "workload", "show", "shop"),
        lambda: world.remote("beta", "drill", "shop"),
    )
    reprotect, failback = side_by_side(
        lambda: world.remote("beta", "reprotect", "shop"),
        lambda: world.remote("beta", "failback", "shop"),
    )
    assert [w["name"] for w in ok(alpha)] == ["shop"]
    assert [(w["name"], w["project"]) for w in ok(beta)] == [("ledger", "beta")]
    assert ok(beta_cps) == [] and ok(beta_runs) == []
    # another project's workload is "not found", exactly like a missing one
    for r in (show, drill, reprotect, failback):  # the server answered: not local-only
        error_line(r, errors.NotFound.exit_code, "workload 'shop' not found")
    protect = ok(alpha_runs)[-1]["id"]
    error_line(world.remote("beta", "run", "show", protect), errors.NotFound.exit_code, protect)


def test_drill_through_the_api_completes_and_reports_like_local_mode(world: World) -> None:
    assert world.drill is not None
    out, err = world.drill.communicate(timeout=240)
    r = subprocess.CompletedProcess(world.drill.args, world.drill.returncode, out, err)
    report = ok(r)
    assert report["state"] == "succeeded" and report["result"]["verified"] is True
    assert report["steps"] and all(s["state"] in ("done", "skipped") for s in report["steps"])
    assert f"run {report['id']} started" in r.stderr
    # the report has the shape of local mode's: `run show` answers the same either way
    shown, local, human, cancel = side_by_side(
        lambda: world.remote("alpha", "--json", "run", "show", report["id"]),
        lambda: world.local("--json", "run", "show", report["id"]),
        lambda: world.remote("alpha", "run", "show", report["id"]),
        lambda: world.remote("alpha", "run", "cancel", report["id"]),
    )
    assert ok(shown) == report == ok(local)
    assert "cleanup-drill:b" in ok(human)
    # a finished run cannot be cancelled: the server's Conflict, local mode's message and code
    error_line(
        cancel, errors.Conflict.exit_code, "succeeded; only unfinished runs can be cancelled"
    )


def test_a_failed_preflight_comes_back_with_its_problems_and_exit_code(world: World) -> None:
    r = world.remote("alpha", "failover", "shop", "--target", "b", "--checkpoint", "cp-missing")
    error_line(
        r, errors.PreflightFailed.exit_code, "checkpoint cp-missing of shop is not at site b"
    )
    assert r.stdout == ""


def test_tokens_wrong_missing_and_from_os_auth_token(world: World) -> None:
    wrong, missing, os_auth_token, via_env = side_by_side(
        lambda: world.remote("sw_not-a-token", "workload", "list"),
        lambda: world.remote(None, "workload", "list"),
        lambda: world.remote(
            None, "--json", "workload", "list", OS_AUTH_TOKEN=world.tokens["beta"]
        ),
        lambda: run(
            ["--json", "site", "list"],
            world.env(SEAWALL_URL=world.url, SEAWALL_TOKEN=world.tokens["alpha"]),
        ),
    )
    error_line(
        wrong,
        Unauthorized.exit_code,
        f"authentication failed at {world.url}",
        "the token is not valid",
    )
    error_line(missing, Unauthorized.exit_code, f"seawall at {world.url} needs a token")
    assert [w["name"] for w in ok(os_auth_token)] == ["ledger"]
    assert len(ok(via_env)) == 2


def test_an_unreachable_server_is_named(world: World) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    refused, no_scheme = side_by_side(
        lambda: run(["--url", url, "--token", "x", "drill", "shop"], world.env()),
        lambda: run(["--url", "127.0.0.1:8470", "workload", "list"], world.env()),
    )
    line = error_line(refused, errors.SiteUnavailable.exit_code, f"cannot reach seawall at {url}")
    assert "connection refused" in line.lower()
    error_line(no_scheme, errors.InvalidInput.exit_code, "--url: '127.0.0.1:8470' is not the")


def test_local_only_commands_are_refused_before_doing_anything(
    world: World, tmp_path: Path
) -> None:
    nowhere = str(tmp_path / "repo")
    commands = {
        "repo init": ["repo", "init", nowhere],
        "site add": ["site", "add", "x", "--driver", "sim", "--param", f"path={nowhere}"],
        "plan show": ["plan", "show", "shop"],
        "serve": ["serve"],
    }
    answers = side_by_side(
        *[lambda args=args: world.remote("alpha", *args) for args in commands.values()],
        lambda: run(["checkpoint", "list", "--site", "b"], world.env(SEAWALL_URL=world.url)),
    )
    for named, r in zip(commands, answers, strict=False):
        error_line(r, errors.InvalidInput.exit_code, f"`seawall {named}` is local-only")
    error_line(answers[-1], errors.InvalidInput.exit_code, "--site: ", "local-only")
    assert not (tmp_path / "repo").exists()


def test_audit_list_reads_the_servers_trail_for_admins_only(world: World) -> None:
    refused = world.remote("beta", "failover", "ledger-of-someone-else")
    assert refused.returncode == errors.NotFound.exit_code
    admin, local, member = side_by_side(
        lambda: world.remote(
            "admin", "--json", "audit", "list", "--project", "beta", "--outcome", "denied"
        ),
        lambda: world.local("--json", "audit", "list", "--project", "beta", "--outcome", "denied"),
        lambda: world.remote("alpha", "audit", "list"),
    )
    records = ok(admin)
    assert records == ok(local)  # the same trail, through the API or from the database
    assert records[0]["action"] == "start_run" and records[0]["status"] == 404
    assert records[0]["target"] == {"name": "ledger-of-someone-else"}
    assert records[0]["initiator"]["project"] == "beta"
    assert records[0]["client"] == "127.0.0.1"
    assert records[0]["user_agent"].startswith("seawall-cli/")
    assert member.returncode != 0 and "admin" in member.stderr
