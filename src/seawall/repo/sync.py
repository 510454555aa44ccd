"""Replication between repositories that share a master key.

``sync`` copies what the target lacks in the crash-safe order: whole packs (verified
against their names before sending), then an index naming them (published every few
packs, so a cut link loses at most a few packs of progress), then manifests, referenced
ones before those that reference them. Packs already at the target are never resent,
which makes a re-run after a cut a resume.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable

from seawall.errors import Cancelled, CorruptObject, NotFound, RepositoryError
from seawall.repo.format import HOLE, BlobEntry, ObjectType, hash_id
from seawall.repo.repository import (
    CONFIG_KEY,
    DATA_KINDS,
    DATA_PREFIX,
    INDEX_EVERY_PACKS,
    KEYS_PREFIX,
    MANIFEST_PREFIX,
    Manifest,
    Repository,
    SyncStats,
    _now,
    pack_key,
)
from seawall.storage import StorageBackend
from seawall.storage.wrappers import TokenBucket


def sync(
    src: Repository,
    dst: Repository,
    *,
    manifests: Iterable[str] | None = None,
    rate_limit: int = 0,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> SyncStats:
    """Copy the given manifests (default: all) and everything they reach to ``dst``."""
    if src.keys.fingerprint != dst.keys.fingerprint:
        raise RepositoryError(
            f"{dst.storage.url} does not share the master key of {src.storage.url}; "
            "create it with `seawall repo init --key-from SRC` (or let `repo sync` create it)"
        )
    bucket = TokenBucket(rate_limit) if rate_limit > 0 else None
    with src._locked(False), dst._locked(False):
        src._refresh_index()
        dst._refresh_index()
        order: list[Manifest] = []
        seen: set[str] = set()

        def visit(mid: str) -> None:
            if mid in seen:
                return
            seen.add(mid)
            m = src.load_manifest(mid)
            for r in m.refs:
                visit(r)
            order.append(m)  # references first: the target never holds a dangling ref

        for mid in src.manifest_ids() if manifests is None else list(manifests):
            visit(mid)
        have = set(dst.manifest_ids())
        to_send = [m for m in order if m.id not in have]
        skipped = len(order) - len(to_send)

        needed: set[bytes] = set()
        for m in to_send:
            if m.kind in DATA_KINDS:
                needed.update(bytes.fromhex(h) for h in m.body.get("chunk_list", []))
                needed.update(c for c in src.chunk_list(m) if c != HOLE)
        with dst._mutex:
            needed -= set(dst._index)
        src_packs = src.indexed_packs()
        packs: set[bytes] = set()
        for bid in needed:
            loc = src._lookup(bid)
            if loc is None:
                raise CorruptObject(
                    f"{src.storage.url}: blob {bid.hex()} is missing; run `repo check` there"
                )
            packs.add(loc.pack)
        at_dst = {
            bytes.fromhex(b.key.rsplit("/", 1)[-1]): b.size for b in dst.storage.list(DATA_PREFIX)
        }
        sizes = {p: src.storage.stat(pack_key(p)).size for p in packs if p not in at_dst}
        total = sum(sizes.values())
        done = bytes_sent = objects = 0
        batch: dict[bytes, list[BlobEntry]] = {}
        for pack_id in sorted(packs):
            if cancelled is not None and cancelled():
                if batch:
                    dst._publish_index(batch)
                raise Cancelled("sync was cancelled; run it again to resume")
            if pack_id not in at_dst:
                data = src.storage.get(pack_key(pack_id))
                if hash_id(data) != pack_id:
                    raise CorruptObject(
                        f"{src.storage.url}: pack {pack_id.hex()} is damaged; not sent"
                    )
                if bucket is not None:
                    bucket.consume(len(data))
                dst.storage.put(pack_key(pack_id), data)
                bytes_sent += len(data)
                objects += 1
                done += len(data)
                if progress is not None:
                    progress(done, total)
            else:
                skipped += 1
            # Index the whole pack: everything in it is now at the target.
            batch[pack_id] = src_packs.get(pack_id) or src.read_pack_trailer(pack_id)
            if len(batch) >= INDEX_EVERY_PACKS:
                dst._publish_index(batch)
                batch = {}
            src._refresh_lock()
            dst._refresh_lock()
        if batch:
            dst._publish_index(batch)
        sent = 0
        for m in to_send:
            if cancelled is not None and cancelled():
                raise Cancelled("sync was cancelled; run it again to resume")
            raw = src.storage.get(MANIFEST_PREFIX + m.id)
            if bucket is not None:
                bucket.consume(len(raw))
            dst.storage.put(MANIFEST_PREFIX + m.id, raw)
            bytes_sent += len(raw)
            objects += 1
            sent += 1
        return SyncStats(
            bytes_sent=bytes_sent, objects_sent=objects, manifests_sent=sent, skipped=skipped
        )


def init_sharing(src: Repository, storage: StorageBackend) -> Repository:
    """An empty repository on ``storage`` with ``src``'s master key *and key slots*, so
    the same passphrases open it (used by ``export`` and by ``sync`` to a new target)."""
    try:
        storage.stat(CONFIG_KEY)
    except NotFound:
        pass
    else:
        raise RepositoryError(f"{storage.url}: a repository already exists here")
    for b in src.storage.list(KEYS_PREFIX):
        storage.put(b.key, src.storage.get(b.key))
    config = dict(src.config)
    config["id"] = secrets.token_hex(16)
    config["created_at"] = _now().isoformat()
    storage.put(CONFIG_KEY, src.keys.seal_json(ObjectType.CONFIG, config, b"config"))
    return Repository(storage, src.keys, config, src.slot_id)


def open_or_init_sharing(src: Repository, storage: StorageBackend, passphrase: str) -> Repository:
    try:
        storage.stat(CONFIG_KEY)
    except NotFound:
        return init_sharing(src, storage)
    return Repository.open(storage, passphrase)
