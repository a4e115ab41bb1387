"""Real processes for tests: a free loopback port, and a server that is up or a failure."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import make_token

LOOPBACK = "127.0.0.1"
TASKVAULT = str(Path(sys.executable).with_name("taskvault"))
STARTUP_S = 30.0
LOG_TAIL = 3000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(**overrides: str) -> dict[str, str]:
    """This process's environment without its ``TASKVAULT_*`` settings, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKVAULT_")}
    env.update(overrides)
    return env


def wait_for(condition: str, check: Callable[[], object], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {condition}"
        time.sleep(0.05)


def _answers_200(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    return check


class ServerProcess:
    """``command`` in ``cwd``, waited for until ``ready`` (a URL answering 200, or a
    check) holds; a test failure quoting its log if it exits or times out first.

    stdout and stderr go to ``log``. ``start`` after ``stop`` or ``kill9`` runs the
    same command on the same port with a new log (``serve-1.log``, ...). As a
    context manager it is started on entry and stopped on exit.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        ready: str | Callable[[], bool],
        log: Path,
        port: int,
        timeout_s: float = STARTUP_S,
    ) -> None:
        self.command = list(command)
        self.cwd = cwd
        self.env = dict(env)
        self.port = port
        self.base = f"http://{LOOPBACK}:{port}"
        self.timeout_s = timeout_s
        self.logs: list[Path] = []
        if isinstance(ready, str):
            self._ready, self._not_ready = _answers_200(ready), f"{ready} did not answer 200"
        else:
            self._ready, self._not_ready = ready, "the ready check did not pass"
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The running (or last) process: its pid, signals, exit code."""
        assert self._process is not None, "not started"
        return self._process

    def start(self) -> None:
        assert self._process is None or self._process.poll() is not None, "already running"
        log = self._log
        if self.logs:
            log = log.with_name(f"{log.stem}-{len(self.logs)}{log.suffix}")
        self.logs.append(log)
        # O_APPEND: ``--workers`` children write to the same file, each write at its end.
        with log.open("ab") as sink:
            self._process = subprocess.Popen(
                self.command, cwd=self.cwd, env=self.env, stdout=sink, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + self.timeout_s
        while not self._ready():
            if (code := self._process.poll()) is not None:
                pytest.fail(f"{self.command[0]} exited with {code} before ready:\n{self._tail()}")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{self._not_ready} in {self.timeout_s} s:\n{self._tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it is still there after 15 s."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)

    def kill9(self) -> None:
        """SIGKILL: no shutdown, no flush, no goodbye to the database."""
        self.process.kill()
        self.process.wait(timeout=10)

    def log_text(self) -> str:
        """Every log of every start, in order."""
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def log_lines(self) -> list[str]:
        """The lines logged so far; one still being written is left out while it runs."""
        text = self.log_text()
        if self._process is not None and self._process.poll() is None:
            text = text[: text.rfind("\n") + 1]
        return text.splitlines()

    def _tail(self) -> str:
        return self.log_text()[-LOG_TAIL:]

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class TaskvaultServer(ServerProcess):
    """``taskvault serve --port <free> *args`` in ``cwd`` with ``server_env(**env)``,
    ready once ``/healthz`` answers 200; its log is ``cwd/serve.log``."""

    def __init__(self, cwd: Path, *args: str, **env: str) -> None:
        port = free_port()
        super().__init__(
            [TASKVAULT, "serve", "--port", str(port), *args],
            cwd=cwd,
            env=server_env(**env),
            ready=f"http://{LOOPBACK}:{port}/healthz",
            log=cwd / "serve.log",
            port=port,
        )

    def token(self, sub: str = "alice") -> str:
        """A token signed with the secret the server made under ``var/``."""
        secret = (self.cwd / "var" / "jwt-secret").read_text().strip()
        return make_token(sub, secret=secret)

    def headers(self, sub: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(sub)}"}

    def log_records(self) -> list[dict[str, object]]:
        """The log as the JSON objects taskvault writes, one a line."""
        records = []
        for line in self.log_lines():
            record = orjson.loads(line)
            assert isinstance(record, dict), line
            records.append(record)
        return records

    def server_errors(self) -> list[str]:
        """Log lines of 5xx responses other than 503, and any traceback."""
        return [
            line
            for line in self.log_text().splitlines()
            if re.search(r'"status":\s*5(?!03)\d\d', line) or "Traceback" in line
        ]

    def gauge(self, name: str) -> float:
        text = httpx.get(f"{self.base}/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name:
                    return float(sample.value)
        raise AssertionError(f"{name} not in /metrics")
