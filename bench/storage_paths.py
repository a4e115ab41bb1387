"""CPU per GET-list unit of work on PostgreSQL: SQLAlchemy's execution path vs asyncpg's.

Why ``adapters/sqlalchemy/postgres.py`` runs statements on asyncpg
connections from ``pool.PgPool``: the same list query from the same engine
settings, measured in one process and one run. ``SqlUnitOfWork``
(SQLAlchemy's execution path and pool, which serve SQLite) is pointed at
PostgreSQL here only for the comparison.

    .venv/bin/python bench/storage_paths.py [--count 2000]

Uses the `taskvault_bench` database that `make bench` seeds.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable

from adapters.sqlalchemy.engine import create_engine
from adapters.sqlalchemy.pool import PgPool
from adapters.sqlalchemy.postgres import PgUnitOfWork
from adapters.sqlalchemy.storage import SqlUnitOfWork
from application.ports import UnitOfWork
from application.queries import TaskQuery

# The superuser, so that SqlUnitOfWork (which sets no RLS user) sees the rows
# too; PgUnitOfWork still pays for its set_config, so the comparison is
# conservative.
URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/taskvault_bench"


async def measure(name: str, make: Callable[[str], UnitOfWork], count: int) -> float:
    query = TaskQuery(limit=20)

    async def one(user: str) -> None:
        async with make(user) as uow:
            assert len(await uow.tasks.list(user, query)) == 21

    for i in range(100):
        await one(f"user{i:04d}")
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(count):
        await one(f"user{i % 1000:04d}")
    per_op = (time.process_time() - cpu) / count * 1e6
    wall_op = (time.perf_counter() - wall) / count * 1e6
    print(f"{name:44s} CPU {per_op:6.0f} us/op, wall {wall_op:6.0f} us/op")
    return per_op


async def main(count: int) -> None:
    engine = create_engine(URL, pool_size=4)
    pool = PgPool(engine)
    try:
        sqlalchemy = await measure(
            "SQLAlchemy execution (SqlUnitOfWork)",
            lambda user: SqlUnitOfWork(engine, write=False, writers=asyncio.Lock()),
            count,
        )
        asyncpg_path = await measure(
            "asyncpg and its pool (PgUnitOfWork)",
            lambda user: PgUnitOfWork(pool, user, write=False),
            count,
        )
    finally:
        await pool.close()
        await engine.dispose()
    print(f"ratio: {sqlalchemy / asyncpg_path:.1f}x the CPU through SQLAlchemy's execution path")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=2000)
    import uvloop

    uvloop.run(main(parser.parse_args().count))
