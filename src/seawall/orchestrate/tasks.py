"""The step catalogue: every step is a TaskFlow task with ``execute`` and ``revert``.

Rules every step keeps (TaskFlow runs a step again after a crash):

- **Idempotent.** Cloud objects are found-or-created by a deterministic key, snapshots
  by their key, manifests by their id; writing the same volume data twice is harmless.
- **Revert undoes only what this run made**, and tolerates "already gone".
- **Coarse.** One step per resource or volume, never per chunk: chunk progress goes to
  ``update_progress`` and the state database.
- **Deadlines and retries are the step's own.** Transient errors are retried with
  exponential backoff inside the step; integrity errors never are.
- **Cancellation** is checked at the start of every step and between chunks.

For fault tests, ``SEAWALL_FAULT_KILL_AT=<step name>`` makes the process kill itself
with SIGKILL as that step starts (``SEAWALL_FAULT_KILL_AFTER``: after its work, before
TaskFlow records it; ``SEAWALL_FAULT_KILL_REVERT``: as its revert starts) — a real
kill -9 at an exact point, which is what the crash tests need. A value ending in ``*``
matches every step whose name starts with the rest (``commit-checkpoint:*``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from taskflow import task
from taskflow.types import failure as tf_failure

from seawall.clouds import CloudDriver, Extent, ResourceSpec, SnapshotInfo
from seawall.errors import (
    Cancelled,
    NotFound,
    PermanentError,
    SeawallError,
    StepTimeout,
    TransientError,
    VerificationFailed,
)
from seawall.model import (
    CheckKind,
    Checkpoint,
    HealthCheck,
    QuiesceFailure,
    Resource,
    ResourceKind,
    ResourceRef,
    StepState,
    VolumeImageRef,
    dump,
    load,
    select_kept,
)
from seawall.orchestrate.plans import StepSpec
from seawall.orchestrate.runtime import Runtime, runtime
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
)

A = TypeVar("A", bound=StepArgs)
Deps = Mapping[str, Any]

_BACKOFF_START = float(os.environ.get("SEAWALL_BACKOFF_START", "0.5"))


def _fault(point: str, name: str) -> None:
    """SIGKILL this process at ``point`` of step ``name`` when the environment asks.

    The value is a step name, or a prefix ending in ``*`` for the steps whose names embed
    a fresh id (``commit-checkpoint:*``).
    """
    wanted = os.environ.get(point)
    if not wanted:
        return
    if wanted == name or (wanted.endswith("*") and name.startswith(wanted[:-1])):
        os.kill(os.getpid(), signal.SIGKILL)


class SnapshotSource:
    """A cloud snapshot as the repository's ``VolumeSource``."""

    def __init__(self, driver: CloudDriver, snapshot: SnapshotInfo) -> None:
        self._driver = driver
        self._snapshot = snapshot
        self.size = snapshot.size

    def read(self, offset: int, length: int) -> bytes:
        return self._driver.read_snapshot(self._snapshot.id, offset, length)


class Context:
    """What a step sees while it runs: runtime, deadline, progress and cancellation."""

    def __init__(self, task_: SeawallTask[Any], rt: Runtime, run_id: str, deadline: float) -> None:
        self._task = task_
        self.rt = rt
        self.run_id = run_id
        self.deadline = deadline
        self._last = 0.0

    def cancelled(self) -> bool:
        return self.rt.db.cancel_requested(self.run_id)

    def check(self) -> None:
        if self.cancelled():
            raise Cancelled(f"run {self.run_id} was cancelled during {self._task.name}")
        if time.monotonic() > self.deadline:
            raise StepTimeout(f"{self._task.name} passed its deadline")

    def progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last < 0.5 and done < total:
            return
        self._last = now
        fraction = min(1.0, done / total) if total else 1.0
        self._task.update_progress(fraction)
        self.rt.db.set_step(self.run_id, self._task.name, StepState.RUNNING, progress=fraction)
        self.check()

    def note(self, key: str, value: Any) -> None:
        """Record a figure in the run's result (each step writes its own key)."""
        self.rt.db.update_run_result(self.run_id, {key: value})


