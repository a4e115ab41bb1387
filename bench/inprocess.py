"""CPU per request of taskvault and the FastAPI floor, called in-process.

No sockets and no database (taskvault on the memory store): what each app's
own code costs per request, without uvicorn or PostgreSQL.

    .venv/bin/python bench/inprocess.py [--count 2000]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import uvloop
from jose import jwt
from pydantic import SecretStr

from application.principal import Principal
from domain.task import TaskFields
from entrypoints.http.app import create_app
from entrypoints.settings import Settings

sys.path.insert(0, str(Path(__file__).parent))
import floor_app

SECRET = "in-process-benchmark-secret-0123456789"  # noqa: S105 (throwaway)


async def cpu_per_request(
    app: Any, path: str, headers: list[tuple[bytes, bytes]], count: int
) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    route, _, query = path.partition("?")

    def scope() -> dict[str, Any]:
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "root_path": "",
            "path": route,
            "raw_path": route.encode(),
            "query_string": query.encode(),
            "headers": headers,
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 5555),
            "state": {},
        }

    for _ in range(200):
        await app(scope(), receive, send)
    started = time.process_time()
    for _ in range(count):
        await app(scope(), receive, send)
    if set(statuses) != {200}:
        raise SystemExit(f"{path} answered {set(statuses)}")
    return (time.process_time() - started) / count * 1e6


async def main(count: int) -> None:
    token = jwt.encode({"sub": "user0001", "exp": int(time.time()) + 3600}, SECRET, "HS256")
    headers = [(b"authorization", f"Bearer {token}".encode()), (b"host", b"bench")]
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url="memory://", jwt_secret=SecretStr(SECRET), rate_limit="off"
    )
    taskvault = create_app(settings)
    logging.getLogger("taskvault").setLevel(logging.WARNING)
    floor = floor_app.app
    async with floor.router.lifespan_context(floor), taskvault.router.lifespan_context(taskvault):
        service = taskvault.state.services.tasks
        task = None
        for i in range(50):
            task = await service.create(Principal("user0001"), "me", TaskFields(f"task {i}"))
        assert task is not None
        targets = [
            ("GET one task", f"/api/user0001/tasks/{task.id}"),
            ("GET list (limit=20)", "/api/user0001/tasks?limit=20"),
        ]
        results: dict[str, list[float]] = {}
        for _ in range(3):
            for name, path in targets:
                for label, app in (("floor", floor), ("taskvault", taskvault)):
                    cpu = await cpu_per_request(app, path, headers, count)
                    results.setdefault(f"{name:20s} {label:9s}", []).append(cpu)
    for key, values in results.items():
        print(f"{key} {statistics.median(values):6.0f} us CPU per request")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=2000)
    uvloop.run(main(parser.parse_args().count))
