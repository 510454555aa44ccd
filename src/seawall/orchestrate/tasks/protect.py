"""The steps of a checkpoint: check, quiesce, snapshot, thaw, upload, commit, replicate,
tidy (expire snapshots, apply retention)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any

from seawall.clouds import CloudDriver, SnapshotInfo
from seawall.errors import (
    Cancelled,
    NotFound,
    PermanentError,
    SeawallError,
    StepTimeout,
)
from seawall.model import (
    Checkpoint,
    QuiesceFailure,
    VolumeImageRef,
    dump,
    load,
    select_kept,
)
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
from seawall.orchestrate.tasks.base import Context, Deps, SeawallTask


class SnapshotSource:
    """A cloud snapshot as the repository's ``VolumeSource``."""

    def __init__(self, driver: CloudDriver, snapshot: SnapshotInfo) -> None:
        self._driver = driver
        self._snapshot = snapshot
        self.size = snapshot.size

    def read(self, offset: int, length: int) -> bytes:
        return self._driver.read_snapshot(self._snapshot.id, offset, length)


class CheckSite(SeawallTask[CheckSiteArgs]):
    def do(self, ctx: Context, args: CheckSiteArgs, deps: Deps) -> Any:
        ctx.driver(args.site).ping()
        ctx.rt.repository(args.site)
        return {"site": args.site}


def _agent(name: str) -> Any:
    from seawall.plugins import registry

    return registry().load("quiesce", name)()


class FreezeServer(SeawallTask[FreezeServerArgs]):
    """Quiesce a server; a failure fails the run or degrades it, as the hook says."""

    def do(self, ctx: Context, args: FreezeServerArgs, deps: Deps) -> Any:
        driver = ctx.driver(args.site)
        server = args.server
        done: list[int] = []
        for i, hook in enumerate(args.hooks):
            try:
                _agent(hook.agent).freeze(driver, server, hook)
                done.append(i)
            except SeawallError as exc:
                if hook.on_failure is QuiesceFailure.FAIL:
                    for j in reversed(done):
                        h = args.hooks[j]
                        _agent(h.agent).thaw(driver, server, h)
                    raise PermanentError(f"quiesce of {server.name} failed: {exc}") from exc
                msg = f"quiesce of {server.name} failed ({exc}); crash-consistent"
                ctx.rt.db.add_event("quiesce-failed", msg, severity="warning", run_id=ctx.run_id)
                return {"server": server.name, "frozen": False, "note": msg}
        return {"server": server.name, "frozen": True, "note": ""}

    def undo(self, ctx: Context, args: FreezeServerArgs, deps: Deps, result: Any) -> None:
        _thaw(ctx, args)


def _thaw(ctx: Context, args: FreezeServerArgs | ThawServerArgs) -> None:
    driver = ctx.driver(args.site)
    server = args.server
    for hook in reversed(args.hooks):
        try:
            _agent(hook.agent).thaw(driver, server, hook)
        except SeawallError as exc:
            ctx.rt.db.add_event(
                "thaw-failed", f"thaw of {server.name}: {exc}", severity="error", run_id=ctx.run_id
            )


class ThawServer(SeawallTask[ThawServerArgs]):
    def do(self, ctx: Context, args: ThawServerArgs, deps: Deps) -> Any:
        _thaw(ctx, args)
        return {"server": args.server.name}


class SnapshotVolume(SeawallTask[SnapshotVolumeArgs]):
    def do(self, ctx: Context, args: SnapshotVolumeArgs, deps: Deps) -> Any:
        snap = ctx.driver(args.site).create_snapshot(args.volume_id, args.key)
        return dump(snap)

    def undo(self, ctx: Context, args: SnapshotVolumeArgs, deps: Deps, result: Any) -> None:
        driver = ctx.driver(args.site)
        for snap in driver.list_snapshots(args.volume_id):
            if snap.key == args.key:
                driver.delete_snapshot(snap.id)


def _snapshot(data: Mapping[str, Any]) -> SnapshotInfo:
    return SnapshotInfo(
        data["id"], data["volume_id"], data["size"], data["key"], data["created_at"]
    )


