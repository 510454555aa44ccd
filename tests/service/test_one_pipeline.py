"""Issue 10's acceptance: a protect, a drill and a failover started from the CLI, the API
and the scheduler go through the same function and all record the same usage.

One ``shop`` world (tests/conftest.py), real parts throughout: the CLI in this process
through ``seawall.cli.main``, the API through FastAPI's TestClient and its Launcher, the
scheduler ticking with its clock eight days ahead (so its protect and its weekly drill
are due). The scheduler starts protects and drills only — never a failover — so it runs
two of the three. A spy on :meth:`Pipeline.execute` (the function every path ends in)
records who came through; the runs' results and the usage table are the behaviour.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from seawall.api.app import Launcher, create_app
from seawall.api.auth import Authenticator, LocalTokens
from seawall.cli import main
from seawall.model import ResourceKind, Run, RunKind, RunState
from seawall.orchestrate.runtime import install_runtime
from seawall.scheduler import Scheduler
from seawall.service.audit import AuditFilter
from seawall.service.operations import Pipeline
from seawall.service.outcome import UNFINISHED, Outcome

RECOVERIES = (RunKind.DRILL, RunKind.FAILOVER)


def cli(*args: str) -> dict[str, Any]:
    """``seawall --json ARGS`` in this process (so the spy sees it); the run it printed."""
    runner = CliRunner()
    with runner.isolation() as streams:
        argv = sys.argv
        sys.argv = ["seawall", "--json", *args]
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
        finally:
            sys.argv = argv
        out, err = streams[0].getvalue().decode(), streams[1].getvalue().decode()
    assert code == 0, (args, out, err)
    data: dict[str, Any] = json.loads(out)
    return data


def finished(svc: Any, run_id: str, timeout: float = 300) -> Run:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run: Run = svc.get_run(run_id)
        if run.state not in UNFINISHED:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish in {timeout}s")


def release_floating_ips(shop: Any, site: str) -> None:
    """Free the old primary's floating IP (still held by the servers the first failover
    left behind there), as an operator does before failing over back onto that site."""
    driver = shop.driver(site)
    for fip in driver.list_resources(ResourceKind.FLOATING_IP):
        driver.delete(fip.ref)


def key_kinds(run: Run) -> set[str]:
    """The kinds of key a run's result holds (``check:<step>`` counts as ``check``: step
    and site names differ with the direction of the run, the record does not)."""
    return {k.split(":", 1)[0] for k in run.result}


@pytest.mark.slow
def test_cli_api_and_scheduler_start_operations_through_one_pipeline(
    shop: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = shop.svc
    executed: list[tuple[str, str]] = []
    finalized: list[str] = []
    real_execute, real_finalize = Pipeline.execute, Outcome.finalize

    def execute(self: Pipeline, run: Run, flow: Any) -> Run:
        executed.append((run.kind.value, str(run.params.get("started_by", "cli"))))
        return real_execute(self, run, flow)

    def finalize(self: Outcome, run_id: str, engine_state: str, error: str) -> Run:
        finalized.append(run_id)
        return real_finalize(self, run_id, engine_state, error)

    monkeypatch.setattr(Pipeline, "execute", execute)
    monkeypatch.setattr(Outcome, "finalize", finalize)

    # the CLI: protect a -> b, drill at b, fail over to b (the workload now runs at b)
    ids = {
        "cli": [
            cli(*args)["id"]
            for args in (
                ("protect", "shop"),
                ("drill", "shop"),
                ("failover", "shop", "--target", "b"),
            )
        ]
    }
    install_runtime(svc)  # each in-process command installed (and closed) its own
    assert svc.get_workload("shop").site == "b"

    # the scheduler, eight days on: protect b -> a, then the weekly drill at a
    sched = Scheduler(svc, tick_seconds=1, max_parallel=1, clock=lambda: time.time() + 8 * 86400)
    try:
        assert sorted(sched.tick().started) == [("drill", "shop"), ("protect", "shop")]
        assert sched.wait_idle(600)
    finally:
        sched.stop()
    by_scheduler = [r for r in svc.list_runs("shop") if r.params.get("started_by") == "scheduler"]
    ids["scheduler"] = [r.id for r in sorted(by_scheduler, key=lambda r: r.created_at)]

    # the API: protect b -> a, drill at a, fail over back to a
    tokens = LocalTokens(svc.home)
    headers = {"Authorization": f"Bearer {tokens.issue('default', roles=['dr-operator'])}"}
    launcher = Launcher(svc, 1)
    ids["api"] = []
    with TestClient(create_app(svc, Authenticator(tokens), launcher=launcher)) as client:
        for body in ({"operation": "protect"}, {"operation": "drill"}, {"operation": "failover"}):
            if body["operation"] == "failover":
                release_floating_ips(shop, "a")
            r = client.post("/v1/workloads/shop/runs", json=body, headers=headers)
            assert r.status_code == 202, r.text
            ids["api"].append(finished(svc, r.json()["id"]).id)
    launcher.pool.shutdown(wait=True)

    # one function for all of them, and one end
    assert executed == [
        ("protect", "cli"),
        ("drill", "cli"),
        ("failover", "cli"),
        ("protect", "scheduler"),
        ("drill", "scheduler"),
        ("protect", "api"),
        ("drill", "api"),
        ("failover", "api"),
    ]
    all_ids = [i for origin in ("cli", "scheduler", "api") for i in ids[origin]]
    assert finalized == all_ids
    runs = {origin: [svc.get_run(i) for i in ids[origin]] for origin in ids}
    for run in (r for rs in runs.values() for r in rs):
        assert run.state is RunState.SUCCEEDED, shop.explain(run)
    assert svc.get_workload("shop").site == "a"  # the API's failover brought it back

    # each run names who started it, and the audit trail has its start and its end
    vias = {o: {r.params["initiator"]["via"] for r in rs} for o, rs in runs.items()}
    assert vias == {"cli": {"cli"}, "scheduler": {"scheduler"}, "api": {"local"}}
    for action in ("run.start", "run.end"):
        audited = svc.audit.list(AuditFilter(action=action), limit=100)
        assert sorted(r.target["run_id"] for r in audited) == sorted(all_ids)

    # the same usage: compute-hours for every drill and failover, whoever started it
    recoveries = [r for rs in runs.values() for r in rs if r.kind in RECOVERIES]
    assert len(recoveries) == 5
    for run in recoveries:
        assert run.result["compute_hours"] > 0, run.id
    for run in (r for rs in runs.values() for r in rs if r.kind is RunKind.PROTECT):
        assert "compute_hours" not in run.result
    charged = svc.usage("default")["default"]
    assert charged["compute_hours"] == pytest.approx(
        sum(r.result["compute_hours"] for r in recoveries), abs=1e-5
    )
    assert charged["bytes_protected"] > 0 and charged["bytes_replicated"] > 0

    # and the same record: each kind's result holds the same kinds of key on every path
    for kind in (RunKind.PROTECT, RunKind.DRILL, RunKind.FAILOVER):
        shapes = {origin: key_kinds(r) for origin, rs in runs.items() for r in rs if r.kind is kind}
        assert len(set(map(frozenset, shapes.values()))) == 1, (kind, shapes)
