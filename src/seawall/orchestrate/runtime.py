"""The port steps reach their process through: the journal, drivers and repositories.

Steps never hold live objects in their persisted arguments (a resumed run rebuilds them
from JSON on another process), so each process installs one :class:`Runtime` —
``seawall.service`` does, once — and every step asks :func:`runtime` for it.

:class:`Journal` names exactly what the steps use of the state database, not the whole
``StateStore``: the step catalogue is the one consumer, and a narrow protocol keeps a
new dependency on the database a deliberate change of this file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from seawall.clouds import CloudDriver
    from seawall.model import Checkpoint, Run, StepState
    from seawall.repo import Repository


class CreatedResource(Protocol):
    """A journal row: one cloud object a run created (``StateStore.list_created``)."""

    @property
    def site(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def resource_id(self) -> str: ...

    @property
    def key(self) -> str: ...

    @property
    def removed(self) -> bool: ...


class Journal(Protocol):
    """What steps read and write in the state database while they run."""

    # -- the run and its steps
    def get_run(self, id: str) -> Run: ...

    def cancel_requested(self, id: str) -> bool: ...

    def update_run_result(self, id: str, result: Mapping[str, Any]) -> None: ...

    def set_step(
        self,
        run_id: str,
        name: str,
        state: StepState,
        *,
        progress: float | None = None,
        detail: str | None = None,
    ) -> None: ...

    # -- what a run created (for revert and drill clean-up)
    def record_created(
        self, run_id: str, site: str, kind: str, resource_id: str, key: str
    ) -> None: ...

    def list_created(self, run_id: str) -> Sequence[CreatedResource]: ...

    def mark_removed(self, run_id: str, kind: str, resource_id: str) -> None: ...

    # -- the checkpoint cache
    def put_checkpoint(self, cp: Checkpoint, *, sites: Sequence[str]) -> None: ...

    def get_checkpoint(self, id: str) -> Checkpoint: ...

    def list_checkpoints(
        self, workload: str | None = None, site: str | None = None
    ) -> Sequence[Checkpoint]: ...

    def remove_checkpoint(self, id: str) -> None: ...

    # -- events and usage
    def add_event(
        self,
        kind: str,
        message: str,
        *,
        severity: str = "info",
        workload: str | None = None,
        run_id: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> int: ...

    def add_usage(
        self,
        project: str,
        metric: str,
        amount: float,
        *,
        workload: str | None = None,
        at: float | None = None,
    ) -> None: ...


class Runtime(Protocol):
    """What steps need from their process: the journal, drivers and repositories."""

    @property
    def db(self) -> Journal: ...

    def driver(self, site: str, project: str = ...) -> CloudDriver:
        """The site's driver as ``project`` sees it (the run's project: see
        ``Context.driver``); the default project's when not given."""
        ...

    def repository(self, site: str) -> Repository: ...


_runtime: Runtime | None = None


def install_runtime(rt: Runtime) -> None:
    """Make ``rt`` the runtime of every step this process runs (the last one wins)."""
    global _runtime
    _runtime = rt


def runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("no seawall runtime installed in this process")
    return _runtime
