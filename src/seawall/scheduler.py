"""The scheduler inside ``seawall serve``: protect on time, drill on time, watch the RPO.

One tick (every ``tick_seconds``) does, for every workload, from two grouped queries:

- **protect when due.** With an empty ``policy.schedule`` the due time is driven by the
  RPO: the next protect starts when the newest protect is ``interval`` old, where
  ``interval = max(rpo/2, rpo - 2*tick - 2*last_duration)``, so the newest checkpoint is
  replaced before it grows older than the RPO even counting a tick's delay and the run's
  own duration. With a cron ``policy.schedule`` the protect is due at the first window
  after the newest protect. A protect that failed or could not replicate is retried
  after ``min(interval/4, 60s)``.
  Retention and replication to the policy's targets are part of the protect flow.
- **drill when due** on ``policy.drill_schedule`` (cron), once a checkpoint exists at
  the recovery site.
- **catch up once.** Due times are computed from the newest run, never by replaying the
  windows in between, so after downtime each missed schedule gives one run, not N.
- **RPO breaches.** Achieved RPO (age of the newest checkpoint at the recovery site,
  :meth:`Service.rpo_report`) above the policy's RPO records an ``rpo-breach`` event and
  posts a webhook alert; coming back within the RPO records ``rpo-recovered`` (and
  alerts again). Failed runs and replications are alerted as they appear in the events.
- **usage.** Every run charges its own compute-hours as it ends (the service's
  ``finalize``, whoever started it); the tick only catches up drills and recoveries
  whose process died between their end and that charge (protect records bytes
  protected, stored and replicated as it runs).

Exactly one leader: the tick acts only while it holds the ``scheduler`` lease in the
state database. Every operation additionally runs under a lease of its own
(``protect:<workload>``, ``drill:<workload>``), taken before the run is planned and
renewed while it runs, and the due time is re-checked under that lease, so two
``seawall serve`` processes on one database never start the same protect twice, even
around a change of leader. Operations run on a small thread pool: the tick never waits
for a run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from croniter import croniter

from seawall.errors import SeawallError
from seawall.model import Policy, Run, RunKind, RunState
from seawall.service import Service
from seawall.service.audit import SCHEDULER

log = logging.getLogger("seawall.scheduler")

LEADER_LEASE = "scheduler"
RUNNING = frozenset({RunState.PENDING, RunState.RUNNING, RunState.CANCELLING, RunState.REVERTING})
#: a protect that ended so (a failed replication is PARTIALLY_FAILED) is retried soon
FAILED = frozenset(
    {RunState.FAILED, RunState.REVERTED, RunState.CANCELLED, RunState.PARTIALLY_FAILED}
)
#: events posted to the webhooks: runs that failed or fell short, and recoveries whose
#: copies differ from what they asked for (a widened firewall must not go unnoticed)
ALERTED_EVENTS = frozenset(
    {"run-failed", "run-partially-failed", "replication-failed", "fidelity-differences"}
)


# --------------------------------------------------------------------------------------
# Due times (pure)
# --------------------------------------------------------------------------------------


def cron_next(expr: str, after: float) -> float:
    """The first time strictly after ``after`` (UTC epoch seconds) that ``expr`` matches."""
    return float(croniter(expr, after).get_next(float))


def protect_interval(policy: Policy, tick: float, last_duration: float) -> float:
    """How old the newest protect may get before the next starts (RPO-driven policies)."""
    rpo = float(policy.rpo_seconds)
    return max(rpo / 2, rpo - 2 * tick - 2 * last_duration)


def protect_due_at(
    policy: Policy,
    last: Run | None,
    *,
    tick: float,
    newest_checkpoint: float | None = None,
) -> float | None:
    """When the next protect is due; None while one is under way.

    ``last`` is the workload's newest protect run; without one, the newest checkpoint at
    the workload's site stands in (checkpoints survive a lost database), else it is due now.
    """
    if last is not None and last.state in RUNNING:
        return None
    duration = 0.0
    if last is not None:
        duration = float(last.result.get("duration_seconds") or 0.0)
        base = last.created_at
    elif newest_checkpoint is not None:
        base = newest_checkpoint
    else:
        return 0.0
    interval = protect_interval(policy, tick, duration)
    if last is not None and last.state in FAILED:
        return base + min(interval / 4, 60.0)
    if policy.schedule:
        return cron_next(policy.schedule, base)
    return base + interval


def drill_due_at(policy: Policy, last: Run | None, first_checkpoint: float | None) -> float | None:
    """When the next drill is due; None without a drill schedule, a checkpoint, or while
    one runs. Counted from the newest drill (or the first checkpoint at the recovery site)."""
    if not policy.drill_schedule or first_checkpoint is None:
        return None
    if last is not None and last.state in RUNNING:
        return None
    base = last.created_at if last is not None else first_checkpoint
    return cron_next(policy.drill_schedule, base)


# --------------------------------------------------------------------------------------
# Alerts
# --------------------------------------------------------------------------------------


class Webhook:
    """Posts alerts as JSON to ``url`` from a background thread, retrying with backoff.

    ``send`` never blocks the caller; an alert that still fails after ``attempts`` tries
    is logged and dropped (the event stays in the database and on the dashboard).
    """

    def __init__(
        self,
        url: str,
        *,
        attempts: int = 5,
        backoff: float = 1.0,
        timeout: float = 5.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json", **dict(headers or {})}
        self.sent = 0
        self.failed = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="seawall-webhook", daemon=True)
        self._thread.start()

    def send(self, payload: Mapping[str, Any]) -> None:
        self._queue.put(dict(payload))

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._deliver(item)

    def _deliver(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, default=str).encode()
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            req = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    if resp.status < 300:
                        self.sent += 1
                        return
            except (urllib.error.URLError, OSError) as exc:
                log.warning("webhook %s attempt %d failed: %s", self.url, attempt, exc)
            if attempt < self.attempts:
                time.sleep(delay)
                delay = min(delay * 2, 60.0)
        self.failed += 1
        log.error("webhook %s: giving up on %s", self.url, payload.get("event"))


# --------------------------------------------------------------------------------------
# The scheduler
# --------------------------------------------------------------------------------------


@dataclass
class TickReport:
    """What one tick saw and did (the bench and the tests read it)."""

    leader: bool
    workloads: int = 0
    started: list[tuple[str, str]] = field(default_factory=list)  #: (operation, workload)
    breaches: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    seconds: float = 0.0


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


class Scheduler:
    """Runs policies on time while it holds the leader lease (see the module docstring).

    ``launch`` replaces how an operation is started (the bench counts instead of running);
    by default it is planned and run through :class:`Service` on the pool.
    """

    def __init__(
        self,
        service: Service,
        *,
        tick_seconds: float = 15.0,
        webhook: Webhook | None = None,
        max_parallel: int = 2,
        lease_ttl: float | None = None,
        holder: str | None = None,
        clock: Callable[[], float] = time.time,
        launch: Callable[[str, str], None] | None = None,
    ) -> None:
        self.svc = service
        self.tick_seconds = tick_seconds
        self.webhook = webhook
        self.lease_ttl = lease_ttl or max(10.0, 3 * tick_seconds)
        self.holder = holder or holder_name()
        self.clock = clock
        self._launch = launch
        self._pool = ThreadPoolExecutor(max_parallel, thread_name_prefix="seawall-run")
        self._inflight: dict[str, Future[None]] = {}  #: lease name -> running operation
        self._inflight_lock = threading.Lock()
        self._leader = False
        self._breached: set[str] = set()
        self._watching: dict[str, float] = {}  #: workload -> first seen without checkpoint
        self._event_cursor = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.resume_every = 30.0
        self._last_resume = 0.0

    # -- loop ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="seawall-scheduler", daemon=True)
        self._thread.start()

    def stop(self, wait: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.tick_seconds + 5)
        self._pool.shutdown(wait=wait, cancel_futures=True)
        with contextlib.suppress(SeawallError):
            self.svc.release_lease(LEADER_LEASE, self.holder)
        if self.webhook is not None:
            self.webhook.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                report = self.tick()
                if report.started or report.breaches or report.recovered:
                    log.info("tick: %s", report)
            except Exception:  # the loop outlives any one tick's failure
                log.exception("scheduler tick failed")
            self._stop.wait(self.tick_seconds)

    @property
    def leader(self) -> bool:
        return self._leader

    # -- one tick -----------------------------------------------------------------------
    def tick(self) -> TickReport:
        t0 = time.perf_counter()
        if not self.svc.acquire_lease(LEADER_LEASE, self.holder, self.lease_ttl):
            self._leader = False
            return TickReport(leader=False, seconds=time.perf_counter() - t0)
        if not self._leader:
            self._become_leader()
        self._renew_inflight()
        now = self.clock()
        report = TickReport(leader=True)
        rows = self.svc.rpo_report(now)
        runs = self.svc.latest_runs()
        policies = {p.name: p for p in self.svc.list_policies()}
        report.workloads = len(rows)
        for row in rows:
            name = row["workload"]
            policy = policies.get(row["policy"])
            if policy is None:
                continue
            try:
                for op, last in (
                    ("protect", runs.get((name, "protect"))),
                    ("drill", runs.get((name, "drill"))),
                ):
                    if self._due(op, policy, last, row, now) and self._start(op, policy, row):
                        report.started.append((op, name))
                self._watch_rpo(row, now, report)
            except (ValueError, KeyError, SeawallError) as exc:  # e.g. a bad cron expression
                log.error("workload %s skipped this tick: %s", name, exc)
        self._alert_new_events()
        self._charge_usage(runs)
        self._resume_orphans(runs, now)
        report.seconds = time.perf_counter() - t0
        return report

    def _become_leader(self) -> None:
        """Load what the previous leader knew from the database (breaches, events seen)."""
        self._leader = True
        self._event_cursor = self.svc.last_event_id()
        self._breached = set()
        latest: dict[str, str] = {}
        for ev in reversed(self.svc.list_events(limit=5000)):
            if ev.kind in ("rpo-breach", "rpo-recovered") and ev.workload:
                latest[ev.workload] = ev.kind
        self._breached = {w for w, kind in latest.items() if kind == "rpo-breach"}
        log.info("%s is the scheduler leader", self.holder)

    def _due(
        self, op: str, policy: Policy, last: Run | None, row: Mapping[str, Any], now: float
    ) -> bool:
        if op == "protect":
            due = protect_due_at(
                policy,
                last,
                tick=self.tick_seconds,
                newest_checkpoint=row["newest_local_checkpoint_at"],
            )
        else:
            due = drill_due_at(policy, last, row["oldest_checkpoint_at"])
        return due is not None and due <= now

    # -- operations ---------------------------------------------------------------------
    def _start(self, operation: str, policy: Policy, row: Mapping[str, Any]) -> bool:
        """Take the operation's lease and hand it to the pool; False if someone has it."""
        workload = row["workload"]
        lease = f"{operation}:{workload}"
        with self._inflight_lock:
            if lease in self._inflight:
                return False
            if not self.svc.acquire_lease(lease, self.holder, self.lease_ttl):
                return False
            if self._launch is not None:
                try:
                    self._launch(operation, workload)
                finally:
                    self.svc.release_lease(lease, self.holder)
                return True
            self._inflight[lease] = self._pool.submit(self._run, operation, policy, row, lease)
        return True

    def _run(self, operation: str, policy: Policy, row: Mapping[str, Any], lease: str) -> None:
        workload = row["workload"]
        try:
            # Re-check under the lease: another process may have just run it.
            recent = self.svc.list_runs(workload=workload, limit=50)
            last = next((r for r in recent if r.kind.value == operation), None)
            if not self._due(operation, policy, last, row, self.clock()):
                return
            run, flow = self.svc.prepare_operation(
                operation, workload, params={"started_by": "scheduler"}, initiator=SCHEDULER
            )
            self.svc.execute_prepared(run, flow)
        except SeawallError as exc:
            log.warning("%s %s did not start: %s", operation, workload, exc)
            self.svc.add_event(
                f"{operation}-not-started",
                f"scheduled {operation} of {workload} could not start: {exc}",
                severity="error",
                workload=workload,
            )
        except Exception:
            log.exception("scheduled %s of %s crashed", operation, workload)
        finally:
            with self._inflight_lock:
                self._inflight.pop(lease, None)
            with contextlib.suppress(Exception):
                self.svc.release_lease(lease, self.holder)

    def _renew_inflight(self) -> None:
        with self._inflight_lock:
            leases = [k for k in self._inflight if k != "resume"]
        for lease in leases:
            self.svc.acquire_lease(lease, self.holder, self.lease_ttl)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until no operation this scheduler started is running (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._inflight_lock:
                if not self._inflight:
                    return True
            time.sleep(0.1)
        return False

    # -- RPO and alerts -----------------------------------------------------------------
    def _watch_rpo(self, row: Mapping[str, Any], now: float, report: TickReport) -> None:
        name = row["workload"]
        rpo = row["rpo_seconds"]
        achieved = row["achieved_rpo_seconds"]
        if rpo is None:
            return
        if achieved is None:
            # Never protected: a breach once the scheduler has watched it for one RPO.
            first = self._watching.setdefault(name, now)
            achieved = now - first
            if achieved <= rpo:
                return
        else:
            self._watching.pop(name, None)
        if achieved > rpo and name not in self._breached:
            self._breached.add(name)
            report.breaches.append(name)
            msg = (
                f"{name}: achieved RPO {achieved:.0f}s exceeds the policy's {rpo}s "
                f"at site {row['recovery_site']}"
            )
            self._event("rpo-breach", msg, "error", row, achieved)
        elif achieved <= rpo and name in self._breached:
            self._breached.discard(name)
            report.recovered.append(name)
            msg = f"{name}: achieved RPO {achieved:.0f}s is within the policy's {rpo}s again"
            self._event("rpo-recovered", msg, "info", row, achieved)

    def _event(
        self, kind: str, message: str, severity: str, row: Mapping[str, Any], achieved: float
    ) -> None:
        data = {
            "achieved_rpo_seconds": round(achieved, 3),
            "rpo_seconds": row["rpo_seconds"],
            "site": row["recovery_site"],
            "project": row["project"],
        }
        event_id = self.svc.add_event(
            kind, message, severity=severity, workload=row["workload"], data=data
        )
        self._event_cursor = max(self._event_cursor, event_id)
        self._alert(
            {"event": kind, "id": event_id, "workload": row["workload"], "message": message, **data}
        )

    def _alert(self, payload: Mapping[str, Any]) -> None:
        if self.webhook is not None:
            self.webhook.send({"source": "seawall", "at": time.time(), **payload})

    def _alert_new_events(self) -> None:
        """Failed runs and replications recorded since the last tick (by any process)."""
        newest = self._event_cursor
        for ev in self.svc.list_events(limit=500):
            if ev.id <= self._event_cursor:
                break
            newest = max(newest, ev.id)
            if ev.kind in ALERTED_EVENTS:
                self._alert(
                    {
                        "event": ev.kind,
                        "id": ev.id,
                        "workload": ev.workload,
                        "run_id": ev.run_id,
                        "severity": ev.severity,
                        "message": ev.message,
                    }
                )
        self._event_cursor = newest

    def _resume_orphans(self, runs: Mapping[tuple[str, str], Run], now: float) -> None:
        """Unfinished runs block their workload's schedule: have dead owners' runs resumed.

        At most every ``resume_every`` seconds, on the pool, under the ``resume`` lease
        of :class:`Service.resume_unfinished` (which skips runs whose owner still lives).
        """
        if now - self._last_resume < self.resume_every:
            return
        if not any(r.state in RUNNING for r in runs.values()):
            return
        self._last_resume = now
        with self._inflight_lock:
            if "resume" in self._inflight:
                return
            self._inflight["resume"] = self._pool.submit(self._resume)

    def _resume(self) -> None:
        try:
            for run in self.svc.resume_unfinished():
                log.info("resumed run %s of a process that died: %s", run.id, run.state.value)
        except Exception:
            log.exception("resuming unfinished runs failed")
        finally:
            with self._inflight_lock:
                self._inflight.pop("resume", None)

    def _charge_usage(self, runs: Mapping[tuple[str, str], Run]) -> None:
        """Compute-hours for finished drills and recoveries that have none yet (their
        process died before ``finalize`` charged them); once per run, by lease."""
        for (_w, kind), run in runs.items():
            if (
                kind in (RunKind.DRILL.value, RunKind.FAILOVER.value, RunKind.MIGRATE.value)
                and run.state not in RUNNING
                and "compute_hours" not in run.result
            ):
                with contextlib.suppress(SeawallError):
                    self.svc.record_compute_hours(run.id)
