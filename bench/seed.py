"""Seed a taskvault database for benchmarks, through SQL rather than the API.

Three subcommands, all writing rows that are valid per the schema (priority 1..3,
version 1, UTC timestamps, UUIDv7 ids whose time matches ``created_at``):

users
    --count users named <prefix>0000, <prefix>0001, ... with --tasks tasks
    each, made in Python and written with PostgreSQL COPY (SQLite: one
    executemany transaction). --lua-out FILE writes a Lua table of each
    user's task ids for the wrk scripts (bench/wrk/*.lua).

fill
    Adds rows of other users (other0000000, other0000001, ..., 50 tasks each)
    until the table holds --total-rows rows, generated inside the database
    (generate_series on PostgreSQL, a recursive CTE on SQLite).

tombstones
    --tombstones deleted tasks (for the change feed) of each of --count users
    named as by ``users``, the newest deleted --age-days ago, one second
    apart, written before each user's existing changes: they take change
    numbers 1..n, and the user's tasks and head move up by n, as if the
    deletes had come first.

Each user's tasks get change numbers 1, 2, ... (``change_seq``, oldest first,
as one create after another would) and the user's ``sync_heads`` row the
highest of them, so the change feed reads seeded rows like written ones and
the service's next write takes the number after them.

The database must already be migrated (taskvault migrate). The columns written
follow the live table: derived columns the seeder knows (search_text) are
filled the way taskvault fills them, and an unknown NOT NULL column without a
default stops the seeder with its name. On PostgreSQL connect as a superuser
or a role with BYPASSRLS: row-level security is forced on tasks, so an
ordinary role could not insert other users' rows.

Examples:

    python bench/seed.py users --database-url postgresql://postgres@127.0.0.1/taskvault_bench \\
        --count 1000 --tasks 50 --lua-out var/bench/tasks-postgres.lua
    python bench/seed.py fill --database-url postgresql://postgres@127.0.0.1/taskvault_bench \\
        --total-rows 1000000
    python bench/seed.py users --database-url sqlite:///var/bench/taskvault_bench.db \\
        --prefix deep --count 1 --tasks 10000
    python bench/seed.py tombstones --database-url sqlite:///var/bench/taskvault_bench.db \\
        --prefix deep --count 1 --tombstones 10000 --age-days 40
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

FILLER_PREFIX = "other"
FILLER_TASKS_PER_USER = 50
FILLER_DESCRIPTION = "Seeded by bench/seed.py fill"
SEARCH_SEPARATOR = "\x1f"

# Columns the seeder can fill, in the order it writes them.
KNOWN_COLUMNS = (
    "user_id",
    "id",
    "title",
    "description",
    "completed",
    "priority",
    "due_at",
    "completed_at",
    "created_at",
    "updated_at",
    "version",
    "search_text",
    "change_seq",
)

# A UUIDv7 for a timestamp ``ts``: gen_random_uuid() with its first 48 bits
# replaced by the Unix time in milliseconds and the version nibble 4 -> 7.
_PG_UUID7 = (
    "encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) placing "
    "substring(int8send((extract(epoch FROM ts) * 1000)::bigint) FROM 3) FROM 1 FOR 6), "
    "52, 1), 53, 1), 'hex')::uuid"
)
_PG_FILL_VALUES = {
    "user_id": f"'{FILLER_PREFIX}' || lpad((g / {FILLER_TASKS_PER_USER})::text, 7, '0')",
    "id": _PG_UUID7,
    "title": "'Filler task ' || g",
    "description": f"CASE WHEN g % 4 = 0 THEN '{FILLER_DESCRIPTION}' END",
    "completed": "g % 5 = 0",
    "priority": "1 + g % 3",
    "due_at": "CASE WHEN g % 2 = 0 THEN ts + interval '7 days' END",
    "completed_at": "CASE WHEN g % 5 = 0 THEN ts END",
    "created_at": "ts",
    "updated_at": "ts",
    "version": "1",
    # ASCII only, so lower() is what str.casefold() gives.
    "search_text": "lower('Filler task ' || g) || chr(31) "
    f"|| CASE WHEN g % 4 = 0 THEN lower('{FILLER_DESCRIPTION}') ELSE '' END",
    # A filler user's tasks are g = 50u .. 50u + 49: numbers 1..50.
    "change_seq": f"1 + g % {FILLER_TASKS_PER_USER}",
}
_PG_FILL_FROM = """
FROM (SELECT g, $3::timestamptz - make_interval(secs => g - $1) AS ts
      FROM generate_series($1::bigint, $2::bigint) AS g) AS s"""

# SQLite stores SQLAlchemy's Uuid as 32 hex digits and datetimes as naive UTC
# text with microseconds; the id's first 48 bits are the millisecond time.
_SQLITE_TIME = "strftime('%Y-%m-%d %H:%M:%f000', ms / 1000.0, 'unixepoch')"
_SQLITE_FILL_VALUES = {
    "user_id": f"'{FILLER_PREFIX}' || printf('%07d', g / {FILLER_TASKS_PER_USER})",
    "id": "lower(printf('%012x', ms) || '7' || substr(hex(randomblob(2)), 2) "
    "|| '8' || substr(hex(randomblob(8)), 2))",
    "title": "'Filler task ' || g",
    "description": f"CASE WHEN g % 4 = 0 THEN '{FILLER_DESCRIPTION}' END",
    "completed": "g % 5 = 0",
    "priority": "1 + g % 3",
    "due_at": "CASE WHEN g % 2 = 0 THEN "
    "strftime('%Y-%m-%d %H:%M:%f000', ms / 1000.0 + 604800, 'unixepoch') END",
    "completed_at": f"CASE WHEN g % 5 = 0 THEN {_SQLITE_TIME} END",
    "created_at": _SQLITE_TIME,
    "updated_at": _SQLITE_TIME,
    "version": "1",
    "search_text": "lower('Filler task ' || g) || char(31) "
    f"|| CASE WHEN g % 4 = 0 THEN lower('{FILLER_DESCRIPTION}') ELSE '' END",
    "change_seq": f"1 + g % {FILLER_TASKS_PER_USER}",
}

# Each seeded user's head: its highest change number. A user filled over two
# runs of ``fill`` keeps the higher head.
_PG_HEADS = """
INSERT INTO sync_heads (user_id, change_seq)
SELECT user_id, max(change_seq) FROM tasks WHERE {where} GROUP BY user_id
ON CONFLICT (user_id)
DO UPDATE SET change_seq = greatest(sync_heads.change_seq, excluded.change_seq)"""
_SQLITE_HEADS = """
INSERT INTO sync_heads (user_id, change_seq)
SELECT user_id, max(change_seq) FROM tasks WHERE {where} GROUP BY user_id
ON CONFLICT (user_id)
DO UPDATE SET change_seq = max(sync_heads.change_seq, excluded.change_seq)"""
_SQLITE_FILL_WITH = """
WITH RECURSIVE s(g) AS (SELECT ? UNION ALL SELECT g + 1 FROM s WHERE g < ?),
t AS (SELECT g, ? - (g - ?) * 1000 AS ms FROM s)"""


def uuid7_at(millis: int) -> uuid.UUID:
    """An RFC 9562 version 7 UUID for the Unix time ``millis`` (random in the rest)."""
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF
    return uuid.UUID(int=value)


def search_key_function() -> Callable[[str, str | None], str]:
    """taskvault's own ``search_key``, so seeded rows match what ``q`` searches."""
    try:
        from application.queries import search_key
    except ImportError:
        raise SystemExit(
            "seed.py: tasks has a search_text column but application.queries.search_key "
            "is missing: update bench/seed.py to fill it"
        ) from None
    return search_key


