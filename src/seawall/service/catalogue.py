"""What seawall knows about: sites, policies, workloads, recovery plans and checkpoints.

The state database caches all of it; the repositories are the source of truth for
checkpoints and keep a copy of every recovery plan, so :meth:`Catalogue.catalogue` and
:meth:`Catalogue.recovery_plan` work with the state database lost.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from seawall.clouds import open_site
from seawall.db import StateStore
from seawall.errors import Conflict, Forbidden, InvalidInput, NotFound, SeawallError
from seawall.fidelity import Drift, drift
from seawall.model import (
    PRESETS,
    Checkpoint,
    Policy,
    RecoveryPlan,
    ResourceGraph,
    ResourceKind,
    Selector,
    Site,
    Workload,
    check_name,
    dump,
    load,
)
from seawall.orchestrate.plans import default_recovery_plan
from seawall.plugins import registry
from seawall.repo import Repository
from seawall.service.handles import Handles
from seawall.storage import open_storage, split_credentials

#: driver parameter names that would hold a secret in a site's (plain-text) record
SECRET_PARAM = re.compile(r"pass|secret|token|credential|private", re.IGNORECASE)


class Catalogue:
    """Sites, policies, workloads, plans and checkpoints, over the process's handles."""

    def __init__(self, handles: Handles) -> None:
        self.handles = handles

    @property
    def db(self) -> StateStore:
        return self.handles.db

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
        credentials: Mapping[str, str] | None = None,
    ) -> Site:
        """Register a site after checking that its driver answers. Nothing is kept on error.

        The repository's ``credentials`` (and any still written into its URL's query
        string, which is moved out of it) are kept encrypted in the home
        (:class:`~seawall.service.handles.SiteCredentials`), never in the site's record.
        A driver parameter that looks like a secret is refused: an OpenStack site names a
        clouds.yaml entry, where its password or application credential lives.
        """
        secret_params = sorted(k for k in params or {} if SECRET_PARAM.search(k))
        if secret_params:
            raise InvalidInput(
                f"{', '.join(secret_params)}: a site's parameters are stored and shown in "
                "plain text; put the password in clouds.yaml and name the entry with cloud=",
                field="site.params",
            )
        repository, in_url = split_credentials(repository)
        kept = {**in_url, **(credentials or {})}
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
            self.db.get_site(name)
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
            source = self.handles.repository(key_from) if key_from else None
            storage = open_storage(repository, kept)
            kdf = os.environ.get("SEAWALL_KDF", "default")
            passphrase = self.handles.passphrase()
            try:
                Repository.init(storage, passphrase, key_from=source, kdf=kdf).close()
            except Conflict:
                Repository.open(storage, passphrase).close()
        self.db.add_site(site)
        self.handles.credentials.save(name, kept)
        return site

    def set_credentials(self, name: str, credentials: Mapping[str, str]) -> Site:
        """Give site ``name``'s repository new ``credentials``, and move any still in its
        URL (a site added before credentials were kept apart) out of the record."""
        site = self.db.get_site(name)
        repository, in_url = split_credentials(site.repository)
        kept = {**self.handles.credentials.load(name), **in_url, **credentials}
        if not kept:
            raise InvalidInput(
                f"site {name}: no credentials given; use --s3-access-key-id and "
                "--s3-secret-access-key-file",
                field="credentials",
            )
        self.handles.credentials.save(name, kept)
        if repository != site.repository:
            site = replace(site, repository=repository)
            self.db.update_site(site)
        self.handles.forget(name)
        return site

    def remove_site(self, name: str) -> None:
        users = [w.name for w in self.db.list_workloads() if w.site == name or name in w.targets]
        if users:
            raise Conflict(f"site {name} is used by workload(s) {', '.join(users)}")
        self.db.remove_site(name)
        self.handles.credentials.remove(name)
        self.handles.forget(name)

    # -- policies -----------------------------------------------------------------------
    def create_policy(self, data: Mapping[str, Any]) -> Policy:
        policy = load(Policy, data)
        if policy.name in PRESETS:
            raise Conflict(f"{policy.name} is a built-in tier; choose another name")
        for t in policy.targets:
            self.db.get_site(t)
        self.db.add_policy(policy)
        return policy

    def get_policy(self, name: str) -> Policy:
        """A stored policy, else the built-in tier of that name."""
        try:
            return self.db.get_policy(name)
        except NotFound:
            if name in PRESETS:
                return PRESETS[name]
            raise

    def list_policies(self) -> list[Policy]:
        return [*PRESETS.values(), *self.db.list_policies()]

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
                self.db.get_site(s)
            except NotFound:
                problems.append(f"site {s!r} does not exist")
        try:
            self.get_policy(policy)
        except NotFound:
            problems.append(f"policy {policy!r} does not exist")
        if problems:
            raise InvalidInput("; ".join(problems), field="workload")
        for s in (w.site, *w.targets):
            self.can_act_for(s, project)
        self.db.add_workload(w)
        return w

    def can_act_for(self, site: str, project: str) -> None:
        """Forbidden unless ``site`` can act for ``project`` (an OpenStack site needs
        credentials scoped to it, see ``CloudDriver.for_project``). Only that: a site that
        does not answer now is the preflight's and the steps' to report."""
        try:
            self.handles.driver(site, project)
        except Forbidden:
            raise
        except SeawallError:
            pass

    def resolve(self, workload: Workload) -> ResourceGraph:
        """The workload's graph as it is now on its site (selectors are re-resolved)."""
        graph = self.handles.driver(workload.site, workload.project).discover(workload.selector)
        if not graph.of_kind(ResourceKind.SERVER) and not graph.of_kind(ResourceKind.VOLUME):
            raise InvalidInput(
                f"the selector matches nothing at site {workload.site}", field="workload.selector"
            )
        return graph

    # -- recovery plans -----------------------------------------------------------------
    def set_plan(self, data: Mapping[str, Any]) -> RecoveryPlan:
        plan = load(RecoveryPlan, data, "plan")
        self.db.get_workload(plan.workload)
        self.db.get_site(plan.target)
        self.db.set_plan(plan)
        self._copy_plan(plan)
        return plan

    def _copy_plan(self, plan: RecoveryPlan) -> None:
        """Keep the plan in the target's repository too: a failover with the state
        database lost still boots by the plan (the repository describes itself)."""
        labels = {"workload": plan.workload, "target": plan.target}
        try:
            repo = self.handles.repository(plan.target)
            old = repo.list_manifests("plan", labels)
            new = repo.save_manifest("plan", labels, dump(plan))
            for m in old:
                if m.id != new:
                    repo.delete_manifest(m.id)
        except SeawallError as exc:
            self.db.add_event(
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
            return self.db.get_plan(workload.name, target)
        except NotFound:
            pass
        labels = {"workload": workload.name, "target": target}
        try:
            copies = self.handles.repository(target).list_manifests("plan", labels)
        except SeawallError:
            copies = []
        if copies:
            newest = max(copies, key=lambda m: m.created_at)
            plan = load(RecoveryPlan, newest.body, "plan")
            self.db.set_plan(plan)
            return plan
        return default_recovery_plan(workload, target, graph)

    # -- checkpoints --------------------------------------------------------------------
    def catalogue(self, site: str, workload: str | None = None) -> list[Checkpoint]:
        """Checkpoints read from a site's repository (works with the state DB lost)."""
        labels = {"workload": workload} if workload else None
        found = []
        for m in self.handles.repository(site).list_manifests("checkpoint", labels):
            cp = load(Checkpoint, m.body)
            self.db.put_checkpoint(cp, sites=[site])
            found.append(cp)
        return sorted(found, key=lambda c: -c.created_at)

    def latest_checkpoint(self, workload: str, site: str) -> Checkpoint | None:
        cps = self.db.list_checkpoints(workload=workload, site=site)
        if not cps:
            try:
                cps = self.catalogue(site, workload)
            except SeawallError:
                cps = []
        return cps[0] if cps else None

    def diff_checkpoints(self, older: str, newer: str) -> tuple[Checkpoint, Checkpoint, Drift]:
        """Attribute-level drift from checkpoint ``older`` to ``newer``, which must be
        checkpoints of one workload (ids are only comparable within it)."""
        a, b = self.db.get_checkpoint(older), self.db.get_checkpoint(newer)
        if a.workload != b.workload:
            raise InvalidInput(
                f"checkpoint {a.id} is of workload {a.workload!r} and {b.id} of "
                f"{b.workload!r}; diff two checkpoints of the same workload",
                field="checkpoint",
            )
        return a, b, drift(a.graph, b.graph)

    def drift_since_checkpoint(self, workload: Workload) -> tuple[Checkpoint | None, Drift]:
        """What changed on the workload's site since its newest checkpoint there (all of
        it is new when it has none): what a recovery would not bring back."""
        latest = self.latest_checkpoint(workload.name, workload.site)
        now = self.resolve(workload)
        return latest, drift(latest.graph if latest else ResourceGraph(), now)

    def verify_checkpoint(
        self,
        checkpoint_id: str,
        site: str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Read back and authenticate every byte of a checkpoint's volume images."""
        sites = [site] if site else self.db.checkpoint_sites(checkpoint_id)
        report: dict[str, Any] = {"checkpoint": checkpoint_id, "sites": {}}
        for s in sites:
            repo = self.handles.repository(s)
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
