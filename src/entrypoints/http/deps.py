"""FastAPI dependencies: who is calling, and whether they may use the path's user.

One dependency per request, with no parameters of its own, on purpose: each
``Depends`` and each parameter costs FastAPI a solve step per request (the
bearer scheme as a sub-dependency and the path's user read twice were 6 %
of a list's CPU). So the app-wide objects come from one ``Services``, the
token is read by calling ``bearer`` rather than depending on it, and the
OpenAPI document states the scheme for the routes that need a caller
(``documents_bearer``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.routing import BaseRoute

from application.errors import InvalidToken, RateLimited
from application.ports import RateLimiter
from application.principal import Principal
from application.task_service import ME, TaskService
from entrypoints.http.cursor import CursorCodec
from entrypoints.http.errors import MissingToken
from entrypoints.http.services import services

bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    description="A JWT from your identity provider; its `sub` is your user id.",
)


def service(request: Request) -> TaskService:
    return services(request).tasks


def cursors(request: Request) -> CursorCodec:
    return services(request).cursors


async def _spend(request: Request, limiter: RateLimiter | None, key: str, cost: int = 1) -> None:
    """Count the request against ``key`` (as ``cost`` requests); past the budget, a 429."""
    if limiter is None:
        return
    status = await limiter.hit(key, cost)
    request.state.rate_limit = status
    if not status.allowed:
        raise RateLimited(status.reset_after_s)


async def spend_more(request: Request, caller: Principal, cost: int) -> None:
    """Count ``cost`` more requests against the caller's budget (a batch's operations)."""
    if cost > 0:
        await _spend(request, services(request).rate_limiter, f"user:{caller.user_id}", cost)


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    """The verified caller.

    A verified request spends its user's budget only; one without a valid
    token spends its client IP's, so a flood of bad tokens from an address
    never locks a real user out.
    """
    app = services(request)
    if credentials is None:
        app.metrics.auth_failed(None)
        await _spend(request, app.rate_limiter, f"ip:{_client_ip(request)}")
        raise MissingToken()
    try:
        verified = await app.token_verifier.verify(credentials.credentials)
    except InvalidToken as error:
        app.metrics.auth_failed(error.reason)
        await _spend(request, app.rate_limiter, f"ip:{_client_ip(request)}")
        raise
    request.state.user_id = verified.user_id
    await _spend(request, app.rate_limiter, f"user:{verified.user_id}")
    return verified


async def caller(request: Request) -> Principal:
    """The caller, once the service has agreed that the path names them.

    Resolved before the body is validated, so a foreign path is a 403
    whatever the body holds.
    """
    principal = await authenticate(request, await bearer(request))
    TaskService.authorize(principal, request.path_params["user_id"])
    return principal


Caller = Annotated[Principal, Depends(caller)]

UserId = Annotated[str, Path(description=f"The token's `sub`, or `{ME}`.")]
"""The path's user, as the routes under ``/api/{user_id}`` document it."""


def needs_caller(route: APIRoute) -> bool:
    """Whether ``route`` answers only a caller with a verified token."""
    return any(dependency.call is caller for dependency in route.dependant.dependencies)


def documents_bearer(schema: dict[str, Any], routes: Iterable[BaseRoute]) -> None:
    """State ``bearer`` in an OpenAPI ``schema``, as a ``Security`` dependency
    would: its scheme, and its requirement on each route that ``needs_caller``."""
    name = bearer.scheme_name
    schema.setdefault("components", {}).setdefault("securitySchemes", {})[name] = (
        bearer.model.model_dump(mode="json", by_alias=True, exclude_none=True)
    )
    paths = schema.get("paths", {})
    for route in routes:
        if isinstance(route, APIRoute) and route.include_in_schema and needs_caller(route):
            for method in route.methods or ():
                paths[route.path_format][method.lower()]["security"] = [{name: []}]
