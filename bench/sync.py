"""Sync benchmarks behind ``make bench``: batch, first sync, poll cost, held requests, purge.

For each database (``DB``: postgres or sqlite; both when unset), on a fresh
database ``taskvault_bench_sync`` (SQLite: ``var/bench/taskvault_bench_sync.db``)
seeded through SQL by ``bench/seed.py`` (change numbers and sync heads
included), against a real ``taskvault serve --workers 1`` with
``TASKVAULT_RATE_LIMIT=off``, on PostgreSQL as the ordinary role
``taskvault_bench_app`` (row-level security on), as ``bench/run.py`` runs it:

1. Batch: ``wrk -t2 -c<BENCH_SYNC_CONNECTIONS>`` (4) for ``BENCH_DURATION`` s
   of POST /tasks/batch with 100 creates, against the same of single POST
   /tasks with the same task, interleaved over ``BENCH_ROUNDS`` rounds; tasks
   per second and their ratio. Rows counted in the database after each run.
2. First sync of a user with 10,000 tasks: GET /tasks/changes?limit=1000,
   following ``next`` until ``has_more`` is false, one client, keep-alive;
   total wall time per round.
3. Poll cost: GET /tasks/changes?since=<head> with nothing new, and with one
   new change (a PATCH /complete before each poll, not timed), for a user
   with 100 tasks and one with 10,000, interleaved sample by sample; then the
   same again after 100,000 rows of other users are added. Plus the feed
   statement's plan (EXPLAIN ANALYZE on PostgreSQL, EXPLAIN QUERY PLAN on
   SQLite).
4. Held requests: ``BENCH_SYNC_WAITERS`` (1000) concurrent GET
   /tasks/changes?wait=30 of one user on one connection each; the server's
   VmRSS before and while they wait, its CPU over ``BENCH_SYNC_IDLE`` s (10)
   of waiting, then one create wakes them: how many woke, and when. Twice: the
   create through the same server (woken in-process) and through a second
   server process (woken by LISTEN/NOTIFY on PostgreSQL, SQLite's
   data_version probe).
5. Purge: a DELETE purges up to 100 of its user's tombstones past the
   retention horizon. ``BENCH_SYNC_DELETES`` (200) single DELETE /tasks/{id}
   of a user with 2,000 tasks and expired tombstones (40 days old; 10,000
   more than the deletes can purge) against the same of a user whose
   tombstones are 1 day old (none expired), interleaved; after every delete
   the expired tombstones are counted in the database, and must be 100 fewer.
   Plus the purge statement's plan.

Writes ``var/bench/sync-<db>.json``; logs in ``var/bench/logs/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sqlite3
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import run
from run import BenchError, Database, Harness, Server, log

from adapters.asyncpg import statements as compiled_sql
from adapters.sql import row_security
from adapters.sql import statements as sql
from application.sync import PURGE_BATCH, PURGE_MARGIN, RETENTION_DAYS_DEFAULT, ChangeNumber

SYNC_DB = "taskvault_bench_sync"
BATCH_PREFIX = "batch"
BATCH_USERS = 100
BATCH_SIZE = 100
SMALL, SMALL_TASKS = "small0000", 100
DEEP, DEEP_TASKS = "deep0000", 10_000
WAITER = "wait0000"
OTHER_ROWS = 100_000
SYNC_LIMIT = 1000
FIRST_SYNC_BUDGET_S = 1.0
BATCH_RATIO_REQUIRED = 10.0
RSS_BUDGET_MIB = 50.0
CPU_BUDGET_PCT = 5.0
EXPIRED, FRESH = "expired0000", "fresh0000"
PURGE_TASKS = 2000
PURGE_LEFT = 10_000  # expired tombstones still there after the last delete
PURGE_WARM = 5  # deletes of each user before the timed ones
GRAVE_PREFIX, GRAVE_USERS, GRAVES = "grave", 1000, 100  # other users' tombstones, not expired
EXPIRED_AGE_DAYS, FRESH_AGE_DAYS = 40, 1
CREATE_BODY = {"title": "Benchmark task", "priority": "high", "description": "made by wrk"}


@dataclass(frozen=True)
class Options:
    dbs: tuple[str, ...]
    duration: int
    rounds: int
    warmup: int
    connections: int
    polls: int
    waiters: int
    idle_s: int
    deletes: int
    pg_url: str
    out: Path
    only: frozenset[str]


def parse_options(argv: Sequence[str] | None = None) -> Options:
    summary, _, details = (__doc__ or "").partition("\n\n")
    parser = argparse.ArgumentParser(
        prog="bench/sync.py",
        description=summary,
        epilog=details,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    env = run._env_int
    parser.add_argument(
        "--db", default=os.environ.get("DB", "postgres,sqlite"), help="postgres, sqlite or both"
    )
    parser.add_argument("--duration", type=int, default=env("BENCH_DURATION", 8))
    parser.add_argument("--rounds", type=int, default=env("BENCH_ROUNDS", 3))
    parser.add_argument("--warmup", type=int, default=env("BENCH_WARMUP", 2))
    parser.add_argument(
        "--connections",
        type=int,
        default=env("BENCH_SYNC_CONNECTIONS", 4),
        help="wrk connections of the batch runs (default 4)",
    )
    parser.add_argument(
        "--polls", type=int, default=env("BENCH_SYNC_POLLS", 100), help="polls a figure a round"
    )
    parser.add_argument("--waiters", type=int, default=env("BENCH_SYNC_WAITERS", 1000))
    parser.add_argument(
        "--idle", type=int, default=env("BENCH_SYNC_IDLE", 10), help="seconds of CPU reading"
    )
    parser.add_argument(
        "--deletes",
        type=int,
        default=env("BENCH_SYNC_DELETES", 200),
        help=f"timed deletes of each purge user (at most {PURGE_TASKS - PURGE_WARM})",
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--out", type=Path, default=run.ROOT / "var" / "bench")
    parser.add_argument(
        "--only",
        default="sync,batch,held,purge",
        help="of sync (first sync, polls), batch, held, purge",
    )
    args = parser.parse_args(argv)
    only = frozenset(part.strip() for part in args.only.split(",") if part.strip())
    if not only or not only <= {"sync", "batch", "held", "purge"}:
        parser.error("--only takes sync, batch, held and purge, comma-separated")
    aliases = {"postgres": "postgres", "postgresql": "postgres", "pg": "postgres"}
    dbs = tuple(aliases.get(d.strip().lower(), d.strip().lower()) for d in args.db.split(","))
    if not dbs or not set(dbs) <= {"postgres", "sqlite"}:
        parser.error("--db / DB must be postgres, sqlite or postgres,sqlite")
    if min(args.duration, args.rounds, args.connections, args.polls, args.waiters) < 1:
        parser.error("duration, rounds, connections, polls and waiters must be at least 1")
    if not 1 <= args.deletes <= PURGE_TASKS - PURGE_WARM:
        parser.error(f"--deletes must be 1 to {PURGE_TASKS - PURGE_WARM}")
    if not 1 <= args.idle <= 20:
        parser.error("--idle must be 1 to 20 s: the waiters hold for 30 s")
    return Options(
        dbs=dbs,
        duration=args.duration,
        rounds=args.rounds,
        warmup=max(args.warmup, 0),
        connections=args.connections,
        polls=args.polls,
        waiters=args.waiters,
        idle_s=args.idle,
        deletes=args.deletes,
        pg_url=args.pg_url,
        out=args.out.resolve(),
        only=only,
    )


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def figures_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "min_ms": round(min(ms), 3),
        "median_ms": round(statistics.median(ms), 3),
        "p90_ms": round(percentile(ms, 0.9), 3),
        "max_ms": round(max(ms), 3),
        "samples": len(ms),
    }


def rss_mib(pid: int) -> float:
    return run.status_line(Path(f"/proc/{pid}/status"))["VmRSS"] / 1024


# --------------------------------------------------------------------------- database


class Admin:
    """The bench database as its owner (PostgreSQL superuser, or the SQLite file)."""

    def __init__(self, h: Harness, db: Database) -> None:
        self.db = db
        self.pg_dsn = run.dsn(h.o.pg_url, database=SYNC_DB)
        self.sqlite_path = db.admin_url.removeprefix("sqlite+aiosqlite:///")

    def count(self, pattern: str) -> int:
        """Tasks whose user id is LIKE ``pattern``."""
        return int(self._scalar("SELECT count(*) FROM tasks WHERE user_id LIKE $1", pattern))

    def head(self, user: str) -> int:
        query = "SELECT coalesce(max(change_seq), 0) FROM sync_heads WHERE user_id = $1"
        return int(self._scalar(query, user))

    def _scalar(self, query: str, *args: Any) -> Any:
        """One value, on SQLite with ``?`` for each ``$n`` of ``query``."""
        if self.db.kind == "sqlite":
            conn = sqlite3.connect(self.sqlite_path)
            try:
                lite = query
                for n in range(len(args), 0, -1):
                    lite = lite.replace(f"${n}", "?")
                return conn.execute(lite, [_sqlite_arg(a) for a in args]).fetchone()[0]
            finally:
                conn.close()

        async def scalar_pg() -> Any:
            conn = await asyncpg.connect(self.pg_dsn)
            try:
                return await conn.fetchval(query, *args)
            finally:
                await conn.close()

        return asyncio.run(scalar_pg())

    def tombstones(self, user: str, deleted_before: datetime | None = None) -> int:
        """``user``'s tombstones, or those deleted before ``deleted_before``."""
        query = "SELECT count(*) FROM task_tombstones WHERE user_id = $1"
        if deleted_before is None:
            return int(self._scalar(query, user))
        return int(self._scalar(f"{query} AND deleted_at < $2", user, deleted_before))

    def task_ids(self, user: str, count: int) -> list[str]:
        if self.db.kind == "sqlite":
            conn = sqlite3.connect(self.sqlite_path)
            try:
                rows = conn.execute(
                    "SELECT id FROM tasks WHERE user_id = ? ORDER BY id LIMIT ?", (user, count)
                ).fetchall()
                return [str(uuid.UUID(hex=r[0])) for r in rows]
            finally:
                conn.close()

        async def ids_pg() -> list[str]:
            conn = await asyncpg.connect(self.pg_dsn)
            try:
                query = "SELECT id FROM tasks WHERE user_id = $1 ORDER BY id LIMIT $2"
                return [str(r[0]) for r in await conn.fetch(query, user, count)]
            finally:
                await conn.close()

        return asyncio.run(ids_pg())

    def explain_purge(self, app_dsn: str, user: str, deleted_before: datetime) -> list[str]:
        """The purge statement's plan; on PostgreSQL as the app's role, executed
        and rolled back, both the plan for these values and the generic one
        that the server's prepared statement may switch to after five runs."""
        params = {"owner": user, "deleted_before": deleted_before, "limit": PURGE_BATCH}
        if self.db.kind == "sqlite":
            compiled = sql.PURGE_TOMBSTONES.compile(dialect=sqlite_dialect())
            values = compiled.construct_params(params)
            args = [_sqlite_arg(values[name]) for name in compiled.positiontup or ()]
            conn = sqlite3.connect(self.sqlite_path)
            try:
                rows = conn.execute(f"EXPLAIN QUERY PLAN {compiled}", args).fetchall()
            finally:
                conn.close()
            return [f"{'  ' * depth(rows, r)}{r[3]}" for r in rows]
        purge = compiled_sql.compiled(sql.PURGE_TOMBSTONES)

        async def explain_pg() -> list[str]:
            conn = await asyncpg.connect(app_dsn)
            transaction = conn.transaction()
            await transaction.start()
            try:
                for statement in row_security.user_statements(user):
                    await conn.execute(statement)
                # EXPLAIN of a statement with parameters plans it for their
                # values; only EXECUTE of a prepared one can show the generic plan.
                await conn.execute(f"PREPARE purge_plan AS {purge.text}")
                values = f"'{user}', '{deleted_before.isoformat()}', {PURGE_BATCH}"
                lines = []
                for mode in ("force_custom_plan", "force_generic_plan"):
                    await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
                    rows = await conn.fetch(
                        f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE purge_plan({values})"
                    )
                    lines += [f"plan_cache_mode={mode}:", *(f"  {r[0]}" for r in rows)]
                return lines
            finally:
                await transaction.rollback()
                await conn.close()

        return asyncio.run(explain_pg())

    def explain_feed(self, app_dsn: str, user: str, after_seq: int) -> list[str]:
        """The plan of the poll's statement (since = the user's head), as the server runs it."""
        params = sql.changes_params(user, sql_after(after_seq), 1000)
        if self.db.kind == "sqlite":
            statement = sql.changes_statement(sql.FeedShape(first=False))
            compiled = statement.compile(dialect=sqlite_dialect())
            values = compiled.construct_params(params)
            args = [_sqlite_arg(values[name]) for name in compiled.positiontup or ()]
            conn = sqlite3.connect(self.sqlite_path)
            try:
                rows = conn.execute(f"EXPLAIN QUERY PLAN {compiled}", args).fetchall()
            finally:
                conn.close()
            return [f"{'  ' * depth(rows, r)}{r[3]}" for r in rows]
        single = compiled_sql.single_statement(sql.list_changes, sql.FeedShape(first=False))

        async def explain_pg() -> list[str]:
            conn = await asyncpg.connect(app_dsn)
            try:
                rows = await conn.fetch(
                    f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {single.text}", *single.args(params)
                )
                return [str(r[0]) for r in rows]
            finally:
                await conn.close()

        return asyncio.run(explain_pg())


