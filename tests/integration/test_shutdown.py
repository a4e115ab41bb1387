"""Graceful shutdown of a real ``taskvault serve``: SIGTERM lets in-flight requests finish.

The slow request is a real one: the test holds SQLite's write lock from its own
connection (``BEGIN IMMEDIATE``), so the server's write waits on
``busy_timeout`` exactly as it would behind a long transaction.
"""

from __future__ import annotations

import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from entrypoints.settings import Settings, describe_error
from tests.support.processes import TaskvaultServer, wait_for


@contextmanager
def write_lock(database: Path) -> Iterator[sqlite3.Connection]:
    """SQLite's write lock on ``database``, held by this process until the block ends."""
    conn = sqlite3.connect(database, isolation_level=None, timeout=10)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield conn
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


class Call(threading.Thread):
    """One HTTP request on a thread of its own, on a fresh connection."""

    def __init__(self, method: str, url: str, **kwargs: object) -> None:
        super().__init__(daemon=True)
        self.method, self.url, self.kwargs = method, url, kwargs
        self.response: httpx.Response | None = None
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            with httpx.Client(timeout=20) as client:
                self.response = client.request(self.method, self.url, **self.kwargs)  # type: ignore[arg-type]
        except Exception as error:
            self.error = error


def _slow_patch(server: TaskvaultServer, task_id: str, title: str) -> Call:
    """A PATCH that waits behind the test's write lock; started once it is in flight."""
    call = Call(
        "PATCH",
        f"{server.base}/api/me/tasks/{task_id}",
        json={"title": title},
        headers=server.headers(),
    )
    call.start()
    # In flight: the /metrics request that asks is the other one.
    wait_for(
        "the PATCH is in flight",
        lambda: server.gauge("taskvault_http_requests_in_flight") >= 2,
    )
    return call


def test_sigterm_lets_the_in_flight_request_finish_then_exits_0(tmp_path: Path) -> None:
    database = tmp_path / "var" / "taskvault.db"
    with TaskvaultServer(tmp_path, TASKVAULT_DB_TIMEOUT_S="10") as server:
        created = httpx.post(
            f"{server.base}/api/me/tasks", json={"title": "Before"}, headers=server.headers()
        )
        assert created.status_code == 201
        task_id = created.json()["id"]
        with write_lock(database):
            locked_at = time.monotonic()
            call = _slow_patch(server, task_id, "Finished during shutdown")
            server.process.send_signal(signal.SIGTERM)
            # It stops accepting at once, while the PATCH is still waiting.
            wait_for("the port refuses connections", lambda: refuses_connections(server.port))
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"{server.base}/healthz", timeout=2)
            assert call.is_alive()
            assert server.process.poll() is None
            time.sleep(max(0.0, 2.0 - (time.monotonic() - locked_at)))
        call.join(timeout=15)
        assert call.error is None, repr(call.error)
        assert call.response is not None
        assert call.response.status_code == 200, call.response.text
        assert call.response.json()["title"] == "Finished during shutdown"
        assert server.process.wait(timeout=15) == 0

    records = server.log_records()
    messages = [record["message"] for record in records]
    assert "Shutting down" in messages
    # The lifespan ran to its end: the pool was closed after the PATCH.
    assert "Application shutdown complete." in messages
    patch = [r for r in records if r["message"] == "request" and r["method"] == "PATCH"]
    assert [(r["status"], r["route"]) for r in patch] == [(200, "/api/{user_id}/tasks/{task_id}")]
    # Every connection was closed: SQLite removes the WAL file with the last one.
    assert not database.with_name("taskvault.db-wal").exists()
    with sqlite3.connect(database) as conn:
        titles = conn.execute("SELECT title FROM tasks").fetchall()
    assert titles == [("Finished during shutdown",)]


