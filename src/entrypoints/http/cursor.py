"""Opaque, signed tokens (list cursors, the feed's sync tokens): a client can
hold one but cannot forge or edit it, nor use another user's."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from application.errors import InvalidQuery
from application.queries import Position, Sort, SortValue
from application.sync import ChangeNumber, SyncPoint

MAX_CURSOR_LENGTH = 1024
_MAC_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class _Sealer:
    """Signs a JSON payload for one user under a key of its own purpose, so a
    token of one kind can never double as another."""

    def __init__(self, secret: bytes, purpose: bytes) -> None:
        self._key = hmac.new(secret, purpose, hashlib.sha256).digest()

    def seal(self, user_id: str, value: Any) -> str:
        payload = orjson.dumps(value)
        return f"{_b64(payload)}.{_b64(self._mac(user_id, payload))}"

    def open(self, token: str, user_id: str) -> Any:
        """The value sealed in ``token`` for ``user_id``; ``ValueError`` if none is."""
        try:
            if len(token) > MAX_CURSOR_LENGTH:
                raise ValueError("too long")
            encoded_payload, encoded_mac = token.split(".")
            payload = _unb64(encoded_payload)
            if not hmac.compare_digest(_unb64(encoded_mac), self._mac(user_id, payload)):
                raise ValueError("bad signature")
            return orjson.loads(payload)
        except (binascii.Error, orjson.JSONDecodeError, TypeError) as error:
            raise ValueError("malformed") from error

    def _mac(self, user_id: str, payload: bytes) -> bytes:
        message = user_id.encode("utf-8", "surrogatepass") + b"\0" + payload
        return hmac.digest(self._key, message, "sha256")[:_MAC_BYTES]


class CursorCodec:
    """Encodes where a page ended, bound to the user and the sort order."""

    def __init__(self, secret: bytes) -> None:
        self._sealer = _Sealer(secret, b"taskvault list cursor v1")

    def encode(self, user_id: str, sort: Sort, position: Position) -> str:
        return self._sealer.seal(
            user_id, [sort.field.value, sort.descending, *_pack(position.value), position.id.hex]
        )

    def decode(self, cursor: str, user_id: str, sort: Sort) -> Position:
        try:
            field, descending, kind, raw_value, raw_id = self._sealer.open(cursor, user_id)
        except (ValueError, TypeError):
            raise InvalidQuery("cursor", "is not a cursor this service issued") from None
        if field != sort.field.value or descending != sort.descending:
            raise InvalidQuery("cursor", "was issued for another sort order")
        return Position(value=_unpack(kind, raw_value), id=uuid.UUID(hex=raw_id))


class SyncTokenCodec:
    """The change feed's ``next``: where a client's copy stands, bound to the user."""

    def __init__(self, secret: bytes) -> None:
        self._sealer = _Sealer(secret, b"taskvault sync token v1")

    def encode(self, user_id: str, point: SyncPoint) -> str:
        after = point.after
        as_of = point.as_of.astimezone(UTC).isoformat()
        return self._sealer.seal(user_id, [after.seq, after.task_id.hex, as_of])

    def decode(self, token: str, user_id: str) -> SyncPoint:
        """The point, or the same 422 for every token that is not this user's."""
        try:
            seq, raw_id, as_of = self._sealer.open(token, user_id)
            return SyncPoint(
                ChangeNumber(int(seq), uuid.UUID(hex=raw_id)), datetime.fromisoformat(as_of)
            )
        except (ValueError, TypeError):
            raise InvalidQuery("since", "is not a sync token this service issued") from None


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
