"""Storage backends: dumb blob stores that know nothing but keys and bytes.

The contract is :class:`StorageBackend`; implementations register in the
``seawall.storage`` entry-point group under their URL scheme, and wrappers (retry, rate
limit, read-only, fault injection) implement the same contract around another backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

# --------------------------------------------------------------------------------------
# Storage backends: dumb blob stores (put/get/stat/list/delete on opaque keys).
# --------------------------------------------------------------------------------------


#: What ``put`` accepts: any contiguous bytes-like object. The repository hands over
#: buffers it reuses after ``put`` returns, so a backend that keeps the data (memory)
#: MUST copy it.
Data = bytes | bytearray | memoryview


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int


@runtime_checkable
class StorageBackend(Protocol):
    """A flat key → bytes store. ``put`` is atomic: readers see all of a blob or none.

    ``get`` of a missing key raises :class:`~seawall.errors.NotFound`; ``delete`` of a
    missing key is not an error (deletes tolerate "already gone").
    """

    url: str

    def put(self, key: str, data: Data) -> None: ...

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes: ...

    def stat(self, key: str) -> BlobInfo: ...

    def list(self, prefix: str = "") -> Iterator[BlobInfo]: ...

    def delete(self, key: str) -> None: ...


#: ``factory(url, options) -> StorageBackend``; registered per URL scheme.
StorageFactory = Callable[[str, Mapping[str, str]], StorageBackend]


def open_storage(url: str, options: Mapping[str, str] | None = None) -> StorageBackend:
    """Open the backend for ``url``: a plain path or ``file://``, ``s3://``, ``memory://``."""
    from seawall.plugins import registry

    scheme = url.split("://", 1)[0] if "://" in url else "file"
    factory: StorageFactory = registry().load("storage", scheme)
    return factory(url, options or {})
