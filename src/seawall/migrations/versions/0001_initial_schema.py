"""Initial schema: sites, policies, workloads, plans, checkpoint cache, runs, steps,
created resources, events, usage records and leases.

A frozen copy of the schema as released; it must not import ``seawall.db``, whose tables
keep changing. ``tests/db/test_migration.py`` checks that head equals ``seawall.db.metadata``.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.Float(precision=53)


def upgrade() -> None:
    for table in ("sites", "policies"):
        op.create_table(
            table,
            sa.Column("name", sa.String(63), nullable=False),
            sa.Column("doc", sa.JSON(), nullable=False),
            sa.PrimaryKeyConstraint("name", name=f"pk_{table}"),
        )
    op.create_table(
        "workloads",
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("doc", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_workloads"),
    )
    op.create_index("ix_workloads_project", "workloads", ["project"])
    op.create_table(
        "plans",
        sa.Column("workload", sa.String(63), nullable=False),
        sa.Column("target", sa.String(63), nullable=False),
        sa.Column("doc", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("workload", "target", name="pk_plans"),
    )

    op.create_table(
        "checkpoints",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("workload", sa.String(63), nullable=False),
        sa.Column("site", sa.String(63), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("doc", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_checkpoints"),
    )
    op.create_index("ix_checkpoints_workload", "checkpoints", ["workload"])
    op.create_index("ix_checkpoints_created_at", "checkpoints", ["created_at"])
    op.create_table(
        "checkpoint_sites",
        sa.Column("checkpoint_id", sa.String(128), nullable=False),
        sa.Column("site", sa.String(63), nullable=False),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["checkpoints.id"],
            name="fk_checkpoint_sites_checkpoint_id_checkpoints",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("checkpoint_id", "site", name="pk_checkpoint_sites"),
    )
    op.create_index("ix_checkpoint_sites_site", "checkpoint_sites", ["site"])

    op.create_table(
        "runs",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("workload", sa.String(63), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("doc", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name="pk_runs"),
        sa.UniqueConstraint("id", name="uq_runs_id"),
    )
    for column in ("kind", "workload", "state", "created_at"):
        op.create_index(f"ix_runs_{column}", "runs", [column])
    op.create_table(
        "steps",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("finished_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_steps_run_id_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("pk", name="pk_steps"),
        sa.UniqueConstraint("run_id", "name", name="uq_steps_run_id_name"),
    )
    op.create_table(
        "created_resources",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("site", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("resource_id", sa.String(255), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("removed", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_created_resources_run_id_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("pk", name="pk_created_resources"),
        sa.UniqueConstraint(
            "run_id",
            "site",
            "kind",
            "resource_id",
            name="uq_created_resources_run_id_site_kind_resource_id",
        ),
    )

    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("workload", sa.String(63), nullable=True),
        sa.Column("run_id", sa.String(128), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    for column in ("at", "workload", "run_id"):
        op.create_index(f"ix_events_{column}", "events", [column])
    op.create_table(
        "usage_records",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("amount", sa.Float(precision=53), nullable=False),
        sa.Column("workload", sa.String(63), nullable=True),
        sa.Column("at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_usage_records"),
    )
    op.create_index("ix_usage_records_project", "usage_records", ["project"])
    op.create_index("ix_usage_records_at", "usage_records", ["at"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("expires_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_leases"),
    )


def downgrade() -> None:
    # Children before parents (foreign keys); indexes go with their tables.
    for table in (
        "leases",
        "usage_records",
        "events",
        "created_resources",
        "steps",
        "runs",
        "checkpoint_sites",
        "checkpoints",
        "plans",
        "workloads",
        "policies",
        "sites",
    ):
        op.drop_table(table)
