"""The shared statements compiled once for asyncpg, and reads made single statements.

SQLAlchemy only builds and compiles here: its per-statement execution
machinery costs several times the query itself on this service's hot path
(see the README's performance section).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    CTE,
    ColumnElement,
    CompoundSelect,
    FromClause,
    Join,
    Select,
    String,
    Table,
    bindparam,
    func,
    literal_column,
    select,
    true,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.sql import ClauseElement, visitors
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import ExternallyTraversible

from adapters.sql import row_security
from adapters.sql import statements as sql
from adapters.sql.distribution import DISTRIBUTION_COLUMN
from adapters.sql.row_security import USER_SETTING
from adapters.sql.tables import sync_heads

_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]


class UnscopedRead(TypeError):
    """A read's builder did not scope its statement to the owner it was given."""


@dataclass(frozen=True, slots=True)
class Compiled:
    """A statement's asyncpg text and the order of its named parameters."""

    text: str
    names: tuple[str, ...]

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[name] for name in self.names]


def _compiled(statement: ClauseElement) -> Compiled:
    compiled = statement.compile(dialect=_DIALECT)
    assert isinstance(compiled, SQLCompiler)
    return Compiled(str(compiled), tuple(compiled.positiontup or ()))


@lru_cache(maxsize=1024)
def compiled(statement: ClauseElement) -> Compiled:
    """``statement`` compiled for asyncpg, once: statements are module constants."""
    return _compiled(statement)


def _owner_cte() -> CTE:
    """A CTE whose one row, ``uid``, is the owner, set as row-level security's
    user for the statement's implicit transaction."""
    return (
        select(func.set_config(literal_column(f"'{USER_SETTING}'"), sql.OWNER, true()).label("uid"))
        .cte("owner")
        .prefix_with("MATERIALIZED")
    )


@lru_cache(maxsize=1024)
def single_statement(
    read: sql.Read, shape: sql.ListShape | sql.FeedShape | None = None
) -> Compiled:
    """``read`` as one statement that sets row-level security's user itself.

    A read outside a transaction is then one round trip instead of three
    (BEGIN with the user, the read, ROLLBACK). A MATERIALIZED CTE sets the
    user, and ``read`` is built with the CTE's column as its owner, so the
    read reaches its tasks through a LATERAL reference to the CTE: in any
    plan PostgreSQL must produce the CTE's row, and so set the user, before
    it scans a task (OFFSET 0 keeps the planner from flattening the subquery
    into a join it could order the other way). Set with is_local, the user
    lasts for this statement's implicit transaction only. A list is ordered
    again outside the subquery.

    Each owned table is also filtered by the owner as a bind parameter:
    Citus sends a statement to the one shard of its user only by a constant
    filter on ``user_id``, and then sends it whole, CTE included, so that the
    worker sets the user itself. The CTE's column alone routes nothing.
    """
    owner = _owner_cte()
    statement = read(owner.c.uid, shape)
    if not any(element is owner.c.uid for element in visitors.iterate(statement)):
        # Row-level security would hide every row: fail here, saying why.
        raise UnscopedRead(f"{read.__qualname__} must build its statement on the owner it is given")
    routed = _routed(statement, owner)
    task = routed.offset(literal_column("0")).lateral("task")
    scoped = select(task).select_from(owner).join(task, true())
    if shape is not None:
        scoped = scoped.order_by(*shape.order(task.c))
    return _compiled(scoped)


_CURRENT_USER: ColumnElement[str] = literal_column(
    f"current_setting('{USER_SETTING}')", type_=String
)

CLAIM = str(
    sql.claim_head(postgresql, _CURRENT_USER).compile(
        dialect=_DIALECT, compile_kwargs={"literal_binds": True}
    )
)
"""Claim the next change number of the transaction's user, already set (so
no parameter). Other instances hear of the commit from ``notifier``."""