class UploadVolume(SeawallTask[UploadVolumeArgs]):
    """Volume data into the repository: only changed extents when the cloud tracks them."""

    def do(self, ctx: Context, args: UploadVolumeArgs, deps: Deps) -> Any:
        snap_raw = self.requirement(deps)
        snap = _snapshot(snap_raw)
        driver = ctx.driver(args.site)
        repo = ctx.rt.repository(args.site)
        base = args.base_image or None
        extents: list[tuple[int, int]] | None = None
        mode = "full"
        if base and args.base_snapshot:
            try:
                extents = [
                    (e.offset, e.length)
                    for e in driver.changed_extents(snap.id, args.base_snapshot)
                ]
                mode = "cbt"
            except NotFound:
                extents = None  # base snapshot gone: read everything, dedup does the rest
        if base:
            try:
                repo.volume_info(base)
            except NotFound:
                base, extents, mode = None, None, "full"
        if base is None and "cbt" in driver.capabilities().data_paths:
            # A first checkpoint reads only what the cloud says is allocated.
            try:
                extents = [(e.offset, e.length) for e in driver.changed_extents(snap.id, None)]
                mode = "allocated"
            except NotFound:
                extents = None
        image = repo.write_volume(
            args.name,
            SnapshotSource(driver, snap),
            base=base,
            extents=extents,
            progress=ctx.progress,
            cancelled=ctx.cancelled,
        )
        ref = VolumeImageRef(
            volume_id=args.volume_id,
            image_id=image.id,
            size=image.size,
            snapshot_id=snap.id,
            bytes_read=image.bytes_read,
            bytes_stored=image.bytes_new,
        )
        return {**dump(ref), "mode": mode}


class UploadImage(SeawallTask[UploadImageArgs]):
    def do(self, ctx: Context, args: UploadImageArgs, deps: Deps) -> Any:
        image = args.image
        repo = ctx.rt.repository(args.site)
        stream = repo.put_stream(f"image/{image.name}", ctx.driver(args.site).read_image(image.id))
        return {"id": stream}


class CommitCheckpoint(SeawallTask[CommitCheckpointArgs]):
    """Write the checkpoint manifest (after its data is durable) and cache it."""

    def do(self, ctx: Context, args: CommitCheckpointArgs, deps: Deps) -> Any:
        raw = dict(args.checkpoint)
        volumes = [
            load(VolumeImageRef, {k: v for k, v in deps[sym].items() if k != "mode"})
            for sym in args.volume_symbols.values()
        ]
        notes = [deps[sym]["note"] for sym in args.frozen_symbols if deps[sym]["note"]]
        raw["volumes"] = [dump(v) for v in volumes]
        raw["images"] = {img: deps[sym]["id"] for img, sym in args.image_symbols.items()}
        raw["notes"] = notes
        if notes:
            raw["consistency"] = "crash"
        cp = load(Checkpoint, raw)
        repo = ctx.rt.repository(args.site)
        refs = [v.image_id for v in volumes] + list(cp.images.values())
        repo.save_manifest(
            "checkpoint",
            {"workload": cp.workload, "site": cp.site, "project": args.project},
            dump(cp),
            id=cp.id,
            refs=refs,
        )
        ctx.rt.db.put_checkpoint(cp, sites=[args.site])
        bytes_read = sum(v.bytes_read for v in volumes)
        bytes_stored = sum(v.bytes_stored for v in volumes)
        modes = {deps[s]["mode"] for s in args.volume_symbols.values()}
        ctx.rt.db.add_usage(
            args.project,
            "bytes_protected",
            float(sum(v.size for v in volumes)),
            workload=cp.workload,
        )
        ctx.rt.db.add_usage(args.project, "bytes_stored", float(bytes_stored), workload=cp.workload)
        ctx.note(
            "checkpoint",
            {
                "id": cp.id,
                "bytes_read": bytes_read,
                "bytes_stored": bytes_stored,
                "volumes": len(volumes),
                "modes": sorted(modes),
                "consistency": cp.consistency.value,
                "notes": notes,
            },
        )
        return {"id": cp.id}

    def undo(self, ctx: Context, args: CommitCheckpointArgs, deps: Deps, result: Any) -> None:
        cid = args.checkpoint["id"]
        ctx.rt.repository(args.site).delete_manifest(cid)
        with contextlib.suppress(NotFound):
            ctx.rt.db.remove_checkpoint(cid)