def sql_after(seq: int) -> ChangeNumber:
    return ChangeNumber.after_all_of(seq)


def sqlite_dialect() -> Any:
    from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite

    return SQLiteDialect_aiosqlite()


def _sqlite_arg(value: Any) -> Any:
    # SQLAlchemy's Uuid on SQLite is 32 hex digits, its datetimes naive UTC text.
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    return value.hex if isinstance(value, uuid.UUID) else value


def depth(rows: list[Any], row: Any) -> int:
    """How deep a row of EXPLAIN QUERY PLAN (id, parent, _, detail) sits."""
    parents = {r[0]: r[1] for r in rows}
    level, parent = 0, row[1]
    while parent in parents:
        level, parent = level + 1, parents[parent]
    return level


# --------------------------------------------------------------------------- client


class Client:
    """One keep-alive client of a user's feed."""

    def __init__(self, server: Server, user: str, token: str) -> None:
        self.base = f"{server.url}/api/{user}/tasks"
        self.http = httpx.Client(timeout=30, headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self.http.close()

    def feed(self, since: str | None, limit: int = SYNC_LIMIT) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if since is not None:
            params["since"] = since
        response = self.http.get(f"{self.base}/changes", params=params)
        if response.status_code != 200:
            raise BenchError(f"feed: HTTP {response.status_code}: {response.text[:300]}")
        body: dict[str, Any] = response.json()
        return body

    def first_sync(self) -> tuple[float, int, int, str]:
        """Seconds to follow ``next`` from nothing to ``has_more`` false, pages, tasks, token."""
        started = time.perf_counter()
        since: str | None = None
        pages, ids = 0, set[str]()
        while True:
            page = self.feed(since)
            pages += 1
            ids.update(change["task"]["id"] for change in page["changes"])
            since = page["next"]
            if not page["has_more"]:
                break
        return time.perf_counter() - started, pages, len(ids), str(since)

    def delete(self, task_id: str) -> float:
        started = time.perf_counter()
        response = self.http.delete(f"{self.base}/{task_id}")
        elapsed = time.perf_counter() - started
        if response.status_code != 204:
            raise BenchError(f"delete: HTTP {response.status_code}: {response.text[:300]}")
        return elapsed

    def toggle(self, task_id: str) -> None:
        response = self.http.patch(f"{self.base}/{task_id}/complete")
        if response.status_code != 200:
            raise BenchError(f"complete: HTTP {response.status_code}: {response.text[:300]}")


def settled_count(admin: Admin, pattern: str) -> int:
    """The count once requests wrk left in flight have committed (or given up)."""
    count = admin.count(pattern)
    while True:
        time.sleep(0.5)
        again = admin.count(pattern)
        if again == count:
            return count
        count = again


def timed_poll(client: Client, since: str, expected: int) -> float:
    started = time.perf_counter()
    page = client.feed(since)
    elapsed = time.perf_counter() - started
    if len(page["changes"]) != expected or page["has_more"]:
        raise BenchError(f"poll: {len(page['changes'])} changes, expected {expected}")
    return elapsed


# --------------------------------------------------------------------------- measurements


class SyncBench:
    def __init__(self, o: Options, kind: str) -> None:
        self.o = o
        self.kind = kind
        self.h = Harness(
            run.parse_options(["--db", kind, "--pg-url", o.pg_url, "--out", str(o.out)])
        )
        self.tokens: dict[str, str] = {}

    def prepare(self) -> tuple[Database, Admin, Path]:
        db = self.h.prepare(SYNC_DB, self.kind)
        lua = self.o.out / f"tasks-sync-{self.kind}.lua"
        self.h.seed(db, "users", "--prefix", BATCH_PREFIX, "--count", str(BATCH_USERS))
        self.h.seed(db, "users", "--prefix", "small", "--count", "1", "--tasks", str(SMALL_TASKS))
        self.h.seed(db, "users", "--prefix", "deep", "--count", "1", "--tasks", str(DEEP_TASKS))
        self.h.seed(db, "users", "--prefix", "wait", "--count", "1", "--tasks", "1")
        # The batch users' ids for the wrk scripts (which want a task file).
        users = [f"{BATCH_PREFIX}{n:04d}" for n in range(BATCH_USERS)]
        lua.write_text("return {\n" + "".join(f'  {{"{u}", {{}}}},\n' for u in users) + "}\n")
        self.tokens = self.h.mint_tokens([*users, SMALL, DEEP, WAITER])
        return db, Admin(self.h, db), lua

    def batch(self, server: Server, admin: Admin, lua: Path) -> dict[str, Any]:
        tokens_file = self.o.out / f"tokens-sync-{self.kind}.lua"
        run.write_tokens(
            tokens_file, {u: t for u, t in self.tokens.items() if u.startswith(BATCH_PREFIX)}
        )
        user = f"{BATCH_PREFIX}0000"
        body = {"operations": [{"op": "create", "task": CREATE_BODY}] * BATCH_SIZE}
        response = httpx.post(
            f"{server.url}/api/{user}/tasks/batch",
            json=body,
            headers={"Authorization": f"Bearer {self.tokens[user]}"},
            timeout=30,
        )
        statuses = {r["status"] for r in response.json().get("results", [])}
        if response.status_code != 200 or statuses != {201}:
            raise BenchError(f"batch smoke: HTTP {response.status_code}, results {statuses}")
        runs: dict[str, list[dict[str, Any]]] = {"single": [], "batch": []}
        scripts = {"single": "create.lua", "batch": "batch.lua"}
        per_request = {"single": 1, "batch": BATCH_SIZE}
        for number in range(1, self.o.rounds + 1):
            for mode in ("single", "batch"):
                kwargs: dict[str, Any] = {
                    "threads": min(2, self.o.connections),
                    "connections": self.o.connections,
                    "script": run.WRK_SCRIPTS / scripts[mode],
                    "script_args": [str(tokens_file), str(lua)],
                }
                if number == 1 and self.o.warmup:
                    run.wrk(server.url, duration=self.o.warmup, **kwargs)
                before = settled_count(admin, BATCH_PREFIX + "%")
                cpu, pg_cpu = run.process_cpu_s(server.pid), run.postgres_cpu_s()
                result = run.wrk(server.url, duration=self.o.duration, **kwargs)
                cpu = run.process_cpu_s(server.pid) - cpu
                pg_cpu = run.postgres_cpu_s() - pg_cpu
                made = settled_count(admin, BATCH_PREFIX + "%") - before
                expected = result.requests * per_request[mode]
                # wrk counts answered requests; one in flight at its end may still commit.
                slack = self.o.connections * per_request[mode]
                if result.non_2xx or result.errors or not expected <= made <= expected + slack:
                    raise BenchError(
                        f"batch run {mode}: {result.non_2xx} non-2xx, {result.errors} socket "
                        f"errors, {made} rows for {expected} acknowledged"
                    )
                figures = {
                    "tasks_per_s": round(result.rps * per_request[mode], 1),
                    "requests_per_s": result.rps,
                    "p50_ms": result.p50_ms,
                    "p99_ms": result.p99_ms,
                    "requests": result.requests,
                    "rows_made": made,
                    "server_cpu_us_per_task": round(cpu / max(made, 1) * 1e6, 1),
                    "postgres_cpu_us_per_task": round(pg_cpu / max(made, 1) * 1e6, 1),
                }
                runs[mode].append(figures)
                log(
                    f"{self.kind} batch round {number} {mode:<6} {figures['tasks_per_s']:9.1f} "
                    f"tasks/s (p50 {result.p50_ms:.2f} ms a request; CPU a task: server "
                    f"{figures['server_cpu_us_per_task']:.0f} us"
                    + (
                        f", every PostgreSQL process {figures['postgres_cpu_us_per_task']:.0f} us)"
                        if self.kind == "postgres"
                        else ")"
                    )
                )
        summary: dict[str, Any] = {}
        for mode, results in runs.items():
            summary[mode] = {
                "tasks_per_s": statistics.median(r["tasks_per_s"] for r in results),
                "p50_ms": statistics.median(r["p50_ms"] for r in results),
                "server_cpu_us_per_task": statistics.median(
                    r["server_cpu_us_per_task"] for r in results
                ),
                "postgres_cpu_us_per_task": statistics.median(
                    r["postgres_cpu_us_per_task"] for r in results
                ),
                "rounds": results,
            }
        ratio = summary["batch"]["tasks_per_s"] / summary["single"]["tasks_per_s"]
        summary["ratio"] = round(ratio, 1)
        summary["required"] = BATCH_RATIO_REQUIRED
        summary["met"] = ratio >= BATCH_RATIO_REQUIRED
        summary["method"] = (
            f"wrk -t{min(2, self.o.connections)} -c{self.o.connections} -d{self.o.duration}s, "
            f"{BATCH_USERS} users in turn, median of {self.o.rounds} interleaved rounds"
        )
        return summary

    def first_sync(self, server: Server, label: str) -> dict[str, Any]:
        client = Client(server, DEEP, self.tokens[DEEP])
        try:
            runs = []
            for _ in range(self.o.rounds):
                seconds, pages, tasks, _token = client.first_sync()
                if tasks != DEEP_TASKS:
                    raise BenchError(f"first sync saw {tasks} tasks, expected {DEEP_TASKS}")
                runs.append(seconds)
        finally:
            client.close()
        median_s = statistics.median(runs)
        log(
            f"{self.kind} first sync ({label}): {DEEP_TASKS} tasks in {pages} pages, "
            f"median {median_s * 1000:.0f} ms ({', '.join(f'{s * 1000:.0f}' for s in runs)})"
        )
        return {
            "tasks": DEEP_TASKS,
            "pages": pages,
            "limit": SYNC_LIMIT,
            "seconds": [round(s, 4) for s in runs],
            "median_s": round(median_s, 4),
            "required_s": FIRST_SYNC_BUDGET_S,
            "met": max(runs) < FIRST_SYNC_BUDGET_S,
        }

    def polls(self, server: Server, label: str) -> dict[str, Any]:
        """Poll latency at the head, and with one change, for SMALL and DEEP, interleaved."""
        clients = {user: Client(server, user, self.tokens[user]) for user in (SMALL, DEEP)}
        try:
            heads = {user: c.first_sync()[3] for user, c in clients.items()}
            # One task of each user to toggle: any of its tasks.
            targets = {
                user: c.feed(None, limit=1)["changes"][0]["task"]["id"]
                for user, c in clients.items()
            }
            empty: dict[str, list[float]] = {user: [] for user in clients}
            one: dict[str, list[float]] = {user: [] for user in clients}
            samples = self.o.polls * self.o.rounds
            for user, c in clients.items():
                timed_poll(c, heads[user], 0)  # warm
            for _ in range(samples):
                for user, c in clients.items():
                    empty[user].append(timed_poll(c, heads[user], 0))
            for _ in range(samples):
                for user, c in clients.items():
                    c.toggle(targets[user])
                    one[user].append(timed_poll(c, heads[user], 1))
            # Back at a head for the next measurement.
            for user, c in clients.items():
                heads[user] = c.first_sync()[3]
        finally:
            for c in clients.values():
                c.close()
        result: dict[str, Any] = {}
        for name, times in (("nothing_new", empty), ("one_change", one)):
            by_user = {user: figures_ms(values) for user, values in times.items()}
            ratio = by_user[DEEP]["median_ms"] / by_user[SMALL]["median_ms"]
            result[name] = {
                f"{SMALL} ({SMALL_TASKS} tasks)": by_user[SMALL],
                f"{DEEP} ({DEEP_TASKS} tasks)": by_user[DEEP],
                "ratio_10000_to_100": round(ratio, 2),
            }
            log(
                f"{self.kind} poll {name} ({label}): {SMALL_TASKS} tasks "
                f"{by_user[SMALL]['median_ms']:.2f} ms, {DEEP_TASKS} tasks "
                f"{by_user[DEEP]['median_ms']:.2f} ms (ratio {ratio:.2f})"
            )
        return result

    def purge(self, server: Server, admin: Admin, db: Database) -> dict[str, Any]:
        """Single deletes of EXPIRED (each purging PURGE_BATCH) against FRESH (purging none)."""
        rounds = PURGE_WARM + self.o.deletes
        seeded = PURGE_LEFT + rounds * PURGE_BATCH
        ages = {EXPIRED: EXPIRED_AGE_DAYS, FRESH: FRESH_AGE_DAYS}
        for user, age in ages.items():
            prefix = user.removesuffix("0000")
            self.h.seed(
                db, "users", "--prefix", prefix, "--count", "1", "--tasks", str(PURGE_TASKS)
            )
            self.h.seed(
                db,
                "tombstones",
                *f"--prefix {prefix} --count 1 --tombstones {seeded} --age-days {age}".split(),
            )
        # Many users' tombstones in the table, as in service: the planner
        # reads a user's few of them by index, not the table.
        self.h.seed(
            db,
            "tombstones",
            *f"--prefix {GRAVE_PREFIX} --count {GRAVE_USERS} "
            f"--tombstones {GRAVES} --age-days {FRESH_AGE_DAYS + 1}".split(),
        )
        self.tokens.update(self.h.mint_tokens(ages))
        # The server's horizon moves with its clock; the seeded ages are days from it.
        horizon = datetime.now(UTC) - timedelta(days=RETENTION_DAYS_DEFAULT) - PURGE_MARGIN
        expired = {user: admin.tombstones(user, horizon) for user in ages}
        if expired != {EXPIRED: seeded, FRESH: 0}:
            raise BenchError(f"seeded expired tombstones: {expired}")
        ids = {user: admin.task_ids(user, rounds) for user in ages}
        clients = {user: Client(server, user, self.tokens[user]) for user in ages}
        times: dict[str, list[float]] = {user: [] for user in ages}
        drops: list[int] = []
        left = seeded
        try:
            for n in range(rounds):
                # Alternate who goes first, so neither always follows the other's commit.
                order = (EXPIRED, FRESH) if n % 2 == 0 else (FRESH, EXPIRED)
                for user in order:
                    elapsed = clients[user].delete(ids[user][n])
                    if n >= PURGE_WARM:
                        times[user].append(elapsed)
                now_left = admin.tombstones(EXPIRED, horizon)
                drops.append(left - now_left)
                left = now_left
        finally:
            for c in clients.values():
                c.close()
        totals = {user: admin.tombstones(user) for user in ages}
        fresh_expired = admin.tombstones(FRESH, horizon)
        by_user = {user: figures_ms(values) for user, values in times.items()}
        ratio = by_user[EXPIRED]["median_ms"] / by_user[FRESH]["median_ms"]
        p90_ratio = by_user[EXPIRED]["p90_ms"] / by_user[FRESH]["p90_ms"]
        bounded = set(drops) == {PURGE_BATCH} and fresh_expired == 0
        result = {
            "method": (
                f"{self.o.deletes} timed single DELETEs of each user after {PURGE_WARM} untimed, "
                "interleaved; expired tombstones counted by SQL after every delete"
            ),
            "seeded_tombstones_each": seeded,
            "other_users_tombstones": GRAVE_USERS * GRAVES,
            "tasks_each": PURGE_TASKS,
            f"{EXPIRED} (tombstones {EXPIRED_AGE_DAYS} days old)": by_user[EXPIRED],
            f"{FRESH} (tombstones {FRESH_AGE_DAYS} day old)": by_user[FRESH],
            "ratio_median": round(ratio, 2),
            "ratio_p90": round(p90_ratio, 2),
            "expired_purged_per_delete": {str(d): drops.count(d) for d in sorted(set(drops))},
            "expired_left": {"before": seeded, "after": left},
            "tombstones_after": totals,
            "fresh_expired_after": fresh_expired,
            "bounded": bounded,
            "plan": admin.explain_purge(_pg_app_dsn(db), EXPIRED, horizon),
        }
        log(
            f"{self.kind} delete: with expired tombstones {by_user[EXPIRED]['median_ms']:.2f} ms "
            f"(p90 {by_user[EXPIRED]['p90_ms']:.2f}), without {by_user[FRESH]['median_ms']:.2f} "
            f"ms (p90 {by_user[FRESH]['p90_ms']:.2f}): ratio {ratio:.2f}; expired purged a "
            f"delete {result['expired_purged_per_delete']}, left {seeded} -> {left}"
        )
        return result

    def hold(self, server: Server, committer: Server, via: str) -> dict[str, Any]:
        """Waiters held on ``server``, woken by a create through ``committer``."""
        client = Client(server, WAITER, self.tokens[WAITER])
        try:
            since = client.first_sync()[3]
        finally:
            client.close()
        result = asyncio.run(
            hold_and_wake(
                server,
                f"{committer.url}/api/{WAITER}/tasks",
                f"/api/{WAITER}/tasks/changes",
                self.tokens[WAITER],
                since,
                self.o.waiters,
                self.o.idle_s,
            )
        )
        result["commit_through"] = via
        log(
            f"{self.kind} {self.o.waiters} waiters ({via}): RSS +{result['extra_rss_mib']:.1f} "
            f"MiB, CPU {result['idle_cpu_pct']:.2f}% over {result['idle_s']:.1f} s; "
            f"woke {result['woke']}/{self.o.waiters}, latency p50 "
            f"{result['wake_latency']['median_ms']:.0f} ms, max "
            f"{result['wake_latency']['max_ms']:.0f} ms"
        )
        return result


async def in_flight(control: httpx.AsyncClient, server: Server) -> int:
    text = (await control.get(f"{server.url}/metrics")).text
    for line in text.splitlines():
        if line.startswith("taskvault_http_requests_in_flight "):
            # The scrape counts itself.
            return int(float(line.split()[1])) - 1
    raise BenchError("/metrics has no taskvault_http_requests_in_flight")


@dataclass
class Held:
    """One held request's answer."""

    status: int = 0
    changes: int = -1
    finished: float = float("nan")
    error: str = ""


async def hold_one(port: int, request: bytes, out: Held) -> None:
    """One request on a connection of its own, read to the end (``Connection: close``).

    asyncio streams rather than an httpx pool of a thousand connections: the
    client's own bookkeeping per answer would be part of the figures.
    """
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        raw = await reader.read(-1)
        out.finished = time.perf_counter()
        writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        out.status = int(head.split(b" ", 2)[1])
        if out.status == 200:
            out.changes = len(json.loads(body)["changes"])
    except (OSError, ValueError, IndexError) as error:
        out.error = type(error).__name__


async def settle(pid: int, since: float, *, limit_s: float = 8.0) -> float:
    """Seconds from ``since`` until the server's CPU over half a second falls under
    the budget: the held requests' first reads are done and they only wait.
    At most ``limit_s`` more, so the CPU reading still ends well before ``wait``."""
    deadline = time.perf_counter() + limit_s
    while True:
        cpu, started = run.process_cpu_s(pid), time.perf_counter()
        await asyncio.sleep(0.5)
        used = (run.process_cpu_s(pid) - cpu) / (time.perf_counter() - started) * 100
        if used < CPU_BUDGET_PCT or time.perf_counter() > deadline:
            return time.perf_counter() - since


async def hold_and_wake(
    server: Server,
    create_url: str,
    feed_path: str,
    token: str,
    since: str,
    waiters: int,
    idle_s: int,
) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {token}"}
    request = (
        f"GET {feed_path}?since={quote(since)}&wait=30 HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\nAuthorization: Bearer {token}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    async with httpx.AsyncClient(headers=auth, timeout=30) as control:
        rss_before = rss_mib(server.pid)
        held = [Held() for _ in range(waiters)]
        launched = time.perf_counter()
        requests = [asyncio.create_task(hold_one(server.port, request, out)) for out in held]
        deadline = time.monotonic() + 15
        while (held_now := await in_flight(control, server)) < waiters:
            if time.monotonic() > deadline or any(r.done() for r in requests):
                raise BenchError(f"only {held_now} of {waiters} requests held after 15 s")
            await asyncio.sleep(0.2)
        all_held_s = time.perf_counter() - launched
        settled_s = await settle(server.pid, launched)
        cpu_start, idle_start = run.process_cpu_s(server.pid), time.perf_counter()
        rss_start = rss_mib(server.pid)
        await asyncio.sleep(idle_s)
        idle = time.perf_counter() - idle_start
        cpu = run.process_cpu_s(server.pid) - cpu_start
        rss_held = max(rss_start, rss_mib(server.pid))
        early = sum(r.done() for r in requests)
        sent = time.perf_counter()
        created = await control.post(create_url, json=CREATE_BODY)
        acknowledged = time.perf_counter()
        if created.status_code != 201:
            raise BenchError(f"the waking create: HTTP {created.status_code}")
        await asyncio.gather(*requests)
    woke = [out.finished - sent for out in held if out.status == 200 and out.changes == 1]
    problems = [out.error or out.status for out in held if out.status != 200 or out.changes != 1]
    extra = rss_held - rss_before
    cpu_pct = cpu / idle * 100
    return {
        "waiters": waiters,
        "all_held_after_s": round(all_held_s, 2),
        "first_reads_done_after_s": round(settled_s, 2),
        "rss_before_mib": round(rss_before, 1),
        "rss_held_mib": round(rss_held, 1),
        "extra_rss_mib": round(extra, 1),
        "rss_required_mib": RSS_BUDGET_MIB,
        "idle_s": round(idle, 2),
        "idle_cpu_s": round(cpu, 3),
        "idle_cpu_pct": round(cpu_pct, 2),
        "cpu_required_pct": CPU_BUDGET_PCT,
        "returned_before_commit": early,
        "commit_s": round(acknowledged - sent, 4),
        "woke": len(woke),
        "failed": problems[:10],
        "wake_latency": figures_ms(woke) if woke else {},
        "met": extra < RSS_BUDGET_MIB and cpu_pct < CPU_BUDGET_PCT and len(woke) == waiters,
    }


def bench_one(o: Options, kind: str) -> dict[str, Any]:
    s = SyncBench(o, kind)
    h = s.h
    try:
        log(f"{kind}: preparing {SYNC_DB}")
        db, admin, lua = s.prepare()
        server = h.start_taskvault(f"taskvault-sync-{kind}", db)
        other = h.start_taskvault(f"taskvault-sync-{kind}-second", db)
        report: dict[str, Any] = {"kind": kind, "load_average_start": run.load_average()}
        if "sync" in o.only:
            feed(s, server, admin, db, report)
        if "batch" in o.only:
            report["batch"] = s.batch(server, admin, lua)
        if "held" in o.only:
            second = (
                "a second server: LISTEN/NOTIFY"
                if kind == "postgres"
                else "a second server: data_version probe"
            )
            report["held"] = {
                "same_process": s.hold(server, server, "the same server"),
                "other_process": s.hold(server, other, second),
            }
        if "purge" in o.only:
            report["purge"] = s.purge(server, admin, db)
        report["rss_mib_end"] = round(rss_mib(server.pid), 1)
        report["load_average_end"] = run.load_average()
        return report
    finally:
        h.stop_all()


def feed(s: SyncBench, server: Server, admin: Admin, db: Database, report: dict[str, Any]) -> None:
    """First sync and poll cost, without and then with other users' rows."""
    report["first_sync"] = {"alone": s.first_sync(server, "no other users")}
    report["polls"] = {"alone": s.polls(server, "no other users")}
    total = admin.count("%") + OTHER_ROWS
    s.h.seed(db, "fill", "--total-rows", str(total))
    report["other_rows"] = admin.count("other%")
    report["first_sync"]["with_other_rows"] = s.first_sync(server, f"{OTHER_ROWS:,} other rows")
    report["polls"]["with_other_rows"] = s.polls(server, f"{OTHER_ROWS:,} other rows")
    report["polls"]["ratios_with_to_without_other_rows"] = {
        name: {
            user: round(
                report["polls"]["with_other_rows"][name][user]["median_ms"]
                / report["polls"]["alone"][name][user]["median_ms"],
                2,
            )
            for user in report["polls"]["alone"][name]
            if not user.startswith("ratio")
        }
        for name in ("nothing_new", "one_change")
    }
    report["feed_plan"] = admin.explain_feed(_pg_app_dsn(db), DEEP, admin.head(DEEP))


def _pg_app_dsn(db: Database) -> str:
    return db.app_url.replace("postgresql+asyncpg://", "postgresql://", 1)


def verdict(met: bool) -> str:
    return "met" if met else "NOT MET"


def print_report(report: dict[str, Any]) -> None:
    kind = report["kind"]
    print(
        f"\nSync benchmarks on {kind} (load average {report['load_average_start']} at start, "
        f"{report['load_average_end']} at end, {os.cpu_count()} CPUs)"
    )
    b = report.get("batch")
    if b is not None:
        print(
            f"  batch ({b['method']}): single POST {b['single']['tasks_per_s']:.0f} tasks/s, "
            f"batch of {BATCH_SIZE} {b['batch']['tasks_per_s']:.0f} tasks/s: {b['ratio']}x "
            f"(>= {BATCH_RATIO_REQUIRED:.0f}x {verdict(b['met'])})"
        )
    for label, f in report.get("first_sync", {}).items():
        print(
            f"  first sync {DEEP_TASKS} tasks, limit {SYNC_LIMIT}, {f['pages']} pages ({label}): "
            f"median {f['median_s'] * 1000:.0f} ms, rounds {f['seconds']} s "
            f"(< 1 s {verdict(f['met'])})"
        )
    for label, polls in report.get("polls", {}).items():
        if label.startswith("ratios"):
            print(f"  poll median with/without {report['other_rows']:,} other rows: {polls}")
            continue
        for name, figures in polls.items():
            parts = [
                f"{user} {f['median_ms']:.2f} ms (p90 {f['p90_ms']:.2f})"
                for user, f in figures.items()
                if isinstance(f, dict)
            ]
            print(
                f"  poll since=head, {name} ({label}): {'; '.join(parts)}; "
                f"ratio {figures['ratio_10000_to_100']}"
            )
    for f in report.get("held", {}).values():
        latency = f["wake_latency"]
        print(
            f"  {f['waiters']} held wait=30, woken through {f['commit_through']}: RSS "
            f"{f['rss_before_mib']} -> {f['rss_held_mib']} MiB (+{f['extra_rss_mib']}, < 50 "
            f"{verdict(f['extra_rss_mib'] < RSS_BUDGET_MIB)}), CPU {f['idle_cpu_pct']}% of a core "
            f"over {f['idle_s']} s (< 5% {verdict(f['idle_cpu_pct'] < CPU_BUDGET_PCT)}); woke "
            f"{f['woke']}/{f['waiters']}, after the create was sent: median "
            f"{latency.get('median_ms', float('nan')):.0f} ms, p90 "
            f"{latency.get('p90_ms', float('nan')):.0f} ms, max "
            f"{latency.get('max_ms', float('nan')):.0f} ms (the create took "
            f"{f['commit_s'] * 1000:.0f} ms)"
        )
    p = report.get("purge")
    if p is not None:
        parts = [
            f"{user} median {f['median_ms']:.2f} ms (p90 {f['p90_ms']:.2f})"
            for user, f in p.items()
            if isinstance(f, dict) and "median_ms" in f
        ]
        print(
            f"  single DELETE ({p['method']}): {'; '.join(parts)}; ratio {p['ratio_median']} "
            f"(p90 {p['ratio_p90']}); expired tombstones purged a delete (count: deletes) "
            f"{p['expired_purged_per_delete']}, left {p['expired_left']['before']} -> "
            f"{p['expired_left']['after']}; the fresh user's expired {p['fresh_expired_after']} "
            f"(bounded {verdict(p['bounded'])})"
        )
        print("  purge plan:")
        for line in p["plan"]:
            print(f"    {line}")
    if "feed_plan" in report:
        print("  feed plan (since = head of the 10,000-task user):")
        for line in report["feed_plan"]:
            print(f"    {line}")


def raise_open_files(needed: int) -> None:
    """Room for the held connections, in this process and the servers it starts."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise BenchError(f"ulimit -n is {soft} (hard {hard}): {needed} open files needed")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def main(argv: Sequence[str] | None = None) -> int:
    o = parse_options(argv)
    o.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        raise_open_files(o.waiters * 2 + 512)
        run.check_tools()
        for kind in o.dbs:
            report = bench_one(o, kind)
            report["options"] = {
                k: str(v) if isinstance(v, Path) else sorted(v) if isinstance(v, frozenset) else v
                for k, v in vars(o).items()
            }
            path = o.out / f"sync-{kind}.json"
            path.write_text(json.dumps(run.without_nan(report), indent=2) + "\n")
            print_report(report)
            print(f"  wrote {path}")
    except BenchError as error:
        print(f"sync bench: {error}", file=sys.stderr)
        return 1
    except asyncpg.PostgresError as error:
        print(f"sync bench: PostgreSQL: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(f"Took {time.perf_counter() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
