"""The scheduler: due times (pure), a tick on two sim sites, breaches and alerts.

The process-level tests (two ``seawall serve`` on one PostgreSQL database, the
several-minute acceptance run) are in ``tests/api/test_serve.py``.
"""

from __future__ import annotations

import calendar
import time
from typing import Any

import pytest

from seawall.model import Policy, Run, RunKind, RunState
from seawall.scheduler import (
    Scheduler,
    Webhook,
    cron_next,
    drill_due_at,
    protect_due_at,
    protect_interval,
)

T0 = float(calendar.timegm((2026, 3, 2, 10, 0, 0)))  # a Monday, 10:00 UTC


def run(kind: str, at: float, state: RunState = RunState.SUCCEEDED, duration: float = 5) -> Run:
    return Run(
        id=f"run-{at}",
        kind=RunKind(kind),
        workload="w",
        state=state,
        created_at=at,
        result={"duration_seconds": duration},
    )


# -- due times --------------------------------------------------------------------------


def test_rpo_driven_interval_leaves_room_for_tick_and_run() -> None:
    p = Policy("p", rpo_seconds=600)
    assert protect_interval(p, tick=15, last_duration=30) == 600 - 30 - 60
    # never more often than twice per RPO, however slow the runs are
    assert protect_interval(p, tick=15, last_duration=1000) == 300


def test_never_protected_is_due_now_and_running_is_not_due() -> None:
    p = Policy("p", rpo_seconds=600)
    assert protect_due_at(p, None, tick=10) == 0.0
    assert protect_due_at(p, run("protect", T0, RunState.RUNNING), tick=10) is None
    # without runs (database lost) the newest checkpoint counts
    assert protect_due_at(p, None, tick=10, newest_checkpoint=T0) == T0 + 600 - 20


def test_failed_protect_is_retried_soon() -> None:
    p = Policy("p", rpo_seconds=3600)
    assert protect_due_at(p, run("protect", T0, RunState.REVERTED), tick=10) == T0 + 60
    unreplicated = run("protect", T0, RunState.PARTIALLY_FAILED, duration=0)
    assert protect_due_at(Policy("q", rpo_seconds=60), unreplicated, tick=2) == T0 + 14


def test_missed_rpo_windows_are_caught_up_once() -> None:
    p = Policy("p", rpo_seconds=600)
    last = run("protect", T0)
    down_until = T0 + 10 * 600  # ten intervals of downtime
    assert protect_due_at(p, last, tick=10) <= down_until  # type: ignore[operator]
    after = run("protect", down_until)  # the one catch-up run
    due = protect_due_at(p, after, tick=10)
    assert due is not None and due > down_until + 300


def test_cron_schedule_windows_are_caught_up_once() -> None:
    p = Policy("p", rpo_seconds=3600, schedule="0 * * * *")  # hourly on the hour
    assert cron_next("0 * * * *", T0) == T0 + 3600
    last = run("protect", T0 + 60)
    assert protect_due_at(p, last, tick=10) == T0 + 3600
    now = T0 + 5 * 3600 + 600  # five windows missed
    caught_up = run("protect", now)
    assert protect_due_at(p, caught_up, tick=10) == T0 + 6 * 3600  # the next window only


def test_drill_schedule() -> None:
    p = Policy("p", drill_schedule="0 3 * * 0")  # Sundays 03:00
    assert drill_due_at(Policy("q"), None, T0) is None  # no schedule
    assert drill_due_at(p, None, None) is None  # nothing to drill yet
    sunday = float(calendar.timegm((2026, 3, 8, 3, 0, 0)))
    assert drill_due_at(p, None, T0) == sunday
    assert drill_due_at(p, run("drill", sunday + 100), T0) == sunday + 7 * 86400
    assert drill_due_at(p, run("drill", sunday, RunState.RUNNING), T0) is None


# -- webhook ----------------------------------------------------------------------------


