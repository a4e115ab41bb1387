"""Three ``taskvault serve`` instances behind Debian's nginx, one killed with SIGKILL mid-load.

The instances share the test run's PostgreSQL database, as an ordinary role,
and one Redis for the rate limits; nginx terminates TLS on a free loopback port
and proxies with ``proxy_next_upstream`` (``tests/support/nginx.py``, the site
``docs/operations.md`` shows). Clients only ever talk to nginx, and retry
whatever did not get its answer with the same ``Idempotency-Key`` or
``If-Match``. Afterwards the database holds exactly what was acknowledged, and
every 5xx is accounted for by a request the killed instance had in flight.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support import SECRET, auth
from tests.support.http import next_link
from tests.support.nginx import HOW_TO_RUN_NGINX, Nginx, find_nginx
from tests.support.prerequisites import missing_prerequisite
from tests.support.processes import LOOPBACK, TaskvaultServer

pytestmark = pytest.mark.postgres

HOW_TO_RUN_REDIS = (
    "the nginx test needs TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/15) for the shared budget"
)

INSTANCES = 3
BUDGET = 100
"""Requests per user per hour, one budget in Redis; no load user comes near it."""
OVER_BUDGET = 50
WORKERS = 12
OPS_PER_WORKER = 30
KILL_AT = 0.4
"""Share of the load's operations acknowledged when instance 0 is killed."""
VICTIM_BUSY = 4
"""Requests in flight on the victim that the kill waits for (at most ``LOCK_HOLD_S``)."""
PROBES = 6
LOCK_HOLD_S = 3.0
LOCK_AFTER_KILL_S = 0.3
RACE_ROUNDS = 5
RACE_WRITERS = 6
OK = frozenset({200})
RETRY_PAUSE_S = 0.05
DEADLINE_S = 60.0
UNTRUSTED = "127.0.0.2"
"""A loopback address the instances do not trust (they trust 127.0.0.1, nginx's)."""


@pytest.fixture
def nginx_binary() -> str:
    binary = find_nginx()
    if binary is None:
        missing_prerequisite(HOW_TO_RUN_NGINX)
    return binary


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        missing_prerequisite(HOW_TO_RUN_REDIS)
    return url


@dataclass(frozen=True, slots=True)
class Attempt:
    """One request as a client sent it; ``status`` None for a transport error."""

    op: str
    method: str
    request_id: str
    number: int
    sent_at: datetime
    start: float
    end: float
    status: int | None


@dataclass(slots=True)
class Known:
    """A task as the service last acknowledged it."""

    title: str
    description: str | None
    completed: bool
    version: int

    @classmethod
    def of(cls, body: dict[str, Any]) -> Known:
        return cls(body["title"], body["description"], body["completed"], body["version"])


