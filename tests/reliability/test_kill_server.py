"""``kill -9`` of ``taskvault serve`` during a stream of creates, on SQLite and PostgreSQL.

Clients retry every create that did not get its 201 with the same
Idempotency-Key until it does. Afterwards every acknowledged task exists and
no title exists twice: a create that committed just before the kill is
answered, on retry, with the task it made.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.reliability.support import SERVER_ENV, all_tasks, timed
from tests.support import auth
from tests.support.processes import TaskvaultServer

WORKERS = 6
CREATES_PER_WORKER = 60
KILLS = 2
RETRY_PAUSE_S = 0.05
DEADLINE_S = 60.0


class CreateStream:
    def __init__(self, base: str) -> None:
        self.base = base
        self.acked: dict[str, str] = {}  # title -> id
        self.attempts: list[int] = []  # per title
        self.statuses: Counter[str] = Counter()
        self.replays = 0

    async def worker(self, n: int, deadline: float) -> None:
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(
            base_url=self.base, headers=auth("crash"), timeout=10, limits=limits
        ) as client:
            for i in range(CREATES_PER_WORKER):
                await self._create_until_acked(client, f"crash {n}-{i}", deadline)

    async def _create_until_acked(
        self, client: httpx.AsyncClient, title: str, deadline: float
    ) -> None:
        key = f"key-{title}"
        for attempt in range(1, 1000):
            assert time.monotonic() < deadline, f"{title} not acknowledged in time"
            sent_at = datetime.now(UTC)
            outcome, response = await timed(
                client,
                "create",
                "POST",
                "/api/me/tasks",
                json={"title": title},
                headers={"Idempotency-Key": key},
            )
            self.statuses["transport" if outcome.status is None else str(outcome.status)] += 1
            if response is not None and response.status_code == 201:
                task = response.json()
                assert task["title"] == title
                self.acked[title] = task["id"]
                created_at = datetime.fromisoformat(task["created_at"].replace("Z", "+00:00"))
                if created_at < sent_at:
                    # Made by an earlier attempt whose answer the kill swallowed.
                    self.replays += 1
                self.attempts.append(attempt)
                return
            # Server gone (transport error), restarting (503), or the first
            # attempt's transaction not yet rolled back (409 in flight).
            assert outcome.status in (None, 409, 503), (title, outcome)
            await asyncio.sleep(RETRY_PAUSE_S)
        raise AssertionError(f"{title}: no 201 after 999 attempts")


async def _stream_with_kills(server: TaskvaultServer) -> CreateStream:
    stream = CreateStream(server.base)
    deadline = time.monotonic() + DEADLINE_S
    workers = [asyncio.create_task(stream.worker(n, deadline)) for n in range(WORKERS)]
    total = WORKERS * CREATES_PER_WORKER
    try:
        for kill in range(1, KILLS + 1):
            # Kill while creates are in full flow: at a third, then two thirds.
            while len(stream.acked) < total * kill // (KILLS + 1):
                assert time.monotonic() < deadline
                done = [w for w in workers if w.done()]
                for w in done:
                    w.result()  # a worker's failure, raised here
                assert len(done) < len(workers), "the stream ended before the kill"
                await asyncio.sleep(0.01)
            await asyncio.to_thread(server.kill9)
            await asyncio.sleep(0.3)
            await asyncio.to_thread(server.start)
        await asyncio.wait_for(asyncio.gather(*workers), timeout=DEADLINE_S)
    finally:
        for w in workers:
            w.cancel()
    return stream


async def _check(server: TaskvaultServer, stream: CreateStream) -> Counter[str]:
    async with httpx.AsyncClient(base_url=server.base, headers=auth("crash"), timeout=10) as c:
        for title, task_id in stream.acked.items():
            response = await c.get(f"/api/me/tasks/{task_id}")
            assert response.status_code == 200, title
            assert response.json()["title"] == title
            # Each key survived the kills with its task: a late retry gets that task.
            again = await c.post(
                "/api/me/tasks", json={"title": title}, headers={"Idempotency-Key": f"key-{title}"}
            )
            assert again.status_code == 201, title
            assert again.json()["id"] == task_id, title
        tasks = await all_tasks(c)
    return Counter(str(t["title"]) for t in tasks)


def _run(server: TaskvaultServer, figures: list[str]) -> None:
    server.start()
    try:
        stream = asyncio.run(_stream_with_kills(server))
        titles = asyncio.run(_check(server, stream))
    finally:
        server.stop()
    expected = WORKERS * CREATES_PER_WORKER
    assert len(stream.acked) == expected
    duplicates = {title: n for title, n in titles.items() if n > 1}
    assert duplicates == {}
    assert set(titles) == set(stream.acked)
    assert server.server_errors() == []
    retried = sum(1 for a in stream.attempts if a > 1)
    figures.append(
        f"{KILLS} kills; {sum(stream.statuses.values())} requests, by status "
        f"{dict(sorted(stream.statuses.items()))}; {expected} tasks acknowledged, "
        f"{retried} after retries (at most {max(stream.attempts)} attempts), "
        f"{stream.replays} of them answered with the task an earlier attempt made; "
        f"{len(titles)} distinct titles stored, none twice; {expected} fetched by id, "
        f"and each create sent again answered with its first task"
    )


def test_kill_9_during_creates_on_sqlite(tmp_path: Path, figures: list[str]) -> None:
    database = tmp_path / "var" / "taskvault.db"
    _run(
        TaskvaultServer(
            tmp_path, **SERVER_ENV, TASKVAULT_DATABASE_URL=f"sqlite+aiosqlite:///{database}"
        ),
        figures,
    )


@pytest.mark.usefixtures("pg_bin")
def test_kill_9_during_creates_on_postgres(
    tmp_path: Path, pg_database: str, figures: list[str]
) -> None:
    _run(
        TaskvaultServer(
            tmp_path,
            "--no-migrate",
            **SERVER_ENV,
            TASKVAULT_DATABASE_URL=pg_database,
            TASKVAULT_DB_TIMEOUT_S="2",
        ),
        figures,
    )