@dataclass(frozen=True)
class Column:
    name: str
    required: bool  # NOT NULL without a default


def choose_columns(live: Sequence[Column]) -> tuple[str, ...]:
    """The known columns present in the live table; stop on an unknown required one."""
    names = {column.name for column in live}
    unknown = [c.name for c in live if c.required and c.name not in KNOWN_COLUMNS]
    if unknown:
        raise SystemExit(
            f"seed.py: tasks has NOT NULL column(s) {', '.join(unknown)} that bench/seed.py "
            "does not know how to fill: teach it (KNOWN_COLUMNS and the fill expressions)"
        )
    return tuple(name for name in KNOWN_COLUMNS if name in names)


async def pg_columns(conn: asyncpg.Connection) -> tuple[str, ...]:
    rows = await conn.fetch(
        "SELECT column_name, is_nullable, column_default FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = 'tasks'"
    )
    if not rows:
        raise SystemExit("seed.py: no tasks table: run `taskvault migrate` first")
    return choose_columns(
        [
            Column(r["column_name"], r["is_nullable"] == "NO" and r["column_default"] is None)
            for r in rows
        ]
    )


def sqlite_columns(conn: sqlite3.Connection) -> tuple[str, ...]:
    # PRAGMA table_info: (cid, name, type, notnull, dflt_value, pk)
    rows = conn.execute("PRAGMA table_info(tasks)").fetchall()
    if not rows:
        raise SystemExit("seed.py: no tasks table: run `taskvault migrate` first")
    return choose_columns([Column(r[1], bool(r[3]) and r[4] is None) for r in rows])


