"""A tier's missing prerequisite: a skip on a developer's machine, a failure in CI.

CI is set up to have them all (``.ci/run``), so there a skip would only hide a
tier that stopped running.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing_prerequisite(reason: str) -> NoReturn:
    """Fail with ``reason`` under ``CI=true``; skip with it elsewhere."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)
