"""Task routes: each maps HTTP to one ``TaskService`` call and back."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Body, Path, Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response

from application.queries import Sort, SortField, Status, TaskFilter, TaskQuery
from application.task_service import ME
from domain.task import Task
from entrypoints.http import problems, urls
from entrypoints.http.conditional import (
    IDEMPOTENCY_KEY_PARAMETER,
    IF_MATCH,
    IF_NONE_MATCH,
    idempotency_key,
)
from entrypoints.http.deps import Caller, UserId, cursors, service
from entrypoints.http.jsonbody import JSONResponse
from entrypoints.http.problems import problem_docs
from entrypoints.http.representation import etag, if_match_versions, none_match, task_body
from entrypoints.http.schemas import (
    CompletionBody,
    ListParams,
    TaskOut,
    TaskPatchBody,
    TaskWrite,
    query_parameters,
)

router = APIRouter(prefix="/api/{user_id}/tasks", tags=["tasks"])

_ETAG = {
    "ETag": {"description": "Strong validator of this task state.", "schema": {"type": "string"}}
}
_COMMON = (401, 403, problems.VALIDATION_FAILED, 429, 503)
_ON_TASK = (*_COMMON, 404)
# A write retried by the service that keeps losing to other writers: a 409.
_WRITE = (*_ON_TASK, 400, problems.CONCURRENT_UPDATE, 412, 413, 415)
_CREATE = (*_COMMON, problems.IDEMPOTENCY_KEY_REUSED, 400, problems.REQUEST_IN_FLIGHT, 413, 415)

# A string, not a UUID, to the handler: a malformed id is the same 404 as a
# missing one, not a 422. Documented as what every valid id is.
TaskId = Annotated[
    str,
    Path(description="The task's `id`.", json_schema_extra={"format": "uuid"}),
]


def _task_response(
    task: Task, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse(
        task_body(task), status_code=status_code, headers={"ETag": etag(task), **(headers or {})}
    )


def _task_url(request: Request, task: Task) -> str:
    """The task's absolute URL, on the scheme and host the client used: behind a
    trusted proxy, the public ones (``ForwardedHeadersMiddleware``), as ``Link``."""
    root = request.scope.get("root_path", "")
    # A user id that cannot stand as one path segment is named by its alias.
    owner = task.user_id
    segment = ME if "/" in owner or owner in {".", ".."} else quote(owner, safe="")
    return urls.with_path(request, f"{root}/api/{segment}/tasks/{task.id}")


@router.get(
    "",
    operation_id="listTasks",
    summary="List your tasks",
    response_model=list[TaskOut],
    responses={
        200: {
            "headers": {
                "Link": {
                    "description": 'RFC 8288 `<...>; rel="next"` when another page follows.',
                    "schema": {"type": "string"},
                }
            }
        },
        **problem_docs(*_COMMON),
    },
    openapi_extra={"parameters": query_parameters(ListParams)},
)
async def list_tasks(request: Request, user_id: UserId, caller: Caller) -> Response:
    params = ListParams.from_query(request.query_params)
    sort = Sort(field=SortField(params.sort.lstrip("-")), descending=params.sort.startswith("-"))
    query = TaskQuery(
        filter=TaskFilter(
            status=Status(params.status),
            priority=params.priority,
            text=params.q or None,
            due_before=params.due_before,
            due_after=params.due_after,
        ),
        sort=sort,
        limit=params.limit,
        after=None
        if params.cursor is None
        else cursors(request).decode(params.cursor, caller.user_id, sort),
    )
    page = await service(request).list(caller, user_id, query)
    headers: dict[str, str] = {}
    if page.next is not None:
        cursor = cursors(request).encode(caller.user_id, sort, page.next)
        headers["Link"] = f'<{urls.with_cursor(request, cursor)}>; rel="next"'
    return JSONResponse([task_body(task) for task in page.items], headers=headers)


@router.post(
    "",
    operation_id="createTask",
    summary="Create a task",
    status_code=201,
    response_model=TaskOut,
    responses={
        201: {
            "headers": {
                **_ETAG,
                "Location": {"description": "URL of the new task.", "schema": {"type": "string"}},
            }
        },
        **problem_docs(*_CREATE),
    },
    openapi_extra={"parameters": [IDEMPOTENCY_KEY_PARAMETER]},
)
async def create_task(
    request: Request,
    user_id: UserId,
    caller: Caller,
    body: TaskWrite,
) -> Response:
    key = idempotency_key(request)
    task = await service(request).create(caller, user_id, body.to_fields(), key)
    return _task_response(task, 201, {"Location": _task_url(request, task)})


@router.get(
    "/{task_id}",
    operation_id="getTask",
    summary="Get a task",
    response_model=TaskOut,
    responses={
        200: {"headers": _ETAG},
        304: {"description": "If-None-Match matched the current ETag.", "headers": _ETAG},
        **problem_docs(*_ON_TASK),
    },
    openapi_extra={"parameters": [IF_NONE_MATCH]},
)
async def get_task(
    request: Request,
    user_id: UserId,
    task_id: TaskId,
    caller: Caller,
) -> Response:
    task = await service(request).get(caller, user_id, task_id)
    tag = etag(task)
    if none_match(request.headers.get("if-none-match"), tag):
        return Response(status_code=304, headers={"ETag": tag})
    return _task_response(task)


@router.put(
    "/{task_id}",
    operation_id="replaceTask",
    summary="Replace a task's writable fields",
    response_model=TaskOut,
    responses={200: {"headers": _ETAG}, **problem_docs(*_WRITE)},
    openapi_extra={"parameters": [IF_MATCH]},
)
async def replace_task(
    request: Request,
    user_id: UserId,
    task_id: TaskId,
    caller: Caller,
    body: TaskWrite,
) -> Response:
    task = await service(request).replace(
        caller,
        user_id,
        task_id,
        body.to_fields(),
        if_match_versions(request.headers.get("if-match"), task_id),
    )
    return _task_response(task)


@router.patch(
    "/{task_id}",
    operation_id="updateTask",
    summary="Update some fields of a task",
    response_model=TaskOut,
    responses={200: {"headers": _ETAG}, **problem_docs(*_WRITE)},
    openapi_extra={"parameters": [IF_MATCH]},
)
async def update_task(
    request: Request,
    user_id: UserId,
    task_id: TaskId,
    caller: Caller,
    body: TaskPatchBody,
) -> Response:
    task = await service(request).patch(
        caller,
        user_id,
        task_id,
        body.to_patch(),
        if_match_versions(request.headers.get("if-match"), task_id),
    )
    return _task_response(task)


@router.delete(
    "/{task_id}",
    operation_id="deleteTask",
    summary="Delete a task",
    status_code=204,
    response_class=Response,
    responses=problem_docs(*_ON_TASK, problems.CONCURRENT_UPDATE, 412, 413, 415),
    openapi_extra={"parameters": [IF_MATCH]},
)
async def delete_task(
    request: Request,
    user_id: UserId,
    task_id: TaskId,
    caller: Caller,
) -> Response:
    await service(request).delete(
        caller, user_id, task_id, if_match_versions(request.headers.get("if-match"), task_id)
    )
    return Response(status_code=204)


@router.patch(
    "/{task_id}/complete",
    operation_id="completeTask",
    summary="Toggle completion, or set it with a body",
    response_model=TaskOut,
    responses={200: {"headers": _ETAG}, **problem_docs(*_WRITE)},
    openapi_extra={"parameters": [IF_MATCH]},
)
async def complete_task(
    request: Request,
    user_id: UserId,
    task_id: TaskId,
    caller: Caller,
    body: Annotated[
        CompletionBody | None,
        Body(description="Omit the body to toggle; send `completed` to set it."),
    ] = None,
) -> Response:
    if body is None and await request.body():
        # A JSON null: the document offers an object or no body at all.
        raise RequestValidationError(
            [
                {
                    "loc": ("body",),
                    "msg": "send an object, or no body to toggle",
                    "type": "model_type",
                }
            ]
        )
    completed = None if body is None else body.completed
    task = await service(request).set_completed(
        caller,
        user_id,
        task_id,
        completed,
        if_match_versions(request.headers.get("if-match"), task_id),
    )
    return _task_response(task)
