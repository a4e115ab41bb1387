"""Row-level security for PostgreSQL: the DDL the migrations share, and how a
transaction sets its user."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

USER_SETTING = "taskvault.user_id"

PROPAGATE_TO_WORKERS = "SET LOCAL citus.propagate_set_commands = 'local'"
"""Citus: the transaction's later ``SET LOCAL`` reach every worker it touches.

A setting of no effect on plain PostgreSQL. Set per transaction, so that the
operator need not set it for the app's role, and a pooler in transaction
mode (which forwards no startup settings) changes nothing.
"""


def set_user(owner: str) -> str:
    """``SET LOCAL`` of row-level security's user to ``owner``, for the transaction.

    ``set_config`` would do on one server, but Citus carries only ``SET LOCAL``
    to its workers (``PROPAGATE_TO_WORKERS``), and ``SET`` takes no bind
    parameter. So the id travels as a Unicode-escape literal: every character
    written as ``\\XXXX`` or ``\\+XXXXXX``, so no character of the id, whatever
    it is, can end the literal (nor be a ``%`` or a ``:`` a driver would read).
    """
    escaped = "".join(
        f"\\{code:04X}" if code <= 0xFFFF else f"\\+{code:06X}" for code in map(ord, owner)
    )
    return f"SET LOCAL {USER_SETTING} = U&'{escaped}'"


def user_statements(owner: str) -> tuple[str, str]:
    """What a transaction runs first, in this order: row-level security's user
    for it, on every node of a Citus cluster too."""
    return PROPAGATE_TO_WORKERS, set_user(owner)


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
