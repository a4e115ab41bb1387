"""CPU per GET-list read on PostgreSQL: the SQLAlchemy store against the asyncpg store.

Why PostgreSQL requests use ``adapters.asyncpg``: the same list read, for the
same users, through each store's reader, measured in one process and one
run. The SQLAlchemy store's read is a transaction that sets row-level
security's user (BEGIN, set_config, SELECT, ROLLBACK through SQLAlchemy's
execution and pool); the asyncpg store's is one statement.

    .venv/bin/python bench/storage_paths.py [--count 2000]

Uses the `taskvault_bench` database that `make bench` seeds.
"""

from __future__ import annotations

import argparse
import time

from adapters.asyncpg import PgStorage
from adapters.sqlalchemy import SqlAlchemyStorage
from application.ports import Storage
from application.queries import TaskQuery

URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/taskvault_bench"


async def measure(name: str, storage: Storage, count: int) -> float:
    query = TaskQuery(limit=20)

    async def one(user: str) -> None:
        assert len(await storage.reader(user).list(query)) == 21

    for i in range(100):
        await one(f"user{i:04d}")
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(count):
        await one(f"user{i % 1000:04d}")
    per_op = (time.process_time() - cpu) / count * 1e6
    wall_op = (time.perf_counter() - wall) / count * 1e6
    print(f"{name:44s} CPU {per_op:6.0f} us/op, wall {wall_op:6.0f} us/op")
    await storage.close()
    return per_op


async def main(count: int) -> None:
    sqlalchemy = await measure(
        "SQLAlchemy store (SqlAlchemyStorage)", SqlAlchemyStorage(URL, pool_size=4), count
    )
    asyncpg_path = await measure("asyncpg store (PgStorage)", PgStorage(URL, pool_size=4), count)
    print(f"ratio: {sqlalchemy / asyncpg_path:.1f}x the CPU through the SQLAlchemy store")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=2000)
    import uvloop

    uvloop.run(main(parser.parse_args().count))
