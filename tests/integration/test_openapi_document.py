"""The OpenAPI document says what generated clients need, and what is served."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from entrypoints.http.app import create_app
from entrypoints.http.problems import KINDS
from entrypoints.settings import Settings
from tests.support import SECRET, make_token


def _settings() -> Settings:
    return Settings(  # type: ignore[call-arg]
        database_url="memory://", jwt_secret=SecretStr(SECRET), _env_file=None
    )


def _document(root_path: str = "") -> dict[str, Any]:
    """The document as served (through a proxy's ``root_path``, if given)."""
    return asyncio.run(_served(root_path))


async def _served(root_path: str) -> dict[str, Any]:
    app = create_app(_settings())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, root_path=root_path)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            response = await client.get(f"{root_path}/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        operation["operationId"]: operation
        for path_item in document["paths"].values()
        for operation in path_item.values()
    }


@pytest.mark.parametrize(("root_path", "server"), [("", "/"), ("/taskvault", "/taskvault")])
def test_the_server_is_the_root_path_the_request_came_through(root_path: str, server: str) -> None:
    assert (_document(root_path))["servers"] == [{"url": server}]


def test_operation_ids_are_the_ones_a_person_would_write() -> None:
    assert set(_operations(_document())) == {
        "listTasks",
        "createTask",
        "getTask",
        "replaceTask",
        "updateTask",
        "deleteTask",
        "completeTask",
        "listChanges",
        "batchTasks",
        "healthz",
        "readyz",
    }


def test_every_problem_type_is_listed_in_the_schema_and_the_description() -> None:
    document = _document()
    problem = document["components"]["schemas"]["Problem"]["properties"]["type"]
    assert problem["enum"] == [kind.type for kind in KINDS]
    assert len(problem["x-enum-varnames"]) == len(KINDS)
    for kind in KINDS:
        assert f"| `{kind.type}` | {kind.status} |" in document["info"]["description"]


def test_patch_fields_that_refuse_null_are_not_nullable() -> None:
    fields = _document()["components"]["schemas"]["TaskPatchBody"]["properties"]
    for name in ("title", "completed", "priority"):
        assert "anyOf" not in fields[name], name
        assert "default" not in fields[name], name
    for name in ("description", "due_at"):
        assert {"type": "null"} in fields[name]["anyOf"], name


def test_request_bodies_carry_no_default_that_would_make_a_field_required() -> None:
    write = _document()["components"]["schemas"]["TaskWrite"]
    assert write["required"] == ["title"]
    assert all("default" not in field for field in write["properties"].values())
    assert 'Default: `"medium"`.' in write["properties"]["priority"]["description"]


def test_every_task_id_parameter_is_a_uuid() -> None:
    operations = _operations(_document())
    for operation in operations.values():
        for parameter in operation.get("parameters", []):
            if parameter["name"] == "task_id":
                assert parameter["schema"]["format"] == "uuid", operation["operationId"]
    assert len([o for o in operations.values() if _has_task_id(o)]) == 5


def _has_task_id(operation: dict[str, Any]) -> bool:
    return any(p["name"] == "task_id" for p in operation.get("parameters", []))


def test_the_completion_body_is_optional_and_not_nullable() -> None:
    body = _operations(_document())["completeTask"]["requestBody"]
    assert not body.get("required", False)
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("/CompletionBody")


def test_writes_document_their_409_with_retry_after_and_every_response_its_request_id() -> None:
    operations = _operations(_document())
    for name in ("replaceTask", "updateTask", "completeTask", "deleteTask", "createTask"):
        conflict = operations[name]["responses"]["409"]
        assert "Retry-After" in conflict["headers"], name
    for name, operation in operations.items():
        for status, response in operation["responses"].items():
            assert "X-Request-ID" in response["headers"], (name, status)
            if name not in {"healthz", "readyz"}:
                assert "RateLimit-Remaining" in response["headers"], (name, status)


def test_health_routes_need_no_token_and_say_so() -> None:
    operations = _operations(_document())
    assert operations["healthz"]["security"] == []
    assert operations["readyz"]["security"] == []
    assert operations["listTasks"]["security"] == [{"HTTPBearer": []}]


def test_every_route_of_a_users_tasks_documents_the_bearer_scheme() -> None:
    """The token is read without a ``Security`` dependency (deps.py), so the
    document states the scheme itself: for every operation under ``/api/``."""
    document = _document()
    scheme = document["components"]["securitySchemes"]["HTTPBearer"]
    assert {k: scheme[k] for k in ("type", "scheme", "bearerFormat")} == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    secured = [
        operation
        for path, path_item in document["paths"].items()
        if path.startswith("/api/")
        for operation in path_item.values()
    ]
    assert len(secured) >= 9
    assert all(operation["security"] == [{"HTTPBearer": []}] for operation in secured)


async def _answer(
    method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any
) -> httpx.Response:
    app = create_app(_settings())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            auth = {"Authorization": f"Bearer {make_token('alice')}"}
            if method == "PATCH" and path.endswith("/complete"):
                created = await client.post("/api/me/tasks", json={"title": "t"}, headers=auth)
                path = path.replace("{task_id}", created.json()["id"])
            return await client.request(method, path, headers={**auth, **(headers or {})}, **kwargs)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/api/me/tasks/changes", "GET"),
        ("DELETE", "/api/me/tasks/changes", "GET"),
        ("GET", "/api/me/tasks/batch", "POST"),
        ("PATCH", "/api/me/tasks/batch", "POST"),
    ],
)
async def test_a_concrete_path_answers_405_for_a_method_only_task_ids_take(
    method: str, path: str, allow: str
) -> None:
    """The document says a task id is a UUID: ``changes`` names the feed, not a task."""
    response = await _answer(method, path, json={"title": "x"})
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allow
    assert response.json()["type"] == "/problems/method-not-allowed"


async def test_a_json_null_completion_body_is_refused_as_the_document_offers_none() -> None:
    response = await _answer(
        "PATCH",
        "/api/me/tasks/{task_id}/complete",
        content=b"null",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["type"] == "/problems/validation-failed"


async def test_cors_exposes_every_response_header_the_document_declares() -> None:
    """A browser client can read each header its generated types promise."""
    declared = {
        name.lower()
        for operation in _operations(await _served("")).values()
        for response in operation["responses"].values()
        for name in response.get("headers", {})
    }
    app = create_app(
        Settings(  # type: ignore[call-arg]
            database_url="memory://",
            jwt_secret=SecretStr(SECRET),
            cors_origins=("https://app.example",),
            _env_file=None,
        )
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            response = await client.get("/healthz", headers={"Origin": "https://app.example"})
    exposed = {
        h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
    }
    assert declared >= {"etag", "link", "location", "retry-after", "x-request-id"}
    assert declared <= exposed, declared - exposed
