"""Row-level security, proven as an ordinary (non-superuser) role.

RLS does not apply to superusers, so these tests create a login role without
SUPERUSER or BYPASSRLS and run the app's own units of work as that role, on
both PostgreSQL adapters, on PostgreSQL and on Citus (where the policies hold
on the workers, which must learn each transaction's user); the
single-statement reads and the one-call writer are the asyncpg store's.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

import asyncpg
import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from adapters.asyncpg import PgStorage
from adapters.asyncpg.statements import UPDATE_ALONE_ARGUMENTS
from adapters.asyncpg.storage import dsn_of
from adapters.asyncpg.unit_of_work import PgUnitOfWork
from adapters.sqlalchemy import SqlAlchemyStorage
from adapters.sqlalchemy.unit_of_work import SqlUnitOfWork
from adapters.system import SystemClock
from application.ports import Storage, UnitOfWork
from application.queries import Sort, SortField, Status, TaskFilter, TaskQuery
from domain.task import Task, TaskFields
from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests.support import SECRET, auth


@dataclass(frozen=True)
class Target:
    """Where a test runs: the ordinary role's URL, and a superuser's on the same database."""

    role_url: str
    admin_url: str


_DATABASES = {
    "postgres": ("app_role_url", "postgres_url"),
    "pgbouncer": ("pgbouncer_app_role_url", "postgres_url"),
    "citus": ("citus_app_role_url", "citus_url"),
}


def _target(request: pytest.FixtureRequest, database: str) -> Target:
    role, admin = _DATABASES[database]
    return Target(request.getfixturevalue(role), request.getfixturevalue(admin))


@pytest.fixture(
    params=[
        pytest.param(("asyncpg", "postgres"), marks=pytest.mark.postgres, id="asyncpg"),
        pytest.param(("sqlalchemy", "postgres"), marks=pytest.mark.postgres, id="sqlalchemy"),
        pytest.param(
            ("asyncpg", "pgbouncer"), marks=pytest.mark.postgres, id="asyncpg-through-pgbouncer"
        ),
        pytest.param(("asyncpg", "citus"), marks=pytest.mark.citus, id="asyncpg-citus"),
        pytest.param(("sqlalchemy", "citus"), marks=pytest.mark.citus, id="sqlalchemy-citus"),
    ]
)
def store_kind(request: pytest.FixtureRequest) -> tuple[str, str, Target]:
    """Which store, on which database, and the URLs it and the test connect with."""
    kind, database = request.param
    return kind, database, _target(request, database)


@pytest.fixture
def target(store_kind: tuple[str, str, Target]) -> Target:
    return store_kind[2]


@pytest.fixture
async def storage(store_kind: tuple[str, str, Target]) -> AsyncIterator[Storage]:
    kind, database, target = store_kind
    store: Storage = (
        SqlAlchemyStorage(target.role_url)
        if kind == "sqlalchemy"
        else PgStorage(target.role_url, pooled_by_transaction=database == "pgbouncer")
    )
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(
    params=[
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("citus", marks=pytest.mark.citus),
    ]
)
def pg_target(request: pytest.FixtureRequest) -> Target:
    """PostgreSQL or Citus, for the asyncpg store's own tests."""
    return _target(request, request.param)


@pytest.fixture
async def pg_storage(pg_target: Target) -> AsyncIterator[PgStorage]:
    """The asyncpg store on one connection, so that a test can inspect the one its reads use."""
    store = PgStorage(pg_target.role_url, pool_size=1)
    try:
        yield store
    finally:
        await store.close()


async def _seed(storage: Storage, owner: str, count: int) -> list[Task]:
    clock = SystemClock()
    tasks = [
        Task.new(
            task_id=uuid.uuid4(), owner=owner, fields=TaskFields(f"{owner} {i}"), now=clock.now()
        )
        for i in range(count)
    ]
    async with storage.unit_of_work(owner) as uow:
        for task in tasks:
            await uow.tasks.add(task)
        await uow.commit()
    return tasks


