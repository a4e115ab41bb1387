"""Stateful property test: three users share one service and never see each other.

Hypothesis draws a list of operations (create, get, list with random filters,
sort and page size while following every ``Link: rel="next"``, resume an old
cursor, replay another user's cursor, PATCH, PUT, toggle or set completion,
delete, poll the change feed, replay another user's sync token, batch),
each by alice, bob or carol, on their own path, on ``me``, or on
someone else's path (``ME`` and ``dave`` included), naming their own tasks,
other users' tasks (live or deleted), ids that never existed and malformed
ids, with or without a matching ``If-Match``. The operations run one by one
against a fresh app per example, and every answer is compared with a
pure-Python model of what each user owns: status code, problem body, the
whole task body (title, completed, priority, version, ``completed_at``, ...),
``ETag``, ``Location``, and list contents and order page by page. No response
(body or headers) ever names another user's task or another user. Every
404 is the same as for a task that never existed (apart from ``instance``),
every 403 the same as for a user that never existed.

The feed: a poll follows ``next`` while ``has_more`` (``limit`` 1 to 5, no
``wait``), from the actor's last token or, now and then, from nothing, into a
replica kept per user and built only from the feed (upserts replace by id,
tombstones remove). Every upsert is the task's current state in the model,
every tombstone one of the actor's deleted ids, each id once per walk; the
ids are those the model changed since the token (a write that changes
nothing is no change), and at the end the replica is the model's tasks of
that user, whole bodies included. Another user's token is the same 422 as a
malformed one. A batch is 1 to 5 create/replace/patch/complete/delete
operations (now and then with a body the single route refuses), atomic or
not; each result must be what the model says the single route would answer
(the same prediction and model update as for single writes), problems with
the single route's ``instance``; an atomic batch that fails changes nothing,
its failing operations keep their status and the others are 424.

After the last step, every user polls the feed to its end (its replica must
be the model), and each user's full list and (on SQL stores) the rows in the
table match the model.

Stores: memory, SQLite and PostgreSQL (``database_url``; PostgreSQL skips
itself without ``TEST_DATABASE_URL`` or Docker). Each example builds a new app
(so a new memory store) and empties the SQL tables first.

Hypothesis settings (``SETTINGS`` below), per store: ``max_examples=50``
(60 before polls and batches: an example now makes about 37 requests, not
27, and 50 keeps the test's time near what it was); each example is 3 to 8
creates on the users' own paths (``FIRST_CREATES``), then ``MIN_STEPS=10`` to
22 random operations (at most ``MAX_STEPS=30`` in all); ``deadline=None``;
``database=None`` (no example database is kept); ``report_multiple_bugs=False``
and phases explicit, generate and shrink (the explain phase traces every line
the app runs, which takes minutes and GBs); the ``too_slow``,
``function_scoped_fixture`` and ``filter_too_much`` health checks suppressed
(the ``@given`` function is nested in the test and called once per store,
with the fixture's URL). About 10-35 s per store on an idle 2-core machine.

The test is synchronous: pytest-asyncio resolves the async store fixtures, and
each example runs on one ``asyncio.Runner`` owned by the test, whose loop is
never installed as the thread's current loop.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cmp_to_key
from typing import Any, Literal, NamedTuple
from urllib.parse import parse_qsl, urlsplit

import httpx
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from adapters.sql.tables import tasks as tasks_table
from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests.support import SECRET, TASK_KEYS, USERS, auth
from tests.support.databases import APP_TABLES

FIRST_CREATES = (3, 8)
MIN_STEPS = 10
MAX_STEPS = 30
SETTINGS = settings(
    max_examples=50,
    deadline=None,
    database=None,
    report_multiple_bugs=False,
    # No explain phase: it traces every line run (FastAPI included), slowly and in memory.
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.filter_too_much,
    ],
)

BASE_URL = "http://taskvault.test"
NOBODY = "dave"
"""A user who never has a token nor a task."""
EVERYONE = (*USERS, NOBODY)
# "self" is the actor's own id; the rest are literal path values.
# Weighted towards the own path, so that most operations reach the store.
PATHS = ("self",) * 8 + ("me",) * 4 + (*USERS, NOBODY, "ME")
OWN_PATHS = ("self", "me")

PRIORITIES = ("low", "medium", "high")
RANK = {"low": 1, "medium": 2, "high": 3}
SORT_FIELDS = ("created_at", "updated_at", "due_at", "priority", "title")
SORTS = tuple(sign + name for name in SORT_FIELDS for sign in ("", "-"))
# Two of these are the same instant in different offsets: due_at ties happen.
DUE_DATES = (
    "2026-12-01T17:00:00Z",
    "2026-12-01T19:00:00+02:00",
    "2027-01-15T08:30:00Z",
    "2026-11-30T23:59:59.500000-05:00",
)
PIVOTS = ("2026-12-01T17:00:00Z", "2026-12-01T12:00:00+01:00")
# No letters that could spell a user id, so a user id in a body is a leak;
# LIKE wildcards, to check that a search treats them literally.
TEXT_ALPHABET = "aAxyZ_% 1"
TIME_KEYS = ("due_at", "completed_at", "created_at", "updated_at")
LINK = re.compile(r'<([^>]+)>; rel="next"')

Json = dict[str, Any]
IfMatch = Literal["none", "current", "wrong", "star"]
RefKind = Literal["own", "known", "unknown", "malformed"]


# ---------------------------------------------------------------- operations


@dataclass(frozen=True)
class Ref:
    """Which task an operation names; resolved against the model when it runs."""

    kind: RefKind
    index: int


@dataclass(frozen=True)
class Create:
    actor: str
    path: str
    body: Json


@dataclass(frozen=True)
class Get:
    actor: str
    path: str
    ref: Ref


@dataclass(frozen=True)
class ListTasks:
    actor: str
    path: str
    params: dict[str, str]


@dataclass(frozen=True)
class Resume:
    """Re-request an earlier next-page cursor of the actor's, after later changes."""

    actor: str
    path: str
    index: int


