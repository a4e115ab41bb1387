"""The round trip through openapi-python-client's client, as a Python app would
write it. Run by tests/clients/test_generated_clients.py (``mypy --strict`` first)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

from taskvault_client import AuthenticatedClient
from taskvault_client.api.sync import list_changes
from taskvault_client.api.tasks import (
    batch_tasks,
    complete_task,
    create_task,
    delete_task,
    get_task,
    list_tasks,
    replace_task,
    update_task,
)
from taskvault_client.models import (
    BatchBody,
    BatchOut,
    ChangesOut,
    CompleteOperation,
    CompletionBody,
    CreateOperation,
    CreateOperationTask,
    DeleteChange,
    ListTasksSort,
    ListTasksStatus,
    Priority,
    Problem,
    ProblemType,
    TaskOut,
    TaskPatchBody,
    TaskWrite,
)
from taskvault_client.types import UNSET, Response, Unset


def check(ok: bool, what: str) -> None:
    if not ok:
        raise SystemExit(f"failed: {what}")
    print(f"ok {what}")


def next_cursor(link: str | None) -> str | None:
    """The cursor of the ``Link`` header's rel="next" page; None on the last page."""
    for part in (link or "").split(","):
        url = re.search(r"<([^>]*)>", part)
        if url and re.search(r';\s*rel="?next"?', part):
            return parse_qs(urlsplit(url[1]).query)["cursor"][0]
    return None


def all_tasks(client: AuthenticatedClient, limit: int) -> Iterator[TaskOut]:
    """Every task of a listing sorted by title, page after page."""
    cursor: str | Unset = UNSET
    while True:
        page = list_tasks.sync_detailed(
            "me", client=client, limit=limit, sort=ListTasksSort.TITLE, cursor=cursor
        )
        if not isinstance(page.parsed, list):
            raise SystemExit(f"listing failed: {page.status_code}")
        yield from page.parsed
        following = next_cursor(page.headers.get("link"))
        if following is None:
            return
        cursor = following


def problem_type(
    response: Response[Problem | TaskOut] | Response[Problem | list[TaskOut]],
) -> ProblemType | None:
    return response.parsed.type_ if isinstance(response.parsed, Problem) else None


def main() -> None:
    base = os.environ["TASKVAULT_URL"]
    alice = AuthenticatedClient(base_url=base, token=os.environ["ALICE_TOKEN"])
    bob = AuthenticatedClient(base_url=base, token=os.environ["BOB_TOKEN"])

    created = create_task.sync_detailed(
        "me", client=alice, body=TaskWrite(title="Write the report", priority=Priority.HIGH)
    )
    task = created.parsed
    check(created.status_code == 201 and isinstance(task, TaskOut), "create")
    assert isinstance(task, TaskOut)
    check(not task.completed and task.priority is Priority.HIGH, "create: defaults and fields")
    check(created.headers["location"].endswith(f"/tasks/{task.id}"), "create: Location")
    etag = created.headers.get("etag", "")
    check(etag.startswith('"'), "create: ETag")

    for title in ("one", "two", "three", "four"):
        more = create_task.sync_detailed("me", client=alice, body=TaskWrite(title=title))
        check(isinstance(more.parsed, TaskOut), f"create {title}")
    high = list_tasks.sync(
        "me", client=alice, priority=Priority.HIGH, status=ListTasksStatus.PENDING
    )
    check(isinstance(high, list) and [t.id for t in high] == [task.id], "filter")

    titles = [each.title for each in all_tasks(alice, 2)]
    check(titles == ["Write the report", "four", "one", "three", "two"], "Link pages")

    fresh = get_task.sync_detailed("me", task.id, client=alice, if_none_match=etag)
    check(fresh.status_code == 304, "ETag: 304")

    toggled = complete_task.sync("me", task.id, client=alice)
    check(
        isinstance(toggled, TaskOut) and toggled.completed and toggled.version == 2,
        "toggle without a body",
    )
    set_ = complete_task.sync_detailed(
        "me", task.id, client=alice, body=CompletionBody(completed=False)
    )
    check(isinstance(set_.parsed, TaskOut) and not set_.parsed.completed, "toggle with a body")

    stale = replace_task.sync_detailed(
        "me", task.id, client=alice, if_match=etag, body=TaskWrite(title="Stale")
    )
    check(
        stale.status_code == 412 and problem_type(stale) is ProblemType.PRECONDITION_FAILED,
        "stale If-Match: 412",
    )

    replaced = replace_task.sync(
        "me",
        task.id,
        client=alice,
        if_match=set_.headers["etag"],
        body=TaskWrite(title="Rewritten", description="in full"),
    )
    check(isinstance(replaced, TaskOut) and replaced.priority is Priority.MEDIUM, "PUT")

    patched = update_task.sync(
        "me", task.id, client=alice, body=TaskPatchBody(description=None, title="Patched")
    )
    check(
        isinstance(patched, TaskOut) and patched.description is None and patched.title == "Patched",
        "PATCH",
    )

    foreign = get_task.sync_detailed("me", task.id, client=bob)
    check(foreign.status_code == 404 and problem_type(foreign) is ProblemType.NOT_FOUND, "bob: 404")
    forbidden = list_tasks.sync_detailed("alice", client=bob)
    check(
        forbidden.status_code == 403 and problem_type(forbidden) is ProblemType.FORBIDDEN,
        "bob: 403",
    )

    first = list_changes.sync("me", client=alice)
    check(
        isinstance(first, ChangesOut) and not first.has_more and len(first.changes) == 5,
        "feed: first sync",
    )
    assert isinstance(first, ChangesOut)
    deleted = delete_task.sync_detailed("me", task.id, client=alice)
    check(deleted.status_code == 204, "DELETE")
    polled = list_changes.sync("me", client=alice, since=first.next_)
    check(
        isinstance(polled, ChangesOut)
        and len(polled.changes) == 1
        and isinstance(polled.changes[0], DeleteChange)
        and polled.changes[0].id == task.id,
        "feed: poll",
    )

    batch = batch_tasks.sync(
        "me",
        client=alice,
        body=BatchBody(
            atomic=True,
            operations=[
                CreateOperation(
                    op="create", task=CreateOperationTask.from_dict({"title": "Batched"})
                ),
                CompleteOperation(op="complete", id=str(task.id)),
            ],
        ),
    )
    check(
        isinstance(batch, BatchOut) and [r.status for r in batch.results] == [424, 404],
        "batch: atomic",
    )
    assert isinstance(batch, BatchOut)
    dependent = batch.results[0].problem
    check(
        isinstance(dependent, Problem) and dependent.type_ is ProblemType.FAILED_DEPENDENCY,
        "batch: failed dependency",
    )


if __name__ == "__main__":
    main()
