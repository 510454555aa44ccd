"""Storage backends: dumb blob stores that know nothing but keys and bytes.

The contract is :class:`StorageBackend`; implementations register in the
``seawall.storage`` entry-point group under their URL scheme, and wrappers (retry, rate
limit, read-only, fault injection) implement the same contract around another backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlencode

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


#: Option names that are credentials (S3's, with their aliases). They are given as
#: options, never in a URL: a URL is printed, logged and stored in the state database.
CREDENTIAL_OPTIONS = frozenset(
    {"access_key_id", "secret_access_key", "session_token", "token", "access_key", "secret_key"}
)


def split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without its :data:`CREDENTIAL_OPTIONS` query parameters, and those
    parameters: how a repository URL written the old way gives its credentials up."""
    base, sep, query = url.partition("?")
    if not sep:
        return url, {}
    pairs = parse_qsl(query, keep_blank_values=True)
    secret = {k: v for k, v in pairs if k.lower() in CREDENTIAL_OPTIONS}
    kept = [(k, v) for k, v in pairs if k.lower() not in CREDENTIAL_OPTIONS]
    return (f"{base}?{urlencode(kept, safe=':/')}" if kept else base), secret


def mask_url(url: str) -> str:
    """``url`` as it may be shown: every credential in its query string is ``***``."""
    base, sep, query = url.partition("?")
    if not sep or not split_credentials(url)[1]:
        return url
    pairs = [
        (k, "***" if k.lower() in CREDENTIAL_OPTIONS else v)
        for k, v in parse_qsl(query, keep_blank_values=True)
    ]
    return f"{base}?{urlencode(pairs, safe='*:/')}"


def open_storage(url: str, options: Mapping[str, str] | None = None) -> StorageBackend:
    """Open the backend for ``url``: a plain path or ``file://``, ``s3://``, ``memory://``."""
    from seawall.plugins import registry

    scheme = url.split("://", 1)[0] if "://" in url else "file"
    factory: StorageFactory = registry().load("storage", scheme)
    return factory(url, options or {})
