"""The asyncpg store's single-statement reads and how a transaction sets its user,
built without a database."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import Select, String, bindparam, select

from adapters.asyncpg.statements import UnscopedRead, as_user, single_statement
from adapters.sql import statements as sql
from adapters.sql.tables import tasks
from application.queries import TaskQuery


def test_every_read_of_the_store_sets_the_user_inside_its_statement() -> None:
    for compiled in (
        single_statement(sql.select_task),
        single_statement(sql.list_tasks, sql.ListShape.of(TaskQuery())),
    ):
        text = " ".join(compiled.text.split())
        assert text.startswith("WITH owner AS MATERIALIZED (SELECT set_config(")
        assert "JOIN LATERAL" in text
        assert "tasks.user_id = owner.uid" in text
        assert compiled.names[0] == "owner"


def test_every_read_keeps_a_constant_owner_filter_citus_can_route_by() -> None:
    """Beside the CTE's column, the owner as the statement's own parameter: Citus
    picks a shard only by a constant filter on user_id."""
    for compiled in (
        single_statement(sql.select_task),
        single_statement(sql.list_tasks, sql.ListShape.of(TaskQuery())),
    ):
        text = " ".join(compiled.text.split())
        position = compiled.names.index("owner") + 1
        assert f"tasks.user_id = ${position}" in text


@pytest.mark.parametrize("first", [True, False], ids=["first-sync", "after"])
def test_every_part_of_the_feeds_union_is_routed_and_reads_the_user_from_the_cte(
    first: bool,
) -> None:
    """The feed is the head and a page of changes in one union: each of its
    tables, however deep in it, is filtered by the constant owner (or Citus
    sends the statement to every shard) and by the CTE's column, which it
    reaches from the one LATERAL rather than by scanning the CTE again (or
    PostgreSQL could scan a table before the CTE sets the user)."""
    compiled = single_statement(sql.list_changes, sql.FeedShape(first=first))
    text = " ".join(compiled.text.split())
    position = compiled.names.index("owner") + 1
    tables = ["sync_heads", "tasks"] if first else ["sync_heads", "tasks", "task_tombstones"]
    assert re.findall(r"FROM (\w+)", text) == ["owner", *tables]
    for table in tables:
        assert f"{table}.user_id = owner.uid AND " in text
        assert re.search(rf"{table}\.user_id = \${position}::VARCHAR\b", text)
    assert ", owner" not in text


def _count_open_tasks(owner: sql.Owner, _shape: sql.ListShape | None) -> Select[Any]:
    """A new read, written as the store wants it: on the owner it is given."""
    return select(tasks.c.id).where(tasks.c.user_id == owner, tasks.c.completed.is_(False))


def _count_open_tasks_by_name(_owner: sql.Owner, _shape: sql.ListShape | None) -> Select[Any]:
    """A new read that names its owner itself, as a bind parameter."""
    return select(tasks.c.id).where(tasks.c.user_id == bindparam("user", type_=String))


def test_a_new_read_built_on_its_owner_becomes_a_single_statement() -> None:
    compiled = single_statement(_count_open_tasks)
    assert "tasks.user_id = owner.uid" in " ".join(compiled.text.split())


def test_a_new_read_that_ignores_its_owner_fails_loudly() -> None:
    """Row-level security would hide every row from such a read: it must not
    compile into one that silently returns nothing."""
    with pytest.raises(UnscopedRead, match="_count_open_tasks_by_name must build its statement"):
        single_statement(_count_open_tasks_by_name)


@pytest.mark.parametrize(
    "owner",
    [
        "alice",
        "o'brien",
        "x'); DROP TABLE tasks; --",
        "back\\slash",
        "Ünïcødé 🎉",
        "$$",
        "'",
        "%s:x",
    ],
)
def test_the_user_id_travels_only_as_unicode_escapes(owner: str) -> None:
    """No character of the id, whatever it is, can end the literal or reach the
    driver as a placeholder."""
    batch = as_user(owner, numbered=True)
    propagate, set_user, claim = batch.split("; ")
    # The change number reads the user back from the setting.
    assert set(re.findall(r"'([^']*)'", claim)) == {"taskvault.user_id"}
    assert propagate == "SET LOCAL citus.propagate_set_commands = 'local'"
    literal = re.fullmatch(
        r"SET LOCAL taskvault\.user_id = U&'((?:\\[0-9A-F]{4}|\\\+[0-9A-F]{6})*)'", set_user
    )
    assert literal is not None, set_user
    decoded = re.sub(r"\\\+?([0-9A-F]+)", lambda m: chr(int(m[1], 16)), literal[1])
    assert decoded == owner