def _routed(
    statement: Select[Any] | CompoundSelect[Any], owner: FromClause
) -> Select[Any] | CompoundSelect[Any]:
    """``statement`` with every SELECT in it that reads a user's table filtered
    by the owner as a parameter too, however deep: Citus routes a statement
    only when each table in it, anywhere, has a constant filter on ``user_id``
    (the feed is a union of the head and a subquery's union).

    Each such SELECT also correlates with ``owner``: SQLAlchemy correlates a
    subquery in FROM with nothing, and would scan the CTE a second time inside
    it; then the tasks would no longer depend on the CTE's row, so nothing
    would make PostgreSQL set the user before it scans them.
    """
    # The copies made here: traversal must not filter one of them again.
    made: set[Select[Any]] = set()

    def filtered(element: ExternallyTraversible, **_kw: Any) -> ExternallyTraversible | None:
        if not isinstance(element, Select) or element in made:
            return None
        owned = _owned_tables(element)
        if not owned:
            return None
        copy = element.where(*(table.c.user_id == sql.OWNER for table in owned)).correlate(owner)
        made.add(copy)
        # The copy replaces the element whole: its own subqueries still need routing.
        return visitors.replacement_traverse(cast(ExternallyTraversible, copy), {}, filtered)

    routed = visitors.replacement_traverse(cast(ExternallyTraversible, statement), {}, filtered)
    return cast(Select[Any] | CompoundSelect[Any], routed)


def _owned_tables(statement: Select[Any]) -> list[Table]:
    """The tables in ``statement``'s own FROM (not in its subqueries) that hold
    a user's rows."""
    return [
        table
        for source in statement.get_final_froms()
        for table in _joined(source)
        if DISTRIBUTION_COLUMN in table.c
    ]


def _joined(source: FromClause) -> Iterator[Table]:
    if isinstance(source, Join):
        yield from _joined(source.left)
        yield from _joined(source.right)
    elif isinstance(source, Table):
        yield source


def as_user(owner: str, *, numbered: bool) -> str:
    """Row-level security's user for the transaction, in one round trip after
    its BEGIN; ``numbered``, with the user's next change number claimed too."""
    claim = (CLAIM,) if numbered else ()
    return "; ".join((*row_security.user_statements(owner), *claim))


def begin_as_user(owner: str, numbered: bool) -> str:
    """``as_user`` with the BEGIN in the same round trip (not on Citus, which
    passes a ``SET LOCAL`` on to its workers as the text of the whole batch
    it came in: they would warn of a BEGIN, and run the claim again)."""
    return f"BEGIN; {as_user(owner, numbered=numbered)}"


def _claimed() -> CTE:
    """The user's next change number as a CTE of one statement that sets
    row-level security's user itself (as ``single_statement``): ``user_id``,
    ``change_seq``."""
    owner = _owner_cte()
    claim = postgresql.insert(sync_heads).from_select(
        ["user_id", "change_seq"], select(owner.c.uid, literal_column("1"))
    )
    claim = claim.on_conflict_do_update(
        index_elements=["user_id"],
        set_={"change_seq": sync_heads.c.change_seq + literal_column("1")},
    )
    return claim.returning(sync_heads.c.user_id, sync_heads.c.change_seq).cte("head")


_HEAD = _claimed()

CREATE_ALONE = sql.insert_task(_HEAD).add_cte(_HEAD)
CREATE_MANY_ALONE = sql.insert_tasks_postgresql(_HEAD).add_cte(_HEAD)

UPDATE_ALONE_ARGUMENTS = ("owner", "task_id", "expected_version", *sql.UPDATE_NEW_VALUES)
"""``taskvault_update_task``'s parameters in order (migrations 0005 and 0006), named as
``sql.update_params`` names them."""

UPDATE_ALONE: Select[Any] = select(
    func.taskvault_update_task(*(bindparam(name) for name in UPDATE_ALONE_ARGUMENTS))
)
"""``sql.UPDATE_TASK`` with the user set and the change number claimed, as one
statement committed on its own; raises ``NOT_UPDATED`` when the task is not
at the expected version."""

NOT_UPDATED = "TV001"
"""The SQLSTATE of ``UPDATE_ALONE`` when it matched no task."""
