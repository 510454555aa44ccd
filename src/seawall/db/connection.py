"""The connection to the state database: URLs, engines, transactions and error mapping.

One :class:`Database` per :class:`~seawall.db.StateStore`, shared by all its parts
(catalogue, runs, events, leases). Every public method of a part is one
:meth:`Database.tx`; read-modify-write methods open it with ``write=True``, which on
SQLite starts the transaction ``BEGIN IMMEDIATE`` (the write lock first, so writers queue
instead of failing) and on PostgreSQL changes nothing (the parts lock rows with ``SELECT
... FOR UPDATE`` or use a single conditional ``UPDATE``).
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine

from seawall.db.errors import StateDatabaseBusy, StateDatabaseError
from seawall.errors import InvalidInput

# --------------------------------------------------------------------------------------
# URLs and engines
# --------------------------------------------------------------------------------------


def default_url() -> str:
    """``SEAWALL_DB_URL`` if set, else a SQLite file in ``$SEAWALL_HOME`` (``~/.seawall``).

    The home directory is created (private to the user: the database names clouds and
    their credentials' locations) so a first command on a fresh machine just works.
    """
    env = os.environ.get("SEAWALL_DB_URL")
    if env:
        return env
    home = Path(os.environ.get("SEAWALL_HOME") or Path.home() / ".seawall").expanduser()
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    return f"sqlite:///{home.resolve() / 'state.db'}"


def normalize_url(url: str) -> sa.URL:
    """Parse the URL; plain ``postgresql://`` means psycopg 3, the driver seawall ships."""
    try:
        parsed = sa.make_url(url)
    except sa_exc.ArgumentError as exc:
        raise InvalidInput(f"{url!r} is not a database URL ({exc})", field="db_url") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise InvalidInput(
            f"unsupported database {backend!r}; use sqlite:///PATH or postgresql://...",
            field="db_url",
        )
    return parsed


def sqlite_path(url: sa.URL) -> Path | None:
    """The database file of a SQLite URL, or None for an in-memory database."""
    db = url.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db)


def _make_engine(url: sa.URL, busy_timeout: float) -> Engine:
    if url.get_backend_name() == "postgresql":
        engine = sa.create_engine(
            url,
            pool_pre_ping=True,
            connect_args={"connect_timeout": max(1, round(busy_timeout))},
        )
    else:
        path = sqlite_path(url)
        if path is None:
            # One shared connection, or every checkout would see its own empty database.
            engine = sa.create_engine(
                url,
                poolclass=sa.StaticPool,
                connect_args={"check_same_thread": False, "timeout": busy_timeout},
            )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, connect_args={"timeout": busy_timeout})
        _sqlite_transactions(engine)
    _dispose_after_fork(engine)
    return engine


def _sqlite_transactions(engine: Engine) -> None:
    """Let SQLAlchemy, not pysqlite, start transactions, and start writers IMMEDIATE.

    pysqlite begins a transaction lazily at the first write; two readers that both decide
    to write then deadlock and one fails with "database is locked" at once, ignoring the
    busy timeout. Taking the write lock at BEGIN makes writers queue instead.
    """

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("seawall_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _dispose_after_fork(engine: Engine) -> None:
    """A forked child must not reuse its parent's pooled connections (they share a socket)."""
    ref = weakref.ref(engine)

    def after_fork() -> None:
        eng = ref()
        if eng is not None:
            eng.dispose(close=False)

    os.register_at_fork(after_in_child=after_fork)


# --------------------------------------------------------------------------------------
# The connection every part of the store shares
# --------------------------------------------------------------------------------------


class Database:
    """One engine, its transactions and the translation of driver errors.

    Opening one does not migrate (see :func:`seawall.db.migration.migrate_to_head`);
    :class:`~seawall.db.StateStore` does both.
    """

    def __init__(self, url: str, *, busy_timeout: float) -> None:
        self.url = url
        self.parsed = normalize_url(url)
        #: the URL without its password, for messages
        self.shown = self.parsed.render_as_string(hide_password=True)
        self.busy_timeout = busy_timeout
        self.pg = self.parsed.get_backend_name() == "postgresql"
        # An in-memory SQLite database is one connection; threads take turns on it.
        self._memory_lock: threading.RLock | None = (
            threading.RLock() if not self.pg and sqlite_path(self.parsed) is None else None
        )
        self.engine = _make_engine(self.parsed, busy_timeout)

    def close(self) -> None:
        """Release every pooled connection; the database must not be used afterwards."""
        self.engine.dispose()

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Turn driver errors into seawall's tree, naming the database and what to do."""
        try:
            yield
        except sa_exc.OperationalError as exc:
            reason = _reason(exc)
            if "locked" in reason or "busy" in reason:
                raise StateDatabaseBusy(
                    f"state database {self.shown} is locked by another process ({reason}); "
                    f"waited {self.busy_timeout:g}s. Retry, or find the process holding it."
                ) from exc
            if self.pg:
                raise StateDatabaseBusy(
                    f"cannot use state database {self.shown}: {reason}. "
                    "Check that PostgreSQL is running and the URL is right."
                ) from exc
            raise StateDatabaseError(
                f"cannot use state database {self.shown}: {reason}. Check the file's "
                "permissions and the free space of its file system."
            ) from exc
        except sa_exc.DBAPIError as exc:
            if isinstance(exc, sa_exc.IntegrityError):
                raise
            raise StateDatabaseError(
                f"state database {self.shown} is unusable: {_reason(exc)}. It is damaged or "
                "not a seawall database: restore it from a backup or move it aside and start "
                "afresh (the checkpoint cache is rebuilt from the repositories)."
            ) from exc

    @contextlib.contextmanager
    def tx(self, *, write: bool = False) -> Iterator[Connection]:
        """One transaction; ``write`` takes the write lock at BEGIN (SQLite)."""
        guard = self._memory_lock or contextlib.nullcontext()
        with guard, self.errors(), self.engine.connect() as conn:
            if write:
                conn.execution_options(seawall_write=True)
            with conn.begin():
                yield conn

    def insert(self, table: sa.Table) -> pg_dialect.Insert | sqlite_dialect.Insert:
        """An INSERT that supports ON CONFLICT on both backends."""
        return pg_dialect.insert(table) if self.pg else sqlite_dialect.insert(table)


def inserted(conn: Connection, stmt: pg_dialect.Insert | sqlite_dialect.Insert) -> bool:
    """Whether an INSERT ... ON CONFLICT DO NOTHING inserted its row.

    Asked with RETURNING because ``rowcount`` of such an INSERT is -1 with psycopg.
    """
    table = stmt.table
    assert isinstance(table, sa.Table)
    return conn.execute(stmt.returning(*table.primary_key.columns)).first() is not None


def _reason(exc: sa_exc.DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
