"""Typed clients generated from the app's own ``/openapi.json``, as its users make them.

A live ``taskvault serve`` (SQLite in a temporary folder) serves the document;
from it, once per session, openapi-typescript (default options) with
openapi-fetch, @hey-api/openapi-ts, and openapi-python-client generate their
clients, at the versions pinned in ``tests/clients/package-lock.json`` and in
``pyproject.toml``. A small program per client (``programs/``) does a user's
round trip: create, filter, follow ``Link`` pages, ETag/304, a stale
``If-Match``'s 412, toggle with and without a body, PUT, PATCH, bob's 404 and
403, a change-feed poll, an atomic batch. Each must pass ``tsc --strict`` or
``mypy --strict`` without a cast, an ``any`` or an ignore, then run against the
server and pass. Redocly's ``recommended`` rules must find no error.

The generators and checkers run side by side, once: the whole module costs
about the time of the slowest (tsc) plus the programs' runs.

Needs Node.js 20.19 or newer and ``tests/clients``'s packages: without
``node`` the test skips and says so (fails under ``CI=true``). ``.ci/run``
installs the packages (``npm ci``); when they are missing the test skips,
and under ``CI=true`` installs them itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support import make_token
from tests.support.prerequisites import missing_prerequisite, npm_ci
from tests.support.processes import TaskvaultServer

HERE = Path(__file__).resolve().parent
PROGRAMS = HERE / "programs"
NODE_MODULES = HERE / "node_modules"
BIN = NODE_MODULES / ".bin"
HOW_TO_RUN = "(Node.js 20.19 or newer, then `npm ci --prefix tests/clients`)"
NODE_MISSING = f"node not found: the generated-clients test needs it {HOW_TO_RUN}"
PACKAGES_MISSING = f"tests/clients's npm packages are not installed {HOW_TO_RUN}"
GENERATOR_MISSING = "openapi-python-client is not installed (`pip install -e '.[dev]'`)"
STEP_TIMEOUT_S = 180

# What a user of each generator types, from the project's root (README
# "Generate a typed client"); ``{doc}`` is the downloaded document, ``{out}`` the
# client's folder.
OPENAPI_TYPESCRIPT = ["openapi-typescript", "{doc}", "-o", "{out}/schema.d.ts"]
HEY_API = ["openapi-ts", "-i", "{doc}", "-o", "{out}", "-c", "@hey-api/client-fetch"]
PYTHON_CLIENT = ["generate", "--path", "{doc}", "--output-path", "{out}", "--meta", "none"]
PACKAGE = "taskvault_client"
REDOCLY = ["redocly", "lint", "--extends=recommended", "--format=json", "{doc}"]

# Every program prints ``ok <step>`` for each of these, in its own words alike.
STEPS = (
    "create",
    "create: defaults and fields",
    "create: Location",
    "create: ETag",
    "filter",
    "Link pages",
    "ETag: 304",
    "toggle without a body",
    "toggle with a body",
    "stale If-Match: 412",
    "PUT",
    "PATCH",
    "bob: 404",
    "bob: 403",
    "feed: first sync",
    "DELETE",
    "feed: poll",
    "batch: atomic",
    "batch: failed dependency",
)
# What a program must do without: a cast, an ``any``, an ignore of the checker.
ESCAPES = re.compile(r"\bany\b|\bas\s+(?!const\b)[A-Za-z{(]|@ts-|\bcast\(|type:\s*ignore|Any\b")


@dataclass
class Finished:
    """A command that ran: what it said and how it ended."""

    command: list[str]
    returncode: int
    output: str

    def __str__(self) -> str:
        return f"$ {' '.join(self.command)} -> {self.returncode}\n{self.output[-4000:]}"


class Running:
    """A command started in the background; ``wait`` gives its ``Finished``."""

    def __init__(self, command: Sequence[str], cwd: Path, env: Mapping[str, str]) -> None:
        self.command = list(command)
        self.process = subprocess.Popen(
            self.command,
            cwd=cwd,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def wait(self) -> Finished:
        try:
            output, _ = self.process.communicate(timeout=STEP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
        return Finished(self.command, self.process.returncode, output)


def _filled(command: Sequence[str], **values: Path) -> list[str]:
    return [part.format(**{k: str(v) for k, v in values.items()}) for part in command]


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        missing_prerequisite(NODE_MISSING)
    if not (BIN / "tsc").exists() or not (NODE_MODULES / "openapi-fetch").is_dir():
        if os.environ.get("CI", "").lower() != "true":
            pytest.skip(PACKAGES_MISSING)
        npm_ci(HERE)
    return node


def _python_generator() -> str:
    generator = Path(sys.executable).with_name("openapi-python-client")
    if not generator.exists():
        missing_prerequisite(GENERATOR_MISSING)
    return str(generator)


@dataclass
class Generated:
    """The clients, their checks and the programs' runs against one server."""

    work: Path
    document: dict[str, object]
    generators: list[Finished]
    redocly: Finished
    tsc: Finished
    mypy: Finished
    runs: dict[str, Finished]


