"""Who may see and change what: every authorisation and ownership decision, here only.

Workloads, their runs, checkpoints, plans, events and usage belong to a project; a
caller sees its own project's (by name or by id) and an admin sees every project's.
Objects of another project are answered as *not found*, never as *forbidden*, so that
their names do not leak. Sites and policies are a shared catalogue: every caller reads
them, only admins change them.

The edges (``seawall.api``, ``seawall.web``) authenticate; they ask this module what the
authenticated caller may see, and :mod:`seawall.service.rbac` what its roles allow it to
do there (after this module found the object visible, so a denial is never an
existence oracle).
"""

from __future__ import annotations

from typing import Protocol

from seawall.errors import Forbidden, NotFound
from seawall.model import Run, Workload

__all__ = [
    "Forbidden",
    "sees",
    "visible_run",
    "visible_workload",
    "visible_workloads",
]


class Caller(Protocol):
    """An authenticated caller, as the edges know it (``seawall.api.auth.Principal``)."""

    @property
    def project(self) -> str: ...

    @property
    def project_id(self) -> str: ...

    @property
    def admin(self) -> bool: ...


class Owned(Protocol):
    """Where the owned objects are looked up (the :class:`~seawall.service.Service`)."""

    def get_workload(self, name: str) -> Workload: ...

    def list_workloads(self, project: str | None = None) -> list[Workload]: ...

    def get_run(self, run_id: str) -> Run: ...


def sees(caller: Caller, project: str) -> bool:
    """Whether ``caller`` may see (and act on) what belongs to ``project``."""
    return caller.admin or project in {caller.project, caller.project_id} - {""}


def visible_workload(store: Owned, caller: Caller, name: str) -> Workload:
    """The workload, if the caller's project owns it; NotFound otherwise."""
    w = store.get_workload(name)
    if not sees(caller, w.project):
        raise NotFound(f"workload {name!r} not found; `GET /v1/workloads` lists yours")
    return w


def visible_workloads(store: Owned, caller: Caller) -> list[Workload]:
    return [w for w in store.list_workloads() if sees(caller, w.project)]


def visible_run(store: Owned, caller: Caller, run_id: str) -> Run:
    """The run, if the caller's project owns it; NotFound otherwise."""
    run = store.get_run(run_id)
    if not sees(caller, run.project):
        raise NotFound(f"run {run_id!r} not found; `GET /v1/runs` lists yours")
    return run
