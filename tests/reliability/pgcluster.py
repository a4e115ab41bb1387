"""A throwaway PostgreSQL cluster of a test's own: initdb, start, stop, restart.

The shared cluster is never touched: each ``PgCluster`` lives in a fresh
temporary folder, listens on 127.0.0.1 only, on a free port, and is stopped
and removed by ``close()``. initdb refuses to run as root, so under root the
binaries run as the ``postgres`` OS user (``runuser``) in a folder it owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.processes import free_port

BIN_NAMES = ("initdb", "pg_ctl", "postgres")
OS_USER = "postgres"


def find_bin_dir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres, or None when absent."""
    candidates: list[Path] = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for folder in candidates:
        if all((folder / name).is_file() for name in BIN_NAMES):
            return folder
    return None


def _run_as_prefix() -> list[str]:
    """How to run the binaries: as ourselves, or as ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return []
    pwd.getpwnam(OS_USER)  # KeyError when there is no such user
    runuser = shutil.which("runuser")
    if runuser is None:
        raise FileNotFoundError("running as root needs runuser to start PostgreSQL")
    return [runuser, "-u", OS_USER, "--"]


class PgCluster:
    """One cluster in a temporary folder; superuser ``postgres``, trust auth, loopback only."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        self._prefix = _run_as_prefix()
        self.root = Path(tempfile.mkdtemp(prefix="taskvault-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        if self._prefix:
            entry = pwd.getpwnam(OS_USER)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        os.chmod(self.root, 0o700)

    def _pg(self, name: str, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            [*self._prefix, str(self.bin_dir / name), *args],
            check=True,
            capture_output=True,
            timeout=timeout,
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        self._pg(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "--no-instructions",
            "-E",
            "UTF8",
            "--locale=C",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.root} "
            "-c max_connections=60 -c shared_buffers=32MB -c fsync=off"
        )
        self._pg(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "30",
            "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def close(self) -> None:
        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def started_cluster(bin_dir: Path, *, attempts: int = 3) -> PgCluster:
    """initdb and start, retrying on another port if the chosen one was taken meanwhile."""
    last: Exception | None = None
    for _ in range(attempts):
        cluster = PgCluster(bin_dir)
        try:
            cluster.init()
            cluster.start()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            cluster.close()
            last = error
            time.sleep(0.5)
            continue
        return cluster
    assert last is not None
    raise last
