"""RFC 9457 problem details: the single shape of every error response."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, Field
from starlette.responses import Response

from entrypoints.http.jsonbody import dumps

PROBLEM_MEDIA_TYPE = "application/problem+json"


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where the bad value is, e.g. ['body', 'title'].")
    msg: str
    type: str


class Problem(BaseModel):
    """An error, as ``application/problem+json``."""

    type: str = Field(default="about:blank", description="Problem type URI.")
    title: str = Field(description="Short summary of the problem type.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong with this request.")
    instance: str | None = Field(default=None, description="The request path.")
    errors: list[FieldError] | None = Field(
        default=None, description="Validation failures (422 only)."
    )


def problem_response(
    status: int,
    detail: str,
    *,
    instance: str | None = None,
    errors: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = list(errors)
    return Response(
        dumps(body), status_code=status, headers=dict(headers or {}), media_type=PROBLEM_MEDIA_TYPE
    )


def problem_docs(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given error statuses."""
    docs: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        # The app's OpenAPI hook files these under application/problem+json.
        entry: dict[str, Any] = {
            "description": _DESCRIPTIONS.get(status, HTTPStatus(status).phrase),
            "model": Problem,
        }
        if status in _HEADERS:
            entry["headers"] = _HEADERS[status]
        docs[status] = entry
    return docs


_DESCRIPTIONS = {
    400: "Malformed JSON body.",
    401: "Missing or invalid bearer token.",
    403: "The path user is not the token's user.",
    404: "No such task for this user (missing, someone else's, or a malformed id).",
    410: "The sync token is past the retention horizon; sync again without `since`.",
    409: "An identical request is still in flight.",
    412: "If-Match does not match the task's current ETag; nothing changed.",
    413: "Request body over 64 KiB.",
    415: "Request body is not JSON.",
    422: "Validation failure; `errors` lists each problem.",
    424: "Not applied: another operation of the atomic batch failed.",
    429: "Rate limit exceeded.",
    503: "Database unavailable; retry later.",
}

_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": '`Bearer`, or `Bearer error="invalid_token"` for a bad token.',
            "schema": {"type": "string"},
        }
    },
    429: {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
    503: {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
}
