"""Local filesystem (and NFS) storage.

Atomicity comes from the one primitive POSIX and NFS both honour: write a temporary file
in the destination directory, ``fsync`` it, ``rename`` it over the final name, then
``fsync`` the directory. Readers therefore see a whole blob or none, and a crash leaves at
worst a ``.tmp-*`` file that :meth:`LocalStorage.list` ignores.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import unquote, urlparse

from seawall.errors import InvalidInput, NotFound
from seawall.storage import BlobInfo, Data

_TMP = ".tmp-"


class LocalStorage:
    """Blobs as files under ``root``; ``/`` in a key is a directory separator."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root).absolute()
        self.url = f"file://{self.root}"
        self.fsync = fsync

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") or p.startswith(_TMP) for p in parts):
            raise InvalidInput(f"invalid storage key {key!r}", field="key")
        return self.root.joinpath(*parts)

    def put(self, key: str, data: Data) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f"{_TMP}{secrets.token_hex(8)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self.fsync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(fd)
        os.replace(tmp, path)
        if self.fsync:
            self._fsync_dir(path.parent)

    @staticmethod
    def _fsync_dir(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                if offset:
                    f.seek(offset)
                return f.read() if length is None else f.read(length)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"{self.url}: no blob {key!r}") from None

    def stat(self, key: str) -> BlobInfo:
        try:
            st = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"{self.url}: no blob {key!r}") from None
        return BlobInfo(key, st.st_size)

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        # Walk only the directory the prefix points into; keys come back sorted.
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root.joinpath(*base.split("/")) if base else self.root
        out: list[BlobInfo] = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames.sort()
            rel = os.path.relpath(dirpath, self.root)
            rel = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            for name in filenames:
                if name.startswith(_TMP):
                    continue
                key = rel + name
                if key.startswith(prefix):
                    try:
                        size = os.stat(os.path.join(dirpath, name)).st_size
                    except FileNotFoundError:
                        continue
                    out.append(BlobInfo(key, size))
        out.sort(key=lambda b: b.key)
        return iter(out)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            self._path(key).unlink()


def open_local(url: str, options: Mapping[str, str]) -> LocalStorage:
    """A plain path or ``file:///abs/path``; option ``fsync=false`` is for throwaway tests."""
    path = unquote(urlparse(url).path) if url.startswith("file://") else url
    fsync = options.get("fsync", "true").lower() not in ("0", "false", "no")
    return LocalStorage(path, fsync=fsync)
