"""SQLite (the default store) under ``taskvault serve --workers 2``: two processes, one file.

300 writes over 16 connections, half creates and half toggles of four shared
tasks, so both processes fight for the same write lock and the same rows:
every write is a 2xx (no "database is locked" 500 or 503), and every toggle
is counted in its task's version.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx

from tests.reliability.support import (
    SERVER_ENV,
    Outcome,
    all_tasks,
    by_status,
    gather_bounded,
    timed,
)
from tests.support import auth
from tests.support.processes import TaskvaultServer

WRITES = 300
CONNECTIONS = 16
SHARED = 4


async def _contend(base: str) -> tuple[Counter[str], Counter[int], list[dict[str, object]], float]:
    headers = auth("contender")
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as setup:
        shared = [
            (await setup.post("/api/me/tasks", json={"title": f"shared {n}"})).json()["id"]
            for n in range(SHARED)
        ]
    # One client per connection, so the kernel spreads them over both workers.
    clients = [
        httpx.AsyncClient(
            base_url=base, headers=headers, timeout=30, limits=httpx.Limits(max_connections=1)
        )
        for _ in range(CONNECTIONS)
    ]
    toggled: Counter[int] = Counter()

    async def write(n: int) -> tuple[Outcome, httpx.Response | None]:
        client = clients[n % CONNECTIONS]
        if n % 2 == 0:
            return await timed(client, "create", "POST", "/api/me/tasks", json={"title": f"w {n}"})
        target = (n // 2) % SHARED
        toggled[target] += 1
        return await timed(client, "toggle", "PATCH", f"/api/me/tasks/{shared[target]}/complete")

    started = time.monotonic()
    try:
        results = await gather_bounded(CONNECTIONS, (write(n) for n in range(WRITES)))
    finally:
        for client in clients:
            await client.aclose()
    elapsed = time.monotonic() - started
    outcomes = [outcome for outcome, _ in results]
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as check:
        tasks = await all_tasks(check)
    return Counter(by_status(outcomes)), toggled, tasks, elapsed


def test_two_workers_on_sqlite_take_concurrent_writes(tmp_path: Path, figures: list[str]) -> None:
    server = TaskvaultServer(tmp_path, "--workers", "2", **SERVER_ENV)
    server.start()
    try:
        statuses, toggled, tasks, elapsed = asyncio.run(_contend(server.base))
    finally:
        server.stop()
    assert statuses == {"201": WRITES // 2, "200": WRITES // 2}, statuses
    by_title = {str(t["title"]): t for t in tasks}
    assert len(tasks) == SHARED + WRITES // 2
    for n in range(SHARED):
        task = by_title[f"shared {n}"]
        assert task["version"] == 1 + toggled[n], task
    assert server.log_text().count("Started server process") == 2
    assert "database is locked" not in server.log_text()
    assert server.server_errors() == []
    figures.append(
        f"{WRITES} writes over {CONNECTIONS} connections to 2 workers in {elapsed:.1f} s: "
        f"{dict(statuses)}; shared tasks' versions = 1 + their toggles"
    )
