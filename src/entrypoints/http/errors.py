"""Map every error to problem+json, in one place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from application.errors import (
    ConcurrentUpdate,
    FailedDependency,
    Forbidden,
    IdempotencyKeyReused,
    InvalidQuery,
    InvalidToken,
    PreconditionFailed,
    RateLimited,
    RequestInFlight,
    StorageUnavailable,
    SyncTokenExpired,
)
from domain.errors import InvalidTask, TaskNotFound
from entrypoints.http import problems
from entrypoints.http.problems import ProblemKind, kind_of_status, problem_response

RETRY_AFTER_S = "2"


class MissingToken(Exception):
    """No ``Authorization: Bearer`` credentials on an authenticated route."""


def _path(request: Request) -> str:
    return request.url.path


Handler = Callable[[Request, Exception], Response | Awaitable[Response]]


def _fixed(kind: ProblemKind, detail: str, headers: dict[str, str] | None = None) -> Handler:
    """A handler whose answer depends only on the error's type."""

    def handler(request: Request, _: Exception) -> Response:
        return problem_response(kind, detail, instance=_path(request), headers=headers)

    return handler


def _invalid_task(request: Request, error: Exception) -> Response:
    assert isinstance(error, InvalidTask)
    return _unprocessable(
        request, [{"loc": ["body", error.field], "msg": error.message, "type": "value_error"}]
    )


def _invalid_query(request: Request, error: Exception) -> Response:
    assert isinstance(error, InvalidQuery)
    return _unprocessable(
        request, [{"loc": ["query", error.field], "msg": error.message, "type": "value_error"}]
    )


def _unprocessable(
    request: Request,
    errors: list[dict[str, Any]],
    kind: ProblemKind = problems.VALIDATION_FAILED,
) -> Response:
    return problem_response(
        kind, "The request is not valid.", instance=_path(request), errors=errors
    )


def _key_reused(request: Request, _: Exception) -> Response:
    return _unprocessable(
        request,
        [
            {
                "loc": ["header", "Idempotency-Key"],
                "msg": "was already used with a different request body",
                "type": "idempotency_key_reused",
            }
        ],
        problems.IDEMPOTENCY_KEY_REUSED,
    )


def _rate_limited(request: Request, error: Exception) -> Response:
    assert isinstance(error, RateLimited)
    return problem_response(
        problems.RATE_LIMITED,
        "Too many requests; slow down.",
        instance=_path(request),
        headers={"Retry-After": str(max(1, error.retry_after_s))},
    )


def _request_validation(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    details = list(error.errors())
    if any(d.get("type") == "json_invalid" for d in details):
        return problem_response(
            problems.MALFORMED_JSON, "The request body is not valid JSON.", instance=_path(request)
        )
    errors = [
        {
            "loc": list(d.get("loc", ())),
            "msg": str(d.get("msg", "")),
            "type": str(d.get("type", "")),
        }
        for d in details
    ]
    return _unprocessable(request, errors)


def _http_exception(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    if error.status_code == 405:
        return problem_response(
            problems.METHOD_NOT_ALLOWED,
            f"{request.method} is not allowed here.",
            instance=_path(request),
            headers={"Allow": allowed_methods(request)},
        )
    if error.status_code == 404:
        return problem_response(
            problems.NOT_FOUND, "No route matches this path.", instance=_path(request)
        )
    # Only the 400 of a body FastAPI cannot parse gets here: no route raises others.
    kind = kind_of_status(error.status_code) or problems.MALFORMED_JSON
    headers = dict(error.headers or {})
    return problem_response(kind, str(error.detail), instance=_path(request), headers=headers)


async def method_not_allowed(request: Request) -> Response:
    """The 405 of a concrete path for a method only its templated sibling takes."""
    raise StarletteHTTPException(405)


def allowed_methods(request: Request) -> str:
    """The methods of the routes at this path (Starlette names only one route's).

    A concrete path before a templated one, as OpenAPI matches them:
    ``/tasks/batch`` is the batch resource, not a task called ``batch``.
    """
    by_parameters: dict[int, set[str]] = {}
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        route_methods = getattr(route, "methods", None)
        answers = getattr(route, "endpoint", None) is not method_not_allowed
        if match is not Match.NONE and route_methods and answers:
            parameters = len(getattr(route, "param_convertors", {}))
            by_parameters.setdefault(parameters, set()).update(route_methods)
    if not by_parameters:
        return ""
    return ", ".join(sorted(by_parameters[min(by_parameters)]))


HANDLERS: dict[type[Exception], Handler] = {
    TaskNotFound: _fixed(problems.NOT_FOUND, "Task not found."),
    Forbidden: _fixed(problems.FORBIDDEN, "You can only access your own tasks."),
    PreconditionFailed: _fixed(
        problems.PRECONDITION_FAILED, "If-Match does not match the task's current ETag."
    ),
    ConcurrentUpdate: _fixed(
        problems.CONCURRENT_UPDATE,
        "The task changed repeatedly while this update was applied; retry.",
        {"Retry-After": "1"},
    ),
    RequestInFlight: _fixed(
        problems.REQUEST_IN_FLIGHT,
        "A request with this Idempotency-Key is still in flight; retry shortly.",
        {"Retry-After": "1"},
    ),
    MissingToken: _fixed(
        problems.UNAUTHORIZED, "A bearer token is required.", {"WWW-Authenticate": "Bearer"}
    ),
    InvalidToken: _fixed(
        problems.UNAUTHORIZED,
        "The bearer token is not valid.",
        {"WWW-Authenticate": 'Bearer error="invalid_token"'},
    ),
    StorageUnavailable: _fixed(
        problems.SERVICE_UNAVAILABLE,
        "The database is unavailable; retry later.",
        {"Retry-After": RETRY_AFTER_S},
    ),
    SyncTokenExpired: _fixed(
        problems.SYNC_TOKEN_EXPIRED,
        "The sync token is past the retention horizon; sync again without since.",
    ),
    FailedDependency: _fixed(
        problems.FAILED_DEPENDENCY,
        "Not applied: another operation of this atomic batch failed; nothing changed.",
    ),
    InvalidTask: _invalid_task,
    InvalidQuery: _invalid_query,
    RateLimited: _rate_limited,
    IdempotencyKeyReused: _key_reused,
    RequestValidationError: _request_validation,
    StarletteHTTPException: _http_exception,
}


async def problem_of(request: Request, error: Exception) -> tuple[int, dict[str, Any]]:
    """The status and problem body that ``error`` makes on ``request``, as a
    route raising it would answer."""
    handler = next(HANDLERS[kind] for kind in type(error).__mro__ if kind in HANDLERS)
    response = handler(request, error)
    if not isinstance(response, Response):
        response = await response
    return response.status_code, orjson.loads(response.body)


def install(app: FastAPI) -> None:
    for error_type, handler in HANDLERS.items():
        app.add_exception_handler(error_type, handler)
