"""The ``Task`` entity: field rules, versioning and completion bookkeeping."""

from __future__ import annotations

import unicodedata
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import InvalidTask
from domain.task import (
    DESCRIPTION_MAX_LENGTH,
    TITLE_MAX_LENGTH,
    Priority,
    Task,
    TaskFields,
    check_description,
    check_due_at,
    normalize_title,
    parse_task_id,
)

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
DUE = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
TASK_ID = uuid.UUID("0192f5d0-8b7e-7c3a-9f10-2b6d7e4c1a55")

# Characters hypothesis should try often: controls, separators, surrogates.
_AWKWARD = [
    "\x00", "\x07", "\t", "\n", "\r", "\x0b", "\x1b", "\x1f", "\x7f", "\x85", "\x9f",
    " ", "\u00a0", "\u2028", "\u3000", "\ud800", "\udfff", "\u200d", "\U0001f389",
]  # fmt: skip
any_text = st.text(
    alphabet=st.one_of(st.characters(exclude_categories=()), st.sampled_from(_AWKWARD)),
    max_size=40,
)
# Every C0 and C1 control character, DEL included.
CONTROLS = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))]
# Printable-ish text: no control characters (Cc) and no lone surrogates (Cs).
clean_char = st.characters(exclude_categories=("Cc", "Cs"))


def _is_control(char: str) -> bool:
    return unicodedata.category(char) == "Cc"


def _is_surrogate(char: str) -> bool:
    return unicodedata.category(char) == "Cs"


def make_task(
    *,
    title: str = "Write the report",
    description: str | None = "Quarterly numbers",
    completed: bool = False,
    priority: Priority = Priority.MEDIUM,
    due_at: datetime | None = DUE,
    now: datetime = NOW,
) -> Task:
    fields = TaskFields(
        title=title,
        description=description,
        completed=completed,
        priority=priority,
        due_at=due_at,
    )
    return Task.new(task_id=TASK_ID, owner="alice", fields=fields, now=now)


# --- title ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("Write the report", "Write the report"),
        ("  Write the report \t\n", "Write the report"),
        ("\u3000\u00a0wide spaces\u2003", "wide spaces"),
        ("inner   spaces kept", "inner   spaces kept"),
        ("Café ☕ 🎉 e\u0301", "Café ☕ 🎉 e\u0301"),
    ],
)
def test_title_is_stored_trimmed(raw: str, stored: str) -> None:
    assert normalize_title(raw) == stored
    assert TaskFields(title=raw).title == stored


def test_title_length_limit_counts_after_trimming() -> None:
    longest = "x" * TITLE_MAX_LENGTH
    assert TITLE_MAX_LENGTH == 200
    assert TaskFields(title=longest).title == longest
    assert TaskFields(title=f"   {longest}\t\n ").title == longest
    with pytest.raises(InvalidTask) as excinfo:
        TaskFields(title=longest + "y")
    assert excinfo.value.field == "title"


def test_title_length_counts_characters_not_bytes() -> None:
    title = "é" * TITLE_MAX_LENGTH  # 400 bytes in UTF-8, still 200 characters
    assert TaskFields(title=title).title == title


@pytest.mark.parametrize("raw", ["", " ", "\t\n\r ", "\u3000\u00a0"])
def test_blank_title_is_rejected(raw: str) -> None:
    with pytest.raises(InvalidTask) as excinfo:
        TaskFields(title=raw)
    assert excinfo.value.field == "title"


@pytest.mark.parametrize(
    "control",
    ["\x00", "\x01", "\x07", "\x08", "\t", "\n", "\r", "\x1b", "\x1f", "\x7f", "\x80", "\x85",
     "\x9f"],
)  # fmt: skip
def test_title_with_a_control_character_inside_is_rejected(control: str) -> None:
    with pytest.raises(InvalidTask) as excinfo:
        TaskFields(title=f"before{control}after")
    assert excinfo.value.field == "title"