@dataclass
class Cluster:
    proxy: Nginx
    instances: list[TaskvaultServer]
    attempts: list[Attempt] = field(default_factory=list)

    def address(self, instance: TaskvaultServer) -> str:
        return f"{LOOPBACK}:{instance.port}"

    @asynccontextmanager
    async def client(self, user: str, connections: int = 1) -> AsyncIterator[httpx.AsyncClient]:
        """``user``'s client of nginx, over at most ``connections`` connections."""
        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(
            base_url=self.proxy.public,
            verify=self.proxy.tls(),
            headers=auth(user, secret=SECRET),
            timeout=15,
            limits=limits,
        ) as client:
            yield client

    async def send(
        self,
        client: httpx.AsyncClient,
        op: str,
        method: str,
        url: str,
        accept: frozenset[int],
        **kwargs: Any,
    ) -> tuple[httpx.Response, Attempt]:
        """Send until the answer is one of ``accept``; the response and the attempt it took.

        A transport error, a 5xx, or a 409 (the same key still in flight where
        the killed instance left its transaction) is sent again, unchanged but
        for a new request id; anything else is a failure.
        """
        headers = kwargs.pop("headers", {})
        deadline = time.monotonic() + DEADLINE_S
        for number in range(1, 1000):
            assert time.monotonic() < deadline, f"{op} {url}: no answer in {DEADLINE_S} s"
            request_id = uuid.uuid4().hex
            sent_at, start = datetime.now(UTC), time.monotonic()
            response: httpx.Response | None
            try:
                response = await client.request(
                    method, url, headers={**headers, "X-Request-ID": request_id}, **kwargs
                )
            except httpx.TransportError:
                response = None
            status = None if response is None else response.status_code
            attempt = Attempt(
                op, method, request_id, number, sent_at, start, time.monotonic(), status
            )
            self.attempts.append(attempt)
            if response is not None and response.status_code in accept:
                return response, attempt
            if response is not None and response.status_code < 500 and status != 409:
                pytest.fail(f"{op} {method} {url}: {response.status_code} {response.text}")
            await asyncio.sleep(RETRY_PAUSE_S)
        raise AssertionError(f"{op} {url}: no answer after 999 attempts")

    def upstreams(self) -> dict[str, list[str]]:
        """The instances nginx tried for each request id it logged, in order."""
        return {
            str(record["request_id"]): str(record["upstream"]).split(", ")
            for record in self.proxy.access_records()
        }

    async def logged(self, request_ids: Iterable[str]) -> dict[str, list[str]]:
        """``upstreams()`` once it holds every one of ``request_ids``.

        nginx logs a request after its answer is sent, so the log may lag it.
        """
        wanted = set(request_ids)
        deadline = time.monotonic() + 5
        while not wanted <= (upstreams := self.upstreams()).keys():
            assert time.monotonic() < deadline, "nginx did not log the requests"
            await asyncio.sleep(0.05)
        return upstreams

    async def served_by(self, responses: Iterable[httpx.Response]) -> list[str]:
        """The instance that answered each of ``responses``."""
        wanted = [response.headers["x-request-id"] for response in responses]
        upstreams = await self.logged(wanted)
        return [upstreams[rid][-1] for rid in wanted]


@pytest.fixture
def cluster(
    tmp_path: Path, nginx_binary: str, redis_url: str, app_role_url: str
) -> Iterator[Cluster]:
    """Three instances (``--no-migrate``: the role may not migrate) and nginx before them."""
    env = {
        "TASKVAULT_DATABASE_URL": app_role_url,
        "TASKVAULT_JWT_SECRET": SECRET,
        "TASKVAULT_REDIS_URL": redis_url,
        "TASKVAULT_RATE_LIMIT": f"{BUDGET}/hour",
        "TASKVAULT_TRUSTED_PROXIES": LOOPBACK,
        "TASKVAULT_DB_POOL_SIZE": "4",
    }
    instances = []
    for n in range(INSTANCES):
        folder = tmp_path / f"instance-{n}"
        folder.mkdir()
        instances.append(TaskvaultServer(folder, "--no-migrate", **env))
    with ExitStack() as stack:
        for instance in instances:
            stack.callback(instance.stop)
        with ThreadPoolExecutor(INSTANCES) as pool:
            for started in [pool.submit(instance.start) for instance in instances]:
                started.result()
        proxy = Nginx(nginx_binary, tmp_path / "nginx", [f"{LOOPBACK}:{i.port}" for i in instances])
        stack.enter_context(proxy)
        yield Cluster(proxy, instances)


# --- before the kill ----------------------------------------------------------------


