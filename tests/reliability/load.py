"""A bounded mixed load (creates, lists, gets, toggles) that remembers what was acknowledged.

Each worker is one user with its own connection and works only on its own
tasks, one request at a time: a 200 from a toggle is then the task's whole
state, and a toggle that failed is the only thing in doubt (it may or may not
have been applied before the database went away).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass

import httpx

from tests.reliability.support import Outcome, gather_bounded, timed
from tests.support import auth

PRIORITIES = ("low", "medium", "high")
MAX_REQUESTS_PER_WORKER = 20_000
PAUSE_AFTER_ERROR_S = 0.05


@dataclass
class Acked:
    """A task as the service last acknowledged it."""

    id: str
    user: str
    title: str
    description: str | None
    priority: str
    version: int
    completed: bool
    doubtful: int = 0
    """Toggles sent since, whose outcome the client never learned."""


class MixedLoad:
    def __init__(self, base: str, *, workers: int, request_timeout_s: float = 10.0) -> None:
        self.base = base
        self.workers = workers
        self.request_timeout_s = request_timeout_s
        self.outcomes: list[Outcome] = []
        self.readyz: list[Outcome] = []
        self.acked: dict[str, Acked] = {}
        self.stopping = asyncio.Event()

    def client(self, user: str | None) -> httpx.AsyncClient:
        headers = auth(user) if user is not None else {}
        return httpx.AsyncClient(
            base_url=self.base,
            headers=headers,
            timeout=self.request_timeout_s,
            limits=httpx.Limits(max_connections=1),
        )

    async def run(self, seconds_cap: float) -> list[asyncio.Task[None]]:
        """Start the workers and the /readyz poller; ``stop()`` ends them."""
        tasks = [asyncio.create_task(self._worker(n, seconds_cap)) for n in range(self.workers)]
        tasks.append(asyncio.create_task(self._poll_readyz(seconds_cap)))
        return tasks

    async def stop(self, tasks: list[asyncio.Task[None]]) -> None:
        self.stopping.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=self.request_timeout_s + 10)

    async def _poll_readyz(self, seconds_cap: float) -> None:
        deadline = time.monotonic() + seconds_cap
        async with self.client(None) as client:
            while not self.stopping.is_set() and time.monotonic() < deadline:
                outcome, _ = await timed(client, "readyz", "GET", "/readyz")
                self.readyz.append(outcome)
                await asyncio.sleep(0.1)

    async def _worker(self, n: int, seconds_cap: float) -> None:
        rng = random.Random(n)
        user = f"load-{n}"
        own: list[Acked] = []
        deadline = time.monotonic() + seconds_cap
        async with self.client(user) as client:
            for i in range(MAX_REQUESTS_PER_WORKER):
                if self.stopping.is_set() or time.monotonic() > deadline:
                    return
                if not own or i % 4 == 0:
                    outcome = await self._create(client, rng, user, own)
                else:
                    op = rng.choice(("list", "get", "toggle"))
                    target = rng.choice(own)
                    if op == "list":
                        outcome, _ = await timed(client, op, "GET", "/api/me/tasks?limit=20")
                    elif op == "get":
                        outcome = await self._get(client, target)
                    else:
                        outcome = await self._toggle(client, target)
                self.outcomes.append(outcome)
                if not outcome.ok:
                    await asyncio.sleep(PAUSE_AFTER_ERROR_S)

    async def _create(
        self, client: httpx.AsyncClient, rng: random.Random, user: str, own: list[Acked]
    ) -> Outcome:
        body = {
            "title": f"{user} {uuid.uuid4().hex}",
            "description": rng.choice((None, f"about {rng.randrange(10**6)}")),
            "priority": rng.choice(PRIORITIES),
        }
        outcome, response = await timed(client, "create", "POST", "/api/me/tasks", json=body)
        if response is not None and response.status_code == 201:
            task = response.json()
            assert (task["title"], task["description"], task["priority"]) == (
                body["title"],
                body["description"],
                body["priority"],
            )
            acked = Acked(
                task["id"],
                user,
                task["title"],
                task["description"],
                task["priority"],
                task["version"],
                task["completed"],
            )
            own.append(acked)
            self.acked[acked.id] = acked
        return outcome

    async def _get(self, client: httpx.AsyncClient, target: Acked) -> Outcome:
        outcome, response = await timed(client, "get", "GET", f"/api/me/tasks/{target.id}")
        if response is not None and response.status_code == 200:
            assert response.json()["title"] == target.title
        return outcome

    async def _toggle(self, client: httpx.AsyncClient, target: Acked) -> Outcome:
        outcome, response = await timed(
            client, "toggle", "PATCH", f"/api/me/tasks/{target.id}/complete"
        )
        if response is not None and response.status_code == 200:
            task = response.json()
            assert task["version"] > target.version
            target.version, target.completed, target.doubtful = (
                task["version"],
                task["completed"],
                0,
            )
        else:
            target.doubtful += 1
        return outcome

    async def check_acknowledged(self) -> int:
        """Fetch every acknowledged task by id; each must hold what was acknowledged."""
        clients = {user: self.client(user) for user in {a.user for a in self.acked.values()}}
        try:
            await gather_bounded(8, (self._check(clients[a.user], a) for a in self.acked.values()))
        finally:
            for client in clients.values():
                await client.aclose()
        return len(self.acked)

    @staticmethod
    async def _check(client: httpx.AsyncClient, acked: Acked) -> None:
        response = await client.get(f"/api/me/tasks/{acked.id}")
        assert response.status_code == 200, (acked, response.status_code)
        task = response.json()
        assert (task["title"], task["description"], task["priority"]) == (
            acked.title,
            acked.description,
            acked.priority,
        ), acked
        if acked.doubtful == 0:
            assert (task["version"], task["completed"]) == (acked.version, acked.completed), acked
        else:
            applied = task["version"] - acked.version
            assert 0 <= applied <= acked.doubtful, (acked, task)
            assert task["completed"] == (acked.completed ^ (applied % 2 == 1)), (acked, task)
