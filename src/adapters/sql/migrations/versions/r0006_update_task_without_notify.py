"""PostgreSQL: ``taskvault_update_task`` without its NOTIFY.

A NOTIFY in the transaction made its COMMIT hold PostgreSQL's notification
lock through the WAL flush, so that notifying commits flushed one at a time.
The application now notifies after the commit, for many users at once
(``adapters.asyncpg.notifier``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_FUNCTION = (
    "taskvault_update_task(owner text, task_id uuid, expected_version integer, "
    "new_title text, new_description text, new_completed boolean, new_priority smallint, "
    "new_due_at timestamptz, new_completed_at timestamptz, new_updated_at timestamptz, "
    "new_version integer, new_search_text text)"
)

# The setting is row_security.USER_SETTING and the channel the notifier's
# CHANNEL, as they are at this revision.
_BODY = """RETURNS void LANGUAGE plpgsql SECURITY INVOKER AS $$
DECLARE
    claimed bigint;
BEGIN
    PERFORM set_config('taskvault.user_id', owner, true);
    -- The head first, as in every write transaction: a user's writers lock
    -- in one order, and commit in number order.
    INSERT INTO sync_heads AS head (user_id, change_seq) VALUES (owner, 1)
    ON CONFLICT (user_id) DO UPDATE SET change_seq = head.change_seq + 1
    RETURNING head.change_seq INTO claimed;
    UPDATE tasks SET
        title = new_title, description = new_description, completed = new_completed,
        priority = new_priority, due_at = new_due_at, completed_at = new_completed_at,
        updated_at = new_updated_at, version = new_version, search_text = new_search_text,
        change_seq = claimed
    WHERE tasks.user_id = owner AND tasks.id = task_id AND tasks.version = expected_version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task not at the expected version' USING ERRCODE = 'TV001';
    END IF;
{notify}END
$$
"""

_NOTIFY = "    PERFORM pg_notify('taskvault_changes', owner);\n"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE OR REPLACE FUNCTION " + _FUNCTION + " " + _BODY.format(notify=""))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE OR REPLACE FUNCTION " + _FUNCTION + " " + _BODY.format(notify=_NOTIFY))
