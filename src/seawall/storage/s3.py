"""S3-compatible storage (AWS, Ceph RGW, Swift's S3 API, moto) through obstore.

obstore wraps the Rust ``object_store`` crate (the one Apache Arrow and DataFusion use):
one maintained client for S3, GCS, Azure and local disk, with its own retry logic and
connection pooling, and it releases the GIL during I/O. A single PUT is atomic on S3, so
``put`` needs no temporary name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlparse

import obstore
from obstore.exceptions import NotFoundError
from obstore.store import S3Store

from seawall.errors import InvalidInput, NotFound, PermanentError, TransientError
from seawall.storage import BlobInfo, Data

#: URL query / option names accepted besides obstore's own S3 config keys.
_ALIASES = {
    "endpoint_url": "endpoint",
    "access_key": "access_key_id",
    "secret_key": "secret_access_key",
}


class S3Storage:
    """Blobs as objects under ``s3://bucket/prefix``."""

    def __init__(self, url: str, bucket: str, prefix: str, config: Mapping[str, str]) -> None:
        self.url = url
        self.prefix = prefix.strip("/")
        cfg: dict[str, Any] = {}
        client: dict[str, Any] = {}
        for k, v in config.items():
            k = _ALIASES.get(k, k)
            if k == "allow_http":
                client["allow_http"] = v.lower() in ("1", "true", "yes")
            else:
                cfg[k] = v
        endpoint = str(cfg.get("endpoint", ""))
        if endpoint.startswith("http://"):
            client.setdefault("allow_http", True)
        cfg.setdefault("region", "us-east-1")
        try:
            self._store = S3Store(
                bucket,
                prefix=self.prefix or None,
                config=cfg,  # type: ignore[arg-type]
                client_options=client,  # type: ignore[arg-type]
            )
        except Exception as exc:
            raise InvalidInput(f"{url}: bad S3 options: {exc}") from None

    def _wrap(self, exc: Exception, key: str) -> Exception:
        if isinstance(exc, (NotFoundError, FileNotFoundError)):
            return NotFound(f"{self.url}: no blob {key!r}")
        name = type(exc).__name__
        if name in ("PermissionDeniedError", "UnauthenticatedError", "InvalidPathError"):
            return PermanentError(f"{self.url}: {name}: {exc}")
        return TransientError(f"{self.url}: {name}: {exc}")

    def put(self, key: str, data: Data) -> None:
        try:
            obstore.put(self._store, key, data)
        except Exception as exc:
            raise self._wrap(exc, key) from None

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        try:
            if offset == 0 and length is None:
                return bytes(obstore.get(self._store, key).bytes())
            if length == 0:
                self.stat(key)
                return b""
            if length is None:
                size = self.stat(key).size
                if offset >= size:
                    return b""
                length = size - offset
            return bytes(obstore.get_range(self._store, key, start=offset, length=length))
        except (NotFound, PermanentError, TransientError):
            raise
        except Exception as exc:
            raise self._wrap(exc, key) from None

    def stat(self, key: str) -> BlobInfo:
        try:
            meta = obstore.head(self._store, key)
        except Exception as exc:
            raise self._wrap(exc, key) from None
        return BlobInfo(key, int(meta["size"]))

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        # obstore lists by path segment; list the directory part and filter the rest.
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else None
        out: list[BlobInfo] = []
        try:
            for batch in obstore.list(self._store, base, chunk_size=1000):
                for meta in batch:
                    key = str(meta["path"])
                    if key.startswith(prefix):
                        out.append(BlobInfo(key, int(meta["size"])))
        except Exception as exc:
            raise self._wrap(exc, prefix) from None
        out.sort(key=lambda b: b.key)
        return iter(out)

    def delete(self, key: str) -> None:
        try:
            obstore.delete(self._store, key)
        except Exception as exc:
            err = self._wrap(exc, key)
            if not isinstance(err, NotFound):
                raise err from None


def open_s3(url: str, options: Mapping[str, str]) -> S3Storage:
    """``s3://bucket/prefix?endpoint=http://127.0.0.1:9000``; options and query both work
    (``endpoint``, ``region``, ``access_key_id``, ``secret_access_key``, ``allow_http`` ...);
    credentials otherwise come from the usual ``AWS_*`` environment variables."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise InvalidInput(f"not an s3:// URL: {url!r}", field="url")
    config = dict(parse_qsl(parsed.query))
    config.update(options)
    clean = f"s3://{parsed.netloc}{parsed.path}"
    return S3Storage(clean, parsed.netloc, parsed.path, config)
