"""Request and response bodies, validated and documented by pydantic."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar, get_args

from fastapi.exceptions import RequestValidationError
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    StringConstraints,
    ValidationError,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema

from application.batch import BATCH_MAX
from application.commands import TaskPatch
from application.queries import PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, PAGE_SIZE_MIN, SEARCH_MAX_LENGTH
from application.sync import FEED_LIMIT_DEFAULT, FEED_LIMIT_MAX, FEED_LIMIT_MIN, WAIT_MAX_S
from domain.errors import InvalidTask
from domain.task import (
    DESCRIPTION_MAX_LENGTH,
    TITLE_MAX_LENGTH,
    Priority,
    TaskFields,
    check_description,
    check_due_at,
    normalize_title,
)
from entrypoints.http.problems import Problem


def _domain(check: Any) -> AfterValidator:
    """Run a domain invariant as a pydantic validator, so it reports as a 422."""

    def validate(value: Any) -> Any:
        try:
            return check(value)
        except InvalidTask as error:
            raise ValueError(error.message) from None

    return AfterValidator(validate)


QueryModel = TypeVar("QueryModel", bound=BaseModel)

_RFC3339_DATE = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]")


def _rfc3339_string(value: Any) -> Any:
    # pydantic would also read a number, or a numeric string, as a Unix time;
    # the contract says RFC 3339.
    if value is not None and not (isinstance(value, str) and _RFC3339_DATE.match(value)):
        raise ValueError("must be an RFC 3339 date-time string")
    return value


Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=TITLE_MAX_LENGTH),
    _domain(normalize_title),
    Field(description="1 to 200 characters after trimming; no control characters."),
]
Description = Annotated[
    str | None,
    Field(max_length=DESCRIPTION_MAX_LENGTH, description="At most 10,000 characters."),
    _domain(check_description),
]
DueAt = Annotated[
    AwareDatetime | None,
    BeforeValidator(_rfc3339_string),
    _domain(check_due_at),
    Field(description="RFC 3339 date-time with an offset; stored and returned in UTC."),
]
QueryTime = Annotated[AwareDatetime | None, BeforeValidator(_rfc3339_string), _domain(check_due_at)]


def _defaults_in_words(schema: dict[str, Any]) -> None:
    """A request body's defaults said in each description, not as ``default``.

    The service fills in a field left out; but openapi-typescript's default
    options make every property with a ``default`` required, request bodies
    included, so a client could not leave it out.
    """
    for field in schema.get("properties", {}).values():
        if "default" in field:
            default = json.dumps(field.pop("default"))
            field["description"] = f"{field.get('description', '')} Default: `{default}`.".lstrip()


def _no_defaults(schema: dict[str, Any]) -> None:
    """A PATCH field left out is left as it is: it has no default."""
    for field in schema.get("properties", {}).values():
        field.pop("default", None)


class TaskWrite(BaseModel):
    """A whole task as a client writes it (create and PUT)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_defaults_in_words)

    title: Title
    description: Description = None
    completed: StrictBool = False
    priority: Priority = Priority.MEDIUM
    due_at: DueAt = None

    def to_fields(self) -> TaskFields:
        """The fields, checked once already: by the domain's checks, above."""
        return TaskFields.trusted(**dict(self))


