"""``create_app``: build the FastAPI application from settings; nothing at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.middleware.cors import CORSMiddleware

from application.task_service import ME
from entrypoints.container import Container
from entrypoints.http import docs, errors, health, metrics, tasks
from entrypoints.http.cursor import CursorCodec
from entrypoints.http.jsonbody import JSONResponse
from entrypoints.http.middleware import BodyGuardMiddleware, RequestContextMiddleware
from entrypoints.http.problems import PROBLEM_MEDIA_TYPE
from entrypoints.logging import get_logger
from entrypoints.secret import with_secret
from entrypoints.settings import Settings

log = get_logger("app")

API_DESCRIPTION = f"""\
Every user keeps their own tasks. Send `Authorization: Bearer <JWT>`; the
token's `sub` is your user id, and `{{user_id}}` in each path must be it (or
`{ME}`). Errors are `application/problem+json`."""


def create_app(settings: Settings | None = None, container: Container | None = None) -> FastAPI:
    """The ASGI app. Tests pass their own settings or an overridden container."""
    if container is None:
        container = Container(settings=with_secret(settings or Settings()))
    resolved: Settings = container.settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for warning in await app.state.storage.warnings():
            log.warning(warning)
        yield
        await app.state.storage.close()
        if app.state.rate_limiter is not None:
            await app.state.rate_limiter.close()

    app = FastAPI(
        title="taskvault",
        version="1.0.0",
        description=API_DESCRIPTION,
        default_response_class=JSONResponse,
        lifespan=lifespan,
        docs_url=None,  # /docs is docs.install's: Swagger UI 5 from a package, no CDN
        redoc_url=None,
    )
    app.state.container = container
    # Resolved once here so the hot path reads attributes, not providers.
    app.state.storage = container.storage()
    app.state.task_service = container.task_service()
    app.state.token_verifier = container.token_verifier()
    app.state.rate_limiter = container.rate_limiter()
    app.state.metrics = metrics.Metrics(app.state.storage)
    assert resolved.jwt_secret is not None
    app.state.cursor_codec = CursorCodec(resolved.jwt_secret.get_secret_value().encode())

    # The routes join the app's own table rather than an included router, so
    # that ``app.routes`` lists every APIRoute on any FastAPI version: the
    # 405 Allow header and the isolation tests read that table.
    for router in (tasks.router, health.router, metrics.router):
        app.router.routes.extend(router.routes)
    errors.install(app)
    docs.install(app)

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
            ],
        )
    app.add_middleware(RequestContextMiddleware)
    # Outermost: it times the whole request and sees the 500 that the
    # request-context layer makes of an unhandled error.
    app.add_middleware(metrics.MetricsMiddleware, metrics=app.state.metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with error bodies filed under problem+json."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    body = content.get("application/json", {}).get("schema", {})
                    if status[0] in "45" and body.get("$ref", "").endswith("/Problem"):
                        content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
        app.openapi_schema = schema
    return app.openapi_schema
