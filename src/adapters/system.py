"""The real clock and id generator."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class UuidV7Generator:
    """RFC 9562 version 7 UUIDs: a millisecond timestamp and 74 random bits.

    Time-ordered, so new rows land at the end of the primary-key index, and
    random in the rest, so an id says nothing about how many tasks exist.
    """

    def new_id(self) -> uuid.UUID:
        millis = time.time_ns() // 1_000_000
        rand = int.from_bytes(os.urandom(10), "big")
        value = (millis & 0xFFFF_FFFF_FFFF) << 80
        value |= 0x7 << 76
        value |= ((rand >> 62) & 0xFFF) << 64
        value |= 0b10 << 62
        value |= rand & 0x3FFF_FFFF_FFFF_FFFF
        return uuid.UUID(int=value)