@dataclass(frozen=True)
class ForeignCursor:
    """Send another user's cursor on one's own path: a 422, never their tasks."""

    actor: str
    path: str
    index: int


@dataclass(frozen=True)
class Patch:
    actor: str
    path: str
    ref: Ref
    body: Json
    if_match: IfMatch


@dataclass(frozen=True)
class Replace:
    actor: str
    path: str
    ref: Ref
    body: Json
    if_match: IfMatch


@dataclass(frozen=True)
class Complete:
    """No body toggles; ``completed`` set sends ``{"completed": ...}``."""

    actor: str
    path: str
    ref: Ref
    completed: bool | None
    if_match: IfMatch


@dataclass(frozen=True)
class Delete:
    actor: str
    path: str
    ref: Ref
    if_match: IfMatch


@dataclass(frozen=True)
class Poll:
    """Follow the change feed to its end, from the actor's last token or from nothing."""

    actor: str
    path: str
    limit: int
    restart: bool


@dataclass(frozen=True)
class ForeignToken:
    """Send another user's sync token on one's own path: a 422, never their changes."""

    actor: str
    path: str
    index: int


Write = Create | Patch | Replace | Complete | Delete


@dataclass(frozen=True)
class Batch:
    """One POST .../tasks/batch; every write in it has the batch's actor and path."""

    actor: str
    path: str
    atomic: bool
    writes: tuple[Write, ...]


Operation = (
    Create
    | Get
    | ListTasks
    | Resume
    | ForeignCursor
    | Patch
    | Replace
    | Complete
    | Delete
    | Poll
    | ForeignToken
    | Batch
)

actors = st.sampled_from(USERS)
paths = st.sampled_from(PATHS)
own_paths = st.sampled_from(OWN_PATHS)
refs = st.builds(
    Ref,
    kind=st.sampled_from(("own",) * 5 + ("known", "known", "unknown", "malformed")),
    index=st.integers(0, 63),
)
if_matches = st.sampled_from(("none", "none", "current", "wrong", "star"))
titles = st.builds(
    lambda pad, core, tail: pad + core + tail,
    st.sampled_from(("", "", " ", "\t", "\n ")),
    st.text(TEXT_ALPHABET, min_size=1, max_size=6).filter(lambda s: bool(s.strip())),
    st.sampled_from(("", "", " ", "\t")),
)
descriptions = st.none() | st.text(TEXT_ALPHABET + "\n", max_size=6)
due_dates = st.none() | st.sampled_from(DUE_DATES)
OPTIONAL_FIELDS = {
    "description": descriptions,
    "completed": st.booleans(),
    "priority": st.sampled_from(PRIORITIES),
    "due_at": due_dates,
}
full_bodies = st.fixed_dictionaries({"title": titles}, optional=OPTIONAL_FIELDS)
patch_bodies = st.fixed_dictionaries({}, optional={"title": titles, **OPTIONAL_FIELDS})
_filters: st.SearchStrategy[dict[str, str]] = st.one_of(
    st.just({}),
    st.just({}),
    st.fixed_dictionaries({"status": st.sampled_from(("all", "pending", "completed"))}),
    st.fixed_dictionaries({"priority": st.sampled_from(PRIORITIES)}),
    st.fixed_dictionaries({"q": st.text(TEXT_ALPHABET, min_size=1, max_size=2)}),
    st.fixed_dictionaries({"due_before": st.sampled_from(PIVOTS)}),
    st.fixed_dictionaries({"due_after": st.sampled_from(PIVOTS)}),
)
list_params = st.builds(
    # Mostly small pages, so that Link headers and cursors come up; "" leaves limit out.
    lambda limit, sort, filters: {
        name: value for name, value in {"limit": limit, **sort, **filters}.items() if value
    },
    st.sampled_from(("1", "2", "2", "3", "4", "")),
    st.fixed_dictionaries({}, optional={"sort": st.sampled_from(SORTS)}),
    _filters,
)
BAD_BODIES: tuple[Json, ...] = (
    {"title": " \t"},
    {"title": "x", "priority": "urgent"},
    {"title": "x", "colour": "red"},
)
"""Bodies every route refuses with a 422; only batch writes send them (a single
route validates its body before it looks at the path user)."""
BATCH_SIZE = 5


def batch_writes(actor: str, path: str) -> st.SearchStrategy[Write]:
    """Writes as a batch by ``actor`` on ``path`` names them, now and then with a bad body."""
    me, where = st.just(actor), st.just(path)

    def spoilt(good: st.SearchStrategy[Json]) -> st.SearchStrategy[Json]:
        # one_of would give the bad bodies half the draws; this, one in six.
        return st.builds(
            lambda bad, body, instead: instead if bad else body,
            st.sampled_from((False,) * 5 + (True,)),
            good,
            st.sampled_from(BAD_BODIES),
        )

    return st.one_of(
        st.builds(Create, actor=me, path=where, body=spoilt(full_bodies)),
        st.builds(
            Replace,
            actor=me,
            path=where,
            ref=refs,
            body=spoilt(full_bodies),
            if_match=if_matches,
        ),
        st.builds(
            Patch,
            actor=me,
            path=where,
            ref=refs,
            body=spoilt(patch_bodies),
            if_match=if_matches,
        ),
        st.builds(
            Complete,
            actor=me,
            path=where,
            ref=refs,
            completed=st.none() | st.booleans(),
            if_match=if_matches,
        ),
        st.builds(Delete, actor=me, path=where, ref=refs, if_match=if_matches),
    )


def _batch(head: tuple[str, str, bool]) -> st.SearchStrategy[Batch]:
    actor, path, atomic = head
    return st.lists(batch_writes(actor, path), min_size=1, max_size=BATCH_SIZE).map(
        lambda writes: Batch(actor, path, atomic, tuple(writes))
    )


