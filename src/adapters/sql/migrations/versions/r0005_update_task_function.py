"""PostgreSQL: a task's conditional update as one call, committed on its own.

A plain statement cannot set row-level security's user for itself before its
own scan of ``tasks``: the planner folds the policy and the owner filter into
a one-time filter that runs before any CTE. A function's statements run one
after another, so one call can set the user, claim the change number and
update: one round trip instead of four. It runs with the caller's rights
(SECURITY INVOKER), so row-level security binds it like any statement.

Nothing matched (another write got there first) raises ``TV001``: the head's
claim and the NOTIFY are rolled back with it, and no trace is left.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_FUNCTION = (
    "taskvault_update_task(owner text, task_id uuid, expected_version integer, "
    "new_title text, new_description text, new_completed boolean, new_priority smallint, "
    "new_due_at timestamptz, new_completed_at timestamptz, new_updated_at timestamptz, "
    "new_version integer, new_search_text text)"
)

# The setting is row_security.USER_SETTING and the channel the asyncpg store's
# CHANGES_CHANNEL, as they are at this revision.
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
    PERFORM pg_notify('taskvault_changes', owner);
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE FUNCTION " + _FUNCTION + " " + _BODY)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION " + _FUNCTION)
