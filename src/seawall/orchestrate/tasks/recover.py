"""The steps of a recovery (failover, drill, migration, failback): check, map or create
each resource, restore images and volumes, wait, health checks, verify, scripts, fence,
drill clean-up."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from seawall import procfs
from seawall.clouds import CloudDriver, Extent, ResourceSpec, SnapshotInfo
from seawall.clouds.tags import KEY_TAG
from seawall.errors import NotFound, SeawallError, VerificationFailed
from seawall.fidelity import Difference, compare, describe
from seawall.model import (
    CheckKind,
    Checkpoint,
    HealthCheck,
    Resource,
    ResourceKind,
    ResourceRef,
    dump,
    load,
)
from seawall.orchestrate.runtime import Runtime
from seawall.orchestrate.steps import (
    CheckHealthArgs,
    CheckRecoveryArgs,
    CleanupDrillArgs,
    CreateResourceArgs,
    FenceServerArgs,
    LinkResourceArgs,
    MapResourceArgs,
    ReleaseMarksArgs,
    RestoreImageArgs,
    RestoreVolumeArgs,
    RunScriptArgs,
    VerifyFidelityArgs,
    VerifyVolumeArgs,
    WaitServerArgs,
    symbol_ref,
)
from seawall.orchestrate.tasks.base import Context, Deps, SeawallTask


class CheckRecovery(SeawallTask[CheckRecoveryArgs]):
    def do(self, ctx: Context, args: CheckRecoveryArgs, deps: Deps) -> Any:
        ctx.driver(args.site).ping()
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
        for r in ctx.driver(args.site).list_resources(kind):
            if r.name == args.name:
                return {"id": r.id, "name": r.name, "mapped": True}
        raise NotFound(f"no {kind.value} named {args.name!r} at site {args.site}")


class CreateResource(SeawallTask[CreateResourceArgs]):
    """Find-or-create one resource on the target, and journal it for revert/clean-up.

    Only what the run owns is journaled, and so only that is ever deleted by this step's
    revert or by a drill's clean-up (:func:`cleanup_run` walks the journal). The driver
    says what it created: the resource it returns carries ``seawall:key`` == the step's
    key exactly then (the ``CloudDriver`` contract). One it reused instead, the target's
    own (its same-named volume type or flavor, an identical keypair, the project's
    ``default`` security group), comes back without it and is never deleted. The journal
    is read first: a resumed attempt whose resource the journal already holds (created
    and recorded before the crash) takes that one, still the run's, which matters where
    the cloud keeps no key and names are not unique (server groups).
    """

    def do(self, ctx: Context, args: CreateResourceArgs, deps: Deps) -> Any:
        refs = {role: tuple(deps[sym]["id"] for sym in syms) for role, syms in args.refs.items()}
        kind = ResourceKind(args.kind)
        driver = ctx.driver(args.site)
        journaled = _journaled(ctx, args)
        before = driver.get(ResourceRef(kind, journaled)) if journaled else None
        if before is not None:
            return {"id": before.id, "name": before.name, "source_id": args.source_id,
                    "owned": True}  # fmt: skip
        spec = ResourceSpec(
            kind=kind,
            name=args.name,
            key=args.key,
            attrs=args.attrs,
            refs=refs,
            tags=args.tags,
        )
        created = driver.create(spec)
        owned = created.tags.get(KEY_TAG) == args.key
        if owned:
            ctx.rt.db.record_created(ctx.run_id, args.site, kind.value, created.id, args.key)
        return {"id": created.id, "name": created.name, "source_id": args.source_id,
                "owned": owned}  # fmt: skip

    def undo(self, ctx: Context, args: CreateResourceArgs, deps: Deps, result: Any) -> None:
        driver = ctx.driver(args.site)
        kind = ResourceKind(args.kind)
        if result:
            # results persisted before "owned" existed were all created by their run
            rid = str(result["id"]) if result.get("owned", True) else ""
        else:  # the attempt failed: delete only what it can be shown to have created
            found = driver.find(kind, args.key)
            mine = found.id if found is not None and found.tags.get(KEY_TAG) == args.key else ""
            rid = _journaled(ctx, args) or mine
        if rid:
            driver.delete(ResourceRef(kind, rid))
            ctx.rt.db.mark_removed(ctx.run_id, kind.value, rid)


class LinkResource(SeawallTask[LinkResourceArgs]):
    """Find-or-create once more, with the refs the create step left out (a security
    group's rules naming other groups): the driver adds what the resource lacks.

    Nothing to undo of its own: the create step's revert deletes the resource, and with
    it what this step added (the project's ``default`` group excepted, see the driver)."""

    def do(self, ctx: Context, args: LinkResourceArgs, deps: Deps) -> Any:
        refs = {role: tuple(deps[sym]["id"] for sym in syms) for role, syms in args.refs.items()}
        spec = ResourceSpec(
            kind=ResourceKind(args.kind),
            name=args.name,
            key=args.key,
            attrs=args.attrs,
            refs=refs,
            tags=args.tags,
        )
        linked = ctx.driver(args.site).create(spec)
        return {"id": linked.id, "name": linked.name, "source_id": args.source_id}


def _journaled(ctx: Context, args: CreateResourceArgs) -> str:
    """The id this step's key has in the run's journal on its site ("" if none)."""
    for rec in ctx.rt.db.list_created(ctx.run_id):
        if (rec.site, rec.kind, rec.key) == (args.site, args.kind, args.key) and not rec.removed:
            return rec.resource_id
    return ""


class RestoreImage(SeawallTask[RestoreImageArgs]):
    def do(self, ctx: Context, args: RestoreImageArgs, deps: Deps) -> Any:
        target = deps[args.image_symbol]
        repo = ctx.rt.repository(args.repository_site)
        cp = _checkpoint(ctx, args.repository_site, args.checkpoint_id)
        stream = cp.images.get(args.source_id)
        if not stream:
            return {"id": target["id"], "skipped": True}
        ctx.driver(args.site).write_image(target["id"], repo.get_stream(stream))
        return {"id": target["id"]}


class RestoreVolume(SeawallTask[RestoreVolumeArgs]):
    """Fill a new volume from its volume image; holes are skipped (new volumes read zero)."""

    def do(self, ctx: Context, args: RestoreVolumeArgs, deps: Deps) -> Any:
        target = deps[args.volume_symbol]
        repo = ctx.rt.repository(args.repository_site)
        cp = _checkpoint(ctx, args.repository_site, args.checkpoint_id)
        ref = cp.volume(args.source_id)
        driver = ctx.driver(args.site)
        written = 0
        for offset, data in repo.read_volume(ref.image_id):
            driver.write_volume(target["id"], offset, data)
            written += len(data)
            ctx.progress(offset + len(data), ref.size)
        return {"id": target["id"], "image_id": ref.image_id, "bytes_written": written}


class WaitServer(SeawallTask[WaitServerArgs]):
    def do(self, ctx: Context, args: WaitServerArgs, deps: Deps) -> Any:
        server = self.requirement(deps)
        r = ctx.driver(args.site).wait_for_status(
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
            ctx.driver(args.site),
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
        driver = ctx.driver(args.site)
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
        driver = ctx.driver(args.site)
        target = deps[args.volume_symbol]
        for snap in driver.list_snapshots(target["id"]):
            if snap.key == f"{ctx.run_id}/verify/{target['id']}":
                driver.delete_snapshot(snap.id)


class VerifyFidelity(SeawallTask[VerifyFidelityArgs]):
    """Read back every copy the recovery created and compare it with what it asked for.

    Differences do not fail the step: the workload is up by now (and a revert would take
    it down for an attribute). They are the run's ``fidelity`` figure, which makes the
    run's ``verified`` false and its outcome a warning naming each resource and attribute.
    """

    def do(self, ctx: Context, args: VerifyFidelityArgs, deps: Deps) -> Any:
        ids = {
            ref: str(value["id"])
            for symbol, value in deps.items()
            if (ref := symbol_ref(symbol)) is not None and isinstance(value, dict)
        }
        driver = ctx.driver(args.site)
        differences: list[Difference] = []
        for e in args.expected:
            want = e.resource
            target_id = ids.get(want.ref, "")
            got = driver.get(ResourceRef(want.kind, target_id)) if target_id else None
            if got is None:
                differences.append(Difference(describe(want, e.label), "exists", True, False))
                continue
            differences.extend(compare(want, got, ids=ids, label=e.label))
            ctx.check()
        result = {
            "checked": len(args.expected),
            "ok": not differences,
            "differences": [dump(d) for d in differences],
        }
        ctx.note("fidelity", result)
        return result


class ReleaseMarks(SeawallTask[ReleaseMarksArgs]):
    """Once the recovery is done, every resource the run created at the site loses the
    marks its driver kept where the user reads them (a Cinder volume's key in its
    metadata). Best effort: a resource that cannot be released is named in the result
    and an event, and the recovery stands — a mark is not worth a revert."""

    def do(self, ctx: Context, args: ReleaseMarksArgs, deps: Deps) -> Any:
        driver = ctx.driver(args.site)
        released, failed = 0, {}
        for rec in ctx.rt.db.list_created(ctx.run_id):
            if rec.site != args.site or rec.removed:
                continue
            try:
                driver.release(ResourceRef(ResourceKind(rec.kind), rec.resource_id))
                released += 1
            except SeawallError as exc:
                failed[f"{rec.kind}/{rec.resource_id}"] = str(exc)
        if failed:
            ctx.rt.db.add_event(
                "release-failed",
                f"{len(failed)} resource(s) keep seawall's marks in their metadata: "
                + "; ".join(f"{k}: {v}" for k, v in sorted(failed.items())),
                severity="warning",
                run_id=ctx.run_id,
            )
        return {"released": released, "failed": failed}


class RunScript(SeawallTask[RunScriptArgs]):
    def do(self, ctx: Context, args: RunScriptArgs, deps: Deps) -> Any:
        script = args.script
        # the script is the workload's: its environment is built from nothing, never
        # seawall's (passphrase, tokens, cloud and storage credentials)
        env = procfs.workload_environment({"SEAWALL_RUN": ctx.run_id, "SEAWALL_SITE": args.site})
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
        driver = ctx.driver(args.site)
        driver.power_off(args.server_id)
        driver.wait_for_status(ResourceRef(ResourceKind.SERVER, args.server_id), "SHUTOFF", 60)
        return {"id": args.server_id, "status": "SHUTOFF"}

    def undo(self, ctx: Context, args: FenceServerArgs, deps: Deps, result: Any) -> None:
        ctx.driver(args.site).power_on(args.server_id)


def tagged(driver: CloudDriver, run_id: str) -> list[Resource]:
    return [r for r in driver.list_resources() if r.tags.get("seawall:run") == run_id]


class CleanupDrill(SeawallTask[CleanupDrillArgs]):
    """Remove everything the drill created (journal + tags), then count what is left."""

    def do(self, ctx: Context, args: CleanupDrillArgs, deps: Deps) -> Any:
        driver = ctx.driver(args.site)
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