class SeawallTask(task.Task, Generic[A]):  # type: ignore[misc]
    """Base of every step: journal, deadline, retries with backoff, faults, revert.

    ``A`` is the step kind's argument dataclass (``seawall.orchestrate.steps``), the
    same the planner builds; ``deps`` are the values of the symbols the step requires,
    by symbol name.
    """

    def __init__(self, spec: StepSpec, run_id: str) -> None:
        super().__init__(
            name=spec.name,
            inject={"args": spec.args, "run": run_id},
            requires=list(spec.requires),
            provides=spec.provides or None,
        )
        self.retries = spec.retries
        self.timeout = spec.timeout
        self._requires = tuple(spec.requires)

    def requirement(self, deps: Deps) -> Any:
        """The value of the one symbol this step requires (a step with one input)."""
        (symbol,) = self._requires
        return deps[symbol]

    # -- what subclasses write -----------------------------------------------------------
    def do(self, ctx: Context, args: A, deps: Deps) -> Any:
        raise NotImplementedError

    def undo(self, ctx: Context, args: A, deps: Deps, result: Any) -> None:
        return None

    # -- TaskFlow entry points -----------------------------------------------------------
    def execute(self, args: A, run: str, **deps: Any) -> Any:
        rt = runtime()
        _fault("SEAWALL_FAULT_KILL_AT", self.name)
        ctx = Context(self, rt, run, time.monotonic() + self.timeout)
        rt.db.set_step(run, self.name, StepState.RUNNING, progress=0.0, detail="")
        delay = _BACKOFF_START
        attempt = 0
        while True:
            try:
                ctx.check()
                result = self.do(ctx, args, deps)
                break
            except TransientError as exc:
                attempt += 1
                if attempt > self.retries or time.monotonic() + delay > ctx.deadline:
                    rt.db.set_step(run, self.name, StepState.FAILED, detail=str(exc))
                    raise
                rt.db.set_step(run, self.name, StepState.RUNNING, detail=f"retry {attempt}: {exc}")
                time.sleep(delay)
                delay *= 2
            except Exception as exc:
                rt.db.set_step(run, self.name, StepState.FAILED, detail=_describe(exc))
                raise
        _fault("SEAWALL_FAULT_KILL_AFTER", self.name)
        rt.db.set_step(run, self.name, StepState.DONE, progress=1.0, detail=_summary(result))
        return result

    def revert(self, args: A, run: str, result: Any, **kwargs: Any) -> None:
        rt = runtime()
        _fault("SEAWALL_FAULT_KILL_REVERT", self.name)
        kwargs.pop("flow_failures", None)
        failed = isinstance(result, tf_failure.Failure)
        ctx = Context(self, rt, run, time.monotonic() + self.timeout)
        rt.db.set_step(run, self.name, StepState.REVERTING)
        self.undo(ctx, args, kwargs, None if failed else result)
        rt.db.set_step(run, self.name, StepState.REVERTED)


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, SeawallError) else f"{type(exc).__name__}: {exc}"


def _summary(result: Any) -> str:
    if isinstance(result, dict):
        keys = ("id", "image_id", "bytes_read", "residue", "verified", "bytes_sent", "status")
        return ", ".join(f"{k}={result[k]}" for k in keys if k in result)
    return ""


# --------------------------------------------------------------------------------------
# Protect
# --------------------------------------------------------------------------------------


class CheckSite(SeawallTask[CheckSiteArgs]):
    def do(self, ctx: Context, args: CheckSiteArgs, deps: Deps) -> Any:
        ctx.rt.driver(args.site).ping()
        ctx.rt.repository(args.site)
        return {"site": args.site}


def _agent(name: str) -> Any:
    from seawall.plugins import registry

    return registry().load("quiesce", name)()


class FreezeServer(SeawallTask[FreezeServerArgs]):
    """Quiesce a server; a failure fails the run or degrades it, as the hook says."""

    def do(self, ctx: Context, args: FreezeServerArgs, deps: Deps) -> Any:
        driver = ctx.rt.driver(args.site)
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
    driver = ctx.rt.driver(args.site)
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
        snap = ctx.rt.driver(args.site).create_snapshot(args.volume_id, args.key)
        return dump(snap)

    def undo(self, ctx: Context, args: SnapshotVolumeArgs, deps: Deps, result: Any) -> None:
        driver = ctx.rt.driver(args.site)
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
        driver = ctx.rt.driver(args.site)
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
        stream = repo.put_stream(
            f"image/{image.name}", ctx.rt.driver(args.site).read_image(image.id)
        )
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
        ctx.rt.db.add_usage(
            args.project, "bytes_stored", float(bytes_stored), workload=cp.workload
        )
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
        driver = ctx.rt.driver(args.site)
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


# --------------------------------------------------------------------------------------
# Recovery
# --------------------------------------------------------------------------------------


class CheckRecovery(SeawallTask[CheckRecoveryArgs]):
    def do(self, ctx: Context, args: CheckRecoveryArgs, deps: Deps) -> Any:
        ctx.rt.driver(args.site).ping()
        manifest = ctx.rt.repository(args.repository_site).load_manifest(args.checkpoint_id)
        ctx.note("recovery_started_at", time.time())
        return {"checkpoint": manifest.id}


