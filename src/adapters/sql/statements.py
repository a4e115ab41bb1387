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
    BigInteger,
    ColumnElement,
    CompoundSelect,
    Delete,
    FromClause,
    Insert,
    Select,
    String,
    Update,
    and_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    true,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from adapters.sql.rows import task_row
from adapters.sql.tables import idempotency_keys, sync_heads, task_tombstones, tasks
from application.queries import SortField, Status, TaskQuery
from domain.task import Task

Owner = ColumnElement[str]
"""Whose tasks a read returns."""

Read = Callable[[Owner, "Any"], "Select[Any] | CompoundSelect[Any]"]
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

_BOOKKEEPING = {"search_text", "change_seq"}
"""Columns of a task's row that are not fields of the Task."""

# In the order of TASK_FIELDS, so that a row is the Task's arguments.
TASK_COLUMNS = [column for column in tasks.c if column.name not in _BOOKKEEPING]
_WRITABLE = [c.name for c in tasks.c if c.name not in {"user_id", "id", "created_at", "change_seq"}]


def _head(owner: ColumnElement[Any]) -> Any:
    """The owner's current change number: in a write, the one its transaction took."""
    return select(sync_heads.c.change_seq).where(sync_heads.c.user_id == owner).scalar_subquery()


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


_FROM_HEAD = ("user_id", "change_seq")


def _from_head(
    owner: ColumnElement[Any], values: dict[str, Any], head: FromClause = sync_heads
) -> Select[Any]:
    """One row of ``values`` for the owner, with its user id and change number
    (``None`` in ``values``) read from the owner's head: its transaction
    claimed it first (or ``head`` is the claim's RETURNING).

    An INSERT ... SELECT, not a subquery in VALUES, which Citus rejects; and
    the head's own user id, which lets Citus run it on the one shard both
    rows are on.
    """
    return select(
        *(head.c[name] if value is None else value.label(name) for name, value in values.items())
    ).where(head.c.user_id == owner)


_NEW_TASK = {c.name: None if c.name in _FROM_HEAD else _param(c.name, c) for c in tasks.c}


def insert_task(head: FromClause = sync_heads) -> Insert:
    """A new task of the owner ``:user_id``, numbered from ``head``."""
    owner = _param("user_id", tasks.c.user_id)
    return insert(tasks).from_select(list(_NEW_TASK), _from_head(owner, _NEW_TASK, head))


INSERT_TASK: Insert = insert_task()


_WRITTEN = [name for name, value in _NEW_TASK.items() if value is not None]
"""The columns a new task's row brings; the others come from its owner's head."""


def insert_tasks_postgresql(head: FromClause = sync_heads) -> Insert:
    """PostgreSQL: an owner's new tasks in one statement, a column's values an
    array (``insert_tasks_params``), numbered from ``head``."""
    each = (
        bindparam(f"{name}_each", type_=postgresql.ARRAY(tasks.c[name].type)) for name in _WRITTEN
    )
    new = func.unnest(*each).table_valued(*_WRITTEN).render_derived(name="new")
    values = {name: None if value is None else new.c[name] for name, value in _NEW_TASK.items()}
    rows = _from_head(OWNER, values, head).select_from(new.join(head, true()))
    return insert(tasks).from_select(list(values), rows)


INSERT_TASKS_POSTGRESQL: Insert = insert_tasks_postgresql()
"""Planned and run once, not once a task."""


def insert_tasks_params(owner: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``INSERT_TASKS_POSTGRESQL``'s parameters for ``task_row`` rows."""
    return {"owner": owner, **{f"{name}_each": [row[name] for row in rows] for name in _WRITTEN}}


def check_inserted(inserted: int, expected: int) -> None:
    """Fail unless every new task was inserted: their rows are selected from
    the owner's head, so without it (no change number claimed) none would be,
    silently."""
    if inserted != expected:
        raise RuntimeError(f"{inserted} of {expected} new tasks inserted: no change number")


UPDATE_TASK: Update = (
    update(tasks)
    .where(_owned(OWNER), tasks.c.version == bindparam("expected_version"))
    .values(
        {
            **{name: _param(f"new_{name}", tasks.c[name]) for name in _WRITABLE},
            "change_seq": _head(OWNER),
        }
    )
)
DELETE_TASK: Delete = delete(tasks).where(
    _owned(OWNER), tasks.c.version == bindparam("expected_version")
)


def _tombstone(dialect: Any, values: Any) -> Insert:
    """A tombstone, replacing any earlier one of the id (ids are not reused; tests may)."""
    stmt = values(dialect.insert(task_tombstones))
    return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=["user_id", "id"],
        set_={name: stmt.excluded[name] for name in ("change_seq", "deleted_at")},
    )


def _tombstone_values(stmt: Any) -> Any:
    values = {
        "user_id": None,
        "id": _param("task_id", task_tombstones.c.id),
        "change_seq": None,
        "deleted_at": _param("deleted_at", task_tombstones.c.deleted_at),
    }
    return stmt.from_select(list(values), _from_head(OWNER, values))


