"""Create the tasks table and the indexes behind every list order.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from adapters.sql.tables import TITLE_TYPE, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Every index leads with user_id: one user's rows are one index range, and the
# table can be distributed by user_id without changing a query.
_SORT_INDEXES = {
    "tasks_user_created_idx": "created_at",
    "tasks_user_updated_idx": "updated_at",
    "tasks_user_due_idx": "due_at",
    "tasks_user_priority_idx": "priority",
    "tasks_user_title_idx": "title",
}


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("id", sa.Uuid(as_uuid=True), nullable=False),
        sa.Column("title", TITLE_TYPE, nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("completed", sa.Boolean, nullable=False),
        sa.Column("priority", sa.SmallInteger, nullable=False),
        sa.Column("due_at", UTCDateTime, nullable=True),
        sa.Column("completed_at", UTCDateTime, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("search_text", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "id", name="tasks_pkey"),
        sa.CheckConstraint("priority IN (1, 2, 3)", name="tasks_priority_rank"),
        sa.CheckConstraint("version >= 1", name="tasks_version_positive"),
    )
    for name, column in _SORT_INDEXES.items():
        op.create_index(name, "tasks", ["user_id", column, "id"])
    if op.get_bind().dialect.name == "postgresql":
        # Descending due dates still put tasks without one last, which a
        # backward scan of the ascending index cannot do.
        op.create_index(
            "tasks_user_due_desc_idx",
            "tasks",
            ["user_id", sa.text("due_at DESC NULLS LAST"), sa.text("id DESC")],
        )


def downgrade() -> None:
    op.drop_table("tasks")
