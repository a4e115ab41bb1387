"""``GET /metrics``: Prometheus text, labels bounded by route template, on every store."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from adapters.memory import MemoryStorage
from adapters.sqlite import SqliteStorage
from application.errors import TokenFailure
from entrypoints.http.app import create_app
from entrypoints.http.metrics import AUTH_DETAILS, DETAIL_OF_FAILURE, auth_detail
from entrypoints.settings import Settings
from tests.support import SECRET, auth, make_token
from tests.support.http import create, missing_id, tasks_url

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

REQUESTS = "taskvault_http_requests_total"
DURATION_COUNT = "taskvault_http_request_duration_seconds_count"
AUTH_FAILURES = "taskvault_auth_failures_total"


async def scrape(client: httpx.AsyncClient) -> tuple[str, Samples]:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return response.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def labels_of(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (sample, labels) in samples if sample == name]


async def test_metrics_is_prometheus_text_and_needs_no_token(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response.headers["x-request-id"]
    families = {family.name for family in text_string_to_metric_families(response.text)}
    assert {
        "taskvault_http_requests",
        "taskvault_http_request_duration_seconds",
        "taskvault_http_requests_in_flight",
        "taskvault_auth_failures",
        "taskvault_db_pool_size",
        "taskvault_db_pool_connections_in_use",
    } <= families
    assert "_created" not in response.text
    _, samples = await scrape(client)
    # The scrape itself is the one request in flight.
    assert value(samples, "taskvault_http_requests_in_flight") == 1
    # Documented in the README, kept out of the OpenAPI document.
    assert "/metrics" not in app.openapi()["paths"]


async def test_pool_gauges_follow_the_store(app: FastAPI, client: httpx.AsyncClient) -> None:
    storage = app.state.services.storage
    pooled = not isinstance(storage, MemoryStorage)
    # SQLite: the one writing connection, which requests take turns on.
    fixed = {MemoryStorage: 0, SqliteStorage: 1}
    expected_size = fixed.get(type(storage), app.state.container.settings().db_pool_size)
    _, samples = await scrape(client)
    assert value(samples, "taskvault_db_pool_size") == expected_size
    assert value(samples, "taskvault_db_pool_connections_in_use") == 0
    if pooled:
        assert expected_size > 0
    async with storage.unit_of_work("alice"):
        _, during = await scrape(client)
    assert value(during, "taskvault_db_pool_connections_in_use") == (1 if pooled else 0)
    _, after = await scrape(client)
    assert value(after, "taskvault_db_pool_connections_in_use") == 0


async def test_requests_are_counted_by_route_template_method_and_status(
    client: httpx.AsyncClient,
) -> None:
    task = await create(client)
    assert (await client.get(tasks_url("me", task["id"]), headers=auth())).status_code == 200
    assert (await client.get(tasks_url("alice", task["id"]), headers=auth())).status_code == 200
    assert (await client.get(tasks_url("me", missing_id()), headers=auth())).status_code == 404
    assert (await client.get(tasks_url(), headers=auth())).status_code == 200
    assert (await client.get("/nowhere/alice")).status_code == 404
    assert (await client.get(f"/api/me/tasks/{task['id']}/nothing")).status_code == 404
    assert (await client.request("BREW", "/healthz")).status_code == 405
    assert (await client.delete("/healthz")).status_code == 405

    text, samples = await scrape(client)
    item = "/api/{user_id}/tasks/{task_id}"
    expected = {
        ("/api/{user_id}/tasks", "POST", "201"): 1,
        ("/api/{user_id}/tasks", "GET", "200"): 1,
        (item, "GET", "200"): 2,
        (item, "GET", "404"): 1,
        ("unmatched", "GET", "404"): 2,
        ("/healthz", "other", "405"): 1,
        ("/healthz", "DELETE", "405"): 1,
    }
    for (route, method, status), count in expected.items():
        labels = {"route": route, "method": method, "status": status}
        assert value(samples, REQUESTS, **labels) == count, labels
        assert value(samples, DURATION_COUNT, **labels) == count, labels
    # Raw paths, ids and user names never become label values.
    assert task["id"] not in text
    assert "alice" not in text
    assert "nowhere" not in text
    assert "BREW" not in text
    routes = {labels["route"] for labels in labels_of(samples, REQUESTS)}
    assert routes <= {"/api/{user_id}/tasks", item, "unmatched", "/healthz", "/metrics"}
    # Buckets are cumulative and end at the count.
    inf = {"route": item, "method": "GET", "status": "200", "le": "+Inf"}
    assert value(samples, "taskvault_http_request_duration_seconds_bucket", **inf) == 2


async def test_duration_covers_the_whole_request(client: httpx.AsyncClient) -> None:
    started = time.perf_counter()
    for _ in range(3):
        assert (await client.get("/readyz")).status_code == 200
    elapsed = time.perf_counter() - started
    _, samples = await scrape(client)
    labels = {"route": "/readyz", "method": "GET", "status": "200"}
    total = value(samples, "taskvault_http_request_duration_seconds_sum", **labels)
    assert 0 < total <= elapsed


async def test_authentication_failures_are_counted_by_bounded_reason(
    client: httpx.AsyncClient,
) -> None:
    _, before = await scrape(client)
    # Every series exists from the start, at zero, so that rates and alerts work.
    assert sorted(map(sorted_items, labels_of(before, AUTH_FAILURES))) == sorted(
        [sorted_items({"reason": "missing", "detail": "none"})]
        + [sorted_items({"reason": "invalid", "detail": d}) for d in AUTH_DETAILS]
    )
    assert all(v == 0 for (name, _), v in before.items() if name == AUTH_FAILURES)

    url = tasks_url()
    attempts = {
        "missing": {},
        "garbage": {"Authorization": "Bearer not-a-jwt"},
        "expired": {"Authorization": f"Bearer {make_token(exp=int(time.time()) - 3600)}"},
        "hs512": {"Authorization": f"Bearer {make_token(algorithm='HS512')}"},
        "foreign key": {"Authorization": f"Bearer {make_token(secret='x' * 40)}"},
        "empty sub": {"Authorization": f"Bearer {make_token('')}"},
        "no exp": {"Authorization": f"Bearer {make_token(exp=None)}"},
    }
    for name, headers in attempts.items():
        assert (await client.get(url, headers=headers)).status_code == 401, name
    assert (await client.get(url, headers=auth())).status_code == 200

    text, after = await scrape(client)
    assert value(after, AUTH_FAILURES, reason="missing", detail="none") == 1
    assert value(after, AUTH_FAILURES, reason="invalid", detail="expired") == 1
    assert value(after, AUTH_FAILURES, reason="invalid", detail="algorithm") == 1
    assert value(after, AUTH_FAILURES, reason="invalid", detail="claims") == 1
    # A token that is not a JWT at all is malformed before any key is chosen.
    assert value(after, AUTH_FAILURES, reason="invalid", detail="malformed") == 1
    # A foreign signature and a missing exp: python-jose's generic JWTError.
    assert value(after, AUTH_FAILURES, reason="invalid", detail="rejected") == 2
    assert sum(v for (name, _), v in after.items() if name == AUTH_FAILURES) == len(attempts)
    # Exception text never becomes a label value.
    for raw in ("JWTError", "Signature", "bad sub", "must be", "ExpiredSignature"):
        assert raw not in text


def sorted_items(labels: dict[str, str]) -> list[tuple[str, str]]:
    return sorted(labels.items())


FAILURE_DETAILS = [
    (TokenFailure.EXPIRED, "expired"),
    (TokenFailure.CLAIMS, "claims"),
    (TokenFailure.ALGORITHM_NOT_ALLOWED, "algorithm"),
    (TokenFailure.ALGORITHM_KEY_MISMATCH, "algorithm"),
    (TokenFailure.UNKNOWN_KEY, "unknown_key"),
    (TokenFailure.UNUSABLE_KEY, "unknown_key"),
    (TokenFailure.TOO_LONG, "malformed"),
    (TokenFailure.MALFORMED_HEADER, "malformed"),
    (TokenFailure.MALFORMED_KID, "malformed"),
    (TokenFailure.MALFORMED_INPUT, "malformed"),
    (TokenFailure.REJECTED, "rejected"),
    (TokenFailure.UNEXPECTED, "other"),
]


@pytest.mark.parametrize(("reason", "detail"), FAILURE_DETAILS)
def test_token_failure_reasons_map_to_a_fixed_set(reason: TokenFailure, detail: str) -> None:
    assert auth_detail(reason) == detail
    assert detail in AUTH_DETAILS


def test_every_token_failure_has_a_detail() -> None:
    assert {reason for reason, _ in FAILURE_DETAILS} == set(TokenFailure)
    assert set(DETAIL_OF_FAILURE) == set(TokenFailure)
    assert set(DETAIL_OF_FAILURE.values()) <= set(AUTH_DETAILS)


@asynccontextmanager
async def _serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://taskvault.test") as c:
            yield c


async def test_each_app_has_a_registry_of_its_own() -> None:
    settings = Settings(database_url="memory://", jwt_secret=SecretStr(SECRET), _env_file=None)  # type: ignore[call-arg]
    first, second = create_app(settings), create_app(settings)
    async with _serving(first) as one, _serving(second) as two:
        for _ in range(3):
            await one.get("/healthz")
        await two.get("/api/me/tasks")
        _, one_samples = await scrape(one)
        _, two_samples = await scrape(two)
    healthz = {"route": "/healthz", "method": "GET", "status": "200"}
    assert value(one_samples, REQUESTS, **healthz) == 3
    assert value(two_samples, REQUESTS, **healthz) == 0
    assert value(one_samples, AUTH_FAILURES, reason="missing", detail="none") == 0
    assert value(two_samples, AUTH_FAILURES, reason="missing", detail="none") == 1
    # Nothing lands in prometheus_client's process-wide default registry.
    assert REGISTRY.get_sample_value(REQUESTS, healthz) is None
    assert REGISTRY.get_sample_value("taskvault_http_requests_in_flight") is None
