"""A tier's missing prerequisite: a skip on a developer's machine, a failure in CI.

CI is set up to have them all (``.ci/run``), so there a skip would only hide a
tier that stopped running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest


def missing_prerequisite(reason: str) -> NoReturn:
    """Fail with ``reason`` under ``CI=true``; skip with it elsewhere."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def missing_optional_prerequisite(reason: str) -> NoReturn:
    """Skip with ``reason``, under ``CI=true`` too: for a tier that CI is not set
    up to run (Citus, which Debian does not package), so that its absence is
    said, not failed."""
    pytest.skip(f"{reason} (an optional tier: it skips under CI=true too)")


NPM_CI_TIMEOUT_S = 600


def npm_ci(folder: Path) -> None:
    """Install ``folder``'s packages from its lockfile, failing with npm's words."""
    npm = shutil.which("npm")
    assert npm is not None, f"node is installed but npm is not: cannot install {folder.name}"
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=NPM_CI_TIMEOUT_S,
    )
    assert result.returncode == 0, f"npm ci in {folder} failed:\n{result.stderr[-3000:]}"
