"""Map every error to problem+json, in one place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from application.errors import (
    ConcurrentUpdate,
    Forbidden,
    IdempotencyKeyReused,
    InvalidQuery,
    InvalidToken,
    PreconditionFailed,
    RateLimited,
    RequestInFlight,
    StorageUnavailable,
)
from domain.errors import InvalidTask, TaskNotFound
from entrypoints.http.problems import problem_response

RETRY_AFTER_S = "2"


class MissingToken(Exception):
    """No ``Authorization: Bearer`` credentials on an authenticated route."""


def _path(request: Request) -> str:
    return request.url.path


def _not_found(request: Request, _: Exception) -> Response:
    return problem_response(404, "Task not found.", instance=_path(request))


def _forbidden(request: Request, _: Exception) -> Response:
    return problem_response(403, "You can only access your own tasks.", instance=_path(request))


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


def _unprocessable(request: Request, errors: list[dict[str, Any]]) -> Response:
    return problem_response(
        422, "The request is not valid.", instance=_path(request), errors=errors
    )


def _precondition_failed(request: Request, _: Exception) -> Response:
    return problem_response(
        412, "If-Match does not match the task's current ETag.", instance=_path(request)
    )


def _concurrent_update(request: Request, _: Exception) -> Response:
    return problem_response(
        409,
        "The task changed repeatedly while this update was applied; retry.",
        instance=_path(request),
        headers={"Retry-After": "1"},
    )


def _in_flight(request: Request, _: Exception) -> Response:
    return problem_response(
        409,
        "A request with this Idempotency-Key is still in flight; retry shortly.",
        instance=_path(request),
        headers={"Retry-After": "1"},
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
    )


def _rate_limited(request: Request, error: Exception) -> Response:
    assert isinstance(error, RateLimited)
    return problem_response(
        429,
        "Too many requests; slow down.",
        instance=_path(request),
        headers={"Retry-After": str(max(1, error.retry_after_s))},
    )


def _missing_token(request: Request, _: Exception) -> Response:
    return problem_response(
        401,
        "A bearer token is required.",
        instance=_path(request),
        headers={"WWW-Authenticate": "Bearer"},
    )


def _invalid_token(request: Request, _: Exception) -> Response:
    return problem_response(
        401,
        "The bearer token is not valid.",
        instance=_path(request),
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def _unavailable(request: Request, _: Exception) -> Response:
    return problem_response(
        503,
        "The database is unavailable; retry later.",
        instance=_path(request),
        headers={"Retry-After": RETRY_AFTER_S},
    )


def _request_validation(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    details = list(error.errors())
    if any(d.get("type") == "json_invalid" for d in details):
        return problem_response(400, "The request body is not valid JSON.", instance=_path(request))
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
            405,
            f"{request.method} is not allowed here.",
            instance=_path(request),
            headers={"Allow": allowed_methods(request)},
        )
    if error.status_code == 404:
        return problem_response(404, "No route matches this path.", instance=_path(request))
    headers = dict(error.headers or {})
    return problem_response(
        error.status_code, str(error.detail), instance=_path(request), headers=headers
    )


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (Starlette names only one route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        route_methods = getattr(route, "methods", None)
        if match is not Match.NONE and route_methods:
            methods.update(route_methods)
    return ", ".join(sorted(methods))


Handler = Callable[[Request, Exception], Response | Awaitable[Response]]

HANDLERS: dict[type[Exception], Handler] = {
    TaskNotFound: _not_found,
    Forbidden: _forbidden,
    InvalidTask: _invalid_task,
    InvalidQuery: _invalid_query,
    PreconditionFailed: _precondition_failed,
    ConcurrentUpdate: _concurrent_update,
    RequestInFlight: _in_flight,
    RateLimited: _rate_limited,
    IdempotencyKeyReused: _key_reused,
    MissingToken: _missing_token,
    InvalidToken: _invalid_token,
    StorageUnavailable: _unavailable,
    RequestValidationError: _request_validation,
    StarletteHTTPException: _http_exception,
}


def install(app: FastAPI) -> None:
    for error_type, handler in HANDLERS.items():
        app.add_exception_handler(error_type, handler)
