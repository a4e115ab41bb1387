"""The ``taskvault`` command as a user runs it: real processes, real ports."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from jose import jwt

from entrypoints.secret import load_or_create_secret
from tests.support import SECRET
from tests.support.processes import TASKVAULT, TaskvaultServer, server_env


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TASKVAULT, *args],
        cwd=cwd,
        env=server_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_token_is_signed_with_the_configured_secret(tmp_path: Path) -> None:
    result = _run(["token", "alice", "--ttl", "120"], tmp_path, TASKVAULT_JWT_SECRET=SECRET)
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice"
    assert 110 <= claims["exp"] - time.time() <= 121


def test_fresh_checkout_creates_one_private_secret_and_reuses_it(tmp_path: Path) -> None:
    first = _run(["token", "alice"], tmp_path)
    second = _run(["token", "bob"], tmp_path)
    assert first.returncode == second.returncode == 0
    secret_file = tmp_path / "var" / "jwt-secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = secret_file.read_text().strip()
    assert len(secret) >= 32
    for output, sub in ((first, "alice"), (second, "bob")):
        assert jwt.decode(output.stdout.strip(), secret, algorithms=["HS256"])["sub"] == sub


def test_secret_is_created_once_when_processes_race(tmp_path: Path) -> None:
    path = tmp_path / "var" / "jwt-secret"
    with ThreadPoolExecutor(max_workers=8) as pool:
        secrets = set(pool.map(lambda _: load_or_create_secret(path), range(32)))
    assert len(secrets) == 1
    assert [p.name for p in path.parent.iterdir()] == ["jwt-secret"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TASKVAULT_PORT", "eighty"),
        ("TASKVAULT_DATABASE_URL", "mysql://localhost/db"),
        ("TASKVAULT_JWT_SECRET", "too-short"),
        ("TASKVAULT_LOG_LEVEL", "LOUD"),
    ],
)
def test_bad_setting_stops_with_one_line_naming_it(
    tmp_path: Path, variable: str, value: str
) -> None:
    result = _run(["serve"], tmp_path, **{variable: value})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr
    assert value not in lines[0] or variable == "TASKVAULT_DATABASE_URL"


def test_migrate_creates_the_schema(tmp_path: Path) -> None:
    result = _run(["migrate"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "var" / "taskvault.db").exists()
    again = _run(["migrate"], tmp_path)
    assert again.returncode == 0, again.stderr


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with TaskvaultServer(tmp_path) as server:
        yield server.base


def test_serve_accepts_a_token_from_the_token_command(server: str, tmp_path: Path) -> None:
    token = _run(["token", "alice"], tmp_path).stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}
    created = httpx.post(f"{server}/api/alice/tasks", json={"title": "Try it"}, headers=headers)
    assert created.status_code == 201
    listed = httpx.get(f"{server}/api/me/tasks", headers=headers)
    assert [task["title"] for task in listed.json()] == ["Try it"]
    assert httpx.get(f"{server}/readyz").status_code == 200
    assert stat.S_IMODE((tmp_path / "var" / "jwt-secret").stat().st_mode) == 0o600


def test_a_server_process_keeps_its_startup_objects_out_of_the_collectors_way(
    tmp_path: Path,
) -> None:
    """The ASGI factory freezes what it built and raises the first GC threshold
    (asgi.py): under load, collections had cost 16 % of the CPU."""
    script = (
        "import gc\n"
        "from entrypoints.asgi import app_from_environment\n"
        "before = gc.get_freeze_count()\n"
        "app_from_environment()\n"
        "print(before, gc.get_freeze_count(), gc.get_threshold()[0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=server_env(TASKVAULT_DATABASE_URL="memory://", TASKVAULT_JWT_SECRET=SECRET),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    before, frozen, threshold = map(int, done.stdout.split())
    assert before == 0
    assert frozen > 10_000
    assert threshold == 20_000


@pytest.mark.postgres
@pytest.mark.parametrize("command", [["migrate"], ["serve", "--port", "1"]])
def test_a_role_that_may_not_migrate_is_told_what_to_do(
    app_role_url: str, tmp_path: Path, command: list[str]
) -> None:
    result = _run(
        command, tmp_path, TASKVAULT_DATABASE_URL=app_role_url, TASKVAULT_JWT_SECRET=SECRET
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("taskvault: database role 'taskvault_app_")
    assert lines[-1].endswith(
        "may not migrate the schema: run `taskvault migrate` as the role that owns it, "
        "then `taskvault serve --no-migrate` as this one"
    )
    assert "Traceback" not in result.stderr
