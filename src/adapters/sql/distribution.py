"""Citus: every table that holds a user's rows, distributed by ``user_id`` beside ``tasks``.

Driven by the tables' metadata: a table with a ``user_id`` column holds a
user's rows, so a table added later is distributed by the next ``taskvault
migrate`` with no change here. On plain PostgreSQL and SQLite nothing happens.
"""

from __future__ import annotations

from sqlalchemy import Index, MetaData, PrimaryKeyConstraint, Table, UniqueConstraint, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

DISTRIBUTION_COLUMN = "user_id"

ANCHOR = "tasks"
"""The table the others are colocated with: one user's rows of every table on one shard."""


class NotDistributable(Exception):
    """A table cannot be distributed as taskvault needs it; the message says why."""


def distributed_tables(metadata: MetaData) -> list[Table]:
    """The tables to distribute, ``ANCHOR`` first (the others colocate with it)."""
    owned = [table for table in metadata.sorted_tables if DISTRIBUTION_COLUMN in table.c]
    return sorted(owned, key=lambda table: table.name != ANCHOR)


def distribution_problems(metadata: MetaData) -> list[str]:
    """Why the tables could not be distributed and colocated; empty when they can.

    Citus enforces a key within one shard only, so every primary key and
    unique constraint must include the distribution column; and colocated
    tables must have the same type of distribution column.
    """
    tables = distributed_tables(metadata)
    if not tables or tables[0].name != ANCHOR:
        return [f"no {ANCHOR!r} table with a {DISTRIBUTION_COLUMN!r} column to colocate with"]
    anchor_type = _column_type(tables[0])
    problems = [
        f"{table.name}.{DISTRIBUTION_COLUMN} is {_column_type(table)}, not {anchor_type} "
        f"as in {ANCHOR}"
        for table in tables
        if _column_type(table) != anchor_type
    ]
    for table in tables:
        problems += [
            f"{table.name}: key ({', '.join(columns)}) lacks {DISTRIBUTION_COLUMN}"
            for columns in _keys(table)
            if DISTRIBUTION_COLUMN not in columns
        ]
    return problems


def _column_type(table: Table) -> str:
    return str(table.c[DISTRIBUTION_COLUMN].type.compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]


def _keys(table: Table) -> list[list[str]]:
    keys = [
        [column.name for column in constraint.columns]
        for constraint in table.constraints
        # A table without a primary key has one with no columns.
        if isinstance(constraint, PrimaryKeyConstraint | UniqueConstraint) and constraint.columns
    ]
    keys += [
        [str(getattr(expression, "name", expression)) for expression in index.expressions]
        for index in table.indexes
        if isinstance(index, Index) and index.unique
    ]
    return keys


CITUS_INSTALLED = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')"
"""One row, one column: whether the database has the citus extension."""

# One row per existing table: whether Citus knows it, how, and with which table.
_PLACEMENT = text(
    """
    SELECT to_regclass(:table) IS NOT NULL AS present,
           p.partmethod::text AS partmethod,
           column_to_column_name(p.logicalrelid, p.partkey) AS column_name,
           p.colocationid
    FROM (SELECT 1) AS one
    LEFT JOIN pg_dist_partition AS p ON p.logicalrelid = to_regclass(:table)
    """
)

_DISTRIBUTE = text(
    "SELECT create_distributed_table(:table, :column, colocate_with => :colocate_with)"
)


def distribute(connection: Connection, metadata: MetaData) -> list[str]:
    """Distribute the tables of ``metadata`` that exist and are not yet; the
    names of those it distributed. Nothing unless Citus is installed.

    Run by the migrations after every revision, in their transaction (and
    under their lock), so that a table a revision adds is distributed before
    the app uses it; on a database distributed already, it changes nothing.
    """
    if (
        connection.dialect.name != "postgresql"
        or not connection.execute(text(CITUS_INSTALLED)).scalar()
    ):
        return []
    problems = distribution_problems(metadata)
    if problems:
        raise NotDistributable("; ".join(problems))
    distributed: list[str] = []
    anchor_group: int | None = None
    for table in distributed_tables(metadata):
        placement = connection.execute(_PLACEMENT, {"table": table.name}).one()
        if not placement.present:
            continue
        if placement.partmethod is None:
            colocate_with = "none" if table.name == ANCHOR else ANCHOR
            connection.execute(
                _DISTRIBUTE,
                {
                    "table": table.name,
                    "column": DISTRIBUTION_COLUMN,
                    "colocate_with": colocate_with,
                },
            )
            distributed.append(table.name)
            placement = connection.execute(_PLACEMENT, {"table": table.name}).one()
        elif placement.partmethod != "h" or placement.column_name != DISTRIBUTION_COLUMN:
            raise NotDistributable(
                f"{table.name} is in Citus already, but not distributed by "
                f"{DISTRIBUTION_COLUMN}: undistribute it (undistribute_table) and migrate again"
            )
        if anchor_group is None:
            anchor_group = placement.colocationid
        elif placement.colocationid != anchor_group:
            raise NotDistributable(
                f"{table.name} is not colocated with {ANCHOR}: run "
                f"SELECT update_distributed_table_colocation('{table.name}', "
                f"colocate_with => '{ANCHOR}')"
            )
    return distributed
