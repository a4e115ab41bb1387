"""The shared statements compiled once for SQLite, with SQLAlchemy's conversions.

SQLAlchemy builds and compiles; the standard library's ``sqlite3`` runs them.
Values go in and come out through the same type processors SQLAlchemy's own
execution applies (ids as hex text, times as naive UTC text), so both SQLite
stores read and write one format, the migrations' too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.sql import ClauseElement, CompoundSelect, Select
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeEngine

from adapters.sql.tables import UTCDateTime

DIALECT = SQLiteDialect_pysqlite()

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class Compiled:
    """A statement's SQLite text, its parameters in order, and their conversions."""

    text: str
    names: tuple[str, ...]
    binds: tuple[Processor, ...]
    results: tuple[Processor, ...]
    fixed: Mapping[str, Any]
    """Parameters the statement carries itself (SQLite's ``OFFSET`` of a ``LIMIT``)."""

    def args(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        fixed = self.fixed
        return tuple(
            value if bind is None or value is None else bind(value)
            for name, bind in zip(self.names, self.binds, strict=True)
            for value in (fixed[name] if name in fixed else params[name],)
        )

    def row(self, raw: Sequence[Any]) -> tuple[Any, ...]:
        """A row as SQLAlchemy's execution would return it."""
        return tuple(
            value if load is None or value is None else load(value)
            for value, load in zip(raw, self.results, strict=True)
        )


def utc_instant(text: str) -> datetime:
    """An instant as SQLAlchemy stores it on SQLite (naive UTC text), aware: what
    ``UTCDateTime``'s processor returns, in a seventh of its time (a list's rows
    hold two or more each)."""
    return datetime.fromisoformat(text + "+00:00")


def _loader(column_type: TypeEngine[Any]) -> Processor:
    if isinstance(column_type, UTCDateTime):
        return utc_instant
    return column_type.dialect_impl(DIALECT).result_processor(DIALECT, None)


@lru_cache(maxsize=1024)
def compiled(statement: ClauseElement) -> Compiled:
    """``statement`` compiled for SQLite, once: statements are module constants
    or built once per shape."""
    compiled = statement.compile(dialect=DIALECT)
    assert isinstance(compiled, SQLCompiler)
    names = tuple(compiled.positiontup or ())
    binds = tuple(
        compiled.binds[name].type.dialect_impl(DIALECT).bind_processor(DIALECT) for name in names
    )
    results: tuple[Processor, ...] = ()
    if isinstance(statement, Select | CompoundSelect):
        results = tuple(_loader(column.type) for column in statement.selected_columns)
    fixed = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}
    return Compiled(str(compiled), names, binds, results, fixed)