@dataclass(frozen=True)
class Target:
    """Where to seed: a PostgreSQL DSN for asyncpg, or a SQLite file path."""

    kind: str
    location: str

    @classmethod
    def parse(cls, url: str) -> Target:
        for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
            if url.startswith(prefix):
                return cls("postgresql", "postgresql://" + url[len(prefix) :])
        for prefix in ("sqlite+aiosqlite:///", "sqlite:///"):
            if url.startswith(prefix):
                return cls("sqlite", url[len(prefix) :])
        raise SystemExit(f"seed.py: unsupported database URL {url!r}")


def user_id(prefix: str, n: int) -> str:
    return f"{prefix}{n:04d}"


def task_rows(
    user: str, count: int, newest: datetime, columns: tuple[str, ...]
) -> Iterator[tuple[Any, ...]]:
    """``count`` tasks of ``user``, one second apart, the last created at ``newest``."""
    search_key = search_key_function() if "search_text" in columns else None
    for i in range(count):
        created = newest - timedelta(seconds=count - 1 - i)
        completed = i % 5 == 0
        title = f"Task {i} of {user}"
        description = f"Seeded description {i}" if i % 3 == 0 else None
        row: dict[str, Any] = {
            "user_id": user,
            "id": uuid7_at(int(created.timestamp() * 1000)),
            "title": title,
            "description": description,
            "completed": completed,
            "priority": 1 + i % 3,
            "due_at": created + timedelta(days=7) if i % 2 == 0 else None,
            "completed_at": created if completed else None,
            "created_at": created,
            "updated_at": created,
            "version": 1,
            "change_seq": i + 1,
        }
        if search_key is not None:
            row["search_text"] = search_key(title, description)
        yield tuple(row[name] for name in columns)


