"""Row-level security DDL for PostgreSQL, shared by the migrations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


ROLE_BYPASSES_RLS = (
    "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
)
"""One row: the connected role, and whether row-level security binds it."""


def bypass_warnings(row: Mapping[str, Any] | None) -> list[str]:
    """A warning when the role of ``ROLE_BYPASSES_RLS``'s row is not bound by RLS."""
    if row is not None and (row["rolsuper"] or row["rolbypassrls"]):
        return [
            f"database role {row['rolname']!r} is a superuser or has BYPASSRLS: "
            "row-level security does not apply to it; connect as an ordinary role"
        ]
    return []
