"""``/docs``: Swagger UI served from an installed package, never from a CDN.

The JavaScript and CSS are the Swagger UI distribution that the
``fastapi-offline`` package ships (Swagger UI 5.x, which renders OpenAPI
3.1; 4.x cannot). Only its static files are used: the page itself is
FastAPI's ``get_swagger_ui_html`` pointed at them.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

DOCS_PATH = "/docs"
STATIC_PATH = "/docs/static"

# Kept across reloads of the page: a token pasted in "Authorize" survives.
SWAGGER_UI_PARAMETERS = {"persistAuthorization": True, "displayRequestDuration": True}


def static_directory() -> Path:
    """Where the installed package keeps ``swagger-ui-bundle.js`` and ``swagger-ui.css``."""
    directory = files("fastapi_offline") / "static"
    if not isinstance(directory, Path) or not (directory / "swagger-ui-bundle.js").is_file():
        raise RuntimeError("fastapi-offline's Swagger UI files are not installed as files")
    return directory


def install(app: FastAPI) -> None:
    """Serve Swagger UI at ``/docs`` and its assets under ``/docs/static``.

    Create the app with ``docs_url=None`` and ``redoc_url=None`` so that
    FastAPI's own CDN-backed pages are not served.
    """
    app.mount(STATIC_PATH, StaticFiles(directory=static_directory()), name="docs-static")
    openapi_url = app.openapi_url or "/openapi.json"

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        static = f"{root}{STATIC_PATH}"
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{static}/swagger-ui-bundle.js",
            swagger_css_url=f"{static}/swagger-ui.css",
            swagger_favicon_url=f"{static}/favicon.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    app.add_api_route(
        DOCS_PATH,
        swagger_ui,
        methods=["GET"],
        include_in_schema=False,
        response_class=HTMLResponse,
    )
