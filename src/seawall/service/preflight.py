"""Preflight: every reason an operation cannot start, listed at once, nothing created.

Each operation's preflight (see the table in :mod:`seawall.service.operations`) either
raises — :class:`~seawall.errors.PreflightFailed` with the whole list of problems, or the
one error that makes the rest moot — or returns a :class:`Checked`: what it established
and the planner compiles from (target, checkpoint, recovery plan, graph).

A recovery preflight with no usable checkpoint still checks the recovery plan against
what the state database knows of the workload, so that one run of it shows the
mappings and quotas to fix too, not only the first problem.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from seawall.errors import (
    Conflict,
    InvalidInput,
    KeyMissing,
    NotFound,
    PreflightFailed,
    SeawallError,
    UnsupportedVersion,
    WrongPassphrase,
)
from seawall.model import Checkpoint, RecoveryPlan, ResourceGraph, ResourceKind, Workload, load
from seawall.orchestrate.plans import RecoverMode, pending_checkpoint, recovery_problems
from seawall.service.catalogue import Catalogue
from seawall.service.handles import new_id


@dataclass(frozen=True)
class Checked:
    """What a preflight found; the planner of the same operation compiles from it."""

    target: str = ""
    #: the checkpoint a recovery starts from (a migration's: the final one, still pending)
    checkpoint: Checkpoint | None = None
    plan: RecoveryPlan | None = None
    graph: ResourceGraph | None = None  #: a migration's graph, discovered now


def target_site(cat: Catalogue, workload: Workload, target: str | None) -> str:
    """The site named (it must exist), else the workload's first target."""
    if target:
        cat.db.get_site(target)
        return target
    if not workload.targets:
        raise InvalidInput(
            f"workload {workload.name} has no target site; pass --target", field="target"
        )
    return workload.targets[0]


def target_inventory(
    cat: Catalogue, target: str, project: str
) -> tuple[dict[str, frozenset[str]], Mapping[str, int]]:
    """The target's resource names by kind and its quotas as ``project`` sees them ({} each
    if it does not answer: the unreachable site is reported on its own)."""
    try:
        driver = cat.handles.driver(target, project)
        names = {k.value: frozenset(r.name for r in driver.list_resources(k)) for k in ResourceKind}
        return names, driver.quotas()
    except SeawallError:
        return {}, {}


def plan_problems(
    cat: Catalogue,
    workload: Workload,
    target: str,
    cp: Checkpoint,
    mode: RecoverMode,
    problems: list[str],
) -> RecoveryPlan:
    """Add the recovery plan's problems against ``cp`` and the target to ``problems``."""
    plan = cat.recovery_plan(workload, target, cp.graph)
    names, quotas = target_inventory(cat, target, workload.project)
    problems += recovery_problems(
        checkpoint=cp, plan=plan, target_names=names, quotas=quotas, mode=mode
    )
    return plan


def known_checkpoint(
    cat: Catalogue, workload: Workload, checkpoint_id: str | None
) -> Checkpoint | None:
    """What the state database knows of a checkpoint (or of the newest one)."""
    try:
        if checkpoint_id:
            named = cat.db.get_checkpoint(checkpoint_id)
            if named.workload == workload.name:
                return named
            return None  # another workload's: nothing of it is planned against
    except SeawallError:
        pass
    cps = cat.db.list_checkpoints(workload=workload.name)
    return cps[0] if cps else None


def open_keys(cat: Catalogue, sites: Sequence[str]) -> None:
    """Open the repository key of every site in ``sites``: a wrong passphrase (exit 9),
    none at all or a refused file (exit 10), a damaged key file stop the operation here,
    before a run exists. Any other trouble with a repository (unreachable, say) is left
    to the steps, where a protect's replication records it as a partial failure and the
    local checkpoint survives."""
    for site in dict.fromkeys(sites):
        try:
            cat.handles.repository(site)
        except (WrongPassphrase, KeyMissing, UnsupportedVersion):
            raise
        except SeawallError:
            continue


def protect(cat: Catalogue, workload: Workload, target: str | None) -> Checked:
    """A protect opens its repositories' keys now (:func:`open_keys`); its first step
    checks the site itself."""
    open_keys(cat, [workload.site, *workload.targets])
    for site in (workload.site, *workload.targets):
        cat.can_act_for(site, workload.project)
    return Checked()


def protect_back(cat: Catalogue, workload: Workload, target: str | None) -> Checked:
    """Reprotect: every old primary (now a target) answers and has its repository."""
    if not workload.targets:
        raise Conflict(f"workload {workload.name} has no site to protect back to")
    for t in workload.targets:
        cat.handles.driver(t, workload.project).ping()
        cat.handles.repository(t)
    return Checked()


