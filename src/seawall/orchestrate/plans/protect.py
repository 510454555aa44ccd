"""Planning a checkpoint: check, quiesce, snapshot, thaw, upload, commit, replicate, tidy."""

from __future__ import annotations

from collections.abc import Sequence

from seawall.model import (
    Checkpoint,
    Consistency,
    Policy,
    QuiesceHook,
    Resource,
    ResourceGraph,
    ResourceKind,
    RunKind,
    Workload,
    dump,
)
from seawall.orchestrate.plans.flow import FlowPlan, Stage, _stage, _stages, labels, step
from seawall.orchestrate.steps import (
    ApplyRetentionArgs,
    CheckSiteArgs,
    CommitCheckpointArgs,
    ExpireSnapshotsArgs,
    FreezeServerArgs,
    ReplicateCheckpointArgs,
    SnapshotVolumeArgs,
    ThawServerArgs,
    UploadImageArgs,
    UploadVolumeArgs,
)

K = ResourceKind


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
) -> tuple[tuple[Stage, ...], Stage | None]:
    """The stages of one checkpoint, and apart from them its tidy stage (expiring
    snapshots and older checkpoints, see :func:`tidy_stage`), which cannot be undone:
    a protect runs it last, a migration only once its recovery has succeeded.

    ``prefix`` namespaces the stages inside a bigger run. ``quiesce=False`` is for a
    migration's final checkpoint: its servers are already powered off, so there is
    nothing to freeze.
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
    stages = _stages(
        _stage(f"{p}prepare", [check]),
        _stage(f"{p}quiesce", freeze, parallel=True),
        _stage(f"{p}snapshot", snapshots, parallel=True),
        _stage(f"{p}thaw", thaw, parallel=True),
        _stage(f"{p}upload", [*uploads, *image_uploads]),
        _stage(f"{p}commit", [commit]),
        _stage(f"{p}replicate", replicate, parallel=True),
    )
    tidy = tidy_stage(
        run_id=run_id,
        workload=workload,
        policy=policy,
        graph=graph,
        site=site,
        checkpoint_id=checkpoint_id,
        targets=targets,
        prefix=prefix,
    )
    return stages, tidy


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
    stages, tidy = protect_stages(
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
    title = f"{kind.value} {workload.name} on {workload.site}"
    return FlowPlan(run_id, kind, title, _stages(*stages, tidy))