def _checkpoint(ctx: Context, site: str, checkpoint_id: str) -> Checkpoint:
    body = ctx.rt.repository(site).load_manifest(checkpoint_id).body
    return load(Checkpoint, body)


class MapResource(SeawallTask[MapResourceArgs]):
    """Use an existing target resource (a mapping) instead of creating one."""

    def do(self, ctx: Context, args: MapResourceArgs, deps: Deps) -> Any:
        kind = ResourceKind(args.kind)
        for r in ctx.rt.driver(args.site).list_resources(kind):
            if r.name == args.name:
                return {"id": r.id, "name": r.name, "mapped": True}
        raise NotFound(f"no {kind.value} named {args.name!r} at site {args.site}")


class CreateResource(SeawallTask[CreateResourceArgs]):
    """Find-or-create one resource on the target, and journal it for revert/clean-up."""

    def do(self, ctx: Context, args: CreateResourceArgs, deps: Deps) -> Any:
        refs = {role: tuple(deps[sym]["id"] for sym in syms) for role, syms in args.refs.items()}
        kind = ResourceKind(args.kind)
        spec = ResourceSpec(
            kind=kind,
            name=args.name,
            key=args.key,
            attrs=args.attrs,
            refs=refs,
            tags=args.tags,
        )
        created = ctx.rt.driver(args.site).create(spec)
        ctx.rt.db.record_created(ctx.run_id, args.site, kind.value, created.id, args.key)
        return {"id": created.id, "name": created.name, "source_id": args.source_id}

    def undo(self, ctx: Context, args: CreateResourceArgs, deps: Deps, result: Any) -> None:
        driver = ctx.rt.driver(args.site)
        kind = ResourceKind(args.kind)
        found = driver.find(kind, args.key)
        rid = result["id"] if result else (found.id if found else "")
        if rid:
            driver.delete(ResourceRef(kind, rid))
            ctx.rt.db.mark_removed(ctx.run_id, kind.value, rid)


class RestoreImage(SeawallTask[RestoreImageArgs]):
    def do(self, ctx: Context, args: RestoreImageArgs, deps: Deps) -> Any:
        target = deps[args.image_symbol]
        repo = ctx.rt.repository(args.repository_site)
        cp = _checkpoint(ctx, args.repository_site, args.checkpoint_id)
        stream = cp.images.get(args.source_id)
        if not stream:
            return {"id": target["id"], "skipped": True}
        ctx.rt.driver(args.site).write_image(target["id"], repo.get_stream(stream))
        return {"id": target["id"]}


class RestoreVolume(SeawallTask[RestoreVolumeArgs]):
    """Fill a new volume from its volume image; holes are skipped (new volumes read zero)."""

    def do(self, ctx: Context, args: RestoreVolumeArgs, deps: Deps) -> Any:
        target = deps[args.volume_symbol]
        repo = ctx.rt.repository(args.repository_site)
        cp = _checkpoint(ctx, args.repository_site, args.checkpoint_id)
        ref = cp.volume(args.source_id)
        driver = ctx.rt.driver(args.site)
        written = 0
        for offset, data in repo.read_volume(ref.image_id):
            driver.write_volume(target["id"], offset, data)
            written += len(data)
            ctx.progress(offset + len(data), ref.size)
        return {"id": target["id"], "image_id": ref.image_id, "bytes_written": written}


class WaitServer(SeawallTask[WaitServerArgs]):
    def do(self, ctx: Context, args: WaitServerArgs, deps: Deps) -> Any:
        server = self.requirement(deps)
        r = ctx.rt.driver(args.site).wait_for_status(
            ResourceRef(ResourceKind.SERVER, server["id"]),
            args.status,
            max(1.0, ctx.deadline - time.monotonic()),
        )
        return {"id": r.id, "status": r.attrs.get("status", "")}