def _named_checkpoint(
    cat: Catalogue, workload: Workload, target: str, checkpoint_id: str, problems: list[str]
) -> Checkpoint | None:
    """The checkpoint ``checkpoint_id`` at ``target`` if it is one of ``workload``'s. One
    of another workload (of another project, say) is answered exactly as a missing one:
    a recovery never starts from data that is not the workload's own, and the answer does
    not tell whether the id exists."""
    cp: Checkpoint | None = None
    with contextlib.suppress(NotFound):
        cp = load(Checkpoint, cat.handles.repository(target).load_manifest(checkpoint_id).body)
    if cp is None or cp.workload != workload.name:
        problems.append(
            f"checkpoint {checkpoint_id} of {workload.name} is not at site {target}; "
            f"`seawall checkpoint list --workload {workload.name}` lists them"
        )
        return None
    return cp


def _recovery_checkpoint(
    cat: Catalogue, workload: Workload, target: str, checkpoint_id: str | None, problems: list[str]
) -> Checkpoint | None:
    """The checkpoint named, else the newest one held at ``target``; None (and a
    problem) when there is none or it cannot be read."""
    try:
        if checkpoint_id:
            return _named_checkpoint(cat, workload, target, checkpoint_id, problems)
        cp = cat.latest_checkpoint(workload.name, target) or next(
            iter(cat.catalogue(target, workload.name)), None
        )
        if cp is None:
            problems.append(f"no checkpoint of {workload.name} is available at site {target}")
        return cp
    except (WrongPassphrase, KeyMissing):
        raise  # the one error that makes the rest moot: nothing can be read without it
    except SeawallError as exc:
        what = f"checkpoint {checkpoint_id}" if checkpoint_id else "the newest checkpoint"
        problems.append(f"{what} unreadable at {target}: {exc}")
        return None


def recover(
    cat: Catalogue,
    workload: Workload,
    mode: RecoverMode,
    *,
    checkpoint_id: str | None = None,
    target: str | None = None,
) -> Checked:
    """Failover or drill: the target answers, the checkpoint is readable there, and the
    recovery plan fits the checkpoint and the target (mappings, boot groups, quotas)."""
    tgt = target or (workload.site if mode is RecoverMode.DRILL and not workload.targets else None)
    tgt = target_site(cat, workload, tgt)
    problems: list[str] = []
    try:
        cat.handles.driver(tgt, workload.project).ping()
    except SeawallError as exc:
        problems.append(f"target site {tgt}: {exc}")
    cp = _recovery_checkpoint(cat, workload, tgt, checkpoint_id, problems)
    if cp is None and problems:
        known = known_checkpoint(cat, workload, checkpoint_id)
        if known is not None:
            plan_problems(cat, workload, tgt, known, mode, problems)
        raise PreflightFailed(problems)
    if cp is None:
        raise PreflightFailed(["no checkpoint"])
    plan = plan_problems(cat, workload, tgt, cp, mode, problems)
    if problems:
        raise PreflightFailed(problems)
    return Checked(target=tgt, checkpoint=cp, plan=plan)


def migrate(cat: Catalogue, workload: Workload, target: str | None) -> Checked:
    """Both sites answer with their repositories; the plan fits the graph as it is now
    (the final checkpoint, not yet taken, will hold exactly that graph)."""
    tgt = target_site(cat, workload, target)
    problems: list[str] = []
    for s in (workload.site, tgt):
        try:
            cat.handles.driver(s, workload.project).ping()
            cat.handles.repository(s)
        except (WrongPassphrase, KeyMissing):
            raise
        except SeawallError as exc:
            problems.append(f"site {s}: {exc}")
    if any(p.startswith(f"site {workload.site}:") for p in problems):
        raise PreflightFailed(problems)  # without the primary there is nothing to plan
    graph = cat.resolve(workload)
    cp = pending_checkpoint(workload, graph, new_id("cp"), time.time())
    plan = plan_problems(cat, workload, tgt, cp, RecoverMode.MIGRATE, problems)
    if problems:
        raise PreflightFailed(problems)
    return Checked(target=tgt, checkpoint=cp, plan=plan, graph=graph)


def fail_back(cat: Catalogue, workload: Workload, target: str | None) -> Checked:
    """Failback is a migration to the workload's first target (its old primary)."""
    if not workload.targets:
        raise Conflict(f"workload {workload.name} has no site to fail back to")
    return migrate(cat, workload, workload.targets[0])
