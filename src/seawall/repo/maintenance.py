"""Maintenance: check, stats, forget by retention rules, prune.

The one rule prune lives by: a blob is deleted only if no remaining volume image or
stream references it, and every remaining manifest is a root. It runs under the
exclusive lock, so no writer can be between "packs written" and "manifest written".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from seawall.errors import CorruptObject, InvalidInput, NotFound
from seawall.repo.format import HOLE, BlobEntry, ObjectType, hash_id
from seawall.repo.repository import (
    DATA_KINDS,
    DATA_PREFIX,
    INDEX_PREFIX,
    KEYS_PREFIX,
    LOCK_PREFIX,
    CheckReport,
    Located,
    Manifest,
    _PackWriter,
    pack_key,
)

if TYPE_CHECKING:
    from seawall.repo.repository import Repository

log = logging.getLogger(__name__)

#: A pack whose unused bytes exceed this share is rewritten with its live blobs only.
REPACK_THRESHOLD = 0.2


def _stored_packs(repo: Repository) -> dict[bytes, int]:
    return {bytes.fromhex(b.key.rsplit("/", 1)[-1]): b.size for b in repo.storage.list(DATA_PREFIX)}


def _describe(m: Manifest) -> str:
    name = m.body.get("name") or m.labels.get("name") or ""
    return f"{'volume image' if m.kind == 'volume' else m.kind} {m.id}" + (
        f" ({name})" if name else ""
    )


# --------------------------------------------------------------------------------------
# check
# --------------------------------------------------------------------------------------
def check(
    repo: Repository,
    *,
    read_data: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> CheckReport:
    """Structure always; with ``read_data`` every pack is downloaded and every blob
    authenticated and compared with its id."""
    errors: list[str] = []
    warnings: list[str] = []
    damaged: set[str] = set()
    bad: dict[bytes, str] = {}

    # 1. index files, read fresh from storage
    indexed: dict[bytes, dict[bytes, BlobEntry]] = {}
    index_damaged = False
    for b in repo.storage.list(INDEX_PREFIX):
        try:
            packs = repo._load_index_file(b.key)
        except CorruptObject as exc:
            errors.append(str(exc))
            index_damaged = True
            continue
        for pack_id, listed in packs.items():
            slot = indexed.setdefault(pack_id, {})
            for e in listed:
                slot.setdefault(e.id, e)
    stored = _stored_packs(repo)
    if index_damaged:
        # Recover locations from the packs themselves so damage is attributed precisely.
        for pack_id, size in stored.items():
            if pack_id not in indexed:
                try:
                    indexed[pack_id] = {e.id: e for e in repo.read_pack_trailer(pack_id, size)}
                except CorruptObject as exc:
                    errors.append(str(exc))
    where: dict[bytes, Located] = {}
    for pack_id, by_id in indexed.items():
        for e in by_id.values():
            where.setdefault(e.id, Located(pack_id, e))

    # 2. packs named by the index exist and are long enough
    for pack_id, by_id in indexed.items():
        psize = stored.get(pack_id)
        if psize is None:
            errors.append(f"pack {pack_id.hex()} is listed in the index but missing")
            for bid in by_id:
                bad[bid] = "pack missing"
            continue
        end = max((e.offset + e.length for e in by_id.values()), default=0)
        if psize < end:
            errors.append(f"pack {pack_id.hex()} is truncated ({psize} of at least {end} bytes)")
            for e in by_id.values():
                if e.offset + e.length > psize:
                    bad[e.id] = "pack truncated"
    for pack_id in sorted(set(stored) - set(indexed)):
        warnings.append(
            f"pack {pack_id.hex()} is in no index (left by an interrupted writer; "
            "`repo prune` removes it)"
        )

    # 3. manifests and their references
    manifests: dict[str, Manifest] = {}
    for mid in repo.manifest_ids():
        with repo._mutex:
            repo._manifests.pop(mid, None)  # re-read from storage, not the cache
        try:
            manifests[mid] = repo.load_manifest(mid)
        except (CorruptObject, NotFound) as exc:
            errors.append(str(exc))
            damaged.add(mid)
    for m in manifests.values():
        for r in m.refs:
            if r not in manifests:
                errors.append(f"{_describe(m)} refers to missing manifest {r}")
                damaged.add(m.id)

    # 4. volume images and streams: chunk lists and chunks are all indexed
    users: dict[bytes, set[str]] = {}
    for m in manifests.values():
        if m.kind not in DATA_KINDS:
            continue
        pieces = [bytes.fromhex(h) for h in m.body.get("chunk_list", [])]
        for p in pieces:
            users.setdefault(p, set()).add(m.id)
        missing_pieces = [p for p in pieces if p not in where]
        if missing_pieces:
            errors.append(f"{_describe(m)}: {len(missing_pieces)} chunk-list blob(s) missing")
            damaged.add(m.id)
            continue
        try:
            ids = repo.chunk_list(m)
        except CorruptObject as exc:
            errors.append(f"{_describe(m)}: chunk list unreadable: {exc}")
            damaged.add(m.id)
            continue
        missing = 0
        for cid in ids:
            if cid == HOLE:
                continue
            users.setdefault(cid, set()).add(m.id)
            if cid not in where:
                missing += 1
        if missing:
            errors.append(f"{_describe(m)}: {missing} chunk(s) missing from the repository")
            damaged.add(m.id)

    # 5. read every byte
    if read_data:
        total = sum(stored.values())
        done = 0
        for pack_id in sorted(stored):
            size = stored[pack_id]
            what = f"pack {pack_id.hex()}"
            try:
                data = repo.storage.get(pack_key(pack_id))
            except NotFound:
                errors.append(f"{what} vanished during check")
                continue
            if hash_id(data).hex() != pack_id.hex():
                errors.append(f"{what}: content does not match its name (damaged)")
            for e in indexed.get(pack_id, {}).values():
                blob = data[e.offset : e.offset + e.length]
                try:
                    plain = repo.keys.unseal(
                        blob, e.id, expect_type=e.type, what=f"{what}: blob {e.id.hex()}"
                    )
                    if len(plain) != e.raw_length or repo.keys.chunk_id(plain) != e.id:
                        raise CorruptObject(f"{what}: blob {e.id.hex()} does not match its id")
                except CorruptObject as exc:
                    bad[e.id] = str(exc)
            try:
                repo.read_pack_trailer(pack_id, size)
            except CorruptObject as exc:
                errors.append(str(exc))
            done += size
            if progress is not None:
                progress(done, total)

    # 6. attribute damaged blobs to the images that use them
    per_image: dict[str, int] = {}
    for bid, why in bad.items():
        for mid in users.get(bid, ()):
            per_image[mid] = per_image.get(mid, 0) + 1
        if bid not in users:
            warnings.append(f"unreferenced blob {bid.hex()} is damaged ({why})")
    for mid, count in sorted(per_image.items()):
        errors.append(f"{_describe(manifests[mid])}: {count} damaged chunk(s)")
        damaged.add(mid)
    # a manifest that keeps a damaged one alive is damaged too
    changed = True
    while changed:
        changed = False
        for m in manifests.values():
            if m.id not in damaged and any(r in damaged for r in m.refs):
                damaged.add(m.id)
                changed = True
    return CheckReport(ok=not errors, errors=errors, damaged=sorted(damaged), warnings=warnings)


# --------------------------------------------------------------------------------------
# stats
# --------------------------------------------------------------------------------------
def stats(repo: Repository) -> dict[str, Any]:
    repo._refresh_index()
    packs = list(repo.storage.list(DATA_PREFIX))
    by_type: dict[str, dict[str, int]] = {}
    names = {
        ObjectType.BLOB_DATA: "data",
        ObjectType.BLOB_LIST: "list",
        ObjectType.BLOB_STREAM: "stream",
    }
    with repo._mutex:
        locs = list(repo._index.values())
    for loc in locs:
        t = by_type.setdefault(
            names.get(loc.entry.type, str(loc.entry.type)),
            {"count": 0, "stored_bytes": 0, "raw_bytes": 0},
        )
        t["count"] += 1
        t["stored_bytes"] += loc.entry.length
        t["raw_bytes"] += loc.entry.raw_length
    manifests = repo.list_manifests()
    kinds: dict[str, int] = {}
    for m in manifests:
        kinds[m.kind] = kinds.get(m.kind, 0) + 1
    logical = sum(int(m.body.get("size", 0)) for m in manifests if m.kind in DATA_KINDS)
    pack_bytes = sum(b.size for b in packs)
    return {
        "repository_id": repo.id,
        "url": repo.storage.url,
        "format_version": 1,
        "chunk_size": repo.chunk_size,
        "packs": len(packs),
        "pack_bytes": pack_bytes,
        "index_files": sum(1 for _ in repo.storage.list(INDEX_PREFIX)),
        "blobs": by_type,
        "manifests": kinds,
        "logical_bytes": logical,
        "dedup_ratio": round(logical / pack_bytes, 3) if pack_bytes else None,
        "key_slots": sum(1 for _ in repo.storage.list(KEYS_PREFIX)),
        "locks": sum(1 for _ in repo.storage.list(LOCK_PREFIX)),
    }


# --------------------------------------------------------------------------------------
# forget
# --------------------------------------------------------------------------------------
_BUCKETS: dict[str, Callable[[datetime], object]] = {
    "hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: tuple(t.isocalendar())[:2],
    "monthly": lambda t: (t.year, t.month),
}


def select_kept(items: Sequence[Manifest], rules: dict[str, int]) -> set[str]:
    """restic's rules: the newest N; then per period the newest of each of the last N
    periods that have one. A manifest kept by any rule is kept."""
    newest_first = sorted(items, key=lambda m: (m.created_at, m.id), reverse=True)
    keep = {m.id for m in newest_first[: rules.get("last", 0)]}
    for period, fn in _BUCKETS.items():
        want = rules.get(period, 0)
        seen: list[object] = []
        for m in newest_first:
            if len(seen) >= want:
                break
            b = fn(m.created_at)
            if b not in seen:
                seen.append(b)
                keep.add(m.id)
    return keep


def forget(
    repo: Repository,
    kind: str,
    group_by: Sequence[str],
    *,
    keep_last: int = 0,
    keep_hourly: int = 0,
    keep_daily: int = 0,
    keep_weekly: int = 0,
    keep_monthly: int = 0,
    dry_run: bool = False,
) -> list[str]:
    rules = {
        "last": keep_last,
        "hourly": keep_hourly,
        "daily": keep_daily,
        "weekly": keep_weekly,
        "monthly": keep_monthly,
    }
    if any(v < 0 for v in rules.values()):
        raise InvalidInput("keep counts cannot be negative")
    if not any(rules.values()):
        raise InvalidInput("no --keep-* rule given; refusing to forget everything")
    groups: dict[tuple[str, ...], list[Manifest]] = {}
    for m in repo.list_manifests(kind):
        groups.setdefault(tuple(m.labels.get(k, "") for k in group_by), []).append(m)
    doomed: list[str] = []
    for key in sorted(groups):
        items = groups[key]
        kept = select_kept(items, rules)
        doomed.extend(
            m.id for m in sorted(items, key=lambda m: (m.created_at, m.id)) if m.id not in kept
        )
    if dry_run or not doomed:
        return doomed
    return repo._delete_manifests(doomed)


# --------------------------------------------------------------------------------------
# prune
# --------------------------------------------------------------------------------------
def prune(repo: Repository) -> dict[str, Any]:
    """Delete every blob no remaining manifest reaches; rewrite mostly-dead packs.

    Order: new packs -> new index -> delete old index files -> delete packs, so a crash
    at any point leaves a readable repository (at worst with extra unreferenced data).
    """
    repo._refresh_index()
    with repo._mutex:
        repo._manifests.clear()
    used: set[bytes] = set()
    ids = repo.manifest_ids()
    for mid in ids:
        m = repo.load_manifest(mid)  # a damaged manifest aborts prune: its refs are unknown
        if m.kind in DATA_KINDS:
            used.update(bytes.fromhex(h) for h in m.body.get("chunk_list", []))
            used.update(c for c in repo.chunk_list(m) if c != HOLE)
    stored = _stored_packs(repo)
    if repo.index_errors:
        current = repo.rebuild_index()
    else:
        current = {p: e for p, e in repo.indexed_packs().items() if p in stored}
    old_index_files = [b.key for b in repo.storage.list(INDEX_PREFIX)]

    keep: dict[bytes, list[BlobEntry]] = {}
    delete: set[bytes] = set(stored) - set(current)
    repack: list[tuple[bytes, list[BlobEntry]]] = []
    placed: set[bytes] = set()
    freed = 0
    for pack_id in sorted(current):
        live = []
        for e in current[pack_id]:
            if e.id in used and e.id not in placed:
                live.append(e)
                placed.add(e.id)
        size = stored.get(pack_id, 0)
        live_bytes = sum(e.length for e in live)
        if not live:
            delete.add(pack_id)
        elif size and (size - live_bytes) / size > REPACK_THRESHOLD:
            repack.append((pack_id, live))
        else:
            keep[pack_id] = live
    writer = _PackWriter(repo, auto_index=False)
    for pack_id, live in repack:
        data = repo.storage.get(pack_key(pack_id))
        for e in live:
            blob = data[e.offset : e.offset + e.length]
            # Authenticate before copying, so prune never spreads damage into new packs.
            repo.keys.unseal(blob, e.id, expect_type=e.type, what=f"pack {pack_id.hex()}")
            writer.add(e.id, e.type, blob, e.raw_length)
        delete.add(pack_id)
    writer.flush_pack()
    writer._wait_upload()
    new_index = dict(keep)
    new_index.update(writer.unindexed)
    for pack_id in delete:
        freed += stored.get(pack_id, 0)
    for pack_id in writer.unindexed:
        freed -= sum(e.length for e in writer.unindexed[pack_id])
    with repo._mutex:
        repo._index.clear()
        repo._index_files.clear()
        repo.index_errors.clear()
    new_name = repo._publish_index(new_index) if new_index else None
    for name in old_index_files:
        if name != new_name:
            repo.storage.delete(name)
    for pack_id in sorted(delete):
        repo.storage.delete(pack_key(pack_id))
    missing = len(used - placed)
    if missing:
        log.warning("prune: %d referenced blobs are missing; run `repo check`", missing)
    return {
        "packs_deleted": len(delete) - len(repack),
        "packs_repacked": len(repack),
        "packs_kept": len(keep) + len(writer.unindexed),
        "blobs_kept": len(placed),
        "blobs_missing": missing,
        "bytes_freed": max(freed, 0),
        "index_files_deleted": len([n for n in old_index_files if n != new_name]),
        "manifests": len(ids),
    }
