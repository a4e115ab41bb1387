"""``create_app``: build the FastAPI application from settings; nothing at import."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.routing import Route

from application.task_service import ME
from entrypoints.container import Container
from entrypoints.http import batch, changes, docs, errors, health, metrics, tasks
from entrypoints.http.deps import documents_bearer
from entrypoints.http.forwarded import ForwardedHeadersMiddleware, parse_networks
from entrypoints.http.jsonbody import JSONResponse
from entrypoints.http.middleware import BodyGuardMiddleware, RequestContextMiddleware
from entrypoints.http.problems import (
    COMPONENT_HEADERS,
    PROBLEM_MEDIA_TYPE,
    problem_types_markdown,
)
from entrypoints.http.services import Services
from entrypoints.http.shutdown import answering_waiters_on_stop
from entrypoints.logging import get_logger
from entrypoints.secret import with_secret
from entrypoints.settings import Settings

log = get_logger("app")

API_DESCRIPTION = f"""\
Every user keeps their own tasks. Send `Authorization: Bearer <JWT>`; the
token's `sub` is your user id, and `{{user_id}}` in each path must be it (or
`{ME}`). Errors are `application/problem+json`, each `type` one of these
(relative URIs, resolved against the request):

{problem_types_markdown()}

A method a path does not take is a `405` with an `Allow` header; a path no
route matches is a `404`."""

OPENAPI_PATH = "/openapi.json"
LICENSE = {"name": "MIT", "identifier": "MIT"}

_HEADERS: dict[str, dict[str, Any]] = {
    **COMPONENT_HEADERS,
    "X-Request-ID": {
        "description": "Yours, if it is 1 to 128 of `A-Z a-z 0-9 . _ -`; else a new one.",
        "schema": {"type": "string"},
    },
    "RateLimit-Limit": {
        "description": "Requests allowed per window (when rate limits are on).",
        "schema": {"type": "integer"},
    },
    "RateLimit-Remaining": {
        "description": "Requests left in this window.",
        "schema": {"type": "integer"},
    },
    "RateLimit-Reset": {
        "description": "Seconds until the window resets.",
        "schema": {"type": "integer"},
    },
}
_EVERY_RESPONSE = ("X-Request-ID",)
_RATE_LIMITED = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


def create_app(settings: Settings | None = None, container: Container | None = None) -> FastAPI:
    """The ASGI app. Tests pass their own settings or an overridden container."""
    if container is None:
        container = Container(settings=with_secret(settings or Settings()))
    resolved: Settings = container.settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            # Inside: what opened before a failing resource is closed again.
            await _settled(container.init_resources())
            services: Services = await _settled(container.services())
            app.state.services = services
            for warning in await services.storage.warnings():
                log.warning(warning)
            with answering_waiters_on_stop(services.signals):
                yield
        finally:
            await _settled(container.shutdown_resources())
            # What was built on the closed resources goes too: a later
            # lifespan of this app builds it again on new ones.
            container.reset_singletons()

    app = FastAPI(
        title="taskvault",
        version="1.0.0",
        description=API_DESCRIPTION,
        default_response_class=JSONResponse,
        lifespan=lifespan,
        docs_url=None,  # /docs is docs.install's: Swagger UI 5 from a package, no CDN
        redoc_url=None,
        # Served below, with ``servers`` naming the root path of each request.
        openapi_url=None,
    )
    app.state.container = container

    # The routes join the app's own table rather than an included router, so
    # that ``app.routes`` lists every APIRoute on any FastAPI version: the
    # 405 Allow header and the isolation tests read that table.
    # The feed's and batch's fixed paths before the tasks' /{task_id}.
    for router in (changes.router, batch.router):
        app.router.routes.extend(router.routes)
    app.router.routes.extend(_concrete_405s(changes.router, batch.router))
    for router in (tasks.router, health.router, metrics.router):
        app.router.routes.extend(router.routes)
    errors.install(app)
    docs.install(app)
    app.add_api_route(OPENAPI_PATH, _openapi_route(app), methods=["GET"], include_in_schema=False)

    app.add_middleware(BodyGuardMiddleware)
    if resolved.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(resolved.cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "If-Match",
                "If-None-Match",
                "Idempotency-Key",
                "X-Request-ID",
            ],
            expose_headers=[
                "ETag",
                "Location",
                "Link",
                "X-Request-ID",
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
                # A 401's challenge and a 405's allowed methods, for clients that branch on them.
                "WWW-Authenticate",
                "Allow",
            ],
        )
    app.add_middleware(RequestContextMiddleware)
    # It times the whole request and sees the 500 that the request-context
    # layer makes of an unhandled error.
    app.add_middleware(metrics.MetricsMiddleware)
    if resolved.trusted_proxies:
        # Outermost: every layer sees the client and host the proxy saw.
        app.add_middleware(
            ForwardedHeadersMiddleware, trusted=parse_networks(resolved.trusted_proxies)
        )
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


# The methods of /tasks/{task_id}: what /tasks/changes and /tasks/batch would
# otherwise pass on to it, as if "changes" named a task.
_TASK_METHODS = frozenset({"GET", "PUT", "PATCH", "DELETE"})


def _concrete_405s(*routers: APIRouter) -> list[Route]:
    """A 405 route at each concrete path for the methods it does not take.

    The document names a task id a UUID, so ``PUT /tasks/changes`` is no task
    route's: it is the feed's, which does not take PUT.
    """
    routes = []
    for router in routers:
        for route in router.routes:
            assert isinstance(route, APIRoute)
            others = sorted(_TASK_METHODS - (route.methods or set()))
            routes.append(Route(route.path, errors.method_not_allowed, methods=others))
    return routes


async def _settled(value: Any) -> Any:
    """``value``, awaited if it is awaitable: a provider whose dependencies are all
    synchronous (a test's override) answers at once, any other with a future."""
    return await value if inspect.isawaitable(value) else value


def _openapi_route(app: FastAPI) -> Any:
    async def openapi(request: Request) -> Response:
        """The document, its server the root path this request came through
        (``taskvault serve --root-path``, or a proxy's), so that a generated
        client's base URL is right behind a proxy too."""
        root = request.scope.get("root_path", "").rstrip("/")
        return JSONResponse({**app.openapi(), "servers": [{"url": root or "/"}]})

    return openapi


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with error bodies filed under problem+json and the
    headers every response carries."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            license_info=LICENSE,
            servers=[{"url": "/"}],
        )
        documents_bearer(schema, app.routes)
        schema["components"]["headers"] = _HEADERS
        for path, path_item in schema.get("paths", {}).items():
            common = _EVERY_RESPONSE + (_RATE_LIMITED if path.startswith("/api/") else ())
            for operation in path_item.values():
                _optional_body_not_null(operation)
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    body = content.get("application/json", {}).get("schema", {})
                    if status[0] in "45" and body.get("$ref", "").endswith("/Problem"):
                        content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
                    headers = response.setdefault("headers", {})
                    for name in common:
                        headers[name] = {"$ref": f"#/components/headers/{name}"}
        app.openapi_schema = schema
    return app.openapi_schema


def _optional_body_not_null(operation: dict[str, Any]) -> None:
    """An optional body (``/complete``'s) as its schema, not ``anyOf [schema, null]``:
    a client leaves it out rather than sends ``null``, and openapi-python-client
    cannot serialize the "left out" of such a union."""
    body = operation.get("requestBody", {})
    if body.get("required"):
        return
    for media in body.get("content", {}).values():
        schema = media.get("schema", {})
        options = [o for o in schema.get("anyOf", ()) if o != {"type": "null"}]
        if len(options) == 1 and len(schema["anyOf"]) == 2:
            del schema["anyOf"]
            schema.update(options[0])