async def _public_urls(cluster: Cluster, run: str) -> None:
    user = f"public-{run}"
    async with cluster.client(user) as client:
        # A client's own X-Forwarded-Host is replaced by nginx's.
        forged = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"}
        locations = []
        for title in ("first", "second"):
            created, _ = await cluster.send(
                client,
                "create",
                "POST",
                f"/api/{user}/tasks",
                frozenset({201}),
                json={"title": title},
                headers=forged,
            )
            locations.append(created.headers["location"])
        for location in locations:
            assert location.startswith(f"{cluster.proxy.public}/api/{user}/tasks/"), location
            fetched, _ = await cluster.send(client, "get", "GET", location, OK)
            assert fetched.headers["etag"]
        page, _ = await cluster.send(
            client, "list", "GET", f"/api/{user}/tasks?limit=1", OK, headers=forged
        )
        link = next_link(page)
        assert link is not None
        assert link.startswith(f"{cluster.proxy.public}/api/{user}/tasks?"), link
    # The cursor one instance signed is good on every instance.
    path = link.removeprefix(cluster.proxy.public)
    async with httpx.AsyncClient(headers=auth(user, secret=SECRET)) as direct:
        for instance in cluster.instances:
            response = await direct.get(f"{instance.base}{path}")
            assert response.status_code == 200, response.text
            assert [t["title"] for t in response.json()] == ["first"]
    # The same headers sent to an instance directly, from an address it does not trust.
    transport = httpx.AsyncHTTPTransport(local_address=UNTRUSTED)
    instance = cluster.instances[1]
    async with httpx.AsyncClient(transport=transport, base_url=instance.base) as direct:
        response = await direct.post(
            f"/api/{user}/tasks",
            json={"title": "direct"},
            headers={**auth(user, secret=SECRET), "X-Forwarded-Host": "evil.example"},
        )
    assert response.status_code == 201, response.text
    assert response.headers["location"].startswith(f"{instance.base}/api/{user}/tasks/")


async def _one_budget(cluster: Cluster, run: str) -> dict[str, int]:
    """``BUDGET + OVER_BUDGET`` concurrent requests of one user: ``BUDGET`` allowed in all."""
    user = f"budget-{run}"
    sent = BUDGET + OVER_BUDGET
    async with cluster.client(user, connections=24) as client:
        responses = await asyncio.gather(
            *(
                cluster.send(client, "budget", "GET", f"/api/{user}/tasks", frozenset({200, 429}))
                for _ in range(sent)
            )
        )
    statuses = Counter(response.status_code for response, _ in responses)
    assert statuses == {200: BUDGET, 429: OVER_BUDGET}, statuses
    allowed = Counter(await cluster.served_by(r for r, _ in responses if r.status_code == 200))
    # Each instance allowed some: the budget was spent on all three.
    assert set(allowed) == {cluster.address(i) for i in cluster.instances}, allowed
    return dict(sorted(allowed.items()))


async def _if_match_races(cluster: Cluster, run: str) -> Counter[int]:
    """Writers with one If-Match on different instances: one 200, the others 412."""
    user = f"race-{run}"
    statuses: Counter[int] = Counter()
    async with cluster.client(user, connections=RACE_WRITERS) as client:
        for round_ in range(RACE_ROUNDS):
            created, _ = await cluster.send(
                client,
                "create",
                "POST",
                f"/api/{user}/tasks",
                frozenset({201}),
                json={"title": f"contested {round_}"},
            )
            location, etag = created.headers["location"], created.headers["etag"]
            writers = await asyncio.gather(
                *(
                    cluster.send(
                        client,
                        "race",
                        "PATCH",
                        location,
                        frozenset({200, 412}),
                        json={"title": f"writer {n}"},
                        headers={"If-Match": etag},
                    )
                    for n in range(RACE_WRITERS)
                )
            )
            outcome = Counter(response.status_code for response, _ in writers)
            assert outcome == {200: 1, 412: RACE_WRITERS - 1}, outcome
            statuses.update(outcome)
            served_by = set(await cluster.served_by(r for r, _ in writers))
            assert len(served_by) > 1, served_by
            (winner,) = [r.json()["title"] for r, _ in writers if r.status_code == 200]
            final, _ = await cluster.send(client, "get", "GET", location, OK)
            assert (final.json()["title"], final.json()["version"]) == (winner, 2)
    return statuses


# --- the load, and the kill -----------------------------------------------------------


