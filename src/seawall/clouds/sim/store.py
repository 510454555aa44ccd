"""The sim site's directory: its SQLite database (one transaction per call) and its files.

Several processes (the service, a worker, a test) may share a site, so every call opens
its own connection and transaction; writers take the lock up front (``BEGIN IMMEDIATE``)
so find-or-create, IP allocation and quota checks are atomic across processes.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seawall.errors import NotFound, PermanentError, SiteUnavailable, TransientError
from seawall.model import DEFAULT_PROJECT, ResourceKind, Site

#: version of the site directory layout and database schema
FORMAT_VERSION = 1

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
class Stored:
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
    def from_row(cls, row: sqlite3.Row) -> Stored:
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


def owner(row: Stored) -> str:
    """The project a row belongs to: ``runtime["project"]``, or the default project for
    rows made by an unscoped driver (every row of a site made before projects)."""
    return str(row.runtime.get("project") or DEFAULT_PROJECT)


@dataclass(frozen=True)
class Proc:
    """A server's process: pid and kernel start time name it (pids are reused)."""

    pid: int
    start_time: int
    log: str


class SiteStore:
    """The site directory of one sim site: ``site.db`` and the paths of its files.

    A site marked DOWN opens, but is only initialised once it is back (``ping``).
    """

    def __init__(self, site: Site, path: Path) -> None:
        self.site = site
        self.path = path
        self.db = self.path / "site.db"
        self._deferred_init = (self.path / "DOWN").exists()
        if not self._deferred_init:
            self._initialise()

    def _initialise(self) -> None:
        """Create the layout if missing and check the format; idempotent."""
        for sub in ("volumes", "snapshots", "images", "logs"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.db, timeout=30, isolation_level=None)
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
        if not self.db.is_file():
            if self._deferred_init and self.path.is_dir():
                self._initialise()  # opened while DOWN, never initialised: do it now
                self._deferred_init = False
                return
            raise SiteUnavailable(
                f"sim site {self.site.name!r} at {self.path} is gone (destroyed?); "
                "recreate it or fail over to another site"
            )

    @contextlib.contextmanager
    def tx(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction per call; writers take the lock up front (BEGIN IMMEDIATE) so
        find-or-create, IP allocation and quota checks are atomic across processes."""
        self.ping()
        try:
            con = sqlite3.connect(
                self.db.as_uri() + "?mode=rw", uri=True, timeout=30, isolation_level=None
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

    # -- rows -----------------------------------------------------------------------------

    def rows(self, con: sqlite3.Connection, where: str = "", *args: Any) -> list[Stored]:
        sql = "SELECT * FROM resources" + (f" WHERE {where}" if where else "")
        return [Stored.from_row(r) for r in con.execute(sql, args)]

    def row(self, con: sqlite3.Connection, kind: ResourceKind, id_: str) -> Stored | None:
        rows = self.rows(con, "id = ? AND kind = ?", id_, kind.value)
        return rows[0] if rows else None

    def need(self, con: sqlite3.Connection, kind: ResourceKind, id_: str) -> Stored:
        row = self.row(con, kind, id_)
        if row is None:
            raise NotFound(f"{kind.value} {id_!r} does not exist on site {self.site.name!r}")
        return row

    def procs(self, con: sqlite3.Connection) -> dict[str, Proc]:
        return {
            r["server_id"]: Proc(r["pid"], r["start_time"], r["log"])
            for r in con.execute("SELECT * FROM processes")
        }

    # -- files ----------------------------------------------------------------------------

    def volume_path(self, volume_id: str) -> Path:
        """The volume's file (what server processes get in SEAWALL_VOLUMES)."""
        return self.path / "volumes" / f"{volume_id}.img"

    def snapshot_path(self, snapshot_id: str) -> Path:
        return self.path / "snapshots" / f"{snapshot_id}.img"

    def image_path(self, image_id: str) -> Path:
        return self.path / "images" / f"{image_id}.img"

    def log_path(self, server_id: str, name: str) -> Path:
        """Where a server process's output goes (``logs/<name>-<id8>.log``)."""
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
        return self.path / "logs" / f"{safe}-{server_id[:8]}.log"


def save_runtime(con: sqlite3.Connection, row: Stored) -> None:
    con.execute("UPDATE resources SET runtime = ? WHERE id = ?", (json.dumps(row.runtime), row.id))
