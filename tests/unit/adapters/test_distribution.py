"""Which tables Citus distributes, decided from the tables' metadata alone."""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, MetaData, String, Table, Text, UniqueConstraint
from sqlalchemy.schema import SchemaItem

from adapters.sql.distribution import (
    ANCHOR,
    DISTRIBUTION_COLUMN,
    distributed_tables,
    distribution_problems,
)
from adapters.sql.tables import metadata


def test_every_table_with_a_user_id_is_distributed_tasks_first() -> None:
    names = [table.name for table in distributed_tables(metadata)]
    owned = {table.name for table in metadata.tables.values() if "user_id" in table.c}
    assert names[0] == ANCHOR
    assert set(names) == owned
    assert "idempotency_keys" in names


def test_the_app_tables_can_be_distributed_and_colocated() -> None:
    """Every key includes user_id and every user_id has the type of tasks': a
    table added without them fails here, before it reaches a Citus cluster."""
    assert distribution_problems(metadata) == []


def _with_table(*elements: SchemaItem) -> MetaData:
    extra = MetaData()
    for table in metadata.tables.values():
        table.to_metadata(extra)
    Table("changes", extra, *elements)
    return extra


def test_a_key_without_the_user_id_is_a_problem() -> None:
    problems = distribution_problems(
        _with_table(
            Column(DISTRIBUTION_COLUMN, String(255), primary_key=True),
            Column("seq", Integer, primary_key=True),
            Column("token", Text),
            UniqueConstraint("token"),
        )
    )
    assert problems == ["changes: key (token) lacks user_id"]


def test_a_unique_index_without_the_user_id_is_a_problem() -> None:
    extra = _with_table(
        Column(DISTRIBUTION_COLUMN, String(255), primary_key=True),
        Column("token", Text),
    )
    Index("changes_token_idx", extra.tables["changes"].c.token, unique=True)
    assert distribution_problems(extra) == ["changes: key (token) lacks user_id"]


def test_a_user_id_of_another_type_cannot_be_colocated() -> None:
    problems = distribution_problems(_with_table(Column(DISTRIBUTION_COLUMN, Text)))
    assert problems == ["changes.user_id is TEXT, not VARCHAR(255) as in tasks"]


def test_a_table_without_a_user_id_stays_on_the_coordinator() -> None:
    extra = _with_table(Column("name", Text, primary_key=True))
    assert "changes" not in {table.name for table in distributed_tables(extra)}
    assert distribution_problems(extra) == []
