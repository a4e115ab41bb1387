"""Nothing secret leaks: no secret, token, traceback or SQL in any response or log line.

These tests make every kind of response themselves (valid and invalid
tokens; 400, 401, 403, 404, 405, 412, 413, 415, 422, 429; a 500 from a
handler whose exception carries SQL, the secret and the caller's token; a 503
from an unreachable database) and scan what was recorded: response bodies and
headers, and the log lines of the service and of the root logger.

With ``tests.leakscan`` active as a plugin they scan their own slice of the
session's records (and the plugin scans the whole session at the end);
without it, they record for themselves.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy.exc
from fastapi import FastAPI, Request
from pydantic import SecretStr

from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests.leakscan import (
    Exchange,
    LeakRecorder,
    LogLine,
    Mark,
    format_leaks,
    recording,
    session_recorder,
)
from tests.support import SECRET, auth, make_token

PROBLEM = "application/problem+json"
UNREACHABLE_DATABASE = "postgresql+asyncpg://nobody@127.0.0.1:1/x"
BOOM_SQL = "SELECT id, title FROM tasks WHERE user_id = :user_id AND title = :title"


@dataclass
class Watch:
    """The recorder, and what it held when the test started."""

    recorder: LeakRecorder
    start: Mark

    def exchanges(self) -> list[Exchange]:
        return self.recorder.exchanges[self.start.exchanges :]

    def lines(self) -> list[LogLine]:
        return self.recorder.lines[self.start.lines :]

    def statuses(self) -> Counter[int]:
        return Counter(exchange.status for exchange in self.exchanges())

    def assert_nothing_leaked(self) -> None:
        leaks = self.recorder.scan(since=self.start)
        assert not leaks, "leaked:\n" + format_leaks(leaks)


@pytest.fixture
def watch(request: pytest.FixtureRequest) -> Iterator[Watch]:
    """Listed first among a test's arguments, so that it sees the app start too."""
    active = session_recorder(request.config)
    if active is not None:
        yield Watch(active, active.mark())
        return
    with recording() as recorder:
        yield Watch(recorder, recorder.mark())


def _settings(database_url: str, **overrides: Any) -> Settings:
    return Settings(  # type: ignore[call-arg]
        database_url=database_url, jwt_secret=SecretStr(SECRET), _env_file=None, **overrides
    )


@asynccontextmanager
async def _serve(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client for an app of its own, started and stopped around the block."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leaks.test") as http:
            yield http


def _add_failing_routes(app: FastAPI) -> None:
    """Handlers that fail the way a careless one would, with everything in the message."""

    async def runtime_error(request: Request) -> None:
        message = "; ".join(
            (
                BOOM_SQL,
                "INSERT INTO tasks VALUES (1)",
                "DELETE FROM tasks",
                f"caller {request.headers.get('authorization')}",
                f"secret {SECRET}",
            )
        )
        raise RuntimeError(message)

    async def database_error(request: Request) -> None:
        raise sqlalchemy.exc.ProgrammingError(
            BOOM_SQL,
            {"user_id": "alice", "title": SECRET, "token": request.headers.get("authorization")},
            Exception('relation "tasks" does not exist'),
        )

    app.add_api_route("/api/{user_id}/boom/runtime", runtime_error, methods=["GET"])
    app.add_api_route("/api/{user_id}/boom/database", database_error, methods=["POST"])


