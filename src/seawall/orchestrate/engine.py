"""Run a :class:`FlowPlan` on OpenStack TaskFlow, persisted, resumable, cancellable.

The embedded mode runs TaskFlow's ``parallel`` engine in this process with TaskFlow's
own SQLAlchemy persistence (one logbook per run, named and keyed by the run id). A run
whose process died (kill -9, power loss) is found at the next start by
:meth:`Runner.unfinished` and continued with :meth:`Runner.resume`: finished steps are
not repeated, the step that was running is run again (steps are idempotent), and a run
that was reverting goes on reverting.

The flow factory :func:`build_flow` is importable by name and takes only the plan's
JSON-able dict, so the same flows can be posted to a TaskFlow jobboard and run by
conductors on other hosts, unchanged.

Tasks reach sites, repositories and the state database through the
:class:`~seawall.orchestrate.runtime.Runtime` the service installs once per process
(``seawall.orchestrate.runtime``, which this module re-exports ``install_runtime`` from);
they never hold live objects in their persisted arguments.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

from taskflow import engines
from taskflow import exceptions as tf_exc
from taskflow.patterns import linear_flow, unordered_flow
from taskflow.persistence import backends, models

from seawall import procfs
from seawall.errors import Conflict, NotFound
from seawall.orchestrate.plans import FlowPlan, plan_from_dict
from seawall.orchestrate.runtime import install_runtime as install_runtime
from seawall.orchestrate.runtime import runtime as runtime
from seawall.orchestrate.tasks import CATALOGUE

FACTORY = "seawall.orchestrate.engine.build_flow"


def build_flow(plan: dict[str, Any]) -> linear_flow.Flow:
    """The TaskFlow flow of a plan (the factory persisted with every run)."""
    fp = plan_from_dict(plan)
    root = linear_flow.Flow(fp.run_id)
    for stage in fp.stages:
        sub = (unordered_flow.Flow if stage.parallel else linear_flow.Flow)(stage.name)
        for spec in stage.steps:
            sub.add(CATALOGUE[spec.task](spec, fp.run_id))
        root.add(sub)
    return root


def _start_of(pid: int) -> str:
    """The process's kernel start time as persisted in owner records: a decimal string
    ('' when the process is gone), the format every stored record already has."""
    start = procfs.start_time(pid)
    return "" if start is None else str(start)


def owner() -> dict[str, Any]:
    """Who runs a run: enough to tell later whether that process still lives."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _start_of(pid)}


def owner_alive(info: dict[str, Any]) -> bool:
    """Whether the process named by an owner record still runs (same pid, same start)."""
    if info.get("host") != socket.gethostname():
        return True  # another host's conductor; its claim decides (jobboard mode)
    pid = int(info.get("pid", 0))
    if pid <= 0:
        return False
    start = _start_of(pid)
    return start != "" and start == str(info.get("start", ""))


class Runner:
    """The embedded engine: TaskFlow + SQLAlchemy persistence at ``url``."""

    def __init__(self, url: str, *, max_workers: int = 4) -> None:
        self.url = url
        self.max_workers = max_workers
        self._backend = backends.fetch({"connection": url})
        with contextlib.closing(self._backend.get_connection()) as conn:
            conn.upgrade()

    def close(self) -> None:
        self._backend.close()

    @contextlib.contextmanager
    def _conn(self) -> Iterator[Any]:
        with contextlib.closing(self._backend.get_connection()) as conn:
            yield conn

    def start(self, plan: FlowPlan) -> tuple[str, str]:
        """Persist the plan's flow and run it to the end: (TaskFlow flow state, error).

        The logbook, its flow detail and the factory that rebuilds the flow are saved in
        one transaction (``save_logbook``), so a kill -9 at any moment leaves either no
        engine record or a resumable one. (``engines.load_from_factory`` writes them in
        three transactions: killed between them, the run could never be resumed.)
        """
        book = models.LogBook(plan.run_id, uuid=plan.run_id)
        flow_detail = models.FlowDetail(plan.run_id, uuid=str(uuid.uuid4()))
        flow_detail.meta = {
            "factory": {"name": FACTORY, "args": [], "kwargs": {"plan": plan.to_dict()}}
        }
        book.add(flow_detail)
        with self._conn() as conn:
            try:
                conn.get_logbook(plan.run_id)
                raise Conflict(f"run {plan.run_id} was already started; resume it instead")
            except tf_exc.NotFound:
                conn.save_logbook(book)
        engine = engines.load_from_detail(
            flow_detail,
            backend=self._backend,
            book=book,
            engine="parallel",
            max_workers=self.max_workers,
        )
        return self._run(engine)

    def resume(self, run_id: str) -> tuple[str, str]:
        """Continue a run whose process died: resume, or go on reverting."""
        with self._conn() as conn:
            try:
                book = conn.get_logbook(run_id)
            except tf_exc.NotFound:
                raise NotFound(f"run {run_id} has no engine record to resume") from None
        details = list(book)
        if not details:
            raise NotFound(f"run {run_id} has no flow to resume")
        if not isinstance(details[0].meta, dict) or "factory" not in details[0].meta:
            # killed while TaskFlow was recording a new flow (before the single-transaction
            # start above): no step ever ran, and the flow cannot be rebuilt
            raise NotFound(f"run {run_id} was interrupted before its flow was recorded")
        engine = engines.load_from_detail(
            details[0], backend=self._backend, engine="parallel", max_workers=self.max_workers
        )
        return self._run(engine)

    def flow_state(self, run_id: str) -> str:
        with self._conn() as conn:
            try:
                book = conn.get_logbook(run_id)
            except tf_exc.NotFound:
                return ""
        details = list(book)
        return str(details[0].state) if details else ""

    def plan_of(self, run_id: str) -> FlowPlan:
        with self._conn() as conn:
            book = conn.get_logbook(run_id)
        fd = next(iter(book))
        return plan_from_dict(fd.meta["factory"]["kwargs"]["plan"])

    @staticmethod
    def _run(engine: Any) -> tuple[str, str]:
        """Run to the end. Failures are not raised: TaskFlow has reverted by then, and
        the caller turns the flow state and the first error into the run's outcome."""
        error = ""
        try:
            engine.run()
        except tf_exc.WrappedFailure as exc:
            error = "; ".join(f.exception_str for f in exc)
        except Exception as exc:  # every failure is an outcome here, never a crash
            error = str(exc) or type(exc).__name__
        return str(engine.storage.get_flow_state()), error
