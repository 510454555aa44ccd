"""The embedded simulated site (``sim``): a whole cloud kept in one directory.

It is clearly a simulator, but its moving parts are real, so that what seawall proves on
it (byte-exact volumes, incremental reads, boot order, health checks, isolation of a
drill's networks) is proven for real rather than asserted by a mock:

- resources live in a small SQLite database, one transaction per call, so several
  processes (the service, a worker, a test) can share a site;
- volumes are sparse files; every write goes through :class:`VolumeWriter`, which records
  the written extent in the volume's change journal *before* it writes the data, so
  changed-block tracking can never miss a write, even across a crash;
- snapshots are sparse copies that remember the journal position they were taken at;
- servers with a ``command`` are real, detached processes bound to a loopback address of
  their own, with their volumes' paths and their network peers in their environment.

Site layout (format 1)::

    <site>/site.db                 resources, snapshots, server processes (SQLite, WAL)
    <site>/volumes/<id>.img        volume bytes (sparse; size = attrs["size"])
    <site>/volumes/<id>.cbt        the volume's change journal (see below)
    <site>/snapshots/<id>.img      snapshot bytes (a sparse copy of the data regions)
    <site>/images/<id>.img         image bytes
    <site>/logs/<name>-<id8>.log   a server process's stdout and stderr
    <site>/quotas.json             optional limits, e.g. {"servers": 4, "volume_bytes": 1e9}
    <site>/DOWN                    optional marker: every call raises SiteUnavailable

Change journal: a sequence of 24-byte records ``magic "CBT1" | offset u64 | length u64 |
crc32 u32`` (little-endian), appended with ``O_APPEND`` and fsync'd. Invariants:

- a record MUST be durable before the bytes it describes are written, so a crash can add
  a spurious extent (harmless) but never lose one;
- writers hold a shared ``flock`` on the journal across record + data; a snapshot holds it
  exclusively while it reads the journal length and copies the data, so the position a
  snapshot records separates the writes it contains from the writes it does not;
- a torn or corrupt *last* record is the trace of a crash before its data was written and
  is dropped (and truncated away before the next append); a bad record anywhere else means
  the journal is damaged, and ``changed_extents`` raises NotFound so the caller reads in full.

Where the sim is stricter than OpenStack, it says so: a resource that another resource
still references cannot be deleted (Conflict names the referrer), except a port with a
floating IP, which is disassociated as Neutron does.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import ipaddress
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seawall.clouds import DriverCapabilities, Extent, ResourceSpec, SnapshotInfo
from seawall.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PermanentError,
    SiteUnavailable,
    StepTimeout,
    TransientError,
    VerificationFailed,
)
from seawall.model import Resource, ResourceGraph, ResourceKind, ResourceRef, Selector, Site

K = ResourceKind

#: version of the site directory layout and database schema above
FORMAT_VERSION = 1

#: the tag that carries a created resource's ``spec.key`` (find-or-create looks it up)
KEY_TAG = "seawall:key"

# Server statuses, as Nova names them.
BUILD = "BUILD"  #: recorded, process not started yet
ACTIVE = "ACTIVE"  #: powered on and (if it has a command) its process is alive
SHUTOFF = "SHUTOFF"  #: powered off on purpose
ERROR = "ERROR"  #: powered on but its process is gone (crashed, killed, never started)

_CHUNK = 1 << 20

# --------------------------------------------------------------------------------------
# Resource schema: which refs each kind may carry, defaults, and runtime-only attrs.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Role:
    kind: ResourceKind
    required: bool = False
    many: bool = False


#: role -> what it points to, per kind. A role not listed here is an input error, so a
#: typo in captured metadata fails at create time instead of producing a broken graph.
_ROLES: dict[ResourceKind, dict[str, _Role]] = {
    K.SUBNET: {"network": _Role(K.NETWORK, required=True)},
    K.ROUTER: {"subnets": _Role(K.SUBNET, many=True)},
    K.PORT: {
        "network": _Role(K.NETWORK, required=True),
        "subnet": _Role(K.SUBNET),
        "security_groups": _Role(K.SECURITY_GROUP, many=True),
    },
    K.VOLUME: {"volume_type": _Role(K.VOLUME_TYPE), "image": _Role(K.IMAGE)},
    K.SERVER: {
        "flavor": _Role(K.FLAVOR, required=True),
        "image": _Role(K.IMAGE),
        "keypair": _Role(K.KEYPAIR),
        "ports": _Role(K.PORT, many=True),
        "volumes": _Role(K.VOLUME, many=True),
        "server_group": _Role(K.SERVER_GROUP),
    },
    K.FLOATING_IP: {"port": _Role(K.PORT)},
}

#: attrs filled in when a spec leaves them out (the driver-neutral schema, DESIGN.md §4)
_DEFAULTS: dict[ResourceKind, dict[str, Any]] = {
    K.NETWORK: {"external": False, "isolated": False, "mtu": 1500},
    K.SUBNET: {
        "enable_dhcp": True,
        "dns_nameservers": [],
        "allocation_pools": [],
        "host_routes": [],
    },
    K.ROUTER: {"external_gateway": False},
    K.SECURITY_GROUP: {"rules": []},
    K.PORT: {"fixed_ips": [], "mac_address": "", "allowed_address_pairs": []},
    K.KEYPAIR: {"public_key": ""},
    K.FLAVOR: {"vcpus": 1, "ram_mb": 512, "disk_gb": 1, "extra_specs": {}},
    K.IMAGE: {"size": 0, "disk_format": "raw", "checksum": ""},
    K.VOLUME_TYPE: {"extra_specs": {}},
    K.SERVER_GROUP: {"policies": []},
    K.VOLUME: {"bootable": False, "availability_zone": "nova"},
    K.SERVER: {"availability_zone": "nova", "metadata": {}, "guest_agent": False},
    K.FLOATING_IP: {"floating_network": "public"},
    K.PROJECT: {},
}

#: attrs the site computes; a spec's values for them (copied from a source) are ignored
RUNTIME_ATTRS = frozenset({"status", "access_address"})

#: referrer kind -> referenced kind pairs that do NOT block a delete (handled instead)
_NON_BLOCKING = frozenset({(K.FLOATING_IP, K.PORT)})

#: quota name -> the kind it counts
_QUOTA_KINDS: dict[str, ResourceKind] = {
    "servers": K.SERVER,
    "volumes": K.VOLUME,
    "networks": K.NETWORK,
    "ports": K.PORT,
    "floating_ips": K.FLOATING_IP,
}

_KIND_ORDER = {k: i for i, k in enumerate(ResourceKind)}

# --------------------------------------------------------------------------------------
# Extents and the change journal
# --------------------------------------------------------------------------------------

_RECORD = struct.Struct("<4sQQI")
_MAGIC = b"CBT1"


def merge_extents(extents: Iterable[tuple[int, int]]) -> list[Extent]:
    """Sorted, non-overlapping extents covering exactly the union of ``(offset, length)``.

    Touching extents are merged too: the caller reads them in one go either way.
    """
    merged: list[list[int]] = []
    for offset, length in sorted(e for e in extents if e[1] > 0):
        if merged and offset <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], offset + length)
        else:
            merged.append([offset, offset + length])
    return [Extent(start, end - start) for start, end in merged]


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


def _repair_journal(fd: int) -> int:
    """Drop a torn or corrupt last record; return the number of records. Needs LOCK_EX."""
    size = os.fstat(fd).st_size
    count = size // _RECORD.size
    if count and _unpack_record(os.pread(fd, _RECORD.size, (count - 1) * _RECORD.size)) is None:
        count -= 1
    if count * _RECORD.size != size:
        os.ftruncate(fd, count * _RECORD.size)
        os.fsync(fd)
    return count


class _JournalDamaged(Exception):
    pass


def _read_journal(path: Path, start: int, end: int) -> list[tuple[int, int]]:
    """Records ``[start, end)`` of a journal; a bad record before the last one is damage."""
    try:
        with open(path, "rb") as f:
            total = os.fstat(f.fileno()).st_size // _RECORD.size
            f.seek(start * _RECORD.size)
            raw = f.read((end - start) * _RECORD.size)
    except FileNotFoundError:
        raw, total = b"", 0
    if len(raw) != (end - start) * _RECORD.size:
        raise _JournalDamaged(f"{path} is shorter than a snapshot recorded")
    out = []
    for i in range(end - start):
        rec = _unpack_record(raw[i * _RECORD.size : (i + 1) * _RECORD.size])
        if rec is None:
            if start + i == total - 1:
                continue  # a torn last record: its data was never written
            raise _JournalDamaged(f"{path} record {start + i} is corrupt")
        out.append(rec)
    return out


@contextlib.contextmanager
def _exclusive(fd: int, what: str, timeout: float) -> Iterator[None]:
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
                    _repair_journal(self._journal)
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


def _data_regions(fd: int, size: int) -> Iterator[tuple[int, int]]:
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


def _sparse_copy(src: int, dst_path: Path, size: int) -> None:
    """Copy only the data regions, so a snapshot costs what the volume holds."""
    tmp = dst_path.with_suffix(".tmp")
    dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(dst, size)
        for offset, length in _data_regions(src, size):
            end = offset + length
            while offset < end:
                buf = os.pread(src, min(_CHUNK, end - offset), offset)
                if not buf:
                    break
                os.pwrite(dst, buf, offset)
                offset += len(buf)
        os.fsync(dst)
    finally:
        os.close(dst)
    os.replace(tmp, dst_path)


# --------------------------------------------------------------------------------------
# Server processes
# --------------------------------------------------------------------------------------

#: processes this Python process started, so they can be reaped (never killed on drop)
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _proc_start_time(pid: int) -> int | None:
    """Kernel start time of ``pid`` (guards against PID reuse); None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        return 0 if _pid_exists(pid) else None
    fields = stat[stat.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _alive(pid: int, start_time: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)
        return False
    if not os.path.isdir("/proc"):
        return _pid_exists(pid)
    return _proc_start_time(pid) == start_time


def _signal_group(pid: int, sig: int) -> None:
    """Signal the process group a server leads (its children too), and the pid itself in
    case it is not a group leader (found by the SEAWALL_SITE scan)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _wait_for_stopped(pid: int, timeout: float) -> None:
    """SIGSTOP is asynchronous; a freeze is only done once the kernel says "stopped"."""
    deadline = time.monotonic() + timeout
    path = f"/proc/{pid}/stat"
    while os.path.exists(path):
        with contextlib.suppress(OSError):
            with open(path, "rb") as f:
                stat = f.read()
            if stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] in (b"T", b"t", b"Z"):
                return
        if time.monotonic() > deadline:
            raise StepTimeout(f"process {pid} did not stop within {timeout:g}s")
        time.sleep(0.002)


def _terminate(procs: Iterable[tuple[int, int]], grace: float) -> None:
    """SIGTERM every process group, SIGKILL what is left after ``grace`` seconds."""
    live = [(p, t) for p, t in procs if _alive(p, t)]
    for pid, _ in live:
        _signal_group(pid, signal.SIGTERM)
        _signal_group(pid, signal.SIGCONT)  # a frozen process cannot act on SIGTERM
    deadline = time.monotonic() + grace
    while live and time.monotonic() < deadline:
        time.sleep(0.02)
        live = [(p, t) for p, t in live if _alive(p, t)]
    for pid, _ in live:
        _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while live and time.monotonic() < deadline:
        time.sleep(0.01)
        live = [(p, t) for p, t in live if _alive(p, t)]


def _site_processes(path: Path) -> list[int]:
    """Pids whose environment names this site: the safety net when site.db is unreadable."""
    found = []
    target = f"SEAWALL_SITE={path}".encode()
    for entry in Path("/proc").glob("[0-9]*") if os.path.isdir("/proc") else []:
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if target in env.split(b"\0"):
            found.append(int(entry.name))
    return found


def _address_free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def _loopback_candidates(site: Path, server_id: str) -> Iterator[str]:
    """127.x.y.z addresses derived from site and server, so two sites rarely even try
    the same one; 127.0.0.0/24 (127.0.0.1, the host's own services) is never used."""
    for attempt in range(10_000):
        h = hashlib.sha256(f"{site}\0{server_id}\0{attempt}".encode()).digest()
        yield f"127.{1 + h[0] % 254}.{h[1]}.{1 + h[2] % 254}"


# --------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS resources (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    key TEXT,
    attrs TEXT NOT NULL,
    refs TEXT NOT NULL,
    tags TEXT NOT NULL,
    runtime TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS resources_by_key ON resources (kind, key);
CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY,
    volume_id TEXT NOT NULL,
    key TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at REAL NOT NULL,
    journal_pos INTEGER NOT NULL,
    UNIQUE (volume_id, key)
);
CREATE TABLE IF NOT EXISTS processes (
    server_id TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    start_time INTEGER NOT NULL,
    log TEXT NOT NULL
);
"""


@dataclass
class _Stored:
    """A resources row, decoded."""

    id: str
    kind: ResourceKind
    name: str
    key: str | None
    attrs: dict[str, Any]
    refs: dict[str, list[str]]
    tags: dict[str, str]
    runtime: dict[str, Any]

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> _Stored:
        return cls(
            id=row["id"],
            kind=ResourceKind(row["kind"]),
            name=row["name"],
            key=row["key"],
            attrs=json.loads(row["attrs"]),
            refs=json.loads(row["refs"]),
            tags=json.loads(row["tags"]),
            runtime=json.loads(row["runtime"]),
        )


@dataclass(frozen=True)
class _Proc:
    pid: int
    start_time: int
    log: str


class SimDriver:
    """CloudDriver V1 over a site directory (see the module docstring for the layout).

    ``clock`` and ``new_id`` are injectable so tests can be reproducible; ``stop_grace``
    is how long ``power_off`` waits after SIGTERM before SIGKILL; ``lock_timeout`` bounds
    how long a snapshot or freeze waits for in-flight writes.
    """

    site: Site

    def __init__(
        self,
        site: Site,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        stop_grace: float = 5.0,
        lock_timeout: float = 30.0,
    ) -> None:
        self.site = site
        self.path = Path(path).resolve()
        self.clock = clock
        self.new_id = new_id
        self.stop_grace = stop_grace
        self.lock_timeout = lock_timeout
        self._db = self.path / "site.db"
        self._deferred_init = (self.path / "DOWN").exists()
        if not self._deferred_init:
            self._initialise()

    # -- site ---------------------------------------------------------------------------

    def _initialise(self) -> None:
        """Create the layout if missing and check the format; idempotent."""
        for sub in ("volumes", "snapshots", "images", "logs"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self._db, timeout=30, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)  # CREATE ... IF NOT EXISTS: safe to repeat
            con.execute("BEGIN IMMEDIATE")
            row = con.execute("SELECT value FROM meta WHERE name = 'format'").fetchone()
            if row is None:
                con.execute("INSERT INTO meta VALUES ('format', ?)", (str(FORMAT_VERSION),))
            elif int(row[0]) != FORMAT_VERSION:
                con.execute("ROLLBACK")
                raise PermanentError(
                    f"sim site {self.path} has format {row[0]}; this seawall reads format "
                    f"{FORMAT_VERSION}. Use a matching seawall or a new site directory."
                )
            con.execute("COMMIT")
        finally:
            con.close()

    def ping(self) -> None:
        """Raise SiteUnavailable if the directory is gone (destroyed) or marked DOWN."""
        if (self.path / "DOWN").exists():
            raise SiteUnavailable(
                f"sim site {self.site.name!r} is down: remove {self.path / 'DOWN'} to bring it back"
            )
        if not self._db.is_file():
            if self._deferred_init and self.path.is_dir():
                self._initialise()  # opened while DOWN, never initialised: do it now
                self._deferred_init = False
                return
            raise SiteUnavailable(
                f"sim site {self.site.name!r} at {self.path} is gone (destroyed?); "
                "recreate it or fail over to another site"
            )

    @contextlib.contextmanager
    def _tx(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction per call; writers take the lock up front (BEGIN IMMEDIATE) so
        find-or-create, IP allocation and quota checks are atomic across processes."""
        self.ping()
        try:
            con = sqlite3.connect(
                self._db.as_uri() + "?mode=rw", uri=True, timeout=30, isolation_level=None
            )
        except sqlite3.OperationalError as exc:
            raise SiteUnavailable(f"sim site {self.path}: {exc}") from None
        con.row_factory = sqlite3.Row
        try:
            con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield con
            con.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if con.in_transaction:
                con.execute("ROLLBACK")
            self.ping()
            raise TransientError(f"sim site {self.path}: {exc}") from None
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    def capabilities(self) -> DriverCapabilities:
        return DriverCapabilities(
            data_paths=("cbt", "full"),
            group_snapshots=False,
            isolated_networks=True,
            live_servers=True,
            guest_agent=True,
        )

    # -- reading ------------------------------------------------------------------------

    def _rows(self, con: sqlite3.Connection, where: str = "", *args: Any) -> list[_Stored]:
        sql = "SELECT * FROM resources" + (f" WHERE {where}" if where else "")
        return [_Stored.from_row(r) for r in con.execute(sql, args)]

    def _row(self, con: sqlite3.Connection, kind: ResourceKind, id_: str) -> _Stored | None:
        rows = self._rows(con, "id = ? AND kind = ?", id_, kind.value)
        return rows[0] if rows else None

    def _need(self, con: sqlite3.Connection, kind: ResourceKind, id_: str) -> _Stored:
        row = self._row(con, kind, id_)
        if row is None:
            raise NotFound(f"{kind.value} {id_!r} does not exist on site {self.site.name!r}")
        return row

    def _procs(self, con: sqlite3.Connection) -> dict[str, _Proc]:
        return {
            r["server_id"]: _Proc(r["pid"], r["start_time"], r["log"])
            for r in con.execute("SELECT * FROM processes")
        }

    def _materialize(self, con: sqlite3.Connection, rows: list[_Stored]) -> list[Resource]:
        """Rows -> Resources, with the runtime attrs (status, access_address) filled in."""
        procs = self._procs(con) if any(r.kind is K.SERVER for r in rows) else {}
        attached: set[str] = set()
        if any(r.kind is K.VOLUME for r in rows):
            for s in self._rows(con, "kind = ?", K.SERVER.value):
                attached.update(s.refs.get("volumes", []))
        out = []
        for r in rows:
            attrs = dict(r.attrs)
            if r.kind is K.SERVER:
                attrs["status"] = self._server_status(r, procs.get(r.id))
                attrs["access_address"] = r.runtime.get("access_address", "")
            elif r.kind is K.VOLUME:
                attrs["status"] = "in-use" if r.id in attached else "available"
            elif r.kind is K.IMAGE:
                attrs["status"] = r.runtime.get("status", "queued")
            roles = _ROLES.get(r.kind, {})
            refs = {
                role: tuple(ResourceRef(roles[role].kind, i) for i in ids)
                for role, ids in r.refs.items()
                if ids
            }
            out.append(Resource(r.kind, r.id, r.name, attrs, refs, dict(r.tags)))
        return out

    @staticmethod
    def _server_status(row: _Stored, proc: _Proc | None) -> str:
        power = row.runtime.get("power", "on")
        if power == "off":
            return SHUTOFF
        if power == "building":
            return BUILD
        if not row.attrs.get("command"):
            return ACTIVE
        return ACTIVE if proc is not None and _alive(proc.pid, proc.start_time) else ERROR

    @staticmethod
    def _sort(resources: Iterable[Resource]) -> list[Resource]:
        return sorted(resources, key=lambda r: (_KIND_ORDER[r.kind], r.name, r.id))

    def list_resources(self, kind: ResourceKind | None = None) -> list[Resource]:
        with self._tx() as con:
            rows = self._rows(con, "kind = ?", kind.value) if kind else self._rows(con)
            return self._sort(self._materialize(con, rows))

    def get(self, ref: ResourceRef) -> Resource | None:
        with self._tx() as con:
            row = self._row(con, ref.kind, ref.id)
            return self._materialize(con, [row])[0] if row else None

    def find(self, kind: ResourceKind, key: str) -> Resource | None:
        with self._tx() as con:
            rows = self._rows(con, "kind = ? AND key = ?", kind.value, key)
            return self._materialize(con, rows)[0] if rows else None

    def discover(self, selector: Selector) -> ResourceGraph:
        """Selected servers, everything they reference, routers on included subnets and
        floating IPs on included ports (and, in turn, what those reference)."""
        with self._tx() as con:
            everything = self._materialize(con, self._rows(con))
        by_ref = {r.ref: r for r in everything}
        chosen: set[ResourceRef] = set()
        todo = [r.ref for r in everything if r.kind is K.SERVER and selector.matches(r)]
        while todo:
            while todo:
                ref = todo.pop()
                if ref in chosen or ref not in by_ref:
                    continue
                chosen.add(ref)
                todo.extend(by_ref[ref].depends_on)
            for r in everything:
                if r.ref in chosen:
                    continue
                if r.kind is K.ROUTER and chosen.intersection(r.refs.get("subnets", ())):
                    todo.append(r.ref)
                if r.kind is K.FLOATING_IP and chosen.intersection(r.refs.get("port", ())):
                    todo.append(r.ref)
        return ResourceGraph(tuple(self._sort(by_ref[ref] for ref in chosen)))

    # -- quotas -------------------------------------------------------------------------

    def _limits(self) -> dict[str, int]:
        path = self.path / "quotas.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"cannot read {path}: {exc}", field="quotas.json") from None
        names = (*_QUOTA_KINDS, "volume_bytes")
        if not isinstance(data, dict) or set(data) - set(names):
            raise InvalidInput(
                f"{path} must map some of {', '.join(names)} to integers", field="quotas.json"
            )
        return {n: int(data.get(n, -1)) for n in names}

    def _usage(self, con: sqlite3.Connection) -> dict[str, int]:
        used = {name: 0 for name in _QUOTA_KINDS}
        counts = dict(con.execute("SELECT kind, COUNT(*) FROM resources GROUP BY kind").fetchall())
        for name, kind in _QUOTA_KINDS.items():
            used[name] = counts.get(kind.value, 0)
        used["volume_bytes"] = sum(
            int(r.attrs.get("size", 0)) for r in self._rows(con, "kind = ?", K.VOLUME.value)
        )
        return used

    def quotas(self) -> Mapping[str, int]:
        limits = self._limits()
        with self._tx() as con:
            used = self._usage(con)
        return {n: -1 if lim < 0 else max(lim - used[n], 0) for n, lim in limits.items()}

    def _check_quota(self, con: sqlite3.Connection, kind: ResourceKind, size: int) -> None:
        need = {n: 1 for n, k in _QUOTA_KINDS.items() if k is kind}
        if kind is K.VOLUME:
            need["volume_bytes"] = size
        if not need:
            return
        limits, used = self._limits(), self._usage(con)
        over = [
            f"{n}: {used[n]} used + {amount} > limit {limits[n]}"
            for n, amount in need.items()
            if limits[n] >= 0 and used[n] + amount > limits[n]
        ]
        if over:
            raise Conflict(
                f"quota exceeded on site {self.site.name!r} creating a {kind.value} "
                f"({'; '.join(over)}); raise the limit in {self.path / 'quotas.json'} "
                "or free resources"
            )

    # -- create / delete ----------------------------------------------------------------

    def create(self, spec: ResourceSpec) -> Resource:
        """Find-or-create by ``spec.key``; a server with a command is started at once."""
        kind = ResourceKind(spec.kind)
        with self._tx(write=True) as con:
            existing = self._rows(con, "kind = ? AND key = ?", kind.value, spec.key)
            row = existing[0] if existing else self._insert(con, kind, spec)
        if row.kind is K.SERVER and row.runtime.get("power") == "building":
            self._boot(row.id)  # also resumes a create interrupted before the boot
        found = self.get(ResourceRef(kind, row.id))
        if found is None:  # deleted by someone else in between
            raise Conflict(f"{kind.value} {row.id} vanished while it was being created")
        return found

    def _insert(self, con: sqlite3.Connection, kind: ResourceKind, spec: ResourceSpec) -> _Stored:
        if not spec.name:
            raise InvalidInput("is required", field=f"{kind.value}.name")
        if not spec.key:
            raise InvalidInput("is required (find-or-create needs it)", field=f"{kind.value}.key")
        attrs = {**_DEFAULTS.get(kind, {})}
        attrs.update({k: v for k, v in spec.attrs.items() if k not in RUNTIME_ATTRS})
        refs = self._check_refs(con, kind, spec)
        row = _Stored(
            id=self.new_id(),
            kind=kind,
            name=spec.name,
            key=spec.key,
            attrs=attrs,
            refs=refs,
            tags={**spec.tags, KEY_TAG: spec.key},
            runtime={},
        )
        prepare = getattr(self, f"_prepare_{kind.value}", None)
        if prepare is not None:
            prepare(con, row)
        self._check_quota(con, kind, int(attrs.get("size", 0)) if kind is K.VOLUME else 0)
        con.execute(
            "INSERT INTO resources VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.id,
                kind.value,
                row.name,
                row.key,
                json.dumps(row.attrs, sort_keys=True),
                json.dumps(row.refs, sort_keys=True),
                json.dumps(row.tags, sort_keys=True),
                json.dumps(row.runtime, sort_keys=True),
                self.clock(),
            ),
        )
        if kind is K.VOLUME:
            self._create_volume_file(con, row)
        return row

    def _check_refs(
        self, con: sqlite3.Connection, kind: ResourceKind, spec: ResourceSpec
    ) -> dict[str, list[str]]:
        roles = _ROLES.get(kind, {})
        unknown = sorted(set(spec.refs) - set(roles))
        if unknown:
            raise InvalidInput(
                f"unknown ref role(s) {', '.join(unknown)}; a {kind.value} may have: "
                f"{', '.join(sorted(roles)) or 'none'}",
                field=f"{kind.value}.refs",
            )
        refs: dict[str, list[str]] = {}
        for role, rule in roles.items():
            ids = list(spec.refs.get(role, ()))
            where = f"{kind.value}.refs.{role}"
            if rule.required and not ids:
                raise InvalidInput(f"a {kind.value} needs a {rule.kind.value}", field=where)
            if not rule.many and len(ids) > 1:
                raise InvalidInput(f"takes one {rule.kind.value}, got {len(ids)}", field=where)
            for id_ in ids:
                if self._row(con, rule.kind, id_) is None:
                    raise InvalidInput(
                        f"{rule.kind.value} {id_!r} does not exist on site {self.site.name!r}",
                        field=where,
                    )
            if ids:
                refs[role] = ids
        return refs

    # Per-kind preparation: validate attrs and fill in what the cloud allocates.

    def _prepare_network(self, con: sqlite3.Connection, row: _Stored) -> None:
        mtu = row.attrs["mtu"]
        if not isinstance(mtu, int) or isinstance(mtu, bool) or not 68 <= mtu <= 9216:
            raise InvalidInput(f"expected an integer 68..9216, got {mtu!r}", field="network.mtu")

    def _prepare_subnet(self, con: sqlite3.Connection, row: _Stored) -> None:
        try:
            cidr = ipaddress.ip_network(str(row.attrs.get("cidr", "")))
        except ValueError as exc:
            raise InvalidInput(str(exc), field="subnet.attrs.cidr") from None
        row.attrs["cidr"] = str(cidr)
        hosts = list(cidr.hosts()) if cidr.num_addresses <= 2 else None
        gateway = row.attrs.get("gateway_ip", "")
        if gateway == "":
            first = hosts[0] if hosts is not None else cidr.network_address + 1
            row.attrs["gateway_ip"] = str(first)
        elif gateway is not None and not _in_subnet(gateway, cidr):
            raise InvalidInput(f"{gateway!r} is not inside {cidr}", field="subnet.attrs.gateway_ip")
        for i, pool in enumerate(row.attrs["allocation_pools"]):
            for end in ("start", "end"):
                if not isinstance(pool, dict) or not _in_subnet(pool.get(end), cidr):
                    raise InvalidInput(
                        f"{pool!r} must be {{start, end}} inside {cidr}",
                        field=f"subnet.attrs.allocation_pools[{i}]",
                    )
        network = row.refs["network"][0]
        for other in self._rows(con, "kind = ?", K.SUBNET.value):
            if other.refs.get("network") == [network] and cidr.overlaps(
                ipaddress.ip_network(other.attrs["cidr"])
            ):
                raise Conflict(f"{cidr} overlaps subnet {other.name} ({other.attrs['cidr']})")

    def _prepare_port(self, con: sqlite3.Connection, row: _Stored) -> None:
        network = row.refs["network"][0]
        subnets = [
            s
            for s in self._rows(con, "kind = ?", K.SUBNET.value)
            if s.refs.get("network") == [network]
        ]
        subnets.sort(key=lambda s: (s.attrs["cidr"], s.id))
        peers = [
            p
            for p in self._rows(con, "kind = ?", K.PORT.value)
            if p.refs.get("network") == [network]
        ]
        used = {ip: p.name for p in peers for ip in p.attrs.get("fixed_ips", [])}
        if "subnet" in row.refs:
            subnet = next((s for s in subnets if s.id == row.refs["subnet"][0]), None)
            if subnet is None:
                raise InvalidInput(
                    f"subnet {row.refs['subnet'][0]!r} is not on network {network!r}",
                    field="port.refs.subnet",
                )
        else:
            subnet = subnets[0] if subnets else None
        ips = row.attrs["fixed_ips"]
        if not isinstance(ips, list):
            raise InvalidInput(f"expected a list, got {ips!r}", field="port.attrs.fixed_ips")
        if ips and subnet is None:
            raise InvalidInput("the port's network has no subnet", field="port.attrs.fixed_ips")
        if subnet is not None:
            row.refs["subnet"] = [subnet.id]
            cidr = ipaddress.ip_network(subnet.attrs["cidr"])
            for i, ip in enumerate(ips):
                where = f"port.attrs.fixed_ips[{i}]"
                if not _in_subnet(ip, cidr) or ipaddress.ip_address(ip) in (
                    cidr.network_address,
                    cidr.broadcast_address if cidr.num_addresses > 2 else None,
                ):
                    raise InvalidInput(f"{ip!r} is not a host address in {cidr}", field=where)
                if ip == subnet.attrs.get("gateway_ip"):
                    raise Conflict(f"{ip} is the gateway of subnet {subnet.name}")
                if ip in used:
                    raise Conflict(f"{ip} is already used by port {used[ip]} on this network")
                used[ip] = row.name
            if not ips:
                row.attrs["fixed_ips"] = [self._allocate_ip(subnet, set(used))]
        macs = {p.attrs.get("mac_address") for p in peers}
        mac = row.attrs.get("mac_address") or ""
        if mac and mac in macs:
            raise Conflict(f"MAC address {mac} is already used on this network")
        rng = random.Random(row.id)
        while not mac or mac in macs:
            mac = "fa:16:3e:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(3))
        row.attrs["mac_address"] = mac

    @staticmethod
    def _allocate_ip(subnet: _Stored, used: set[str]) -> str:
        cidr = ipaddress.ip_network(subnet.attrs["cidr"])
        taken = used | {subnet.attrs.get("gateway_ip")}
        pools = subnet.attrs.get("allocation_pools") or []
        ranges: Iterable[Iterable[Any]]
        if pools:
            ranges = (
                _ip_range(ipaddress.ip_address(p["start"]), ipaddress.ip_address(p["end"]))
                for p in pools
            )
        else:
            ranges = (cidr.hosts(),)
        for candidates in ranges:
            for ip in candidates:
                if str(ip) not in taken:
                    return str(ip)
        raise Conflict(f"subnet {subnet.name} ({cidr}) has no free address left")

    def _prepare_volume(self, con: sqlite3.Connection, row: _Stored) -> None:
        size = row.attrs.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise InvalidInput(
                f"expected a positive number of bytes, got {size!r}", field="volume.attrs.size"
            )
        if "image" in row.refs:
            image = self._need(con, K.IMAGE, row.refs["image"][0])
            if image.runtime.get("status") != "active":
                raise Conflict(f"image {image.name} has no data yet; upload it first")
            if int(image.attrs["size"]) > size:
                raise InvalidInput(
                    f"{size} bytes is smaller than image {image.name} ({image.attrs['size']})",
                    field="volume.attrs.size",
                )

    def _create_volume_file(self, con: sqlite3.Connection, row: _Stored) -> None:
        path = self.volume_path(row.id)
        with open(path, "wb") as f:
            f.truncate(int(row.attrs["size"]))
        journal_path_for(path).unlink(missing_ok=True)
        if "image" in row.refs:
            # Through the writer, so the journal also accounts for the initial content.
            with VolumeWriter(path) as w, open(self._image_path(row.refs["image"][0]), "rb") as f:
                offset = 0
                while buf := f.read(_CHUNK):
                    if buf.count(0) != len(buf):
                        w.write(offset, buf)
                    offset += len(buf)

    def _prepare_image(self, con: sqlite3.Connection, row: _Stored) -> None:
        row.runtime["status"] = "queued"
        self._image_path(row.id).write_bytes(b"")

    def _prepare_server(self, con: sqlite3.Connection, row: _Stored) -> None:
        a = row.attrs
        a.setdefault("hostname", row.name)
        command = a.get("command")
        if command is not None and (
            not isinstance(command, list)
            or not command
            or not all(isinstance(c, str) for c in command)
        ):
            raise InvalidInput(
                f"expected a non-empty argv list, got {command!r}", field="server.attrs.command"
            )
        port = a.get("listen_port")
        if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
            raise InvalidInput(
                f"expected a TCP port, got {port!r}", field="server.attrs.listen_port"
            )
        for other in self._rows(con, "kind = ?", K.SERVER.value):
            for role in ("ports", "volumes"):
                shared = set(other.refs.get(role, ())) & set(row.refs.get(role, ()))
                if shared:
                    raise Conflict(
                        f"{role[:-1]} {sorted(shared)[0]} is already attached to server "
                        f"{other.name}; detach it or delete that server first"
                    )
        servers = self._rows(con, "kind = ?", K.SERVER.value)
        taken = {s.runtime.get("access_address") for s in servers}
        for address in _loopback_candidates(self.path, row.id):
            if address not in taken and _address_free(address, port or 0):
                break
        else:  # pragma: no cover - 16M candidates
            raise Conflict("no free loopback address left for a sim server")
        row.runtime = {"power": "building", "access_address": address}

    def _prepare_floating_ip(self, con: sqlite3.Connection, row: _Stored) -> None:
        used = {f.attrs.get("address") for f in self._rows(con, "kind = ?", K.FLOATING_IP.value)}
        address = row.attrs.get("address")
        if address and address in used:
            raise Conflict(f"floating IP {address} is already allocated")
        if not address:
            pool = ipaddress.ip_network("203.0.113.0/24").hosts()  # TEST-NET-3
            address = next((str(ip) for ip in pool if str(ip) not in used), None)
            if address is None:
                raise Conflict("the floating IP pool 203.0.113.0/24 is exhausted")
            row.attrs["address"] = address

    def delete(self, ref: ResourceRef) -> None:
        """Delete; "already gone" is success. A server's process is killed first; a
        volume's file, journal and snapshots go with it."""
        with self._tx(write=True) as con:
            row = self._row(con, ref.kind, ref.id)
            if row is None:
                return
            for other in self._rows(con):
                roles = [role for role, ids in other.refs.items() if ref.id in ids]
                if not roles or other.id == ref.id:
                    continue
                if (other.kind, ref.kind) in _NON_BLOCKING:
                    continue
                raise Conflict(
                    f"{ref} is still used by {other.kind.value} {other.name} ({other.id}); "
                    "delete that first"
                )
            proc = self._procs(con).get(ref.id)
        if proc is not None:
            _terminate([(proc.pid, proc.start_time)], grace=min(self.stop_grace, 2.0))
        with self._tx(write=True) as con:
            for fip in self._rows(con, "kind = ?", K.FLOATING_IP.value):
                if ref.id in fip.refs.get("port", []):
                    fip.refs.pop("port")
                    con.execute(
                        "UPDATE resources SET refs = ? WHERE id = ?", (json.dumps(fip.refs), fip.id)
                    )
            snaps = [
                r["id"]
                for r in con.execute("SELECT id FROM snapshots WHERE volume_id = ?", (ref.id,))
            ]
            con.execute("DELETE FROM snapshots WHERE volume_id = ?", (ref.id,))
            con.execute("DELETE FROM processes WHERE server_id = ?", (ref.id,))
            con.execute("DELETE FROM resources WHERE id = ? AND kind = ?", (ref.id, ref.kind.value))
        for snap in snaps:
            self._snapshot_path(snap).unlink(missing_ok=True)
        if ref.kind is K.VOLUME:
            self.volume_path(ref.id).unlink(missing_ok=True)
            journal_path_for(self.volume_path(ref.id)).unlink(missing_ok=True)
        if ref.kind is K.IMAGE:
            self._image_path(ref.id).unlink(missing_ok=True)

    # -- servers ------------------------------------------------------------------------

    def _boot(self, server_id: str) -> None:
        """Start a server's process (if it has a command) and mark it powered on."""
        with self._tx() as con:
            row = self._need(con, K.SERVER, server_id)
            proc = self._procs(con).get(server_id)
            env = self._server_env(con, row)
        command = row.attrs.get("command")
        spawned = None
        if command and not (proc and _alive(proc.pid, proc.start_time)):
            spawned = self._spawn(row, command, env)
        duplicate = None
        with self._tx(write=True) as con:
            row = self._need(con, K.SERVER, server_id)
            current = self._procs(con).get(server_id)
            if spawned is not None:
                if (
                    current is not None
                    and current != proc
                    and _alive(current.pid, current.start_time)
                ):
                    duplicate = spawned  # another process booted it meanwhile: keep theirs
                else:
                    con.execute(
                        "INSERT OR REPLACE INTO processes VALUES (?, ?, ?, ?)",
                        (server_id, spawned.pid, spawned.start_time, spawned.log),
                    )
            row.runtime["power"] = "on"
            _save_runtime(con, row)
        if duplicate is not None:
            _terminate([(duplicate.pid, duplicate.start_time)], grace=0.0)

    def _spawn(self, row: _Stored, command: list[str], env: dict[str, str]) -> _Proc | None:
        """Detached (own session), so the server outlives seawall: the sim is a cloud."""
        argv = list(command)
        if argv[0] == "python":  # portable metadata: "python" is the interpreter seawall runs on
            argv[0] = sys.executable
        log = self.log_path(row.id, row.name)
        with open(log, "ab") as out:
            out.write(f"--- {time.ctime()} start {argv}\n".encode())
            out.flush()
            try:
                child = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.path,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as exc:
                out.write(f"--- cannot start: {exc}\n".encode())
                return None  # the server shows ERROR, as a cloud's failed boot does
        _CHILDREN[child.pid] = child
        start = _proc_start_time(child.pid)
        return _Proc(child.pid, start if start is not None else -1, str(log))

    def _server_env(self, con: sqlite3.Connection, row: _Stored) -> dict[str, str]:
        servers = self._rows(con, "kind = ?", K.SERVER.value)
        ports = {p.id: p for p in self._rows(con, "kind = ?", K.PORT.value)}

        def networks(s: _Stored) -> set[str]:
            attached = [ports[p] for p in s.refs.get("ports", []) if p in ports]
            return {n for p in attached for n in p.refs["network"]}

        mine = networks(row)
        peers = {
            s.attrs.get(
                "hostname", s.name
            ): f"{s.runtime['access_address']}:{s.attrs['listen_port']}"
            for s in servers
            if s.id != row.id and s.attrs.get("listen_port") and mine & networks(s)
        }
        volumes = [str(self.volume_path(v)) for v in row.refs.get("volumes", [])]
        return {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "SEAWALL_SITE": str(self.path),
            "SEAWALL_SERVER_ID": row.id,
            "SEAWALL_HOSTNAME": str(row.attrs.get("hostname", row.name)),
            "SEAWALL_ADDRESS": str(row.runtime.get("access_address", "")),
            "SEAWALL_PORT": str(row.attrs.get("listen_port") or ""),
            "SEAWALL_VOLUMES": os.pathsep.join(volumes),
            "SEAWALL_CBT": os.pathsep.join(str(journal_path_for(v)) for v in volumes),
            "SEAWALL_PEERS": json.dumps(peers, sort_keys=True),
        }

    def _server(self, server_id: str) -> tuple[_Stored, _Proc | None]:
        with self._tx() as con:
            return self._need(con, K.SERVER, server_id), self._procs(con).get(server_id)

    def power_off(self, server_id: str) -> None:
        """SIGTERM, then SIGKILL after ``stop_grace`` seconds; the server is SHUTOFF."""
        row, proc = self._server(server_id)
        if proc is not None:
            _terminate([(proc.pid, proc.start_time)], self.stop_grace)
        with self._tx(write=True) as con:
            row = self._need(con, K.SERVER, server_id)
            row.runtime["power"] = "off"
            _save_runtime(con, row)

    def power_on(self, server_id: str) -> None:
        """Start the process again (a crashed one too), with a fresh view of its peers."""
        self._server(server_id)
        self._boot(server_id)

    def stop_all(self) -> None:
        """Power off every server of the site at once (clean-up for tests and the demo)."""
        with self._tx() as con:
            procs = list(self._procs(con).values())
            ids = [s.id for s in self._rows(con, "kind = ?", K.SERVER.value)]
        _terminate([(p.pid, p.start_time) for p in procs], self.stop_grace)
        with self._tx(write=True) as con:
            for row in self._rows(con, "kind = ?", K.SERVER.value):
                if row.id in ids:
                    row.runtime["power"] = "off"
                    _save_runtime(con, row)

    def guest_agent(self, server_id: str, command: str) -> None:
        """``fsfreeze-freeze`` stops the process once its in-flight writes are done (it
        takes each volume's journal lock first); ``fsfreeze-thaw`` resumes it."""
        row, proc = self._server(server_id)
        if not row.attrs.get("guest_agent"):
            raise PermanentError(
                f"server {row.name} has no guest agent (attrs guest_agent is false); "
                "use another quiesce agent or crash consistency"
            )
        if command not in ("fsfreeze-freeze", "fsfreeze-thaw"):
            raise InvalidInput(
                f"unknown guest-agent command {command!r}; use fsfreeze-freeze or fsfreeze-thaw",
                field="command",
            )
        if not row.attrs.get("command"):
            return  # nothing runs, nothing writes: frozen by definition
        if proc is None or not _alive(proc.pid, proc.start_time):
            raise Conflict(f"server {row.name} is not running; its guest agent cannot answer")
        if command == "fsfreeze-thaw":
            _signal_group(proc.pid, signal.SIGCONT)
            return
        with contextlib.ExitStack() as stack:
            for volume in row.refs.get("volumes", []):
                journal = journal_path_for(self.volume_path(volume))
                fd = os.open(journal, os.O_RDWR | os.O_CREAT, 0o644)
                stack.callback(os.close, fd)
                stack.enter_context(_exclusive(fd, f"freezing {row.name}", self.lock_timeout))
            _signal_group(proc.pid, signal.SIGSTOP)
            _wait_for_stopped(proc.pid, self.lock_timeout)

    def wait_for_status(self, ref: ResourceRef, status: str, timeout: float) -> Resource:
        """Poll until ``attrs["status"]`` is ``status`` (case-insensitive; resources
        without one count as ACTIVE; ``DELETED`` waits for it to be gone). A server that
        falls into ERROR while waiting for something else fails at once."""
        want = status.upper()
        deadline = time.monotonic() + timeout
        delay = 0.02
        last = "absent"
        while True:
            found = self.get(ref)
            if found is None:
                if want == "DELETED":
                    return Resource(ref.kind, ref.id, "", {"status": "DELETED"})
                raise NotFound(f"{ref} does not exist on site {self.site.name!r}")
            last = str(found.attrs.get("status", ACTIVE)).upper()
            if last == want:
                return found
            if last == ERROR and ref.kind is K.SERVER:
                raise PermanentError(
                    f"server {found.name} is in ERROR while waiting for {want}; "
                    f"see {self.log_path(found.id, found.name)}"
                )
            if time.monotonic() >= deadline:
                raise StepTimeout(
                    f"{ref.kind.value} {found.name} ({ref.id}) did not reach status {want} "
                    f"within {timeout:g}s (last seen: {last})"
                )
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.25)

    # -- volumes and snapshots ----------------------------------------------------------

    def volume_path(self, volume_id: str) -> Path:
        """The volume's file (what server processes get in SEAWALL_VOLUMES)."""
        return self.path / "volumes" / f"{volume_id}.img"

    def _snapshot_path(self, snapshot_id: str) -> Path:
        return self.path / "snapshots" / f"{snapshot_id}.img"

    def _image_path(self, image_id: str) -> Path:
        return self.path / "images" / f"{image_id}.img"

    def log_path(self, server_id: str, name: str | None = None) -> Path:
        """Where a server process's output goes (``logs/<name>-<id8>.log``)."""
        if name is None:
            row, _ = self._server(server_id)
            name = row.name
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
        return self.path / "logs" / f"{safe}-{server_id[:8]}.log"

    def server_pid(self, server_id: str) -> int | None:
        """The pid of the server's live process, or None (for tests and diagnostics)."""
        _, proc = self._server(server_id)
        return proc.pid if proc is not None and _alive(proc.pid, proc.start_time) else None

    def write_volume(self, volume_id: str, offset: int, data: bytes) -> None:
        with self._tx() as con:
            self._need(con, K.VOLUME, volume_id)
        with VolumeWriter(self.volume_path(volume_id)) as writer:
            writer.write(offset, data)

    def create_snapshot(self, volume_id: str, key: str) -> SnapshotInfo:
        """Find-or-create by (volume, key). The copy and the journal position are taken
        under the journal's exclusive lock, so they describe the same instant."""
        with self._tx() as con:
            found = con.execute(
                "SELECT * FROM snapshots WHERE volume_id = ? AND key = ?", (volume_id, key)
            ).fetchone()
            if found is not None:
                return _snapshot_info(found)
            volume = self._need(con, K.VOLUME, volume_id)
        snap_id = self.new_id()
        now = self.clock()
        size = int(volume.attrs["size"])
        path = self.volume_path(volume_id)
        journal = os.open(journal_path_for(path), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            with _exclusive(journal, f"snapshot of volume {volume.name}", self.lock_timeout):
                position = _repair_journal(journal)
                src = os.open(path, os.O_RDONLY)
                try:
                    _sparse_copy(src, self._snapshot_path(snap_id), size)
                finally:
                    os.close(src)
        finally:
            os.close(journal)
        try:
            with self._tx(write=True) as con:
                self._need(con, K.VOLUME, volume_id)
                con.execute(
                    "INSERT INTO snapshots VALUES (?, ?, ?, ?, ?, ?)",
                    (snap_id, volume_id, key, size, now, position),
                )
        except (sqlite3.IntegrityError, NotFound):
            self._snapshot_path(snap_id).unlink(missing_ok=True)  # lost a race, or gone
            with self._tx() as con:
                found = con.execute(
                    "SELECT * FROM snapshots WHERE volume_id = ? AND key = ?", (volume_id, key)
                ).fetchone()
            if found is None:
                raise
            return _snapshot_info(found)
        return SnapshotInfo(snap_id, volume_id, size, key, now)

    def list_snapshots(self, volume_id: str) -> list[SnapshotInfo]:
        with self._tx() as con:
            rows = con.execute(
                "SELECT * FROM snapshots WHERE volume_id = ? ORDER BY journal_pos, created_at, id",
                (volume_id,),
            ).fetchall()
        return [_snapshot_info(r) for r in rows]

    def delete_snapshot(self, snapshot_id: str) -> None:
        with self._tx(write=True) as con:
            con.execute("DELETE FROM snapshots WHERE id = ?", (snapshot_id,))
        self._snapshot_path(snapshot_id).unlink(missing_ok=True)

    def _snapshot_row(self, con: sqlite3.Connection, snapshot_id: str, what: str) -> sqlite3.Row:
        row = con.execute("SELECT * FROM snapshots WHERE id = ?", (snapshot_id,)).fetchone()
        if row is None:
            raise NotFound(f"{what} {snapshot_id!r} does not exist on site {self.site.name!r}")
        return row  # type: ignore[no-any-return]

    def changed_extents(self, snapshot_id: str, base_snapshot_id: str | None) -> list[Extent]:
        """Journaled writes between ``base`` and ``snapshot`` (merged), or the snapshot's
        allocated extents when there is no base. NotFound for an unknown base or a damaged
        journal: both mean "read it in full"."""
        with self._tx() as con:
            snap = self._snapshot_row(con, snapshot_id, "snapshot")
            base = (
                self._snapshot_row(con, base_snapshot_id, "base snapshot")
                if base_snapshot_id
                else None
            )
        size = int(snap["size"])
        if base is None:
            fd = os.open(self._snapshot_path(snapshot_id), os.O_RDONLY)
            try:
                return merge_extents(_data_regions(fd, size))
            finally:
                os.close(fd)
        if base["volume_id"] != snap["volume_id"]:
            raise InvalidInput(
                f"base snapshot {base['id']} is of another volume", field="base_snapshot_id"
            )
        if base["journal_pos"] > snap["journal_pos"]:
            raise InvalidInput(
                f"base snapshot {base['id']} is newer than {snap['id']}", field="base_snapshot_id"
            )
        journal = journal_path_for(self.volume_path(snap["volume_id"]))
        try:
            records = _read_journal(journal, base["journal_pos"], snap["journal_pos"])
        except _JournalDamaged as exc:
            raise NotFound(f"no reliable change record ({exc}); read the volume in full") from None
        clipped = ((o, min(o + n, size) - o) for o, n in records if o < size)
        return merge_extents(clipped)

    def read_snapshot(self, snapshot_id: str, offset: int, length: int) -> bytes:
        """Snapshot-time bytes; fewer than ``length`` only at the end of the snapshot."""
        with self._tx() as con:
            snap = self._snapshot_row(con, snapshot_id, "snapshot")
        if offset < 0 or length < 0 or offset > snap["size"]:
            raise InvalidInput(
                f"cannot read {length} bytes at {offset} of a {snap['size']}-byte snapshot",
                field="offset",
            )
        length = min(length, snap["size"] - offset)
        with open(self._snapshot_path(snapshot_id), "rb") as f:
            return os.pread(f.fileno(), length, offset) if length else b""

    # -- images -------------------------------------------------------------------------

    def read_image(self, image_id: str) -> Iterator[bytes]:
        with self._tx() as con:
            image = self._need(con, K.IMAGE, image_id)
        if image.runtime.get("status") != "active":
            raise Conflict(f"image {image.name} has no data yet (status queued)")
        path = self._image_path(image_id)

        def chunks() -> Iterator[bytes]:
            with open(path, "rb") as f:
                while buf := f.read(_CHUNK):
                    yield buf

        return chunks()

    def write_image(self, image_id: str, chunks: Iterable[bytes]) -> None:
        """Upload once (Glance's rule); uploading the same bytes again is a no-op. When
        the image was created with a ``checksum`` (md5, as Glance's), the data must match."""
        with self._tx() as con:
            image = self._need(con, K.IMAGE, image_id)
        final = self._image_path(image_id)
        tmp = final.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        md5 = hashlib.md5(usedforsecurity=False)
        size = 0
        try:
            with open(tmp, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
                    md5.update(chunk)
                    size += len(chunk)
                f.flush()
                os.fsync(f.fileno())
            checksum = md5.hexdigest()
            expected = image.attrs.get("checksum")
            if image.runtime.get("status") == "active":
                if checksum != expected:
                    raise Conflict(f"image {image.name} already holds other data")
                return
            if expected and expected != checksum:
                raise VerificationFailed(
                    f"image {image.name}: uploaded data has md5 {checksum}, expected {expected}"
                )
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        with self._tx(write=True) as con:
            row = self._need(con, K.IMAGE, image_id)
            row.attrs.update(size=size, checksum=checksum)
            row.runtime["status"] = "active"
            con.execute(
                "UPDATE resources SET attrs = ?, runtime = ? WHERE id = ?",
                (json.dumps(row.attrs, sort_keys=True), json.dumps(row.runtime), image_id),
            )


def _save_runtime(con: sqlite3.Connection, row: _Stored) -> None:
    con.execute("UPDATE resources SET runtime = ? WHERE id = ?", (json.dumps(row.runtime), row.id))


def _snapshot_info(row: sqlite3.Row) -> SnapshotInfo:
    return SnapshotInfo(row["id"], row["volume_id"], row["size"], row["key"], row["created_at"])


def _in_subnet(ip: Any, cidr: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        return ipaddress.ip_address(str(ip)) in cidr
    except ValueError:
        return False


def _ip_range(start: Any, end: Any) -> Iterator[Any]:
    while start <= end:
        yield start
        start += 1


# --------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------


def open_sim(site: Site) -> SimDriver:
    """The ``sim`` driver factory (entry point): ``site.params["path"]`` is the site's
    directory, created if missing. A site marked DOWN opens, but every call raises."""
    path = site.params.get("path")
    if not path:
        raise InvalidInput("a sim site needs a directory", field="site.params.path")
    return SimDriver(site, path)


def destroy_site(path: str | os.PathLike[str]) -> None:
    """The disaster: kill every server process of the site and remove its directory.

    Processes are found in site.db and, as a safety net, by the SEAWALL_SITE variable of
    every process, so a half-written database cannot leave servers behind.
    """
    root = Path(path).resolve()
    procs: list[tuple[int, int]] = []
    db = root / "site.db"
    if db.is_file():
        with contextlib.suppress(sqlite3.Error):
            con = sqlite3.connect(db.as_uri() + "?mode=ro", uri=True, timeout=5)
            try:
                rows = con.execute("SELECT pid, start_time FROM processes").fetchall()
                procs = [(int(pid), int(start)) for pid, start in rows]
            finally:
                con.close()
    for pid in _site_processes(root):
        start = _proc_start_time(pid)
        if start is not None:
            procs.append((pid, start))
    _terminate(procs, grace=0.0)
    shutil.rmtree(root, ignore_errors=True)