@dataclass
class Load:
    cluster: Cluster
    run: str
    known: dict[str, dict[str, Known]] = field(default_factory=dict)  # user -> id -> task
    done: int = 0
    replays: int = 0
    resolved_by_412: int = 0
    deletes_found_done: list[str] = field(default_factory=list)
    """Request ids of DELETEs first answered 404: an earlier send had deleted the task."""

    def user(self, n: int) -> str:
        return f"load-{self.run}-{n}"

    async def worker(self, n: int) -> None:
        user, rng = self.user(n), random.Random(n)
        tasks = self.known.setdefault(user, {})
        async with self.cluster.client(user) as client:
            for step in range(OPS_PER_WORKER):
                roll = rng.random()
                if not tasks or roll < 0.35:
                    await self._create(client, user, tasks, f"{user} #{step}")
                elif roll < 0.55:
                    await self._patch(client, user, tasks, rng.choice(sorted(tasks)), step)
                elif roll < 0.75:
                    await self._toggle(client, user, tasks, rng.choice(sorted(tasks)))
                elif roll < 0.85:
                    await self._delete(client, user, tasks, rng.choice(sorted(tasks)))
                else:
                    await self._list(client, user, tasks)
                self.done += 1

    async def _create(
        self, client: httpx.AsyncClient, user: str, tasks: dict[str, Known], title: str
    ) -> None:
        response, attempt = await self.cluster.send(
            client,
            "create",
            "POST",
            f"/api/{user}/tasks",
            frozenset({201}),
            json={"title": title},
            headers={"Idempotency-Key": f"create {title}"},
        )
        body = response.json()
        assert body["title"] == title
        assert response.headers["location"].startswith(self.cluster.proxy.public)
        if attempt.number > 1 and datetime.fromisoformat(body["created_at"]) < attempt.sent_at:
            # Made by an earlier send whose answer the kill swallowed.
            self.replays += 1
        tasks[body["id"]] = Known.of(body)

    async def _patch(
        self, client: httpx.AsyncClient, user: str, tasks: dict[str, Known], task_id: str, step: int
    ) -> None:
        change = {"title": f"{tasks[task_id].title} (edited at {step})", "description": f"{step}"}
        response, _ = await self.cluster.send(
            client, "patch", "PATCH", f"/api/{user}/tasks/{task_id}", OK, json=change
        )
        tasks[task_id] = Known.of(response.json())

    async def _toggle(
        self, client: httpx.AsyncClient, user: str, tasks: dict[str, Known], task_id: str
    ) -> None:
        before = tasks[task_id]
        url = f"/api/{user}/tasks/{task_id}"
        response, attempt = await self.cluster.send(
            client,
            "toggle",
            "PATCH",
            f"{url}/complete",
            frozenset({200, 412}),
            headers={"If-Match": f'"{task_id}.{before.version}"'},
        )
        if response.status_code == 412:
            # This worker is the task's only writer: only its own earlier send,
            # cut off before its answer, can have moved the version on.
            assert attempt.number > 1, response.text
            response, _ = await self.cluster.send(client, "get", "GET", url, OK)
            self.resolved_by_412 += 1
        after = Known.of(response.json())
        assert (after.completed, after.version) == (not before.completed, before.version + 1)
        tasks[task_id] = after

    async def _delete(
        self, client: httpx.AsyncClient, user: str, tasks: dict[str, Known], task_id: str
    ) -> None:
        response, attempt = await self.cluster.send(
            client, "delete", "DELETE", f"/api/{user}/tasks/{task_id}", frozenset({204, 404})
        )
        if response.status_code == 404 and attempt.number == 1:
            self.deletes_found_done.append(response.headers["x-request-id"])
        del tasks[task_id]

    async def _list(self, client: httpx.AsyncClient, user: str, tasks: dict[str, Known]) -> None:
        response, _ = await self.cluster.send(
            client, "list", "GET", f"/api/{user}/tasks?limit=200", OK
        )
        listed = {task["id"]: Known.of(task) for task in response.json()}
        # Whichever instance answers, it reads every write acknowledged before.
        assert listed == tasks

    async def run_with_kill(self, victim: TaskvaultServer, postgres_url: str) -> Kill:
        """The load, with ``victim`` SIGKILLed once ``KILL_AT`` of it is acknowledged.

        So that the kill cuts requests mid-flight, and not only between them,
        every request waits a moment on every instance behind the ACCESS
        EXCLUSIVE lock an ``ALTER TABLE`` takes; once the load's clients all
        wait, ``PROBES`` lists follow them, which nginx's round robin spreads
        over the instances. The kill comes once ``VICTIM_BUSY`` requests are in
        flight on the victim, and the lock goes soon after.
        """
        workers = [asyncio.create_task(self.worker(n)) for n in range(WORKERS)]
        deadline = time.monotonic() + DEADLINE_S
        engine = create_async_engine(postgres_url)
        try:
            while self.done < KILL_AT * WORKERS * OPS_PER_WORKER:
                assert time.monotonic() < deadline, "the load did not get far enough"
                for worker in workers:
                    if worker.done():
                        worker.result()
                await asyncio.sleep(0.005)
            async with engine.begin() as conn:
                await conn.execute(text("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE"))
                await asyncio.sleep(0.2)
                probes = asyncio.create_task(self._probes())
                in_flight = await self._victim_busy(victim)
                killed_at = time.monotonic()
                victim.process.kill()
                await asyncio.to_thread(victim.process.wait, 10)
                gone_at = time.monotonic()
                await asyncio.sleep(LOCK_AFTER_KILL_S)
            await asyncio.wait_for(asyncio.gather(*workers), timeout=DEADLINE_S)
            probed = await probes
        finally:
            for worker in workers:
                worker.cancel()
            await engine.dispose()
        return Kill(killed_at, gone_at, in_flight, probed)

    async def _probes(self) -> list[httpx.Response]:
        user = f"probe-{self.run}"
        async with self.cluster.client(user, connections=PROBES) as client:
            sent = await asyncio.gather(
                *(
                    self.cluster.send(client, "probe", "GET", f"/api/{user}/tasks", OK)
                    for _ in range(PROBES)
                )
            )
        return [response for response, _ in sent]

    async def _victim_busy(self, victim: TaskvaultServer) -> float:
        """The victim's requests in flight (its own /metrics scrape left out), once
        ``VICTIM_BUSY`` or more, or after ``LOCK_HOLD_S``."""
        until = time.monotonic() + LOCK_HOLD_S
        while True:
            in_flight = await asyncio.to_thread(victim.gauge, "taskvault_http_requests_in_flight")
            if in_flight - 1 >= VICTIM_BUSY or time.monotonic() > until:
                return in_flight - 1
            await asyncio.sleep(0.02)