class ReplicateCheckpoint(SeawallTask[ReplicateCheckpointArgs]):
    """Copy what the target lacks. A failure here leaves a valid local checkpoint, so it
    is recorded (event + run result) instead of reverting the checkpoint."""

    def do(self, ctx: Context, args: ReplicateCheckpointArgs, deps: Deps) -> Any:
        from seawall.repo import sync

        bw = args.bandwidth
        rate = bw.rate_at(time.gmtime().tm_hour)
        try:
            src = ctx.rt.repository(args.source)
            dst = ctx.rt.repository(args.target)
            stats = sync(
                src,
                dst,
                manifests=[args.checkpoint_id],
                rate_limit=rate,
                progress=ctx.progress,
                cancelled=ctx.cancelled,
            )
        except (Cancelled, StepTimeout):
            raise
        except SeawallError as exc:
            msg = f"replication of {args.checkpoint_id} to {args.target} failed: {exc}"
            ctx.rt.db.add_event("replication-failed", msg, severity="error", run_id=ctx.run_id)
            ctx.note(f"replication:{args.target}", {"ok": False, "error": str(exc)})
            return {"target": args.target, "ok": False}
        cp = ctx.rt.db.get_checkpoint(args.checkpoint_id)
        ctx.rt.db.put_checkpoint(cp, sites=[args.target])
        project = ctx.rt.db.get_run(ctx.run_id).project
        ctx.rt.db.add_usage(
            project, "bytes_replicated", float(stats.bytes_sent), workload=cp.workload
        )
        ctx.note(
            f"replication:{args.target}",
            {"ok": True, "bytes_sent": stats.bytes_sent, "objects": stats.objects_sent},
        )
        return {"target": args.target, "ok": True, "bytes_sent": stats.bytes_sent}

    def undo(self, ctx: Context, args: ReplicateCheckpointArgs, deps: Deps, result: Any) -> None:
        """A reverted run must not leave its checkpoint at the target either (catalogue
        would find it there); the copied chunks stay until the next prune."""
        if isinstance(result, dict) and not result.get("ok", True):
            return  # nothing was copied
        try:
            ctx.rt.repository(args.target).delete_manifest(args.checkpoint_id)
        except NotFound:
            pass
        except SeawallError as exc:
            ctx.rt.db.add_event(
                "replication-revert-failed", str(exc), severity="warning", run_id=ctx.run_id
            )


class ExpireSnapshots(SeawallTask[ExpireSnapshotsArgs]):
    """Keep only this checkpoint's snapshots: the next change-tracking base."""

    def do(self, ctx: Context, args: ExpireSnapshotsArgs, deps: Deps) -> Any:
        driver = ctx.driver(args.site)
        keep = set(args.keep_keys)
        removed = 0
        for vid in args.volume_ids:
            for snap in driver.list_snapshots(vid):
                if snap.key and snap.key not in keep:
                    driver.delete_snapshot(snap.id)
                    removed += 1
        return {"removed": removed}


class ApplyRetention(SeawallTask[ApplyRetentionArgs]):
    def do(self, ctx: Context, args: ApplyRetentionArgs, deps: Deps) -> Any:
        retention = args.retention
        forgotten: list[str] = []
        for site in args.sites:
            try:
                repo = ctx.rt.repository(site)
            except SeawallError:
                continue  # an unreachable target keeps its copies until next time
            mine = repo.list_manifests("checkpoint", {"workload": args.workload})
            created = {m.id: m.created_at.timestamp() for m in mine}
            keep = select_kept(created, retention) | {args.keep}
            for m in mine:
                if m.id not in keep:
                    repo.delete_manifest(m.id)
                    forgotten.append(f"{site}:{m.id}")
            for cp in ctx.rt.db.list_checkpoints(workload=args.workload, site=site):
                if cp.id not in keep:
                    ctx.rt.db.remove_checkpoint(cp.id)
        return {"forgotten": forgotten}
