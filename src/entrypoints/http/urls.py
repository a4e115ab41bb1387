"""The absolute URLs responses hand out (``Location``, ``Link``), on the scheme
and host the client used: behind a trusted proxy, the public ones
(``ForwardedHeadersMiddleware``).

Starlette's ``request.url`` still decides scheme, host and path (it validates
the Host header); what is built on it here is plain string work, where its
``replace`` and ``include_query_params`` split, parse and re-encode the whole
URL: a fifth of a list request's own time when a page has a next one.
"""

from __future__ import annotations

from urllib.parse import quote, unquote_plus

from starlette.requests import Request

CURSOR = "cursor"


def with_path(request: Request, path: str) -> str:
    """The URL of ``path`` (absolute, already encoded) on the request's origin."""
    parts = request.url.components
    return f"{parts.scheme}://{parts.netloc}{path}" if parts.netloc else path


def with_cursor(request: Request, cursor: str) -> str:
    """The request's URL with its ``cursor`` parameter, if any, replaced by ``cursor``.

    The other parameters are kept as the client wrote them.
    """
    base = str(request.url).partition("?")[0]
    query = request.scope.get("query_string", b"").decode("latin-1")
    kept = [
        pair for pair in query.split("&") if pair and unquote_plus(pair.partition("=")[0]) != CURSOR
    ]
    kept.append(f"{CURSOR}={quote(cursor, safe='')}")
    return f"{base}?{'&'.join(kept)}"
