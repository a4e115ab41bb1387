"""The change feed: what changed in a user's tasks since a sync token."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from application.sync import Change, FeedQuery, Tombstone
from domain.task import Task
from entrypoints.http import problems
from entrypoints.http.deps import Caller, UserId, service
from entrypoints.http.jsonbody import JSONResponse
from entrypoints.http.problems import problem_docs
from entrypoints.http.representation import task_body
from entrypoints.http.schemas import ChangesOut, FeedParams, query_parameters
from entrypoints.http.services import services

router = APIRouter(prefix="/api/{user_id}/tasks", tags=["sync"])


def _change_body(change: Change) -> dict[str, object]:
    item = change.item
    if isinstance(item, Task):
        return {"type": "upsert", "task": task_body(item)}
    assert isinstance(item, Tombstone)
    return {"type": "delete", "id": str(item.id), "deleted_at": item.deleted_at}


@router.get(
    "/changes",
    operation_id="listChanges",
    summary="Changes since a sync token",
    description=(
        "Without `since`: every live task, in pages. With `since`: every change committed "
        "after it, each task once in its latest state, deletes as tombstones. Follow `next` "
        "while `has_more`; then poll with it later, or hold the request with `wait`."
    ),
    response_model=ChangesOut,
    responses=problem_docs(401, 403, 410, problems.VALIDATION_FAILED, 429, 503),
    openapi_extra={"parameters": query_parameters(FeedParams)},
)
async def list_changes(request: Request, user_id: UserId, caller: Caller) -> Response:
    params = FeedParams.from_query(request.query_params)
    tokens = services(request).sync_tokens
    since = None if params.since is None else tokens.decode(params.since, caller.user_id)
    page = await service(request).changes(
        caller, user_id, FeedQuery(since=since, limit=params.limit, wait_s=params.wait)
    )
    return JSONResponse(
        {
            "changes": [_change_body(change) for change in page.changes],
            "next": tokens.encode(caller.user_id, page.next),
            "has_more": page.has_more,
        }
    )