async def _titles_as_admin(url: str) -> dict[str, list[str]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(text("SELECT user_id, title FROM tasks ORDER BY title"))
            ).all()
    finally:
        await engine.dispose()
    found: dict[str, list[str]] = {}
    for user_id, title in rows:
        found.setdefault(user_id, []).append(title)
    return found


async def _session(uow: UnitOfWork) -> asyncpg.Connection:
    """The app's own asyncpg connection inside the unit of work's transaction."""
    if isinstance(uow, PgUnitOfWork):
        return await uow.connection()
    assert isinstance(uow, SqlUnitOfWork)
    raw = await uow.connection.get_raw_connection()
    return raw.driver_connection


async def test_unscoped_select_sees_only_the_current_users_rows(storage: Storage) -> None:
    await _seed(storage, "alice", 3)
    await _seed(storage, "bob", 2)
    async with storage.unit_of_work("alice") as uow:
        session = await _session(uow)
        rows = await session.fetch("SELECT user_id FROM tasks")
    assert [row["user_id"] for row in rows] == ["alice"] * 3


async def test_unscoped_update_touches_only_the_current_users_rows(
    storage: Storage, target: Target
) -> None:
    await _seed(storage, "alice", 2)
    await _seed(storage, "bob", 2)
    async with storage.unit_of_work("alice") as uow:
        session = await _session(uow)
        status = await session.execute("UPDATE tasks SET title = 'owned'")
        await uow.commit()
    assert status == "UPDATE 2"
    titles = await _titles_as_admin(target.admin_url)
    assert titles["alice"] == ["owned", "owned"]
    assert titles["bob"] == ["bob 0", "bob 1"]


async def test_unscoped_delete_touches_only_the_current_users_rows(
    storage: Storage, target: Target
) -> None:
    await _seed(storage, "alice", 2)
    await _seed(storage, "bob", 2)
    async with storage.unit_of_work("bob") as uow:
        session = await _session(uow)
        await session.execute("DELETE FROM tasks")
        await uow.commit()
    assert set(await _titles_as_admin(target.admin_url)) == {"alice"}


async def test_writing_a_row_for_another_user_is_refused(storage: Storage) -> None:
    async with storage.unit_of_work("alice") as uow:
        session = await _session(uow)
        with pytest.raises(asyncpg.PostgresError, match="row-level security"):
            await session.execute(
                "INSERT INTO tasks (user_id, id, title, completed, priority, created_at, "
                "updated_at, version, search_text) VALUES ('bob', gen_random_uuid(), 'planted', "
                "false, 2, now(), now(), 1, 'planted')"
            )


async def test_a_writer_sets_the_user_before_it_updates(storage: Storage, target: Target) -> None:
    """The asyncpg store's writer is one call of ``taskvault_update_task``,
    which sets the user itself: were it set after the UPDATE's scan began,
    RLS would hide the owner's own row and every write would fail. Seven
    times, past the point where PostgreSQL may plan the function's
    statements generically."""
    (task,) = await _seed(storage, "alice", 1)
    await _seed(storage, "bob", 1)
    for n in range(7):
        changed = task.with_fields(TaskFields(f"alice {n}"), task.updated_at)
        assert await storage.writer("alice").update(changed, expected_version=task.version)
        task = changed
    titles = await _titles_as_admin(target.admin_url)
    assert titles == {"alice": ["alice 6"], "bob": ["bob 0"]}


async def test_a_writer_reaches_no_other_users_task(storage: Storage, target: Target) -> None:
    (bobs,) = await _seed(storage, "bob", 1)
    planted = bobs._replace(user_id="alice").with_fields(TaskFields("planted"), bobs.updated_at)
    assert not await storage.writer("alice").update(planted, expected_version=bobs.version)
    assert await _titles_as_admin(target.admin_url) == {"bob": ["bob 0"]}


