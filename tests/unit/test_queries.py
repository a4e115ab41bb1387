"""A page request refuses a page size outside the application's bounds."""

from __future__ import annotations

import pytest

from application.errors import InvalidQuery
from application.queries import (
    PAGE_SIZE_DEFAULT,
    PAGE_SIZE_MAX,
    PAGE_SIZE_MIN,
    SEARCH_MAX_LENGTH,
    TaskFilter,
    TaskQuery,
)


def test_the_bounds_are_the_documented_ones() -> None:
    assert (PAGE_SIZE_MIN, PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX) == (1, 50, 200)
    assert SEARCH_MAX_LENGTH == 200


def test_the_default_page_size() -> None:
    assert TaskQuery().limit == PAGE_SIZE_DEFAULT


@pytest.mark.parametrize("limit", [PAGE_SIZE_MIN, 2, PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX])
def test_a_page_size_within_the_bounds_is_kept(limit: int) -> None:
    assert TaskQuery(limit=limit).limit == limit


@pytest.mark.parametrize("limit", [-1, 0, PAGE_SIZE_MAX + 1, 1000])
def test_a_page_size_outside_the_bounds_is_refused(limit: int) -> None:
    with pytest.raises(InvalidQuery) as caught:
        TaskQuery(limit=limit)
    assert caught.value.field == "limit"
    assert caught.value.message == f"must be {PAGE_SIZE_MIN} to {PAGE_SIZE_MAX}"


def test_search_text_longer_than_the_bound_is_refused() -> None:
    assert TaskFilter(text="a" * SEARCH_MAX_LENGTH).text == "a" * SEARCH_MAX_LENGTH
    with pytest.raises(InvalidQuery) as caught:
        TaskFilter(text="a" * (SEARCH_MAX_LENGTH + 1))
    assert caught.value.field == "q"
