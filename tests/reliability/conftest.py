"""Fault and concurrency tests on real processes and a throwaway PostgreSQL of their own.

They need PostgreSQL's server binaries (initdb, pg_ctl, postgres), found on
PATH or under /usr/lib/postgresql/*/bin, and skip, saying so, without them
(under ``CI=true`` they fail).
Figures (requests, errors by status, recovery times) are printed at the end
of the run under "reliability figures".
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.pgcluster import PgCluster, find_bin_dir, started_cluster
from tests.reliability.support import create_database
from tests.support.prerequisites import missing_prerequisite

_FIGURES: list[str] = []


@pytest.fixture(scope="session")
def pg_bin() -> Path:
    folder = find_bin_dir()
    if folder is None:
        missing_prerequisite(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) are not installed"
        )
    return folder


@pytest.fixture(scope="session")
def pg_cluster(pg_bin: Path) -> Iterator[PgCluster]:
    """A throwaway cluster shared by the tests that do not stop it."""
    cluster = started_cluster(pg_bin)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def own_cluster(pg_bin: Path) -> Iterator[PgCluster]:
    """A throwaway cluster for one test that stops, restarts or freezes it."""
    cluster = started_cluster(pg_bin)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def pg_database(pg_cluster: PgCluster) -> str:
    """A fresh, migrated database on the shared throwaway cluster."""
    name = f"reliability_{uuid.uuid4().hex[:12]}"
    return asyncio.run(create_database(pg_cluster.url(), name))


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Lines a test reports; printed at the end of the run."""
    lines: list[str] = []
    yield lines
    _FIGURES.extend(f"{request.node.name}: {line}" for line in lines)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FIGURES:
        terminalreporter.section("reliability figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)