@pytest.mark.parametrize("raw", ["\ud800", "a\udfffb", "report \udc80"])
def test_title_with_a_lone_surrogate_is_rejected(raw: str) -> None:
    with pytest.raises(InvalidTask) as excinfo:
        TaskFields(title=raw)
    assert excinfo.value.field == "title"


@given(
    core=st.text(alphabet=clean_char, min_size=1, max_size=TITLE_MAX_LENGTH)
    .map(str.strip)
    .filter(bool),
    left=st.text(alphabet=" \t\n\r\u00a0\u2003\u3000", max_size=5),
    right=st.text(alphabet=" \t\n\r\u00a0\u2003\u3000", max_size=5),
)
def test_any_clean_title_is_accepted_and_stored_stripped(core: str, left: str, right: str) -> None:
    fields = TaskFields(title=left + core + right)
    assert fields.title == core


@given(
    left=st.text(alphabet=clean_char, min_size=1, max_size=20).filter(lambda s: s == s.strip()),
    control=st.sampled_from(CONTROLS),
    right=st.text(alphabet=clean_char, min_size=1, max_size=20).filter(lambda s: s == s.strip()),
)
def test_any_title_with_an_inner_control_character_is_rejected(
    left: str, control: str, right: str
) -> None:
    with pytest.raises(InvalidTask):
        normalize_title(left + control + right)


@given(raw=any_text)
def test_title_is_accepted_exactly_when_the_rules_allow_it(raw: str) -> None:
    stripped = raw.strip()
    # Only spaces, tabs and line breaks may be trimmed away; other controls are
    # refused even at the edges, where str.strip would silently drop some.
    allowed = (
        1 <= len(stripped) <= TITLE_MAX_LENGTH
        and not any(_is_control(c) or _is_surrogate(c) for c in stripped)
        and not any(_is_control(c) and c not in "\t\n\r" for c in raw)
    )
    if allowed:
        assert normalize_title(raw) == stripped
    else:
        with pytest.raises(InvalidTask):
            normalize_title(raw)


# --- description ---------------------------------------------------------------------------


def test_description_may_be_null() -> None:
    assert TaskFields(title="t").description is None
    assert check_description(None) is None


def test_description_length_limit() -> None:
    longest = "d" * DESCRIPTION_MAX_LENGTH
    assert DESCRIPTION_MAX_LENGTH == 10_000
    assert TaskFields(title="t", description=longest).description == longest
    with pytest.raises(InvalidTask) as excinfo:
        TaskFields(title="t", description=longest + "d")
    assert excinfo.value.field == "description"


@pytest.mark.parametrize(
    "text",
    [
        "line one\nline two",
        "\tindented\n\tlist",
        "windows\r\nline breaks",  # what browsers send from a <textarea>
        "  surrounding space is kept  \n",
    ],
)
def test_description_keeps_line_breaks_and_tabs_unchanged(text: str) -> None:
    assert TaskFields(title="t", description=text).description == text


