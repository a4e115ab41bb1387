"""Structured logs: one JSON line per request, the request id on every line of a request,
one line per unhandled error, never a token, secret or body; ``TASKVAULT_LOG_LEVEL``."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from dependency_injector import providers
from fastapi import FastAPI
from pydantic import SecretStr

from application.ports import PoolStatus, TaskReader, TaskWriter, UnitOfWork
from entrypoints.container import Container
from entrypoints.http.app import create_app
from entrypoints.logging import LOGGER_NAME, JsonFormatter, get_logger
from entrypoints.settings import Settings
from tests.integration.test_metrics import scrape, value
from tests.support import SECRET, make_token
from tests.support.http import tasks_url
from tests.support.processes import TaskvaultServer

Record = dict[str, Any]
ACCESS_FIELDS = {
    "time",
    "level",
    "logger",
    "message",
    "request_id",
    "method",
    "route",
    "status",
    "duration_ms",
    "user_id",
}


class Lines:
    """Every line the service's loggers write, formatted as the service writes them.

    Formatted when logged: the request id is read from the request's context then.
    """

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def records(self) -> list[Record]:
        return [orjson.loads(line) for line in self.text.splitlines()]

    def access(self, request_id: str) -> Record:
        found = [
            r
            for r in self.records()
            if r["logger"] == "taskvault.access" and r.get("request_id") == request_id
        ]
        assert len(found) == 1, found
        return found[0]


@pytest.fixture
def lines() -> Iterator[Lines]:
    captured = Lines()
    handler = logging.StreamHandler(captured.stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(LOGGER_NAME)
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield captured
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _settings(**overrides: Any) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None, database_url="memory://", jwt_secret=SecretStr(SECRET), **overrides
    )


@asynccontextmanager
async def _client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://taskvault.test") as c:
            yield c


async def test_one_access_line_per_request_with_every_field(
    client: httpx.AsyncClient, lines: Lines
) -> None:
    token = make_token("alice")
    body_marker = "body-marker-9c1e5a77"
    response = await client.post(
        "/api/me/tasks",
        json={"title": body_marker, "description": body_marker},
        headers={"Authorization": f"Bearer {token}", "X-Request-ID": "trace-1.A_b"},
    )
    assert response.status_code == 201
    line = lines.access("trace-1.A_b")
    assert set(line) >= ACCESS_FIELDS
    assert line["level"] == "info"
    assert line["message"] == "request"
    assert line["method"] == "POST"
    assert line["route"] == "/api/{user_id}/tasks"
    assert line["status"] == 201
    assert isinstance(line["duration_ms"], float)
    assert line["duration_ms"] >= 0
    assert line["user_id"] == "alice"
    assert str(line["time"]).endswith("Z")
    datetime.fromisoformat(str(line["time"]))

    denied = await client.get(
        tasks_url("me", response.json()["id"]),
        headers={"Authorization": "Bearer not-a-valid-token", "X-Request-ID": "trace-2"},
    )
    assert denied.status_code == 401
    line = lines.access("trace-2")
    assert (line["route"], line["status"], line["user_id"]) == (
        "/api/{user_id}/tasks/{task_id}",
        401,
        None,
    )
    # No request id of the client's: a new one, the one the response carries.
    await client.get("/healthz", headers={"X-Request-ID": "not valid!"})
    generated = [r for r in lines.records() if r.get("route") == "/healthz"]
    assert len(generated) == 1
    assert generated[0]["request_id"] != "not valid!"
    assert len(str(generated[0]["request_id"])) == 32

    for secret in (token, token.rsplit(".", 1)[1], body_marker, SECRET, "Bearer"):
        assert secret not in lines.text


async def test_a_line_logged_while_serving_a_request_names_that_request(lines: Lines) -> None:
    # The rate limiter's store is down: it logs a warning from inside the
    # request's dependency and lets the request through.
    app = create_app(_settings(rate_limit="5/minute", redis_url="redis://127.0.0.1:1/0"))
    token = make_token("alice")
    async with _client(app) as client:
        for request_id in ("first-request", "second-request"):
            response = await client.get(
                "/api/me/tasks",
                headers={"Authorization": f"Bearer {token}", "X-Request-ID": request_id},
            )
            assert response.status_code == 200
            assert response.headers["x-request-id"] == request_id
    get_logger("test").info("outside any request")

    records = lines.records()
    warnings = [r for r in records if r["logger"] == "taskvault.ratelimit"]
    assert [(r["level"], r["request_id"]) for r in warnings] == [
        ("warning", "first-request"),
        ("warning", "second-request"),
    ]
    assert all(r["message"] == "rate limit store failed; request allowed" for r in warnings)
    for request_id in ("first-request", "second-request"):
        assert lines.access(request_id)["status"] == 200
    # The request's id does not outlive it.
    outside = [r for r in records if r["message"] == "outside any request"]
    assert len(outside) == 1
    assert "request_id" not in outside[0]


class _FailingStorage:
    """A store whose reads and units of work fail with an error the service does not expect."""

    def reader(self, owner: str) -> TaskReader:
        raise RuntimeError("SELECT password FROM tasks WHERE user_id = 'alice'")

    def writer(self, owner: str) -> TaskWriter:
        raise RuntimeError("SELECT password FROM tasks WHERE user_id = 'alice'")

    def unit_of_work(self, owner: str) -> UnitOfWork:
        raise RuntimeError("SELECT password FROM tasks WHERE user_id = 'alice'")

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def warnings(self) -> list[str]:
        return []

    def pool_status(self) -> PoolStatus:
        return PoolStatus(size=0, in_use=0)


async def test_an_unhandled_error_gets_one_error_line_naming_only_its_type(
    lines: Lines,
) -> None:
    container = Container(settings=_settings())
    container.storage.override(providers.Object(_FailingStorage()))
    app = create_app(container=container)
    async with _client(app) as client:
        response = await client.get(
            "/api/me/tasks",
            headers={"Authorization": f"Bearer {make_token('alice')}", "X-Request-ID": "boom"},
        )
        _, samples = await scrape(client)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    errors = [r for r in lines.records() if r["level"] == "error"]
    assert errors == [
        {
            "time": errors[0]["time"],
            "level": "error",
            "logger": "taskvault.error",
            "message": "unhandled error",
            "request_id": "boom",
            "error_type": "RuntimeError",
        }
    ]
    access = lines.access("boom")
    assert (access["status"], access["user_id"]) == (500, "alice")
    for leaked in ("SELECT", "password", "Traceback"):
        assert leaked not in lines.text
    labels = {"route": "/api/{user_id}/tasks", "method": "GET", "status": "500"}
    assert value(samples, "taskvault_http_requests_total", **labels) == 1
    assert value(samples, "taskvault_http_requests_in_flight") == 1  # the scrape


@pytest.mark.parametrize("level", ["INFO", "WARNING"])
def test_serve_logs_json_lines_at_the_configured_level(tmp_path: Path, level: str) -> None:
    with TaskvaultServer(tmp_path, TASKVAULT_LOG_LEVEL=level) as server:
        token = server.token()
        headers = {"Authorization": f"Bearer {token}", "X-Request-ID": "from-the-client"}
        created = httpx.post(
            f"{server.base}/api/me/tasks", json={"title": "secret plans"}, headers=headers
        )
        assert created.status_code == 201
        assert httpx.get(f"{server.base}/api/me/tasks").status_code == 401
        server.process.terminate()
        assert server.process.wait(timeout=15) == 0
    records = server.log_records()  # every line is one JSON object
    access = [r for r in records if r["logger"] == "taskvault.access"]
    if level == "WARNING":
        assert access == []
        assert {r["level"] for r in records} <= {"warning", "error", "critical"}
    else:
        assert "Application startup complete." in [r["message"] for r in records]
        mine = [r for r in access if r.get("request_id") == "from-the-client"]
        assert len(mine) == 1
        assert set(mine[0]) >= ACCESS_FIELDS
        assert (mine[0]["route"], mine[0]["status"], mine[0]["user_id"]) == (
            "/api/{user_id}/tasks",
            201,
            "alice",
        )
        assert [r["status"] for r in access if r["method"] == "GET" and r["status"] == 401]
    text = "\n".join(server.log_lines())
    secret = (tmp_path / "var" / "jwt-secret").read_text().strip()
    for leaked in (token, secret, "secret plans"):
        assert leaked not in text
