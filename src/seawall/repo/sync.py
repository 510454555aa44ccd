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
from dataclasses import dataclass

from seawall.errors import Cancelled, CorruptObject, NotFound, RepositoryError
from seawall.repo.format import HOLE, BlobEntry, ObjectType, hash_id
from seawall.repo.keyfile import KEYS_PREFIX
from seawall.repo.manifest import DATA_KINDS, MANIFEST_PREFIX, Manifest, now
from seawall.repo.pack import INDEX_EVERY_PACKS, pack_key, read_trailer, stored_packs
from seawall.repo.repository import CONFIG_KEY, Repository
from seawall.storage import StorageBackend
from seawall.storage.wrappers import TokenBucket


@dataclass(frozen=True)
class SyncStats:
    """What one ``sync`` sent; ``skipped`` counts manifests and packs already there."""

    bytes_sent: int
    objects_sent: int
    manifests_sent: int
    skipped: int


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
    with src.locked(False), dst.locked(False):
        src.index.refresh()
        dst.index.refresh()
        order = _references_first(src, src.manifest_ids() if manifests is None else manifests)
        have = set(dst.manifest_ids())
        to_send = [m for m in order if m.id not in have]
        copy = _Copy(src, dst, bucket, cancelled)
        copy.skipped = len(order) - len(to_send)
        copy.packs(_packs_holding(src, _blobs_missing_at(src, dst, to_send)), progress)
        sent = copy.manifests(to_send)
        return SyncStats(
            bytes_sent=copy.bytes_sent,
            objects_sent=copy.objects,
            manifests_sent=sent,
            skipped=copy.skipped,
        )


def _references_first(src: Repository, ids: Iterable[str]) -> list[Manifest]:
    """``ids`` and every manifest they refer to, each after the ones it refers to, so
    the target never holds a dangling ref."""
    order: list[Manifest] = []
    seen: set[str] = set()

    def visit(mid: str) -> None:
        if mid in seen:
            return
        seen.add(mid)
        m = src.load_manifest(mid)
        for r in m.refs:
            visit(r)
        order.append(m)

    for mid in list(ids):
        visit(mid)
    return order


def _blobs_missing_at(src: Repository, dst: Repository, to_send: list[Manifest]) -> set[bytes]:
    """The chunk-list pieces and chunks of the volume images and streams in ``to_send``
    that the target's index does not have."""
    needed: set[bytes] = set()
    for m in to_send:
        if m.kind in DATA_KINDS:
            needed.update(bytes.fromhex(h) for h in m.body.get("chunk_list", []))
            needed.update(c for c in src.chunk_list(m) if c != HOLE)
    return needed - dst.index.ids()


def _packs_holding(src: Repository, blobs: set[bytes]) -> set[bytes]:
    packs: set[bytes] = set()
    for bid in blobs:
        loc = src.index.lookup(bid)
        if loc is None:
            raise CorruptObject(
                f"{src.storage.url}: blob {bid.hex()} is missing; run `repo check` there"
            )
        packs.add(loc.pack)
    return packs


class _Copy:
    """Byte copies from ``src`` to ``dst`` in the write order (packs, index, manifests)."""

    def __init__(
        self,
        src: Repository,
        dst: Repository,
        bucket: TokenBucket | None,
        cancelled: Callable[[], bool] | None,
    ) -> None:
        self.src = src
        self.dst = dst
        self.bucket = bucket
        self.cancelled = cancelled
        self.bytes_sent = self.objects = self.skipped = 0

    def _check_cancelled(self) -> None:
        if self.cancelled is not None and self.cancelled():
            raise Cancelled("sync was cancelled; run it again to resume")

    def _send(self, key: str, data: bytes) -> None:
        if self.bucket is not None:
            self.bucket.consume(len(data))
        self.dst.storage.put(key, data)
        self.bytes_sent += len(data)
        self.objects += 1

    def packs(self, packs: set[bytes], progress: Callable[[int, int], None] | None) -> None:
        """Send the packs the target lacks (verified against their names first) and index
        every pack of ``packs`` at the target, :data:`INDEX_EVERY_PACKS` at a time."""
        src, dst = self.src, self.dst
        at_dst = stored_packs(dst.storage)
        sizes = {p: src.storage.stat(pack_key(p)).size for p in packs if p not in at_dst}
        total = sum(sizes.values())
        done = 0
        src_packs = src.index.by_pack()
        batch: dict[bytes, list[BlobEntry]] = {}
        for pack_id in sorted(packs):
            try:
                self._check_cancelled()
            except Cancelled:
                if batch:
                    dst.index.publish(batch)
                raise
            if pack_id not in at_dst:
                data = src.storage.get(pack_key(pack_id))
                if hash_id(data) != pack_id:
                    raise CorruptObject(
                        f"{src.storage.url}: pack {pack_id.hex()} is damaged; not sent"
                    )
                self._send(pack_key(pack_id), data)
                done += len(data)
                if progress is not None:
                    progress(done, total)
            else:
                self.skipped += 1
            # Index the whole pack: everything in it is now at the target.
            batch[pack_id] = src_packs.get(pack_id) or read_trailer(src.storage, src.keys, pack_id)
            if len(batch) >= INDEX_EVERY_PACKS:
                dst.index.publish(batch)
                batch = {}
            src.refresh_lock()
            dst.refresh_lock()
        if batch:
            dst.index.publish(batch)

    def manifests(self, to_send: list[Manifest]) -> int:
        """Send the manifests as stored (sealed, bound to their names); return how many."""
        sent = 0
        for m in to_send:
            self._check_cancelled()
            self._send(MANIFEST_PREFIX + m.id, self.src.storage.get(MANIFEST_PREFIX + m.id))
            sent += 1
        return sent


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
    config["created_at"] = now().isoformat()
    storage.put(CONFIG_KEY, src.keys.seal_json(ObjectType.CONFIG, config, b"config"))
    return Repository(storage, src.keys, config, src.slot_id)


def open_or_init_sharing(src: Repository, storage: StorageBackend, passphrase: str) -> Repository:
    try:
        storage.stat(CONFIG_KEY)
    except NotFound:
        return init_sharing(src, storage)
    return Repository.open(storage, passphrase)
