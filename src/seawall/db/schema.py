"""The schema of the state database: every table, as SQLAlchemy Core metadata.

The migrations in ``seawall/migrations/versions`` must produce exactly this; a test
compares them with Alembic's autogenerate, so editing one without the other fails CI
(docs/design/state-database.md, "Writing a migration"). Index columns (``runs.state``,
``workloads.project`` ...) are copies of fields of the ``doc`` beside them; only the
stores write them, in the same statement as the document.
"""

from __future__ import annotations

import sqlalchemy as sa

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

audit_t = sa.Table(
    "audit",
    metadata,
    # ``id`` grows with time: "newest first" and paging by id need no clock.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", _TIME, nullable=False, index=True),
    sa.Column("action", sa.String(128), nullable=False, index=True),
    sa.Column("outcome", sa.String(16), nullable=False, index=True),
    sa.Column("user", sa.String(255), nullable=False, index=True),
    sa.Column("project", sa.String(255), nullable=False, index=True),
    sa.Column("project_id", sa.String(255), nullable=False, index=True),
    sa.Column("doc", sa.JSON, nullable=False),
)
