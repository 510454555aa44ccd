"""Maintenance: check, stats, forget by retention rules, prune (format §10 and §11).

The one rule prune lives by: a blob is deleted only if no remaining volume image or
stream references it, and every remaining manifest is a root. It runs under the
exclusive lock, so no writer can be between "packs written" and "manifest written".

These functions work on the layers below the repository facade (the blob store with its
index and packs, and the manifest store) through their public methods only; the facade
(:class:`~seawall.repo.repository.Repository`) takes the lock and calls them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from seawall.errors import CorruptObject, InvalidInput, NotFound
from seawall.repo.format import HOLE, BlobEntry, ObjectType, hash_id
from seawall.repo.index import INDEX_PREFIX
from seawall.repo.keyfile import KEYS_PREFIX
from seawall.repo.locks import LOCK_PREFIX
from seawall.repo.manifest import DATA_KINDS, Manifest, ManifestStore, describe
from seawall.repo.pack import DATA_PREFIX, Located, pack_key, read_trailer, stored_packs
from seawall.repo.store import BlobStore
from seawall.retention import KeepRules, select_kept

log = logging.getLogger(__name__)

#: A pack whose unused bytes exceed this share is rewritten with its live blobs only.
REPACK_THRESHOLD = 0.2


@dataclass
class CheckReport:
    """``damaged`` names every volume image, stream and manifest a problem affects."""

    ok: bool
    errors: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------
# check
# --------------------------------------------------------------------------------------
class _Check:
    """One run of ``check``: each step adds errors, warnings and damaged ids."""

    def __init__(self, blobs: BlobStore, manifests: ManifestStore) -> None:
        self.blobs = blobs
        self.store = manifests
        self.storage = blobs.storage
        self.keys = blobs.keys
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.damaged: set[str] = set()
        self.bad: dict[bytes, str] = {}  # blob id -> why it is unusable
        self.indexed: dict[bytes, dict[bytes, BlobEntry]] = {}
        self.stored: dict[bytes, int] = {}
        self.where: dict[bytes, Located] = {}
        self.manifests: dict[str, Manifest] = {}
        self.users: dict[bytes, set[str]] = {}  # blob id -> manifests that use it

    def index_files(self) -> None:
        """1. index files, read fresh from storage."""
        index_damaged = False
        for b in self.storage.list(INDEX_PREFIX):
            try:
                packs = self.blobs.index.load_file(b.key)
            except CorruptObject as exc:
                self.errors.append(str(exc))
                index_damaged = True
                continue
            for pack_id, listed in packs.items():
                slot = self.indexed.setdefault(pack_id, {})
                for e in listed:
                    slot.setdefault(e.id, e)
        self.stored = stored_packs(self.storage)
        if index_damaged:
            # Recover locations from the packs themselves so damage is attributed precisely.
            for pack_id, size in self.stored.items():
                if pack_id not in self.indexed:
                    try:
                        entries = read_trailer(self.storage, self.keys, pack_id, size)
                    except CorruptObject as exc:
                        self.errors.append(str(exc))
                        continue
                    self.indexed[pack_id] = {e.id: e for e in entries}
        for pack_id, by_id in self.indexed.items():
            for e in by_id.values():
                self.where.setdefault(e.id, Located(pack_id, e))

    def packs(self) -> None:
        """2. packs named by the index exist and are long enough."""
        for pack_id, by_id in self.indexed.items():
            psize = self.stored.get(pack_id)
            if psize is None:
                self.errors.append(f"pack {pack_id.hex()} is listed in the index but missing")
                for bid in by_id:
                    self.bad[bid] = "pack missing"
                continue
            end = max((e.offset + e.length for e in by_id.values()), default=0)
            if psize < end:
                self.errors.append(
                    f"pack {pack_id.hex()} is truncated ({psize} of at least {end} bytes)"
                )
                for e in by_id.values():
                    if e.offset + e.length > psize:
                        self.bad[e.id] = "pack truncated"
        for pack_id in sorted(set(self.stored) - set(self.indexed)):
            self.warnings.append(
                f"pack {pack_id.hex()} is in no index (left by an interrupted writer; "
                "`repo prune` removes it)"
            )

    def manifest_refs(self) -> None:
        """3. manifests (re-read from storage, not the cache) and their references."""
        for mid in self.store.ids():
            try:
                self.manifests[mid] = self.store.load(mid, cached=False)
            except (CorruptObject, NotFound) as exc:
                self.errors.append(str(exc))
                self.damaged.add(mid)
        for m in self.manifests.values():
            for r in m.refs:
                if r not in self.manifests:
                    self.errors.append(f"{describe(m)} refers to missing manifest {r}")
                    self.damaged.add(m.id)

    def chunks(self) -> None:
        """4. volume images and streams: chunk lists and chunks are all indexed."""
        for m in self.manifests.values():
            if m.kind in DATA_KINDS:
                self._chunks_of(m)

    def _chunks_of(self, m: Manifest) -> None:
        pieces = [bytes.fromhex(h) for h in m.body.get("chunk_list", [])]
        for p in pieces:
            self.users.setdefault(p, set()).add(m.id)
        missing_pieces = [p for p in pieces if p not in self.where]
        if missing_pieces:
            self.errors.append(f"{describe(m)}: {len(missing_pieces)} chunk-list blob(s) missing")
            self.damaged.add(m.id)
            return
        try:
            ids = self.blobs.chunk_list(m)
        except CorruptObject as exc:
            self.errors.append(f"{describe(m)}: chunk list unreadable: {exc}")
            self.damaged.add(m.id)
            return
        missing = 0
        for cid in ids:
            if cid == HOLE:
                continue
            self.users.setdefault(cid, set()).add(m.id)
            if cid not in self.where:
                missing += 1
        if missing:
            self.errors.append(f"{describe(m)}: {missing} chunk(s) missing from the repository")
            self.damaged.add(m.id)

    def read_data(self, progress: Callable[[int, int], None] | None) -> None:
        """5. read every byte: pack hashes, every blob, every trailer."""
        total = sum(self.stored.values())
        done = 0
        for pack_id in sorted(self.stored):
            size = self.stored[pack_id]
            self._read_pack(pack_id, size)
            done += size
            if progress is not None:
                progress(done, total)

    def _read_pack(self, pack_id: bytes, size: int) -> None:
        what = f"pack {pack_id.hex()}"
        try:
            data = self.storage.get(pack_key(pack_id))
        except NotFound:
            self.errors.append(f"{what} vanished during check")
            return
        if hash_id(data).hex() != pack_id.hex():
            self.errors.append(f"{what}: content does not match its name (damaged)")
        keys = self.keys
        for e in self.indexed.get(pack_id, {}).values():
            blob = data[e.offset : e.offset + e.length]
            try:
                plain = keys.unseal(
                    blob, e.id, expect_type=e.type, what=f"{what}: blob {e.id.hex()}"
                )
                if len(plain) != e.raw_length or keys.chunk_id(plain) != e.id:
                    raise CorruptObject(f"{what}: blob {e.id.hex()} does not match its id")
            except CorruptObject as exc:
                self.bad[e.id] = str(exc)
        try:
            read_trailer(self.storage, keys, pack_id, size)
        except CorruptObject as exc:
            self.errors.append(str(exc))

    def attribute(self) -> CheckReport:
        """6. attribute damaged blobs to the images that use them, and to every manifest
        that (transitively) keeps a damaged one alive."""
        per_image: dict[str, int] = {}
        for bid, why in self.bad.items():
            for mid in self.users.get(bid, ()):
                per_image[mid] = per_image.get(mid, 0) + 1
            if bid not in self.users:
                self.warnings.append(f"unreferenced blob {bid.hex()} is damaged ({why})")
        for mid, count in sorted(per_image.items()):
            self.errors.append(f"{describe(self.manifests[mid])}: {count} damaged chunk(s)")
            self.damaged.add(mid)
        changed = True
        while changed:
            changed = False
            for m in self.manifests.values():
                if m.id not in self.damaged and any(r in self.damaged for r in m.refs):
                    self.damaged.add(m.id)
                    changed = True
        return CheckReport(
            ok=not self.errors,
            errors=self.errors,
            damaged=sorted(self.damaged),
            warnings=self.warnings,
        )


def check(
    blobs: BlobStore,
    manifests: ManifestStore,
    *,
    read_data: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> CheckReport:
    """Structure always; with ``read_data`` every pack is downloaded and every blob
    authenticated and compared with its id."""
    c = _Check(blobs, manifests)
    c.index_files()
    c.packs()
    c.manifest_refs()
    c.chunks()
    if read_data:
        c.read_data(progress)
    return c.attribute()


# --------------------------------------------------------------------------------------
# stats
# --------------------------------------------------------------------------------------
_TYPE_NAMES = {
    ObjectType.BLOB_DATA: "data",
    ObjectType.BLOB_LIST: "list",
    ObjectType.BLOB_STREAM: "stream",
}


def stats(blobs: BlobStore, manifests: ManifestStore, repository_id: str) -> dict[str, Any]:
    """Counts and sizes of what the repository holds (``seawall repo stats``)."""
    storage = blobs.storage
    blobs.index.refresh()
    packs = list(storage.list(DATA_PREFIX))
    by_type: dict[str, dict[str, int]] = {}
    for loc in blobs.index.locations():
        t = by_type.setdefault(
            _TYPE_NAMES.get(loc.entry.type, str(loc.entry.type)),
            {"count": 0, "stored_bytes": 0, "raw_bytes": 0},
        )
        t["count"] += 1
        t["stored_bytes"] += loc.entry.length
        t["raw_bytes"] += loc.entry.raw_length
    every = manifests.find()
    kinds: dict[str, int] = {}
    for m in every:
        kinds[m.kind] = kinds.get(m.kind, 0) + 1
    logical = sum(int(m.body.get("size", 0)) for m in every if m.kind in DATA_KINDS)
    pack_bytes = sum(b.size for b in packs)
    return {
        "repository_id": repository_id,
        "url": storage.url,
        "format_version": 1,
        "chunk_size": blobs.chunk_size,
        "packs": len(packs),
        "pack_bytes": pack_bytes,
        "index_files": sum(1 for _ in storage.list(INDEX_PREFIX)),
        "blobs": by_type,
        "manifests": kinds,
        "logical_bytes": logical,
        "dedup_ratio": round(logical / pack_bytes, 3) if pack_bytes else None,
        "key_slots": sum(1 for _ in storage.list(KEYS_PREFIX)),
        "locks": sum(1 for _ in storage.list(LOCK_PREFIX)),
    }


# --------------------------------------------------------------------------------------
# forget
# --------------------------------------------------------------------------------------
def forget(
    manifests: ManifestStore,
    kind: str,
    group_by: Sequence[str],
    rules: KeepRules,
    *,
    dry_run: bool = False,
) -> list[str]:
    """Delete the manifests of ``kind`` the rules do not keep, per group of equal
    ``group_by`` labels (:func:`seawall.retention.select_kept`); return the deleted ids
    (with the volume images and streams only they kept alive), oldest first per group."""
    if not rules:
        raise InvalidInput("no --keep-* rule given; refusing to forget everything")
    groups: dict[tuple[str, ...], list[Manifest]] = {}
    for m in manifests.find(kind):
        groups.setdefault(tuple(m.labels.get(k, "") for k in group_by), []).append(m)
    doomed: list[str] = []
    for key in sorted(groups):
        items = groups[key]
        kept = select_kept({m.id: m.created_at.timestamp() for m in items}, rules)
        doomed.extend(
            m.id for m in sorted(items, key=lambda m: (m.created_at, m.id)) if m.id not in kept
        )
    if dry_run or not doomed:
        return doomed
    return manifests.delete(doomed)


# --------------------------------------------------------------------------------------
# prune
# --------------------------------------------------------------------------------------
def _used_blobs(blobs: BlobStore, manifests: ManifestStore, ids: list[str]) -> set[bytes]:
    """Every chunk-list piece and chunk a manifest reaches; a damaged manifest aborts
    (its references are unknown)."""
    used: set[bytes] = set()
    for mid in ids:
        m = manifests.load(mid)
        if m.kind in DATA_KINDS:
            used.update(bytes.fromhex(h) for h in m.body.get("chunk_list", []))
            used.update(c for c in blobs.chunk_list(m) if c != HOLE)
    return used


@dataclass
class _Plan:
    """What prune does with each pack."""

    keep: dict[bytes, list[BlobEntry]] = field(default_factory=dict)
    delete: set[bytes] = field(default_factory=set)
    repack: list[tuple[bytes, list[BlobEntry]]] = field(default_factory=list)
    placed: set[bytes] = field(default_factory=set)


def _plan(
    current: dict[bytes, list[BlobEntry]], stored: dict[bytes, int], used: set[bytes]
) -> _Plan:
    plan = _Plan(delete=set(stored) - set(current))
    for pack_id in sorted(current):
        live = []
        for e in current[pack_id]:
            if e.id in used and e.id not in plan.placed:
                live.append(e)
                plan.placed.add(e.id)
        size = stored.get(pack_id, 0)
        live_bytes = sum(e.length for e in live)
        if not live:
            plan.delete.add(pack_id)
        elif size and (size - live_bytes) / size > REPACK_THRESHOLD:
            plan.repack.append((pack_id, live))
        else:
            plan.keep[pack_id] = live
    return plan


def _repack(blobs: BlobStore, plan: _Plan) -> dict[bytes, list[BlobEntry]]:
    """Copy the live blobs of mostly-dead packs into new packs; return the new packs."""
    writer = blobs.writer(publish=False)
    for pack_id, live in plan.repack:
        data = blobs.storage.get(pack_key(pack_id))
        for e in live:
            blob = data[e.offset : e.offset + e.length]
            # Authenticate before copying, so prune never spreads damage into new packs.
            blobs.keys.unseal(blob, e.id, expect_type=e.type, what=f"pack {pack_id.hex()}")
            writer.add(e.id, e.type, blob, e.raw_length)
        plan.delete.add(pack_id)
    return writer.finish()


def prune(blobs: BlobStore, manifests: ManifestStore) -> dict[str, Any]:
    """Delete every blob no remaining manifest reaches; rewrite mostly-dead packs.

    Order: new packs -> new index -> delete old index files -> delete packs, so a crash
    at any point leaves a readable repository (at worst with extra unreferenced data).
    """
    index, storage = blobs.index, blobs.storage
    index.refresh()
    manifests.forget_cached()
    ids = manifests.ids()
    used = _used_blobs(blobs, manifests, ids)
    stored = stored_packs(storage)
    if index.errors:
        current = index.rebuild()
    else:
        current = {p: e for p, e in index.by_pack().items() if p in stored}
    old_index_files = [b.key for b in storage.list(INDEX_PREFIX)]
    plan = _plan(current, stored, used)
    new_packs = _repack(blobs, plan)
    new_index = dict(plan.keep)
    new_index.update(new_packs)
    freed = sum(stored.get(pack_id, 0) for pack_id in plan.delete)
    freed -= sum(e.length for entries in new_packs.values() for e in entries)
    index.clear()
    new_name = index.publish(new_index) if new_index else None
    for name in old_index_files:
        if name != new_name:
            storage.delete(name)
    for pack_id in sorted(plan.delete):
        storage.delete(pack_key(pack_id))
    missing = len(used - plan.placed)
    if missing:
        log.warning("prune: %d referenced blobs are missing; run `repo check`", missing)
    return {
        "packs_deleted": len(plan.delete) - len(plan.repack),
        "packs_repacked": len(plan.repack),
        "packs_kept": len(plan.keep) + len(new_packs),
        "blobs_kept": len(plan.placed),
        "blobs_missing": missing,
        "bytes_freed": max(freed, 0),
        "index_files_deleted": len([n for n in old_index_files if n != new_name]),
        "manifests": len(ids),
    }
