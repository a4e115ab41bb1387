"""``taskvault serve --workers 2``: two processes on one port, one secret, one migration,
and concurrent writes through both on SQLite without "database is locked"."""

from __future__ import annotations

import asyncio
import os
import re
import stat
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import TaskvaultServer, wait_for

CREATES = 200
CONNECTIONS = 16
CREATED = ("taskvault_http_requests_total", "/api/{user_id}/tasks", "POST", "201")


def worker_pids(parent: int) -> set[int]:
    """The parent's children that run a worker (not multiprocessing's resource tracker)."""
    children: set[int] = set()
    for task in Path(f"/proc/{parent}/task").iterdir():
        children.update(int(pid) for pid in (task / "children").read_text().split())
    workers: set[int] = set()
    for pid in children:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in cmdline:
            workers.add(pid)
    return workers


def started_pids(server: TaskvaultServer) -> set[int]:
    """Worker pids from uvicorn's "Started server process [pid]" log lines."""
    found: set[int] = set()
    for record in server.log_records():
        match = re.fullmatch(r"Started server process \[(\d+)\]", str(record["message"]))
        if match:
            found.add(int(match.group(1)))
    return found


async def _create_all(server: TaskvaultServer) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    headers = server.headers()
    async with httpx.AsyncClient(base_url=server.base, limits=limits, timeout=30) as client:
        return await asyncio.gather(
            *(
                client.post("/api/me/tasks", json={"title": f"task {n}"}, headers=headers)
                for n in range(CREATES)
            )
        )


def _created_count(text: str) -> float:
    name, route, method, status = CREATED
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == name and (labels["route"], labels["method"], labels["status"]) == (
                route,
                method,
                status,
            ):
                return float(sample.value)
    return 0.0


def _listening_inode(port: int) -> str:
    """The inode of the socket listening on 127.0.0.1:``port`` (from /proc/net/tcp)."""
    wanted = f"0100007F:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == wanted and fields[3] == "0A":
            return fields[9]
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _counts_per_worker(server: TaskvaultServer, tries: int = 60) -> set[float]:
    """The create counters seen over fresh connections: each worker keeps its own.

    Every scrape reaches whichever worker accepts it; once the load is over a
    worker's count no longer moves, so two different values that add up to the
    total come from two different processes.
    """
    seen: set[float] = set()
    for _ in range(tries):
        seen.add(_created_count(httpx.get(f"{server.base}/metrics", timeout=5).text))
        if len(seen) == 2 and sum(seen) == CREATES:
            break
    return seen


def test_two_workers_serve_one_port_one_secret_one_database(tmp_path: Path) -> None:
    secret_file = tmp_path / "var" / "jwt-secret"
    assert not secret_file.parent.exists()
    with TaskvaultServer(tmp_path, "--workers", "2") as server:
        wait_for(
            "both workers started",
            lambda: len(started_pids(server)) == 2 and len(worker_pids(server.process.pid)) == 2,
            timeout_s=20,
        )
        workers = worker_pids(server.process.pid)
        assert started_pids(server) == workers
        assert server.process.pid not in workers
        wait_for(
            "both workers finished startup",
            lambda: (
                sum(r["message"] == "Application startup complete." for r in server.log_records())
                == 2
            ),
            timeout_s=20,
        )
        # Made once by the parent before the workers started; they only read it.
        first = secret_file.stat()
        assert stat.S_IMODE(first.st_mode) == 0o600

        started = time.monotonic()
        responses = asyncio.run(_create_all(server))
        elapsed = time.monotonic() - started
        statuses = [response.status_code for response in responses]
        assert statuses == [201] * CREATES, {s: statuses.count(s) for s in set(statuses)}
        ids = {response.json()["id"] for response in responses}
        assert len(ids) == CREATES

        listed = httpx.get(
            f"{server.base}/api/me/tasks", params={"limit": 200}, headers=server.headers()
        )
        assert listed.status_code == 200
        assert {task["id"] for task in listed.json()} == ids
        assert "link" not in listed.headers

        # Both workers accept on the one listening socket. Which of them the
        # kernel hands each connection to is its choice, so this checks the
        # socket, not that each worker happened to serve some of the load.
        listener = _listening_inode(server.port)
        for pid in workers:
            assert listener in _socket_inodes(pid), pid
        counts = _counts_per_worker(server)
        assert sum(counts) == CREATES or CREATES in counts, counts
        assert worker_pids(server.process.pid) == workers  # no worker died and was replaced

        server.process.terminate()
        assert server.process.wait(timeout=15) == 0

    records = server.log_records()
    messages = [str(record["message"]) for record in records]
    assert messages.count("migrations applied") == 1
    assert sum(m.startswith("Finished server process") for m in messages) == 2
    assert not [r for r in records if r["level"] == "error"]
    creates = [
        r for r in records if r.get("method") == "POST" and r["logger"] == "taskvault.access"
    ]
    assert [r["status"] for r in creates] == [201] * CREATES
    # Still the one secret the parent made, and no draft left beside it.
    last = secret_file.stat()
    assert (last.st_ino, last.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    assert sorted(p.name for p in secret_file.parent.iterdir() if "secret" in p.name) == [
        "jwt-secret"
    ]
    print(f"\n{CREATES} creates over {CONNECTIONS} connections in {elapsed:.2f} s: {counts}")
