"""Manifests (format §7): sealed, labelled JSON documents at ``manifests/<id>``.

Volume images and streams are manifests of the kinds in :data:`DATA_KINDS`, written by
the repository itself; checkpoints and everything else are manifests of other kinds.
``refs`` name the manifests a manifest keeps alive; they must exist when it is written.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from seawall.errors import Conflict, CorruptObject, InvalidInput, NotFound
from seawall.repo.format import Keys, ObjectType, canonical_json
from seawall.storage import StorageBackend

log = logging.getLogger(__name__)

MANIFEST_PREFIX = "manifests/"
DATA_KINDS = frozenset({"volume", "stream"})
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
KIND_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class Manifest:
    """A sealed, labelled JSON document; ``refs`` are the manifests it keeps alive."""

    id: str
    kind: str
    labels: Mapping[str, str]
    body: Mapping[str, Any]
    refs: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True)
class VolumeImage:
    """One volume's full logical image. ``chunks`` counts non-hole chunks; ``bytes_new``
    is the sealed size of the chunks this image added to the repository."""

    id: str
    name: str
    size: int
    created_at: datetime
    bytes_read: int
    bytes_new: int
    chunks: int
    chunks_new: int
    base: str | None


def now() -> datetime:
    """The creation time written into manifests and configs (UTC)."""
    return datetime.now(UTC)


def describe(m: Manifest) -> str:
    """How error messages name a manifest: ``volume image <id> (<name>)``."""
    name = m.body.get("name") or m.labels.get("name") or ""
    return f"{'volume image' if m.kind == 'volume' else m.kind} {m.id}" + (
        f" ({name})" if name else ""
    )


def volume_image(m: Manifest) -> VolumeImage:
    """The body of a ``volume`` manifest as a :class:`VolumeImage`."""
    b = m.body
    return VolumeImage(
        id=m.id,
        name=str(b["name"]),
        size=int(b["size"]),
        created_at=m.created_at,
        bytes_read=int(b.get("bytes_read", 0)),
        bytes_new=int(b.get("bytes_new", 0)),
        chunks=int(b.get("chunks", 0)),
        chunks_new=int(b.get("chunks_new", 0)),
        base=b.get("base"),
    )


def _manifest(doc: Mapping[str, Any]) -> Manifest:
    return Manifest(
        id=str(doc["id"]),
        kind=str(doc["kind"]),
        labels=dict(doc.get("labels", {})),
        body=dict(doc.get("body", {})),
        refs=tuple(doc.get("refs", ())),
        created_at=datetime.fromisoformat(str(doc["created_at"])),
    )


class ManifestStore:
    """Reads and writes the manifests of one repository, with a cache of what it read.

    Manifests never change under an id (saving other content under an existing id is a
    :class:`Conflict`), so the cache only has to forget deleted ones; :meth:`load` with
    ``cached=False`` re-reads from storage (``check`` does, to see damage).
    """

    def __init__(self, storage: StorageBackend, keys: Keys) -> None:
        self.storage = storage
        self.keys = keys
        self._lock = threading.Lock()
        self._cache: dict[str, Manifest] = {}

    def save(
        self,
        kind: str,
        labels: Mapping[str, str],
        body: Mapping[str, Any],
        id: str | None,
        refs: Sequence[str],
    ) -> str:
        """Seal a JSON document. With an explicit ``id`` saving equal content again is a
        no-op (resumed runs call it again); different content under that id conflicts."""
        labels = {str(k): str(v) for k, v in labels.items()}
        refs = list(dict.fromkeys(str(r) for r in refs))
        content = {"kind": kind, "labels": labels, "body": dict(body), "refs": refs}
        try:
            canonical_json(content)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"manifest body is not JSON: {exc}", field="body") from None
        created = now().isoformat()
        if id is None:
            id = self.keys.chunk_id(canonical_json({**content, "created_at": created})).hex()
        elif self._same_as_saved(id, content):
            return id
        for r in refs:
            if not self.exists(r):
                raise InvalidInput(f"referenced manifest {r} does not exist", field="refs")
        doc = {"v": 1, "id": id, **content, "created_at": created}
        key = MANIFEST_PREFIX + id
        self.storage.put(key, self.keys.seal_json(ObjectType.MANIFEST, doc, key.encode()))
        # A concurrent forget may have removed a ref between the check and the write.
        gone = [r for r in refs if not self.exists(r)]
        if gone:
            self.storage.delete(key)
            raise Conflict(f"referenced manifests vanished while saving {id}: {gone}")
        m = _manifest(doc)
        with self._lock:
            self._cache[id] = m
        return id

    def _same_as_saved(self, id: str, content: Mapping[str, Any]) -> bool:
        """True if ``id`` already holds ``content``; :class:`Conflict` if it holds other."""
        if not ID_RE.match(id):
            raise InvalidInput(f"bad manifest id {id!r}", field="id")
        try:
            old = self.load(id)
        except NotFound:
            return False
        same = {
            "kind": old.kind,
            "labels": dict(old.labels),
            "body": dict(old.body),
            "refs": list(old.refs),
        }
        if canonical_json(same) == canonical_json(content):
            return True
        raise Conflict(f"manifest {id} already exists with other content")

    def exists(self, id: str) -> bool:
        try:
            self.storage.stat(MANIFEST_PREFIX + id)
        except NotFound:
            return False
        return True

    def load(self, id: str, *, cached: bool = True) -> Manifest:
        """One manifest, authenticated and bound to its name."""
        if cached:
            with self._lock:
                hit = self._cache.get(id)
            if hit is not None:
                return hit
        if not ID_RE.match(id or ""):
            raise NotFound(f"no manifest {id!r}")
        key = MANIFEST_PREFIX + id
        try:
            data = self.storage.get(key)
        except NotFound:
            raise NotFound(f"no manifest {id} in {self.storage.url}") from None
        doc = self.keys.unseal_json(
            data, key.encode(), expect_type=ObjectType.MANIFEST, what=f"manifest {id}"
        )
        if doc.get("id") != id:
            raise CorruptObject(f"manifest {id}: stored id does not match its name")
        m = _manifest(doc)
        with self._lock:
            self._cache[id] = m
        return m

    def ids(self) -> list[str]:
        """The ids of every manifest on storage."""
        return [b.key[len(MANIFEST_PREFIX) :] for b in self.storage.list(MANIFEST_PREFIX)]

    def find(
        self, kind: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[Manifest]:
        """Manifests oldest first; damaged ones are skipped with a warning (see ``check``)."""
        out = []
        for mid in self.ids():
            try:
                m = self.load(mid)
            except (CorruptObject, NotFound) as exc:
                log.warning("skipping manifest %s: %s", mid, exc)
                continue
            if kind is not None and m.kind != kind:
                continue
            if labels and any(m.labels.get(k) != v for k, v in labels.items()):
                continue
            out.append(m)
        out.sort(key=lambda m: (m.created_at, m.id))
        return out

    def delete(self, ids: Sequence[str]) -> list[str]:
        """Delete manifests and the volume images and streams only they kept alive;
        return every id deleted."""
        doomed = list(dict.fromkeys(ids))
        refs: set[str] = set()
        for mid in doomed:
            with contextlib.suppress(NotFound, CorruptObject):
                refs.update(self.load(mid).refs)
        for mid in doomed:
            self._remove(mid)
        removed = list(doomed)
        if refs:
            orphans = self._orphans(refs - set(doomed))
            for r in orphans:
                self._remove(r)
            removed.extend(orphans)
        return removed

    def _orphans(self, candidates: set[str]) -> list[str]:
        """The volume images and streams among ``candidates`` no manifest refers to."""
        still: set[str] = set()
        for m in self.find():
            still.update(m.refs)
        out = []
        for r in sorted(candidates - still):
            try:
                if self.load(r).kind in DATA_KINDS:
                    out.append(r)
            except (NotFound, CorruptObject):
                continue
        return out

    def _remove(self, id: str) -> None:
        self.storage.delete(MANIFEST_PREFIX + id)
        with self._lock:
            self._cache.pop(id, None)

    def forget_cached(self) -> None:
        """Drop every cached manifest, so the next reads come from storage (prune)."""
        with self._lock:
            self._cache.clear()