@pytest.mark.parametrize(
    "control", ["\x00", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f", "\x85", "\x9f"]
)
def test_description_with_another_control_character_is_rejected(control: str) -> None:
    with pytest.raises(InvalidTask) as excinfo:
        TaskFields(title="t", description=f"before{control}after")
    assert excinfo.value.field == "description"


@pytest.mark.parametrize("text", ["\ud800", "notes \udfff", "\udc80\udc81"])
def test_description_with_a_lone_surrogate_is_rejected(text: str) -> None:
    with pytest.raises(InvalidTask) as excinfo:
        TaskFields(title="t", description=text)
    assert excinfo.value.field == "description"


@given(text=any_text)
def test_description_is_accepted_exactly_when_the_rules_allow_it(text: str) -> None:
    allowed = not any((_is_control(c) and c not in "\t\n\r") or _is_surrogate(c) for c in text)
    if allowed:
        assert check_description(text) == text
    else:
        with pytest.raises(InvalidTask):
            check_description(text)


# --- due_at --------------------------------------------------------------------------------


def test_naive_due_at_is_rejected() -> None:
    with pytest.raises(InvalidTask) as excinfo:
        TaskFields(title="t", due_at=datetime(2026, 12, 1, 17, 0))
    assert excinfo.value.field == "due_at"


class _NoOffset(tzinfo):
    """A tzinfo that does not know its offset: the date-time is effectively naive."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str | None:
        return None


def test_due_at_whose_tzinfo_has_no_offset_is_rejected() -> None:
    with pytest.raises(InvalidTask) as excinfo:
        check_due_at(datetime(2026, 12, 1, 17, 0, tzinfo=_NoOffset()))
    assert excinfo.value.field == "due_at"


@pytest.mark.parametrize(
    "aware",
    [
        datetime(2026, 12, 1, 17, 0, tzinfo=UTC),
        datetime(2026, 12, 1, 18, 0, tzinfo=timezone(timedelta(hours=1))),
        datetime(2026, 12, 1, 12, 0, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2026, 12, 2, 6, 45, tzinfo=timezone(timedelta(hours=13, minutes=45))),
    ],
)
def test_aware_due_at_is_converted_to_utc(aware: datetime) -> None:
    stored = TaskFields(title="t", due_at=aware).due_at
    assert stored is not None
    assert stored == DUE
    assert stored.utcoffset() == timedelta(0)
    assert (stored.year, stored.month, stored.day, stored.hour, stored.minute) == (
        2026,
        12,
        1,
        17,
        0,
    )


def test_due_at_may_be_null() -> None:
    assert TaskFields(title="t").due_at is None
    assert check_due_at(None) is None


@pytest.mark.parametrize(
    "extreme",
    [
        datetime(1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=5))),
        datetime.max.replace(tzinfo=timezone(timedelta(hours=-5))),
    ],
    ids=["year-1-east-of-utc", "year-9999-west-of-utc"],
)
def test_due_at_outside_the_utc_range_is_invalid_not_an_overflow(extreme: datetime) -> None:
    # In UTC these instants fall before year 1 / after year 9999: not representable.
    with pytest.raises(InvalidTask) as excinfo:
        TaskFields(title="t", due_at=extreme)
    assert excinfo.value.field == "due_at"


# --- Task.new ------------------------------------------------------------------------------


def test_new_task_starts_at_version_1_and_pending() -> None:
    task = make_task()
    assert task.id == TASK_ID
    assert task.user_id == "alice"
    assert task.version == 1
    assert task.completed is False
    assert task.completed_at is None
    assert task.created_at == NOW
    assert task.updated_at == NOW
    assert task.fields() == TaskFields(
        title="Write the report",
        description="Quarterly numbers",
        priority=Priority.MEDIUM,
        due_at=DUE,
    )


def test_new_completed_task_has_completed_at() -> None:
    task = make_task(completed=True)
    assert task.version == 1
    assert task.completed is True
    assert task.completed_at == NOW


def test_task_fields_defaults() -> None:
    fields = TaskFields(title="t")
    assert (fields.description, fields.completed, fields.priority, fields.due_at) == (
        None,
        False,
        Priority.MEDIUM,
        None,
    )


@pytest.mark.parametrize("owner", ["", "u" * 256, "ali\x00ce", "bob\n", "\ud800"])
def test_new_task_rejects_an_invalid_owner(owner: str) -> None:
    with pytest.raises(InvalidTask) as excinfo:
        Task.new(task_id=TASK_ID, owner=owner, fields=TaskFields(title="t"), now=NOW)
    assert excinfo.value.field == "user_id"


def test_new_task_accepts_an_owner_of_255_characters() -> None:
    owner = "u" * 255
    task = Task.new(task_id=TASK_ID, owner=owner, fields=TaskFields(title="t"), now=NOW)
    assert task.user_id == owner


# --- with_fields ---------------------------------------------------------------------------


def test_with_fields_unchanged_returns_the_same_object() -> None:
    task = make_task()
    assert task.with_fields(task.fields(), LATER) is task


def test_with_fields_equal_after_normalisation_is_a_no_op() -> None:
    task = make_task()
    same = TaskFields(
        title="   Write the report  ",
        description="Quarterly numbers",
        due_at=DUE.astimezone(timezone(timedelta(hours=2))),
    )
    assert task.with_fields(same, LATER) is task


@pytest.mark.parametrize(
    "change",
    [
        {"title": "Another title"},
        {"description": None},
        {"description": "Other numbers"},
        {"priority": Priority.HIGH},
        {"due_at": None},
        {"due_at": DUE + timedelta(days=1)},
        {"title": "Both", "priority": Priority.LOW},
    ],
)
def test_with_fields_bumps_version_once_per_change(change: dict[str, Any]) -> None:
    task = make_task()
    updated = task.with_fields(replace(task.fields(), **change), LATER)
    assert updated.version == task.version + 1
    assert updated.updated_at == LATER
    assert (updated.id, updated.user_id, updated.created_at) == (
        task.id,
        task.user_id,
        task.created_at,
    )
    for name, value in change.items():
        assert getattr(updated, name) == value
    # The original is untouched: tasks are immutable values.
    assert task.version == 1
    assert task.updated_at == NOW


def test_completing_sets_completed_at_and_reopening_clears_it() -> None:
    task = make_task()
    done = task.with_fields(replace(task.fields(), completed=True), LATER)
    assert done.completed is True
    assert done.completed_at == LATER
    assert done.version == 2

    reopened_at = LATER + timedelta(hours=1)
    reopened = done.with_fields(replace(done.fields(), completed=False), reopened_at)
    assert reopened.completed is False
    assert reopened.completed_at is None
    assert reopened.version == 3
    assert reopened.updated_at == reopened_at


def test_editing_a_completed_task_keeps_its_completed_at() -> None:
    done = make_task(completed=True)
    edited = done.with_fields(replace(done.fields(), title="Renamed"), LATER)
    assert edited.completed is True
    assert edited.completed_at == NOW
    assert edited.updated_at == LATER
    assert edited.version == 2


@pytest.mark.parametrize("completed", [True, False])
def test_set_completed_to_the_current_value_is_a_no_op(completed: bool) -> None:
    task = make_task(completed=completed)
    same = task.set_completed(completed, LATER)
    assert same is task
    assert same.version == task.version
    assert same.updated_at == task.updated_at
    assert same.completed_at == task.completed_at


def test_set_completed_changes_state_and_version() -> None:
    task = make_task()
    done = task.set_completed(True, LATER)
    assert (done.completed, done.completed_at, done.version, done.updated_at) == (
        True,
        LATER,
        2,
        LATER,
    )
    # The other fields stay.
    assert replace(done.fields(), completed=False) == task.fields()


def test_toggle_flips_completed_each_time() -> None:
    task = make_task()
    first = task.toggle(LATER)
    assert (first.completed, first.completed_at, first.version) == (True, LATER, 2)
    second_at = LATER + timedelta(seconds=1)
    second = first.toggle(second_at)
    assert (second.completed, second.completed_at, second.version) == (False, None, 3)
    assert second.updated_at == second_at


# Small value pools so that generated writes are often no-ops.
fields_strategy = st.builds(
    TaskFields,
    title=st.sampled_from(["a", " a ", "b"]),
    description=st.sampled_from([None, "d", "e"]),
    completed=st.booleans(),
    priority=st.sampled_from(list(Priority)),
    due_at=st.sampled_from([None, DUE, DUE.astimezone(timezone(timedelta(hours=-3)))]),
)
# A TaskFields is a full write, a bool is set_completed, None is a toggle.
operation = st.one_of(fields_strategy, st.booleans(), st.none())


@given(start=fields_strategy, operations=st.lists(operation, max_size=25))
def test_version_grows_by_exactly_one_per_effective_change(
    start: TaskFields, operations: list[TaskFields | bool | None]
) -> None:
    task = Task.new(task_id=TASK_ID, owner="alice", fields=start, now=NOW)
    for step, op in enumerate(operations, start=1):
        now = NOW + timedelta(seconds=step)
        if isinstance(op, TaskFields):
            effective = op != task.fields()
            updated = task.with_fields(op, now)
        elif isinstance(op, bool):
            effective = op != task.completed
            updated = task.set_completed(op, now)
        else:
            effective = True
            updated = task.toggle(now)

        if effective:
            assert updated.version == task.version + 1
            assert updated.updated_at == now
        else:
            assert updated is task
        assert updated.created_at == NOW
        assert (updated.completed_at is not None) == updated.completed
        if updated.completed and task.completed:
            assert updated.completed_at == task.completed_at
        elif updated.completed:
            assert updated.completed_at == now
        task = updated


# --- Priority ------------------------------------------------------------------------------


def test_priority_ranks_order_low_medium_high() -> None:
    assert [p.rank for p in (Priority.LOW, Priority.MEDIUM, Priority.HIGH)] == [1, 2, 3]
    by_rank = sorted(Priority, key=lambda p: p.rank)
    by_name = sorted(Priority, key=lambda p: p.value)
    assert by_rank == [Priority.LOW, Priority.MEDIUM, Priority.HIGH]
    assert by_rank != by_name  # alphabetical would be high, low, medium


@pytest.mark.parametrize("priority", list(Priority))
def test_priority_from_rank_round_trips(priority: Priority) -> None:
    assert Priority.from_rank(priority.rank) is priority


def test_priority_values_are_the_wire_names() -> None:
    assert {p.value for p in Priority} == {"low", "medium", "high"}
    assert Priority("medium") is Priority.MEDIUM


# --- parse_task_id -------------------------------------------------------------------------


def test_parse_task_id_accepts_the_canonical_form() -> None:
    raw = "0192f5d0-8b7e-7c3a-9f10-2b6d7e4c1a55"
    assert parse_task_id(raw) == TASK_ID
    assert parse_task_id(raw.upper()) == TASK_ID  # RFC 9562: hex digits are case-insensitive


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "me",
        "not-a-uuid",
        "0192f5d08b7e7c3a9f102b6d7e4c1a55",  # no hyphens
        "{0192f5d0-8b7e-7c3a-9f10-2b6d7e4c1a55}",
        "urn:uuid:0192f5d0-8b7e-7c3a-9f10-2b6d7e4c1a55",
        " 0192f5d0-8b7e-7c3a-9f10-2b6d7e4c1a55",
        "0192f5d0-8b7e-7c3a-9f10-2b6d7e4c1a55 ",
        "0192f5d0-8b7e-7c3a-9f10-2b6d7e4c1a55\n",
        "0192f5d0-8b7e-7c3a-9f10-2b6d7e4c1a5",  # one digit short
        "0192f5d0-8b7e-7c3a-9f10-2b6d7e4c1a555",  # one digit long
        "0192f5d08-b7e-7c3a-9f10-2b6d7e4c1a55",  # hyphen misplaced
        "0192f5d0-8b7e-7c3a-9f10-2b6d7e4c1a5g",  # not hex
        "0192f5d0-8b7e-7c3a-9f10-2b6d7e4c1a5\uff15",  # full-width digit five
        "0192f5d0-8b7e-7c3a-9f10-2b6d7e4c1a5\u0665",  # Arabic-Indic digit five
    ],
)
def test_parse_task_id_rejects_anything_else(raw: str) -> None:
    assert parse_task_id(raw) is None


@given(value=st.uuids())
def test_parse_task_id_round_trips_every_uuid(value: uuid.UUID) -> None:
    assert parse_task_id(str(value)) == value


@given(raw=any_text)
def test_parse_task_id_never_raises_and_only_accepts_canonical_text(raw: str) -> None:
    parsed = parse_task_id(raw)
    if parsed is not None:
        assert str(parsed) == raw.lower()


@pytest.mark.parametrize("raw", ["\x1ftitle", "title\x85", "\x1c\x1dtitle\x1e"])
def test_control_characters_that_strip_would_drop_are_refused_at_the_edges(raw: str) -> None:
    with pytest.raises(InvalidTask):
        normalize_title(raw)
