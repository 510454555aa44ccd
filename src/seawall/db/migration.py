"""Bringing a state database to head at open, one process at a time.

Invariant 1 of docs/design/state-database.md: the schema is at head before any other
statement runs. Only one process migrates (a PostgreSQL advisory lock, or an ``flock`` on
``state.db.migrate-lock`` beside a SQLite file); the others wait, see head and go on. A
revision this seawall does not know (written by a newer one) is refused, never upgraded.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from importlib import resources
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from seawall.db.connection import Database, normalize_url, sqlite_path
from seawall.db.errors import StateDatabaseError
from seawall.db.schema import VERSION_TABLE


def migration_config(url: str, connection: Connection | None = None) -> Any:
    """The Alembic config for ``url`` (and optionally an open connection to migrate on).

    Returned as ``alembic.config.Config``; typed ``Any`` so importing this module does not
    import Alembic's type stubs. Used by :class:`~seawall.db.StateStore` and by the
    migration tests.
    """
    from alembic.config import Config

    ini = resources.files("seawall") / "migrations" / "alembic.ini"
    cfg = Config(str(ini))
    cfg.set_main_option("script_location", "seawall:migrations")
    # configparser interpolation: a literal % in a password must be doubled
    cfg.set_main_option(
        "sqlalchemy.url",
        normalize_url(url).render_as_string(hide_password=False).replace("%", "%%"),
    )
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def migrate_to_head(db: Database) -> None:
    """Bring the schema to head; only one process migrates, the others wait and see."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migration_config(db.url))
    heads = set(script.get_heads())

    def current(conn: Connection) -> set[str]:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        revs = set(ctx.get_current_heads())
        unknown = [r for r in revs if r not in {s.revision for s in script.walk_revisions()}]
        if unknown:
            raise StateDatabaseError(
                f"state database {db.shown} has schema revision {', '.join(unknown)}, "
                "which this seawall does not know: it was written by a newer seawall. "
                "Upgrade seawall."
            )
        return revs

    with db.errors():
        with db.engine.connect() as conn:
            if current(conn) == heads:
                return
        with _migration_lock(db), db.engine.connect() as conn:
            if not db.pg:
                # Persistent per file; set once here, under the lock, not per connection.
                # (on the driver's connection: SQLAlchemy would wrap it in a BEGIN)
                raw = conn.connection.driver_connection
                assert raw is not None
                raw.execute("PRAGMA journal_mode=WAL").close()
            conn.execution_options(seawall_write=True)
            with conn.begin():
                _adopt_legacy_version_table(conn, script)
                if current(conn) == heads:
                    return
                command.upgrade(migration_config(db.url, conn), "head")


def _adopt_legacy_version_table(conn: Connection, script: Any) -> None:
    """Databases made before seawall had its own version table recorded their
    revision in Alembic's default ``alembic_version``; move it over, once."""
    names = set(sa.inspect(conn).get_table_names())
    if VERSION_TABLE in names or "alembic_version" not in names:
        return
    ours = {s.revision for s in script.walk_revisions()}
    rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    mine = [r for r in rows if r in ours]
    if not mine or "sites" not in names:
        return
    conn.execute(
        sa.text(f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
    )
    for rev in mine:
        conn.execute(sa.text(f"INSERT INTO {VERSION_TABLE} VALUES (:r)"), {"r": rev})
        conn.execute(sa.text("DELETE FROM alembic_version WHERE version_num = :r"), {"r": rev})


@contextlib.contextmanager
def _migration_lock(db: Database) -> Iterator[None]:
    """A lock across processes: a PostgreSQL advisory lock, or a lock file beside SQLite."""
    if db.pg:
        key = 0x5EA3A11  # "seawall": any constant shared by every seawall process
        with db.engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    path = sqlite_path(db.parsed)
    if path is None:
        yield
        return
    with open(f"{path}.migrate-lock", "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