def test_the_grace_period_bounds_the_wait(tmp_path: Path) -> None:
    """Past the grace period the request waiting for SQLite's lock is cancelled,
    answered 503, and the process exits 0 at once."""
    database = tmp_path / "var" / "taskvault.db"
    grace_s = 1
    env = {"TASKVAULT_SHUTDOWN_GRACE_S": str(grace_s), "TASKVAULT_DB_TIMEOUT_S": "10"}
    with TaskvaultServer(tmp_path, **env) as server:
        created = httpx.post(
            f"{server.base}/api/me/tasks", json={"title": "Before"}, headers=server.headers()
        )
        task_id = created.json()["id"]
        with write_lock(database):
            call = _slow_patch(server, task_id, "Never applied")
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            # Gone while this process still holds the lock the PATCH waits for.
            assert server.process.wait(timeout=grace_s + 8) == 0
            exited_after = time.monotonic() - signalled
        call.join(timeout=10)

    assert grace_s - 0.1 <= exited_after < grace_s + 2, exited_after
    records = server.log_records()
    times = {
        str(record["message"]): datetime.fromisoformat(str(record["time"]))
        for record in records
        if record["logger"] == "uvicorn.error"
    }
    cancelled = "Cancel 1 running task(s), timeout graceful shutdown exceeded"
    waited = (times[cancelled] - times["Shutting down"]).total_seconds()
    assert grace_s - 0.1 <= waited < grace_s + 1, waited
    assert "Application shutdown complete." in times
    # The client is told to retry elsewhere, and nothing changed.
    assert call.response is not None, repr(call.error)
    assert call.response.status_code == 503
    assert call.response.headers["content-type"] == "application/problem+json"
    assert call.response.headers["retry-after"] == "1"
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT title FROM tasks").fetchall() == [("Before",)]


@pytest.mark.parametrize("value", ["-1", "3601", "soon"])
def test_a_bad_grace_period_is_refused_naming_the_variable(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKVAULT_SHUTDOWN_GRACE_S", value)
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None)  # type: ignore[call-arg]
    assert describe_error(raised.value).startswith("invalid setting TASKVAULT_SHUTDOWN_GRACE_S: ")


def test_the_grace_period_defaults_to_10_s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKVAULT_SHUTDOWN_GRACE_S", raising=False)
    assert Settings(_env_file=None).shutdown_grace_s == 10  # type: ignore[call-arg]
    monkeypatch.setenv("TASKVAULT_SHUTDOWN_GRACE_S", "0")
    assert Settings(_env_file=None).shutdown_grace_s == 0  # type: ignore[call-arg]


def test_sigterm_answers_a_waiting_feed_request_at_once_then_exits_0(tmp_path: Path) -> None:
    """A feed request held by ``wait`` ends with a valid 200 as soon as the server is
    told to stop, not after the grace period (10 s by default) has run out."""
    changes = "/api/me/tasks/changes"
    with TaskvaultServer(tmp_path) as server:
        created = httpx.post(
            f"{server.base}/api/me/tasks", json={"title": "Before"}, headers=server.headers()
        )
        assert created.status_code == 201
        first = httpx.get(f"{server.base}{changes}", headers=server.headers()).json()
        assert first["has_more"] is False
        call = Call(
            "GET",
            f"{server.base}{changes}",
            params={"since": first["next"], "wait": "30"},
            headers=server.headers(),
        )
        call.start()
        wait_for(
            "the feed request is in flight",
            lambda: server.gauge("taskvault_http_requests_in_flight") >= 2,
        )
        # Past its first read: it is waiting now.
        time.sleep(0.3)
        assert call.is_alive()
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        call.join(timeout=10)
        answered_after = time.monotonic() - signalled
        assert server.process.wait(timeout=10) == 0
        exited_after = time.monotonic() - signalled

        assert call.error is None, repr(call.error)
        assert call.response is not None
        assert call.response.status_code == 200, call.response.text
        held = call.response.json()
        assert held["changes"] == []
        assert held["has_more"] is False
        assert answered_after < 2, answered_after
        assert exited_after < 3, exited_after

        # The token it answered with is a valid one: the next server goes on from it.
        server.start()
        again = httpx.get(
            f"{server.base}{changes}", params={"since": held["next"]}, headers=server.headers()
        )
        assert again.status_code == 200, again.text
        assert again.json()["changes"] == []
        made = httpx.post(
            f"{server.base}/api/me/tasks", json={"title": "After"}, headers=server.headers()
        )
        later = httpx.get(
            f"{server.base}{changes}", params={"since": held["next"]}, headers=server.headers()
        ).json()
        assert [change["task"]["id"] for change in later["changes"]] == [made.json()["id"]]

    feed = [r for r in server.log_records() if r.get("route") == "/api/{user_id}/tasks/changes"]
    assert [r["status"] for r in feed] == [200, 200, 200, 200]
    print(
        f"\nwaiting feed request answered {answered_after:.3f} s after SIGTERM; "
        f"the process exited 0 after {exited_after:.3f} s"
    )
