"""Prometheus metrics: one registry per app, a pure ASGI middleware, ``GET /metrics``.

Every label has a bounded set of values, whatever clients send:

- ``route``: the matched route's template (``/api/{user_id}/tasks/{task_id}``),
  never the raw path; a request no route matched is ``unmatched``;
- ``method``: the standard methods, anything else ``other``;
- ``status``: the status the app sent; ``499`` (nginx's "client closed
  request") when the client left before any response started;
- auth failures: ``reason`` is ``missing`` or ``invalid``, and ``detail`` a
  coarse class from a fixed list (``AUTH_DETAILS``), never exception text.

Each process has its own registry: with ``taskvault serve --workers N`` every
worker exposes its own numbers, and a scrape of the shared port reaches one of
them (prometheus_client's multiprocess mode is not used).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from fastapi import APIRouter, Request
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from application.errors import TokenFailure
from application.ports import Storage

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNMATCHED = "unmatched"
OTHER_METHOD = "other"
CLIENT_GONE = 499
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

MISSING = "missing"
INVALID = "invalid"
NO_DETAIL = "none"
AUTH_DETAILS = ("expired", "claims", "algorithm", "unknown_key", "malformed", "rejected", "other")
"""Why a token was refused, coarsely. ``rejected`` is python-jose's generic
``JWTError``: a bad signature, an undecodable token or a required claim missing."""

# The one place a TokenFailure becomes a label value; a test checks that
# every member is here, so a new member cannot go uncounted.
DETAIL_OF_FAILURE: dict[TokenFailure, str] = {
    TokenFailure.EXPIRED: "expired",
    TokenFailure.CLAIMS: "claims",
    TokenFailure.ALGORITHM_NOT_ALLOWED: "algorithm",
    TokenFailure.ALGORITHM_KEY_MISMATCH: "algorithm",
    TokenFailure.UNKNOWN_KEY: "unknown_key",
    TokenFailure.UNUSABLE_KEY: "unknown_key",
    TokenFailure.TOO_LONG: "malformed",
    TokenFailure.MALFORMED_HEADER: "malformed",
    TokenFailure.MALFORMED_KID: "malformed",
    TokenFailure.MALFORMED_INPUT: "malformed",
    TokenFailure.REJECTED: "rejected",
    TokenFailure.UNEXPECTED: "other",
}


def auth_detail(reason: TokenFailure) -> str:
    """The coarse class of an ``InvalidToken.reason``: one of ``AUTH_DETAILS``."""
    return DETAIL_OF_FAILURE.get(reason, "other")


class _PoolCollector(Collector):
    """The store's connection pool, read at scrape time."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def collect(self) -> Iterable[Metric]:
        status = self._storage.pool_status()
        size = GaugeMetricFamily(
            "taskvault_db_pool_size", "Connections the database pool keeps (0: no pool)."
        )
        size.add_metric([], status.size)
        in_use = GaugeMetricFamily(
            "taskvault_db_pool_connections_in_use", "Pooled connections lent out right now."
        )
        in_use.add_metric([], status.in_use)
        return [size, in_use]


_Children = tuple[Counter, Histogram]


class Metrics:
    """The app's metrics, in a registry of its own (several apps may share a process)."""

    def __init__(self, storage: Storage) -> None:
        # No ``*_created`` series next to every counter and histogram: they
        # double the output and the text format gives them no meaning. The
        # switch is process-wide in prometheus_client.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        labels = ("route", "method", "status")
        self.requests = Counter(
            "taskvault_http_requests",
            "HTTP requests answered, by route template, method and status.",
            labels,
            registry=self.registry,
        )
        self.duration = Histogram(
            "taskvault_http_request_duration_seconds",
            "Time from request to the end of the response, by route template, method and status.",
            labels,
            buckets=BUCKETS_S,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "taskvault_http_requests_in_flight",
            "HTTP requests being served right now.",
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "taskvault_auth_failures",
            "Requests refused for want of a valid bearer token, by reason and coarse detail.",
            ("reason", "detail"),
            registry=self.registry,
        )
        self.registry.register(_PoolCollector(storage))
        # Label children made once and cached: the hot path does one dict
        # lookup, not a label-tuple lookup in the metric under its lock.
        self._children: dict[tuple[str | None, str, int], _Children] = {}
        self._missing = self.auth_failures.labels(MISSING, NO_DETAIL)
        self._invalid = {
            detail: self.auth_failures.labels(INVALID, detail) for detail in AUTH_DETAILS
        }

    def observe(self, route: object, method: str, status: int, seconds: float) -> None:
        """Count one answered request; ``route`` is ``scope.get("route")``."""
        if method not in METHODS:
            method = OTHER_METHOD
        template = getattr(route, "path", None)
        key = (template, method, status)
        children = self._children.get(key)
        if children is None:
            values = (template if isinstance(template, str) else UNMATCHED, method, str(status))
            children = (self.requests.labels(*values), self.duration.labels(*values))
            self._children[key] = children
        counter, histogram = children
        counter.inc()
        histogram.observe(seconds)

    def auth_failed(self, reason: TokenFailure | None) -> None:
        """Count a refused token; ``reason`` is ``InvalidToken.reason``, None when missing."""
        if reason is None:
            self._missing.inc()
        else:
            self._invalid[auth_detail(reason)].inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Outermost layer: times every HTTP request and counts it once it is answered.

    The app's ``Metrics`` is found through the scope: it is built with the
    app's other services when the app starts, after this layer was added.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = CLIENT_GONE
        started_response = False

        async def send_with_status(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status = message["status"]
                started_response = True
            await send(message)

        metrics: Metrics = scope["app"].state.services.metrics
        metrics.in_flight.inc()
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_status)
        except Exception:
            if not started_response:
                status = 500
            raise
        finally:
            metrics.in_flight.dec()
            metrics.observe(
                scope.get("route"), scope["method"], status, time.perf_counter() - started
            )


router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text format; no token (keep the port off the public internet)."""
    metrics: Metrics = request.app.state.services.metrics
    return Response(metrics.render(), media_type=CONTENT_TYPE)