creates = st.builds(Create, actor=actors, path=paths, body=full_bodies)
lists = st.builds(ListTasks, actor=actors, path=paths, params=list_params)
resumes = st.builds(Resume, actor=actors, path=own_paths, index=st.integers(0, 63))
foreign_cursors = st.builds(ForeignCursor, actor=actors, path=own_paths, index=st.integers(0, 63))
# Mostly resuming from the last token; sometimes starting over without one.
polls = st.builds(
    Poll,
    actor=actors,
    path=paths,
    limit=st.integers(1, 5),
    restart=st.sampled_from((False, False, False, True)),
)
batches = st.tuples(actors, paths, st.booleans()).flatmap(_batch)
OPERATIONS: st.SearchStrategy[Operation] = st.one_of(
    creates,
    creates,
    creates,
    creates,
    st.builds(Get, actor=actors, path=paths, ref=refs),
    lists,
    lists,
    lists,
    resumes,
    resumes,
    foreign_cursors,
    foreign_cursors,
    st.builds(Patch, actor=actors, path=paths, ref=refs, body=patch_bodies, if_match=if_matches),
    st.builds(Replace, actor=actors, path=paths, ref=refs, body=full_bodies, if_match=if_matches),
    st.builds(
        Complete,
        actor=actors,
        path=paths,
        ref=refs,
        completed=st.none() | st.booleans(),
        if_match=if_matches,
    ),
    st.builds(Delete, actor=actors, path=paths, ref=refs, if_match=if_matches),
    polls,
    polls,
    polls,
    st.builds(ForeignToken, actor=actors, path=own_paths, index=st.integers(0, 63)),
    batches,
    batches,
)
# A few tasks first (so that most later steps find some), then anything.


def _concatenated(parts: tuple[list[Create], list[Operation]]) -> list[Operation]:
    return [*parts[0], *parts[1]]


SCENARIOS: st.SearchStrategy[list[Operation]] = st.tuples(
    st.lists(
        st.builds(Create, actor=actors, path=own_paths, body=full_bodies),
        min_size=FIRST_CREATES[0],
        max_size=FIRST_CREATES[1],
    ),
    st.lists(OPERATIONS, min_size=MIN_STEPS, max_size=MAX_STEPS - FIRST_CREATES[1]),
).map(_concatenated)


# ---------------------------------------------------------------- the model


class Fields(NamedTuple):
    """The writable fields, as the service stores them (trimmed title, UTC due date)."""

    title: str
    description: str | None
    completed: bool
    priority: str
    due_at: datetime | None


def utc(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def fields_from(body: Json, base: Fields) -> Fields:
    """``base`` with the fields ``body`` sends (PUT and POST pass the defaults)."""
    due = body.get("due_at", base.due_at)
    return Fields(
        title=body["title"].strip() if "title" in body else base.title,
        description=body.get("description", base.description),
        completed=body.get("completed", base.completed),
        priority=body.get("priority", base.priority),
        due_at=utc(due) if isinstance(due, str) else due,
    )


DEFAULTS = Fields(title="", description=None, completed=False, priority="medium", due_at=None)


@dataclass(frozen=True)
class ModelTask:
    id: str
    owner: str
    fields: Fields
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int

    def body(self) -> Json:
        """The expected response body, times as datetimes (see ``decode``)."""
        return {
            "id": self.id,
            "user_id": self.owner,
            "title": self.fields.title,
            "description": self.fields.description,
            "completed": self.fields.completed,
            "priority": self.fields.priority,
            "due_at": self.fields.due_at,
            "completed_at": self.completed_at,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "version": self.version,
        }


SortKey = tuple[Any, uuid.UUID]


def sort_of(params: dict[str, str]) -> tuple[str, bool]:
    sort = params.get("sort", "-created_at")
    return sort.lstrip("-"), sort.startswith("-")


def key_of(task: ModelTask, name: str) -> SortKey:
    value: Any
    match name:
        case "created_at":
            value = task.created_at
        case "updated_at":
            value = task.updated_at
        case "due_at":
            value = task.fields.due_at
        case "priority":
            value = RANK[task.fields.priority]
        case _:
            value = task.fields.title
    return value, uuid.UUID(task.id)


def _cmp(a: Any, b: Any) -> int:
    return int(a > b) - int(a < b)


def compare(a: SortKey, b: SortKey, descending: bool) -> int:
    """The contract's total order: the key, then the id; missing due dates last both ways."""
    (va, ia), (vb, ib) = a, b
    if (va is None) != (vb is None):
        return 1 if va is None else -1
    order = 0 if va is None else _cmp(va, vb)
    if order == 0:
        order = _cmp(ia, ib)
    return -order if descending else order


def matches(task: ModelTask, params: dict[str, str]) -> bool:
    f = task.fields
    status = params.get("status", "all")
    if (status == "pending" and f.completed) or (status == "completed" and not f.completed):
        return False
    if "priority" in params and f.priority != params["priority"]:
        return False
    needle = params.get("q", "").casefold()
    if (
        needle
        and needle not in f.title.casefold()
        and needle not in (f.description or "").casefold()
    ):
        return False
    if "due_before" in params and (f.due_at is None or f.due_at >= utc(params["due_before"])):
        return False
    return "due_after" not in params or (
        f.due_at is not None and f.due_at > utc(params["due_after"])
    )


@dataclass(frozen=True)
class SavedCursor:
    issuer: str
    params: dict[str, str]
    cursor: str
    position: SortKey


def decode(body: Any) -> Json:
    """A task body with its times parsed; every time is UTC with a ``Z``."""
    assert isinstance(body, dict), body
    assert set(body) == TASK_KEYS, body
    out = dict(body)
    for name in TIME_KEYS:
        value = body[name]
        if value is not None:
            assert isinstance(value, str), body
            assert value.endswith("Z"), body
            out[name] = datetime.fromisoformat(value)
    return out


def describe(resp: httpx.Response) -> str:
    return f"{resp.request.method} {resp.request.url} -> {resp.status_code} {resp.text[:300]}"


class Prediction(NamedTuple):
    """What the model says a write's single route answers, on the actor's own path."""

    status: int
    problem: str | None = None
    """For a refusal: the key of its problem body in ``Run.problems``."""
    before: ModelTask | None = None
    """The task the write acts on (none for a create or a refusal)."""
    fields: Fields | None = None
    """The fields the write leaves (none for a delete or a refusal)."""


class Answer(NamedTuple):
    """One write's answer: a single route's response, or one result of a batch."""

    status: int
    body: Any
    """The task, the problem without its ``instance``, or None (a 204)."""
    etag: str | None
    where: str


def rejection_key(op: Write) -> str:
    return f"rejected {type(op).__name__} {sorted(getattr(op, 'body', {}).items())}"


@dataclass
class Replica:
    """A user's copy of their tasks, built only from the change feed."""

    token: str | None = None
    tasks: dict[str, Json] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)
    """Ids the model changed since ``token``."""
    born: set[str] = field(default_factory=set)
    """Ids created since ``token``: created and deleted since, they may show as a delete or not."""


