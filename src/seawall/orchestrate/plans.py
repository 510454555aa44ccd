"""Pure planners: compile an operation into stages of idempotent steps.

A :class:`FlowPlan` is plain data (JSON-able through :func:`seawall.model.dump`): the
dry run prints it, the engine turns it into a TaskFlow flow, and a conductor on another
host can rebuild the very same flow from it. Nothing here does I/O; everything a planner
needs (the discovered graph, the previous checkpoint, the target's inventory) is passed in.

Data between steps flows through named symbols: a step that creates a resource provides
``id:<kind>/<source id>`` and the steps that point at it require that symbol, so the
engine orders them and a resumed run gets the ids back from TaskFlow's persisted store.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from seawall.model import (
    CheckKind,
    Checkpoint,
    Consistency,
    HealthCheck,
    IpPolicy,
    Policy,
    QuiesceHook,
    RecoveryPlan,
    Resource,
    ResourceGraph,
    ResourceKind,
    ResourceRef,
    RunKind,
    Workload,
    dump,
)
from seawall.orchestrate.steps import (
    ApplyRetentionArgs,
    CheckHealthArgs,
    CheckRecoveryArgs,
    CheckSiteArgs,
    CleanupDrillArgs,
    CommitCheckpointArgs,
    CreateResourceArgs,
    ExpireSnapshotsArgs,
    FenceServerArgs,
    FreezeServerArgs,
    MapResourceArgs,
    ReplicateCheckpointArgs,
    RestoreImageArgs,
    RestoreVolumeArgs,
    RunScriptArgs,
    SnapshotVolumeArgs,
    StepArgs,
    ThawServerArgs,
    UploadImageArgs,
    UploadVolumeArgs,
    VerifyVolumeArgs,
    WaitServerArgs,
    args_from_dict,
)
from seawall.orchestrate.steps import id_symbol as id_symbol

K = ResourceKind


@dataclass(frozen=True)
class StepSpec:
    """One coarse unit of work (one resource, one volume), named ``verb-noun:subject``.

    ``task`` always equals ``args.TASK`` (build specs with :func:`step`); it is kept as a
    field because the plan's JSON names every step's task.
    """

    name: str
    task: str  #: class name in the task catalogue (seawall.orchestrate.tasks)
    args: StepArgs
    provides: str = ""
    requires: tuple[str, ...] = ()
    retries: int = 2  #: attempts after a transient error, with exponential backoff
    timeout: int = 900  #: seconds; enforced by the step's own waits

    def __post_init__(self) -> None:
        if self.task != self.args.TASK:
            raise ValueError(f"step {self.name}: task {self.task} takes {self.args.TASK}'s args")


def step(
    name: str,
    args: StepArgs,
    *,
    provides: str = "",
    requires: tuple[str, ...] = (),
    timeout: int = 900,
) -> StepSpec:
    """A step of the task that takes ``args``."""
    return StepSpec(name, args.TASK, args, provides=provides, requires=requires, timeout=timeout)


@dataclass(frozen=True)
class Stage:
    """Steps run one after another, or all at once when ``parallel``."""

    name: str
    parallel: bool
    steps: tuple[StepSpec, ...]


@dataclass(frozen=True)
class FlowPlan:
    run_id: str
    kind: RunKind
    title: str
    stages: tuple[Stage, ...]

    def steps(self) -> list[StepSpec]:
        return [s for stage in self.stages for s in stage.steps]

    def step_names(self) -> list[str]:
        return [s.name for s in self.steps()]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = dump(self)
        return data


def plan_from_dict(data: Mapping[str, Any]) -> FlowPlan:
    stages = tuple(
        Stage(
            name=st["name"],
            parallel=st["parallel"],
            steps=tuple(
                StepSpec(
                    name=s["name"],
                    task=s["task"],
                    args=args_from_dict(s["task"], s["args"]),
                    provides=s["provides"],
                    requires=tuple(s["requires"]),
                    retries=s["retries"],
                    timeout=s["timeout"],
                )
                for s in st["steps"]
            ),
        )
        for st in data["stages"]
    )
    return FlowPlan(data["run_id"], RunKind(data["kind"]), data["title"], stages)


def resource_key(run_id: str, ref: ResourceRef) -> str:
    """Deterministic idempotency key of what a run creates for a source resource."""
    return f"{run_id}/{ref.kind.value}/{ref.id}"


def labels(graph: ResourceGraph) -> dict[ResourceRef, str]:
    """The name each resource goes by in step names: its own name when that is unique
    among its kind (the usual case), else ``name~id`` (clouds allow duplicate and empty
    names, TaskFlow does not allow duplicate step names)."""
    seen: dict[tuple[ResourceKind, str], int] = {}
    for r in graph.resources:
        seen[(r.kind, r.name)] = seen.get((r.kind, r.name), 0) + 1
    return {
        r.ref: r.name if r.name and seen[(r.kind, r.name)] == 1 else f"{r.name}~{r.id}"
        for r in graph.resources
    }


def _stage(name: str, steps: Iterable[StepSpec], *, parallel: bool = False) -> Stage | None:
    items = tuple(steps)
    return Stage(name, parallel, items) if items else None


def _stages(*stages: Stage | None) -> tuple[Stage, ...]:
    return tuple(s for s in stages if s is not None)


# --------------------------------------------------------------------------------------
# Protect
# --------------------------------------------------------------------------------------


def _hooks_for(policy: Policy, server: Resource) -> tuple[QuiesceHook, ...]:
    if policy.consistency is not Consistency.APPLICATION:
        return ()
    return tuple(h for h in policy.quiesce if not h.servers or server.name in h.servers)


def protect_stages(
    *,
    run_id: str,
    workload: Workload,
    policy: Policy,
    graph: ResourceGraph,
    site: str,
    checkpoint_id: str,
    created_at: float,
    previous: Checkpoint | None,
    targets: Sequence[str],
    prefix: str = "",
    quiesce: bool = True,
    tidy: bool = True,
) -> tuple[Stage, ...]:
    """The stages of one checkpoint; ``prefix`` namespaces them inside a bigger run.

    ``quiesce=False`` is for a migration's final checkpoint: its servers are already
    powered off, so there is nothing to freeze. ``tidy=False`` leaves out expiring
    snapshots and older checkpoints (see :func:`tidy_stage`), which cannot be undone.
    """
    p = prefix
    label = labels(graph)
    servers = graph.of_kind(K.SERVER)
    volumes = graph.of_kind(K.VOLUME)
    images = graph.of_kind(K.IMAGE)
    quiesced = [(s, _hooks_for(policy, s)) for s in servers]
    quiesced = [(s, h) for s, h in quiesced if h and quiesce]

    check = step(f"{p}check-site:{site}", CheckSiteArgs(site))
    freeze = [
        step(
            f"{p}freeze-server:{label[s.ref]}",
            FreezeServerArgs(site, s, hooks),
            provides=f"{p}frozen:{s.id}",
        )
        for s, hooks in quiesced
    ]
    snapshots = [
        step(
            f"{p}snapshot-volume:{label[v.ref]}",
            SnapshotVolumeArgs(site, v.id, f"{run_id}/{p}snap/{v.id}"),
            provides=f"{p}snapshot:{v.id}",
        )
        for v in volumes
    ]
    thaw = [
        step(
            f"{p}thaw-server:{label[s.ref]}",
            ThawServerArgs(site, s, hooks),
            requires=tuple(f"{p}snapshot:{v.id}" for v in volumes),
        )
        for s, hooks in quiesced
    ]
    uploads = []
    for v in volumes:
        base_image = base_snapshot = ""
        if previous is not None:
            try:
                ref = previous.volume(v.id)
                base_image, base_snapshot = ref.image_id, ref.snapshot_id
            except KeyError:
                pass
        uploads.append(
            step(
                f"{p}upload-volume:{label[v.ref]}",
                UploadVolumeArgs(
                    site=site,
                    volume_id=v.id,
                    name=f"{workload.name}/{label[v.ref]}",
                    base_image=base_image,
                    base_snapshot=base_snapshot if policy.data_path != "full" else "",
                ),
                requires=(f"{p}snapshot:{v.id}",),
                provides=f"{p}image:{v.id}",
                timeout=6 * 3600,
            )
        )
    image_uploads = [
        step(
            f"{p}upload-image:{label[i.ref]}",
            UploadImageArgs(site, i),
            provides=f"{p}stream:{i.id}",
        )
        for i in images
    ]
    diff = previous.graph.diff(graph) if previous is not None else None
    commit = step(
        f"{p}commit-checkpoint:{checkpoint_id}",
        CommitCheckpointArgs(
            site=site,
            checkpoint={
                "id": checkpoint_id,
                "workload": workload.name,
                "site": site,
                "created_at": created_at,
                "graph": dump(graph),
                "consistency": policy.consistency.value,
                "parent": previous.id if previous else "",
                "diff": dump(diff) if diff else {"added": [], "removed": []},
            },
            project=workload.project,
            volume_symbols={v.id: f"{p}image:{v.id}" for v in volumes},
            image_symbols={i.id: f"{p}stream:{i.id}" for i in images},
            frozen_symbols=tuple(f"{p}frozen:{s.id}" for s, _ in quiesced),
        ),
        requires=tuple(
            [f"{p}image:{v.id}" for v in volumes]
            + [f"{p}stream:{i.id}" for i in images]
            + [f"{p}frozen:{s.id}" for s, _ in quiesced]
        ),
        provides=f"{p}checkpoint",
    )
    replicate = [
        step(
            f"{p}replicate-checkpoint:{t}",
            ReplicateCheckpointArgs(
                source=site, target=t, checkpoint_id=checkpoint_id, bandwidth=policy.bandwidth
            ),
            requires=(f"{p}checkpoint",),
            timeout=12 * 3600,
        )
        for t in targets
    ]
    return _stages(
        _stage(f"{p}prepare", [check]),
        _stage(f"{p}quiesce", freeze, parallel=True),
        _stage(f"{p}snapshot", snapshots, parallel=True),
        _stage(f"{p}thaw", thaw, parallel=True),
        _stage(f"{p}upload", [*uploads, *image_uploads]),
        _stage(f"{p}commit", [commit]),
        _stage(f"{p}replicate", replicate, parallel=True),
        tidy_stage(
            run_id=run_id,
            workload=workload,
            policy=policy,
            graph=graph,
            site=site,
            checkpoint_id=checkpoint_id,
            targets=targets,
            prefix=prefix,
        )
        if tidy
        else None,
    )


def tidy_stage(
    *,
    run_id: str,
    workload: Workload,
    policy: Policy,
    graph: ResourceGraph,
    site: str,
    checkpoint_id: str,
    targets: Sequence[str],
    prefix: str = "",
) -> Stage | None:
    """Expire the snapshots older than this checkpoint's and apply the retention policy.

    Neither can be undone, so they run last: after a migration's recovery, never before
    it (a reverted migration must leave the checkpoints and change bases it found).
    """
    p = prefix
    volumes = graph.of_kind(K.VOLUME)
    tidy = [
        step(
            f"{p}expire-snapshots:{workload.name}",
            ExpireSnapshotsArgs(
                site=site,
                volume_ids=tuple(v.id for v in volumes),
                keep_keys=tuple(f"{run_id}/{p}snap/{v.id}" for v in volumes),
            ),
            requires=(f"{p}checkpoint",),
        ),
        step(
            f"{p}apply-retention:{workload.name}",
            ApplyRetentionArgs(
                sites=(site, *targets),
                workload=workload.name,
                retention=policy.retention,
                keep=checkpoint_id,
            ),
            requires=(f"{p}checkpoint",),
        ),
    ]
    return _stage(f"{p}tidy", tidy)


def plan_protect(
    *,
    run_id: str,
    workload: Workload,
    policy: Policy,
    graph: ResourceGraph,
    checkpoint_id: str,
    created_at: float,
    previous: Checkpoint | None,
    kind: RunKind = RunKind.PROTECT,
) -> FlowPlan:
    """One checkpoint of ``workload`` on its site, replicated to its targets."""
    targets = tuple(dict.fromkeys((*workload.targets, *policy.targets)))
    targets = tuple(t for t in targets if t != workload.site)
    stages = protect_stages(
        run_id=run_id,
        workload=workload,
        policy=policy,
        graph=graph,
        site=workload.site,
        checkpoint_id=checkpoint_id,
        created_at=created_at,
        previous=previous,
        targets=targets,
    )
    return FlowPlan(run_id, kind, f"{kind.value} {workload.name} on {workload.site}", stages)


# --------------------------------------------------------------------------------------
# Recovery: failover, drill, migration, failback
# --------------------------------------------------------------------------------------


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


#: roles left out when a resource is recreated: a volume is created blank, never from its
#: image, because RestoreVolume writes only the checkpoint's data chunks and a hole in
#: the checkpoint (zeros) must read as zeros, not as the image's bytes
_BLANK_ROLES = frozenset({(K.VOLUME, "image")})


def _user_tags(r: Resource) -> dict[str, str]:
    """A resource's own tags (selectors depend on them), without seawall's bookkeeping."""
    return {k: v for k, v in r.tags.items() if not k.startswith("seawall:")}


def _spec_attrs(r: Resource, plan: RecoveryPlan, mode: RecoverMode) -> dict[str, Any]:
    attrs = {k: v for k, v in r.attrs.items() if k not in RUNTIME_ATTRS}
    m = plan.mappings
    if r.kind is K.NETWORK and mode is RecoverMode.DRILL:
        attrs["isolated"] = True
        attrs["external"] = False
    if r.kind is K.ROUTER and mode is RecoverMode.DRILL:
        attrs["external_gateway"] = False
    if r.kind is K.PORT and m.ip_policy is IpPolicy.DHCP:
        attrs.pop("fixed_ips", None)
        attrs.pop("mac_address", None)
    if "availability_zone" in attrs:
        zone = str(attrs["availability_zone"])
        attrs["availability_zone"] = m.availability_zone.get(zone, zone)
    if r.kind is K.VOLUME and "volume_type" in attrs:
        vt = str(attrs["volume_type"])
        attrs["volume_type"] = m.volume_type.get(vt, vt)
    return attrs


def plan_recover(
    *,
    run_id: str,
    kind: RunKind,
    mode: RecoverMode,
    checkpoint: Checkpoint,
    plan: RecoveryPlan,
    repository_site: str,
    prelude: Sequence[Stage] = (),
    checkpoint_symbol: str = "",
    epilogue: Sequence[Stage] = (),
) -> FlowPlan:
    """Recreate a checkpoint's workload at ``plan.target``.

    Restore order comes from :data:`seawall.model.RESTORE_RULES` plus explicit edges;
    servers boot by the plan's boot groups, each group checked healthy before the next.
    A drill renames everything with a ``drill-`` prefix, isolates its networks, drops
    floating IPs and removes everything it created at the end.
    """
    target = plan.target
    graph = checkpoint.graph
    drill = mode is RecoverMode.DRILL
    short = run_id.split("-")[-1][:6]
    prefix = f"drill-{short}-" if drill else ""
    tags = {"seawall:run": run_id, "seawall:workload": checkpoint.workload}

    label = labels(graph)

    def create(r: Resource) -> StepSpec:
        mapped = _mapped_to(plan, r, mode)
        if mapped:
            return step(
                f"map-{r.kind.value}:{label[r.ref]}",
                MapResourceArgs(target, r.kind.value, mapped),
                provides=id_symbol(r.ref),
            )
        refs = {
            role: tuple(id_symbol(x) for x in targets if graph.find(x) is not None)
            for role, targets in r.refs.items()
            if (r.kind, role) not in _BLANK_ROLES
        }
        return step(
            f"create-{r.kind.value}:{label[r.ref]}",
            CreateResourceArgs(
                site=target,
                kind=r.kind.value,
                name=prefix + r.name if r.kind is not K.PROJECT else r.name,
                key=resource_key(run_id, r.ref),
                attrs=_spec_attrs(r, plan, mode),
                refs=refs,
                tags=tags if drill else {**_user_tags(r), **tags},
                source_id=r.id,
            ),
            requires=tuple(sorted({sym for syms in refs.values() for sym in syms})),
            provides=id_symbol(r.ref),
        )

    order = graph.restore_order()
    by_kind = {k: [r for r in order if r.kind is k] for k in ResourceKind}
    network_kinds = (K.PROJECT, K.NETWORK, K.SUBNET, K.ROUTER, K.SECURITY_GROUP)
    stages: list[Stage | None] = [
        _stage(
            "preflight",
            [
                step(
                    f"check-site:{target}",
                    CheckRecoveryArgs(target, repository_site, checkpoint.id),
                    requires=(checkpoint_symbol,) if checkpoint_symbol else (),
                )
            ],
        )
    ]
    for k in network_kinds:
        stages.append(_stage(f"network:{k.value}", [create(r) for r in by_kind[k]], parallel=True))
    for k in (K.KEYPAIR, K.FLAVOR, K.VOLUME_TYPE, K.SERVER_GROUP):
        stages.append(_stage(f"compute:{k.value}", [create(r) for r in by_kind[k]], parallel=True))
    image_steps = []
    for r in by_kind[K.IMAGE]:
        image_steps.append(create(r))
        if not _mapped_to(plan, r, mode):
            image_steps.append(
                step(
                    f"restore-image:{label[r.ref]}",
                    RestoreImageArgs(target, repository_site, checkpoint.id, r.id),
                    requires=(id_symbol(r.ref),),
                )
            )
    stages.append(_stage("images", image_steps))
    volume_steps: list[StepSpec] = []
    for r in by_kind[K.VOLUME]:
        volume_steps.append(create(r))
        volume_steps.append(
            step(
                f"restore-volume:{label[r.ref]}",
                RestoreVolumeArgs(target, repository_site, checkpoint.id, r.id),
                requires=(id_symbol(r.ref),),
                provides=f"restored:{r.id}",
                timeout=6 * 3600,
            )
        )
    stages.append(_stage("volumes", volume_steps))
    stages.append(_stage("ports", [create(r) for r in by_kind[K.PORT]], parallel=True))

    servers = by_kind[K.SERVER]
    groups: dict[int, list[Resource]] = {}
    for s in servers:
        groups.setdefault(plan.group_of(s.name), []).append(s)
    user_groups = [g.name for g in plan.boot_groups]
    group_names = [*user_groups, "rest"]
    scripts = [
        (
            _script_stage(sc.stage),
            step(
                f"run-script:{i}",
                RunScriptArgs(script=sc, site=target, record=drill),
                timeout=sc.timeout_seconds + 5,
            ),
        )
        for i, sc in enumerate(plan.scripts)
    ]
    check_names: set[str] = set()

    def check_name(hc: HealthCheck) -> str:
        base = f"check-health:{hc.server}:{hc.kind.value}{':' + str(hc.port) if hc.port else ''}"
        name, n = base, 1
        while name in check_names:
            n += 1
            name = f"{base}#{n}"
        check_names.add(name)
        return name

    for gi, group_name in enumerate(group_names):
        members = groups.get(gi, [])
        stages.append(_stage(f"boot:{group_name}", [create(s) for s in members], parallel=True))
        waits = [
            step(
                f"wait-server:{label[s.ref]}",
                WaitServerArgs(target, "ACTIVE"),
                requires=(id_symbol(s.ref),),
            )
            for s in members
        ]
        checks = [
            step(
                check_name(hc),
                CheckHealthArgs(site=target, check=hc, record=drill),
                requires=(id_symbol(next(s for s in members if s.name == hc.server).ref),),
                timeout=hc.timeout_seconds + 5,
            )
            for hc in plan.health_checks
            if any(s.name == hc.server for s in members)
        ]
        after = [step for where, step in scripts if where == group_name and gi < len(user_groups)]
        stages.append(_stage(f"healthy:{group_name}", [*waits, *checks, *after]))
    if not drill:
        stages.append(
            _stage("floating-ips", [create(r) for r in by_kind[K.FLOATING_IP]], parallel=True)
        )
    stages.append(
        _stage(
            "verify",
            [
                step(
                    f"verify-volume:{label[r.ref]}",
                    VerifyVolumeArgs(
                        site=target,
                        repository_site=repository_site,
                        checkpoint_id=checkpoint.id,
                        source_id=r.id,
                        keep_base=not drill,
                        record=drill,
                    ),
                    requires=(id_symbol(r.ref), f"restored:{r.id}"),
                    timeout=6 * 3600,
                )
                for r in by_kind[K.VOLUME]
            ]
            + [step for where, step in scripts if not where or where not in user_groups],
        )
    )
    if drill:
        stages.append(
            _stage(
                "cleanup",
                [
                    step(
                        f"cleanup-drill:{target}",
                        CleanupDrillArgs(target),
                        requires=tuple(
                            [f"restored:{r.id}" for r in by_kind[K.VOLUME]]
                            + [id_symbol(s.ref) for s in servers]
                        ),
                    )
                ],
            )
        )
    verb = {
        RecoverMode.FAILOVER: "fail over",
        RecoverMode.DRILL: "drill",
        RecoverMode.MIGRATE: "migrate",
    }[mode]
    title = f"{verb} {checkpoint.workload} to {target} from checkpoint {checkpoint.id}"
    return FlowPlan(run_id, kind, title, (*prelude, *_stages(*stages), *epilogue))


def fence_stage(site: str, servers: Sequence[Resource]) -> Stage | None:
    """Power off the primary's servers so nothing writes after the final checkpoint."""
    return _stage(
        "fence",
        [
            step(f"fence-server:{label[s.ref]}", FenceServerArgs(site, s.id))
            for label in [labels(ResourceGraph(tuple(servers)))]
            for s in servers
        ],
        parallel=True,
    )


