"""The one place that wires seawall together; every use case is a method here.

The CLI, the API, the dashboard and the scheduler call :class:`Service` only. It owns the
state database (a cache and journal), opens sites' drivers and repositories on demand,
compiles plans with the pure planners, preflights them (listing every problem at once,
creating nothing), runs them on the embedded TaskFlow engine, and turns the engine's
outcome into the run's final state, events, usage and measured RTO.

At start-up :meth:`Service.resume_unfinished` continues every run whose process died.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from taskflow import states as tf_states

from seawall.clouds import CloudDriver, open_site
from seawall.db import StateStore
from seawall.errors import (
    Conflict,
    InvalidInput,
    KeyMissing,
    NotFound,
    PreflightFailed,
    SeawallError,
)
from seawall.model import (
    PRESETS,
    RUN_TRANSITIONS,
    Checkpoint,
    Policy,
    RecoveryPlan,
    ResourceGraph,
    ResourceKind,
    Run,
    RunKind,
    RunState,
    Selector,
    Site,
    Step,
    VolumeImageRef,
    Workload,
    check_name,
    dump,
    load,
)
from seawall.orchestrate.engine import Runner, install_runtime, owner, owner_alive
from seawall.orchestrate.plans import (
    FlowPlan,
    RecoverMode,
    default_recovery_plan,
    pending_checkpoint,
    plan_migrate,
    plan_protect,
    plan_recover,
    recovery_problems,
)
from seawall.plugins import registry
from seawall.repo import Repository
from seawall.storage import open_storage

UNFINISHED = (RunState.PENDING, RunState.RUNNING, RunState.CANCELLING, RunState.REVERTING)


def default_home() -> Path:
    return Path(os.environ.get("SEAWALL_HOME") or Path.home() / ".seawall")


def new_id(prefix: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return f"{prefix}-{stamp}-{secrets.token_hex(3)}"


class Service:
    """seawall's application facade (also the Runtime that tasks use)."""

    def __init__(self, home: Path | str | None = None, db_url: str | None = None) -> None:
        self.home = Path(home) if home else default_home()
        self.home.mkdir(parents=True, exist_ok=True)
        url = db_url or os.environ.get("SEAWALL_DB_URL") or f"sqlite:///{self.home / 'state.db'}"
        self._db = StateStore(url)
        engine_url = url if not url.startswith("sqlite") else f"sqlite:///{self.home / 'engine.db'}"
        self.runner = Runner(engine_url)
        self._lock = threading.RLock()
        self._drivers: dict[str, CloudDriver] = {}
        self._repos: dict[str, Repository] = {}
        install_runtime(self)

    def close(self) -> None:
        for repo in self._repos.values():
            repo.close()
        self._repos.clear()
        self.runner.close()
        self._db.close()

    # -- Runtime ------------------------------------------------------------------------
    @property
    def db(self) -> StateStore:
        return self._db

    def site(self, name: str) -> Site:
        return self._db.get_site(name)

    def driver(self, site: str) -> CloudDriver:
        with self._lock:
            if site not in self._drivers:
                self._drivers[site] = open_site(self.site(site))
            return self._drivers[site]

    def repository(self, site: str) -> Repository:
        with self._lock:
            if site not in self._repos:
                s = self.site(site)
                if not s.repository:
                    raise InvalidInput(f"site {site} has no repository", field="site.repository")
                self._repos[site] = Repository.open(open_storage(s.repository), self.passphrase())
            return self._repos[site]

    def forget_site_handles(self, site: str) -> None:
        """Drop cached driver/repository objects (after a site was rebuilt)."""
        with self._lock:
            self._drivers.pop(site, None)
            repo = self._repos.pop(site, None)
            if repo is not None:
                repo.close()

    def passphrase(self) -> str:
        """From SEAWALL_PASSPHRASE, SEAWALL_PASSPHRASE_FILE or $SEAWALL_HOME/passphrase."""
        value = os.environ.get("SEAWALL_PASSPHRASE")
        if value:
            return value
        path = os.environ.get("SEAWALL_PASSPHRASE_FILE") or str(self.home / "passphrase")
        try:
            return Path(path).read_text().strip()
        except OSError:
            raise KeyMissing(
                "no repository passphrase: set SEAWALL_PASSPHRASE or SEAWALL_PASSPHRASE_FILE"
            ) from None

    # -- sites --------------------------------------------------------------------------
    def add_site(
        self,
        name: str,
        driver: str,
        params: Mapping[str, str] | None = None,
        repository: str = "",
        *,
        init_repository: bool = False,
        key_from: str | None = None,
    ) -> Site:
        """Register a site after checking that its driver answers. Nothing is kept on error."""
        site = load(
            Site,
            {
                "name": name,
                "driver": driver,
                "params": dict(params or {}),
                "repository": repository,
            },
        )
        try:
            self._db.get_site(name)
            raise Conflict(f"site {name} already exists")
        except NotFound:
            pass
        if driver not in registry().names("clouds"):
            known = ", ".join(registry().names("clouds"))
            raise InvalidInput(
                f"unknown driver {driver!r} (installed: {known})", field="site.driver"
            )
        open_site(site).ping()
        if init_repository and repository:
            source = self.repository(key_from) if key_from else None
            storage = open_storage(repository)
            kdf = os.environ.get("SEAWALL_KDF", "default")
            try:
                Repository.init(storage, self.passphrase(), key_from=source, kdf=kdf).close()
            except Conflict:
                Repository.open(storage, self.passphrase()).close()
        self._db.add_site(site)
        return site

    def list_sites(self) -> list[Site]:
        return self._db.list_sites()

    def remove_site(self, name: str) -> None:
        users = [w.name for w in self._db.list_workloads() if w.site == name or name in w.targets]
        if users:
            raise Conflict(f"site {name} is used by workload(s) {', '.join(users)}")
        self._db.remove_site(name)
        self.forget_site_handles(name)

    # -- policies -----------------------------------------------------------------------
    def create_policy(self, data: Mapping[str, Any]) -> Policy:
        policy = load(Policy, data)
        if policy.name in PRESETS:
            raise Conflict(f"{policy.name} is a built-in tier; choose another name")
        for t in policy.targets:
            self._db.get_site(t)
        self._db.add_policy(policy)
        return policy

    def get_policy(self, name: str) -> Policy:
        try:
            return self._db.get_policy(name)
        except NotFound:
            if name in PRESETS:
                return PRESETS[name]
            raise

    def list_policies(self) -> list[Policy]:
        stored = self._db.list_policies()
        return [*PRESETS.values(), *stored]

    # -- workloads ----------------------------------------------------------------------
    def create_workload(
        self,
        name: str,
        site: str,
        selector: Selector,
        policy: str,
        targets: Iterable[str] = (),
        project: str = "default",
    ) -> Workload:
        w = Workload(
            name=check_name(name, "workload.name"),
            site=site,
            selector=selector,
            policy=policy,
            targets=tuple(targets),
            project=project,
        )
        problems = []
        for s in (w.site, *w.targets):
            try:
                self._db.get_site(s)
            except NotFound:
                problems.append(f"site {s!r} does not exist")
        try:
            self.get_policy(policy)
        except NotFound:
            problems.append(f"policy {policy!r} does not exist")
        if problems:
            raise InvalidInput("; ".join(problems), field="workload")
        self._db.add_workload(w)
        return w

    def get_workload(self, name: str) -> Workload:
        return self._db.get_workload(name)

    def list_workloads(self, project: str | None = None) -> list[Workload]:
        return self._db.list_workloads(project)

    def resolve(self, workload: Workload) -> ResourceGraph:
        """The workload's graph as it is now on its site (selectors are re-resolved)."""
        graph = self.driver(workload.site).discover(workload.selector)
        if not graph.of_kind(ResourceKind.SERVER) and not graph.of_kind(ResourceKind.VOLUME):
            raise InvalidInput(
                f"the selector matches nothing at site {workload.site}", field="workload.selector"
            )
        return graph

    # -- recovery plans -----------------------------------------------------------------
    def set_plan(self, data: Mapping[str, Any]) -> RecoveryPlan:
        plan = load(RecoveryPlan, data, "plan")
        self._db.get_workload(plan.workload)
        self._db.get_site(plan.target)
        self._db.set_plan(plan)
        self._copy_plan(plan)
        return plan

    def _copy_plan(self, plan: RecoveryPlan) -> None:
        """Keep the plan in the target's repository too: a failover with the state
        database lost still boots by the plan (the repository describes itself)."""
        labels = {"workload": plan.workload, "target": plan.target}
        try:
            repo = self.repository(plan.target)
            old = repo.list_manifests("plan", labels)
            new = repo.save_manifest("plan", labels, dump(plan))
            for m in old:
                if m.id != new:
                    repo.delete_manifest(m.id)
        except SeawallError as exc:
            self._db.add_event(
                "plan-not-copied",
                f"the recovery plan of {plan.workload} for {plan.target} is only in the "
                f"state database ({exc}); set it again when the site's repository is back",
                severity="warning",
                workload=plan.workload,
            )

    def recovery_plan(self, workload: Workload, target: str, graph: ResourceGraph) -> RecoveryPlan:
        """The plan set for this target; else its copy in the target's repository (the
        state database was lost); else the default plan."""
        try:
            return self._db.get_plan(workload.name, target)
        except NotFound:
            pass
        labels = {"workload": workload.name, "target": target}
        try:
            copies = self.repository(target).list_manifests("plan", labels)
        except SeawallError:
            copies = []
        if copies:
            newest = max(copies, key=lambda m: m.created_at)
            plan = load(RecoveryPlan, newest.body, "plan")
            self._db.set_plan(plan)
            return plan
        return default_recovery_plan(workload, target, graph)

    # -- checkpoints --------------------------------------------------------------------
    def list_checkpoints(
        self, workload: str | None = None, site: str | None = None
    ) -> list[Checkpoint]:
        return self._db.list_checkpoints(workload=workload, site=site)

    def get_checkpoint(self, checkpoint_id: str) -> Checkpoint:
        return self._db.get_checkpoint(checkpoint_id)

    def catalogue(self, site: str, workload: str | None = None) -> list[Checkpoint]:
        """Checkpoints read from a site's repository (works with the state DB lost)."""
        labels = {"workload": workload} if workload else None
        found = []
        for m in self.repository(site).list_manifests("checkpoint", labels):
            cp = load(Checkpoint, m.body)
            self._db.put_checkpoint(cp, sites=[site])
            found.append(cp)
        return sorted(found, key=lambda c: -c.created_at)

    def latest_checkpoint(self, workload: str, site: str) -> Checkpoint | None:
        cps = self._db.list_checkpoints(workload=workload, site=site)
        if not cps:
            try:
                cps = self.catalogue(site, workload)
            except SeawallError:
                cps = []
        return cps[0] if cps else None

    def verify_checkpoint(
        self,
        checkpoint_id: str,
        site: str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Read back and authenticate every byte of a checkpoint's volume images."""
        sites = [site] if site else self._db.checkpoint_sites(checkpoint_id)
        report: dict[str, Any] = {"checkpoint": checkpoint_id, "sites": {}}
        for s in sites:
            repo = self.repository(s)
            cp = load(Checkpoint, repo.load_manifest(checkpoint_id).body)
            total = sum(v.size for v in cp.volumes)
            done = 0
            volumes = []
            for v in cp.volumes:
                nbytes = 0
                ok, why = True, ""
                try:
                    for _off, data in repo.read_volume(v.image_id):
                        nbytes += len(data)
                        if progress:
                            progress(done + _off + len(data), total)
                except SeawallError as exc:
                    ok, why = False, str(exc)
                done += v.size
                volumes.append(
                    {
                        "volume_id": v.volume_id,
                        "image_id": v.image_id,
                        "ok": ok,
                        "bytes": nbytes,
                        "why": why,
                    }
                )
            report["sites"][s] = {"ok": all(v["ok"] for v in volumes), "volumes": volumes}
        report["ok"] = all(s["ok"] for s in report["sites"].values())
        return report

    # -- planning (dry run) -------------------------------------------------------------
    def _target(self, workload: Workload, target: str | None) -> str:
        if target:
            self._db.get_site(target)
            return target
        if not workload.targets:
            raise InvalidInput(
                f"workload {workload.name} has no target site; pass --target", field="target"
            )
        return workload.targets[0]

    def plan_protect(
        self, workload: Workload, run_id: str, kind: RunKind = RunKind.PROTECT
    ) -> FlowPlan:
        policy = self.get_policy(workload.policy)
        graph = self.resolve(workload)
        previous = self.latest_checkpoint(workload.name, workload.site)
        if kind is RunKind.REPROTECT or (
            previous is None and workload.site != self._origin_site(workload)
        ):
            previous = self._recovery_base(workload) or previous
        return plan_protect(
            run_id=run_id,
            workload=workload,
            policy=policy,
            graph=graph,
            checkpoint_id=new_id("cp"),
            created_at=time.time(),
            previous=previous,
            kind=kind,
        )

    def _origin_site(self, workload: Workload) -> str:
        return workload.site

    def _recovery_base(self, workload: Workload) -> Checkpoint | None:
        """After a recovery to this site: the recovered volumes as a change-tracking base.

        The recovery's verification snapshots hold exactly the checkpoint's bytes, so
        the first checkpoint here reads only what changed since the recovery.
        """
        runs = self._db.list_runs(workload=workload.name, states=[RunState.SUCCEEDED])
        for run in runs:
            if (
                run.kind in (RunKind.FAILOVER, RunKind.MIGRATE, RunKind.FAILBACK)
                and run.result.get("target") == workload.site
            ):
                volumes = []
                for key, value in run.result.items():
                    if key.startswith("verify:") and value.get("snapshot_id"):
                        volumes.append(
                            VolumeImageRef(
                                volume_id=value["volume_id"],
                                image_id=value["image_id"],
                                size=0,
                                snapshot_id=value["snapshot_id"],
                            )
                        )
                cp_id = str(run.result.get("checkpoint_id", ""))
                if not volumes:
                    return None
                return Checkpoint(
                    id=cp_id,
                    workload=workload.name,
                    site=workload.site,
                    created_at=run.created_at,
                    graph=self.resolve(workload),
                    volumes=tuple(volumes),
                )
            if run.kind in (RunKind.PROTECT, RunKind.REPROTECT):
                return None
        return None

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
        tgt = target or (
            workload.site if mode is RecoverMode.DRILL and not workload.targets else None
        )
        tgt = self._target(workload, tgt)
        problems: list[str] = []
        cp: Checkpoint | None = None
        try:
            self.driver(tgt).ping()
        except SeawallError as exc:
            problems.append(f"target site {tgt}: {exc}")
        try:
            if checkpoint_id:
                cp = load(Checkpoint, self.repository(tgt).load_manifest(checkpoint_id).body)
            else:
                cp = self.latest_checkpoint(workload.name, tgt) or next(
                    iter(self.catalogue(tgt, workload.name)), None
                )
                if cp is None:
                    problems.append(f"no checkpoint of {workload.name} is available at site {tgt}")
        except SeawallError as exc:
            what = f"checkpoint {checkpoint_id}" if checkpoint_id else "the newest checkpoint"
            problems.append(f"{what} unreadable at {tgt}: {exc}")
            cp = None
        if cp is None and problems:
            # Check the rest against what is known of the workload, so that one preflight
            # lists every problem (mappings, quotas) and not only the first.
            cp = self._known_checkpoint(workload, checkpoint_id)
            if cp is not None:
                self._check_plan(workload, tgt, cp, mode, problems)
            raise PreflightFailed(problems)
        if cp is None:
            raise PreflightFailed(["no checkpoint"])
        plan = self._check_plan(workload, tgt, cp, mode, problems)
        if problems:
            raise PreflightFailed(problems)
        flow = plan_recover(
            run_id=run_id, kind=kind, mode=mode, checkpoint=cp, plan=plan, repository_site=tgt
        )
        return flow, cp, plan

    def _check_plan(
        self,
        workload: Workload,
        target: str,
        cp: Checkpoint,
        mode: RecoverMode,
        problems: list[str],
    ) -> RecoveryPlan:
        """Add the recovery plan's problems against ``cp`` and the target to ``problems``."""
        plan = self.recovery_plan(workload, target, cp.graph)
        try:
            names: dict[str, frozenset[str]] = {}
            for kind_ in ResourceKind:
                names[kind_.value] = frozenset(
                    r.name for r in self.driver(target).list_resources(kind_)
                )
            quotas = self.driver(target).quotas()
        except SeawallError:
            names, quotas = {}, {}
        problems += recovery_problems(
            checkpoint=cp, plan=plan, target_names=names, quotas=quotas, mode=mode
        )
        return plan

    def _known_checkpoint(self, workload: Workload, checkpoint_id: str | None) -> Checkpoint | None:
        """What the state database knows of a checkpoint (or of the newest one)."""
        try:
            if checkpoint_id:
                return self._db.get_checkpoint(checkpoint_id)
        except SeawallError:
            pass
        cps = self._db.list_checkpoints(workload=workload.name)
        return cps[0] if cps else None

    def plan_migrate(
        self,
        workload: Workload,
        run_id: str,
        *,
        kind: RunKind = RunKind.MIGRATE,
        target: str | None = None,
    ) -> tuple[FlowPlan, Checkpoint, RecoveryPlan]:
        """Fence the primary, take a final checkpoint, replicate it, recover at the target."""
        tgt = self._target(workload, target)
        policy = self.get_policy(workload.policy)
        problems: list[str] = []
        for s in (workload.site, tgt):
            try:
                self.driver(s).ping()
                self.repository(s)
            except SeawallError as exc:
                problems.append(f"site {s}: {exc}")
        if any(p.startswith(f"site {workload.site}:") for p in problems):
            raise PreflightFailed(problems)  # without the primary there is nothing to plan
        graph = self.resolve(workload)
        previous = self.latest_checkpoint(workload.name, workload.site) or self._recovery_base(
            workload
        )
        cp_id = new_id("cp")
        now = time.time()
        cp = pending_checkpoint(workload, graph, cp_id, now)
        plan = self.recovery_plan(workload, tgt, graph)
        try:
            names = {
                k.value: frozenset(r.name for r in self.driver(tgt).list_resources(k))
                for k in ResourceKind
            }
            quotas = self.driver(tgt).quotas()
        except SeawallError:
            names, quotas = {}, {}
        problems += recovery_problems(
            checkpoint=cp,
            plan=plan,
            target_names=names,
            quotas=quotas,
            mode=RecoverMode.MIGRATE,
        )
        if problems:
            raise PreflightFailed(problems)
        flow = plan_migrate(
            run_id=run_id,
            kind=kind,
            workload=workload,
            policy=policy,
            graph=graph,
            checkpoint_id=cp_id,
            created_at=now,
            previous=previous,
            plan=plan,
        )
        return flow, cp, plan

    def plan_operation(
        self,
        operation: str,
        workload_name: str,
        *,
        target: str | None = None,
        checkpoint_id: str | None = None,
    ) -> FlowPlan:
        """The compiled steps of an operation, without running anything (dry run)."""
        w = self.get_workload(workload_name)
        run_id = "run-dry-run"
        op = RunKind(operation)
        if op in (RunKind.PROTECT, RunKind.REPROTECT):
            return self.plan_protect(w, run_id, op)
        if op is RunKind.FAILOVER:
            return self.plan_recover(
                w,
                run_id,
                mode=RecoverMode.FAILOVER,
                kind=op,
                checkpoint_id=checkpoint_id,
                target=target,
            )[0]
        if op is RunKind.DRILL:
            return self.plan_recover(
                w,
                run_id,
                mode=RecoverMode.DRILL,
                kind=op,
                checkpoint_id=checkpoint_id,
                target=target,
            )[0]
        return self.plan_migrate(w, run_id, kind=op, target=target)[0]

    # -- operations ---------------------------------------------------------------------
    def protect(self, workload_name: str) -> Run:
        w = self.get_workload(workload_name)
        run_id = new_id("run")
        return self._execute(w, self.plan_protect(w, run_id), {})

    def failover(
        self, workload_name: str, *, checkpoint_id: str | None = None, target: str | None = None
    ) -> Run:
        return self._recover(workload_name, RecoverMode.FAILOVER, checkpoint_id, target)

    def drill(
        self, workload_name: str, *, checkpoint_id: str | None = None, target: str | None = None
    ) -> Run:
        return self._recover(workload_name, RecoverMode.DRILL, checkpoint_id, target)

    def _recover(
        self, workload_name: str, mode: RecoverMode, checkpoint_id: str | None, target: str | None
    ) -> Run:
        w = self.get_workload(workload_name)
        run_id = new_id("run")
        flow, cp, plan = self.plan_recover(
            w,
            run_id,
            mode=mode,
            kind=RunKind(mode.value),
            checkpoint_id=checkpoint_id,
            target=target,
        )
        return self._execute(
            w, flow, {"target": plan.target, "source": w.site, "checkpoint_id": cp.id}
        )

    def migrate(self, workload_name: str, *, target: str | None = None) -> Run:
        w = self.get_workload(workload_name)
        run_id = new_id("run")
        flow, cp, plan = self.plan_migrate(w, run_id, target=target)
        return self._execute(
            w, flow, {"target": plan.target, "source": w.site, "checkpoint_id": cp.id}
        )

    def reprotect(self, workload_name: str) -> Run:
        """Protect the recovered copy back towards the old primary (only what changed)."""
        w = self.get_workload(workload_name)
        if not w.targets:
            raise Conflict(f"workload {w.name} has no site to protect back to")
        for t in w.targets:
            self.driver(t).ping()
            self.repository(t)
        run_id = new_id("run")
        return self._execute(w, self.plan_protect(w, run_id, RunKind.REPROTECT), {})

    def failback(self, workload_name: str) -> Run:
        """Planned migration back to the original site, after reprotect."""
        w = self.get_workload(workload_name)
        if not w.targets:
            raise Conflict(f"workload {w.name} has no site to fail back to")
        run_id = new_id("run")
        flow, cp, plan = self.plan_migrate(w, run_id, kind=RunKind.FAILBACK, target=w.targets[0])
        return self._execute(
            w, flow, {"target": plan.target, "source": w.site, "checkpoint_id": cp.id}
        )

    # -- runs ---------------------------------------------------------------------------
    def _execute(self, w: Workload, flow: FlowPlan, params: Mapping[str, Any]) -> Run:
        run = Run(
            id=flow.run_id,
            kind=flow.kind,
            workload=w.name,
            created_at=time.time(),
            params={"title": flow.title, **params},
            project=w.project,
        )
        self._db.add_run(run)
        self._db.update_run_result(run.id, {**params, "owner": owner()})
        self._db.set_run_state(run.id, RunState.RUNNING)
        for listener in self._listeners:
            listener(run.id)
        state, error = self.runner.start(flow)
        return self._finalize(run.id, state, error)

    _listeners: list[Callable[[str], None]] = []

    def on_run_started(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(run_id)`` as each run starts (the CLI shows progress with it)."""
        self._listeners = [*self._listeners, listener]

    def _finalize(self, run_id: str, engine_state: str, error: str) -> Run:
        run = self._db.get_run(run_id)
        result = dict(run.result)
        cancelled = self._db.cancel_requested(run_id)
        if engine_state == tf_states.SUCCESS:
            partial = []
            for key, value in result.items():
                if (
                    key.startswith(("check:", "verify:"))
                    and isinstance(value, dict)
                    and not value.get("ok", value.get("verified", True))
                ):
                    partial.append(f"{key}: {value.get('why', 'failed')}")
                if (
                    key.startswith("replication:")
                    and isinstance(value, dict)
                    and not value.get("ok")
                ):
                    partial.append(f"{key}: {value.get('error', 'failed')}")
            if run.kind is RunKind.DRILL and result.get("residue", 0):
                partial.append(f"drill left {result['residue']} resource(s) behind")
            extra = self._measure(run, result)
            self._db.update_run_result(run_id, extra)
            final = RunState.PARTIALLY_FAILED if partial else RunState.SUCCEEDED
            run = self._db.set_run_state(run_id, final, error="; ".join(partial) or None)
            if final is RunState.SUCCEEDED:
                self._after_success(run)
            else:
                self._db.add_event(
                    "run-partially-failed",
                    f"{run.kind.value} {run.workload}: {'; '.join(partial)}",
                    severity="warning",
                    workload=run.workload,
                    run_id=run_id,
                )
            return run
        if engine_state == tf_states.REVERTED:
            final = RunState.CANCELLED if cancelled else RunState.REVERTED
            if run.state is RunState.RUNNING and not cancelled:
                run = self._db.set_run_state(run_id, RunState.REVERTING)
        else:
            final = RunState.FAILED
        if final not in RUN_TRANSITIONS[run.state]:
            final = RunState.FAILED
        run = self._db.set_run_state(run_id, final, error=error or engine_state)
        self._db.add_event(
            "run-failed" if final is not RunState.CANCELLED else "run-cancelled",
            f"{run.kind.value} {run.workload} {final.value}: {error}",
            severity="error" if final is not RunState.CANCELLED else "info",
            workload=run.workload,
            run_id=run_id,
        )
        return run

    def _measure(self, run: Run, result: Mapping[str, Any]) -> dict[str, Any]:
        now = time.time()
        out: dict[str, Any] = {"duration_seconds": round(now - run.created_at, 3)}
        if run.kind in (RunKind.FAILOVER, RunKind.MIGRATE, RunKind.FAILBACK, RunKind.DRILL):
            healthy = [
                v["at"]
                for k, v in result.items()
                if k.startswith("check:") and isinstance(v, dict) and v.get("ok")
            ]
            out["rto_seconds"] = round((max(healthy) if healthy else now) - run.created_at, 3)
            verifies = [v for k, v in result.items() if k.startswith("verify:")]
            out["verified"] = (
                bool(verifies)
                and all(v.get("verified") for v in verifies)
                and all(v.get("ok") for k, v in result.items() if k.startswith("check:"))
            )
            if run.kind in (RunKind.MIGRATE, RunKind.FAILBACK):
                out["data_loss_window_seconds"] = self._fenced_gap(run.id)
            elif run.kind is not RunKind.DRILL:
                cp_id = result.get("checkpoint_id")
                try:
                    cp = self._db.get_checkpoint(str(cp_id))
                    out["data_loss_window_seconds"] = round(run.created_at - cp.created_at, 3)
                except SeawallError:
                    pass
        return out

    def _fenced_gap(self, run_id: str) -> float:
        """A migration loses what was written after its final snapshots: nothing, when
        every server was fenced before the first of them was taken (else the overlap)."""
        steps = self._db.list_steps(run_id)
        fenced = [s.finished_at for s in steps if s.name.startswith("fence-server:")]
        snaps = [s.started_at for s in steps if s.name.startswith("final-snapshot-volume:")]
        if not fenced or not snaps:
            return 0.0
        return round(max(0.0, max(fenced) - min(snaps)), 3)

    def _after_success(self, run: Run) -> None:
        """A successful recovery makes the target the workload's site (reversed roles)."""
        if run.kind in (RunKind.FAILOVER, RunKind.MIGRATE, RunKind.FAILBACK):
            w = self._db.get_workload(run.workload)
            target = str(run.result["target"])
            source = str(run.result["source"])
            names = tuple(s.name for s in self._recovered_servers(run))
            selector = w.selector
            if selector.kind.value == "members" and names:
                selector = Selector(selector.kind, members=names)
            targets = (source, *[t for t in w.targets if t not in (target, source)])
            self._db.update_workload(replace(w, site=target, targets=targets, selector=selector))
            self._db.add_event(
                f"{run.kind.value}-completed",
                f"{w.name} now runs at {target}; protect it back with `seawall reprotect {w.name}`",
                workload=w.name,
                run_id=run.id,
            )

    def _recovered_servers(self, run: Run) -> list[Any]:
        out = []
        for rec in self._db.list_created(run.id):
            if rec.kind == ResourceKind.SERVER.value and not rec.removed:
                r = self.driver(rec.site).get(_ref(ResourceKind.SERVER, rec.resource_id))
                if r is not None:
                    out.append(r)
        return out

    def get_run(self, run_id: str) -> Run:
        return self._db.get_run(run_id)

    def list_runs(self, workload: str | None = None, limit: int = 50) -> list[Run]:
        return self._db.list_runs(workload=workload, limit=limit)

    def steps(self, run_id: str) -> list[Step]:
        return self._db.list_steps(run_id)

    def cancel(self, run_id: str) -> Run:
        run = self._db.get_run(run_id)
        if run.state not in UNFINISHED:
            raise Conflict(
                f"run {run_id} is {run.state.value}; only unfinished runs can be cancelled"
            )
        self._db.request_cancel(run_id)
        if run.state is RunState.PENDING:
            return self._db.set_run_state(run_id, RunState.CANCELLED)
        if run.state is RunState.RUNNING:
            return self._db.set_run_state(run_id, RunState.CANCELLING)
        return self._db.get_run(run_id)

    def resume_unfinished(self) -> list[Run]:
        """Continue every run whose process died: resumed to the end, or reverted."""
        done = []
        me = owner()
        for run in self._db.list_runs(states=UNFINISHED, limit=1000):
            info = run.result.get("owner", {})
            if isinstance(info, dict) and owner_alive(info):
                continue
            lease = f"run:{run.id}"
            if isinstance(info, dict) and info.get("pid"):
                # a resumer killed in turn still holds the run's lease (for an hour): free it
                self._db.release_lease(lease, f"{info.get('host')}:{info.get('pid')}")
            if not self._db.acquire_lease(lease, f"{me['host']}:{me['pid']}", ttl=3600):
                continue
            try:
                # Another resumer may have finished (or taken) it since we listed it.
                run = self._db.get_run(run.id)
                now = run.result.get("owner", {})
                if run.state not in UNFINISHED or (
                    isinstance(now, dict) and now != info and owner_alive(now)
                ):
                    continue
                self._db.update_run_result(run.id, {"owner": me, "resumed": True})
                if run.state is RunState.PENDING:
                    self._db.set_run_state(run.id, RunState.RUNNING)
                for listener in self._listeners:
                    listener(run.id)
                try:
                    state, error = self.runner.resume(run.id)
                except NotFound as exc:
                    state, error = tf_states.FAILURE, str(exc)
                done.append(self._finalize(run.id, state, error))
            finally:
                self._db.release_lease(lease, f"{me['host']}:{me['pid']}")
        return done

    # -- reports ------------------------------------------------------------------------
    def achieved_rpo(self, workload: str, site: str | None = None) -> float | None:
        w = self.get_workload(workload)
        at = site or (w.targets[0] if w.targets else w.site)
        cps = self._db.list_checkpoints(workload=workload, site=at)
        return round(time.time() - cps[0].created_at, 3) if cps else None

    def plugins(self) -> list[dict[str, str]]:
        return [dump(p) for p in registry().describe()]

    # -- service mode (scheduler, API) --------------------------------------------------
    # What `seawall serve` needs beyond the CLI: figures for every workload in one query,
    # operations split into a synchronous preflight (the API answers 202 or a problem at
    # once) and an execution a worker thread runs, leases, events, usage. Additive only.

    def list_plans(self, workload: str | None = None) -> list[RecoveryPlan]:
        return self._db.list_plans(workload)

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

    def latest_runs(self) -> dict[tuple[str, str], Run]:
        """(workload, kind) -> newest run of that kind, for every workload at once."""
        return self._db.latest_runs()

    def rpo_report(self, now: float | None = None) -> list[dict[str, Any]]:
        """Every workload's achieved RPO against its policy (one query for all of them).

        Achieved RPO is the age of the newest checkpoint held at the recovery site (the
        first target, or the workload's own site when it has none), as
        :meth:`achieved_rpo` computes it; ``compliant`` is None while none exists.
        """
        now = time.time() if now is None else now
        times = self._db.checkpoint_times()
        policies: dict[str, Policy | None] = {}
        out = []
        for w in self._db.list_workloads():
            if w.policy not in policies:
                try:
                    policies[w.policy] = self.get_policy(w.policy)
                except NotFound:
                    policies[w.policy] = None
            policy = policies[w.policy]
            at = w.targets[0] if w.targets else w.site
            held = times.get((w.name, at))
            local = times.get((w.name, w.site))
            achieved = round(now - held[1], 3) if held else None
            rpo = policy.rpo_seconds if policy else None
            out.append(
                {
                    "workload": w.name,
                    "project": w.project,
                    "site": w.site,
                    "recovery_site": at,
                    "policy": w.policy,
                    "rpo_seconds": rpo,
                    "achieved_rpo_seconds": achieved,
                    "compliant": None if achieved is None or rpo is None else achieved <= rpo,
                    "newest_checkpoint_at": held[1] if held else None,
                    "oldest_checkpoint_at": held[0] if held else None,
                    "newest_local_checkpoint_at": local[1] if local else None,
                }
            )
        return out

    def prepare_operation(
        self,
        operation: str,
        workload_name: str,
        *,
        target: str | None = None,
        checkpoint_id: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> tuple[Run, FlowPlan]:
        """Preflight an operation and record its run as PENDING; nothing runs yet.

        Errors (PreflightFailed, NotFound, ...) come out here, before any run exists;
        :meth:`execute_prepared` then runs it (on a worker thread in `seawall serve`).
        """
        w = self.get_workload(workload_name)
        op = RunKind(operation)
        run_id = new_id("run")
        extra: dict[str, Any] = {}
        if op in (RunKind.PROTECT, RunKind.REPROTECT):
            if op is RunKind.REPROTECT:
                if not w.targets:
                    raise Conflict(f"workload {w.name} has no site to protect back to")
                for t in w.targets:
                    self.driver(t).ping()
                    self.repository(t)
            flow = self.plan_protect(w, run_id, op)
        elif op in (RunKind.FAILOVER, RunKind.DRILL):
            mode = RecoverMode.DRILL if op is RunKind.DRILL else RecoverMode.FAILOVER
            flow, cp, plan = self.plan_recover(
                w, run_id, mode=mode, kind=op, checkpoint_id=checkpoint_id, target=target
            )
            extra = {"target": plan.target, "source": w.site, "checkpoint_id": cp.id}
        else:
            if op is RunKind.FAILBACK:
                if not w.targets:
                    raise Conflict(f"workload {w.name} has no site to fail back to")
                target = w.targets[0]
            flow, cp, plan = self.plan_migrate(w, run_id, kind=op, target=target)
            extra = {"target": plan.target, "source": w.site, "checkpoint_id": cp.id}
        run = Run(
            id=run_id,
            kind=flow.kind,
            workload=w.name,
            created_at=time.time(),
            params={"title": flow.title, **extra, **dict(params or {})},
            project=w.project,
        )
        self._db.add_run(run)
        self._db.update_run_result(run_id, {**extra, "owner": owner()})
        return self._db.get_run(run_id), flow

    def execute_prepared(self, run: Run, flow: FlowPlan) -> Run:
        """Run a prepared run to its end (unless it was cancelled while pending)."""
        current = self._db.get_run(run.id)
        if current.state is not RunState.PENDING:
            return current
        self._db.update_run_result(run.id, {"owner": owner()})
        self._db.set_run_state(run.id, RunState.RUNNING)
        for listener in self._listeners:
            listener(run.id)
        state, error = self.runner.start(flow)
        done = self._finalize(run.id, state, error)
        self.record_compute_hours(done.id)
        return done

    def find_run(self, *, project: str, key: str, limit: int = 500) -> Run | None:
        """The newest run of ``project`` started with idempotency key ``key``."""
        for run in self._db.list_runs(limit=limit):
            if run.project == project and run.params.get("idempotency_key") == key:
                return run
        return None

    def record_compute_hours(self, run_id: str) -> float:
        """Usage for a finished drill or recovery: servers it created x hours it ran.

        Recorded once per run, whichever process gets there first (a lease per run).
        """
        run = self._db.get_run(run_id)
        recover = (RunKind.DRILL, RunKind.FAILOVER, RunKind.MIGRATE, RunKind.FAILBACK)
        if run.kind not in recover or run.state in UNFINISHED or "compute_hours" in run.result:
            return 0.0
        me = owner()
        if not self._db.acquire_lease(f"usage:{run_id}", f"{me['host']}:{me['pid']}", 86400):
            return 0.0
        servers = sum(
            1 for r in self._db.list_created(run_id) if r.kind == ResourceKind.SERVER.value
        )
        hours = servers * max(0.0, (run.finished_at or time.time()) - run.created_at) / 3600
        self._db.add_usage(run.project, "compute_hours", hours, workload=run.workload)
        self._db.update_run_result(run_id, {"compute_hours": round(hours, 6)})
        return hours


def _ref(kind: ResourceKind, rid: str) -> Any:
    from seawall.model import ResourceRef

    return ResourceRef(kind, rid)
