"""Row-level security DDL for PostgreSQL, shared by the migrations."""

from __future__ import annotations

USER_SETTING = "taskvault.user_id"

# current_setting(..., true) is NULL when the transaction set no user, and a
# comparison with NULL admits no row.
_OWNER_IS_CURRENT_USER = f"user_id = current_setting('{USER_SETTING}', true)"


def enable(table: str) -> list[str]:
    """Statements that confine ``table`` to the transaction's user."""
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        # FORCE: the policy binds the table's owner too, not only other roles.
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY {table}_owner ON {table} "
        f"USING ({_OWNER_IS_CURRENT_USER}) WITH CHECK ({_OWNER_IS_CURRENT_USER})",
    ]


def disable(table: str) -> list[str]:
    return [
        f"DROP POLICY IF EXISTS {table}_owner ON {table}",
        f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY",
    ]
