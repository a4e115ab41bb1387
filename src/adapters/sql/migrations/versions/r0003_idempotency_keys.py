"""Idempotency keys of POST /tasks, kept beside the tasks they created.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from adapters.sql import row_security
from adapters.sql.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("task", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "key", name="idempotency_keys_pkey"),
    )
    op.create_index(
        "idempotency_keys_user_created_idx", "idempotency_keys", ["user_id", "created_at"]
    )
    if op.get_bind().dialect.name == "postgresql":
        for statement in row_security.enable("idempotency_keys"):
            op.execute(statement)


def downgrade() -> None:
    op.drop_table("idempotency_keys")
