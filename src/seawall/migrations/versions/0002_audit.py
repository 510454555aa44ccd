"""The audit trail: one row per audited action (issue 12), its doc beside the columns
``GET /v1/audit`` filters on.

A frozen copy of the table as released; it must not import ``seawall.db``.

Revision ID: 0002_audit
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_audit"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXED = ("at", "action", "outcome", "user", "project", "project_id")


def upgrade() -> None:
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.Float(precision=53), nullable=False),
        sa.Column("action", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("doc", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit"),
    )
    for column in INDEXED:
        op.create_index(f"ix_audit_{column}", "audit", [column])


def downgrade() -> None:
    for column in INDEXED:
        op.drop_index(f"ix_audit_{column}", table_name="audit")
    op.drop_table("audit")