async def test_a_writer_leaves_no_user_behind(pg_storage: PgStorage) -> None:
    (task,) = await _seed(pg_storage, "alice", 1)
    changed = task.with_fields(TaskFields("changed"), task.updated_at)
    assert await pg_storage.writer("alice").update(changed, expected_version=task.version)
    await _assert_no_user_left(pg_storage)


@pytest.mark.postgres
async def test_the_update_function_runs_with_the_callers_rights_and_the_writers_arguments(
    postgres_url: str,
) -> None:
    """SECURITY DEFINER would run it as its owner, whom row-level security may
    not bind; and its parameters must be ``UPDATE_ALONE``'s, so that a field
    added to the tasks without a migration replacing the function fails here."""
    connection = await asyncpg.connect(dsn_of(postgres_url))
    try:
        row = await connection.fetchrow(
            "SELECT prosecdef, proargnames FROM pg_proc WHERE proname = 'taskvault_update_task'"
        )
    finally:
        await connection.close()
    assert row is not None
    assert row["prosecdef"] is False
    assert tuple(row["proargnames"]) == UPDATE_ALONE_ARGUMENTS


_READS = [
    TaskQuery(),
    TaskQuery(sort=Sort(SortField.TITLE, descending=False), limit=1),
    TaskQuery(filter=TaskFilter(status=Status.PENDING, text="alice")),
    TaskQuery(sort=Sort(SortField.DUE_AT)),
]


@pytest.mark.parametrize("plans", ["force_custom_plan", "auto"])
async def test_a_single_statement_read_sets_the_user_before_it_scans(
    pg_storage: PgStorage, pg_target: Target, plans: str
) -> None:
    """Reads outside a transaction set the user inside the statement itself
    (``adapters.asyncpg.statements.single_statement``): were it set after the
    scan began, RLS would hide the owner's own rows. The pool's one
    connection is new: it has never set the user before."""
    await _read_with_plans(pg_storage, pg_target.role_url, plans)


@pytest.mark.postgres
async def test_a_generic_plan_of_a_single_statement_read_sets_the_user_too(
    app_role_url: str,
) -> None:
    """PostgreSQL only: Citus plans these reads with their parameters bound,
    and under ``auto`` (above) it prices a generic plan out itself."""
    store = PgStorage(app_role_url, pool_size=1)
    try:
        await _read_with_plans(store, app_role_url, "force_generic_plan")
    finally:
        await store.close()


async def _read_with_plans(storage: PgStorage, role_url: str, plans: str) -> None:
    alice = await _seed(storage, "alice", 3)
    await _seed(storage, "bob", 2)
    fresh = PgStorage(role_url, pool_size=1)
    try:
        connection = await fresh.pool.acquire()
        await connection.execute(f"SET plan_cache_mode = {plans}")
        fresh.pool.release(connection)
        await _read_alices_tasks(fresh, alice)
    finally:
        await fresh.close()


async def _read_alices_tasks(storage: PgStorage, alice: list[Task]) -> None:
    reader = storage.reader("alice")
    # Several times: PostgreSQL may switch a prepared statement to a generic
    # plan after five runs.
    for _ in range(7):
        for query in _READS:
            found = await reader.list(query)
            expected = min(query.limit + 1, 3)  # one more tells of a next page
            assert len(found) == expected
            assert {task.user_id for task in found} == {"alice"}
        for task in alice:
            assert await reader.get(task.id) == task
        # The feed's union: each part must see the user set too.
        feed = await reader.changes(None, 10)
        assert sorted(change.item.id for change in feed.changes) == sorted(t.id for t in alice)
        assert feed.head > 0


async def _assert_no_user_left(pg_storage: PgStorage) -> None:
    """The pool's one connection, after its statements' transactions ended,
    has no user set and sees no task."""
    connection = await pg_storage.pool.acquire()
    try:
        assert await connection.fetchval("SELECT count(*) FROM tasks") == 0
        assert not await connection.fetchval("SELECT current_setting('taskvault.user_id', true)")
    finally:
        pg_storage.pool.release(connection)