def write_lua(path: Path, ids: dict[str, list[uuid.UUID]]) -> None:
    """A Lua chunk returning ``{ {user, {id, ...}}, ... }`` in user order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["-- Generated by bench/seed.py: each user's seeded task ids.", "return {"]
    for user, task_ids in ids.items():
        quoted = ", ".join(f'"{tid}"' for tid in task_ids)
        lines.append(f'  {{"{user}", {{{quoted}}}}},')
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")


async def seed_users_pg(dsn: str, users: list[str], tasks: int, now: datetime) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        columns = await pg_columns(conn)
        at_id = columns.index("id")
        ids: dict[str, list[uuid.UUID]] = {}
        records: list[tuple[Any, ...]] = []
        for user in users:
            rows = list(task_rows(user, tasks, now, columns))
            ids[user] = [row[at_id] for row in rows]
            records.extend(rows)
        await conn.copy_records_to_table("tasks", records=records, columns=list(columns))
        if "change_seq" in columns:
            await conn.execute(_PG_HEADS.format(where="user_id = ANY($1::text[])"), users)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return ids


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    return value


def seed_users_sqlite(path: str, users: list[str], tasks: int, now: datetime) -> dict[str, Any]:
    conn = sqlite3.connect(path)
    try:
        columns = sqlite_columns(conn)
        at_id = columns.index("id")
        insert = (
            f"INSERT INTO tasks ({', '.join(columns)}) "  # noqa: S608 (known column names)
            f"VALUES ({', '.join('?' * len(columns))})"
        )
        ids: dict[str, list[uuid.UUID]] = {}
        with conn:
            for user in users:
                rows = list(task_rows(user, tasks, now, columns))
                ids[user] = [row[at_id] for row in rows]
                conn.executemany(insert, [tuple(map(_sqlite_value, row)) for row in rows])
            if "change_seq" in columns:
                marks = ", ".join("?" * len(users))
                conn.execute(_SQLITE_HEADS.format(where=f"user_id IN ({marks})"), users)
        conn.execute("ANALYZE")
    finally:
        conn.close()
    return ids


def tombstone_rows(user: str, count: int, newest: datetime) -> Iterator[tuple[Any, ...]]:
    """(user_id, id, change_seq, deleted_at): numbers 1..count, oldest first,
    each task made a day before its delete."""
    for i in range(count):
        deleted = newest - timedelta(seconds=count - 1 - i)
        made = deleted - timedelta(days=1)
        yield user, uuid7_at(int(made.timestamp() * 1000)), i + 1, deleted


# Each user's existing changes come after its tombstones'.
_SHIFT_TASKS = "UPDATE tasks SET change_seq = change_seq + {n} WHERE user_id = {u}"
_SHIFT_HEAD = """
INSERT INTO sync_heads (user_id, change_seq) VALUES ({u}, {n})
ON CONFLICT (user_id) DO UPDATE SET change_seq = sync_heads.change_seq + excluded.change_seq"""


async def tombstones_pg(dsn: str, users: list[str], count: int, newest: datetime) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            for statement in (_SHIFT_TASKS, _SHIFT_HEAD):
                sql = statement.format(u="$1", n="$2::bigint")
                await conn.executemany(sql, [(user, count) for user in users])
            await conn.copy_records_to_table(
                "task_tombstones",
                records=[row for user in users for row in tombstone_rows(user, count, newest)],
                columns=["user_id", "id", "change_seq", "deleted_at"],
            )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def tombstones_sqlite(path: str, users: list[str], count: int, newest: datetime) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            for statement in (_SHIFT_TASKS, _SHIFT_HEAD):
                sql = statement.format(u=":u", n=":n")
                conn.executemany(sql, [{"u": user, "n": count} for user in users])
            for user in users:
                conn.executemany(
                    "INSERT INTO task_tombstones (user_id, id, change_seq, deleted_at) "
                    "VALUES (?, ?, ?, ?)",
                    [tuple(map(_sqlite_value, r)) for r in tombstone_rows(user, count, newest)],
                )
        conn.execute("ANALYZE")
    finally:
        conn.close()


def fill_sql(columns: tuple[str, ...], values: dict[str, str], head: str, source: str) -> str:
    """``INSERT INTO tasks (...) SELECT <expressions> <source>`` for the live columns."""
    expressions = ",\n       ".join(values[name] for name in columns)
    return f"{head}\nINSERT INTO tasks ({', '.join(columns)})\nSELECT {expressions}{source}"


async def fill_pg(dsn: str, total_rows: int, now: datetime) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        columns = await pg_columns(conn)
        have = await conn.fetchval("SELECT count(*) FROM tasks")
        fillers = await conn.fetchval(
            "SELECT count(*) FROM tasks WHERE user_id LIKE $1", FILLER_PREFIX + "%"
        )
        missing = int(total_rows - have)
        if missing > 0:
            # Older than every seeded user's task; other users' rows in any case.
            oldest = now - timedelta(days=400)
            sql = fill_sql(columns, _PG_FILL_VALUES, "", _PG_FILL_FROM)
            await conn.execute(sql, fillers, fillers + missing - 1, oldest)
            if "change_seq" in columns:
                await conn.execute(_PG_HEADS.format(where="user_id LIKE $1"), FILLER_PREFIX + "%")
            await conn.execute("ANALYZE")
        return max(missing, 0)
    finally:
        await conn.close()


def fill_sqlite(path: str, total_rows: int, now: datetime) -> int:
    conn = sqlite3.connect(path)
    try:
        columns = sqlite_columns(conn)
        have = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
        fillers = conn.execute(
            "SELECT count(*) FROM tasks WHERE user_id LIKE ?", (FILLER_PREFIX + "%",)
        ).fetchone()[0]
        missing = int(total_rows - have)
        if missing > 0:
            oldest_ms = int((now - timedelta(days=400)).timestamp() * 1000)
            sql = fill_sql(columns, _SQLITE_FILL_VALUES, _SQLITE_FILL_WITH, "\nFROM t")
            with conn:
                conn.execute(sql, (fillers, fillers + missing - 1, oldest_ms, fillers))
                if "change_seq" in columns:
                    heads = _SQLITE_HEADS.format(where="user_id LIKE ?")
                    conn.execute(heads, (FILLER_PREFIX + "%",))
            conn.execute("ANALYZE")
        return max(missing, 0)
    finally:
        conn.close()


def _parser() -> argparse.ArgumentParser:
    summary, _, details = (__doc__ or "").partition("\n\n")
    parser = argparse.ArgumentParser(
        prog="bench/seed.py",
        description=summary,
        epilog=details,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    users = commands.add_parser("users", help="users with N tasks each (COPY / executemany)")
    fill = commands.add_parser("fill", help="other users' rows up to a total row count (SQL)")
    graves = commands.add_parser("tombstones", help="users' deleted tasks, before their changes")
    for sub in (users, fill, graves):
        sub.add_argument(
            "--database-url",
            required=True,
            help="postgresql[+asyncpg]://... (superuser or BYPASSRLS) or sqlite[+aiosqlite]:///path",
        )
    users.add_argument("--tasks", type=int, default=50, help="tasks per user (default 50)")
    users.add_argument("--lua-out", type=Path, help="write each user's task ids as a Lua table")
    fill.add_argument("--total-rows", type=int, required=True, help="rows the table should hold")
    for sub in (users, graves):
        sub.add_argument("--count", type=int, default=1000, help="number of users (default 1000)")
        sub.add_argument("--first", type=int, default=0, help="number of the first user")
        sub.add_argument("--prefix", default="user", help="user id prefix (default 'user')")
    graves.add_argument("--tombstones", type=int, required=True, help="tombstones per user")
    graves.add_argument(
        "--age-days", type=float, required=True, help="days since the newest delete"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    target = Target.parse(args.database_url)
    now = datetime.now(UTC).replace(microsecond=0)
    started = time.perf_counter()
    if args.command in ("users", "tombstones"):
        users = [user_id(args.prefix, n) for n in range(args.first, args.first + args.count)]
    if args.command == "users":
        if target.kind == "postgresql":
            ids = asyncio.run(seed_users_pg(target.location, users, args.tasks, now))
        else:
            ids = seed_users_sqlite(target.location, users, args.tasks, now)
        if args.lua_out is not None:
            write_lua(args.lua_out, ids)
        added = len(users) * args.tasks
    elif args.command == "tombstones":
        newest = now - timedelta(days=args.age_days)
        if target.kind == "postgresql":
            asyncio.run(tombstones_pg(target.location, users, args.tombstones, newest))
        else:
            tombstones_sqlite(target.location, users, args.tombstones, newest)
        added = len(users) * args.tombstones
    elif target.kind == "postgresql":
        added = asyncio.run(fill_pg(target.location, args.total_rows, now))
    else:
        added = fill_sqlite(target.location, args.total_rows, now)
    elapsed = time.perf_counter() - started
    print(f"seed.py {args.command}: {added} rows in {elapsed:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
