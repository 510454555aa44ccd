"""The sim's volume files: the change journal every write goes through, and sparse copies.

Change journal (one per volume, ``<id>.cbt`` beside ``<id>.img``): a sequence of 24-byte
records ``magic "CBT1" | offset u64 | length u64 | crc32 u32`` (little-endian), appended
with ``O_APPEND`` and fsync'd. Invariants:

- a record MUST be durable before the bytes it describes are written, so a crash can add
  a spurious extent (harmless) but never lose one;
- writers hold a shared ``flock`` on the journal across record + data; a snapshot holds it
  exclusively while it reads the journal length and copies the data, so the position a
  snapshot records separates the writes it contains from the writes it does not;
- a torn or corrupt *last* record is the trace of a crash before its data was written and
  is dropped (and truncated away before the next append); a bad record anywhere else means
  the journal is damaged (:class:`JournalDamaged`).

This module is also what server processes (:mod:`seawall.clouds.sim.app`) write through,
so it needs nothing but the standard library and seawall's errors.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

from seawall.errors import InvalidInput, NotFound, StepTimeout

#: bytes copied or read per system call
CHUNK = 1 << 20

_RECORD = struct.Struct("<4sQQI")
_MAGIC = b"CBT1"


def journal_path_for(volume_path: str | os.PathLike[str]) -> Path:
    """The change journal that belongs to a volume file (``<id>.img`` -> ``<id>.cbt``)."""
    return Path(volume_path).with_suffix(".cbt")


def _pack_record(offset: int, length: int) -> bytes:
    head = struct.pack("<4sQQ", _MAGIC, offset, length)
    return head + struct.pack("<I", zlib.crc32(head))


def _unpack_record(raw: bytes) -> tuple[int, int] | None:
    magic, offset, length, crc = _RECORD.unpack(raw)
    if magic != _MAGIC or zlib.crc32(raw[:-4]) != crc:
        return None
    return offset, length


def repair_journal(fd: int) -> int:
    """Drop a torn or corrupt last record; return the number of records. Needs LOCK_EX."""
    size = os.fstat(fd).st_size
    count = size // _RECORD.size
    if count and _unpack_record(os.pread(fd, _RECORD.size, (count - 1) * _RECORD.size)) is None:
        count -= 1
    if count * _RECORD.size != size:
        os.ftruncate(fd, count * _RECORD.size)
        os.fsync(fd)
    return count


class JournalDamaged(Exception):
    """A record before the last one is corrupt: the journal cannot say what changed."""


def read_journal(path: Path, start: int, end: int) -> list[tuple[int, int]]:
    """Records ``[start, end)`` of a journal; a bad record before the last one is damage."""
    try:
        with open(path, "rb") as f:
            total = os.fstat(f.fileno()).st_size // _RECORD.size
            f.seek(start * _RECORD.size)
            raw = f.read((end - start) * _RECORD.size)
    except FileNotFoundError:
        raw, total = b"", 0
    if len(raw) != (end - start) * _RECORD.size:
        raise JournalDamaged(f"{path} is shorter than a snapshot recorded")
    out = []
    for i in range(end - start):
        rec = _unpack_record(raw[i * _RECORD.size : (i + 1) * _RECORD.size])
        if rec is None:
            if start + i == total - 1:
                continue  # a torn last record: its data was never written
            raise JournalDamaged(f"{path} record {start + i} is corrupt")
        out.append(rec)
    return out


@contextlib.contextmanager
def exclusive(fd: int, what: str, timeout: float) -> Iterator[None]:
    """LOCK_EX with a deadline: a frozen server must not hang a snapshot for ever."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise StepTimeout(
                    f"{what}: a writer held the volume for more than {timeout:g}s; "
                    "is its server stuck or frozen mid-write?"
                ) from None
            time.sleep(0.005)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


class VolumeWriter:
    """The one way to write a sim volume: journal the extent first, then write the bytes.

    Used by the driver's ``write_volume`` and by server processes (``sim_app``), which is
    what makes the site's changed-block tracking see every write. Safe for several
    threads and several processes at once; each ``write`` is durable when it returns.
    """

    def __init__(
        self,
        volume_path: str | os.PathLike[str],
        journal_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.volume_path = Path(volume_path)
        self.journal_path = Path(journal_path) if journal_path else journal_path_for(volume_path)
        try:
            self._volume = os.open(self.volume_path, os.O_RDWR)
        except FileNotFoundError:
            raise NotFound(f"volume file {self.volume_path} does not exist") from None
        self._journal = os.open(self.journal_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()
        self.size = os.fstat(self._volume).st_size

    def write(self, offset: int, data: bytes) -> None:
        """Write ``data`` at ``offset`` (inside the volume), journaled and fsync'd."""
        if offset < 0 or offset + len(data) > self.size:
            raise InvalidInput(
                f"write of {len(data)} bytes at {offset} is outside the volume ({self.size} bytes)",
                field="offset",
            )
        if not data:
            return
        with self._lock:
            fcntl.flock(self._journal, fcntl.LOCK_SH)
            try:
                if os.fstat(self._journal).st_size % _RECORD.size:
                    # Another writer crashed mid-record: cut its torn tail off first, or
                    # every later record would be misaligned.
                    fcntl.flock(self._journal, fcntl.LOCK_EX)
                    repair_journal(self._journal)
                    fcntl.flock(self._journal, fcntl.LOCK_SH)
                os.write(self._journal, _pack_record(offset, len(data)))
                os.fsync(self._journal)
                view = memoryview(data)
                done = 0
                while done < len(view):
                    done += os.pwrite(self._volume, view[done:], offset + done)
                os.fsync(self._volume)
            finally:
                fcntl.flock(self._journal, fcntl.LOCK_UN)

    def close(self) -> None:
        for fd in (self._volume, self._journal):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._volume = self._journal = -1

    def __enter__(self) -> VolumeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def data_regions(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """The allocated ``(offset, length)`` regions of a sparse file, via SEEK_DATA/HOLE."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                return
            if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):  # no sparse support: all data
                yield pos, size - pos
                return
            raise
        if start >= size:
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end - start
        pos = end


def sparse_copy(src: int, dst_path: Path, size: int) -> None:
    """Copy only the data regions, so a snapshot costs what the volume holds."""
    tmp = dst_path.with_suffix(".tmp")
    dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(dst, size)
        for offset, length in data_regions(src, size):
            end = offset + length
            while offset < end:
                buf = os.pread(src, min(CHUNK, end - offset), offset)
                if not buf:
                    break
                os.pwrite(dst, buf, offset)
                offset += len(buf)
        os.fsync(dst)
    finally:
        os.close(dst)
    os.replace(tmp, dst_path)
