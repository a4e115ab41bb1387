"""``TaskWriter`` for stores whose unit of work is already as fast as one write."""

from __future__ import annotations

from collections.abc import Callable

from application.ports import UnitOfWork
from domain.task import Task


class UnitOfWorkWriter:
    """Each write a unit of work of its own: the versioned update, then the commit."""

    __slots__ = ("_owner", "_unit_of_work")

    def __init__(self, unit_of_work: Callable[[str], UnitOfWork], owner: str) -> None:
        self._unit_of_work = unit_of_work
        self._owner = owner

    async def update(self, task: Task, *, expected_version: int) -> bool:
        async with self._unit_of_work(self._owner) as uow:
            if not await uow.tasks.update(task, expected_version=expected_version):
                return False
            await uow.commit()
        return True
