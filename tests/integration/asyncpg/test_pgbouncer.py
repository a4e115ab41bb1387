"""Through PgBouncer in transaction mode: two users' transactions take turns on one
server connection, and no user setting outlives the transaction that set it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from adapters.asyncpg import PgStorage
from adapters.asyncpg.storage import dsn_of
from adapters.sql.migrate import upgrade
from application.queries import TaskQuery
from domain.task import Task, TaskFields
from tests.support.databases import (
    PGBOUNCER_APP_ROLE,
    as_admin,
    as_role,
    create_role,
    grant_app_tables,
    through_pgbouncer,
)

pytestmark = pytest.mark.postgres

SINGLE = "taskvault_pgbouncer_single"
"""The database .ci/run's PgBouncer gives exactly one server connection."""


class Boom(Exception):
    """Fails a transaction after its first write."""


@pytest.fixture
async def single_server_url(postgres_server_url: str) -> AsyncIterator[str]:
    """A migrated ``SINGLE`` database, as the ordinary role, through PgBouncer."""
    role = PGBOUNCER_APP_ROLE
    bouncer = through_pgbouncer(postgres_server_url)
    await as_admin(
        postgres_server_url,
        f"DROP DATABASE IF EXISTS {SINGLE} WITH (FORCE)",
        f"CREATE DATABASE {SINGLE}",
        create_role(role, if_missing=True),
    )
    direct = make_url(postgres_server_url).set(database=SINGLE).render_as_string(False)
    await upgrade(direct)
    await as_admin(direct, grant_app_tables(role))
    try:
        yield as_role(make_url(bouncer).set(database=SINGLE).render_as_string(False), role)
    finally:
        await as_admin(postgres_server_url, f"DROP DATABASE IF EXISTS {SINGLE} WITH (FORCE)")


def _task(owner: str, title: str) -> Task:
    return Task.new(
        task_id=uuid.uuid4(), owner=owner, fields=TaskFields(title), now=datetime.now(UTC)
    )


async def test_no_user_setting_outlives_a_transaction_on_the_one_server(
    single_server_url: str,
) -> None:
    alice = PgStorage(single_server_url, pool_size=3, pooled_by_transaction=True)
    bob = PgStorage(single_server_url, pool_size=3, pooled_by_transaction=True)
    probe = await asyncpg.connect(dsn_of(single_server_url), statement_cache_size=0)
    seen: list[tuple[int, str | None, int]] = []

    async def look() -> None:
        """What a transaction that sets no user finds on the server connection."""
        row = await probe.fetchrow(
            "SELECT pg_backend_pid(), current_setting('taskvault.user_id', true), "
            "(SELECT count(*) FROM tasks)"
        )
        assert row is not None
        seen.append((row[0], row[1] or None, row[2]))

    async def fail_midway(store: PgStorage, owner: str) -> None:
        async with store.unit_of_work(owner) as uow:
            await uow.tasks.add(_task(owner, "never committed"))
            raise Boom

    try:
        mine = _task("alice", "alice's")
        async with alice.unit_of_work("alice") as uow:
            await uow.tasks.add(mine)
            await uow.commit()
        await look()
        assert await bob.reader("bob").list(TaskQuery()) == []
        await look()
        assert await bob.reader("bob").get(mine.id) is None
        await look()
        with pytest.raises(Boom):
            await fail_midway(bob, "bob")
        await look()
        assert await alice.reader("alice").get(mine.id) == mine
        await look()

        async def alice_reads() -> list[Task]:
            return await alice.reader("alice").list(TaskQuery())

        async def bob_writes(n: int) -> None:
            async with bob.unit_of_work("bob") as uow:
                await uow.tasks.add(_task("bob", f"bob's {n}"))
                await uow.commit()

        # Interleaved on the one server connection, which queues them.
        results = await asyncio.gather(
            *(alice_reads() for _ in range(20)), *(bob_writes(n) for n in range(20))
        )
        await look()
    finally:
        await probe.close()
        await alice.close()
        await bob.close()

    assert all(found == [mine] for found in results[:20])
    assert len({pid for pid, _, _ in seen}) == 1, "the probe met more than one server connection"
    assert [(user, count) for _, user, count in seen] == [(None, 0)] * len(seen)
