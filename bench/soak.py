"""Soak test behind ``make soak``: a real taskvault on PostgreSQL at a fixed request rate.

Not part of ``make test``. In order:

1. Recreates the database ``taskvault_soak`` on the PostgreSQL server at
   ``SOAK_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``,
   a superuser), migrates it (``taskvault migrate``) and creates the ordinary
   role ``taskvault_soak_app`` (no superuser, no BYPASSRLS: row-level security
   applies) that the server connects as.
2. Starts ``taskvault serve --no-migrate`` (one worker) on a free loopback
   port, with ``TASKVAULT_RATE_LIMIT=off``.
3. Sends a mixed load at a fixed rate (``SOAK_RATE`` requests per second,
   default 100; open loop, at most ``SOAK_MAX_IN_FLIGHT`` at once): creates,
   lists, gets, toggles, patches and deletes of 20 users' own tasks, never two
   at once on one task, so every request has exactly one right answer. First
   ``SOAK_WARMUP_SECONDS`` (15) of warm-up, then ``SOAK_SECONDS`` (120) measured.
4. Prints the request count, errors by status (a status other than the one
   expected, a timeout or a connection error), p50/p99 latency, and the
   server's RSS after warm-up and at the end; a line every 10 s meanwhile.
5. Stops the server, drops the database and the role.

Exit status 1 when any request failed, when RSS grew by 10% or more, or when
the achieved rate fell below 95% of ``SOAK_RATE``.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import httpx
from jose import jwt

from adapters.sql.tables import metadata

TASKVAULT = str(Path(sys.executable).with_name("taskvault"))
DATABASE = "taskvault_soak"
APP_ROLE = "taskvault_soak_app"
APP_TABLES = ", ".join(metadata.tables)
"""Every table of the schema: the app reads and writes them all (the feed's too)."""
USERS = 20
REQUEST_TIMEOUT_S = 10.0
REPORT_EVERY_S = 10.0
MAX_RSS_GROWTH = 0.10
MIN_RATE_FRACTION = 0.95
# (operation, weight, expected status)
OPERATIONS = (
    ("create", 25, 201),
    ("list", 25, 200),
    ("get", 25, 200),
    ("toggle", 15, 200),
    ("patch", 5, 200),
    ("delete", 5, 204),
)
EXPECTED = {op: status for op, _, status in OPERATIONS}


@dataclass(frozen=True)
class Options:
    seconds: float
    warmup_s: float
    rate: float
    max_in_flight: int
    pg_url: str

    @classmethod
    def from_environment(cls) -> Options:
        options = cls(
            seconds=float(os.environ.get("SOAK_SECONDS", "120")),
            warmup_s=float(os.environ.get("SOAK_WARMUP_SECONDS", "15")),
            rate=float(os.environ.get("SOAK_RATE", "100")),
            max_in_flight=int(os.environ.get("SOAK_MAX_IN_FLIGHT", "64")),
            pg_url=os.environ.get("SOAK_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        )
        if not (0 < options.seconds <= 86_400 and 0 <= options.warmup_s <= 3600):
            raise SystemExit(
                "soak: SOAK_SECONDS must be in (0, 86400], SOAK_WARMUP_SECONDS in [0, 3600]"
            )
        if not (0 < options.rate <= 2000 and 0 < options.max_in_flight <= 1000):
            raise SystemExit(
                "soak: SOAK_RATE must be in (0, 2000], SOAK_MAX_IN_FLIGHT in (0, 1000]"
            )
        host = urlsplit(options.pg_url).hostname
        if host not in {"127.0.0.1", "localhost", "::1"}:
            raise SystemExit("soak: SOAK_PG_URL must point at a loopback address")
        return options


def dsn(url: str, *, database: str, user: str | None = None, password: str | None = None) -> str:
    """``url`` (postgresql://...) with another database, and user and password if given."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if user is not None:
        credentials = quote(user) + (f":{quote(password)}" if password is not None else "")
        netloc = f"{credentials}@{netloc}"
    elif "@" in parts.netloc:
        netloc = parts.netloc
    return urlunsplit(("postgresql", netloc, f"/{database}", "", ""))


async def _admin(url: str, statements: Sequence[str]) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def prepare_database(options: Options, password: str) -> str:
    """Recreate and migrate the soak database; the URL the server connects with."""
    literal = password.replace("'", "''")
    asyncio.run(
        _admin(
            options.pg_url,
            [
                f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)',
                f'CREATE DATABASE "{DATABASE}"',
                f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') "
                f"THEN CREATE ROLE {APP_ROLE} LOGIN; END IF; END $$",
                f"ALTER ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE "
                f"PASSWORD '{literal}'",
            ],
        )
    )
    owner = dsn(options.pg_url, database=DATABASE)
    subprocess.run(  # noqa: S603 (our own argument list)
        [TASKVAULT, "migrate"],
        env=server_env(owner.replace("postgresql://", "postgresql+asyncpg://", 1)),
        check=True,
        timeout=120,
    )
    asyncio.run(
        _admin(
            owner,
            [
                f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}",
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON {APP_TABLES} TO {APP_ROLE}",
            ],
        )
    )
    app = dsn(options.pg_url, database=DATABASE, user=APP_ROLE, password=password)
    return app.replace("postgresql://", "postgresql+asyncpg://", 1)


def drop_database(options: Options) -> None:
    asyncio.run(
        _admin(
            options.pg_url,
            [
                f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)',
                f"DROP ROLE IF EXISTS {APP_ROLE}",
            ],
        )
    )


def server_env(database_url: str, secret: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKVAULT_")}
    env.update(
        TASKVAULT_DATABASE_URL=database_url,
        TASKVAULT_RATE_LIMIT="off",
        TASKVAULT_LOG_LEVEL="WARNING",
        TASKVAULT_JWT_SECRET=secret or secrets.token_urlsafe(48),
    )
    for passthrough in ("TASKVAULT_DB_POOL_SIZE", "TASKVAULT_DB_TIMEOUT_S"):
        if passthrough in os.environ:
            env[passthrough] = os.environ[passthrough]
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


@dataclass
class User:
    name: str
    headers: dict[str, str]
    live: list[str] = field(default_factory=list)
    busy: set[str] = field(default_factory=set)


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    by_status: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    skipped: int = 0

    @property
    def requests(self) -> int:
        return sum(self.by_status.values())


class Soak:
    def __init__(self, base: str, secret: str, options: Options) -> None:
        self.options = options
        self.rng = random.Random(20261126)  # noqa: S311 (load mix, not security)
        now = int(time.time())
        ttl = int(options.warmup_s + options.seconds) + 3600
        self.users = [
            User(
                name,
                {
                    "Authorization": "Bearer "
                    + jwt.encode({"sub": name, "iat": now, "exp": now + ttl}, secret, "HS256")
                },
            )
            for name in (f"soak{n:02d}" for n in range(USERS))
        ]
        limits = httpx.Limits(
            max_connections=options.max_in_flight, max_keepalive_connections=options.max_in_flight
        )
        self.client = httpx.AsyncClient(base_url=base, timeout=REQUEST_TIMEOUT_S, limits=limits)
        self.in_flight: set[asyncio.Task[None]] = set()
        self.ops = [op for op, _, _ in OPERATIONS]
        self.weights = [weight for _, weight, _ in OPERATIONS]

    async def request(self, user: User, tally: Tally) -> None:
        op = self.rng.choices(self.ops, self.weights)[0]
        idle = [task_id for task_id in user.live if task_id not in user.busy]
        if op in {"get", "toggle", "patch", "delete"} and not idle:
            op = "create"
        task_id = self.rng.choice(idle) if op in {"get", "toggle", "patch", "delete"} else None
        if task_id is not None:
            user.busy.add(task_id)
        base = f"/api/{user.name}/tasks"
        started = time.perf_counter()
        try:
            if op == "create":
                body = {"title": f"soak {uuid.uuid4().hex[:12]}", "priority": "high"}
                response = await self.client.post(base, json=body, headers=user.headers)
            elif op == "list":
                response = await self.client.get(f"{base}?limit=20", headers=user.headers)
            elif op == "get":
                response = await self.client.get(f"{base}/{task_id}", headers=user.headers)
            elif op == "toggle":
                url = f"{base}/{task_id}/complete"
                response = await self.client.patch(url, headers=user.headers)
            elif op == "patch":
                body = {"description": f"edited {self.rng.randrange(10**6)}"}
                url = f"{base}/{task_id}"
                response = await self.client.patch(url, json=body, headers=user.headers)
            else:
                response = await self.client.delete(f"{base}/{task_id}", headers=user.headers)
        except httpx.HTTPError as error:
            tally.latencies.append(time.perf_counter() - started)
            tally.by_status[type(error).__name__] += 1
            tally.errors[f"{op} {type(error).__name__}"] += 1
            return
        finally:
            if task_id is not None:
                user.busy.discard(task_id)
        tally.latencies.append(time.perf_counter() - started)
        tally.by_status[str(response.status_code)] += 1
        if response.status_code != EXPECTED[op]:
            tally.errors[f"{op} {response.status_code}"] += 1
            return
        if op == "create":
            user.live.append(response.json()["id"])
        elif op == "delete":
            user.live.remove(task_id)  # type: ignore[arg-type]

    async def phase(self, seconds: float, tally: Tally, *, label: str, pid: int) -> None:
        """``seconds`` of load at the fixed rate; waits for the stragglers."""
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.options.rate
        start = loop.time()
        next_report = start + REPORT_EVERY_S
        total = int(seconds * self.options.rate)
        for n in range(total):
            due = start + n * interval
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(self.in_flight) >= self.options.max_in_flight:
                tally.skipped += 1  # the server fell behind: counted as an error
                tally.errors["not sent: too many in flight"] += 1
            else:
                user = self.users[n % USERS]
                task = asyncio.create_task(self.request(user, tally))
                self.in_flight.add(task)
                task.add_done_callback(self.in_flight.discard)
            if loop.time() >= next_report:
                next_report += REPORT_EVERY_S
                print(
                    f"  {label} {loop.time() - start:5.0f} s: {tally.requests} requests, "
                    f"{sum(tally.errors.values())} errors, RSS {rss_kib(pid) / 1024:.1f} MiB",
                    flush=True,
                )
        if self.in_flight:
            await asyncio.wait(set(self.in_flight), timeout=REQUEST_TIMEOUT_S + 5)


def start_server(
    database_url: str, secret: str, workdir: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = (workdir / "server.log").open("wb")
    process = subprocess.Popen(  # noqa: S603 (our own argument list)
        [TASKVAULT, "serve", "--no-migrate", "--host", "127.0.0.1", "--port", str(port)],
        cwd=workdir,
        env=server_env(database_url, secret),
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"soak: taskvault serve exited; see {workdir / 'server.log'}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("soak: taskvault serve was not ready within 30 s")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def drive(soak: Soak, pid: int) -> tuple[Tally, int, int, float]:
    options = soak.options
    try:
        print(f"warm-up: {options.warmup_s:.0f} s at {options.rate:.0f} req/s", flush=True)
        await soak.phase(options.warmup_s, Tally(), label="warm-up", pid=pid)
        rss_start = rss_kib(pid)
        print(f"measured: {options.seconds:.0f} s at {options.rate:.0f} req/s", flush=True)
        tally = Tally()
        started = time.monotonic()
        await soak.phase(options.seconds, tally, label="soak", pid=pid)
        elapsed = time.monotonic() - started
        rss_end = rss_kib(pid)
    finally:
        await soak.client.aclose()
    return tally, rss_start, rss_end, elapsed


def main() -> int:
    options = Options.from_environment()
    secret = secrets.token_urlsafe(48)
    password = secrets.token_urlsafe(24)
    workdir = Path(tempfile.mkdtemp(prefix="taskvault-soak-"))
    print(f"soak: database {DATABASE} on {urlsplit(options.pg_url).netloc.rsplit('@', 1)[-1]}")
    database_url = prepare_database(options, password)
    try:
        process, base = start_server(database_url, secret, workdir)
        try:
            tally, rss_start, rss_end, elapsed = asyncio.run(
                drive(Soak(base, secret, options), process.pid)
            )
        finally:
            stop_server(process)
    finally:
        drop_database(options)
    latencies = sorted(tally.latencies)
    errors = sum(tally.errors.values())
    growth = (rss_end - rss_start) / rss_start
    achieved = tally.requests / elapsed
    print()
    print(
        f"requests:   {tally.requests} in {elapsed:.1f} s "
        f"({achieved:.1f} req/s; target {options.rate:.0f})"
    )
    print(f"by status:  {dict(sorted(tally.by_status.items()))}")
    print(f"errors:     {errors} {dict(sorted(tally.errors.items()))}")
    print(
        f"latency:    p50 {percentile(latencies, 0.50) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, "
        f"max {latencies[-1] * 1000 if latencies else float('nan'):.1f} ms"
    )
    print(
        f"server RSS: {rss_start / 1024:.1f} MiB after warm-up, "
        f"{rss_end / 1024:.1f} MiB at the end ({growth:+.1%})"
    )
    failures = []
    if errors:
        failures.append(f"{errors} errors")
    if growth >= MAX_RSS_GROWTH:
        failures.append(f"RSS grew {growth:.1%} (limit {MAX_RSS_GROWTH:.0%})")
    if achieved < MIN_RATE_FRACTION * options.rate:
        failures.append(f"achieved {achieved:.1f} req/s of {options.rate:.0f}")
    print("result:     " + ("FAIL: " + "; ".join(failures) if failures else "PASS"))
    if failures:
        print(f"server log: {workdir / 'server.log'}")
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
