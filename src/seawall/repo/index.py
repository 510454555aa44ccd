"""The index: which pack holds each blob (format §5.3).

An :class:`Index` is the in-memory union of the index files on storage: blob id ->
:class:`~seawall.repo.pack.Located`. Writers add index files (:meth:`Index.publish`,
called by a pack writer only after every pack it names is durable); only prune replaces
them. A damaged index file is recorded in :attr:`Index.errors` and the blobs it listed
are recovered from the trailers of packs no readable index names, because packs
describe themselves.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping

from seawall.errors import CorruptObject, NotFound
from seawall.repo.format import BlobEntry, Keys, ObjectType, decode_index, encode_index, hash_id
from seawall.repo.pack import DATA_PREFIX, Located, pack_id_of, read_trailer
from seawall.storage import StorageBackend

log = logging.getLogger(__name__)

INDEX_PREFIX = "index/"


class Index:
    """Blob locations loaded from the index files of one repository. Thread-safe.

    Lookups (:meth:`get`, ``in``) read the loaded state only; :meth:`lookup` looks at
    storage again when an id is unknown, because another process may have published it.
    """

    def __init__(self, storage: StorageBackend, keys: Keys) -> None:
        self.storage = storage
        self.keys = keys
        #: Index files that could not be read: name -> why. Prune rebuilds from packs.
        self.errors: dict[str, str] = {}
        self._lock = threading.Lock()
        self._where: dict[bytes, Located] = {}
        self._files: set[str] = set()

    # -- reading -----------------------------------------------------------------------
    def load_file(self, name: str) -> dict[bytes, list[BlobEntry]]:
        """One index file, checked against its name and authenticated (not merged)."""
        data = self.storage.get(name)
        if hash_id(data).hex() != name.rsplit("/", 1)[-1]:
            raise CorruptObject(f"{name}: content does not match its name (damaged)")
        raw = self.keys.unseal(data, b"index", expect_type=ObjectType.INDEX, what=name)
        return decode_index(raw, name)

    def refresh(self) -> None:
        """Load index files written since the last look (by this or another process)."""
        names = [b.key for b in self.storage.list(INDEX_PREFIX)]
        damaged = False
        for name in names:
            if name in self._files or name in self.errors:
                continue
            try:
                packs = self.load_file(name)
            except NotFound:
                continue
            except CorruptObject as exc:
                log.warning("%s", exc)
                self.errors[name] = str(exc)
                damaged = True
                continue
            with self._lock:
                self._merge(packs)
                self._files.add(name)
        if damaged:
            self._recover_from_trailers()

    def _recover_from_trailers(self) -> None:
        """Recover what damaged index files listed from the trailers of packs no readable
        index names (prune rewrites the index)."""
        with self._lock:
            covered = {loc.pack for loc in self._where.values()}
        for b in self.storage.list(DATA_PREFIX):
            pack_id = pack_id_of(b.key)
            if pack_id in covered:
                continue
            try:
                entries = read_trailer(self.storage, self.keys, pack_id, b.size)
            except (CorruptObject, NotFound) as exc:
                log.warning("%s", exc)
                continue
            with self._lock:
                self._merge({pack_id: entries})

    def _merge(self, packs: Mapping[bytes, Iterable[BlobEntry]]) -> None:
        for pack_id, entries in packs.items():
            for e in entries:
                self._where.setdefault(e.id, Located(pack_id, e))

    # -- writing -----------------------------------------------------------------------
    def publish(self, packs: Mapping[bytes, list[BlobEntry]]) -> str:
        """Write an index file naming ``packs`` (all durable already) and load it."""
        data = self.keys.seal(ObjectType.INDEX, encode_index(packs), b"index")
        name = INDEX_PREFIX + hash_id(data).hex()
        self.storage.put(name, data)
        with self._lock:
            self._merge(packs)
            self._files.add(name)
        return name

    def clear(self) -> None:
        """Forget everything loaded (prune, before it publishes the replacement index)."""
        with self._lock:
            self._where.clear()
            self._files.clear()
            self.errors.clear()

    # -- lookups -----------------------------------------------------------------------
    def __contains__(self, blob_id: object) -> bool:
        return blob_id in self._where

    def __getitem__(self, blob_id: bytes) -> Located:
        return self._where[blob_id]

    def __len__(self) -> int:
        return len(self._where)

    def get(self, blob_id: bytes) -> Located | None:
        """Where a blob is, by the index files loaded so far."""
        return self._where.get(blob_id)

    def lookup(self, blob_id: bytes) -> Located | None:
        """Where a blob is, looking at storage again if it is not known yet."""
        loc = self._where.get(blob_id)
        if loc is None:
            self.refresh()
            loc = self._where.get(blob_id)
        return loc

    def ids(self) -> set[bytes]:
        """Every indexed blob id."""
        with self._lock:
            return set(self._where)

    def locations(self) -> list[Located]:
        """Every indexed blob with its location (a snapshot)."""
        with self._lock:
            return list(self._where.values())

    def by_pack(self) -> dict[bytes, list[BlobEntry]]:
        """The loaded index grouped by pack (each blob once, at its indexed location)."""
        out: dict[bytes, list[BlobEntry]] = {}
        with self._lock:
            for loc in self._where.values():
                out.setdefault(loc.pack, []).append(loc.entry)
        for entries in out.values():
            entries.sort(key=lambda e: e.offset)
        return out

    def rebuild(self) -> dict[bytes, list[BlobEntry]]:
        """The index recomputed from every pack trailer (what ``prune`` relies on when an
        index file is damaged). Does not change what is loaded."""
        out: dict[bytes, list[BlobEntry]] = {}
        for b in self.storage.list(DATA_PREFIX):
            pack_id = pack_id_of(b.key)
            out[pack_id] = read_trailer(self.storage, self.keys, pack_id, b.size)
        return out
