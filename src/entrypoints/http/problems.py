"""RFC 9457 problem details: the single shape of every error response.

Every problem's ``type`` names its kind with a stable relative URI
(``/problems/not-found``), resolved against the request: clients branch on it
rather than on the status, which two kinds may share (409, 422).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, Field
from starlette.responses import Response

from entrypoints.http.jsonbody import dumps

PROBLEM_MEDIA_TYPE = "application/problem+json"


@dataclass(frozen=True)
class ProblemKind:
    """One kind of error: its ``type``, its status, and when it happens."""

    slug: str
    status: int
    when: str

    @property
    def type(self) -> str:
        return f"/problems/{self.slug}"

    @property
    def varname(self) -> str:
        """The enum member name generated clients give it."""
        return self.slug.replace("-", "_").upper()


MALFORMED_JSON = ProblemKind("malformed-json", 400, "The request body is not valid JSON.")
UNAUTHORIZED = ProblemKind(
    "unauthorized",
    401,
    "The bearer token is missing or not valid (`WWW-Authenticate` says which).",
)
FORBIDDEN = ProblemKind("forbidden", 403, "The path user is not the token's user.")
NOT_FOUND = ProblemKind(
    "not-found",
    404,
    "No such task for this user (missing, someone else's, or a malformed id), or no such route.",
)
METHOD_NOT_ALLOWED = ProblemKind(
    "method-not-allowed", 405, "The route does not take this method; `Allow` lists those it takes."
)
REQUEST_IN_FLIGHT = ProblemKind(
    "request-in-flight",
    409,
    "A request with the same `Idempotency-Key` is still in flight; retry after `Retry-After`.",
)
CONCURRENT_UPDATE = ProblemKind(
    "concurrent-update",
    409,
    "The task changed repeatedly while this update was applied; retry after `Retry-After`.",
)
SYNC_TOKEN_EXPIRED = ProblemKind(
    "sync-token-expired",
    410,
    "The feed's `since` is past the retention horizon; sync again without `since`.",
)
PRECONDITION_FAILED = ProblemKind(
    "precondition-failed",
    412,
    "`If-Match` does not match the task's current ETag; nothing changed.",
)
BODY_TOO_LARGE = ProblemKind("body-too-large", 413, "The request body is over 64 KiB.")
UNSUPPORTED_MEDIA_TYPE = ProblemKind("unsupported-media-type", 415, "The request body is not JSON.")
VALIDATION_FAILED = ProblemKind(
    "validation-failed", 422, "A parameter or the body is not valid; `errors` lists each problem."
)
IDEMPOTENCY_KEY_REUSED = ProblemKind(
    "idempotency-key-reused", 422, "The `Idempotency-Key` was already used with another body."
)
FAILED_DEPENDENCY = ProblemKind(
    "failed-dependency",
    424,
    "In an atomic batch: not applied, because another operation failed; nothing changed.",
)
RATE_LIMITED = ProblemKind(
    "rate-limited", 429, "Over the rate limit; retry after `Retry-After` seconds."
)
INTERNAL_ERROR = ProblemKind("internal-error", 500, "An unexpected error; nothing is revealed.")
SERVICE_UNAVAILABLE = ProblemKind(
    "service-unavailable", 503, "The database is unavailable; retry after `Retry-After` seconds."
)

KINDS: tuple[ProblemKind, ...] = (
    MALFORMED_JSON,
    UNAUTHORIZED,
    FORBIDDEN,
    NOT_FOUND,
    METHOD_NOT_ALLOWED,
    REQUEST_IN_FLIGHT,
    CONCURRENT_UPDATE,
    SYNC_TOKEN_EXPIRED,
    PRECONDITION_FAILED,
    BODY_TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE,
    VALIDATION_FAILED,
    IDEMPOTENCY_KEY_REUSED,
    FAILED_DEPENDENCY,
    RATE_LIMITED,
    INTERNAL_ERROR,
    SERVICE_UNAVAILABLE,
)
_BY_STATUS: dict[int, ProblemKind] = {}
for _kind in KINDS:
    _BY_STATUS.setdefault(_kind.status, _kind)


def kind_of_status(status: int) -> ProblemKind | None:
    """The first kind with this status (for an HTTP error raised by the framework)."""
    return _BY_STATUS.get(status)


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where the bad value is, e.g. ['body', 'title'].")
    msg: str
    type: str


class Problem(BaseModel):
    """An error, as ``application/problem+json``."""

    type: str = Field(
        description="The kind of problem: a relative URI, resolved against the request.",
        json_schema_extra={
            "enum": [kind.type for kind in KINDS],
            "x-enum-varnames": [kind.varname for kind in KINDS],
        },
    )
    title: str = Field(description="Short summary of the problem type.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong with this request.")
    instance: str | None = Field(default=None, description="The request path.")
    errors: list[FieldError] | None = Field(
        default=None, description="Validation failures (422 only)."
    )


def problem_response(
    kind: ProblemKind,
    detail: str,
    *,
    instance: str | None = None,
    errors: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": kind.type,
        "title": HTTPStatus(kind.status).phrase,
        "status": kind.status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = list(errors)
    return Response(
        dumps(body),
        status_code=kind.status,
        headers=dict(headers or {}),
        media_type=PROBLEM_MEDIA_TYPE,
    )


_RETRY_AFTER = {
    "Retry-After": {"$ref": "#/components/headers/Retry-After"},
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"$ref": "#/components/headers/WWW-Authenticate"}},
    409: _RETRY_AFTER,
    429: _RETRY_AFTER,
    503: _RETRY_AFTER,
}


def problem_docs(*errors: int | ProblemKind) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given errors, each naming the
    problem types it may carry: a status stands for all its kinds, a kind for
    itself only."""
    by_status: dict[int, list[ProblemKind]] = {}
    for error in errors:
        kinds = (
            [kind for kind in KINDS if kind.status == error] if isinstance(error, int) else [error]
        )
        by_status.setdefault(kinds[0].status, []).extend(kinds)
    docs: dict[int | str, dict[str, Any]] = {}
    for status, kinds in by_status.items():
        # The app's OpenAPI hook files these under application/problem+json.
        entry: dict[str, Any] = {
            "description": " ".join(f"`{kind.type}`: {kind.when}" for kind in kinds),
            "model": Problem,
        }
        if status in _HEADERS:
            entry["headers"] = _HEADERS[status]
        docs[status] = entry
    return docs


COMPONENT_HEADERS: dict[str, dict[str, Any]] = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer"},
    },
    "WWW-Authenticate": {
        "description": '`Bearer`, or `Bearer error="invalid_token"` for a bad token.',
        "schema": {"type": "string"},
    },
}


def problem_types_markdown() -> str:
    """The list of problem types, as the OpenAPI description shows it."""
    rows = [f"| `{kind.type}` | {kind.status} | {kind.when} |" for kind in KINDS]
    return "\n".join(["| type | status | when |", "|---|---|---|", *rows])