@pytest.fixture
def hook(hook: Any) -> Any:
    """The shared receiver of tests/conftest.py, failing its first two posts."""
    hook.fail = 2
    return hook


def test_webhook_retries_until_delivered(hook: Any) -> None:
    wh = Webhook(hook.url, attempts=4, backoff=0.05)
    wh.send({"event": "test"})
    wh.close(timeout=10)
    assert hook.events() == ["test"] and wh.sent == 1 and wh.failed == 0


def test_a_recovery_unlike_what_it_asked_for_is_alerted(
    seawall_env: dict[str, str], tmp_path: Any, hook: Any
) -> None:
    """A widened firewall after a failover must reach the operator, not only the log."""
    from seawall.service import Service

    hook.fail = 0
    svc = Service(tmp_path / "home")
    sched = Scheduler(svc, tick_seconds=1, webhook=Webhook(hook.url, backoff=0.05))
    try:
        svc.add_event("run-started", "not an alert", workload="shop")
        svc.add_event(
            "fidelity-differences",
            "failover shop: 1 unexplained difference(s), not verified: ...",
            severity="warning",
            workload="shop",
            run_id="run-1",
        )
        sched._alert_new_events()
        wait_for(lambda: hook.events() == ["fidelity-differences"], 10)
        assert hook.received[0]["run_id"] == "run-1"
        assert hook.received[0]["severity"] == "warning"
    finally:
        sched.stop()
        svc.close()


# -- a tick on two sim sites --------------------------------------------------------------


def wait_for(pred: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.slow
def test_tick_protects_when_due_and_watches_the_rpo(shop: Any, hook: Any) -> None:
    svc = shop.svc
    hook.fail = 0
    skew = [0.0]
    sched = Scheduler(
        svc,
        tick_seconds=1,
        webhook=Webhook(hook.url, backoff=0.05),
        clock=lambda: time.time() + skew[0],
    )
    try:
        first = sched.tick()
        assert first.leader and first.started == [("protect", "shop")]
        assert sched.wait_idle(120)
        runs = svc.list_runs("shop")
        assert [r.state for r in runs] == [RunState.SUCCEEDED], shop.explain(runs[0])
        assert svc.list_checkpoints("shop", site="b")
        assert sched.tick().started == []  # not due again for a while
        row = next(r for r in svc.rpo_report() if r["workload"] == "shop")
        assert row["compliant"] and row["achieved_rpo_seconds"] < 60

        # 20 minutes later nothing new has reached b: a breach (gold's RPO is 15 minutes)
        started: list[tuple[str, str]] = []
        sched._launch = lambda op, w: started.append((op, w))  # count, do not run
        skew[0] = 1200
        report = sched.tick()
        assert report.breaches == ["shop"] and started == [("protect", "shop")]
        assert sched.tick().breaches == []  # raised once
        # a new leader knows about the breach from the database
        other = Scheduler(svc, tick_seconds=1, launch=lambda op, w: None)
        svc.release_lease("scheduler", sched.holder)
        skew[0] = 0
        assert other.tick().recovered == ["shop"]
        kinds = [e.kind for e in svc.list_events("shop") if e.kind.startswith("rpo-")]
        assert kinds == ["rpo-recovered", "rpo-breach"]
        wait_for(lambda: hook.events() == ["rpo-breach"], 10)
        assert hook.received[0]["workload"] == "shop"
        assert hook.received[0]["achieved_rpo_seconds"] > 900
    finally:
        sched.stop()


def test_only_the_lease_holder_acts(shop: Any) -> None:
    svc = shop.svc
    a = Scheduler(svc, tick_seconds=1, holder="a", launch=lambda op, w: None)
    b = Scheduler(svc, tick_seconds=1, holder="b", launch=lambda op, w: None)
    assert a.tick().leader
    assert not b.tick().leader
    svc.release_lease("scheduler", "a")
    assert b.tick().leader and not a.tick().leader
