"""Request headers the task routes read directly: If-Match, If-None-Match, Idempotency-Key.

Read from the request rather than declared as FastAPI ``Header`` parameters,
each of which costs a validation step on every request; ``openapi_parameter``
documents them all the same.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError

IDEMPOTENCY_KEY = "Idempotency-Key"
_PRINTABLE = re.compile(r"[\x20-\x7e]{1,255}")


def openapi_parameter(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": {"type": "string", **schema},
    }


IF_MATCH = openapi_parameter(
    "If-Match", "Apply only if the task's ETag is one of these (or `*`); else 412."
)
IF_NONE_MATCH = openapi_parameter("If-None-Match", "ETags you hold; a match gives 304.")
IDEMPOTENCY_KEY_PARAMETER = openapi_parameter(
    IDEMPOTENCY_KEY,
    "Retry-safe creation: a repeat with the same key and body returns the first response; "
    "kept at least 24 hours.",
    minLength=1,
    maxLength=255,
    pattern=r"^[\x20-\x7e]+$",
)


def idempotency_key(request: Request) -> str | None:
    """The request's Idempotency-Key: 1 to 255 printable ASCII characters, else a 422."""
    key = request.headers.get(IDEMPOTENCY_KEY)
    if key is None or _PRINTABLE.fullmatch(key):
        return key
    raise RequestValidationError(
        [
            {
                "loc": ("header", IDEMPOTENCY_KEY),
                "msg": "must be 1 to 255 printable ASCII characters",
                "type": "value_error",
            }
        ]
    )
