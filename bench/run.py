"""Benchmark driver behind ``make bench``: taskvault against two yardsticks, with wrk.

What it does, in order (bench/README.md has the method):

1. Creates a fresh database (PostgreSQL ``taskvault_bench``, dropped and
   recreated; or ``var/bench/taskvault_bench.db`` with ``DB=sqlite``), migrates
   it with ``taskvault migrate`` and seeds 1,000 users x 50 tasks with
   ``bench/seed.py``. On PostgreSQL taskvault runs as an ordinary role
   (``taskvault_bench_app``, so row-level security is active) unless
   ``--no-app-role``.
2. Starts three servers, each uvicorn with one worker, uvloop and httptools:
   taskvault (``taskvault serve``, ``TASKVAULT_RATE_LIMIT=off``, log level
   WARNING), the FastAPI floor (``bench/floor_app.py``) and raw asyncpg
   (``bench/raw_app.py``).
3. Drives them with ``wrk -t2 -c32 -d<BENCH_DURATION>s --latency`` in
   interleaved rounds (round 1: every scenario on every target, then round
   2, ...): GET list, GET one task, POST create, PATCH complete. Bearer
   tokens of the 1,000 users are minted here with the server's HS256 secret.
4. Paced runs: the same scenarios on every target (raw asyncpg only on
   PostgreSQL) with Poisson arrivals at ``BENCH_PACED`` (0.5) of the floor's median
   requests/s in step 3, the same offered rate on every target: latency
   below saturation, where a closed loop's p99 is not set by 32 / throughput.
5. Scale run on a separate database: GET list latency with 1 thousand, 100
   thousand and 1 million rows in the table, and page 1 vs page 500 of a
   user with 10,000 tasks (reached by following the Link cursors).
6. Prints the tables, the server's peak RSS (VmHWM) and the scale figures, and
   writes ``var/bench/results-<db>.json`` and ``var/bench/results-<db>.png``.

Settings come from flags or environment variables (flags win): ``DB``
(postgres | sqlite), ``BENCH_DURATION`` (8), ``BENCH_ROUNDS`` (3),
``BENCH_WARMUP`` (2), ``BENCH_CONNECTIONS`` (32), ``BENCH_THREADS`` (2),
``BENCH_PACED`` (0.5; 0 skips the paced runs),
``BENCH_SCALE`` (1; 0 skips the scale run), ``BENCH_SCALE_ROWS``
(1000,100000,1000000), ``BENCH_SCALE_DURATION`` (2), ``BENCH_APP_ROLE`` (1),
``BENCH_PG_URL`` (postgresql://postgres@127.0.0.1:5432/postgres, a superuser).
``TASKVAULT_DB_POOL_SIZE`` and ``TASKVAULT_DB_TIMEOUT_S`` are passed through
to taskvault; every other ``TASKVAULT_*`` variable is replaced or dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import httpx
from jose import jwt

from adapters.sql.tables import metadata

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WRK_SCRIPTS = BENCH / "wrk"
BIN = Path(sys.executable).parent

SCENARIOS = ("list", "get", "create", "complete")
SCENARIO_LABELS = {
    "list": "GET list (limit=20)",
    "get": "GET one task",
    "create": "POST create",
    "complete": "PATCH /complete",
}
TARGETS = ("taskvault", "baseline", "floor", "raw")
TARGET_LABELS = {
    "taskvault": "taskvault",
    "baseline": "before",
    "floor": "FastAPI floor",
    "raw": "raw asyncpg",
}
MAIN_DB = "taskvault_bench"
SCALE_DB = "taskvault_bench_scale"
APP_ROLE = "taskvault_bench_app"
APP_TABLES = ", ".join(metadata.tables)
"""Every table of the schema: the app reads and writes them all (the feed's too)."""
USER_PREFIX = "user"
DEEP_PREFIX = "deep"
DEEP_TASKS = 10_000
DEEP_PAGE = 500
PAGE_LIMIT = 20
CREATE_BODY = {"title": "Benchmark task", "priority": "high", "description": "made by wrk"}


_Number = TypeVar("_Number", int, float)


class BenchError(Exception):
    """Stops the benchmark with a message (servers are stopped on the way out)."""


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Options:
    db: str
    duration: int
    rounds: int
    warmup: int
    connections: int
    threads: int
    scale: bool
    scale_rows: tuple[int, ...]
    scale_duration: int
    app_role: bool
    pg_url: str
    users: int
    tasks_per_user: int
    out: Path
    baseline: str
    paced: float


def _env_number(name: str, default: _Number, kind: type[_Number]) -> _Number:
    raw = os.environ.get(name, "").strip()
    try:
        return kind(raw) if raw else default
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise SystemExit(f"run.py: {name} must be {what}, not {raw!r}") from None


def _env_int(name: str, default: int) -> int:
    return _env_number(name, default, int)


def _env_flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    return default if not raw else raw not in {"0", "no", "false", "off"}


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--db", default=os.environ.get("DB", "postgres"))
    parser.add_argument("--duration", type=int, default=_env_int("BENCH_DURATION", 8))
    parser.add_argument("--rounds", type=int, default=_env_int("BENCH_ROUNDS", 3))
    parser.add_argument("--warmup", type=int, default=_env_int("BENCH_WARMUP", 2))
    parser.add_argument("--connections", type=int, default=_env_int("BENCH_CONNECTIONS", 32))
    parser.add_argument("--threads", type=int, default=_env_int("BENCH_THREADS", 2))
    parser.add_argument(
        "--scale",
        action=argparse.BooleanOptionalAction,
        default=_env_flag("BENCH_SCALE", True),
        help="run the scale steps (default on)",
    )
    parser.add_argument(
        "--scale-rows",
        default=os.environ.get("BENCH_SCALE_ROWS", "1000,100000,1000000"),
        help="table sizes of the scale run, comma-separated",
    )
    parser.add_argument("--scale-duration", type=int, default=_env_int("BENCH_SCALE_DURATION", 2))
    parser.add_argument(
        "--app-role",
        action=argparse.BooleanOptionalAction,
        default=_env_flag("BENCH_APP_ROLE", True),
        help=f"PostgreSQL: run taskvault as the ordinary role {APP_ROLE} so that row-level "
        "security applies (default); --no-app-role runs it as the superuser, which RLS skips",
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a superuser's DSN; the bench databases are created beside its database",
    )
    parser.add_argument("--users", type=int, default=_env_int("BENCH_USERS", 1000))
    parser.add_argument("--tasks-per-user", type=int, default=_env_int("BENCH_TASKS", 50))
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument(
        "--baseline",
        default=os.environ.get("BENCH_BASELINE", ""),
        help="a git revision: its taskvault runs as one more target ('before'), on the same "
        "database, so that a change is measured against what it replaces in the same run",
    )
    parser.add_argument(
        "--paced",
        type=float,
        default=_env_number("BENCH_PACED", 0.5, float),
        help="paced runs at this fraction of the floor's requests/s (0 skips them)",
    )
    args = parser.parse_args(argv)
    db = {"postgres": "postgres", "postgresql": "postgres", "pg": "postgres"}.get(
        args.db.lower(), args.db.lower()
    )
    if db not in {"postgres", "sqlite"}:
        parser.error("--db / DB must be postgres or sqlite")
    try:
        scale_rows = tuple(sorted(int(n) for n in args.scale_rows.split(",") if n.strip()))
    except ValueError:
        parser.error("--scale-rows / BENCH_SCALE_ROWS must be comma-separated integers")
    if min(args.duration, args.rounds, args.connections, args.threads, args.users) < 1:
        parser.error("duration, rounds, connections, threads and users must be at least 1")
    if args.tasks_per_user < 1 or args.warmup < 0 or args.scale_duration < 1:
        parser.error("tasks per user and scale duration must be >= 1, warm-up >= 0")
    if not 0 <= args.paced < 1:
        parser.error("--paced / BENCH_PACED must be at least 0 and below 1")
    return Options(
        db=db,
        duration=args.duration,
        rounds=args.rounds,
        warmup=args.warmup,
        connections=args.connections,
        threads=args.threads,
        scale=args.scale,
        scale_rows=scale_rows,
        scale_duration=args.scale_duration,
        app_role=args.app_role,
        pg_url=args.pg_url,
        users=args.users,
        tasks_per_user=args.tasks_per_user,
        out=args.out.resolve(),
        baseline=args.baseline,
        paced=args.paced,
    )


# --------------------------------------------------------------------------- helpers


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def dsn(base: str, *, database: str, user: str | None = None, password: str | None = None) -> str:
    """``base`` with another database (and optionally another user), as postgresql://."""
    parts = urlsplit(base)
    host = parts.hostname or "127.0.0.1"
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    login: str | None
    secret: str | None
    if user:
        login, secret = quote(user, safe=""), quote(password, safe="") if password else None
    else:
        login, secret = parts.username, parts.password  # still percent-encoded
    if login:
        netloc = f"{login}:{secret}@{netloc}" if secret else f"{login}@{netloc}"
    return urlunsplit(("postgresql", netloc, "/" + database, parts.query, ""))


def sqlalchemy_url(postgres_dsn: str) -> str:
    return "postgresql+asyncpg://" + postgres_dsn.removeprefix("postgresql://")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(cmd: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run a command to completion; its output on failure."""
    proc = subprocess.run(  # noqa: S603 (our own argument lists)
        list(cmd), env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip()[-2000:]
        raise BenchError(f"{Path(cmd[0]).name} {cmd[1]} failed ({proc.returncode}):\n{tail}")
    return proc.stdout + proc.stderr


def median(values: Iterable[float]) -> float:
    items = list(values)
    return statistics.median(items) if items else float("nan")


def status_line(path: Path) -> dict[str, int]:
    """VmHWM / VmRSS of a process from /proc, in KiB."""
    found: dict[str, int] = {}
    for line in path.read_text().splitlines():
        name, _, value = line.partition(":")
        if name in {"VmHWM", "VmRSS"}:
            found[name] = int(value.split()[0])
    return found


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def process_cpu_s(pid: int) -> float:
    """User plus system CPU seconds of a process, from /proc/<pid>/stat."""
    # Fields after the command name, which may hold spaces: utime and stime
    # are the 14th and 15th of the line.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_s() -> float:
    """CPU seconds of every PostgreSQL process on this machine (0 without any)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == "postgres":
                total += process_cpu_s(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return total


# --------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: dict[str, int] = field(default_factory=dict)
    server_cpu_us: float = float("nan")
    """CPU of the server process per request during the run."""
    postgres_cpu_us: float = float("nan")
    """CPU of all PostgreSQL processes on this machine per request during the run."""

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values())


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def parse_wrk(text: str) -> WrkResult:
    """The figures of one ``wrk --latency`` report."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    total = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", text, re.M)
    if rps is None or total is None:
        raise BenchError(f"cannot read wrk's report:\n{text[-1500:]}")
    percentiles = {
        int(pct): float(value) * _UNITS_MS[unit]
        for pct, value, unit in re.findall(
            r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)", text, re.M
        )
    }
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    socket_errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, sockets.groups()), strict=True))
        if sockets
        else {}
    )
    nan = float("nan")
    return WrkResult(
        rps=float(rps.group(1)),
        p50_ms=percentiles.get(50, nan),
        p75_ms=percentiles.get(75, nan),
        p90_ms=percentiles.get(90, nan),
        p99_ms=percentiles.get(99, nan),
        requests=int(total.group(1)),
        seconds=float(total.group(2)) * _UNITS_MS[total.group(3)] / 1000,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=socket_errors,
    )


def wrk(
    url: str,
    *,
    threads: int,
    connections: int,
    duration: int,
    script: Path | None = None,
    script_args: Sequence[str] = (),
    headers: Sequence[str] = (),
) -> WrkResult:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"]
    for header in headers:
        cmd += ["-H", header]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd.append(url)
    if script_args:
        cmd += ["--", *script_args]
    proc = subprocess.run(  # noqa: S603
        cmd, capture_output=True, text=True, timeout=duration + 120, check=False
    )
    if proc.returncode != 0:
        raise BenchError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()[-1500:]}")
    return parse_wrk(proc.stdout)


# --------------------------------------------------------------------------- servers


class Server:
    """One server process we started, with its log under var/bench/logs/."""

    def __init__(
        self, name: str, cmd: list[str], env: dict[str, str], port: int, logs: Path
    ) -> None:
        self.name = name
        self.cmd = cmd
        self.env = env
        self.port = port
        self.log_path = logs / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, cwd: Path) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log_file:
            self.proc = subprocess.Popen(  # noqa: S603
                self.cmd, env=self.env, cwd=cwd, stdout=log_file, stderr=subprocess.STDOUT
            )

    def wait_ready(self, path: str, headers: dict[str, str] | None = None) -> None:
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise BenchError(f"{self.name} exited at start:\n{self.log_tail()}")
                try:
                    # Any answer will do: the smoke checks judge the status codes.
                    client.get(self.url + path, headers=headers)
                    return
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        raise BenchError(f"{self.name} did not answer within 60 s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def loaded_modules(self) -> dict[str, bool]:
        """Whether uvloop's and httptools' extension modules are mapped in the process."""
        maps = Path(f"/proc/{self.pid}/maps").read_text()
        return {"uvloop": "/uvloop/" in maps, "httptools": "/httptools/" in maps}

    def memory_kib(self) -> dict[str, int]:
        return status_line(Path(f"/proc/{self.pid}/status"))

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def uvicorn_cmd(app: str, port: int) -> list[str]:
    return [
        str(BIN / "python"),
        "-m",
        "uvicorn",
        "--app-dir",
        str(BENCH),
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--log-level",
        "warning",
        "--no-access-log",
    ]


# --------------------------------------------------------------------------- databases


async def _pg_admin(admin_dsn: str, statements: Sequence[str]) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def pg_recreate(admin_dsn: str, database: str) -> None:
    asyncio.run(
        _pg_admin(
            admin_dsn,
            [f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)', f'CREATE DATABASE "{database}"'],
        )
    )


def pg_drop(admin_dsn: str, database: str) -> None:
    asyncio.run(_pg_admin(admin_dsn, [f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)']))


def pg_app_role(admin_dsn: str, password: str) -> None:
    """The ordinary login role taskvault runs as: no superuser, no BYPASSRLS."""
    literal = password.replace("'", "''")
    asyncio.run(
        _pg_admin(
            admin_dsn,
            [
                f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') "
                f"THEN CREATE ROLE {APP_ROLE} LOGIN; END IF; END $$",
                f"ALTER ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE "
                f"PASSWORD '{literal}'",
            ],
        )
    )


APP_TABLES = ", ".join(metadata.tables)
"""Every table of the schema: taskvault reads and writes them all."""


def pg_grant(database_dsn: str) -> None:
    asyncio.run(
        _pg_admin(
            database_dsn,
            [
                f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}",
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON {APP_TABLES} TO {APP_ROLE}",
            ],
        )
    )


async def _pg_status(admin_dsn: str) -> tuple[str, int, int]:
    conn = await asyncpg.connect(admin_dsn)
    try:
        version = await conn.fetchval("SHOW server_version")
        limit = await conn.fetchval("SELECT current_setting('max_connections')::int")
        used = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        )
        return str(version), int(limit), int(used)
    finally:
        await conn.close()


def pg_status(admin_dsn: str) -> tuple[str, int, int]:
    """Server version, max_connections, client connections open now."""
    return asyncio.run(_pg_status(admin_dsn))


def remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)


@dataclass
class Database:
    """A bench database: where to migrate and seed it, and how taskvault connects."""

    kind: str  # "postgres" or "sqlite"
    admin_url: str  # seeding / migrations (superuser on PostgreSQL)
    app_url: str  # what taskvault connects with
    role: str  # the database role taskvault runs as ("" on SQLite)


class Harness:
    def __init__(self, options: Options) -> None:
        self.o = options
        self.out = options.out
        self.logs = self.out / "logs"
        self.secret = secrets.token_urlsafe(48)
        self.role_password = secrets.token_urlsafe(24)
        self.servers: list[Server] = []
        self.notes: list[str] = []
        self.pg_ok = False
        self.ids: dict[str, dict[str, list[str]]] = {}  # db kind -> user -> task ids

    # ------------------------------------------------------------------ setup

    def tool_env(self, database_url: str) -> dict[str, str]:
        """The environment of ``taskvault`` commands: ours, not the caller's settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKVAULT_")}
        for name in ("TASKVAULT_DB_POOL_SIZE", "TASKVAULT_DB_TIMEOUT_S"):
            if name in os.environ:
                env[name] = os.environ[name]
        env.update(
            TASKVAULT_DATABASE_URL=database_url,
            TASKVAULT_JWT_SECRET=self.secret,
            TASKVAULT_RATE_LIMIT="off",
            TASKVAULT_LOG_LEVEL="WARNING",
        )
        return env

    def prepare(self, name: str, kind: str) -> Database:
        """A fresh, migrated, empty database called ``name``."""
        if kind == "sqlite":
            path = self.out / f"{name}.db"
            remove_sqlite(path)
            url = f"sqlite+aiosqlite:///{path}"
            db = Database("sqlite", url, url, "")
        else:
            admin = dsn(self.o.pg_url, database=name)
            pg_recreate(self.o.pg_url, name)
            if self.o.app_role:
                pg_app_role(self.o.pg_url, self.role_password)
                app = dsn(self.o.pg_url, database=name, user=APP_ROLE, password=self.role_password)
                role = APP_ROLE
            else:
                app, role = admin, urlsplit(self.o.pg_url).username or "postgres"
            db = Database("postgres", sqlalchemy_url(admin), sqlalchemy_url(app), role)
        run([str(BIN / "taskvault"), "migrate"], env=self.tool_env(db.admin_url), cwd=self.out)
        if kind == "postgres" and self.o.app_role:
            pg_grant(dsn(self.o.pg_url, database=name))
        return db

    def seed(self, db: Database, *args: str) -> None:
        cmd = [str(BIN / "python"), str(BENCH / "seed.py"), args[0]]
        cmd += ["--database-url", db.admin_url, *args[1:]]
        shown = " ".join(["bench/seed.py", args[0], "--database-url", "<db>", *args[1:]])
        started = time.perf_counter()
        run(cmd, cwd=ROOT)
        log(f"seeded: {shown} ({time.perf_counter() - started:.1f} s)")

    def seed_main(self, db: Database) -> Path:
        lua = self.out / f"tasks-{db.kind}.lua"
        self.seed(
            db,
            "users",
            "--prefix",
            USER_PREFIX,
            "--count",
            str(self.o.users),
            "--tasks",
            str(self.o.tasks_per_user),
            "--lua-out",
            str(lua),
        )
        self.ids[db.kind] = read_task_ids(lua)
        return lua

    def mint_tokens(self, users: Iterable[str]) -> dict[str, str]:
        now = int(time.time())
        return {
            user: jwt.encode(
                {"sub": user, "iat": now, "exp": now + 12 * 3600}, self.secret, algorithm="HS256"
            )
            for user in users
        }

    def start(self, server: Server, ready_path: str, headers: dict[str, str] | None) -> Server:
        self.servers.append(server)
        server.start(self.out)
        server.wait_ready(ready_path, headers)
        return server

    def start_taskvault(self, name: str, db: Database, source: Path | None = None) -> Server:
        """``taskvault serve``; ``source``: with the packages of another checkout."""
        port = free_port()
        cmd = [str(BIN / "taskvault"), "serve", "--no-migrate", "--host", "127.0.0.1"]
        cmd += ["--port", str(port), "--workers", "1"]
        env = self.tool_env(db.app_url)
        if source is not None:
            # Ahead of the editable install's path entry: its modules are imported instead.
            env["PYTHONPATH"] = str(source)
        server = Server(name, cmd, env, port, self.logs)
        return self.start(server, "/healthz", None)

    def baseline_source(self, revision: str) -> Path:
        """``src/`` of ``revision``, exported under the output folder."""
        sha = run(["git", "rev-parse", "--verify", f"{revision}^{{commit}}"], cwd=ROOT).strip()
        folder = self.out / f"baseline-{sha[:12]}"
        if not (folder / "src").is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            tarball = folder / "src.tar"
            run(["git", "archive", "--output", str(tarball), sha, "src"], cwd=ROOT)
            run(["tar", "-xf", str(tarball), "-C", str(folder)])
            tarball.unlink()
        log(f"baseline: taskvault at {revision} ({sha[:12]}) from {folder / 'src'}")
        return folder / "src"

    def stop_all(self) -> None:
        for server in reversed(self.servers):
            server.stop()

    # ------------------------------------------------------------------ checks

    def smoke(self, target: str, server: Server, user: str, token: str, task_id: str) -> None:
        """One request per scenario, before wrk: a wrong setup must not pass as a result."""
        auth = {"Authorization": f"Bearer {token}"}
        base = f"{server.url}/api/{user}/tasks"
        with httpx.Client(timeout=10, headers=auth) as client:
            checks = [
                ("list", client.get(base, params={"limit": PAGE_LIMIT}), 200),
                ("get", client.get(f"{base}/{task_id}"), 200),
                ("create", client.post(base, json=CREATE_BODY), 201),
                ("complete", client.patch(f"{base}/{task_id}/complete"), 200),
                ("complete", client.patch(f"{base}/{task_id}/complete"), 200),
            ]
        for scenario, response, expected in checks:
            if response.status_code != expected:
                raise BenchError(
                    f"{target} {scenario}: HTTP {response.status_code}, expected {expected}: "
                    f"{response.text[:300]}"
                )
        listed = checks[0][1].json()
        if not isinstance(listed, list) or len(listed) != PAGE_LIMIT:
            raise BenchError(f"{target} list: expected {PAGE_LIMIT} tasks, got {listed!r:.200}")

    # ------------------------------------------------------------------ main rounds

    def rounds(
        self,
        servers: dict[str, Server],
        task_files: dict[str, Path],
        tokens: Path,
        rates: dict[str, float] | None = None,
    ) -> dict[str, dict[str, list[WrkResult]]]:
        """Interleaved rounds: a closed loop, or with ``rates`` each scenario at that
        offered rate, the same on every target (the paced runs, with no warm-up)."""
        if rates is None:
            targets = servers
        else:
            # Raw asyncpg shows PostgreSQL's own tail; beside SQLite it would measure another store.
            targets = {
                t: s for t, s in servers.items() if not (t == "raw" and self.o.db == "sqlite")
            }
        results: dict[str, dict[str, list[WrkResult]]] = {
            s: {t: [] for t in targets} for s in SCENARIOS
        }
        for number in range(1, self.o.rounds + 1):
            for scenario in SCENARIOS:
                pacing: list[str] = []
                label = "round"
                if rates is not None:
                    # The scripts pace each wrk thread alone: a Poisson stream of this mean gap.
                    pacing = [f"{self.o.threads * 1000 / rates[scenario]:.3f}"]
                    label = f"paced at {rates[scenario]:7.1f} req/s,"
                for target, server in targets.items():
                    kwargs: dict[str, Any] = {
                        "threads": self.o.threads,
                        "connections": self.o.connections,
                        "script": WRK_SCRIPTS / f"{scenario}.lua",
                        "script_args": [str(tokens), str(task_files[target]), *pacing],
                    }
                    if rates is None and number == 1 and self.o.warmup > 0:
                        wrk(server.url, duration=self.o.warmup, **kwargs)
                    server_s, postgres_s = process_cpu_s(server.pid), postgres_cpu_s()
                    result = wrk(server.url, duration=self.o.duration, **kwargs)
                    if result.requests:
                        result.server_cpu_us = (
                            (process_cpu_s(server.pid) - server_s) / result.requests * 1e6
                        )
                        result.postgres_cpu_us = (
                            (postgres_cpu_s() - postgres_s) / result.requests * 1e6
                        )
                    results[scenario][target].append(result)
                    log(
                        f"{label} {number}/{self.o.rounds} {scenario:<8} {target:<9} "
                        f"{result.rps:9.1f} req/s  p50 {result.p50_ms:7.2f} ms  "
                        f"p99 {result.p99_ms:7.2f} ms  non-2xx {result.non_2xx}  "
                        f"socket errors {result.errors}"
                    )
        return results

    # ------------------------------------------------------------------ scale

    def scale(self) -> tuple[dict[str, Any], Server, Database]:
        kind = self.o.db
        log(f"scale run on a separate database ({SCALE_DB})")
        db = self.prepare(SCALE_DB, kind)
        self.seed(db, "users", "--prefix", USER_PREFIX, "--count", "1", "--tasks", "50")
        server = self.start_taskvault("taskvault-scale", db)
        user = f"{USER_PREFIX}0000"
        deep = f"{DEEP_PREFIX}0000"
        tokens = self.mint_tokens([user, deep])
        steps: list[dict[str, Any]] = []
        for rows in self.o.scale_rows:
            self.seed(db, "fill", "--total-rows", str(rows))
            url = f"{server.url}/api/{user}/tasks?limit={PAGE_LIMIT}"
            step = self._latency(url, tokens[user])
            step["rows"] = rows
            steps.append(step)
            log(
                f"scale: {rows:>9,} rows  GET list p50 {step['p50_ms']:.2f} ms  "
                f"p99 {step['p99_ms']:.2f} ms"
            )
        self.seed(db, "users", "--prefix", DEEP_PREFIX, "--count", "1", "--tasks", str(DEEP_TASKS))
        first = f"{server.url}/api/{deep}/tasks?limit={PAGE_LIMIT}"
        chase_started = time.perf_counter()
        deep_url, pages, last_items = follow_cursors(first, tokens[deep], DEEP_PAGE)
        chase_s = time.perf_counter() - chase_started
        if pages != DEEP_PAGE or last_items != PAGE_LIMIT:
            raise BenchError(f"cursor chain ended at page {pages} with {last_items} items")
        page_runs: dict[str, list[dict[str, Any]]] = {"page_1": [], f"page_{DEEP_PAGE}": []}
        for _ in range(self.o.rounds):
            for name, url in (("page_1", first), (f"page_{DEEP_PAGE}", deep_url)):
                page_runs[name].append(self._latency(url, tokens[deep], repeat=1))
        pages_summary = {
            name: {
                "p50_ms": median(r["p50_ms"] for r in runs),
                "p99_ms": median(r["p99_ms"] for r in runs),
                "rps": median(r["rps"] for r in runs),
                "non_2xx": sum(r["non_2xx"] for r in runs),
                "socket_errors": sum(r["socket_errors"] for r in runs),
                "rounds": runs,
            }
            for name, runs in page_runs.items()
        }
        total_rows = self.o.scale_rows[-1] + DEEP_TASKS if self.o.scale_rows else DEEP_TASKS
        log(
            f"scale: {deep} ({DEEP_TASKS} tasks, table ~{total_rows:,} rows): page 1 p50 "
            f"{pages_summary['page_1']['p50_ms']:.2f} ms, page {DEEP_PAGE} p50 "
            f"{pages_summary[f'page_{DEEP_PAGE}']['p50_ms']:.2f} ms "
            f"(chain of {pages} pages followed in {chase_s:.1f} s)"
        )
        report = {
            "database": SCALE_DB if kind == "postgres" else f"{SCALE_DB}.db",
            "method": f"wrk -t1 -c1 -d{self.o.scale_duration}s --latency after a 1 s warm-up; "
            f"median of {self.o.rounds} runs",
            "list_by_rows": steps,
            "deep_user": {
                "user": deep,
                "tasks": DEEP_TASKS,
                "table_rows": total_rows,
                "page_url_depth": pages,
                "chain_seconds": round(chase_s, 2),
                **pages_summary,
            },
            "notes": [],
        }
        return report, server, db

    def _latency(self, url: str, token: str, repeat: int | None = None) -> dict[str, Any]:
        headers = [f"Authorization: Bearer {token}"]
        wrk(url, threads=1, connections=1, duration=1, headers=headers)
        runs = [
            wrk(url, threads=1, connections=1, duration=self.o.scale_duration, headers=headers)
            for _ in range(repeat or self.o.rounds)
        ]
        return {
            "p50_ms": median(r.p50_ms for r in runs),
            "p99_ms": median(r.p99_ms for r in runs),
            "rps": median(r.rps for r in runs),
            "requests": sum(r.requests for r in runs),
            "non_2xx": sum(r.non_2xx for r in runs),
            "socket_errors": sum(r.errors for r in runs),
        }


def read_task_ids(lua: Path) -> dict[str, list[str]]:
    """User -> task ids from a Lua file written by ``seed.py users --lua-out``."""
    ids: dict[str, list[str]] = {}
    for match in re.finditer(r'\{"([^"]+)", \{([^}]*)\}\}', lua.read_text()):
        ids[match.group(1)] = re.findall(r'"([0-9a-f-]{36})"', match.group(2))
    return ids


def write_tokens(path: Path, tokens: dict[str, str]) -> None:
    lines = [
        "-- Generated by bench/run.py: bearer tokens, HS256 with this run's secret.",
        "return {",
    ]
    lines += [f'  ["{user}"] = "{token}",' for user, token in tokens.items()]
    path.write_text("\n".join([*lines, "}"]) + "\n")
    path.chmod(0o600)


def follow_cursors(first: str, token: str, depth: int) -> tuple[str, int, int]:
    """The URL of page ``depth`` reached through the Link headers, pages seen, its size."""
    url, pages = first, 1
    with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {token}"}) as client:
        while True:
            response = client.get(url)
            if response.status_code != 200:
                raise BenchError(f"page {pages}: HTTP {response.status_code}: {response.text:.200}")
            if pages == depth:
                return url, pages, len(response.json())
            match = re.search(r'<([^>]+)>;\s*rel="next"', response.headers.get("link", ""))
            if match is None:
                return url, pages, len(response.json())
            url, pages = match.group(1), pages + 1


# --------------------------------------------------------------------------- report


def summarize(results: dict[str, dict[str, list[WrkResult]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for scenario, by_target in results.items():
        summary[scenario] = {}
        for target, runs in by_target.items():
            summary[scenario][target] = {
                "rps": median(r.rps for r in runs),
                "p50_ms": median(r.p50_ms for r in runs),
                "p90_ms": median(r.p90_ms for r in runs),
                "p99_ms": median(r.p99_ms for r in runs),
                "server_cpu_us": median(r.server_cpu_us for r in runs),
                "postgres_cpu_us": median(r.postgres_cpu_us for r in runs),
                "requests": sum(r.requests for r in runs),
                "non_2xx": sum(r.non_2xx for r in runs),
                "socket_errors": sum(r.errors for r in runs),
                "rounds": [asdict(r) for r in runs],
            }
        taskvault = summary[scenario].get("taskvault")
        for target, figures in summary[scenario].items():
            if taskvault is not None and target != "taskvault" and figures["rps"] > 0:
                figures["taskvault_ratio"] = taskvault["rps"] / figures["rps"]
    return summary


def format_paced(paced: dict[str, Any]) -> str:
    header = (
        f"{'scenario':<20} {'target':<14} {'offered':>8} {'req/s':>8} {'p50 ms':>8} "
        f"{'p90 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'sock err':>8}"
    )
    lines = [header, "-" * len(header)]
    for scenario in SCENARIOS:
        by_target = paced["results"].get(scenario, {})
        for target, f in by_target.items():
            lines.append(
                f"{SCENARIO_LABELS[scenario]:<20} {TARGET_LABELS[target]:<14} "
                f"{paced['offered_rps'][scenario]:>8.0f} {f['rps']:>8.1f} {f['p50_ms']:>8.2f} "
                f"{f['p90_ms']:>8.2f} {f['p99_ms']:>8.2f} {f['non_2xx']:>8} "
                f"{f['socket_errors']:>8}"
            )
    return "\n".join(lines)


def format_table(summary: dict[str, Any]) -> str:
    header = (
        f"{'scenario':<20} {'target':<14} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'non-2xx':>8} {'sock err':>8} {'requests':>9} {'srv CPU':>8} {'pg CPU':>7}"
        "  taskvault/target"
    )
    lines = [header, "-" * len(header)]
    for scenario in SCENARIOS:
        for target, f in summary.get(scenario, {}).items():
            ratio = f.get("taskvault_ratio")
            lines.append(
                f"{SCENARIO_LABELS[scenario]:<20} {TARGET_LABELS[target]:<14} {f['rps']:>9.1f} "
                f"{f['p50_ms']:>8.2f} {f['p99_ms']:>8.2f} {f['non_2xx']:>8} "
                f"{f['socket_errors']:>8} {f['requests']:>9} {f['server_cpu_us']:>8.0f} "
                f"{f['postgres_cpu_us']:>7.0f}  " + (f"{ratio:.2f}" if ratio is not None else "")
            )
    return "\n".join(lines)


def _failures(figures: dict[str, Any]) -> str:
    non_2xx = figures.get("non_2xx", 0)
    errors = figures.get("socket_errors", 0)
    return f" - FAILED: {non_2xx} non-2xx, {errors} socket errors" if non_2xx or errors else ""


def format_scale(scale: dict[str, Any]) -> str:
    lines = [f"Scale run ({scale['method']}), taskvault only, database {scale['database']}:"]
    for step in scale["list_by_rows"]:
        lines.append(
            f"  GET list (limit=20, user with 50 tasks), {step['rows']:>9,} rows in table: "
            f"p50 {step['p50_ms']:.2f} ms, p99 {step['p99_ms']:.2f} ms, {step['rps']:.0f} req/s"
            + _failures(step)
        )
    deep = scale["deep_user"]
    for name in ("page_1", f"page_{DEEP_PAGE}"):
        figures = deep[name]
        lines.append(
            f"  {deep['user']} ({deep['tasks']:,} tasks), {name.replace('_', ' '):<9}: "
            f"p50 {figures['p50_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms, "
            f"{figures['rps']:.0f} req/s" + _failures(figures)
        )
    lines.append(
        f"  (page {DEEP_PAGE} reached by following {deep['page_url_depth'] - 1} Link cursors "
        f"in {deep['chain_seconds']} s; table ~{deep['table_rows']:,} rows)"
    )
    for note in scale.get("notes", []):
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def without_nan(value: Any) -> Any:
    """``value`` with NaN (a figure wrk did not print) as null, for strict JSON readers."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: without_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_nan(v) for v in value]
    return value


def write_chart(path: Path, report: dict[str, Any]) -> str | None:
    """A PNG bar chart of the results; the reason when it cannot be drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'): no chart"
    summary = report["results"]
    targets = [t for t in TARGETS if t in summary[SCENARIOS[0]]]
    scale = report.get("scale")
    panels = 3 if scale else 2
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.8))
    width = 0.8 / len(targets)
    positions = range(len(SCENARIOS))
    for i, target in enumerate(targets):
        xs = [x + (i - (len(targets) - 1) / 2) * width for x in positions]
        rps = [summary[s][target]["rps"] for s in SCENARIOS]
        p50 = [summary[s][target]["p50_ms"] for s in SCENARIOS]
        p99 = [summary[s][target]["p99_ms"] for s in SCENARIOS]
        axes[0].bar(xs, rps, width, label=TARGET_LABELS[target])
        axes[1].bar(xs, p50, width, label=f"{TARGET_LABELS[target]} p50")
        axes[1].scatter(xs, p99, marker="_", s=200, color="black", zorder=3)
    for ax, title in zip(
        axes[:2], ("requests/s (median)", "latency ms: bars p50, dashes p99"), strict=False
    ):
        ax.set_xticks(list(positions), [SCENARIO_LABELS[s] for s in SCENARIOS], fontsize=8)
        ax.set_title(title)
        ax.legend(fontsize=8)
    axes[1].set_yscale("log")
    if scale:
        labels = [f"list @{step['rows']:,} rows" for step in scale["list_by_rows"]]
        values = [step["p50_ms"] for step in scale["list_by_rows"]]
        labels += ["deep p1", f"deep p{DEEP_PAGE}"]
        values += [scale["deep_user"]["page_1"]["p50_ms"]]
        values += [scale["deep_user"][f"page_{DEEP_PAGE}"]["p50_ms"]]
        axes[2].bar(range(len(values)), values, color="tab:gray")
        axes[2].set_xticks(range(len(values)), labels, fontsize=7, rotation=20)
        axes[2].set_title("scale: taskvault GET list p50 ms (c=1)")
    meta = report["meta"]
    fig.suptitle(
        f"taskvault on {meta['database']} - wrk -t{meta['threads']} -c{meta['connections']} "
        f"-d{meta['duration_s']}s, {meta['rounds']} rounds, {meta['started']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# --------------------------------------------------------------------------- main


def check_tools() -> str:
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed: apt-get update && apt-get install -y wrk")
    missing = []
    for module in ("uvloop", "httptools"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise BenchError(f"{', '.join(missing)} missing: install uvicorn[standard]")
    version = subprocess.run(
        ["wrk", "--version"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    return (version.stdout + version.stderr).splitlines()[0].strip()


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for name in ("uvicorn", "uvloop", "httptools", "fastapi", "pydantic", "asyncpg", "sqlalchemy"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "missing"
    return versions


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    harness = Harness(options)
    # `kill` or a stopped `make`: still stop the servers (SystemExit runs `finally`).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return bench(harness)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    except asyncpg.PostgresError as error:
        print(f"bench: PostgreSQL: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        harness.stop_all()


def bench(h: Harness) -> int:
    o = h.o
    began = time.perf_counter()
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    h.out.mkdir(parents=True, exist_ok=True)
    wrk_version = check_tools()
    load_start = load_average()
    log(f"{wrk_version}; {os.cpu_count()} CPUs; load average {load_start}")

    try:
        pg_version, max_connections, connections = pg_status(o.pg_url)
        h.pg_ok = True
        log(f"PostgreSQL {pg_version}: {connections} of max_connections={max_connections} in use")
        if max_connections - connections < 60:
            h.notes.append(
                f"PostgreSQL had {connections} of {max_connections} connections in use at start; "
                "the servers here may open up to 20 each: 'too many clients' errors are possible"
            )
    except (OSError, asyncpg.PostgresError) as error:
        if o.db == "postgres":
            raise BenchError(f"PostgreSQL at {o.pg_url} does not answer: {error}") from None
        pg_version = "unreachable"
        h.notes.append(f"PostgreSQL unreachable ({type(error).__name__}): raw asyncpg skipped")

    # Databases, seeded through SQL.
    log(f"preparing {MAIN_DB} on {o.db} and seeding {o.users} users x {o.tasks_per_user} tasks")
    main_db = h.prepare(MAIN_DB, o.db)
    task_files = {"taskvault": h.seed_main(main_db), "floor": h.out / f"tasks-{o.db}.lua"}
    pg_db = main_db if o.db == "postgres" else None
    if h.pg_ok and pg_db is None:
        log(f"raw asyncpg needs PostgreSQL: preparing {MAIN_DB} there too")
        pg_db = h.prepare(MAIN_DB, "postgres")
        h.seed_main(pg_db)
    if pg_db is not None:
        task_files["raw"] = h.out / "tasks-postgres.lua"
    users = list(h.ids[o.db])
    tokens = h.mint_tokens(users)
    tokens_file = h.out / "tokens.lua"
    write_tokens(tokens_file, tokens)

    # Servers.
    log("starting taskvault, the FastAPI floor and raw asyncpg")
    servers: dict[str, Server] = {"taskvault": h.start_taskvault("taskvault", main_db)}
    if o.baseline:
        source = h.baseline_source(o.baseline)
        servers["baseline"] = h.start_taskvault("baseline", main_db, source)
        task_files["baseline"] = task_files["taskvault"]
    probe_user = users[0]
    auth = {"Authorization": f"Bearer {tokens[probe_user]}"}
    floor_port = free_port()
    floor_cmd = uvicorn_cmd("floor_app:app", floor_port)
    floor = Server("floor", floor_cmd, dict(os.environ), floor_port, h.logs)
    servers["floor"] = h.start(floor, f"/api/{probe_user}/tasks", auth)
    if pg_db is not None:
        raw_port = free_port()
        raw_env = dict(os.environ, BENCH_RAW_DSN=dsn(o.pg_url, database=MAIN_DB))
        raw = Server("raw", uvicorn_cmd("raw_app:app", raw_port), raw_env, raw_port, h.logs)
        servers["raw"] = h.start(raw, f"/api/{probe_user}/tasks", None)

    loaded = {name: server.loaded_modules() for name, server in servers.items()}
    for name, modules in loaded.items():
        if not all(modules.values()):
            h.notes.append(f"WARNING: {name} runs without {modules} (uvloop/httptools)")
    for target, server in servers.items():
        kind = "postgres" if target == "raw" else o.db
        h.smoke(target, server, probe_user, tokens[probe_user], h.ids[kind][probe_user][0])
    log("smoke checks passed: every scenario answers 2xx on every target")

    # Interleaved rounds.
    results = h.rounds(servers, task_files, tokens_file)
    summary = summarize(results)
    paced: dict[str, Any] | None = None
    if o.paced > 0:
        rates = {s: o.paced * summary[s]["floor"]["rps"] for s in SCENARIOS}
        if not all(rate > 0 for rate in rates.values()):
            raise BenchError(f"the floor answered nothing in some scenario: cannot pace at {rates}")
        paced = {
            "method": f"wrk -t{o.threads} -c{o.connections} -d{o.duration}s --latency, requests "
            f"sent as Poisson arrivals at {o.paced:g} x the floor's median req/s above, the "
            f"same offered rate on every target; medians of {o.rounds} interleaved rounds",
            "fraction_of_floor": o.paced,
            "offered_rps": rates,
            "results": summarize(h.rounds(servers, task_files, tokens_file, rates)),
        }
    else:
        h.notes.append("paced runs skipped (BENCH_PACED=0 / --paced 0)")

    # The yardsticks are done: read their memory and free their database connections
    # (PostgreSQL's max_connections is shared with whatever else runs on this machine).
    memory: dict[str, dict[str, int]] = {}
    for name in ("baseline", "floor", "raw"):
        if name in servers:
            memory[name] = servers[name].memory_kib()
            servers[name].stop()

    scale: dict[str, Any] | None = None
    scale_server: Server | None = None
    scale_db: Database | None = None
    if o.scale and o.scale_rows:
        scale, scale_server, scale_db = h.scale()
        if 1_000_000 not in o.scale_rows:
            scale["notes"].append(
                f"the 1,000,000-row step was skipped: steps are {o.scale_rows} (BENCH_SCALE_ROWS)"
            )
    else:
        h.notes.append("scale run skipped (BENCH_SCALE=0 / --no-scale / empty BENCH_SCALE_ROWS)")

    # Peak RSS after the whole run, read before any server stops.
    taskvault = servers["taskvault"]
    memory = {"taskvault": taskvault.memory_kib(), **memory}
    if scale_server is not None:
        memory["taskvault_scale"] = scale_server.memory_kib()
    if scale is not None and scale_server is not None and scale_db is not None:
        # The scale database is large (about 0.7 GB at 1M rows): drop it once measured.
        scale_server.stop()
        if scale_db.kind == "postgres":
            pg_drop(o.pg_url, SCALE_DB)
        else:
            remove_sqlite(h.out / f"{SCALE_DB}.db")
        scale["notes"].append(f"{SCALE_DB} was dropped after the scale run")

    created = sum(
        figures["requests"] for target, figures in summary["create"].items() if target != "floor"
    )
    role_note = (
        "SQLite: no database roles and no row-level security."
        if o.db == "sqlite"
        else f"taskvault connects as the ordinary role {main_db.role} (NOSUPERUSER NOBYPASSRLS): "
        "row-level security is active, as in production."
        if o.app_role
        else f"taskvault connects as {main_db.role}, a superuser: row-level security does NOT "
        "apply to superusers (or BYPASSRLS roles), so its cost is not measured. "
        "Drop --no-app-role to run as an ordinary role."
    )
    notes = [
        f"taskvault: `taskvault serve --workers 1` (uvicorn, uvloop + httptools: "
        f"{loaded['taskvault']}), TASKVAULT_RATE_LIMIT=off (the default 1200/minute per user "
        "would answer 429), TASKVAULT_LOG_LEVEL=WARNING (no per-request log line)"
        + (
            f", pool TASKVAULT_DB_POOL_SIZE={os.environ.get('TASKVAULT_DB_POOL_SIZE', '10')} "
            "(no overflow)."
            if o.db == "postgres"
            else "."
        ),
        role_note,
        *(
            [
                f"before: taskvault at {o.baseline}, on the same database with the same "
                "settings; taskvault/target in its rows is what the change gains or loses."
            ]
            if "baseline" in servers
            else []
        ),
        "Row-level security does not apply to superusers: the seeder and the raw asyncpg app "
        "connect as the superuser on purpose.",
        "FastAPI floor: same routes, a header dependency and pydantic models; no database, no "
        "JWT, no middleware (canned in-memory data).",
        *(
            [
                "raw asyncpg: bare ASGI + asyncpg pool (10..20) + orjson, one prepared query per "
                "request, no authentication (user from the path), superuser connection (no RLS)"
                + (" - against PostgreSQL even in SQLite mode." if o.db == "sqlite" else ".")
            ]
            if "raw" in servers
            else []
        ),
        "srv CPU / pg CPU: microseconds of CPU per request, of the server process and of all "
        "PostgreSQL processes on this machine, read from /proc around each run (medians); "
        "wrk and the three servers share the machine's CPUs.",
        f"POST create added {created:,} rows during the run (taskvault"
        + (" and raw together" if "raw" in servers else "")
        + "); list reads each user's newest 20 rows, get and complete seeded rows.",
        *h.notes,
    ]
    load_end = load_average()
    report: dict[str, Any] = {
        "meta": {
            "started": started,
            "database": "PostgreSQL " + pg_version if o.db == "postgres" else "SQLite",
            "db": o.db,
            "app_role": o.app_role and o.db == "postgres",
            "taskvault_role": main_db.role,
            "duration_s": o.duration,
            "warmup_s": o.warmup,
            "rounds": o.rounds,
            "threads": o.threads,
            "connections": o.connections,
            "users": o.users,
            "tasks_per_user": o.tasks_per_user,
            "cpus": os.cpu_count(),
            "load_average_start": load_start,
            "load_average_end": load_end,
            "wrk": wrk_version,
            "versions": package_versions(),
            "loaded": loaded,
            "elapsed_s": None,
        },
        "notes": notes,
        "results": summary,
        "paced": paced,
        "memory_kib": memory,
        "scale": scale,
    }
    json_path = h.out / f"results-{o.db}.json"
    png_path = h.out / f"results-{o.db}.png"
    chart_problem = write_chart(png_path, report)
    if chart_problem:
        notes.append(chart_problem)
    report["meta"]["elapsed_s"] = round(time.perf_counter() - began, 1)
    json_path.write_text(json.dumps(without_nan(report), indent=2) + "\n")

    hwm = memory["taskvault"].get("VmHWM", 0)
    print()
    print(
        f"taskvault on {report['meta']['database']}, wrk -t{o.threads} -c{o.connections} "
        f"-d{o.duration}s --latency, {o.rounds} interleaved round(s), medians "
        f"(warm-up {o.warmup} s per target and scenario in round 1)"
    )
    print(format_table(summary))
    print()
    if paced is not None:
        print(f"Paced load below saturation ({paced['method']}):")
        print(format_paced(paced))
        print()
    print(
        f"Peak RSS of the taskvault server (VmHWM, pid {taskvault.pid}, after the whole run): "
        f"{hwm / 1024:.1f} MiB (VmRSS now {memory['taskvault'].get('VmRSS', 0) / 1024:.1f} MiB)"
        + "".join(
            f"; {name} {figures.get('VmHWM', 0) / 1024:.1f} MiB"
            for name, figures in memory.items()
            if name != "taskvault"
        )
    )
    if scale is not None:
        print(format_scale(scale))
    print("Notes:")
    for note in notes:
        print(f"  - {note}")
    print(f"Load average: {load_start} at start, {load_end} at end ({os.cpu_count()} CPUs).")
    written = f"{json_path}" + ("" if chart_problem else f" and {png_path.name}")
    print(f"Wrote {written}; logs in {h.logs}. Took {report['meta']['elapsed_s']:.0f} s.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
