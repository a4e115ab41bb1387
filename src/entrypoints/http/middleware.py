"""Pure ASGI middleware: request ids, response headers, access log, body limits."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from entrypoints import logging as logging_context
from entrypoints.http import problems
from entrypoints.http.problems import problem_response
from entrypoints.logging import get_logger

MAX_BODY_BYTES = 64 * 1024
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_HEADERS = ((b"x-content-type-options", b"nosniff"),)
_API_HEADERS = (*_HEADERS, (b"cache-control", b"private, no-cache"))

access_log = get_logger("access")
error_log = get_logger("error")


class RequestContextMiddleware:
    """Outermost layer: every response gets its headers and one log line.

    It also turns an unhandled exception into a bare 500 problem, logging
    only the error's type: a traceback may hold SQL or values.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _REQUEST_ID.fullmatch(incoming) else _new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        context = logging_context.request_id.set(request_id)
        common = _API_HEADERS if scope["path"].startswith("/api/") else _HEADERS
        rid = request_id.encode()
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                # Appended raw: no response sets these itself, and this runs on
                # every request (MutableHeaders rescans the list per item).
                headers = [*message.get("headers", ()), *common, (b"x-request-id", rid)]
                budget = scope["state"].get("rate_limit")
                if budget is not None:
                    headers += [
                        (b"ratelimit-limit", b"%d" % budget.limit),
                        (b"ratelimit-remaining", b"%d" % budget.remaining),
                        (b"ratelimit-reset", b"%d" % budget.reset_after_s),
                    ]
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except asyncio.CancelledError:
            # Cut off by a shutdown past its grace period: a 503 tells the
            # client to retry elsewhere, where uvicorn would send a bare 500.
            if not response_started:
                response = problem_response(
                    problems.SERVICE_UNAVAILABLE,
                    "The server stopped before the request completed.",
                    instance=scope["path"],
                    headers={"Retry-After": "1"},
                )
                await response(scope, receive, send_with_headers)
            raise
        except Exception as error:
            status = 500
            error_log.error("unhandled error", extra={"error_type": type(error).__name__})
            if not response_started:
                response = problem_response(
                    problems.INTERNAL_ERROR, "Internal server error.", instance=scope["path"]
                )
                await response(scope, receive, send_with_headers)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "route": getattr(scope.get("route"), "path", None),
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                        "user_id": scope["state"].get("user_id"),
                    },
                )
            logging_context.request_id.reset(context)


def _new_request_id() -> str:
    """32 hex digits. Not a secret, so not from os.urandom: a system call per
    request costs more here than the rest of this middleware."""
    return f"{random.getrandbits(128):032x}"


class BodyGuardMiddleware:
    """Refuses bodies over 64 KiB (413) and bodies that are not JSON (415).

    The body is read here, at most 64 KiB of it, and replayed to the app, so
    a chunked upload cannot slip past the size check.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body and not _is_json(_header(scope, b"content-type")):
            response = problem_response(
                problems.UNSUPPORTED_MEDIA_TYPE,
                "The request body must be JSON (Content-Type: application/json).",
                instance=scope["path"],
            )
            await response(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            problems.BODY_TOO_LARGE,
            f"The request body is larger than {self.max_bytes} bytes.",
            instance=scope["path"],
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header (``name`` lower-case)."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
