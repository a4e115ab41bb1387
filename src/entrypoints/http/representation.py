"""How a task looks on the wire: JSON body, ETag, and conditional headers."""

from __future__ import annotations

from application.commands import Versions
from domain.task import Task
from domain.task_shape import Document, to_document


def task_body(task: Task) -> Document:
    """The JSON body of a task: ``to_document``, rendered by ``jsonbody``."""
    return to_document(task)


def etag(task: Task) -> str:
    """A strong validator: the id and version name exactly one state of a task."""
    return f'"{task.id}.{task.version}"'


def _entity_tags(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def if_match_versions(header: str | None, task_id: str) -> Versions:
    """Versions of ``task_id`` that an If-Match header admits (None: no precondition).

    If-Match uses strong comparison, so weak tags never match; ``*`` admits
    any existing task.
    """
    if header is None:
        return None
    tags = _entity_tags(header)
    if tags == ["*"]:
        return None
    prefix = f'"{task_id.lower()}.'
    versions: set[int] = set()
    for tag in tags:
        if tag.lower().startswith(prefix) and tag.endswith('"'):
            version = tag[len(prefix) : -1]
            if version.isascii() and version.isdigit() and len(version) < 12:
                versions.add(int(version))
    return frozenset(versions)


def none_match(header: str | None, current: str) -> bool:
    """True when If-None-Match names the current ETag (weak comparison)."""
    if header is None:
        return False
    tags = _entity_tags(header)
    return tags == ["*"] or any(tag.removeprefix("W/") == current for tag in tags)
