"""Mobility Work commands: `task.create` as documented, the changelog's others declared off."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from adapters.core.rest_command import rest_command
from adapters.core.vendor import CommandSpec, PreparedCall
from adapters.mobilitywork.undocumented import UNDOCUMENTED_COMMANDS

TASKS_PATH = "/partners/v1/tasks"


class ExternalReference(msgspec.Struct, forbid_unknown_fields=True):
    """An identifier the customer controls (an equipment's item code)."""

    type: Literal["externalReference"]
    value: Annotated[str, msgspec.Meta(min_length=1)]


# Native ids are numbers or UUIDs; external references are the object form.
NativeId = Annotated[int, msgspec.Meta(gt=0)] | Annotated[str, msgspec.Meta(min_length=1)]
Identifier = NativeId | ExternalReference
Email = Annotated[str, msgspec.Meta(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+\Z")]
# A user as a native id or an e-mail address of a network member.
Assignee = Annotated[int, msgspec.Meta(gt=0)] | Email
# Sent exactly as given (the document writes "2022-01-11T09:00:00+00:00"); checked below.
DateTimeText = Annotated[str, msgspec.Meta(description="ISO 8601 date-time with an offset")]


def _aware(name: str, value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} is not an ISO 8601 date-time: {value!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{name} needs a UTC offset, e.g. 2022-01-11T09:00:00+00:00")
    return parsed


class TaskCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Schedule a task on a piece of equipment (POST /partners/v1/tasks)."""

    equipment: Identifier
    description: Annotated[str, msgspec.Meta(min_length=3)]
    startDateTime: DateTimeText  # the vendor's camelCase field names, as sent
    endDateTime: DateTimeText
    allDay: bool = False
    assignees: list[Assignee] | None = None

    def __post_init__(self) -> None:
        start = _aware("startDateTime", self.startDateTime)
        if _aware("endDateTime", self.endDateTime) < start:
            raise ValueError("endDateTime is before startDateTime")


def _undocumented(type_: str, method: str, description: str) -> CommandSpec:
    full = f"workbridge.mobilitywork.{type_}"

    def build(data: Any) -> PreparedCall:
        # The path comes from options.command_paths; the body is the command's data as is.
        return PreparedCall(method=method, path="", json=data)

    return CommandSpec(
        type=full,
        model=dict[str, Any],
        method=method,
        path="",
        kind="action",
        build=build,
        path_not_documented=True,
        description=f"{description} Path and payload are not in the vendor document: set "
        f"options.command_paths['{full}'] to enable it; data is sent as the JSON body.",
    )


def _catalogue() -> dict[str, CommandSpec]:
    specs = [
        rest_command(
            "workbridge.mobilitywork.task.create",
            TaskCreate,
            "POST",
            TASKS_PATH,
            kind="create",
            description=TaskCreate.__doc__ or "",
        ),
        *(_undocumented(t, m, d) for t, m, d in UNDOCUMENTED_COMMANDS),
    ]
    return {spec.type: spec for spec in specs}


COMMANDS = _catalogue()
