"""The "raw asyncpg" yardstick: one prepared query per request, nothing else.

A bare ASGI app (no framework, no validation layer, no authentication: the user
comes from the path) over an asyncpg pool, answering with orjson, against the
same ``tasks`` table as taskvault. It is what one database round trip per
request costs on this machine, and it is not part of the service.

Configuration: ``BENCH_RAW_DSN`` (a ``postgresql://`` DSN; connect as a role
that bypasses row-level security, e.g. ``postgres``, since this app sets no
``taskvault.user_id``), ``BENCH_RAW_POOL_MIN`` / ``BENCH_RAW_POOL_MAX``
(default 10 / 20, like taskvault's pool of 10 plus 10 overflow).

Run: ``uvicorn --app-dir bench raw_app:app --loop uvloop --http httptools``.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from adapters.system import UuidV7Generator

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Constant SQL, prepared once per pooled connection by asyncpg's statement cache.
_RETURNED = (
    " id, user_id, title, description, completed, priority, due_at, completed_at,"
    " created_at, updated_at, version"
)
LIST_SQL = (
    "SELECT" + _RETURNED + " FROM tasks WHERE user_id = $1"
    " ORDER BY created_at DESC, id DESC LIMIT 20"
)
GET_SQL = "SELECT" + _RETURNED + " FROM tasks WHERE user_id = $1 AND id = $2"
INSERT_SQL = (
    "INSERT INTO tasks (user_id, id, title, description, completed, priority, due_at,"
    " completed_at, created_at, updated_at, version)"
    " VALUES ($1, $2, $3, $4, false, $5, NULL, NULL, $6, $6, 1)"
)
# When the table has taskvault's derived search column (see application.queries).
INSERT_WITH_SEARCH_SQL = (
    "INSERT INTO tasks (user_id, id, title, description, completed, priority, due_at,"
    " completed_at, created_at, updated_at, version, search_text)"
    " VALUES ($1, $2, $3, $4, false, $5, NULL, NULL, $6, $6, 1, $7)"
)
HAS_SEARCH_SQL = (
    "SELECT EXISTS (SELECT FROM information_schema.columns WHERE table_schema = current_schema()"
    " AND table_name = 'tasks' AND column_name = 'search_text')"
)
COMPLETE_SQL = (
    "UPDATE tasks SET completed = NOT completed,"  # noqa: S608 (constants only)
    " completed_at = CASE WHEN completed THEN NULL ELSE now() END,"
    " updated_at = now(), version = version + 1"
    " WHERE user_id = $1 AND id = $2 RETURNING" + _RETURNED
)

_PRIORITY_NAMES = {1: "low", 2: "medium", 3: "high"}
_PRIORITY_RANKS = {name: rank for rank, name in _PRIORITY_NAMES.items()}
_ROUTE = re.compile(r"^/api/([^/]+)/tasks(?:/([^/]+)(/complete)?)?$")
_JSON = [(b"content-type", b"application/json")]
_ids = UuidV7Generator()


def _task(row: asyncpg.Record) -> dict[str, Any]:
    task = dict(row)
    task["id"] = str(task["id"])  # asyncpg's own UUID type, which orjson does not know
    task["priority"] = _PRIORITY_NAMES[task["priority"]]
    return task


class RawApp:
    def __init__(self) -> None:
        self.pool: asyncpg.Pool | None = None
        self.search_key: Callable[[str, str | None], str] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        status, body = await self._handle(scope, receive)
        await send({"type": "http.response.start", "status": status, "headers": _JSON})
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.pool = await asyncpg.create_pool(
                    os.environ.get("BENCH_RAW_DSN", "postgresql://postgres@127.0.0.1/postgres"),
                    min_size=int(os.environ.get("BENCH_RAW_POOL_MIN", "10")),
                    max_size=int(os.environ.get("BENCH_RAW_POOL_MAX", "20")),
                )
                if await self.pool.fetchval(HAS_SEARCH_SQL):
                    from application.queries import search_key

                    self.search_key = search_key
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.pool is not None:
                    await self.pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, bytes]:
        match = _ROUTE.match(scope["path"])
        if match is None or self.pool is None:
            return 404, b'{"title": "Not found"}'
        user, task_id, complete = match.groups()
        method = scope["method"]
        if task_id is None and method == "GET":
            rows = await self.pool.fetch(LIST_SQL, user)
            return 200, _dumps([_task(row) for row in rows])
        if task_id is None and method == "POST":
            return await self._create(user, await _body(receive))
        try:
            tid = uuid.UUID(task_id)
        except (TypeError, ValueError):
            return 404, b'{"title": "Not found"}'
        if complete and method == "PATCH":
            row = await self.pool.fetchrow(COMPLETE_SQL, user, tid)
        elif not complete and method == "GET":
            row = await self.pool.fetchrow(GET_SQL, user, tid)
        else:
            return 405, b'{"title": "Method not allowed"}'
        if row is None:
            return 404, b'{"title": "Not found"}'
        return 200, _dumps(_task(row))

    async def _create(self, user: str, raw: bytes) -> tuple[int, bytes]:
        assert self.pool is not None
        try:
            data = orjson.loads(raw)
            title = data["title"].strip()
            description = data.get("description")
            priority = data.get("priority", "medium")
            rank = _PRIORITY_RANKS[priority]
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            return 422, b'{"title": "Invalid task"}'
        task_id = _ids.new_id()
        now = datetime.now(UTC)
        if self.search_key is None:
            await self.pool.execute(INSERT_SQL, user, task_id, title, description, rank, now)
        else:
            search = self.search_key(title, description)
            await self.pool.execute(
                INSERT_WITH_SEARCH_SQL, user, task_id, title, description, rank, now, search
            )
        task = {
            "id": task_id,
            "user_id": user,
            "title": title,
            "description": description,
            "completed": False,
            "priority": priority,
            "due_at": None,
            "completed_at": None,
            "created_at": now,
            "updated_at": now,
            "version": 1,
        }
        return 201, _dumps(task)


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_UTC_Z)


app = RawApp()
