"""The base of every step: journal, deadline, retries with backoff, cancel, fault hooks.

For fault tests, ``SEAWALL_FAULT_KILL_AT=<step name>`` makes the process kill itself
with SIGKILL as that step starts (``SEAWALL_FAULT_KILL_AFTER``: after its work, before
TaskFlow records it; ``SEAWALL_FAULT_KILL_REVERT``: as its revert starts) — a real
kill -9 at an exact point, which is what the crash tests need. A value ending in ``*``
matches every step whose name starts with the rest (``commit-checkpoint:*``).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from taskflow import task
from taskflow.types import failure as tf_failure

from seawall.errors import Cancelled, SeawallError, StepTimeout, TransientError
from seawall.model import StepState
from seawall.orchestrate.plans import StepSpec
from seawall.orchestrate.runtime import Runtime, runtime
from seawall.orchestrate.steps import StepArgs

if TYPE_CHECKING:
    from seawall.clouds import CloudDriver

A = TypeVar("A", bound=StepArgs)
Deps = Mapping[str, Any]

_BACKOFF_START = float(os.environ.get("SEAWALL_BACKOFF_START", "0.5"))


def _fault(point: str, name: str) -> None:
    """SIGKILL this process at ``point`` of step ``name`` when the environment asks.

    The value is a step name, or a prefix ending in ``*`` for the steps whose names embed
    a fresh id (``commit-checkpoint:*``).
    """
    wanted = os.environ.get(point)
    if not wanted:
        return
    if wanted == name or (wanted.endswith("*") and name.startswith(wanted[:-1])):
        os.kill(os.getpid(), signal.SIGKILL)


class Context:
    """What a step sees while it runs: runtime, deadline, progress and cancellation."""

    def __init__(self, task_: SeawallTask[Any], rt: Runtime, run_id: str, deadline: float) -> None:
        self._task = task_
        self.rt = rt
        self.run_id = run_id
        self.deadline = deadline
        self._last = 0.0
        self._project: str | None = None

    def driver(self, site: str) -> CloudDriver:
        """The site's driver as the run's project sees it: a step acts only inside the
        project of the workload it runs for (``CloudDriver.for_project``)."""
        if self._project is None:
            self._project = self.rt.db.get_run(self.run_id).project
        return self.rt.driver(site, self._project)

    def cancelled(self) -> bool:
        return self.rt.db.cancel_requested(self.run_id)

    def check(self) -> None:
        if self.cancelled():
            raise Cancelled(f"run {self.run_id} was cancelled during {self._task.name}")
        if time.monotonic() > self.deadline:
            raise StepTimeout(f"{self._task.name} passed its deadline")

    def progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last < 0.5 and done < total:
            return
        self._last = now
        fraction = min(1.0, done / total) if total else 1.0
        self._task.update_progress(fraction)
        self.rt.db.set_step(self.run_id, self._task.name, StepState.RUNNING, progress=fraction)
        self.check()

    def note(self, key: str, value: Any) -> None:
        """Record a figure in the run's result (each step writes its own key)."""
        self.rt.db.update_run_result(self.run_id, {key: value})


class SeawallTask(task.Task, Generic[A]):  # type: ignore[misc]
    """Base of every step: journal, deadline, retries with backoff, faults, revert.

    ``A`` is the step kind's argument dataclass (``seawall.orchestrate.steps``), the
    same the planner builds; ``deps`` are the values of the symbols the step requires,
    by symbol name.
    """

    def __init__(self, spec: StepSpec, run_id: str) -> None:
        super().__init__(
            name=spec.name,
            inject={"args": spec.args, "run": run_id},
            requires=list(spec.requires),
            provides=spec.provides or None,
        )
        self.retries = spec.retries
        self.timeout = spec.timeout
        self._requires = tuple(spec.requires)

    def requirement(self, deps: Deps) -> Any:
        """The value of the one symbol this step requires (a step with one input)."""
        (symbol,) = self._requires
        return deps[symbol]

    # -- what subclasses write -----------------------------------------------------------
    def do(self, ctx: Context, args: A, deps: Deps) -> Any:
        raise NotImplementedError

    def undo(self, ctx: Context, args: A, deps: Deps, result: Any) -> None:
        return None

    # -- TaskFlow entry points -----------------------------------------------------------
    def execute(self, args: A, run: str, **deps: Any) -> Any:
        rt = runtime()
        _fault("SEAWALL_FAULT_KILL_AT", self.name)
        ctx = Context(self, rt, run, time.monotonic() + self.timeout)
        rt.db.set_step(run, self.name, StepState.RUNNING, progress=0.0, detail="")
        delay = _BACKOFF_START
        attempt = 0
        while True:
            try:
                ctx.check()
                result = self.do(ctx, args, deps)
                break
            except TransientError as exc:
                attempt += 1
                if attempt > self.retries or time.monotonic() + delay > ctx.deadline:
                    rt.db.set_step(run, self.name, StepState.FAILED, detail=str(exc))
                    raise
                rt.db.set_step(run, self.name, StepState.RUNNING, detail=f"retry {attempt}: {exc}")
                time.sleep(delay)
                delay *= 2
            except Exception as exc:
                rt.db.set_step(run, self.name, StepState.FAILED, detail=_describe(exc))
                raise
        _fault("SEAWALL_FAULT_KILL_AFTER", self.name)
        rt.db.set_step(run, self.name, StepState.DONE, progress=1.0, detail=_summary(result))
        return result

    def revert(self, args: A, run: str, result: Any, **kwargs: Any) -> None:
        rt = runtime()
        _fault("SEAWALL_FAULT_KILL_REVERT", self.name)
        kwargs.pop("flow_failures", None)
        failed = isinstance(result, tf_failure.Failure)
        ctx = Context(self, rt, run, time.monotonic() + self.timeout)
        rt.db.set_step(run, self.name, StepState.REVERTING)
        self.undo(ctx, args, kwargs, None if failed else result)
        rt.db.set_step(run, self.name, StepState.REVERTED)


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, SeawallError) else f"{type(exc).__name__}: {exc}"


def _summary(result: Any) -> str:
    if isinstance(result, dict):
        keys = (
            "id",
            "image_id",
            "bytes_read",
            "residue",
            "verified",
            "bytes_sent",
            "status",
            "checked",
        )
        return ", ".join(f"{k}={result[k]}" for k in keys if k in result)
    return ""
