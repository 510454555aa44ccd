"""The state database: seawall's journal of sites, workloads, runs and what they did.

SQLite under ``$SEAWALL_HOME`` by default, PostgreSQL when one machine is not enough; the
schema is the same and is owned by Alembic (``seawall/migrations``). Opening a
:class:`StateStore` brings the schema to the newest revision, under a lock, so every
process that opens the database can assume the current schema.

Invariants this module keeps:

- Domain objects are stored as their :func:`seawall.model.dump` JSON in a ``doc`` column;
  the columns next to it are copies of the fields that are queried or indexed, written in
  the same statement, so they never disagree with ``doc``.
- Every public method is one short transaction. Read-modify-write methods take the write
  lock first (``BEGIN IMMEDIATE`` on SQLite, ``SELECT ... FOR UPDATE`` or a single
  conditional ``UPDATE`` on PostgreSQL), so several threads and processes may share one
  database without lost updates.
- State changes of runs and steps go through :func:`seawall.model.transition`; the database
  never holds a state the tables in the model do not allow.
- The checkpoint cache is only a cache: the repositories are the source of truth and the
  cache can be dropped and rebuilt from them. Everything else (sites, policies, workloads,
  plans, runs, what runs created) exists only here.

Errors: missing objects raise :class:`~seawall.errors.NotFound` naming the object and the
command that lists them; duplicates raise :class:`~seawall.errors.Conflict`; a busy or
unreachable database raises :class:`StateDatabaseBusy` (transient, retried); a damaged
one raises :class:`StateDatabaseError` (permanent, needs an operator).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine

from seawall import model
from seawall.errors import (
    Conflict,
    InvalidInput,
    InvalidTransition,
    NotFound,
    PermanentError,
    TransientError,
)
from seawall.model import (
    FINAL_RUN_STATES,
    RUN_TRANSITIONS,
    STEP_TRANSITIONS,
    Checkpoint,
    Policy,
    RecoveryPlan,
    Run,
    RunKind,
    RunState,
    Site,
    Step,
    StepState,
    Workload,
)

__all__ = [
    "CreatedRecord",
    "Event",
    "StateDatabaseBusy",
    "StateDatabaseError",
    "StateStore",
    "default_url",
    "metadata",
    "migration_config",
]

# --------------------------------------------------------------------------------------
# Errors and records
# --------------------------------------------------------------------------------------


class StateDatabaseBusy(TransientError):
    """The state database is locked by another process or cannot be reached; retry later."""


class StateDatabaseError(PermanentError):
    """The state database is damaged or from a newer seawall; it needs an operator."""


@dataclass(frozen=True)
class CreatedRecord:
    """One cloud resource a run created, kept so revert and drill clean-up can find it.

    Written before the run moves on (see :meth:`StateStore.record_created`), so a crash
    right after creating a resource still leaves a record of it.
    """

    run_id: str
    site: str
    kind: str
    resource_id: str
    key: str  #: the deterministic name/tag the resource was created under (find-or-create)
    created_at: float
    removed: bool = False


@dataclass(frozen=True)
class Event:
    """Something an operator may want to know about after the fact."""

    id: int
    at: float
    kind: str
    message: str
    severity: str = "info"
    workload: str | None = None
    run_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


SEVERITIES = ("debug", "info", "warning", "error", "critical")

# --------------------------------------------------------------------------------------
# Schema. The migrations in seawall/migrations/versions must produce exactly this; a test
# compares them with Alembic's autogenerate, so editing one without the other fails CI.
# --------------------------------------------------------------------------------------

#: Alembic's version table for seawall's schema. Not the default ``alembic_version``: the
#: TaskFlow engine keeps its own Alembic-managed tables in the same PostgreSQL database.
VERSION_TABLE = "seawall_alembic_version"

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_TIME = sa.Float(precision=53)  # double precision everywhere: epoch seconds need 52 bits

sites_t = sa.Table(
    "sites",
    metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("doc", sa.JSON, nullable=False),
)

policies_t = sa.Table(
    "policies",
    metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("doc", sa.JSON, nullable=False),
)

workloads_t = sa.Table(
    "workloads",
    metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("project", sa.String(255), nullable=False, index=True),
    sa.Column("doc", sa.JSON, nullable=False),
)

plans_t = sa.Table(
    "plans",
    metadata,
    sa.Column("workload", sa.String(63), primary_key=True),
    sa.Column("target", sa.String(63), primary_key=True),
    sa.Column("doc", sa.JSON, nullable=False),
)

checkpoints_t = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("workload", sa.String(63), nullable=False, index=True),
    sa.Column("site", sa.String(63), nullable=False),
    sa.Column("created_at", _TIME, nullable=False, index=True),
    sa.Column("doc", sa.JSON, nullable=False),
)

checkpoint_sites_t = sa.Table(
    "checkpoint_sites",
    metadata,
    sa.Column(
        "checkpoint_id",
        sa.String(128),
        sa.ForeignKey("checkpoints.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("site", sa.String(63), primary_key=True, index=True),
)

runs_t = sa.Table(
    "runs",
    metadata,
    # ``pk`` orders runs created in the same clock tick; ``id`` is the public name.
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(128), nullable=False, unique=True),
    sa.Column("kind", sa.String(32), nullable=False, index=True),
    sa.Column("workload", sa.String(63), nullable=False, index=True),
    sa.Column("state", sa.String(32), nullable=False, index=True),
    sa.Column("created_at", _TIME, nullable=False, index=True),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("doc", sa.JSON, nullable=False),
)

steps_t = sa.Table(
    "steps",
    metadata,
    # ``pk`` is the first-seen order of the run's steps.
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "run_id", sa.String(128), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("progress", sa.Float, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("started_at", _TIME, nullable=False),
    sa.Column("finished_at", _TIME, nullable=False),
    sa.UniqueConstraint("run_id", "name"),
)

created_t = sa.Table(
    "created_resources",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "run_id", sa.String(128), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("site", sa.String(63), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("resource_id", sa.String(255), nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("created_at", _TIME, nullable=False),
    sa.Column("removed", sa.Boolean, nullable=False, default=False),
    sa.UniqueConstraint("run_id", "site", "kind", "resource_id"),
)

events_t = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", _TIME, nullable=False, index=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("workload", sa.String(63), nullable=True, index=True),
    sa.Column("run_id", sa.String(128), nullable=True, index=True),
    sa.Column("data", sa.JSON, nullable=False),
)

usage_t = sa.Table(
    "usage_records",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(255), nullable=False, index=True),
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("amount", sa.Float(precision=53), nullable=False),
    sa.Column("workload", sa.String(63), nullable=True),
    sa.Column("at", _TIME, nullable=False, index=True),
)

leases_t = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("holder", sa.String(255), nullable=False),
    sa.Column("expires_at", _TIME, nullable=False),
)

# --------------------------------------------------------------------------------------
# URLs, engines and migrations
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


def _normalize(url: str) -> sa.URL:
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


def _sqlite_path(url: sa.URL) -> Path | None:
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
        path = _sqlite_path(url)
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


def migration_config(url: str, connection: Connection | None = None) -> Any:
    """The Alembic config for ``url`` (and optionally an open connection to migrate on).

    Returned as ``alembic.config.Config``; typed ``Any`` so importing this module does not
    import Alembic's type stubs. Used by :class:`StateStore` and by the migration tests.
    """
    from alembic.config import Config

    ini = resources.files("seawall") / "migrations" / "alembic.ini"
    cfg = Config(str(ini))
    cfg.set_main_option("script_location", "seawall:migrations")
    # configparser interpolation: a literal % in a password must be doubled
    cfg.set_main_option(
        "sqlalchemy.url", _normalize(url).render_as_string(hide_password=False).replace("%", "%%")
    )
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


# --------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------


class StateStore:
    """The state database of one seawall installation (see the module docstring)."""

    url: str

    def __init__(self, url: str | None = None, *, busy_timeout: float = 30.0) -> None:
        self.url = url or default_url()
        self._url = _normalize(self.url)
        self._shown = self._url.render_as_string(hide_password=True)
        self._busy_timeout = busy_timeout
        self._pg = self._url.get_backend_name() == "postgresql"
        # An in-memory SQLite database is one connection; threads take turns on it.
        self._memory_lock: threading.RLock | None = (
            threading.RLock() if not self._pg and _sqlite_path(self._url) is None else None
        )
        self._engine = _make_engine(self._url, busy_timeout)
        try:
            self._migrate()
        except BaseException:
            self._engine.dispose()
            raise

    def close(self) -> None:
        """Release every pooled connection; the store must not be used afterwards."""
        self._engine.dispose()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StateStore({self._shown!r})"

    # ---- transactions and error mapping ---------------------------------------------

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn driver errors into seawall's tree, naming the database and what to do."""
        try:
            yield
        except sa_exc.OperationalError as exc:
            reason = _reason(exc)
            if "locked" in reason or "busy" in reason:
                raise StateDatabaseBusy(
                    f"state database {self._shown} is locked by another process ({reason}); "
                    f"waited {self._busy_timeout:g}s. Retry, or find the process holding it."
                ) from exc
            if self._pg:
                raise StateDatabaseBusy(
                    f"cannot use state database {self._shown}: {reason}. "
                    "Check that PostgreSQL is running and the URL is right."
                ) from exc
            raise StateDatabaseError(
                f"cannot use state database {self._shown}: {reason}. Check the file's "
                "permissions and the free space of its file system."
            ) from exc
        except sa_exc.DBAPIError as exc:
            if isinstance(exc, sa_exc.IntegrityError):
                raise
            raise StateDatabaseError(
                f"state database {self._shown} is unusable: {_reason(exc)}. It is damaged or "
                "not a seawall database: restore it from a backup or move it aside and start "
                "afresh (the checkpoint cache is rebuilt from the repositories)."
            ) from exc

    @contextlib.contextmanager
    def _tx(self, *, write: bool = False) -> Iterator[Connection]:
        guard = self._memory_lock or contextlib.nullcontext()
        with guard, self._errors(), self._engine.connect() as conn:
            if write:
                conn.execution_options(seawall_write=True)
            with conn.begin():
                yield conn

    def _insert(self, table: sa.Table) -> pg_dialect.Insert | sqlite_dialect.Insert:
        """An INSERT that supports ON CONFLICT on both backends."""
        return pg_dialect.insert(table) if self._pg else sqlite_dialect.insert(table)

    def _migrate(self) -> None:
        """Bring the schema to head; only one process migrates, the others wait and see."""
        from alembic import command
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        script = ScriptDirectory.from_config(migration_config(self.url))
        heads = set(script.get_heads())

        def current(conn: Connection) -> set[str]:
            ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            revs = set(ctx.get_current_heads())
            unknown = [r for r in revs if r not in {s.revision for s in script.walk_revisions()}]
            if unknown:
                raise StateDatabaseError(
                    f"state database {self._shown} has schema revision {', '.join(unknown)}, "
                    "which this seawall does not know: it was written by a newer seawall. "
                    "Upgrade seawall."
                )
            return revs

        with self._errors():
            with self._engine.connect() as conn:
                if current(conn) == heads:
                    return
            with self._migration_lock(), self._engine.connect() as conn:
                if not self._pg:
                    # Persistent per file; set once here, under the lock, not per connection.
                    # (on the driver's connection: SQLAlchemy would wrap it in a BEGIN)
                    raw = conn.connection.driver_connection
                    assert raw is not None
                    raw.execute("PRAGMA journal_mode=WAL").close()
                conn.execution_options(seawall_write=True)
                with conn.begin():
                    self._adopt_legacy_version_table(conn, script)
                    if current(conn) == heads:
                        return
                    command.upgrade(migration_config(self.url, conn), "head")

    @staticmethod
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
    def _migration_lock(self) -> Iterator[None]:
        """A lock across processes: a PostgreSQL advisory lock, or a lock file beside SQLite."""
        if self._pg:
            key = 0x5EA3A11  # "seawall": any constant shared by every seawall process
            with self._engine.connect() as conn:
                conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
            return
        path = _sqlite_path(self._url)
        if path is None:
            yield
            return
        with open(f"{path}.migrate-lock", "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    # ---- sites, policies, workloads, plans -------------------------------------------

    def add_site(self, site: Site) -> None:
        """Record a site; Conflict if the name is taken (sites are renamed by remove + add)."""
        self._add(sites_t, "site", site.name, {"name": site.name, "doc": model.dump(site)})

    def get_site(self, name: str) -> Site:
        return model.load(Site, self._get_doc(sites_t, "site", name))

    def list_sites(self) -> list[Site]:
        return [model.load(Site, d) for d in self._list_docs(sites_t)]

    def remove_site(self, name: str) -> None:
        self._remove(sites_t, "site", name)

    def add_policy(self, policy: Policy) -> None:
        """Record a policy; Conflict if the name is taken."""
        self._add(
            policies_t, "policy", policy.name, {"name": policy.name, "doc": model.dump(policy)}
        )

    def get_policy(self, name: str) -> Policy:
        return model.load(Policy, self._get_doc(policies_t, "policy", name))

    def list_policies(self) -> list[Policy]:
        return [model.load(Policy, d) for d in self._list_docs(policies_t)]

    def remove_policy(self, name: str) -> None:
        self._remove(policies_t, "policy", name)

    def add_workload(self, w: Workload) -> None:
        """Record a workload; Conflict if the name is taken."""
        self._add(workloads_t, "workload", w.name, _workload_row(w))

    def get_workload(self, name: str) -> Workload:
        return model.load(Workload, self._get_doc(workloads_t, "workload", name))

    def list_workloads(self, project: str | None = None) -> list[Workload]:
        where = [] if project is None else [workloads_t.c.project == project]
        return [model.load(Workload, d) for d in self._list_docs(workloads_t, *where)]

    def update_workload(self, w: Workload) -> None:
        """Replace a workload's definition; NotFound if it was never added."""
        with self._tx(write=True) as conn:
            res = conn.execute(
                sa.update(workloads_t).where(workloads_t.c.name == w.name).values(_workload_row(w))
            )
            if res.rowcount == 0:
                raise _not_found("workload", w.name)

    def remove_workload(self, name: str) -> None:
        """Remove a workload and its recovery plans; its runs and checkpoints stay as history."""
        with self._tx(write=True) as conn:
            res = conn.execute(sa.delete(workloads_t).where(workloads_t.c.name == name))
            if res.rowcount == 0:
                raise _not_found("workload", name)
            conn.execute(sa.delete(plans_t).where(plans_t.c.workload == name))

    def set_plan(self, plan: RecoveryPlan) -> None:
        """Create or replace the plan for (workload, target): there is one per pair."""
        values = {"workload": plan.workload, "target": plan.target, "doc": model.dump(plan)}
        stmt = self._insert(plans_t).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[plans_t.c.workload, plans_t.c.target], set_={"doc": stmt.excluded.doc}
        )
        with self._tx(write=True) as conn:
            conn.execute(stmt)

    def get_plan(self, workload: str, target: str) -> RecoveryPlan:
        with self._tx() as conn:
            doc = conn.execute(
                sa.select(plans_t.c.doc).where(
                    plans_t.c.workload == workload, plans_t.c.target == target
                )
            ).scalar_one_or_none()
        if doc is None:
            raise NotFound(
                f"no recovery plan for workload {workload!r} to site {target!r}; "
                f"`seawall plan show {workload}` lists the workload's plans"
            )
        return model.load(RecoveryPlan, doc)

    def list_plans(self, workload: str | None = None) -> list[RecoveryPlan]:
        q = sa.select(plans_t.c.doc).order_by(plans_t.c.workload, plans_t.c.target)
        if workload is not None:
            q = q.where(plans_t.c.workload == workload)
        with self._tx() as conn:
            docs = conn.execute(q).scalars().all()
        return [model.load(RecoveryPlan, d) for d in docs]

    def _add(self, table: sa.Table, what: str, name: str, values: Mapping[str, Any]) -> None:
        stmt = self._insert(table).values(dict(values)).on_conflict_do_nothing()
        with self._tx(write=True) as conn:
            if not _inserted(conn, stmt):
                raise _conflict(what, name)

    def _get_doc(self, table: sa.Table, what: str, name: str) -> Any:
        key = next(iter(table.primary_key.columns))
        with self._tx() as conn:
            doc = conn.execute(sa.select(table.c.doc).where(key == name)).scalar_one_or_none()
        if doc is None:
            raise _not_found(what, name)
        return doc

    def _list_docs(self, table: sa.Table, *where: sa.ColumnElement[bool]) -> list[Any]:
        key = next(iter(table.primary_key.columns))
        with self._tx() as conn:
            return list(conn.execute(sa.select(table.c.doc).where(*where).order_by(key)).scalars())

    def _remove(self, table: sa.Table, what: str, name: str) -> None:
        key = next(iter(table.primary_key.columns))
        with self._tx(write=True) as conn:
            if conn.execute(sa.delete(table).where(key == name)).rowcount == 0:
                raise _not_found(what, name)

    # ---- checkpoint cache ----------------------------------------------------------

    def put_checkpoint(self, cp: Checkpoint, *, sites: Sequence[str]) -> None:
        """Cache a checkpoint and the sites holding a copy; repeating it only adds sites.

        Idempotent so a cache rebuild, a replication and the original protect run can all
        report the same checkpoint without coordinating.
        """
        values = {
            "id": cp.id,
            "workload": cp.workload,
            "site": cp.site,
            "created_at": cp.created_at,
            "doc": model.dump(cp),
        }
        stmt = self._insert(checkpoints_t).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[checkpoints_t.c.id],
            set_={k: getattr(stmt.excluded, k) for k in values if k != "id"},
        )
        with self._tx(write=True) as conn:
            conn.execute(stmt)
            for site in sorted(set(sites)):
                conn.execute(
                    self._insert(checkpoint_sites_t)
                    .values(checkpoint_id=cp.id, site=site)
                    .on_conflict_do_nothing()
                )

    def get_checkpoint(self, id: str) -> Checkpoint:
        return model.load(Checkpoint, self._get_doc(checkpoints_t, "checkpoint", id))

    def list_checkpoints(
        self, workload: str | None = None, site: str | None = None
    ) -> list[Checkpoint]:
        """Checkpoints, newest first; ``site`` keeps those with a copy at that site."""
        q = sa.select(checkpoints_t.c.doc).order_by(
            checkpoints_t.c.created_at.desc(), checkpoints_t.c.id.desc()
        )
        if workload is not None:
            q = q.where(checkpoints_t.c.workload == workload)
        if site is not None:
            held = sa.select(checkpoint_sites_t.c.checkpoint_id).where(
                checkpoint_sites_t.c.site == site
            )
            q = q.where(checkpoints_t.c.id.in_(held))
        with self._tx() as conn:
            docs = conn.execute(q).scalars().all()
        return [model.load(Checkpoint, d) for d in docs]

    def checkpoint_sites(self, id: str) -> list[str]:
        with self._tx() as conn:
            if not conn.execute(
                sa.select(checkpoints_t.c.id).where(checkpoints_t.c.id == id)
            ).first():
                raise _not_found("checkpoint", id)
            return list(
                conn.execute(
                    sa.select(checkpoint_sites_t.c.site)
                    .where(checkpoint_sites_t.c.checkpoint_id == id)
                    .order_by(checkpoint_sites_t.c.site)
                ).scalars()
            )

    def remove_checkpoint(self, id: str) -> None:
        with self._tx(write=True) as conn:
            conn.execute(
                sa.delete(checkpoint_sites_t).where(checkpoint_sites_t.c.checkpoint_id == id)
            )
            if conn.execute(sa.delete(checkpoints_t).where(checkpoints_t.c.id == id)).rowcount == 0:
                raise _not_found("checkpoint", id)

    # ---- runs and steps ------------------------------------------------------------

    def add_run(self, run: Run) -> None:
        """Record a new run; a zero ``created_at`` is stamped with the current time."""
        if not run.created_at:
            run = dataclasses.replace(run, created_at=time.time())
        values = {**_run_row(run), "cancel_requested": run.state is RunState.CANCELLING}
        with self._tx(write=True) as conn:
            stmt = self._insert(runs_t).values(values).on_conflict_do_nothing()
            if not _inserted(conn, stmt):
                raise _conflict("run", run.id)

    def get_run(self, id: str) -> Run:
        with self._tx() as conn:
            doc = conn.execute(
                sa.select(runs_t.c.doc).where(runs_t.c.id == id)
            ).scalar_one_or_none()
        if doc is None:
            raise _not_found("run", id)
        return model.load(Run, doc)

    def list_runs(
        self,
        workload: str | None = None,
        states: Iterable[RunState] | None = None,
        kind: RunKind | str | None = None,
        limit: int = 100,
    ) -> list[Run]:
        """Runs, newest first, at most ``limit`` of them."""
        q = sa.select(runs_t.c.doc).order_by(runs_t.c.created_at.desc(), runs_t.c.pk.desc())
        if workload is not None:
            q = q.where(runs_t.c.workload == workload)
        if states is not None:
            q = q.where(runs_t.c.state.in_([RunState(s).value for s in states]))
        if kind is not None:
            q = q.where(runs_t.c.kind == RunKind(kind).value)
        with self._tx() as conn:
            docs = conn.execute(q.limit(limit)).scalars().all()
        return [model.load(Run, d) for d in docs]

    def set_run_state(
        self,
        id: str,
        state: RunState,
        *,
        error: str | None = None,
        result: Mapping[str, Any] | None = None,
    ) -> Run:
        """Move a run along RUN_TRANSITIONS (InvalidTransition otherwise) and return it.

        Final states stamp ``finished_at``; ``result`` is merged into the run's result so
        steps that reported figures earlier keep them.
        """
        with self._tx(write=True) as conn:
            run, cancel = self._lock_run(conn, id)
            new = model.transition(run.state, RunState(state), RUN_TRANSITIONS)
            changes: dict[str, Any] = {"state": new}
            if new in FINAL_RUN_STATES:
                changes["finished_at"] = time.time()
            if error is not None:
                changes["error"] = error
            if result:
                changes["result"] = {**run.result, **result}
            run = dataclasses.replace(run, **changes)
            self._write_run(conn, run, cancel or new is RunState.CANCELLING)
        return run

    def update_run_result(self, id: str, result: Mapping[str, Any]) -> None:
        """Merge ``result`` into the run's result (figures arrive step by step)."""
        with self._tx(write=True) as conn:
            run, cancel = self._lock_run(conn, id)
            self._write_run(conn, dataclasses.replace(run, result={**run.result, **result}), cancel)

    def request_cancel(self, id: str) -> None:
        """Ask a run to stop at its next step boundary; the runner reads :meth:`cancel_requested`.

        Conflict if the run already finished, so ``seawall run cancel`` can say so.
        """
        with self._tx(write=True) as conn:
            run, _ = self._lock_run(conn, id)
            if run.state in FINAL_RUN_STATES:
                raise InvalidTransition(
                    f"run {id!r} already finished ({run.state.value}); nothing to cancel"
                )
            conn.execute(sa.update(runs_t).where(runs_t.c.id == id).values(cancel_requested=True))

    def cancel_requested(self, id: str) -> bool:
        with self._tx() as conn:
            flag = conn.execute(
                sa.select(runs_t.c.cancel_requested).where(runs_t.c.id == id)
            ).scalar_one_or_none()
        if flag is None:
            raise _not_found("run", id)
        return bool(flag)

    def _lock_run(self, conn: Connection, id: str) -> tuple[Run, bool]:
        row = conn.execute(
            sa.select(runs_t.c.doc, runs_t.c.cancel_requested)
            .where(runs_t.c.id == id)
            # NO KEY UPDATE: steps' foreign-key checks on this run need not wait for us
            .with_for_update(key_share=True)
        ).first()
        if row is None:
            raise _not_found("run", id)
        return model.load(Run, row.doc), bool(row.cancel_requested)

    def _write_run(self, conn: Connection, run: Run, cancel: bool) -> None:
        conn.execute(
            sa.update(runs_t)
            .where(runs_t.c.id == run.id)
            .values({**_run_row(run), "cancel_requested": cancel})
        )

    def set_step(
        self,
        run_id: str,
        name: str,
        state: StepState,
        *,
        progress: float | None = None,
        detail: str | None = None,
    ) -> None:
        """Create or move a step of a run.

        A step seen for the first time may be recorded in any state (a resumed run may
        report a step it finished before the crash); after that every change follows
        STEP_TRANSITIONS. RUNNING stamps ``started_at`` once; DONE, FAILED, SKIPPED and
        REVERTED stamp ``finished_at``.
        """
        state = StepState(state)
        now = time.time()
        with self._tx(write=True) as conn:
            if not conn.execute(sa.select(runs_t.c.pk).where(runs_t.c.id == run_id)).first():
                raise _not_found("run", run_id)
            fresh = _step_times(Step(run_id, name, StepState.PENDING), state, now, progress, detail)
            stmt = self._insert(steps_t).values(_step_row(fresh)).on_conflict_do_nothing()
            if _inserted(conn, stmt):
                return
            row = conn.execute(
                sa.select(steps_t)
                .where(steps_t.c.run_id == run_id, steps_t.c.name == name)
                .with_for_update()
            ).one()
            step = _step_from(row)
            model.transition(step.state, state, STEP_TRANSITIONS)
            step = _step_times(step, state, now, progress, detail)
            conn.execute(sa.update(steps_t).where(steps_t.c.pk == row.pk).values(_step_row(step)))

    def list_steps(self, run_id: str) -> list[Step]:
        """The run's steps in the order they were first reported."""
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(steps_t).where(steps_t.c.run_id == run_id).order_by(steps_t.c.pk)
            ).all()
        return [_step_from(r) for r in rows]

    # ---- what runs created ---------------------------------------------------------

    def record_created(self, run_id: str, site: str, kind: str, resource_id: str, key: str) -> None:
        """Remember a resource the run created; committed before returning, and idempotent.

        Callers record right after the cloud answers and before the next step, so a crash
        loses at most a resource that can still be found by its deterministic ``key``.
        """
        values = {
            "run_id": run_id,
            "site": site,
            "kind": str(kind),
            "resource_id": resource_id,
            "key": key,
            "created_at": time.time(),
            "removed": False,
        }
        with self._tx(write=True) as conn:
            if not conn.execute(sa.select(runs_t.c.pk).where(runs_t.c.id == run_id)).first():
                raise _not_found("run", run_id)
            conn.execute(self._insert(created_t).values(values).on_conflict_do_nothing())

    def list_created(self, run_id: str) -> list[CreatedRecord]:
        """In creation order; revert walks it backwards."""
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(created_t).where(created_t.c.run_id == run_id).order_by(created_t.c.pk)
            ).all()
        return [
            CreatedRecord(
                run_id=r.run_id,
                site=r.site,
                kind=r.kind,
                resource_id=r.resource_id,
                key=r.key,
                created_at=r.created_at,
                removed=bool(r.removed),
            )
            for r in rows
        ]

    def mark_removed(self, run_id: str, kind: str, resource_id: str) -> None:
        """Note that a created resource is gone; a no-op if it was never recorded."""
        with self._tx(write=True) as conn:
            conn.execute(
                sa.update(created_t)
                .where(
                    created_t.c.run_id == run_id,
                    created_t.c.kind == str(kind),
                    created_t.c.resource_id == resource_id,
                )
                .values(removed=True)
            )

    # ---- events and usage ----------------------------------------------------------

    def add_event(
        self,
        kind: str,
        message: str,
        *,
        severity: str = "info",
        workload: str | None = None,
        run_id: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> int:
        """Append an event and return its id (ids grow with time)."""
        if severity not in SEVERITIES:
            raise InvalidInput(
                f"{severity!r} is not one of {', '.join(SEVERITIES)}", field="event.severity"
            )
        values = {
            "at": time.time(),
            "kind": kind,
            "severity": severity,
            "message": message,
            "workload": workload,
            "run_id": run_id,
            "data": model.dump(dict(data or {})),
        }
        with self._tx(write=True) as conn:
            pk = conn.execute(
                sa.insert(events_t).values(values).returning(events_t.c.id)
            ).scalar_one()
        return int(pk)

    def list_events(
        self, workload: str | None = None, since: float | None = None, limit: int = 100
    ) -> list[Event]:
        """Events newest first (so ``limit`` keeps the most recent), from ``since`` on."""
        q = sa.select(events_t).order_by(events_t.c.id.desc()).limit(limit)
        if workload is not None:
            q = q.where(events_t.c.workload == workload)
        if since is not None:
            q = q.where(events_t.c.at >= since)
        with self._tx() as conn:
            rows = conn.execute(q).all()
        return [
            Event(
                id=r.id,
                at=r.at,
                kind=r.kind,
                message=r.message,
                severity=r.severity,
                workload=r.workload,
                run_id=r.run_id,
                data=r.data,
            )
            for r in rows
        ]

    def add_usage(
        self,
        project: str,
        metric: str,
        amount: float,
        *,
        workload: str | None = None,
        at: float | None = None,
    ) -> None:
        """Append one usage record; records are summed, never updated, so billing can audit."""
        values = {
            "project": project,
            "metric": metric,
            "amount": float(amount),
            "workload": workload,
            "at": time.time() if at is None else at,
        }
        with self._tx(write=True) as conn:
            conn.execute(sa.insert(usage_t).values(values))

    def usage(
        self, project: str | None = None, since: float | None = None
    ) -> dict[str, dict[str, float]]:
        """Sums per project and metric, optionally of one project and from ``since`` on."""
        q = sa.select(usage_t.c.project, usage_t.c.metric, sa.func.sum(usage_t.c.amount)).group_by(
            usage_t.c.project, usage_t.c.metric
        )
        if project is not None:
            q = q.where(usage_t.c.project == project)
        if since is not None:
            q = q.where(usage_t.c.at >= since)
        out: dict[str, dict[str, float]] = {}
        with self._tx() as conn:
            for proj, metric, total in conn.execute(q):
                out.setdefault(proj, {})[metric] = float(total)
        return out

    # ---- leases ----------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew lease ``name`` for ``ttl`` seconds; False if another holds it.

        One conditional UPDATE then an INSERT ... ON CONFLICT DO NOTHING, so exactly one
        of several racing holders wins on both backends. Expiry uses the callers' clocks:
        hosts sharing a PostgreSQL lease must keep their clocks within a fraction of ``ttl``.
        """
        if ttl <= 0:
            raise InvalidInput("must be positive", field="lease.ttl")
        now = time.time()
        with self._tx(write=True) as conn:
            res = conn.execute(
                sa.update(leases_t)
                .where(
                    leases_t.c.name == name,
                    sa.or_(leases_t.c.holder == holder, leases_t.c.expires_at <= now),
                )
                .values(holder=holder, expires_at=now + ttl)
            )
            if res.rowcount:
                return True
            stmt = (
                self._insert(leases_t)
                .values(name=name, holder=holder, expires_at=now + ttl)
                .on_conflict_do_nothing()
            )
            return _inserted(conn, stmt)

    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up early; a no-op unless ``holder`` holds it."""
        with self._tx(write=True) as conn:
            conn.execute(
                sa.delete(leases_t).where(leases_t.c.name == name, leases_t.c.holder == holder)
            )

    # ---- service mode: one query for every workload (scheduler, API, metrics) ---------

    def checkpoint_times(self) -> dict[tuple[str, str], tuple[float, float]]:
        """(workload, site) -> (oldest, newest) checkpoint creation time held at that site.

        One grouped query, so a scheduler tick over thousands of workloads stays cheap.
        """
        c, s = checkpoints_t, checkpoint_sites_t
        q = (
            sa.select(
                c.c.workload, s.c.site, sa.func.min(c.c.created_at), sa.func.max(c.c.created_at)
            )
            .join(s, s.c.checkpoint_id == c.c.id)
            .group_by(c.c.workload, s.c.site)
        )
        with self._tx() as conn:
            return {(w, site): (float(lo), float(hi)) for w, site, lo, hi in conn.execute(q)}

    def latest_runs(self) -> dict[tuple[str, str], Run]:
        """(workload, run kind) -> that workload's newest run of that kind."""
        newest = sa.select(sa.func.max(runs_t.c.pk)).group_by(runs_t.c.workload, runs_t.c.kind)
        q = sa.select(runs_t.c.doc).where(runs_t.c.pk.in_(newest))
        with self._tx() as conn:
            runs = [model.load(Run, d) for d in conn.execute(q).scalars()]
        return {(r.workload, r.kind.value): r for r in runs}

    def last_event_id(self) -> int:
        with self._tx() as conn:
            return int(conn.execute(sa.select(sa.func.max(events_t.c.id))).scalar() or 0)


# --------------------------------------------------------------------------------------
# Row <-> model helpers
# --------------------------------------------------------------------------------------

_LIST_COMMANDS = {
    "site": "seawall site list",
    "policy": "seawall policy list",
    "workload": "seawall workload list",
    "checkpoint": "seawall checkpoint list",
    "run": "seawall run list",
}


def _not_found(what: str, name: str) -> NotFound:
    return NotFound(f"{what} {name!r} not found; `{_LIST_COMMANDS[what]}` shows what exists")


def _conflict(what: str, name: str) -> Conflict:
    return Conflict(f"{what} {name!r} already exists; pick another name or remove it first")


def _inserted(conn: Connection, stmt: pg_dialect.Insert | sqlite_dialect.Insert) -> bool:
    """Whether an INSERT ... ON CONFLICT DO NOTHING inserted its row.

    Asked with RETURNING because ``rowcount`` of such an INSERT is -1 with psycopg.
    """
    table = stmt.table
    assert isinstance(table, sa.Table)
    return conn.execute(stmt.returning(*table.primary_key.columns)).first() is not None


def _reason(exc: sa_exc.DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)


def _workload_row(w: Workload) -> dict[str, Any]:
    return {"name": w.name, "project": w.project, "doc": model.dump(w)}


def _run_row(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "kind": run.kind.value,
        "workload": run.workload,
        "state": run.state.value,
        "created_at": run.created_at,
        "doc": model.dump(run),
    }


_STEP_FINISHED = frozenset(
    {StepState.DONE, StepState.FAILED, StepState.SKIPPED, StepState.REVERTED}
)


def _step_times(
    step: Step, state: StepState, now: float, progress: float | None, detail: str | None
) -> Step:
    started, finished = step.started_at, step.finished_at
    if state is StepState.RUNNING:
        started = started or now
        finished = 0.0
    elif state in _STEP_FINISHED:
        finished = now
    if progress is None and state is StepState.DONE:
        progress = 1.0
    return dataclasses.replace(
        step,
        state=state,
        progress=step.progress if progress is None else float(progress),
        detail=step.detail if detail is None else detail,
        started_at=started,
        finished_at=finished,
    )


def _step_row(step: Step) -> dict[str, Any]:
    return {
        "run_id": step.run_id,
        "name": step.name,
        "state": step.state.value,
        "progress": step.progress,
        "detail": step.detail,
        "started_at": step.started_at,
        "finished_at": step.finished_at,
    }


def _step_from(row: sa.Row[Any]) -> Step:
    return Step(
        run_id=row.run_id,
        name=row.name,
        state=StepState(row.state),
        progress=row.progress,
        detail=row.detail,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )
