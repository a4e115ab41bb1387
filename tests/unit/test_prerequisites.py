"""``missing_prerequisite``: a skip outside CI, a failure under ``CI=true``."""

from __future__ import annotations

import pytest

from tests.support.prerequisites import missing_prerequisite


@pytest.mark.parametrize("value", ["true", "TRUE"])
def test_it_fails_under_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match=r"^no frobnicator$"):
        missing_prerequisite("no frobnicator")


@pytest.mark.parametrize("value", [None, "", "false", "1"])
def test_it_skips_elsewhere(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception, match=r"^no frobnicator$"):
        missing_prerequisite("no frobnicator")