FEED_KEYS = {"changes", "next", "has_more"}


# ---------------------------------------------------------------- one example


@dataclass
class Run:
    """One example: the client, the model, and the checks of every answer."""

    client: httpx.AsyncClient
    engine: AsyncEngine | None
    headers: dict[str, dict[str, str]] = field(
        default_factory=lambda: {user: auth(user) for user in USERS}
    )
    live: dict[str, ModelTask] = field(default_factory=dict)
    owner_of: dict[str, str] = field(default_factory=dict)
    """Every id ever created, deleted ones included, with its owner."""
    last_version: dict[str, int] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    cursors: list[SavedCursor] = field(default_factory=list)
    tokens: list[tuple[str, str]] = field(default_factory=list)
    """Every sync token the feed issued, with the user it was issued to."""
    replicas: dict[str, Replica] = field(default_factory=lambda: {u: Replica() for u in USERS})
    problems: dict[str, Json] = field(default_factory=dict)
    """Problem bodies (without ``instance``) every answer of that kind must equal:
    taken from the single routes in ``setup`` or before a batch, or else the first seen."""
    not_found_headers: frozenset[str] = frozenset()

    # ------------------------------------------------------------ requests

    async def call(
        self,
        actor: str,
        method: str,
        url: str,
        *,
        body: Json | None = None,
        params: dict[str, str] | None = None,
        if_match: str | None = None,
    ) -> httpx.Response:
        headers = dict(self.headers[actor])
        if if_match is not None:
            headers["If-Match"] = if_match
        resp = await self.client.request(method, url, headers=headers, params=params, json=body)
        self.check_common(actor, resp)
        return resp

    def check_common(self, actor: str, resp: httpx.Response) -> None:
        """Headers every /api answer has, and nothing of anyone else in it."""
        assert resp.headers.get("cache-control") == "private, no-cache", describe(resp)
        assert resp.headers.get("x-content-type-options") == "nosniff", describe(resp)
        # A batch names ids in its body, and its problems name them back.
        requested = str(resp.request.url) + resp.request.content.decode()
        everything = resp.text + "\n" + "\n".join(resp.headers.values())
        for task_id, owner in self.owner_of.items():
            if owner != actor and task_id not in requested:
                assert task_id not in everything, f"{owner}'s task leaked: {describe(resp)}"
        # Link and a feed's next hold random-looking tokens, so user ids are looked for elsewhere.
        text = resp.text
        if resp.status_code == 200 and resp.request.url.path.endswith("/changes"):
            text = text.replace(resp.json()["next"], "")
        shown = "\n".join((text, resp.headers.get("location", ""), resp.headers.get("etag", "")))
        link = LINK.fullmatch(resp.headers.get("link", ""))
        if link is not None:
            shown += "\n" + urlsplit(link.group(1)).path
        for user in EVERYONE:
            if user != actor and user not in resp.request.url.path:
                assert user not in shown, f"{user} named: {describe(resp)}"

    def problem(self, resp: httpx.Response, status: int) -> Json:
        assert resp.status_code == status, describe(resp)
        assert resp.headers["content-type"].startswith("application/problem+json"), describe(resp)
        body = resp.json()
        assert isinstance(body, dict), describe(resp)
        assert body["status"] == status, describe(resp)
        assert body.get("instance") == resp.request.url.path, describe(resp)
        return {k: v for k, v in body.items() if k != "instance"}

    def expect_not_found(self, resp: httpx.Response) -> None:
        """Exactly the answer for a task that never existed, apart from ``instance``."""
        assert self.problem(resp, 404) == self.problems["not_found"], describe(resp)
        assert frozenset(resp.headers) == self.not_found_headers, describe(resp)

    def expect_forbidden(self, resp: httpx.Response) -> None:
        """Exactly the answer for a user that never existed, apart from ``instance``."""
        assert self.problem(resp, 403) == self.problems["forbidden"], describe(resp)

    def expect_task(self, resp: httpx.Response, status: int, task: ModelTask) -> None:
        assert resp.status_code == status, describe(resp)
        assert resp.headers["content-type"].startswith("application/json"), describe(resp)
        assert decode(resp.json()) == task.body(), describe(resp)
        assert resp.headers["etag"] == f'"{task.id}.{task.version}"', describe(resp)

    def expect_problem(self, key: str, answer: Answer) -> None:
        reference = self.problems.setdefault(key, answer.body)
        assert answer.body == reference, answer.where

    def answer_of(self, resp: httpx.Response) -> Answer:
        """A single write route's response as an ``Answer``."""
        where = describe(resp)
        if resp.status_code >= 400:
            if resp.status_code == 404:
                assert frozenset(resp.headers) == self.not_found_headers, where
            return Answer(resp.status_code, self.problem(resp, resp.status_code), None, where)
        if resp.status_code == 204:
            assert resp.content == b"", where
            return Answer(204, None, None, where)
        assert resp.headers["content-type"].startswith("application/json"), where
        return Answer(resp.status_code, resp.json(), resp.headers.get("etag"), where)

    # ------------------------------------------------------------ resolution

    def owner_path(self, actor: str, path: str) -> str:
        return actor if path == "self" else path

    def allowed(self, actor: str, path: str) -> bool:
        return self.owner_path(actor, path) in (actor, "me")

    def url(self, actor: str, path: str, task_id: str | None = None, suffix: str = "") -> str:
        base = f"/api/{self.owner_path(actor, path)}/tasks"
        return base if task_id is None else f"{base}/{task_id}{suffix}"

    def resolve(self, ref: Ref, actor: str) -> str:
        own = [tid for tid in self.created if tid in self.live and self.live[tid].owner == actor]
        if ref.kind == "own" and own:
            return own[ref.index % len(own)]
        if ref.kind in ("own", "known") and self.created:
            return self.created[ref.index % len(self.created)]
        if ref.kind == "malformed":
            bad = ["nope", "42", "00000000-0000-0000-0000-00000000000g"]
            bad += [tid + "0" for tid in self.created[:1]]
            return bad[ref.index % len(bad)]
        # A well-formed UUIDv7 from 1970: never one the service generated.
        return str(uuid.UUID(int=(0x7 << 76) | (0b10 << 62) | ((ref.index + 1) << 80)))

    def task_of(self, op: Write) -> str | None:
        return None if isinstance(op, Create) else self.resolve(op.ref, op.actor)

    def precondition(self, op: Write, task_id: str | None) -> tuple[str | None, int | None]:
        """The If-Match ``op`` sends, and the version it names (None: any will do)."""
        if isinstance(op, Create) or task_id is None:
            return None, None
        version = self.last_version.get(task_id, 1)
        match op.if_match:
            case "none":
                return None, None
            case "star":
                return "*", None
            case "wrong":
                version += 7
        return f'"{task_id}.{version}"', version

    def expected_list(self, actor: str, params: dict[str, str]) -> list[ModelTask]:
        name, descending = sort_of(params)
        mine = [t for t in self.live.values() if t.owner == actor and matches(t, params)]

        def order(a: ModelTask, b: ModelTask) -> int:
            return compare(key_of(a, name), key_of(b, name), descending)

        return sorted(mine, key=cmp_to_key(order))

    # ------------------------------------------------------------ the model's writes

    def changed_fields(self, op: Patch | Replace | Complete, fields: Fields) -> Fields:
        match op:
            case Patch():
                return fields_from(op.body, fields)
            case Replace():
                return fields_from(op.body, DEFAULTS)
        wanted = not fields.completed if op.completed is None else op.completed
        return fields._replace(completed=wanted)

    def predict(
        self, op: Write, task_id: str | None, sent: int | None, live: dict[str, ModelTask]
    ) -> Prediction:
        """``op``'s answer when ``live`` are the tasks; ``sent``: the If-Match version."""
        if getattr(op, "body", None) in BAD_BODIES:
            return Prediction(422, rejection_key(op))
        if isinstance(op, Create):
            return Prediction(201, fields=fields_from(op.body, DEFAULTS))
        task = None if task_id is None else live.get(task_id)
        if task is None or task.owner != op.actor:
            return Prediction(404, "not_found")
        if sent is not None and sent != task.version:
            return Prediction(412, "precondition")
        if isinstance(op, Delete):
            return Prediction(204, before=task)
        return Prediction(200, before=task, fields=self.changed_fields(op, task.fields))

    def settle(self, op: Write, task_id: str | None, expected: Prediction, answer: Answer) -> None:
        """Check a write's answer against the model's prediction, then apply it to the model."""
        assert answer.status == expected.status, answer.where
        if expected.problem is not None:
            self.expect_problem(expected.problem, answer)
            return
        if expected.status == 204:
            assert answer.body is None, answer.where
            assert task_id is not None, answer.where
            self.drop(task_id)
            return
        got = decode(answer.body)
        assert expected.fields is not None, answer.where
        if expected.before is None:
            task = self.created_task(op.actor, expected.fields, got, answer.where)
        elif expected.fields == expected.before.fields:
            # A write that changes nothing keeps version, updated_at and completed_at.
            task = expected.before
        else:
            task = self.updated_task(expected.before, expected.fields, got, answer.where)
        assert got == task.body(), answer.where
        assert answer.etag == f'"{task.id}.{task.version}"', answer.where
        if task is not expected.before:
            self.put(task)

    def created_task(self, actor: str, fields: Fields, got: Json, where: str) -> ModelTask:
        task_id = got["id"]
        assert isinstance(task_id, str), where
        parsed = uuid.UUID(task_id)
        assert str(parsed) == task_id, where
        assert parsed.version == 7, where
        assert task_id not in self.owner_of, where
        created = got["created_at"]
        return ModelTask(
            id=task_id,
            owner=actor,
            fields=fields,
            completed_at=created if fields.completed else None,
            created_at=created,
            updated_at=created,
            version=1,
        )

    def updated_task(self, before: ModelTask, fields: Fields, got: Json, where: str) -> ModelTask:
        updated = got["updated_at"]
        assert isinstance(updated, datetime), where
        assert updated >= before.updated_at, where
        if fields.completed == before.fields.completed:
            completed_at = before.completed_at
        else:
            completed_at = updated if fields.completed else None
        return replace(
            before,
            fields=fields,
            completed_at=completed_at,
            updated_at=updated,
            version=before.version + 1,
        )

    def put(self, task: ModelTask) -> None:
        replica = self.replicas[task.owner]
        if task.id not in self.owner_of:
            self.owner_of[task.id] = task.owner
            self.created.append(task.id)
            replica.born.add(task.id)
        self.live[task.id] = task
        self.last_version[task.id] = task.version
        replica.changed.add(task.id)

    def drop(self, task_id: str) -> None:
        task = self.live.pop(task_id)
        self.replicas[task.owner].changed.add(task_id)

    # ------------------------------------------------------------ setup and end

    async def setup(self) -> None:
        missing = self.resolve(Ref("unknown", 999), "alice")
        resp = await self.call("alice", "GET", f"/api/alice/tasks/{missing}")
        self.problems["not_found"] = self.problem(resp, 404)
        self.not_found_headers = frozenset(resp.headers)
        resp = await self.call("alice", "GET", f"/api/{NOBODY}/tasks")
        self.problems["forbidden"] = self.problem(resp, 403)
        params = {"since": "nope"}
        resp = await self.call("alice", "GET", "/api/alice/tasks/changes", params=params)
        self.problems["bad_token"] = self.problem(resp, 422)

    async def finish(self) -> None:
        for user in USERS:
            await self.sync(user, "self", 3, restart=False)
            params = {"sort": "created_at", "limit": "1"}
            resp = await self.call(user, "GET", f"/api/{user}/tasks", params=params)
            await self.check_pages(user, resp, self.expected_list(user, params), params)
        if self.engine is not None:
            await self.check_rows(self.engine)

    async def check_rows(self, engine: AsyncEngine) -> None:
        """The table holds exactly the model's tasks, each under its owner."""
        async with engine.connect() as conn:
            for user in USERS:
                async with conn.begin():
                    if engine.dialect.name == "postgresql":
                        await conn.execute(
                            text("SELECT set_config('taskvault.user_id', :user, true)"),
                            {"user": user},
                        )
                    rows = await conn.execute(
                        select(tasks_table.c.id, tasks_table.c.version).where(
                            tasks_table.c.user_id == user
                        )
                    )
                    stored = {(str(row.id), row.version) for row in rows}
                expected = {(t.id, t.version) for t in self.live.values() if t.owner == user}
                assert stored == expected, user

    # ------------------------------------------------------------ operations

    async def apply(self, op: Operation) -> None:
        match op:
            case Create() | Patch() | Replace() | Complete() | Delete():
                await self.write(op)
            case Get():
                await self.get(op)
            case ListTasks():
                await self.list_tasks(op)
            case Resume():
                await self.resume(op)
            case ForeignCursor():
                await self.foreign_cursor(op)
            case Poll():
                await self.poll(op)
            case ForeignToken():
                await self.foreign_token(op)
            case Batch():
                await self.batch(op)

    def single_request(self, op: Write, task_id: str | None) -> tuple[str, str, Json | None]:
        """The method, URL and body of ``op``'s single route."""
        match op:
            case Create():
                return "POST", self.url(op.actor, op.path), op.body
            case Patch():
                return "PATCH", self.url(op.actor, op.path, task_id), op.body
            case Replace():
                return "PUT", self.url(op.actor, op.path, task_id), op.body
            case Complete():
                body = None if op.completed is None else {"completed": op.completed}
                return "PATCH", self.url(op.actor, op.path, task_id, "/complete"), body
        return "DELETE", self.url(op.actor, op.path, task_id), None

    async def write(self, op: Write) -> None:
        task_id = self.task_of(op)
        header, sent = self.precondition(op, task_id)
        method, url, body = self.single_request(op, task_id)
        resp = await self.call(op.actor, method, url, body=body, if_match=header)
        if not self.allowed(op.actor, op.path):
            self.expect_forbidden(resp)
            return
        self.settle(op, task_id, self.predict(op, task_id, sent, self.live), self.answer_of(resp))
        if isinstance(op, Create):
            location = f"/api/{op.actor}/tasks/{resp.json()['id']}"
            assert resp.headers["location"].endswith(location), describe(resp)

    def target(self, actor: str, task_id: str) -> ModelTask | None:
        """The task the actor may act on under this id, or None (then: 404)."""
        task = self.live.get(task_id)
        return task if task is not None and task.owner == actor else None

    async def get(self, op: Get) -> None:
        task_id = self.resolve(op.ref, op.actor)
        resp = await self.call(op.actor, "GET", self.url(op.actor, op.path, task_id))
        task = self.target(op.actor, task_id)
        if not self.allowed(op.actor, op.path):
            self.expect_forbidden(resp)
        elif task is None:
            self.expect_not_found(resp)
        else:
            self.expect_task(resp, 200, task)

    # ------------------------------------------------------------ batches

    def batch_item(self, op: Write, task_id: str | None, if_match: str | None) -> Json:
        match op:
            case Create():
                return {"op": "create", "task": op.body}
            case Replace():
                item: Json = {"op": "replace", "id": task_id, "task": op.body}
            case Patch():
                item = {"op": "patch", "id": task_id, "fields": op.body}
            case Complete():
                # null toggles, as an omitted body does on the single route.
                item = {"op": "complete", "id": task_id, "completed": op.completed}
            case Delete():
                item = {"op": "delete", "id": task_id}
        return item if if_match is None else {**item, "if_match": if_match}

    async def learn_rejection(self, op: Write) -> None:
        """The 422 the single route gives for ``op``'s bad body (it changes nothing)."""
        key = rejection_key(op)
        if key in self.problems:
            return
        missing = None if isinstance(op, Create) else self.resolve(Ref("unknown", 999), op.actor)
        method, url, body = self.single_request(replace(op, path="self"), missing)
        resp = await self.call(op.actor, method, url, body=body)
        self.problems[key] = self.problem(resp, 422)

    def batch_answer(self, op: Write, task_id: str | None, result: Any, where: str) -> Answer:
        assert isinstance(result, dict), where
        status = result.get("status")
        assert isinstance(status, int), where
        if status in (200, 201):
            assert set(result) == {"status", "task", "etag"}, where
            return Answer(status, result["task"], result["etag"], where)
        if status == 204:
            assert result == {"status": 204}, where
            return Answer(status, None, None, where)
        assert set(result) == {"status", "problem"}, where
        problem = result["problem"]
        assert isinstance(problem, dict), where
        assert problem["status"] == status, where
        # The instance is the single route's path.
        assert problem.get("instance") == self.url(op.actor, op.path, task_id), where
        return Answer(status, {k: v for k, v in problem.items() if k != "instance"}, None, where)

    def dry_run(
        self, writes: tuple[Write, ...], ids: list[str | None], sent: list[int | None]
    ) -> list[Prediction]:
        """The writes' predictions in turn, each as if the ones before took effect."""
        live = dict(self.live)
        predictions = []
        for op, task_id, version in zip(writes, ids, sent, strict=True):
            expected = self.predict(op, task_id, version, live)
            predictions.append(expected)
            before = expected.before
            if before is None or task_id is None:
                continue
            if expected.fields is None:
                del live[task_id]
            elif expected.fields != before.fields:
                live[task_id] = replace(before, fields=expected.fields, version=before.version + 1)
        return predictions

    async def batch(self, op: Batch) -> None:
        ids = [self.task_of(write) for write in op.writes]
        headers, sent = zip(
            *(self.precondition(write, tid) for write, tid in zip(op.writes, ids, strict=True)),
            strict=True,
        )
        for write in op.writes:
            if getattr(write, "body", None) in BAD_BODIES:
                await self.learn_rejection(write)
        items = [self.batch_item(*args) for args in zip(op.writes, ids, headers, strict=True)]
        body = {"atomic": op.atomic, "operations": items}
        resp = await self.call(op.actor, "POST", self.url(op.actor, op.path) + "/batch", body=body)
        if not self.allowed(op.actor, op.path):
            self.expect_forbidden(resp)
            return
        assert resp.status_code == 200, describe(resp)
        answered = resp.json()
        assert set(answered) == {"results"}, describe(resp)
        results = answered["results"]
        assert len(results) == len(op.writes), describe(resp)
        answers = [
            self.batch_answer(write, tid, result, f"{describe(resp)} [{index}]")
            for index, (write, tid, result) in enumerate(zip(op.writes, ids, results, strict=True))
        ]
        if op.atomic:
            expected = self.dry_run(op.writes, ids, list(sent))
            failed = [i for i, p in enumerate(expected) if p.problem is not None]
            # A bad body fails before anything runs; else the first failure stops the batch.
            rejected = [i for i, p in enumerate(expected) if p.status == 422]
            if failed:
                for index, (prediction, answer) in enumerate(zip(expected, answers, strict=True)):
                    if index in (rejected or failed[:1]):
                        assert answer.status == prediction.status, answer.where
                        assert prediction.problem is not None
                        self.expect_problem(prediction.problem, answer)
                    else:
                        assert answer.status == 424, answer.where
                        self.expect_problem("failed_dependency", answer)
                return
        for write, tid, version, answer in zip(op.writes, ids, sent, answers, strict=True):
            self.settle(write, tid, self.predict(write, tid, version, self.live), answer)

    # ------------------------------------------------------------ the change feed

    def feed_url(self, actor: str, path: str) -> str:
        return self.url(actor, path) + "/changes"

    async def poll(self, op: Poll) -> None:
        if self.allowed(op.actor, op.path):
            await self.sync(op.actor, op.path, op.limit, restart=op.restart)
            return
        params = {"limit": str(op.limit)}
        token = self.replicas[op.actor].token
        if token is not None and not op.restart:
            params["since"] = token
        resp = await self.call(op.actor, "GET", self.feed_url(op.actor, op.path), params=params)
        self.expect_forbidden(resp)

    async def sync(self, actor: str, path: str, limit: int, *, restart: bool) -> None:
        """Follow the feed to ``has_more: false``; the replica must then be the model's tasks.

        Nothing writes during the walk, so every change is the task's current
        state, each id comes once, and the ids are exactly those changed since
        the token. A walk from nothing: every live task, and no deletes on its
        first page (later pages have a since, so tombstones to ignore).
        """
        replica = self.replicas[actor]
        fresh = restart or replica.token is None
        since = None if fresh else replica.token
        tasks = {} if fresh else dict(replica.tasks)
        mine = {t.id: t for t in self.live.values() if t.owner == actor}
        seen: set[str] = set()
        while True:
            params = {"limit": str(limit)} | ({} if since is None else {"since": since})
            resp = await self.call(actor, "GET", self.feed_url(actor, path), params=params)
            assert resp.status_code == 200, describe(resp)
            page = resp.json()
            assert set(page) == FEED_KEYS, describe(resp)
            changes = page["changes"]
            assert isinstance(changes, list), describe(resp)
            assert len(changes) <= limit, describe(resp)
            for change in changes:
                task_id = self.replay(actor, change, tasks, describe(resp))
                assert task_id not in seen, describe(resp)
                # Only pages after the first carry a since, and so tombstones.
                assert since is not None or change["type"] == "upsert", describe(resp)
                seen.add(task_id)
            since = page["next"]
            assert isinstance(since, str), describe(resp)
            self.tokens.append((actor, since))
            if page["has_more"] is False:
                break
            assert page["has_more"] is True, describe(resp)
            assert len(changes) == limit, describe(resp)
        assert tasks == {tid: task.body() for tid, task in mine.items()}, actor
        if fresh:
            assert set(mine) <= seen, actor
        else:
            assert replica.changed - (replica.born - set(mine)) <= seen <= replica.changed, actor
        self.replicas[actor] = Replica(token=since, tasks=tasks)

    def replay(self, actor: str, change: Any, tasks: dict[str, Json], where: str) -> str:
        """Apply one change of the feed to a replica; the id it names."""
        assert isinstance(change, dict), where
        if change.get("type") == "upsert":
            assert set(change) == {"type", "task"}, where
            task = decode(change["task"])
            task_id = task["id"]
            current = self.live.get(task_id)
            assert current is not None, where
            assert current.owner == actor, where
            assert task == current.body(), where
            tasks[task_id] = task
            return str(task_id)
        assert change.get("type") == "delete", where
        assert set(change) == {"type", "id", "deleted_at"}, where
        task_id = change["id"]
        assert self.owner_of.get(task_id) == actor, where
        assert task_id not in self.live, where
        deleted_at = change["deleted_at"]
        assert isinstance(deleted_at, str), where
        assert deleted_at.endswith("Z"), where
        tasks.pop(task_id, None)
        return str(task_id)

    async def foreign_token(self, op: ForeignToken) -> None:
        theirs = [token for issuer, token in self.tokens if issuer != op.actor]
        if not theirs:
            return
        params = {"since": theirs[op.index % len(theirs)]}
        resp = await self.call(op.actor, "GET", self.feed_url(op.actor, op.path), params=params)
        assert self.problem(resp, 422) == self.problems["bad_token"], describe(resp)

    # ------------------------------------------------------------ lists

    async def list_tasks(self, op: ListTasks) -> None:
        resp = await self.call(op.actor, "GET", self.url(op.actor, op.path), params=op.params)
        if not self.allowed(op.actor, op.path):
            self.expect_forbidden(resp)
            return
        await self.check_pages(op.actor, resp, self.expected_list(op.actor, op.params), op.params)

    async def resume(self, op: Resume) -> None:
        mine = [c for c in self.cursors if c.issuer == op.actor]
        if not mine:
            return
        saved = mine[op.index % len(mine)]
        params = {**saved.params, "cursor": saved.cursor}
        resp = await self.call(op.actor, "GET", self.url(op.actor, op.path), params=params)
        name, descending = sort_of(saved.params)
        rest = [
            t
            for t in self.expected_list(op.actor, saved.params)
            if compare(key_of(t, name), saved.position, descending) > 0
        ]
        await self.check_pages(op.actor, resp, rest, saved.params)

    async def foreign_cursor(self, op: ForeignCursor) -> None:
        theirs = [c for c in self.cursors if c.issuer != op.actor]
        if not theirs:
            return
        saved = theirs[op.index % len(theirs)]
        params = {**saved.params, "cursor": saved.cursor}
        resp = await self.call(op.actor, "GET", self.url(op.actor, op.path), params=params)
        body = self.problem(resp, 422)
        assert any(error["loc"] == ["query", "cursor"] for error in body["errors"]), describe(resp)

    async def check_pages(
        self,
        actor: str,
        resp: httpx.Response,
        expected: list[ModelTask],
        params: dict[str, str],
    ) -> None:
        """Follow ``Link: rel="next"`` to the end; pages must be the model's list, cut up."""
        limit = int(params.get("limit", "50"))
        name, _ = sort_of(params)
        seen = 0
        while True:
            assert resp.status_code == 200, describe(resp)
            items = resp.json()
            assert isinstance(items, list), describe(resp)
            page = expected[seen : seen + limit]
            assert [decode(item) for item in items] == [t.body() for t in page], describe(resp)
            seen += len(page)
            link = resp.headers.get("link")
            if seen == len(expected):
                assert link is None, describe(resp)
                return
            assert link is not None, describe(resp)
            found = LINK.fullmatch(link)
            assert found is not None, link
            next_url = urlsplit(found.group(1))
            assert next_url.path == resp.request.url.path, link
            query = dict(parse_qsl(next_url.query, keep_blank_values=True))
            cursor = query.pop("cursor")
            assert query == {k: v for k, v in params.items() if k != "cursor"}, link
            self.cursors.append(SavedCursor(actor, dict(query), cursor, key_of(page[-1], name)))
            resp = await self.call(actor, "GET", found.group(1))


