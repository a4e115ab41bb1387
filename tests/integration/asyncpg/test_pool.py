"""``PgPool``: the connections the asyncpg store's units of work and reads borrow."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from adapters.asyncpg.pool import PgPool
from adapters.asyncpg.storage import dsn_of
from application.ports import PoolStatus

pytestmark = pytest.mark.postgres

TIMEOUT_S = 0.3


@pytest.fixture
async def pool(postgres_database_url: str) -> AsyncIterator[PgPool]:
    """A pool of one connection that waits at most TIMEOUT_S."""
    pool = PgPool(dsn_of(postgres_database_url), size=1, timeout_s=TIMEOUT_S)
    try:
        yield pool
    finally:
        await pool.close()


async def test_a_returned_connection_is_lent_again(pool: PgPool) -> None:
    first = await pool.acquire()
    pid = first.get_server_pid()
    assert pool.status() == PoolStatus(size=1, in_use=1)
    pool.release(first)
    assert pool.status() == PoolStatus(size=1, in_use=0)
    again = await pool.acquire()
    assert again.get_server_pid() == pid
    assert await again.fetchval("SELECT 1") == 1
    pool.release(again)


async def test_waiters_are_served_in_order_of_arrival(pool: PgPool) -> None:
    held = await pool.acquire()
    served: list[int] = []

    async def borrow(n: int) -> None:
        connection = await pool.acquire()
        served.append(n)
        await asyncio.sleep(0)
        pool.release(connection)

    waiters = []
    for n in range(5):
        waiters.append(asyncio.create_task(borrow(n)))
        await asyncio.sleep(0)  # each in the queue before the next
    pool.release(held)
    await asyncio.gather(*waiters)
    assert served == [0, 1, 2, 3, 4]


async def test_a_newcomer_does_not_take_a_connection_a_waiter_was_given(pool: PgPool) -> None:
    held = await pool.acquire()
    waiter = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0)
    pool.release(held)
    newcomer = asyncio.create_task(pool.acquire())
    first = await waiter
    assert not newcomer.done()
    pool.release(first)
    pool.release(await newcomer)


async def test_a_waiter_gives_up_after_the_timeout_and_the_pool_still_serves(
    pool: PgPool,
) -> None:
    held = await pool.acquire()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await pool.acquire()
    assert TIMEOUT_S * 0.9 <= loop.time() - started < TIMEOUT_S * 5
    pool.release(held)
    connection = await pool.acquire()
    assert await connection.fetchval("SELECT 1") == 1
    pool.release(connection)
    assert pool.status().in_use == 0


async def test_a_cancelled_waiter_passes_on_the_connection_it_was_handed(
    pool: PgPool,
) -> None:
    held = await pool.acquire()
    waiter = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0)
    pool.release(held)  # handed to the waiter, which has not run yet
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert pool.status().in_use == 0
    connection = await asyncio.wait_for(pool.acquire(), TIMEOUT_S)
    pool.release(connection)


async def test_a_connection_returned_closed_frees_its_slot(pool: PgPool) -> None:
    broken = await pool.acquire()
    broken.terminate()
    pool.release(broken)
    assert pool.status().in_use == 0
    fresh = await pool.acquire()
    assert fresh is not broken
    assert await fresh.fetchval("SELECT 1") == 1
    pool.release(fresh)


async def test_a_waiter_gets_a_new_connection_when_the_held_one_comes_back_closed(
    pool: PgPool,
) -> None:
    held = await pool.acquire()
    waiter = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0)
    held.terminate()
    pool.release(held)
    fresh = await waiter
    assert await fresh.fetchval("SELECT 1") == 1
    pool.release(fresh)
    assert pool.status() == PoolStatus(size=1, in_use=0)


async def test_an_idle_connection_the_server_closed_is_replaced(
    pool: PgPool, postgres_database_url: str
) -> None:
    connection = await pool.acquire()
    pid = connection.get_server_pid()
    pool.release(connection)
    dsn = make_url(postgres_database_url).set(drivername="postgresql").render_as_string(False)
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    for _ in range(200):
        if connection.is_closed():
            break
        await asyncio.sleep(0.01)
    assert connection.is_closed()
    replacement = await pool.acquire()
    assert replacement.get_server_pid() != pid
    assert await replacement.fetchval("SELECT 1") == 1
    pool.release(replacement)


async def test_a_closed_pool_refuses_and_closes_what_comes_back(pool: PgPool) -> None:
    lent = await pool.acquire()
    await pool.close()
    with pytest.raises(asyncpg.InterfaceError):
        await pool.acquire()
    pool.release(lent)
    assert lent.is_closed()
    assert pool.status().in_use == 0
