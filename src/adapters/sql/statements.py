"""Every SQL statement of the stores, built with SQLAlchemy Core.

Statements take named bind parameters, never inline values, so one built
statement serves every request of its shape. Each statement on tasks is
scoped to an owner. For a plain read, the owner is an argument of the
builder (``Owner``): a bind parameter, or, for the asyncpg store's
single-statement reads, the column through which row-level security is set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Delete,
    Insert,
    Select,
    String,
    Update,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from adapters.sql.rows import task_row
from adapters.sql.tables import idempotency_keys, tasks
from application.queries import SortField, Status, TaskQuery
from domain.task import Task

Owner = ColumnElement[str]
"""Whose tasks a read returns."""

Read = Callable[[Owner, "ListShape | None"], Select[Any]]
"""A read's builder: its statement for an owner (and a list's shape)."""

OWNER: Owner = bindparam("owner", type_=String)
"""The owner as a bind parameter, named ``owner`` in every statement's parameters."""

_SORT_COLUMNS = {
    SortField.CREATED_AT: tasks.c.created_at,
    SortField.UPDATED_AT: tasks.c.updated_at,
    SortField.DUE_AT: tasks.c.due_at,
    SortField.PRIORITY: tasks.c.priority,
    SortField.TITLE: tasks.c.title,
}

# Everything but search_text, which only the WHERE clause of ``q`` reads;
# in the order of TASK_FIELDS, so that a row is the Task's arguments.
TASK_COLUMNS = [column for column in tasks.c if column.name != "search_text"]
_WRITABLE = [c.name for c in tasks.c if c.name not in {"user_id", "id", "created_at"}]


def _param(name: str, column: Any) -> Any:
    """A bind parameter typed like ``column`` (SQLite stores times and ids as text)."""
    return bindparam(name, type_=column.type)


def _owned(owner: Owner) -> ColumnElement[bool]:
    return and_(tasks.c.user_id == owner, tasks.c.id == _param("task_id", tasks.c.id))


def select_task(owner: Owner, _shape: ListShape | None = None) -> Select[Any]:
    """The owner's task ``:task_id``."""
    return select(*TASK_COLUMNS).where(_owned(owner))


SELECT_TASK: Select[Any] = select_task(OWNER)
SELECT_TASK_FOR_UPDATE: Select[Any] = SELECT_TASK.with_for_update()
INSERT_TASK: Insert = insert(tasks).values({c.name: _param(c.name, c) for c in tasks.c})
UPDATE_TASK: Update = (
    update(tasks)
    .where(_owned(OWNER), tasks.c.version == bindparam("expected_version"))
    .values({name: _param(f"new_{name}", tasks.c[name]) for name in _WRITABLE})
)
DELETE_TASK: Delete = delete(tasks).where(
    _owned(OWNER), tasks.c.version == bindparam("expected_version")
)

_key = and_(idempotency_keys.c.user_id == OWNER, idempotency_keys.c.key == bindparam("key"))
SELECT_OUTCOME: Select[Any] = select(
    idempotency_keys.c.fingerprint, idempotency_keys.c.task, idempotency_keys.c.created_at
).where(_key)
DELETE_EXPIRED_OUTCOMES: Delete = delete(idempotency_keys).where(
    idempotency_keys.c.user_id == OWNER,
    idempotency_keys.c.created_at < _param("expire_before", idempotency_keys.c.created_at),
)

# PostgreSQL: a transaction-scoped advisory lock per (user, key); a concurrent
# duplicate finds it taken and is told 409 instead of waiting.
TRY_LOCK_KEY: Select[Any] = select(
    func.pg_try_advisory_xact_lock(
        func.hashtextextended(bindparam("lock", type_=String), literal_column("0"))
    )
)


def key_lock_params(owner: str, key: str) -> dict[str, Any]:
    # The owner's length first: no two (owner, key) pairs share a lock name.
    return {"lock": f"{len(owner)}:{owner}:{key}"}


def upsert_outcome(dialect: Any) -> Insert:
    """Store an idempotency outcome, replacing an expired one under the same key."""
    stmt = dialect.insert(idempotency_keys).values(
        {c.name: _param(c.name, c) for c in idempotency_keys.c}
    )
    return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=["user_id", "key"],
        set_={name: stmt.excluded[name] for name in ("fingerprint", "task", "created_at")},
    )


