"""``missing_prerequisite``: a skip outside CI, a failure under ``CI=true``;
``missing_optional_prerequisite``: a skip everywhere."""

from __future__ import annotations

import pytest

from tests.support.prerequisites import missing_optional_prerequisite, missing_prerequisite


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


@pytest.mark.parametrize("value", [None, "true"])
def test_an_optional_tier_skips_under_ci_too(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception, match=r"^no frobnicator \(an optional tier"):
        missing_optional_prerequisite("no frobnicator")
