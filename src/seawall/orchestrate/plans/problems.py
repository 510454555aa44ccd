"""What a recovery needs and whether the target can give it: the preflight rules.

Pure, like the planners: the caller passes in the target's resource names and quotas.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from seawall.model import (
    Checkpoint,
    RecoveryPlan,
    Resource,
    ResourceGraph,
    ResourceKind,
)

K = ResourceKind


class RecoverMode(enum.StrEnum):
    FAILOVER = "failover"  #: the primary is gone; recreate at the target
    DRILL = "drill"  #: test bubble at the target, verified, then removed completely
    MIGRATE = "migrate"  #: planned; the primary is fenced and a final checkpoint taken


#: attributes that describe a resource's runtime, never copied to a new one
RUNTIME_ATTRS = frozenset({"status", "access_address", "created_at", "updated_at"})

_MAPPED_KINDS = {
    K.NETWORK: "network",
    K.SUBNET: "subnet",
    K.FLAVOR: "flavor",
    K.IMAGE: "image",
}


#: kinds a drill never maps onto the target's own resources: its bubble gets new,
#: isolated copies, so production networks are never touched by a test
_NEVER_MAPPED_IN_DRILL = frozenset({K.NETWORK, K.SUBNET})


def _mapped_to(plan: RecoveryPlan, r: Resource, mode: RecoverMode) -> str:
    attr = _MAPPED_KINDS.get(r.kind)
    if attr is None or (mode is RecoverMode.DRILL and r.kind in _NEVER_MAPPED_IN_DRILL):
        return ""
    table: Mapping[str, str] = getattr(plan.mappings, attr)
    return table.get(r.name, "")


def recovery_problems(
    *,
    checkpoint: Checkpoint,
    plan: RecoveryPlan,
    target_names: Mapping[str, frozenset[str]],
    quotas: Mapping[str, int],
    mode: RecoverMode,
) -> list[str]:
    """Every reason the recovery cannot start, all at once (empty = go): mappings, then
    boot groups and health checks, then scripts, then quotas."""
    graph = checkpoint.graph
    return [
        *_mapping_problems(graph, plan, target_names, mode),
        *_boot_problems(graph, plan),
        *_script_problems(plan),
        *_quota_problems(graph, plan, quotas, mode),
    ]


def _mapping_problems(
    graph: ResourceGraph,
    plan: RecoveryPlan,
    target_names: Mapping[str, frozenset[str]],
    mode: RecoverMode,
) -> list[str]:
    """Mappings onto target resources that do not exist, and from ones the checkpoint
    does not have."""
    problems: list[str] = []
    for r in graph.resources:
        target = _mapped_to(plan, r, mode)
        if target and target not in target_names.get(r.kind.value, frozenset()):
            problems.append(
                f"mapping {r.kind.value} {r.name!r} -> {target!r}: no {r.kind.value} named "
                f"{target!r} at site {plan.target}"
            )
    for m_kind, table in (
        ("network", plan.mappings.network),
        ("flavor", plan.mappings.flavor),
        ("subnet", plan.mappings.subnet),
        ("image", plan.mappings.image),
    ):
        known = {r.name for r in graph.of_kind(ResourceKind(m_kind))}
        for src in table:
            if src not in known:
                problems.append(
                    f"mapping {m_kind} {src!r}: the checkpoint has no {m_kind} of that name"
                )
    return problems


def _boot_problems(graph: ResourceGraph, plan: RecoveryPlan) -> list[str]:
    """Boot groups and health checks naming servers the checkpoint lacks; groups twice."""
    problems: list[str] = []
    server_names = {s.name for s in graph.of_kind(K.SERVER)}
    for server_name in sorted({n for g in plan.boot_groups for n in g.servers}):
        if server_name not in server_names:
            problems.append(f"boot group names server {server_name!r}, not in the checkpoint")
    group_names = [g.name for g in plan.boot_groups]
    for g in sorted({g for g in group_names if group_names.count(g) > 1}):
        problems.append(f"boot group {g!r} is declared more than once")
    for hc in plan.health_checks:
        if hc.server not in server_names:
            problems.append(f"health check names server {hc.server!r}, not in the checkpoint")
    return problems


def _script_problems(plan: RecoveryPlan) -> list[str]:
    """Scripts at a stage that is neither final nor after a declared boot group; empty ones."""
    problems: list[str] = []
    group_names = [g.name for g in plan.boot_groups]
    for i, sc in enumerate(plan.scripts):
        stage = _script_stage(sc.stage)
        if stage is None or (stage and stage not in group_names):
            problems.append(
                f"script {i} ({sc.command[0] if sc.command else 'empty'}): stage {sc.stage!r} "
                f"is neither 'final' nor 'after:<boot group>' of {', '.join(group_names) or '-'}"
            )
        if not sc.command:
            problems.append(f"script {i}: the command is empty")
    return problems


def _quota_problems(
    graph: ResourceGraph, plan: RecoveryPlan, quotas: Mapping[str, int], mode: RecoverMode
) -> list[str]:
    """What the recovery creates beyond the target's quotas (a negative quota: unlimited)."""
    problems: list[str] = []
    for name, amount in _needs(graph, plan, mode).items():
        left = quotas.get(name, -1)
        if left >= 0 and amount > left:
            problems.append(f"quota at {plan.target}: needs {amount} {name}, only {left} left")
    return problems


def _script_stage(stage: str) -> str | None:
    """'' for the final stage, the boot group's name for ``after:<group>``, else None."""
    if stage == "final":
        return ""
    head, _, group = stage.partition(":")
    return group if head == "after" and group else None


def _needs(graph: ResourceGraph, plan: RecoveryPlan, mode: RecoverMode) -> dict[str, int]:
    creates = [r for r in graph.resources if not _mapped_to(plan, r, mode)]
    if mode is RecoverMode.DRILL:
        creates = [r for r in creates if r.kind is not K.FLOATING_IP]
    count = {k: sum(1 for r in creates if r.kind is k) for k in ResourceKind}
    return {
        "servers": count[K.SERVER],
        "volumes": count[K.VOLUME],
        "volume_bytes": sum(int(r.attrs.get("size", 0)) for r in creates if r.kind is K.VOLUME),
        "networks": count[K.NETWORK],
        "ports": count[K.PORT],
        "floating_ips": count[K.FLOATING_IP],
    }
