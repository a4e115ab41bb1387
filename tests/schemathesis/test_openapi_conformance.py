"""Schemathesis against the app's own ``/openapi.json``, on every store.

Every operation of the document is fuzzed (schemathesis's examples, coverage
and fuzzing phases; positive and negative data) with a valid bearer token for
``alice``, and every response must pass schemathesis's standard response
checks: no 5xx (``not_a_server_error``), a documented status code, the
documented content type, a body that matches its schema, the documented
headers; plus the negative-data, 405/``Allow``, missing-header and ignored-auth
checks. The one standard check left out is ``positive_data_acceptance`` (see
``EXCLUDED_CHECKS``).

The document is read once, at import, from an app on the memory store; each
test then sends the generated requests to a fresh app on the store under test
(``app=`` on every call, so the checks' own probes go there too) after
checking that this app serves the very same document.

Named values (``Target.choices``), wherever a case has them as strings (path,
query, body): ``user_id`` is mostly ``alice`` or ``me``; ``task_id`` and a
batch operation's ``id`` mostly the id of a seeded task (sometimes ``bob``'s);
``since`` mostly a sync token the feed gave ``alice`` partway through her
first sync (sometimes ``bob``'s): changes follow it, so no request waits out
a generated ``wait`` of up to 30 s.
So the requests reach the handlers rather than stopping at 403/404/422; the
generated value is kept in about one case in four. The choice hashes the
generated value, so a failing example replays identically.
"""

from __future__ import annotations

import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests.support import SECRET, make_token

# Generated cases per operation and phase; the whole module (three stores)
# stays well under a minute on a slow two-core machine.
MAX_EXAMPLES = 25

# ``positive_data_acceptance`` wants every schema-valid request to get a 2xx
# (or 401/403/404/409). The schema cannot say everything the contract does,
# so it flags documented, correct answers: 412 for an ``If-Match`` that is
# not the current ETag, 422 for a cursor this service did not issue, 422 for
# a title with control characters. Those statuses are still checked to be
# documented and well-formed by the remaining checks.
EXCLUDED_CHECKS: list[schemathesis.CheckFunction] = [positive_data_acceptance]

USER = "alice"
OTHER_USER = "bob"
_TOKEN = make_token(USER, exp=int(time.time()) + 3600)

F = TypeVar("F", bound=Callable[..., Any])


def _settings(database_url: str, **overrides: Any) -> Settings:
    return Settings(  # type: ignore[call-arg]
        database_url=database_url,
        jwt_secret=SecretStr(SECRET),
        rate_limit="off",
        _env_file=None,
        **overrides,
    )


_CONFIG = schemathesis.Config.from_dict(
    {
        # Declared as the schema's own bearer scheme, so schemathesis knows the
        # token is a real credential: ``ignored_auth`` then probes each
        # operation without it and with a made-up one, and expects a 401.
        "auth": {"openapi": {"HTTPBearer": {"bearer": _TOKEN}}},
        "generation": {"max-examples": MAX_EXAMPLES},
        # A body over 64 KiB is refused with 413 before its content is read,
        # as the contract says; the check's default list lacks 413.
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [
                    "400",
                    "401",
                    "403",
                    "404",
                    "405",
                    "406",
                    "409",
                    "413",
                    "415",
                    "422",
                    "428",
                    "429",
                    "5xx",
                ]
            }
        },
    }
)

# Loaded at import for ``schema.parametrize()``: the lazy alternative,
# ``schemathesis.pytest.from_fixture``, fails on pytest 9.2 (it writes the
# removed ``Node._nodeid``). Reading it starts the memory app's lifespan on
# schemathesis's event loop thread; that app keeps nothing.
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(_settings("memory://")), config=_CONFIG
)


def _parametrize() -> Callable[[F], F]:
    decorator: Callable[[F], F] = schema.parametrize()
    return decorator


@dataclass
class Target:
    """The app under test, the tasks seeded in it, and what it answered."""

    app: FastAPI
    own_ids: list[str]
    foreign_ids: list[str]
    own_token: str
    foreign_token: str
    answers: Counter[tuple[str, int]] = field(default_factory=Counter)
    failed: bool = False

    def choices(self) -> dict[str, list[str]]:
        """What a string under each name is mostly replaced with."""
        tasks = self.own_ids * 3 + self.foreign_ids
        return {
            "user_id": [USER, USER, "me"],
            "task_id": tasks,
            "id": tasks,
            "since": [self.own_token] * 3 + [self.foreign_token],
        }

    def answered(self) -> dict[str, Counter[int]]:
        """Statuses per operation label."""
        by_label: dict[str, Counter[int]] = {}
        for (label, status), count in self.answers.items():
            by_label.setdefault(label, Counter())[status] += count
        return by_label