UPSERT_OUTCOME_POSTGRESQL = upsert_outcome(postgresql)
UPSERT_OUTCOME_SQLITE = upsert_outcome(sqlite)


@dataclass(frozen=True, slots=True)
class ListShape:
    """What decides the text of a list statement; values are bound separately."""

    status: Status
    priority: bool
    text: bool
    due_before: bool
    due_after: bool
    sort: SortField
    descending: bool
    after: bool
    after_is_null: bool

    @classmethod
    def of(cls, query: TaskQuery) -> ListShape:
        flt, after = query.filter, query.after
        return cls(
            status=flt.status,
            priority=flt.priority is not None,
            text=bool(flt.folded_text),
            due_before=flt.due_before is not None,
            due_after=flt.due_after is not None,
            sort=query.sort.field,
            descending=query.sort.descending,
            after=after is not None,
            after_is_null=after is not None and after.value is None,
        )


def list_tasks(owner: Owner, shape: ListShape | None) -> Select[Any]:
    """Up to ``:limit`` of the owner's tasks in sort order, after a keyset position."""
    if shape is None:
        raise TypeError("a list statement needs its shape")
    column = _SORT_COLUMNS[shape.sort]
    desc = shape.descending
    conditions: list[ColumnElement[bool]] = [tasks.c.user_id == owner]
    if shape.status is Status.PENDING:
        conditions.append(tasks.c.completed.is_(False))
    elif shape.status is Status.COMPLETED:
        conditions.append(tasks.c.completed.is_(True))
    if shape.priority:
        conditions.append(tasks.c.priority == bindparam("priority"))
    if shape.text:
        conditions.append(tasks.c.search_text.like(bindparam("pattern"), escape="\\"))
    if shape.due_before:
        conditions.append(tasks.c.due_at < _param("due_before", tasks.c.due_at))
    if shape.due_after:
        conditions.append(tasks.c.due_at > _param("due_after", tasks.c.due_at))
    if shape.after:
        after_id = _param("after_id", tasks.c.id)
        id_beyond = tasks.c.id < after_id if desc else tasks.c.id > after_id
        if shape.after_is_null:
            conditions += [column.is_(None), id_beyond]
        else:
            key = tuple_(column, tasks.c.id)
            position = tuple_(_param("after_value", column), after_id)
            beyond = key < position if desc else key > position
            # Only due_at is nullable; its missing values sort last both ways.
            conditions.append(or_(beyond, column.is_(None)) if column is tasks.c.due_at else beyond)
    return (
        select(*TASK_COLUMNS)
        .where(and_(*conditions))
        .order_by(*list_order(shape, tasks.c))
        .limit(bindparam("limit"))
    )


@lru_cache(maxsize=512)
def list_statement(shape: ListShape) -> Select[Any]:
    """``list_tasks`` with the owner bound as ``:owner``, built once per shape."""
    return list_tasks(OWNER, shape)


def list_order(shape: ListShape, columns: Any) -> list[ColumnElement[Any]]:
    """The ORDER BY of a list of ``shape`` over ``columns``: the table's, or a
    subquery's that selects the task columns."""
    column = columns[_SORT_COLUMNS[shape.sort].name]
    ordering = column.desc() if shape.descending else column.asc()
    if shape.sort is SortField.DUE_AT:
        ordering = ordering.nulls_last()
    return [ordering, columns.id.desc() if shape.descending else columns.id.asc()]


def list_params(owner: str, query: TaskQuery) -> dict[str, Any]:
    flt = query.filter
    params: dict[str, Any] = {"owner": owner, "limit": query.limit + 1}
    if flt.priority is not None:
        params["priority"] = flt.priority.rank
    needle = flt.folded_text
    if needle:
        # Folded in Python on both sides (see search_key): the same answer
        # whatever the database's collation; ILIKE under "C" folds ASCII only.
        escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params["pattern"] = f"%{escaped}%"
    if flt.due_before is not None:
        params["due_before"] = flt.due_before
    if flt.due_after is not None:
        params["due_after"] = flt.due_after
    if query.after is not None:
        params["after_id"] = query.after.id
        if query.after.value is not None:
            params["after_value"] = query.after.value
    return params


def update_params(owner: str, task: Task, expected_version: int) -> dict[str, Any]:
    row = task_row(task)
    params = {f"new_{name}": row[name] for name in _WRITABLE}
    params.update(owner=owner, task_id=task.id, expected_version=expected_version)
    return params