INSERT_TOMBSTONE_SQLITE: Insert = _tombstone(sqlite, _tombstone_values)
INSERT_TOMBSTONE_POSTGRESQL: Insert = _tombstone(postgresql, _tombstone_values)
_expired = (
    select(task_tombstones.c.id)
    .where(
        task_tombstones.c.user_id == OWNER,
        task_tombstones.c.deleted_at < _param("deleted_before", task_tombstones.c.deleted_at),
    )
    .order_by(task_tombstones.c.deleted_at)
    .limit(bindparam("limit"))
)
PURGE_TOMBSTONES: Delete = delete(task_tombstones).where(
    task_tombstones.c.user_id == OWNER, task_tombstones.c.id.in_(_expired)
)


def _delete_leaving_tombstone() -> Insert:
    gone = (
        delete(tasks)
        .where(_owned(OWNER), tasks.c.version == bindparam("expected_version"))
        .returning(tasks.c.id)
        .cte("gone")
    )
    tombstone = select(
        OWNER, gone.c.id, _head(OWNER), _param("deleted_at", task_tombstones.c.deleted_at)
    ).select_from(gone)
    return _tombstone(
        postgresql,
        lambda stmt: stmt.from_select(["user_id", "id", "change_seq", "deleted_at"], tombstone),
    )


DELETE_LEAVING_TOMBSTONE_POSTGRESQL: Insert = _delete_leaving_tombstone()
"""PostgreSQL: the delete and its tombstone in one statement; ``INSERT 0 1`` when deleted."""


def claim_head(dialect: Any, owner: ColumnElement[str] = OWNER) -> Insert:
    """Take the owner's next change number; the row stays locked until the
    transaction ends, so the owner's writers commit in number order."""
    stmt = dialect.insert(sync_heads).values(user_id=owner, change_seq=1).inline()
    return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=["user_id"], set_={"change_seq": sync_heads.c.change_seq + 1}
    )


CLAIM_HEAD_POSTGRESQL = claim_head(postgresql)
CLAIM_HEAD_SQLITE = claim_head(sqlite)

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
class FeedShape:
    """A feed read: a first sync (live tasks only), or every change after a number."""

    first: bool

    def order(self, columns: Any) -> list[ColumnElement[Any]]:
        return [columns.change_seq, columns.id]


def list_changes(owner: Owner, shape: FeedShape) -> CompoundSelect[Any]:
    """The owner's head, then up to ``:limit`` changes after ``(:after_seq,
    :after_id)`` in change order, all in one statement and so one snapshot.

    Rows have ``kind``, ``change_seq``, the task's columns and ``deleted_at``;
    a tombstone's task columns are null but its id, the head's all but ``change_seq``.
    """
    nothing = {c.name: cast(null(), c.type).label(c.name) for c in TASK_COLUMNS}
    head = select(
        literal_column("'h'").label("kind"),
        func.coalesce(func.max(sync_heads.c.change_seq), literal_column("0")).label("change_seq"),
        *nothing.values(),
        cast(null(), task_tombstones.c.deleted_at.type).label("deleted_at"),
    ).where(sync_heads.c.user_id == owner)
    position = (
        bindparam("after_seq", type_=BigInteger),
        _param("after_id", tasks.c.id),
    )
    live = select(
        literal_column("'u'").label("kind"),
        tasks.c.change_seq,
        *TASK_COLUMNS,
        cast(null(), task_tombstones.c.deleted_at.type).label("deleted_at"),
    ).where(tasks.c.user_id == owner)
    if shape.first:
        changes: Select[Any] | CompoundSelect[Any] = live
    else:
        live = live.where(tuple_(tasks.c.change_seq, tasks.c.id) > tuple_(*position))
        gone = select(
            literal_column("'d'").label("kind"),
            task_tombstones.c.change_seq,
            *[
                task_tombstones.c[name].label(name) if name in {"id", "user_id"} else column
                for name, column in nothing.items()
            ],
            task_tombstones.c.deleted_at,
        ).where(
            task_tombstones.c.user_id == owner,
            tuple_(task_tombstones.c.change_seq, task_tombstones.c.id) > tuple_(*position),
        )
        changes = union_all(live, gone)
    page = changes.subquery("changes")
    first_changes = select(page).order_by(*shape.order(page.c)).limit(bindparam("limit"))
    return union_all(head, select(first_changes.subquery("page")))


@lru_cache(maxsize=2)
def changes_statement(shape: FeedShape) -> CompoundSelect[Any]:
    """``list_changes`` with the owner bound as ``:owner``."""
    return list_changes(OWNER, shape)


def changes_params(owner: str, after: Any, limit: int) -> dict[str, Any]:
    params: dict[str, Any] = {"owner": owner, "limit": limit + 1}
    if after is not None:
        params.update(after_seq=after.seq, after_id=after.task_id)
    return params


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

    def order(self, columns: Any) -> list[ColumnElement[Any]]:
        return list_order(self, columns)


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


UPDATE_NEW_VALUES = tuple(f"new_{name}" for name in _WRITABLE)
"""``UPDATE_TASK``'s parameters of the new row, in column order."""


def update_params(owner: str, task: Task, expected_version: int) -> dict[str, Any]:
    row = task_row(task)
    params = {new: row[name] for new, name in zip(UPDATE_NEW_VALUES, _WRITABLE, strict=True)}
    params.update(owner=owner, task_id=task.id, expected_version=expected_version)
    return params