def probe(
    driver: CloudDriver,
    server_id: str,
    check: HealthCheck,
    deadline: float,
    cancelled: Callable[[], bool] | None = None,
) -> str:
    """Run one health check until it passes, the deadline or a cancel; '' on success."""
    why = "not checked"
    while True:
        if cancelled is not None and cancelled():
            return "cancelled"
        server = driver.get(ResourceRef(ResourceKind.SERVER, server_id))
        if server is None:
            return "server is gone"
        status = str(server.attrs.get("status", ""))
        address = str(server.attrs.get("access_address", ""))
        if check.kind is CheckKind.STATUS:
            why = "" if status == "ACTIVE" else f"status {status}"
        elif not address:
            why = "server has no reachable address"
        elif check.kind is CheckKind.TCP:
            try:
                with socket.create_connection((address, check.port), timeout=2):
                    why = ""
            except OSError as exc:
                why = f"tcp {address}:{check.port}: {exc}"
        else:
            url = f"http://{address}:{check.port}{check.path}"
            try:
                with urllib.request.urlopen(url, timeout=3) as resp:
                    body = resp.read().decode(errors="replace")
                    why = (
                        ""
                        if (not check.expect or check.expect in body)
                        else (f"{url} answered without {check.expect!r}")
                    )
            except (urllib.error.URLError, OSError) as exc:
                why = f"{url}: {exc}"
        if not why or time.monotonic() > deadline:
            return why
        time.sleep(0.2)


class CheckHealth(SeawallTask[CheckHealthArgs]):
    def do(self, ctx: Context, args: CheckHealthArgs, deps: Deps) -> Any:
        server = self.requirement(deps)
        check = args.check
        start = time.monotonic()
        why = probe(
            ctx.rt.driver(args.site),
            server["id"],
            check,
            start + check.timeout_seconds,
            ctx.cancelled,
        )
        ctx.check()
        result = {"server": check.server, "kind": check.kind.value, "ok": not why, "why": why}
        ctx.note(f"check:{self.name}", {**result, "at": time.time()})
        if why and not args.record:
            raise VerificationFailed(f"health check {self.name} failed: {why}")
        return result


def verify_volume(
    repo: Any,
    driver: CloudDriver,
    image_id: str,
    snapshot: SnapshotInfo,
    progress: Callable[[int, int], None],
) -> tuple[bool, int, str]:
    """Compare a target snapshot byte for byte with a volume image (holes must read 0)."""
    pos = 0
    checked = 0
    size = snapshot.size
    allocated = driver.changed_extents(snapshot.id, None)
    for offset, data in repo.read_volume(image_id):
        if offset > pos:
            gap = _first_nonzero(driver, snapshot, allocated, pos, offset - pos)
            if gap >= 0:
                return False, checked, f"non-zero byte at {gap} where the image has a hole"
        got = driver.read_snapshot(snapshot.id, offset, len(data))
        if got != data:
            bad = (
                next(i for i, (a, b) in enumerate(zip(got, data, strict=False)) if a != b)
                if len(got) == len(data)
                else 0
            )
            return False, checked, f"bytes differ at offset {offset + bad}"
        pos = offset + len(data)
        checked += len(data)
        progress(pos, size)
    if pos < size:
        gap = _first_nonzero(driver, snapshot, allocated, pos, size - pos)
        if gap >= 0:
            return False, checked, f"non-zero byte at {gap} where the image has a hole"
    return True, checked, ""


def _first_nonzero(
    driver: CloudDriver, snapshot: SnapshotInfo, allocated: list[Extent], offset: int, length: int
) -> int:
    end = offset + length
    for e in allocated:
        lo, hi = max(e.offset, offset), min(e.offset + e.length, end)
        step = 4 << 20
        while lo < hi:
            n = min(step, hi - lo)
            data = driver.read_snapshot(snapshot.id, lo, n)
            stripped = data.lstrip(b"\0")
            if stripped:
                return lo + len(data) - len(stripped)
            lo += n
    return -1


class VerifyVolume(SeawallTask[VerifyVolumeArgs]):
    """Snapshot the recovered volume and compare it with the checkpoint, byte for byte.

    After a failover the snapshot stays: it is the change-tracking base that lets
    reprotect send only what changed since the recovery.
    """

    def do(self, ctx: Context, args: VerifyVolumeArgs, deps: Deps) -> Any:
        target = deps[args.volume_symbol]
        driver = ctx.rt.driver(args.site)
        repo = ctx.rt.repository(args.repository_site)
        cp = _checkpoint(ctx, args.repository_site, args.checkpoint_id)
        ref = cp.volume(args.source_id)
        snap = driver.create_snapshot(target["id"], f"{ctx.run_id}/verify/{target['id']}")
        ok, checked, why = verify_volume(repo, driver, ref.image_id, snap, ctx.progress)
        if not args.keep_base:
            driver.delete_snapshot(snap.id)
        result = {
            "volume_id": target["id"],
            "source_id": args.source_id,
            "image_id": ref.image_id,
            "verified": ok,
            "bytes": checked,
            "why": why,
            "snapshot_id": snap.id if args.keep_base else "",
        }
        ctx.note(f"verify:{self.name}", result)
        if not ok and not args.record:
            raise VerificationFailed(f"volume {args.source_id} differs: {why}")
        return result

    def undo(self, ctx: Context, args: VerifyVolumeArgs, deps: Deps, result: Any) -> None:
        driver = ctx.rt.driver(args.site)
        target = deps[args.volume_symbol]
        for snap in driver.list_snapshots(target["id"]):
            if snap.key == f"{ctx.run_id}/verify/{target['id']}":
                driver.delete_snapshot(snap.id)