async def wipe(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text(f"TRUNCATE {APP_TABLES}"))
        else:
            await conn.execute(text("DELETE FROM tasks"))
            await conn.execute(text("DELETE FROM idempotency_keys"))


def _checking_engine(database_url: str) -> AsyncEngine:
    """The test's own engine, to wipe and check the table; through PgBouncer
    too, whose server connections would keep its prepared statements' names."""
    if not database_url.startswith("postgresql"):
        return create_async_engine(database_url)
    return create_async_engine(
        database_url,
        poolclass=NullPool,
        connect_args={"prepared_statement_name_func": lambda: f"__check_{uuid.uuid4().hex}__"},
    )


async def run_example(database_url: str, operations: list[Operation]) -> None:
    config = Settings(database_url=database_url, jwt_secret=SecretStr(SECRET), _env_file=None)  # type: ignore[call-arg]
    app = create_app(config)
    engine = None if database_url == "memory://" else _checking_engine(database_url)
    try:
        async with app.router.lifespan_context(app):
            if engine is not None:
                await wipe(engine)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
                run = Run(client=client, engine=engine)
                await run.setup()
                for operation in operations:
                    await run.apply(operation)
                await run.finish()
    finally:
        if engine is not None:
            await engine.dispose()


def test_three_users_only_ever_see_their_own_tasks(database_url: str) -> None:
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:

        @SETTINGS
        @given(operations=SCENARIOS)
        def check(operations: list[Operation]) -> None:
            try:
                runner.run(run_example(database_url, operations))
            except BaseException as error:
                # Under pytest this Hypothesis prints the failing case as "operations=,".
                steps = "".join(f"\n    {operation!r}," for operation in operations)
                error.add_note(f"Operations of the failing case:{steps}")
                raise

        check()
