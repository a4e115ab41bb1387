"""The change feed: each task's change number, tombstones, and each user's head.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from adapters.sql import row_security
from adapters.sql.tables import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_NEW_TABLES = ("task_tombstones", "sync_heads")


def upgrade() -> None:
    # Tasks written before the feed existed are change 0: a first sync lists them.
    op.add_column(
        "tasks", sa.Column("change_seq", sa.BigInteger, nullable=False, server_default="0")
    )
    op.create_index("tasks_user_change_idx", "tasks", ["user_id", "change_seq", "id"])
    op.create_table(
        "task_tombstones",
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("id", sa.Uuid(as_uuid=True), nullable=False),
        sa.Column("change_seq", sa.BigInteger, nullable=False),
        sa.Column("deleted_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "id", name="task_tombstones_pkey"),
    )
    op.create_index(
        "task_tombstones_user_change_idx", "task_tombstones", ["user_id", "change_seq", "id"]
    )
    # The purge's index: a user's oldest tombstones first.
    op.create_index(
        "task_tombstones_user_deleted_idx", "task_tombstones", ["user_id", "deleted_at"]
    )
    op.create_table(
        "sync_heads",
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("change_seq", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="sync_heads_pkey"),
    )
    if op.get_bind().dialect.name == "postgresql":
        for table in _NEW_TABLES:
            for statement in row_security.enable(table):
                op.execute(statement)


def downgrade() -> None:
    for table in _NEW_TABLES:
        op.drop_table(table)
    op.drop_index("tasks_user_change_idx", "tasks")
    op.drop_column("tasks", "change_seq")