async def test_a_single_statement_read_leaves_no_user_behind(pg_storage: PgStorage) -> None:
    alice = await _seed(pg_storage, "alice", 2)
    reader = pg_storage.reader("alice")
    assert await reader.get(alice[0].id) is not None
    assert await reader.list(TaskQuery()) != []
    # The same connection, after the reads' implicit transactions ended.
    await _assert_no_user_left(pg_storage)


async def test_a_single_statement_read_finds_nothing_of_another_user(
    pg_storage: PgStorage,
) -> None:
    bob = await _seed(pg_storage, "bob", 2)
    reader = pg_storage.reader("alice")
    assert await reader.list(TaskQuery()) == []
    assert await reader.get(bob[0].id) is None


async def test_a_connection_without_a_user_sees_nothing(storage: Storage, target: Target) -> None:
    await _seed(storage, "alice", 2)
    engine = create_async_engine(target.role_url)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM tasks"))).scalar_one() == 0
    finally:
        await engine.dispose()


async def test_idempotency_keys_are_confined_too(storage: Storage) -> None:
    tasks = await _seed(storage, "bob", 1)
    async with storage.unit_of_work("bob") as uow:
        session = await _session(uow)
        await session.execute(
            "INSERT INTO idempotency_keys (user_id, key, fingerprint, task, created_at) "
            "VALUES ('bob', 'k', 'f', $1, now())",
            str(tasks[0].id),
        )
        await uow.commit()
    async with storage.unit_of_work("alice") as uow:
        session = await _session(uow)
        count = await session.fetchval("SELECT count(*) FROM idempotency_keys")
    assert count == 0


@pytest.fixture(
    params=[
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("pgbouncer", marks=pytest.mark.postgres),
        pytest.param("citus", marks=pytest.mark.citus),
    ]
)
def pooled(request: pytest.FixtureRequest) -> tuple[str, Literal["none", "transaction"]]:
    """The ordinary role's URL directly (no pooler), through PgBouncer in
    transaction mode, and on Citus."""
    url: str = request.getfixturevalue(_DATABASES[request.param][0])
    return url, "transaction" if request.param == "pgbouncer" else "none"


async def test_the_api_works_as_an_ordinary_role_and_does_not_warn(
    pooled: tuple[str, Literal["none", "transaction"]], caplog: pytest.LogCaptureFixture
) -> None:
    url, pooler = pooled
    settings = Settings(  # type: ignore[call-arg]
        database_url=url, jwt_secret=SecretStr(SECRET), db_pooler=pooler, _env_file=None
    )
    app = create_app(settings)
    with caplog.at_level(logging.WARNING, logger="taskvault"):
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://t"
            ) as client,
        ):
            for user in ("alice", "bob"):
                created = await client.post(
                    "/api/me/tasks", json={"title": user}, headers=auth(user)
                )
                assert created.status_code == 201
            listed = await client.get("/api/me/tasks", headers=auth("alice"))
            assert [task["title"] for task in listed.json()] == ["alice"]
    assert not [r for r in caplog.records if "row-level security" in r.getMessage()]


@pytest.mark.postgres
async def test_a_superuser_role_is_warned_about_at_start(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(database_url=postgres_url, jwt_secret=SecretStr(SECRET), _env_file=None)  # type: ignore[call-arg]
    app = create_app(settings)
    with caplog.at_level(logging.WARNING, logger="taskvault"):
        async with app.router.lifespan_context(app):
            pass
    warnings = [r for r in caplog.records if "row-level security does not apply" in r.getMessage()]
    assert len(warnings) == 1


@pytest.mark.parametrize(
    "owner", ["o'brien", "x'); DROP TABLE tasks; --", "back\\slash", "Ünïcødé 🎉", "$$"]
)
async def test_the_user_a_transaction_sets_is_the_owner_exactly(
    pg_storage: PgStorage, owner: str
) -> None:
    async with pg_storage.unit_of_work(owner) as uow:
        session = await uow.connection()
        assert await session.fetchval("SELECT current_setting('taskvault.user_id')") == owner
