"""The batch route: many writes in one request and one transaction.

Each operation's result is exactly what its single route would have
answered: the same status, and the same body (a problem's ``instance`` is
the single route's path).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.responses import Response

from application.batch import (
    BatchResult,
    Complete,
    Create,
    Delete,
    Operation,
    Outcome,
    Patch,
    Rejected,
    Replace,
)
from application.errors import ConcurrentUpdate, FailedDependency, PreconditionFailed
from domain.errors import TaskNotFound
from entrypoints.http import problems
from entrypoints.http.conditional import IDEMPOTENCY_KEY_PARAMETER, idempotency_key
from entrypoints.http.deps import Caller, UserId, service, spend_more
from entrypoints.http.errors import problem_of
from entrypoints.http.jsonbody import JSONResponse
from entrypoints.http.problems import problem_docs
from entrypoints.http.representation import etag, if_match_versions, task_body
from entrypoints.http.schemas import (
    BatchBody,
    BatchOut,
    CompleteOperation,
    CompletionBody,
    CreateOperation,
    DeleteOperation,
    PatchOperation,
    ReplaceOperation,
    TaskPatchBody,
    TaskWrite,
)

router = APIRouter(prefix="/api/{user_id}/tasks", tags=["tasks"])

_STATUS = {Outcome.CREATED: 201, Outcome.UPDATED: 200, Outcome.DELETED: 204}
_ERRORS: dict[Outcome, type[Exception]] = {
    Outcome.NOT_FOUND: TaskNotFound,
    Outcome.PRECONDITION_FAILED: PreconditionFailed,
    Outcome.CONCURRENT_UPDATE: ConcurrentUpdate,
    Outcome.FAILED_DEPENDENCY: FailedDependency,
}

Parsed = tuple[list[Operation], dict[int, RequestValidationError]]


def _body_of(model: type[BaseModel], value: dict[str, Any]) -> Any:
    """``value`` as the single route's body, or the 422 that route would give."""
    try:
        return model.model_validate(value)
    except ValidationError as error:
        raise RequestValidationError(
            [{**detail, "loc": ("body", *detail["loc"])} for detail in error.errors()]
        ) from None


def _operation(op: Any) -> Operation:
    match op:
        case CreateOperation(task=task):
            return Create(_body_of(TaskWrite, task).to_fields())
        case ReplaceOperation(id=raw, task=task, if_match=header):
            return Replace(
                raw, _body_of(TaskWrite, task).to_fields(), if_match_versions(header, raw)
            )
        case PatchOperation(id=raw, fields=fields, if_match=header):
            return Patch(
                raw, _body_of(TaskPatchBody, fields).to_patch(), if_match_versions(header, raw)
            )
        case CompleteOperation(id=raw, completed=completed, if_match=header):
            checked = (
                None
                if completed is None
                else _body_of(CompletionBody, {"completed": completed}).completed
            )
            return Complete(raw, checked, if_match_versions(header, raw))
        case DeleteOperation(id=raw, if_match=header):
            return Delete(raw, if_match_versions(header, raw))
    raise TypeError(f"not an operation: {op!r}")


def _parsed(body: BatchBody) -> Parsed:
    """The operations, and the 422s of those whose content the single route would refuse."""
    operations: list[Operation] = []
    refused: dict[int, RequestValidationError] = {}
    for index, op in enumerate(body.operations):
        try:
            operations.append(_operation(op))
        except RequestValidationError as error:
            refused[index] = error
            operations.append(Rejected())
    return operations, refused


def _single_route(request: Request, op: Any) -> Request:
    """The request the single route of ``op`` would have seen, for its problem's ``instance``."""
    collection = request.scope["path"].removesuffix("/batch")
    path = (
        collection if isinstance(op, CreateOperation) else f"{collection}/{quote(op.id, safe='')}"
    )
    return Request({**request.scope, "path": path, "raw_path": path.encode()})


async def _result_body(
    request: Request, op: Any, result: BatchResult, refusal: RequestValidationError | None
) -> dict[str, Any]:
    if result.outcome.succeeded:
        body: dict[str, Any] = {"status": _STATUS[result.outcome]}
        if result.task is not None and result.outcome is not Outcome.DELETED:
            body.update(task=task_body(result.task), etag=etag(result.task))
        return body
    if result.outcome is Outcome.REJECTED:
        assert refusal is not None
        error: Exception = refusal
    else:
        subject = getattr(op, "id", "")
        error = _ERRORS[result.outcome](subject)
    status, problem = await problem_of(_single_route(request, op), error)
    return {"status": status, "problem": problem}


@router.post(
    "/batch",
    operation_id="batchTasks",
    summary="Apply several writes in one request",
    description=(
        "Up to 100 operations, applied in order in one transaction. Each result is the "
        "status and body its single route would give. `atomic`: all succeed or nothing "
        "changes (the failing operation keeps its status, the others get 424). Counts as "
        "one request per operation against the rate limit."
    ),
    response_model=BatchOut,
    responses=problem_docs(400, 401, 403, problems.REQUEST_IN_FLIGHT, 413, 415, 422, 429, 503),
    openapi_extra={"parameters": [IDEMPOTENCY_KEY_PARAMETER]},
)
async def batch_tasks(
    request: Request, user_id: UserId, caller: Caller, body: BatchBody
) -> Response:
    key = idempotency_key(request)
    await spend_more(request, caller, len(body.operations) - 1)
    operations, refused = _parsed(body)
    results = await service(request).batch(
        caller, user_id, operations, atomic=body.atomic, idempotency_key=key
    )
    return JSONResponse(
        {
            "results": [
                await _result_body(request, op, result, refused.get(index))
                for index, (op, result) in enumerate(zip(body.operations, results, strict=True))
            ]
        }
    )
