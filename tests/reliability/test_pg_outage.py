"""PostgreSQL restarting or frozen under load, against a real ``taskvault serve``.

Every request ends within the database timeout plus a margin; while the
database is away the only errors are 503 problem+json with Retry-After;
/readyz follows the database; the service serves again, without a restart,
as soon as the database answers; and every task acknowledged with 201 is
there afterwards, as acknowledged.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from adapters.asyncpg import PgStorage
from adapters.asyncpg.unit_of_work import PgUnitOfWork
from application.errors import StorageUnavailable
from application.queries import TaskQuery
from tests.reliability.load import MixedLoad
from tests.reliability.pgcluster import PgCluster
from tests.reliability.support import (
    SERVER_ENV,
    Outcome,
    assert_proper_503s,
    by_status,
    create_database,
)
from tests.support.processes import TaskvaultServer

TIMEOUT_S = 2.0
MARGIN_S = 3.0
RECOVERY_S = 5.0
WORKERS = 8
LOAD_CAP_S = 30.0


@pytest.fixture
def server_on_own_cluster(own_cluster: PgCluster, tmp_path: Path) -> Iterator[TaskvaultServer]:
    url = asyncio.run(create_database(own_cluster.url(), "taskvault"))
    server = TaskvaultServer(
        tmp_path,
        "--no-migrate",
        **SERVER_ENV,
        TASKVAULT_DATABASE_URL=url,
        TASKVAULT_DB_TIMEOUT_S=str(TIMEOUT_S),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _first_ok_after(outcomes: list[Outcome], moment: float) -> Outcome | None:
    later = sorted((o for o in outcomes if o.start >= moment and o.ok), key=lambda o: o.end)
    return later[0] if later else None


def _check_outage(
    load: MixedLoad, *, went: float, gone: float, back: float, figures: list[str]
) -> None:
    """Assertions shared by the restart and the freeze.

    ``went``: the fault began; ``gone``: it was in full effect; ``back``: the
    database answers again.
    """
    outcomes, readyz = load.outcomes, load.readyz
    everything = outcomes + readyz
    assert outcomes, "no load was sent"

    slowest = max(o.duration for o in everything)
    assert slowest <= TIMEOUT_S + MARGIN_S, f"a request took {slowest:.2f} s"
    assert {o.status for o in outcomes} <= {200, 201, 503}, by_status(outcomes)
    assert_proper_503s(everything)
    assert all(o.ok for o in everything if o.end < went), "errors before the fault"

    during = [o for o in outcomes if gone <= o.start and o.end <= back]
    assert any(o.status == 503 for o in during), "the outage was never seen"
    assert any(o.status == 503 for o in readyz if gone <= o.start and o.end <= back)

    first = _first_ok_after(outcomes, back)
    assert first is not None, "no request succeeded after the database came back"
    recovery = first.end - back
    assert recovery <= RECOVERY_S, f"first 2xx {recovery:.2f} s after the database was back"
    ready = _first_ok_after(readyz, back)
    assert ready is not None, "/readyz never turned 200 again"
    assert readyz[-1].status == 200
    # Once serving again, it stays so: no stale pooled connection fails later.
    late = [o for o in outcomes if o.start >= first.end]
    assert all(o.ok for o in late), by_status(late)

    checked = asyncio.run(load.check_acknowledged())
    figures.append(
        f"{len(outcomes)} requests, by status {by_status(outcomes)}; "
        f"/readyz {len(readyz)} polls, by status {by_status(readyz)}; "
        f"slowest {slowest:.2f} s; "
        f"first 2xx {recovery:.2f} s and /readyz 200 {ready.end - back:.2f} s "
        f"after the database answered; {len(late)} requests after, all 2xx; "
        f"{checked} acknowledged tasks checked"
    )


def test_postgres_restart_under_load(
    own_cluster: PgCluster, server_on_own_cluster: TaskvaultServer, figures: list[str]
) -> None:
    server = server_on_own_cluster
    load = MixedLoad(server.base, workers=WORKERS)

    async def scenario() -> tuple[float, float, float]:
        tasks = await load.run(LOAD_CAP_S)
        try:
            await asyncio.sleep(2.5)
            went = time.monotonic()
            await asyncio.to_thread(own_cluster.stop, "fast")
            gone = time.monotonic()
            await asyncio.sleep(2.0)
            await asyncio.to_thread(own_cluster.start)  # -w: returns once it accepts
            back = time.monotonic()
            await asyncio.sleep(4.0)
        finally:
            await load.stop(tasks)
        return went, gone, back

    went, gone, back = asyncio.run(scenario())
    figures.append(f"pg_ctl stop -m fast took {gone - went:.2f} s, down {back - gone:.2f} s")
    _check_outage(load, went=went, gone=gone, back=back, figures=figures)
    assert server.server_errors() == []


def _cluster_pids(cluster: PgCluster) -> tuple[int, list[int]]:
    """The postmaster and its children (backends and auxiliary processes)."""
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    children: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[1]) == postmaster:  # state, then ppid
            children.append(int(stat.parent.name))
    return postmaster, children


@contextmanager
def frozen(cluster: PgCluster) -> Iterator[None]:
    """Every process of the cluster stopped (SIGSTOP): connections open, nothing answers."""
    postmaster, children = _cluster_pids(cluster)
    os.kill(postmaster, signal.SIGSTOP)  # first: it forks no new backend meanwhile
    stopped = [postmaster]
    try:
        for pid in children:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                continue
            stopped.append(pid)
        yield
    finally:
        for pid in reversed(stopped):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def test_frozen_postgres_gives_bounded_503s(
    own_cluster: PgCluster, server_on_own_cluster: TaskvaultServer, figures: list[str]
) -> None:
    """A database that accepts TCP but never answers: timeouts, not hangs."""
    server = server_on_own_cluster
    load = MixedLoad(server.base, workers=WORKERS)

    async def scenario() -> tuple[float, float, float]:
        tasks = await load.run(LOAD_CAP_S)
        try:
            await asyncio.sleep(2.0)
            with frozen(own_cluster):
                went = gone = time.monotonic()
                await asyncio.sleep(2 * TIMEOUT_S + 1)
            back = time.monotonic()
            await asyncio.sleep(3.0)
        finally:
            await load.stop(tasks)
        return went, gone, back

    went, gone, back = asyncio.run(scenario())
    _check_outage(load, went=went, gone=gone, back=back, figures=figures)
    assert server.server_errors() == []


async def _fill_pool_restart_and_use(cluster: PgCluster, url: str) -> list[str]:
    storage = PgStorage(url, timeout_s=TIMEOUT_S, pool_size=4)
    try:

        async def one(user: str) -> None:
            async with storage.unit_of_work(user) as uow:
                await uow.tasks.list(TaskQuery())
                await asyncio.sleep(0.2)  # all four connections out at once

        await asyncio.gather(*(one(f"u{n}") for n in range(4)))
        await asyncio.to_thread(cluster.stop, "fast")
        with pytest.raises(StorageUnavailable):
            await storage.reader("u0").list(TaskQuery())
        await asyncio.to_thread(cluster.start)
        results: list[str] = []
        for n in range(8):  # twice the pool: every stale connection would be met
            try:
                await one(f"u{n % 4}")
            except StorageUnavailable as error:
                results.append(f"503 ({error})")
            else:
                results.append("ok")
        await storage.ping()
        return results
    finally:
        await storage.close()


def test_stale_pooled_connections_are_replaced_not_failed(own_cluster: PgCluster) -> None:
    """After a restart with no traffic meanwhile, the first uses of the pool all succeed."""
    url = asyncio.run(create_database(own_cluster.url(), "stale"))
    results = asyncio.run(_fill_pool_restart_and_use(own_cluster, url))
    assert results == ["ok"] * 8


INTERNAL = "cannot switch to state 15; another operation (2) is in progress"


async def _raise_in_unit_of_work(url: str, *, lose_connection: bool) -> BaseException:
    """What a unit of work makes of asyncpg's InternalClientError, with the
    connection lost (as when the server shut down mid-statement) or not."""
    storage = PgStorage(url, timeout_s=TIMEOUT_S, pool_size=1)
    admin = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string())
    try:
        caught: Exception | None = None
        try:
            async with storage.unit_of_work("u") as uow:
                assert isinstance(uow, PgUnitOfWork)
                connection = await uow.connection()
                if lose_connection:
                    pid = connection.get_server_pid()
                    await admin.execute("SELECT pg_terminate_backend($1)", pid)
                    for _ in range(200):
                        if connection.is_closed():
                            break
                        await asyncio.sleep(0.01)
                    assert connection.is_closed()
                raise asyncpg.InternalClientError(INTERNAL)
        except Exception as error:
            caught = error
        assert caught is not None
        # The only pooled connection was dropped or kept as needed: it still serves.
        await storage.reader("u").list(TaskQuery())
        return caught
    finally:
        await admin.close()
        await storage.close()


def test_any_error_on_a_lost_connection_is_unavailable(pg_database: str) -> None:
    """asyncpg reports some connections lost mid-statement as an InternalClientError
    about its protocol state (seen under `pg_ctl stop -m fast`): a 503, not a 500."""
    lost = asyncio.run(_raise_in_unit_of_work(pg_database, lose_connection=True))
    assert isinstance(lost, StorageUnavailable)
    # On a live connection the same error is a bug, and stays one.
    live = asyncio.run(_raise_in_unit_of_work(pg_database, lose_connection=False))
    assert isinstance(live, asyncpg.InternalClientError)
