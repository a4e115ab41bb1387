"""What the shared repository needs of a connection: SQLAlchemy's ``AsyncConnection``
has it, and so has the SQLite store's own connection on the standard library."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Executable


class Rows(Protocol):
    """A statement's result: its rows, or how many rows it changed."""

    @property
    def rowcount(self) -> int: ...

    def first(self) -> Sequence[Any] | None: ...

    def all(self) -> Sequence[Sequence[Any]]: ...

    def scalar(self) -> Any: ...

    def __iter__(self) -> Iterator[Sequence[Any]]: ...


class Connection(Protocol):
    """A connection in a transaction, or outside one for a single read."""

    @property
    def dialect(self) -> Dialect: ...

    async def execute(self, statement: Executable, parameters: Any = None, /) -> Rows: ...