def _client(app: FastAPI) -> asgi.ASGIClient:
    """Schemathesis's in-process client (FastAPI's ASGI signature is the looser one)."""
    return asgi.get_client(cast(asgi.ASGIApp, app))


@contextmanager
def _serving(app: FastAPI) -> Iterator[asgi.ASGIClient]:
    """A client for a throwaway app, whose lifespan is ended afterwards."""
    try:
        with _client(app) as client:
            yield client
    finally:
        asgi.shutdown_lifespans()


def _bearer(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user, exp=int(time.time()) + 3600)}"}


def _seed(client: Any, user: str, count: int) -> list[str]:
    priorities = ("low", "medium", "high")
    ids: list[str] = []
    for number in range(count):
        body: dict[str, Any] = {
            "title": f"Seeded task {number}",
            "description": "seed" if number % 2 else None,
            "completed": number % 3 == 0,
            "priority": priorities[number % 3],
            "due_at": f"2026-12-{number % 28 + 1:02d}T17:00:00Z" if number % 4 else None,
        }
        response = client.post(f"/api/{user}/tasks", json=body, headers=_bearer(user))
        assert response.status_code == 201, response.text
        ids.append(str(response.json()["id"]))
    return ids


def _sync_token(client: Any, user: str) -> str:
    """A feed token of ``user``'s that more changes follow: the first page's ``next``."""
    response = client.get(f"/api/{user}/tasks/changes", params={"limit": 2}, headers=_bearer(user))
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["has_more"] is True, page
    return str(page["next"])


@pytest.fixture
def target(database_url: str) -> Iterator[Target]:
    """A fresh app on the store, serving the same document, with tasks for alice and bob.

    Schemathesis makes one test item per operation (and store), so each
    operation starts from a fresh store.
    """
    app = create_app(_settings(database_url))
    # Entering the client starts the app's lifespan on schemathesis's own event
    # loop, the one every generated request runs on.
    with _client(app) as client:
        served = client.get("/openapi.json")
        assert served.status_code == 200
        assert served.json() == schema.raw_schema
        own_ids, foreign_ids = _seed(client, USER, 12), _seed(client, OTHER_USER, 3)
        seeded = Target(
            app=app,
            own_ids=own_ids,
            foreign_ids=foreign_ids,
            own_token=_sync_token(client, USER),
            foreign_token=_sync_token(client, OTHER_USER),
        )
    try:
        yield seeded
    finally:
        asgi.shutdown_lifespans()
    store = database_url.split(":", 1)[0]
    for label, statuses in seeded.answered().items():
        print(f"\nschemathesis {label} on {store}: {sum(statuses.values())} cases {dict(statuses)}")
    if seeded.failed:
        return  # the failure is the report; a cut-short run proves nothing about coverage
    # The run means something only if the handler was reached: each operation
    # must have succeeded at least once, not only answered 401/403/422.
    for label, statuses in seeded.answered().items():
        assert any(status < 400 for status in statuses), f"{label} never reached its handler"
    assert sum(seeded.answers.values()) >= 10, "too few cases were generated"


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _pick(generated: Any, choices: list[str]) -> Any:
    """Mostly one of ``choices``; the generated value in about one case in four.

    A UUID is always replaced: a generated one names no task (a 404 the kept
    malformed ids already get), and the document's example ids stand for a task.
    """
    digest = zlib.crc32(repr(generated).encode())
    if digest % 4 == 0 and not _is_uuid(generated):
        return generated
    # Other bits pick the choice: ``digest % len(choices)`` would never be 0 mod 4 here.
    return choices[(digest >> 2) % len(choices)]


def _substituted(value: Any, choices: dict[str, list[str]]) -> None:
    """Each string of ``value`` (a dict, or a list of them, nested) under a name
    in ``choices`` picked again from them, in place. Other types stay as
    generated: a negative case stays negative."""
    if isinstance(value, list):
        for item in value:
            _substituted(item, choices)
        return
    if not isinstance(value, dict):
        return
    for name, item in value.items():
        if name in choices and isinstance(item, str):
            value[name] = _pick(item, choices[name])
        else:
            _substituted(item, choices)


