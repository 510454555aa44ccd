"""The state database: seawall's journal of sites, workloads, runs and what they did.

SQLite under ``$SEAWALL_HOME`` by default, PostgreSQL when one machine is not enough; the
schema is the same and is owned by Alembic (``seawall/migrations``). Opening a
:class:`StateStore` brings the schema to the newest revision, under a lock, so every
process that opens the database can assume the current schema. The design, with its
invariants and tables, is docs/design/state-database.md.

The modules, each using only those below it::

    store       StateStore: opens, migrates, offers every part's methods under one name
    catalogue   sites, policies, workloads, recovery plans, the checkpoint cache
    runs        runs, steps and their state transitions, cancel requests, created journal
    events      events, usage records and the audit trail (append-only)
    leases      named expiring leases (the scheduler's leader and operations)
    migration   the Alembic config; migration to head at open, one process at a time
    connection  URLs, SQLite/PostgreSQL engines and pragmas, transactions, error mapping
    schema      the tables (SQLAlchemy metadata) the migrations must produce
    errors      StateDatabaseBusy, StateDatabaseError, the NotFound/Conflict messages

Invariants the package keeps:

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

from seawall.db.catalogue import CatalogueStore
from seawall.db.connection import default_url
from seawall.db.errors import StateDatabaseBusy, StateDatabaseError
from seawall.db.events import SEVERITIES, Event, EventStore
from seawall.db.leases import LeaseStore
from seawall.db.migration import migration_config
from seawall.db.runs import CreatedRecord, RunStore
from seawall.db.schema import VERSION_TABLE, metadata
from seawall.db.store import StateStore

__all__ = [
    "SEVERITIES",
    "VERSION_TABLE",
    "CatalogueStore",
    "CreatedRecord",
    "Event",
    "EventStore",
    "LeaseStore",
    "RunStore",
    "StateDatabaseBusy",
    "StateDatabaseError",
    "StateStore",
    "default_url",
    "metadata",
    "migration_config",
]
