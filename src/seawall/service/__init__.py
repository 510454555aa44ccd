"""The one place that wires seawall together; every use case is a method of :class:`Service`.

The CLI, the API, the dashboard and the scheduler call :class:`Service` only. It is a
thin facade over the parts of this package, each a concept of its own:

=================  ===================================================================
``handles``        home, passphrase, state database; one driver and one repository per
                   site (also the Runtime the steps of this process use)
``catalogue``      sites, policies, workloads, recovery plans, checkpoints, resolve
``preflight``      every problem of an operation at once, nothing created
``operations``     the table kind -> (preflight, planner, run parameters) and the one
                   pipeline ``prepare -> execute -> finalize`` every caller goes through
``outcome``        final state, RTO / verified / data-loss window, role reversal, usage
``resume``         runs whose process died (resume or revert), cancel
``reports``        achieved RPO against policies
``access``         who may see and change what (projects, admin)
``audit``          the audit trail: who did what, when, from where (database, JSON lines)
=================  ===================================================================

At start-up :meth:`Service.resume_unfinished` continues every run whose process died.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from seawall.clouds import CloudDriver
from seawall.db import StateStore
from seawall.fidelity import Drift
from seawall.model import (
    DEFAULT_PROJECT,
    Checkpoint,
    Policy,
    RecoveryPlan,
    ResourceGraph,
    Run,
    RunKind,
    Selector,
    Site,
    Step,
    Workload,
    dump,
)
from seawall.orchestrate.engine import Runner
from seawall.orchestrate.plans import FlowPlan, RecoverMode
from seawall.orchestrate.runtime import install_runtime
from seawall.plugins import registry
from seawall.repo import Repository
from seawall.service import reports, resume
from seawall.service.audit import AuditTrail, Initiator
from seawall.service.catalogue import Catalogue
from seawall.service.handles import Handles, database_urls, default_home, new_id
from seawall.service.operations import OPERATIONS, Compiled, Pipeline
from seawall.service.outcome import UNFINISHED, Outcome
from seawall.storage import mask_url

__all__ = ["OPERATIONS", "UNFINISHED", "Service", "default_home", "new_id"]


class Service:
    """seawall's application facade; each method hands over to one part of the package."""

    def __init__(self, home: Path | str | None = None, db_url: str | None = None) -> None:
        self.home = Path(home) if home else default_home()
        self.home.mkdir(parents=True, exist_ok=True)
        url, engine_url = database_urls(self.home, db_url)
        self._db = StateStore(url)
        self.runner = Runner(engine_url)
        self.handles = Handles(self.home, self._db)
        self._catalogue = Catalogue(self.handles)
        #: every edge records here (``seawall serve --audit-file`` sets ``audit.file``)
        self.audit = AuditTrail(self._db)
        self.outcome = Outcome(self.handles, self.audit)
        self.pipeline = Pipeline(self._catalogue, self.runner, self.outcome, self.audit)
        install_runtime(self.handles)

    def close(self) -> None:
        self.handles.close()
        self.runner.close()
        self._db.close()

    # -- handles ------------------------------------------------------------------------
    @property
    def db(self) -> StateStore:
        return self._db

    def site(self, name: str) -> Site:
        return self.handles.site(name)

    def driver(self, site: str, project: str = DEFAULT_PROJECT) -> CloudDriver:
        """The site's driver as ``project`` sees it (``CloudDriver.for_project``)."""
        return self.handles.driver(site, project)

    def repository(self, site: str) -> Repository:
        return self.handles.repository(site)

    def forget_site_handles(self, site: str) -> None:
        """Drop cached driver/repository objects (after a site was rebuilt)."""
        self.handles.forget(site)

    def passphrase(self) -> str:
        """From SEAWALL_PASSPHRASE, SEAWALL_PASSPHRASE_FILE or $SEAWALL_HOME/passphrase."""
        return self.handles.passphrase()

    # -- sites, policies, workloads -----------------------------------------------------
    def add_site(
        self,
        name: str,
        driver: str,
        params: Mapping[str, str] | None = None,
        repository: str = "",
        *,
        init_repository: bool = False,
        key_from: str | None = None,
        credentials: Mapping[str, str] | None = None,
    ) -> Site:
        """Register a site after checking that its driver answers. Nothing is kept on error.
        The repository's ``credentials`` are kept encrypted in the home, apart from the
        site (see :meth:`Catalogue.add_site`); the site returned shows none."""
        site = self._catalogue.add_site(
            name,
            driver,
            params,
            repository,
            init_repository=init_repository,
            key_from=key_from,
            credentials=credentials,
        )
        return replace(site, repository=mask_url(site.repository))

    def set_site_credentials(self, name: str, credentials: Mapping[str, str]) -> Site:
        """New repository credentials for site ``name``; moves any out of its URL."""
        site = self._catalogue.set_credentials(name, credentials)
        return replace(site, repository=mask_url(site.repository))

    def list_sites(self) -> list[Site]:
        """The sites as they may be shown: a credential left in a repository URL (a site
        added before they were kept apart) is ``***``."""
        return [replace(s, repository=mask_url(s.repository)) for s in self._db.list_sites()]

    def remove_site(self, name: str) -> None:
        self._catalogue.remove_site(name)

    def create_policy(self, data: Mapping[str, Any]) -> Policy:
        return self._catalogue.create_policy(data)

    def get_policy(self, name: str) -> Policy:
        return self._catalogue.get_policy(name)

    def list_policies(self) -> list[Policy]:
        return self._catalogue.list_policies()

    def create_workload(
        self,
        name: str,
        site: str,
        selector: Selector,
        policy: str,
        targets: Iterable[str] = (),
        project: str = "default",
    ) -> Workload:
        return self._catalogue.create_workload(name, site, selector, policy, targets, project)

    def get_workload(self, name: str) -> Workload:
        return self._db.get_workload(name)

    def list_workloads(self, project: str | None = None) -> list[Workload]:
        return self._db.list_workloads(project)

    def resolve(self, workload: Workload) -> ResourceGraph:
        """The workload's graph as it is now on its site (selectors are re-resolved)."""
        return self._catalogue.resolve(workload)

    # -- recovery plans -----------------------------------------------------------------
    def set_plan(self, data: Mapping[str, Any]) -> RecoveryPlan:
        return self._catalogue.set_plan(data)

    def recovery_plan(self, workload: Workload, target: str, graph: ResourceGraph) -> RecoveryPlan:
        return self._catalogue.recovery_plan(workload, target, graph)

    def list_plans(self, workload: str | None = None) -> list[RecoveryPlan]:
        return self._db.list_plans(workload)

    # -- checkpoints --------------------------------------------------------------------
    def list_checkpoints(
        self, workload: str | None = None, site: str | None = None
    ) -> list[Checkpoint]:
        return self._db.list_checkpoints(workload=workload, site=site)

    def get_checkpoint(self, checkpoint_id: str) -> Checkpoint:
        return self._db.get_checkpoint(checkpoint_id)

    def catalogue(self, site: str, workload: str | None = None) -> list[Checkpoint]:
        """Checkpoints read from a site's repository (works with the state DB lost)."""
        return self._catalogue.catalogue(site, workload)

    def latest_checkpoint(self, workload: str, site: str) -> Checkpoint | None:
        return self._catalogue.latest_checkpoint(workload, site)

    def diff_checkpoints(self, older: str, newer: str) -> tuple[Checkpoint, Checkpoint, Drift]:
        """Resources added and removed and attributes changed from ``older`` to ``newer``
        (two checkpoints of one workload)."""
        return self._catalogue.diff_checkpoints(older, newer)

    def drift_since_checkpoint(self, workload_name: str) -> tuple[Checkpoint | None, Drift]:
        """What changed on the workload's site since its newest checkpoint there."""
        return self._catalogue.drift_since_checkpoint(self._db.get_workload(workload_name))

    def verify_checkpoint(
        self,
        checkpoint_id: str,
        site: str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Read back and authenticate every byte of a checkpoint's volume images."""
        return self._catalogue.verify_checkpoint(checkpoint_id, site, progress)

    # -- planning (dry run) -------------------------------------------------------------
    def plan_protect(
        self, workload: Workload, run_id: str, kind: RunKind = RunKind.PROTECT
    ) -> FlowPlan:
        return self.pipeline.compile(kind, workload, run_id=run_id).flow

    def plan_recover(
        self,
        workload: Workload,
        run_id: str,
        *,
        mode: RecoverMode,
        kind: RunKind,
        checkpoint_id: str | None = None,
        target: str | None = None,
    ) -> tuple[FlowPlan, Checkpoint, RecoveryPlan]:
        """Compile a failover/drill and preflight it: every problem at once, nothing created."""
        c = self.pipeline.compile(
            kind,
            workload,
            target=target,
            checkpoint_id=checkpoint_id,
            run_id=run_id,
            row=RunKind(mode.value),
        )
        return _recovery(c)

    def plan_migrate(
        self,
        workload: Workload,
        run_id: str,
        *,
        kind: RunKind = RunKind.MIGRATE,
        target: str | None = None,
    ) -> tuple[FlowPlan, Checkpoint, RecoveryPlan]:
        """Fence the primary, take a final checkpoint, replicate it, recover at the target."""
        c = self.pipeline.compile(kind, workload, target=target, run_id=run_id, row=RunKind.MIGRATE)
        return _recovery(c)

    def plan_operation(
        self,
        operation: str,
        workload_name: str,
        *,
        target: str | None = None,
        checkpoint_id: str | None = None,
    ) -> FlowPlan:
        """The compiled steps of an operation, without running anything (dry run)."""
        return self.pipeline.compile(
            RunKind(operation), workload_name, target=target, checkpoint_id=checkpoint_id
        ).flow

    # -- operations (the CLI's: prepare and execute in this thread) ---------------------
    def protect(self, workload_name: str) -> Run:
        return self.pipeline.run(RunKind.PROTECT, workload_name)

    def failover(
        self, workload_name: str, *, checkpoint_id: str | None = None, target: str | None = None
    ) -> Run:
        return self.pipeline.run(
            RunKind.FAILOVER, workload_name, checkpoint_id=checkpoint_id, target=target
        )

    def drill(
        self, workload_name: str, *, checkpoint_id: str | None = None, target: str | None = None
    ) -> Run:
        return self.pipeline.run(
            RunKind.DRILL, workload_name, checkpoint_id=checkpoint_id, target=target
        )

    def migrate(self, workload_name: str, *, target: str | None = None) -> Run:
        return self.pipeline.run(RunKind.MIGRATE, workload_name, target=target)

    def reprotect(self, workload_name: str) -> Run:
        """Protect the recovered copy back towards the old primary (only what changed)."""
        return self.pipeline.run(RunKind.REPROTECT, workload_name)

    def failback(self, workload_name: str) -> Run:
        """Planned migration back to the original site, after reprotect."""
        return self.pipeline.run(RunKind.FAILBACK, workload_name)

    # -- operations (service mode: preflight now, execute on a worker thread) -----------
    def prepare_operation(
        self,
        operation: str,
        workload_name: str,
        *,
        target: str | None = None,
        checkpoint_id: str | None = None,
        params: Mapping[str, Any] | None = None,
        initiator: Initiator | None = None,
    ) -> tuple[Run, FlowPlan]:
        """Preflight an operation and record its run as PENDING; nothing runs yet.

        Errors (PreflightFailed, NotFound, ...) come out here, before any run exists;
        :meth:`execute_prepared` then runs it (on a worker thread in `seawall serve`).
        ``initiator`` is who starts it (the API caller, the scheduler); by default the
        local OS user.
        """
        return self.pipeline.prepare(
            RunKind(operation),
            workload_name,
            target=target,
            checkpoint_id=checkpoint_id,
            params=params,
            initiator=initiator,
        )

    def execute_prepared(self, run: Run, flow: FlowPlan) -> Run:
        """Run a prepared run to its end (unless it was cancelled while pending)."""
        return self.pipeline.execute(run, flow)

    def on_run_started(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(run_id)`` as each run starts (the CLI shows progress with it)."""
        self.pipeline.on_run_started(listener)

    # -- runs ---------------------------------------------------------------------------
    def get_run(self, run_id: str) -> Run:
        return self._db.get_run(run_id)

    def list_runs(self, workload: str | None = None, limit: int = 50) -> list[Run]:
        return self._db.list_runs(workload=workload, limit=limit)

    def steps(self, run_id: str) -> list[Step]:
        return self._db.list_steps(run_id)

    def latest_runs(self) -> dict[tuple[str, str], Run]:
        """(workload, kind) -> newest run of that kind, for every workload at once."""
        return self._db.latest_runs()

    def find_run(self, *, project: str, key: str, limit: int = 500) -> Run | None:
        """The newest run of ``project`` started with idempotency key ``key``."""
        for run in self._db.list_runs(limit=limit):
            if run.project == project and run.params.get("idempotency_key") == key:
                return run
        return None

    def cancel(self, run_id: str) -> Run:
        return resume.cancel(self._db, run_id)

    def resume_unfinished(self) -> list[Run]:
        """Continue every run whose process died: resumed to the end, or reverted."""
        return resume.resume_unfinished(self.pipeline)

    def record_compute_hours(self, run_id: str) -> float:
        """Usage for a finished drill or recovery (once per run; see ``outcome``)."""
        return self.outcome.record_compute_hours(run_id)

    # -- reports, events, usage, leases -------------------------------------------------
    def achieved_rpo(self, workload: str, site: str | None = None) -> float | None:
        return reports.achieved_rpo(self._catalogue, workload, site)

    def rpo_report(self, now: float | None = None) -> list[dict[str, Any]]:
        """Every workload's achieved RPO against its policy (one query for all of them)."""
        return reports.rpo_report(self._catalogue, now)

    def plugins(self) -> list[dict[str, str]]:
        return [dump(p) for p in registry().describe()]

    def list_events(
        self, workload: str | None = None, since: float | None = None, limit: int = 100
    ) -> list[Any]:
        """Events (``seawall.db.Event``) newest first."""
        return self._db.list_events(workload=workload, since=since, limit=limit)

    def last_event_id(self) -> int:
        return self._db.last_event_id()

    def add_event(
        self,
        kind: str,
        message: str,
        *,
        severity: str = "info",
        workload: str | None = None,
        run_id: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> int:
        return self._db.add_event(
            kind, message, severity=severity, workload=workload, run_id=run_id, data=data
        )

    def usage(
        self, project: str | None = None, since: float | None = None
    ) -> dict[str, dict[str, float]]:
        return self._db.usage(project, since)

    def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        return self._db.acquire_lease(name, holder, ttl)

    def release_lease(self, name: str, holder: str) -> None:
        self._db.release_lease(name, holder)


def _recovery(c: Compiled) -> tuple[FlowPlan, Checkpoint, RecoveryPlan]:
    """A compiled recovery as (flow, the checkpoint it starts from, its recovery plan)."""
    assert c.checked.checkpoint is not None and c.checked.plan is not None
    return c.flow, c.checked.checkpoint, c.checked.plan
