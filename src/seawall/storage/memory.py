"""In-memory storage: the deterministic fake every test and the demo can use.

Stores are shared per URL inside one process (``memory://name``), so two repositories
opened on the same URL see the same blobs, as two processes would on real storage.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping

from seawall.errors import NotFound
from seawall.storage import BlobInfo, Data

_STORES: dict[str, dict[str, bytes]] = {}
_STORES_LOCK = threading.Lock()


class MemoryStorage:
    """A dict of key → bytes; ``put`` replaces the whole value at once, so it is atomic."""

    def __init__(self, url: str = "memory://", blobs: dict[str, bytes] | None = None) -> None:
        self.url = url
        self._blobs: dict[str, bytes] = {} if blobs is None else blobs
        self._lock = threading.Lock()

    def put(self, key: str, data: Data) -> None:
        with self._lock:
            self._blobs[key] = bytes(data)

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        with self._lock:
            try:
                data = self._blobs[key]
            except KeyError:
                raise NotFound(f"{self.url}: no blob {key!r}") from None
        end = len(data) if length is None else offset + length
        return data[offset:end]

    def stat(self, key: str) -> BlobInfo:
        with self._lock:
            try:
                return BlobInfo(key, len(self._blobs[key]))
            except KeyError:
                raise NotFound(f"{self.url}: no blob {key!r}") from None

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        with self._lock:
            items = [BlobInfo(k, len(v)) for k, v in self._blobs.items() if k.startswith(prefix)]
        return iter(sorted(items, key=lambda b: b.key))

    def delete(self, key: str) -> None:
        with self._lock:
            self._blobs.pop(key, None)


def open_memory(url: str, options: Mapping[str, str]) -> MemoryStorage:
    """``memory://NAME``: one shared store per name in this process; ``memory://`` is private."""
    name = url.split("://", 1)[1] if "://" in url else url
    if not name:
        return MemoryStorage(url)
    with _STORES_LOCK:
        blobs = _STORES.setdefault(name, {})
    return MemoryStorage(url, blobs)