def plan_migrate(
    *,
    run_id: str,
    kind: RunKind,
    workload: Workload,
    policy: Policy,
    graph: ResourceGraph,
    checkpoint_id: str,
    created_at: float,
    previous: Checkpoint | None,
    plan: RecoveryPlan,
) -> FlowPlan:
    """A planned migration (or failback) to ``plan.target`` with zero data loss.

    The primary's servers are fenced (powered off) first, so nothing writes after the
    final checkpoint; the final checkpoint (no quiesce needed) is replicated to the
    target, and the recovery there starts from it. Reverting powers the primary back on;
    snapshots and older checkpoints are tidied only once the recovery has succeeded.
    """
    final = protect_stages(
        run_id=run_id,
        workload=workload,
        policy=policy,
        graph=graph,
        site=workload.site,
        checkpoint_id=checkpoint_id,
        created_at=created_at,
        previous=previous,
        targets=[plan.target],
        prefix="final-",
        quiesce=False,
        tidy=False,
    )
    tidy = tidy_stage(
        run_id=run_id,
        workload=workload,
        policy=policy,
        graph=graph,
        site=workload.site,
        checkpoint_id=checkpoint_id,
        targets=[plan.target],
        prefix="final-",
    )
    fence = fence_stage(workload.site, graph.of_kind(K.SERVER))
    pending = pending_checkpoint(workload, graph, checkpoint_id, created_at)
    return plan_recover(
        run_id=run_id,
        kind=kind,
        mode=RecoverMode.MIGRATE,
        checkpoint=pending,
        plan=plan,
        repository_site=plan.target,
        prelude=((fence,) if fence else ()) + final,
        checkpoint_symbol="final-checkpoint",
        epilogue=(tidy,) if tidy else (),
    )


def pending_checkpoint(
    workload: Workload, graph: ResourceGraph, checkpoint_id: str, created_at: float
) -> Checkpoint:
    """What a migration plans from: the final checkpoint's graph, before it is taken."""
    return Checkpoint(
        id=checkpoint_id,
        workload=workload.name,
        site=workload.site,
        created_at=created_at,
        graph=graph,
    )


def default_recovery_plan(workload: Workload, target: str, graph: ResourceGraph) -> RecoveryPlan:
    """Without a user plan: every server in one group, each checked for status ACTIVE."""
    from seawall.model import BootGroup, HealthCheck

    servers = tuple(s.name for s in graph.of_kind(K.SERVER))
    return RecoveryPlan(
        workload=workload.name,
        target=target,
        boot_groups=(BootGroup("all", servers),) if servers else (),
        health_checks=tuple(HealthCheck(n, CheckKind.STATUS) for n in servers),
    )