def _unsigned(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _bad_tokens() -> list[str]:
    """Authorization headers that must each get a 401."""
    return [
        "Bearer not-a-jwt",
        f"Bearer {make_token('alice', secret='another-secret-that-is-long-enough-0123456789')}",
        f"Bearer {make_token('alice', exp=1_000_000)}",
        f"Bearer {make_token('alice', algorithm='HS512')}",
        f"Bearer {make_token(None)}",
        f"Bearer {_unsigned({'sub': 'alice', 'exp': 4_102_444_800})}",
        f"Bearer {make_token('alice')}garbage",
        f"Basic {base64.b64encode(b'alice:' + SECRET.encode()).decode()}",
    ]


async def _exercise(client: httpx.AsyncClient) -> None:
    """One request of every kind the API answers, good and bad."""
    alice = auth("alice")
    created = await client.post(
        "/api/alice/tasks",
        json={"title": "Write the report", "due_at": "2026-12-01T17:00:00Z"},
        headers={**alice, "Idempotency-Key": "report-1"},
    )
    assert created.status_code == 201, created.text
    task_url = created.headers["location"]
    etag = created.headers["etag"]
    second = await client.post("/api/me/tasks", json={"title": "Second"}, headers=alice)
    assert second.status_code == 201
    bobs = await client.post("/api/bob/tasks", json={"title": "Bob's"}, headers=auth("bob"))
    assert bobs.status_code == 201
    bobs_id = bobs.json()["id"]

    expected: list[tuple[int, str, str, dict[str, Any]]] = [
        (200, "GET", "/api/alice/tasks?limit=1", {}),
        (200, "GET", task_url, {}),
        (304, "GET", task_url, {"headers": {"If-None-Match": etag}}),
        (200, "PATCH", task_url, {"json": {"priority": "high"}}),
        (200, "PUT", task_url, {"json": {"title": "Write the report", "completed": False}}),
        (200, "PATCH", f"{task_url}/complete", {}),
        (400, "POST", "/api/alice/tasks", {"content": b'{"title": ', "json_type": True}),
        (400, "PATCH", task_url, {"content": b"{'title': 'x'}", "json_type": True}),
        (403, "GET", "/api/bob/tasks", {}),
        (403, "POST", "/api/ME/tasks", {"json": {"title": "x"}}),
        (404, "GET", f"/api/alice/tasks/{bobs_id}", {}),
        (404, "GET", "/api/alice/tasks/not-a-uuid", {}),
        (404, "GET", "/api/alice/tasks/1%3B%20DROP%20TABLE%20tasks", {}),
        (404, "GET", "/api/alice/nothing-here", {}),
        (404, "GET", "/nothing-here", {}),
        (405, "PUT", "/api/alice/tasks", {"json": {"title": "x"}}),
        (405, "POST", "/healthz", {}),
        (412, "PATCH", task_url, {"json": {"title": "x"}, "headers": {"If-Match": '"nope.1"'}}),
        (412, "DELETE", task_url, {"headers": {"If-Match": f'"{bobs_id}.1"'}}),
        (413, "POST", "/api/alice/tasks", {"json": {"title": "x", "description": "y" * 70_000}}),
        (415, "POST", "/api/alice/tasks", {"content": b"title=x", "type": "text/plain"}),
        (422, "POST", "/api/alice/tasks", {"json": {"title": "   "}}),
        (422, "POST", "/api/alice/tasks", {"json": {"title": "x", "user_id": "bob"}}),
        (422, "POST", "/api/alice/tasks", {"json": {"title": "x", "due_at": "2026-12-01T17:00"}}),
        (422, "GET", "/api/alice/tasks?limit=0&sort=password", {}),
        (422, "GET", "/api/alice/tasks?cursor=eyJzZWxlY3QiOiIqIn0.AAAA", {}),
        (
            422,
            "POST",
            "/api/alice/tasks",
            {"json": {"title": "Other body"}, "headers": {"Idempotency-Key": "report-1"}},
        ),
        (500, "GET", "/api/alice/boom/runtime", {}),
        (500, "POST", "/api/alice/boom/database", {"json": {"title": "x"}}),
        (204, "DELETE", task_url, {"headers": {"If-Match": "*"}}),
    ]
    for status, method, url, options in expected:
        headers = {**alice, **options.get("headers", {})}
        if "type" in options or options.get("json_type"):
            headers["Content-Type"] = options.get("type", "application/json")
        response = await client.request(
            method, url, headers=headers, json=options.get("json"), content=options.get("content")
        )
        assert response.status_code == status, (method, url, response.text)
        if status >= 400:
            assert response.headers["content-type"] == PROBLEM, (method, url)

    for header in _bad_tokens():
        response = await client.get("/api/alice/tasks", headers={"Authorization": header})
        assert response.status_code == 401, (header[:12], response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
    missing = await client.get("/api/alice/tasks")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"


async def test_no_response_or_log_line_leaks_anything(
    watch: Watch, app: FastAPI, client: httpx.AsyncClient
) -> None:
    _add_failing_routes(app)
    await _exercise(client)

    statuses = watch.statuses()
    every_kind = {200, 201, 204, 304, 400, 401, 403, 404, 405, 412, 413, 415, 422, 500}
    assert every_kind <= set(statuses), f"the recorder missed some: {sorted(statuses)}"
    # The recorder saw the failing handlers' log lines, not just the responses.
    errors = [line.text for line in watch.lines() if '"unhandled error"' in line.text]
    assert len(errors) == 2
    assert any('"error_type":"RuntimeError"' in text for text in errors)
    assert any('"error_type":"ProgrammingError"' in text for text in errors)
    access = [line for line in watch.lines() if line.logger == "taskvault.access"]
    assert len(access) >= sum(statuses.values())
    watch.assert_nothing_leaked()


async def test_an_unreachable_database_leaks_nothing(watch: Watch) -> None:
    settings = _settings(UNREACHABLE_DATABASE, db_timeout_s=2.0)
    async with _serve(settings) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.headers["retry-after"].isdigit()
        for method, url, body in [
            ("GET", "/api/alice/tasks", None),
            ("POST", "/api/alice/tasks", {"title": "x"}),
            ("GET", "/api/me/tasks/0192f5d0-8b7e-7c3a-9f10-2b6d7e4c1a55", None),
        ]:
            response = await client.request(method, url, headers=auth("alice"), json=body)
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == PROBLEM
            assert response.headers["retry-after"].isdigit()
    # The start-up check of the database role failed and said so, without the error text.
    assert any("could not check the database role" in line.text for line in watch.lines())
    watch.assert_nothing_leaked()


async def test_rate_limited_requests_leak_nothing(watch: Watch) -> None:
    async with _serve(_settings("memory://", rate_limit="3/minute")) as client:
        statuses = [
            (await client.get("/api/alice/tasks", headers=auth("alice"))).status_code
            for _ in range(4)
        ]
        bad = [
            (await client.get("/api/alice/tasks", headers={"Authorization": header})).status_code
            for header in _bad_tokens()[:4]
        ]
    assert statuses == [200, 200, 200, 429]
    assert bad == [401, 401, 401, 429]
    limited = [exchange for exchange in watch.exchanges() if exchange.status == 429]
    assert all(dict(exchange.headers)["retry-after"].isdigit() for exchange in limited)
    watch.assert_nothing_leaked()


# --- the scanner itself ------------------------------------------------------


def _exchange(status: int, body: str, *, echoed: tuple[str, ...] = ()) -> Exchange:
    return Exchange(
        test_id="tests/fake.py::test_fake",
        method="GET",
        url="http://leaks.test/api/alice/tasks",
        status=status,
        headers=(("content-type", PROBLEM),),
        body=body,
        token=None,
        echoed=echoed,
    )


def test_the_scanner_finds_each_kind_of_leak_and_masks_it() -> None:
    token = make_token("alice")
    recorder = LeakRecorder()
    recorder.tokens[token.rsplit(".", 1)[1]] = token
    recorder.exchanges += [
        _exchange(500, f'{{"detail": "bad secret {SECRET}"}}'),
        _exchange(401, f'{{"detail": "token {token} refused"}}'),
        _exchange(500, '{"detail": "Traceback (most recent call last):"}'),
        _exchange(
            500, '{"detail": "[SQL: SELECT tasks.id, tasks.title \\nFROM tasks WHERE x = 1]"}'
        ),
    ]
    recorder.lines += [
        LogLine("tests/fake.py::test_log", "asyncio", "sqlalchemy.exc.OperationalError", ()),
        LogLine("tests/fake.py::test_log", "taskvault", 'File "/app/x.py", line 3, in f', ()),
    ]
    leaks = recorder.scan()
    kinds = {(leak.test_id, leak.what.split(" (")[0]) for leak in leaks}
    assert kinds == {
        ("tests/fake.py::test_fake", "the JWT secret"),
        ("tests/fake.py::test_fake", "a bearer token that was sent"),
        ("tests/fake.py::test_fake", "a traceback"),
        ("tests/fake.py::test_fake", "SQL text"),
        ("tests/fake.py::test_log", "SQL text"),
        ("tests/fake.py::test_log", "a traceback"),
    }
    report = format_leaks(leaks)
    assert SECRET not in report
    assert token.rsplit(".", 1)[1] not in report
    assert "[SECRET]" in report
    assert "[TOKEN]" in report


def test_the_scanner_ignores_user_data_and_what_the_client_sent() -> None:
    recorder = LeakRecorder()
    path = "/api/alice/tasks/1; DELETE FROM tasks"
    recorder.exchanges += [
        # A task's own text, and API prose, are data in a successful response.
        _exchange(200, '[{"title": "Select the venue from the list; Traceback dance"}]'),
        # An error that repeats the client's own path or field names.
        _exchange(404, f'{{"instance": "{path}"}}', echoed=(path,)),
        _exchange(
            422,
            '{"errors": [{"loc": ["body", "select"]}, {"loc": ["body", "from"]}]}',
            echoed=("select", "from"),
        ),
        # Headers and words that merely contain SQL keywords.
        _exchange(429, '{"detail": "Too many requests; slow down."}'),
        # A client that chose the secret's text as its own user id gets it back.
        _exchange(201, f'{{"user_id": "{SECRET}!"}}', echoed=(f"{SECRET}!",)),
    ]
    recorder.lines.append(
        LogLine("t", "taskvault.access", '{"user_id": "update me, set me free"}', ())
    )
    leaks = recorder.scan()
    assert [str(leak) for leak in leaks] == [
        "t: SQL text (/\\bupdate\\b.{1,400}?\\bset\\b/) in a log line of taskvault.access: "
        '...{"user_id": "update me, set me free"}...'
    ]
    recorder.lines[-1] = LogLine(
        "t",
        "taskvault.access",
        '{"user_id": "update me, set me free"}',
        ("update me, set me free",),
    )
    assert recorder.scan() == []
