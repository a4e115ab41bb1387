"""The "FastAPI floor": taskvault's route shapes with nothing behind them.

A yardstick for ``bench/run.py``, not part of the service. Same paths and
methods, a header dependency (the bearer header must be present; nothing is
verified), pydantic request and response models, but no database, no JWT and
no middleware: answers come from canned in-memory data. What taskvault does
above this line is what its own layers cost.

Run: ``uvicorn --app-dir bench floor_app:app --loop uvloop --http httptools``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import Body, Depends, FastAPI, Header, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field

Priority = Literal["low", "medium", "high"]
PAGE = 20
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class TaskOut(BaseModel):
    id: uuid.UUID
    user_id: str
    title: str
    description: str | None
    completed: bool
    priority: Priority
    due_at: datetime | None
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int


class TaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    completed: bool = False
    priority: Priority = "medium"
    due_at: datetime | None = None


class CompletionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    completed: bool


def _canned(user_id: str, n: int, task_id: uuid.UUID | None = None) -> TaskOut:
    created = _EPOCH + timedelta(minutes=n)
    return TaskOut(
        id=task_id or uuid.UUID(int=n + 1),
        user_id=user_id,
        title=f"Task {n} of {user_id}",
        description=None if n % 3 else "Canned description",
        completed=False,
        priority=("low", "medium", "high")[n % 3],
        due_at=None,
        completed_at=None,
        created_at=created,
        updated_at=created,
        version=1,
    )


_pages: dict[str, list[TaskOut]] = {}
_completed: dict[uuid.UUID, bool] = {}


def caller(
    user_id: Annotated[str, Path()],
    authorization: Annotated[str | None, Header()] = None,
) -> str:
    """The path's user, once a bearer header is present (nothing is verified)."""
    if authorization is None or not authorization.startswith("Bearer "):
        raise HTTPException(401, "missing bearer token")
    return user_id


Caller = Annotated[str, Depends(caller)]
app = FastAPI(title="taskvault floor (bench yardstick)")


@app.get("/api/{user_id}/tasks", response_model=list[TaskOut])
async def list_tasks(user: Caller, limit: int = 50) -> list[TaskOut]:
    page = _pages.get(user)
    if page is None:
        page = _pages[user] = [_canned(user, n) for n in range(PAGE)]
    return page[: max(1, min(limit, PAGE))]


@app.post("/api/{user_id}/tasks", response_model=TaskOut, status_code=201)
async def create_task(user: Caller, body: TaskIn) -> TaskOut:
    now = datetime.now(UTC)
    return TaskOut(
        id=uuid.uuid4(),
        user_id=user,
        title=body.title.strip(),
        description=body.description,
        completed=body.completed,
        priority=body.priority,
        due_at=body.due_at,
        completed_at=now if body.completed else None,
        created_at=now,
        updated_at=now,
        version=1,
    )


@app.get("/api/{user_id}/tasks/{task_id}", response_model=TaskOut)
async def get_task(user: Caller, task_id: uuid.UUID) -> TaskOut:
    return _canned(user, task_id.int % 50, task_id)


@app.patch("/api/{user_id}/tasks/{task_id}/complete", response_model=TaskOut)
async def complete_task(
    user: Caller,
    task_id: uuid.UUID,
    body: Annotated[CompletionIn | None, Body()] = None,
) -> TaskOut:
    state = not _completed.get(task_id, False) if body is None else body.completed
    _completed[task_id] = state
    task = _canned(user, task_id.int % 50, task_id)
    now = datetime.now(UTC)
    return task.model_copy(
        update={"completed": state, "completed_at": now if state else None, "updated_at": now}
    )