class TaskPatchBody(BaseModel):
    """Only the fields sent change; ``description`` and ``due_at`` may be set to null."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_no_defaults)

    # ``None`` stands for "not sent" here; null itself is refused (``_not_null``),
    # so the document does not offer it.
    title: Title | SkipJsonSchema[None] = None
    description: Description = None
    completed: StrictBool | SkipJsonSchema[None] = None
    priority: Priority | SkipJsonSchema[None] = None
    due_at: DueAt = None

    @field_validator("title", "completed", "priority", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null")
        return value

    def to_patch(self) -> TaskPatch:
        """The sent fields, checked once already (``_not_null`` keeps out nulls
        where a field cannot be null)."""
        return TaskPatch.trusted(**{name: getattr(self, name) for name in self.model_fields_set})


class CompletionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    completed: StrictBool


class TaskOut(BaseModel):
    """A task as the API returns it. Times are UTC with a ``Z`` suffix."""

    id: uuid.UUID = Field(description="UUIDv7, generated by the service.")
    user_id: str = Field(description="The owner: the token's `sub`.")
    title: str
    description: str | None
    completed: bool
    priority: Priority
    due_at: datetime | None
    completed_at: datetime | None = Field(description="When the task was last completed.")
    created_at: datetime
    updated_at: datetime
    version: int = Field(ge=1, description="Grows by one with every change.")


SortParam = Literal[
    "created_at",
    "-created_at",
    "updated_at",
    "-updated_at",
    "due_at",
    "-due_at",
    "priority",
    "-priority",
    "title",
    "-title",
]


def _sort_varnames() -> list[JsonValue]:
    """Enum member names for generated clients: ``-due_at`` is ``DUE_AT_DESC``."""
    return [
        f"{value.lstrip('-').upper()}{'_DESC' if value.startswith('-') else ''}"
        for value in get_args(SortParam)
    ]


class ListParams(BaseModel):
    """Query parameters of the task list; unknown names are ignored.

    Validated here in one pass rather than as a FastAPI query model, which
    costs FastAPI several times as much per request; ``query_parameters``
    documents them the same way.
    """

    model_config = ConfigDict(extra="ignore")

    status: Literal["all", "pending", "completed"] = "all"
    priority: Priority | None = None
    q: str | None = Field(
        default=None,
        max_length=SEARCH_MAX_LENGTH,
        description="Case-insensitive text in title or description.",
    )
    due_before: QueryTime = None
    due_after: QueryTime = None
    sort: SortParam = Field(
        default="-created_at",
        description="Sort key; `-` for descending.",
        json_schema_extra={"x-enum-varnames": _sort_varnames()},
    )
    limit: int = Field(default=PAGE_SIZE_DEFAULT, ge=PAGE_SIZE_MIN, le=PAGE_SIZE_MAX)
    cursor: str | None = Field(
        default=None, max_length=1024, description="From the previous page's `Link` header."
    )

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> ListParams:
        return _query_model(cls, query)


class UpsertChange(BaseModel):
    """A task created or changed since ``since``, in its latest state."""

    type: Literal["upsert"]
    task: TaskOut


class DeleteChange(BaseModel):
    """A task deleted since ``since`` (possibly one the client never saw)."""

    type: Literal["delete"]
    id: uuid.UUID
    deleted_at: datetime


class ChangesOut(BaseModel):
    """A page of the change feed."""

    changes: list[Annotated[UpsertChange | DeleteChange, Field(discriminator="type")]]
    next: str = Field(description="Pass as `since` to continue from here.")
    has_more: bool = Field(
        description="True: call again at once with `next`; false: up to date as of `next`."
    )


class FeedParams(BaseModel):
    """Query parameters of the change feed; unknown names are ignored."""

    model_config = ConfigDict(extra="ignore")

    since: str | None = Field(
        default=None,
        max_length=1024,
        description="`next` of a previous response; omit to start from nothing.",
    )
    limit: int = Field(default=FEED_LIMIT_DEFAULT, ge=FEED_LIMIT_MIN, le=FEED_LIMIT_MAX)
    wait: float = Field(
        default=0,
        ge=0,
        le=WAIT_MAX_S,
        description="Seconds to hold the request when nothing changed after `since`.",
    )

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> FeedParams:
        return _query_model(cls, query)


def _query_model(model: type[QueryModel], query: Mapping[str, str]) -> QueryModel:
    """Validate a query string; failures are 422s located under ``query``."""
    try:
        return model.model_validate(dict(query))
    except ValidationError as error:
        raise RequestValidationError(
            [{**detail, "loc": ("query", *detail["loc"])} for detail in error.errors()]
        ) from None


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """OpenAPI query parameters of a model validated by ``_query_model``."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    parameters = []
    for name, field in schema["properties"].items():
        # A query parameter is absent or a string, never JSON null.
        options = [o for o in field.pop("anyOf", []) if o != {"type": "null"}]
        if len(options) == 1:
            field.update(options[0])
        if field.get("default", ...) is None:
            del field["default"]
        description = field.pop("description", "")
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": description,
                "schema": field,
            }
        )
    return parameters


class _Operation(BaseModel):
    model_config = ConfigDict(extra="forbid")


IfMatch = Annotated[
    str | None, Field(description="As the If-Match header of the single route.", max_length=8192)
]


class CreateOperation(_Operation):
    op: Literal["create"]
    task: dict[str, Any] = Field(description="As the body of POST /tasks (`TaskWrite`).")


class ReplaceOperation(_Operation):
    op: Literal["replace"]
    id: str
    task: dict[str, Any] = Field(description="As the body of PUT (`TaskWrite`).")
    if_match: IfMatch = None


class PatchOperation(_Operation):
    op: Literal["patch"]
    id: str
    fields: dict[str, Any] = Field(description="As the body of PATCH (`TaskPatchBody`).")
    if_match: IfMatch = None


class CompleteOperation(_Operation):
    op: Literal["complete"]
    id: str
    completed: Any = Field(
        default=None, description="true or false to set it; omitted or null toggles."
    )
    if_match: IfMatch = None


class DeleteOperation(_Operation):
    op: Literal["delete"]
    id: str
    if_match: IfMatch = None


_EXAMPLE_ID = "0192f5d0-8b7e-7c3a-9f10-2b6d7e4c1a55"


class BatchBody(BaseModel):
    """Operations applied in order, in one transaction."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "atomic": False,
                    "operations": [
                        {"op": "create", "task": {"title": "Buy milk"}},
                        {"op": "patch", "id": _EXAMPLE_ID, "fields": {"priority": "high"}},
                        {"op": "replace", "id": _EXAMPLE_ID, "task": {"title": "New title"}},
                        {"op": "complete", "id": _EXAMPLE_ID, "completed": True},
                        {"op": "delete", "id": _EXAMPLE_ID},
                    ],
                }
            ]
        },
    )

    atomic: StrictBool = Field(
        default=False, description="All operations succeed together, or nothing changes."
    )
    operations: list[
        Annotated[
            CreateOperation
            | ReplaceOperation
            | PatchOperation
            | CompleteOperation
            | DeleteOperation,
            Field(discriminator="op"),
        ]
    ] = Field(min_length=1, max_length=BATCH_MAX)


class OperationResult(BaseModel):
    """One operation's status and body, exactly as its single route would answer."""

    status: int
    task: TaskOut | None = Field(default=None, description="201 and 200 only.")
    etag: str | None = Field(default=None, description="201 and 200 only.")
    problem: Problem | None = Field(default=None, description="4xx only.")


class BatchOut(BaseModel):
    results: list[OperationResult]