@_parametrize()
@settings(
    deadline=None,
    database=None,
    # One app per store serves every example of the test, on purpose.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
def test_every_response_conforms_to_the_openapi_document(
    case: schemathesis.Case[Any], target: Target
) -> None:
    choices = target.choices()
    for values in (case.path_parameters, case.query, case.body):
        _substituted(values, choices)
    response = case.call(app=target.app)
    target.answers[(case.operation.label, response.status_code)] += 1
    try:
        case.validate_response(
            response, excluded_checks=EXCLUDED_CHECKS, transport_kwargs={"app": target.app}
        )
    except Exception:
        target.failed = True
        raise


# Found by the conformance run above (``negative_data_rejection``), pinned here
# so it stays caught whatever the generator draws: the document (and the
# contract) say RFC 3339 date-time, but pydantic reads a numeric string as a
# Unix time, so ``?due_before=0.5`` lists tasks due before 1970-01-01T00:00:00.5Z.
NOT_RFC3339 = ["0.5", "1700000000", "-1"]


@pytest.mark.parametrize("value", NOT_RFC3339)
@pytest.mark.parametrize("name", ["due_before", "due_after"])
def test_list_refuses_query_times_that_are_not_rfc3339(name: str, value: str) -> None:
    with _serving(create_app(_settings("memory://"))) as client:
        response = client.get(
            f"/api/{USER}/tasks",
            params={name: value},
            headers={"Authorization": f"Bearer {_TOKEN}"},
        )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [error["loc"] for error in response.json()["errors"]] == [["query", name]]


@pytest.mark.parametrize("value", NOT_RFC3339)
def test_create_refuses_a_due_at_that_is_not_rfc3339(value: str) -> None:
    with _serving(create_app(_settings("memory://"))) as client:
        response = client.post(
            f"/api/{USER}/tasks",
            json={"title": "Numeric due date", "due_at": value},
            headers={"Authorization": f"Bearer {_TOKEN}"},
        )
    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["errors"]] == [["body", "due_at"]]


# Statuses the generator does not reach, checked by the same standard checks
# on hand-made cases.
CONFORMANCE_CHECKS: list[schemathesis.CheckFunction] = [
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
STANDARD_CHECKS = [not_a_server_error, *CONFORMANCE_CHECKS]
UNREACHABLE_DATABASE = "postgresql+asyncpg://nobody@127.0.0.1:1/x"
SOME_TASK_ID = "0192f5d0-8b7e-7c3a-9f10-2b6d7e4c1a55"
_BODIES: dict[str, dict[str, Any]] = {
    "POST /api/{user_id}/tasks": {"title": "A task"},
    "PUT /api/{user_id}/tasks/{task_id}": {"title": "A task"},
    "PATCH /api/{user_id}/tasks/{task_id}": {"title": "A task"},
    "PATCH /api/{user_id}/tasks/{task_id}/complete": {"completed": True},
    "POST /api/{user_id}/tasks/batch": {"operations": [{"op": "create", "task": {"title": "A"}}]},
}


Operation = schemathesis.APIOperation[Any, Any, Any, Any]


def _operations() -> list[Operation]:
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    return operations


def _valid_case(operation: Operation, task_id: str) -> schemathesis.Case[Any]:
    values = {"user_id": USER, "task_id": task_id}
    parameters = {name: value for name, value in values.items() if f"{{{name}}}" in operation.path}
    headers = {"Authorization": f"Bearer {_TOKEN}"}
    body = _BODIES.get(operation.label)
    if body is None:
        return operation.Case(path_parameters=parameters, headers=headers)
    return operation.Case(
        path_parameters=parameters, headers=headers, body=body, media_type="application/json"
    )


def test_every_operation_documents_its_503_when_the_database_is_down() -> None:
    app = create_app(_settings(UNREACHABLE_DATABASE, db_timeout_s=2.0))
    statuses: dict[str, int] = {}
    with _serving(app):
        for operation in _operations():
            case = _valid_case(operation, SOME_TASK_ID)
            response = case.call(app=app)
            statuses[operation.label] = response.status_code
            # A 503 is the right answer here, so ``not_a_server_error`` is left out.
            case.validate_response(
                response, checks=CONFORMANCE_CHECKS, transport_kwargs={"app": app}
            )
    assert statuses.pop("GET /healthz") == 200
    assert set(statuses.values()) == {503}, statuses


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [("text/plain", "x", 415), ("application/json", "[" + " " * 70_000 + "]", 413)],
)
def test_a_delete_with_a_body_gets_a_documented_status(
    content_type: str, body: str, status: int
) -> None:
    """The body guard answers 413/415 for any method that may carry a body, DELETE included."""
    app = create_app(_settings("memory://"))
    with _serving(app) as client:
        task_id = _seed(client, USER, 1)[0]
        operation = schema["/api/{user_id}/tasks/{task_id}"]["DELETE"]
        case = operation.Case(
            path_parameters={"user_id": USER, "task_id": task_id},
            headers={"Authorization": f"Bearer {_TOKEN}", "Content-Type": content_type},
            body=body,
            media_type="text/plain",
        )
        response = case.call(app=app)
        assert response.status_code == status, response.text
        case.validate_response(response, checks=STANDARD_CHECKS, transport_kwargs={"app": app})
