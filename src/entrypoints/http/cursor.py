"""Opaque, signed list cursors: a client can hold one but cannot forge or edit it."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from datetime import datetime
from typing import Any

import orjson

from application.errors import InvalidQuery
from application.queries import Position, Sort, SortValue

MAX_CURSOR_LENGTH = 1024
_MAC_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    """Encodes where a page ended, bound to the user and the sort order."""

    def __init__(self, secret: bytes) -> None:
        # A key of its own, so a cursor can never double as anything else.
        self._key = hmac.new(secret, b"taskvault list cursor v1", hashlib.sha256).digest()

    def encode(self, user_id: str, sort: Sort, position: Position) -> str:
        payload = orjson.dumps(
            [sort.field.value, sort.descending, *_pack(position.value), position.id.hex]
        )
        return f"{_b64(payload)}.{_b64(self._mac(user_id, payload))}"

    def decode(self, cursor: str, user_id: str, sort: Sort) -> Position:
        try:
            if len(cursor) > MAX_CURSOR_LENGTH:
                raise ValueError("too long")
            encoded_payload, encoded_mac = cursor.split(".")
            payload = _unb64(encoded_payload)
            if not hmac.compare_digest(_unb64(encoded_mac), self._mac(user_id, payload)):
                raise ValueError("bad signature")
            field, descending, kind, raw_value, raw_id = orjson.loads(payload)
        except (ValueError, binascii.Error, orjson.JSONDecodeError, TypeError):
            raise InvalidQuery("cursor", "is not a cursor this service issued") from None
        if field != sort.field.value or descending != sort.descending:
            raise InvalidQuery("cursor", "was issued for another sort order")
        return Position(value=_unpack(kind, raw_value), id=uuid.UUID(hex=raw_id))

    def _mac(self, user_id: str, payload: bytes) -> bytes:
        message = user_id.encode("utf-8", "surrogatepass") + b"\0" + payload
        return hmac.digest(self._key, message, "sha256")[:_MAC_BYTES]


def _pack(value: SortValue) -> tuple[str, Any]:
    if value is None:
        return "n", None
    if isinstance(value, datetime):
        return "t", value.isoformat()
    if isinstance(value, int):
        return "i", value
    return "s", value


def _unpack(kind: str, raw: Any) -> SortValue:
    # Only signed payloads reach here, so these are values we wrote ourselves.
    if kind == "t":
        return datetime.fromisoformat(raw)
    return None if kind == "n" else raw