@dataclass(frozen=True, slots=True)
class Kill:
    killed_at: float
    gone_at: float
    in_flight: float
    """Requests in flight on the victim just before the kill."""
    probes: list[httpx.Response]


async def _stored(postgres_url: str, users: list[str]) -> dict[str, dict[str, Known]]:
    """Every task of ``users`` as the database holds it, read as the admin."""
    engine = create_async_engine(postgres_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT user_id, id, title, description, completed, version FROM tasks "
                    "WHERE user_id = ANY(:users)"
                ),
                {"users": users},
            )
            stored: dict[str, dict[str, Known]] = {user: {} for user in users}
            for user, task_id, title, description, completed, version in rows:
                stored[user][str(task_id)] = Known(title, description, completed, version)
    finally:
        await engine.dispose()
    return stored


# --- the test ---------------------------------------------------------------------------


async def test_three_instances_behind_nginx_survive_a_sigkill(
    cluster: Cluster, postgres_url: str
) -> None:
    started = time.monotonic()
    run = uuid.uuid4().hex[:8]
    victim, survivors = cluster.instances[0], cluster.instances[1:]

    await _public_urls(cluster, run)
    allowed = await _one_budget(cluster, run)
    races = await _if_match_races(cluster, run)
    before_load = len(cluster.attempts)

    load = Load(cluster, run)
    kill = await load.run_with_kill(victim, postgres_url)
    attempts = cluster.attempts[before_load:]
    assert kill.in_flight >= 1

    # Every acknowledged write is in the database once, and nothing else is.
    users = [load.user(n) for n in range(WORKERS)]
    stored = await _stored(postgres_url, users)
    assert stored == load.known
    titles = [task.title for tasks in stored.values() for task in tasks.values()]
    assert len(titles) == len(set(titles))

    # nginx sent a request to a second instance only after the victim failed it.
    upstreams = await cluster.logged(a.request_id for a in attempts if a.status is not None)
    victim_address = cluster.address(victim)
    sent_on = {rid: tried for rid, tried in upstreams.items() if len(tried) > 1}
    assert all(tried[0] == victim_address for tried in sent_on.values()), sent_on
    for request_id in load.deletes_found_done:
        assert request_id in sent_on, request_id
    # Lists the victim had in flight: nginx sent them on, and they got their 200.
    probes_sent_on = [r for r in kill.probes if r.headers["x-request-id"] in sent_on]
    assert probes_sent_on, [upstreams[r.headers["x-request-id"]] for r in kill.probes]
    # Each time the victim failed nginx, nginx logged why: one error a request.
    errors = [line for line in cluster.proxy.error_log().splitlines() if "[error]" in line]
    assert all(f'upstream: "http://{victim_address}/' in line for line in errors), errors
    cut = sum("upstream prematurely closed connection" in line for line in errors)

    # The only 5xx: POSTs and PATCHes the victim had in flight, which nginx does
    # not send twice (the clients do, with their Idempotency-Key or If-Match).
    statuses = Counter("transport" if a.status is None else str(a.status) for a in attempts)
    failed = [a for a in attempts if a.status is None or a.status >= 500]
    for attempt in failed:
        assert attempt.status == 502, attempt
        assert attempt.method in {"POST", "PATCH"}, attempt
        assert attempt.start < kill.killed_at < attempt.end, (attempt, kill.killed_at)
        assert upstreams[attempt.request_id] == [victim_address], attempt
    assert len(errors) == len(failed) + len(sent_on)
    assert len(failed) <= min(cut, WORKERS)
    for instance in cluster.instances:
        assert instance.server_errors() == []
    assert all(s.process.poll() is None for s in survivors)

    retried = sum(1 for a in attempts if a.number > 1)
    print(
        f"\n{INSTANCES} instances behind nginx, {WORKERS} clients x {OPS_PER_WORKER} operations "
        f"and {PROBES} probe lists; SIGKILL of one after {KILL_AT:.0%} of them, with "
        f"{kill.in_flight:.0f} requests in flight on it ({kill.gone_at - kill.killed_at:.3f} s "
        f"to exit); nginx saw {cut} cut mid-flight.\n"
        f"load: {len(attempts)} requests by status {dict(sorted(statuses.items()))}; "
        f"{len(failed)} 5xx, all 502 for POST/PATCH in flight on the killed instance; "
        f"{retried} client retries; {load.replays} creates answered with the task an earlier "
        f"send made, {load.resolved_by_412} toggles found applied by an earlier send (412); "
        f"{len(sent_on)} requests nginx sent on to another instance ({len(probes_sent_on)} "
        f"probe lists, {len(load.deletes_found_done)} DELETEs already done).\n"
        f"{sum(len(t) for t in stored.values())} tasks stored = the acknowledged ones, "
        f"none twice.\n"
        f"budget {BUDGET}/hour: {BUDGET} of {BUDGET + OVER_BUDGET} allowed, by instance "
        f"{list(allowed.values())}; If-Match: {RACE_ROUNDS} rounds of {RACE_WRITERS} writers "
        f"on different instances, {dict(races)}.\n"
        f"{time.monotonic() - started:.1f} s"
    )