def _user_env(server: TaskvaultServer, name: str) -> dict[str, str]:
    secret = (server.cwd / "var" / "jwt-secret").read_text().strip()
    return {
        "TASKVAULT_URL": server.base,
        "ALICE_TOKEN": make_token(f"alice-{name}", secret=secret),
        "BOB_TOKEN": make_token(f"bob-{name}", secret=secret),
    }


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Generated]:
    node = _node()
    python_generator = _python_generator()
    work = tmp_path_factory.mktemp("clients")
    (work / "node_modules").symlink_to(NODE_MODULES)
    shutil.copytree(PROGRAMS, work / "programs")
    shutil.copy(HERE / "tsconfig.json", work)
    out = work / "generated"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}"
        f"{os.environ.get('PATH', '')}",
        "NO_COLOR": "1",
    }
    serve_dir = tmp_path_factory.mktemp("serve")
    with TaskvaultServer(serve_dir) as server:
        document = httpx.get(f"{server.base}/openapi.json", timeout=10).json()
        doc = work / "openapi.json"
        doc.write_text(json.dumps(document))

        typescript = Running(
            [
                node,
                str(BIN / OPENAPI_TYPESCRIPT[0]),
                *_filled(OPENAPI_TYPESCRIPT[1:], doc=doc, out=out / "openapi-typescript"),
            ],
            work,
            env,
        )
        hey = Running(
            [node, str(BIN / HEY_API[0]), *_filled(HEY_API[1:], doc=doc, out=out / "hey-api")],
            work,
            env,
        )
        python = Running(
            [python_generator, *_filled(PYTHON_CLIENT, doc=doc, out=out / "python" / PACKAGE)],
            work,
            env,
        )
        redocly = Running([node, str(BIN / REDOCLY[0]), *_filled(REDOCLY[1:], doc=doc)], work, env)

        generators = [typescript.wait(), hey.wait()]
        tsc = Running([node, str(BIN / "tsc"), "-p", "."], work, env)
        generators.append(python.wait())
        # The generated package's own modules are checked but their findings not
        # reported: the program is what must pass --strict, against their types.
        mypy = Running(
            [
                sys.executable,
                "-m",
                "mypy",
                "--strict",
                "--follow-imports=silent",
                "--cache-dir",
                str(work / ".mypy_cache"),
                "programs/python_client.py",
            ],
            work,
            {**env, "MYPYPATH": str(out / "python")},
        )
        checked = tsc.wait(), mypy.wait()
        runs: dict[str, Finished] = {}
        if all(step.returncode == 0 for step in (*generators, *checked)):
            programs = {
                "openapi-fetch": Running(
                    [node, "build/programs/openapi_fetch.js"],
                    work,
                    {**env, **_user_env(server, "openapi-fetch")},
                ),
                "hey-api": Running(
                    [node, "build/programs/hey_api.js"],
                    work,
                    {**env, **_user_env(server, "hey-api")},
                ),
                "openapi-python-client": Running(
                    [sys.executable, "programs/python_client.py"],
                    work,
                    {**env, **_user_env(server, "python"), "PYTHONPATH": str(out / "python")},
                ),
            }
            runs = {name: running.wait() for name, running in programs.items()}
        yield Generated(work, document, generators, redocly.wait(), *checked, runs)


def test_the_generators_run_without_errors_or_warnings(generated: Generated) -> None:
    for step in generated.generators:
        assert step.returncode == 0, step
        assert not re.search(r"warn|error|⚠", step.output, re.IGNORECASE), step


def test_redocly_recommended_rules_find_no_error(generated: Generated) -> None:
    output = generated.redocly.output
    report, _ = json.JSONDecoder().raw_decode(output, output.index("{"))
    errors = [p for p in report["problems"] if p["severity"] == "error"]
    assert errors == [], generated.redocly
    assert report["totals"]["errors"] == 0, generated.redocly
    # The two left: /healthz and /readyz answer no 4xx, so they document none.
    warned = {(p["ruleId"], p["location"][0]["pointer"]) for p in report["problems"]}
    assert warned == {
        ("operation-4xx-response", "#/paths/~1healthz/get/responses"),
        ("operation-4xx-response", "#/paths/~1readyz/get/responses"),
    }, generated.redocly


def _code(text: str) -> Iterator[tuple[int, str]]:
    """The numbered lines of a program that are code, not comments or docstrings."""
    in_docstring = False
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        quotes = stripped.count('"""')
        if in_docstring or quotes:
            in_docstring ^= quotes % 2 == 1
            continue
        if not stripped.startswith(("//", "/*", "*", "#")):
            yield number, stripped


def test_the_programs_need_no_cast_any_or_ignore() -> None:
    programs = sorted(PROGRAMS.iterdir())
    assert [p.name for p in programs] == ["hey_api.ts", "openapi_fetch.ts", "python_client.py"]
    for program in programs:
        found = [(n, line) for n, line in _code(program.read_text()) if ESCAPES.search(line)]
        assert found == [], f"{program.name}: {found}"


def test_the_typescript_programs_pass_tsc_strict(generated: Generated) -> None:
    assert generated.tsc.returncode == 0, generated.tsc


def test_the_python_program_passes_mypy_strict(generated: Generated) -> None:
    assert generated.mypy.returncode == 0, generated.mypy


@pytest.mark.parametrize("client", ["openapi-fetch", "hey-api", "openapi-python-client"])
def test_the_round_trip_passes_against_a_live_taskvault(generated: Generated, client: str) -> None:
    assert generated.runs, "a generator or a type check failed: see the tests above"
    run = generated.runs[client]
    assert run.returncode == 0, run
    done = re.findall(r"^ok (.+)$", run.output, re.MULTILINE)
    assert [step for step in done if step in STEPS] == list(STEPS), run