class RunScript(SeawallTask[RunScriptArgs]):
    def do(self, ctx: Context, args: RunScriptArgs, deps: Deps) -> Any:
        script = args.script
        env = dict(os.environ, SEAWALL_RUN=ctx.run_id, SEAWALL_SITE=args.site)
        try:
            done = subprocess.run(
                list(script.command),
                env=env,
                capture_output=True,
                timeout=script.timeout_seconds,
                check=False,
            )
            why = (
                ""
                if done.returncode == 0
                else f"exit {done.returncode}: {done.stderr.decode(errors='replace')[-200:]}"
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            why = str(exc)
        ctx.note(f"check:{self.name}", {"ok": not why, "why": why, "at": time.time()})
        if why and not args.record:
            raise VerificationFailed(f"script {script.command[0]!r} failed: {why}")
        return {"ok": not why}


class FenceServer(SeawallTask[FenceServerArgs]):
    def do(self, ctx: Context, args: FenceServerArgs, deps: Deps) -> Any:
        driver = ctx.rt.driver(args.site)
        driver.power_off(args.server_id)
        driver.wait_for_status(ResourceRef(ResourceKind.SERVER, args.server_id), "SHUTOFF", 60)
        return {"id": args.server_id, "status": "SHUTOFF"}

    def undo(self, ctx: Context, args: FenceServerArgs, deps: Deps, result: Any) -> None:
        ctx.rt.driver(args.site).power_on(args.server_id)


def tagged(driver: CloudDriver, run_id: str) -> list[Resource]:
    return [r for r in driver.list_resources() if r.tags.get("seawall:run") == run_id]


class CleanupDrill(SeawallTask[CleanupDrillArgs]):
    """Remove everything the drill created (journal + tags), then count what is left."""

    def do(self, ctx: Context, args: CleanupDrillArgs, deps: Deps) -> Any:
        driver = ctx.rt.driver(args.site)
        removed = cleanup_run(ctx.rt, driver, args.site, ctx.run_id)
        left = tagged(driver, ctx.run_id)
        for rec in ctx.rt.db.list_created(ctx.run_id):
            if (
                rec.site == args.site
                and driver.get(ResourceRef(ResourceKind(rec.kind), rec.resource_id))
                and all(r.id != rec.resource_id for r in left)
            ):
                left.append(Resource(ResourceKind(rec.kind), rec.resource_id, rec.key))
        ctx.note("residue", len(left))
        ctx.note(
            "cleanup", {"removed": removed, "left": [f"{r.kind.value}/{r.name}" for r in left]}
        )
        return {"residue": len(left), "removed": removed}


def cleanup_run(rt: Runtime, driver: CloudDriver, site: str, run_id: str) -> int:
    """Delete, newest kind first, every resource a run created on ``site``."""
    from seawall.model import RESTORE_RULES

    rank = {rule.kind: i for i, rule in enumerate(RESTORE_RULES)}
    targets: dict[tuple[str, str], ResourceKind] = {}
    for rec in rt.db.list_created(run_id):
        if rec.site == site and not rec.removed:
            targets[(rec.kind, rec.resource_id)] = ResourceKind(rec.kind)
    for r in tagged(driver, run_id):
        targets[(r.kind.value, r.id)] = r.kind
    removed = 0
    for (kind_value, rid), kind in sorted(targets.items(), key=lambda kv: -rank[kv[1]]):
        if kind is ResourceKind.VOLUME:
            for snap in driver.list_snapshots(rid):
                driver.delete_snapshot(snap.id)
        driver.delete(ResourceRef(kind, rid))
        rt.db.mark_removed(run_id, kind_value, rid)
        removed += 1
    return removed


CATALOGUE: dict[str, type[SeawallTask[Any]]] = {
    cls.__name__: cls
    for cls in (
        CheckSite,
        FreezeServer,
        ThawServer,
        SnapshotVolume,
        UploadVolume,
        UploadImage,
        CommitCheckpoint,
        ReplicateCheckpoint,
        ExpireSnapshots,
        ApplyRetention,
        CheckRecovery,
        MapResource,
        CreateResource,
        RestoreImage,
        RestoreVolume,
        WaitServer,
        CheckHealth,
        VerifyVolume,
        RunScript,
        FenceServer,
        CleanupDrill,
    )
}
