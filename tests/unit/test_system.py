"""The real clock and the UUIDv7 id generator."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

import adapters.system as system
from adapters.system import SystemClock, UuidV7Generator


def _millis(value: uuid.UUID) -> int:
    """The Unix-epoch millisecond timestamp in the top 48 bits of a UUIDv7."""
    return value.int >> 80


def test_ids_are_version_7_with_the_rfc_variant() -> None:
    generator = UuidV7Generator()
    for _ in range(1_000):
        value = generator.new_id()
        assert value.version == 7
        assert value.variant == uuid.RFC_4122
        assert str(value)[14] == "7"
        assert str(value)[19] in "89ab"


def test_ids_carry_the_current_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    value = UuidV7Generator().new_id()
    after = time.time_ns() // 1_000_000
    assert before <= _millis(value) <= after


def test_ids_are_unique() -> None:
    generator = UuidV7Generator()
    ids = [generator.new_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)


def test_ids_are_time_ordered_across_milliseconds() -> None:
    generator = UuidV7Generator()
    ids = []
    for _ in range(20):
        ids.append(generator.new_id())
        time.sleep(0.002)
    assert ids == sorted(ids)
    assert [str(i) for i in ids] == sorted(str(i) for i in ids)  # as text, too
    assert len({_millis(i) for i in ids}) == len(ids)


@pytest.mark.parametrize(
    ("earlier_random", "later_random"),
    [(b"\xff" * 10, b"\x00" * 10), (b"\x00" * 10, b"\xff" * 10), (b"\x5a" * 10, b"\xa5" * 10)],
    ids=["max-then-min", "min-then-max", "mixed"],
)
def test_a_later_millisecond_always_sorts_after_whatever_the_random_bits(
    monkeypatch: pytest.MonkeyPatch, earlier_random: bytes, later_random: bytes
) -> None:
    generator = UuidV7Generator()
    millis = 1_764_151_200_000  # 2025-11-26T10:00:00Z
    values: list[uuid.UUID] = []
    for offset, random_bytes in ((0, earlier_random), (1, later_random)):
        monkeypatch.setattr(system, "os", SimpleNamespace(urandom=lambda n, b=random_bytes: b[:n]))
        monkeypatch.setattr(
            system, "time", SimpleNamespace(time_ns=lambda o=offset: (millis + o) * 1_000_000)
        )
        values.append(generator.new_id())
    earlier, later = values
    assert (_millis(earlier), _millis(later)) == (millis, millis + 1)
    assert earlier < later
    for value in values:  # the random bits never clobber the version or the variant
        assert value.version == 7
        assert value.variant == uuid.RFC_4122


def test_the_random_bits_fill_the_rest_of_the_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(system, "os", SimpleNamespace(urandom=lambda n: b"\xff" * n))
    monkeypatch.setattr(system, "time", SimpleNamespace(time_ns=lambda: 0))
    ones = UuidV7Generator().new_id()
    # 48 zero bits of time, version 7, 12 random bits, variant 10, 62 random bits.
    assert str(ones) == "00000000-0000-7fff-bfff-ffffffffffff"


def test_system_clock_is_aware_utc_and_current() -> None:
    before = datetime.now(UTC)
    now = SystemClock().now()
    after = datetime.now(UTC)
    assert now.tzinfo is not None
    assert now.utcoffset() == timedelta(0)
    assert before <= now <= after
