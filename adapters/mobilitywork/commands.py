"""Mobility Work commands: `task.create` as documented, the changelog's others declared off."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec

from adapters.core.rest_command import rest_command
from adapters.core.vendor import CommandSpec, PreparedCall
from adapters.mobilitywork.undocumented import (
    NATIVE_STRING_EQUIPMENT_AS_OBJECT,
    TASK_CREATE_DEFAULTS,
    UNDOCUMENTED_COMMANDS,
)

TASKS_PATH = "/partners/v1/tasks"

# Native ids are numbers or UUIDs (the document's "Native ID").
NativeId = Annotated[int, msgspec.Meta(gt=0)] | Annotated[str, msgspec.Meta(min_length=1)]


class ExternalReference(
    msgspec.Struct, tag_field="type", tag="externalReference", forbid_unknown_fields=True
):
    """An identifier the customer controls (an equipment's item code)."""

    value: Annotated[str, msgspec.Meta(min_length=1)]


class NativeReference(msgspec.Struct, tag_field="type", tag="native", forbid_unknown_fields=True):
    """A native id in the object form (the type the document's 400 example names)."""

    value: NativeId


# The document's equipment reference types: a bare native id, or the object form ("favor
# the object format") with the type "native" or "externalReference" (the item code).
Identifier = NativeId | ExternalReference | NativeReference
Email = Annotated[str, msgspec.Meta(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+\Z")]
# A user as a native id or an e-mail address of a network member.
Assignee = Annotated[int, msgspec.Meta(gt=0)] | Email
# Any ISO 8601 date-time with an offset; sent in the document's form (`document_form`).
DateTimeText = Annotated[str, msgspec.Meta(description="ISO 8601 date-time with an offset")]


def _aware(name: str, value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} is not an ISO 8601 date-time: {value!r}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"{name} needs a UTC offset, e.g. 2022-01-11T09:00:00+00:00")
    return parsed


def document_form(name: str, value: str) -> str:
    """`value` as the document writes date-times: `2022-01-11T09:00:00+00:00`.

    The same instant to the second (fractions are cut off), with the offset as given (`Z`
    is written `+00:00`); an offset that is not whole minutes is converted to UTC. Whether
    the vendor takes other ISO 8601 forms is not said, and this one it shows.
    """
    moment = _aware(name, value)
    offset = moment.utcoffset()
    if offset is not None and offset % timedelta(minutes=1):
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"{name} is out of range in UTC: {value!r}") from None
    return moment.isoformat(timespec="seconds")


class TaskCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Schedule a task on a piece of equipment (POST /partners/v1/tasks)."""

    equipment: Identifier
    description: Annotated[str, msgspec.Meta(min_length=3)]
    startDateTime: DateTimeText  # the vendor's camelCase field names, as sent
    endDateTime: DateTimeText
    allDay: bool = False
    assignees: list[Assignee] | None = None

    def __post_init__(self) -> None:
        # An offset-less time is refused (its instant is unknown), so is one with no
        # document form (`document_form`, as `build` sends it).
        document_form("startDateTime", self.startDateTime)
        document_form("endDateTime", self.endDateTime)
        if _aware("endDateTime", self.endDateTime) < _aware("startDateTime", self.startDateTime):
            raise ValueError("endDateTime is before startDateTime")


def task_body(body: dict[str, Any]) -> dict[str, Any]:
    """The request body of a task: the command's fields in the forms sent to Mobility Work."""
    sent = dict(body)
    for name in ("startDateTime", "endDateTime"):
        sent[name] = document_form(name, sent[name])
    if NATIVE_STRING_EQUIPMENT_AS_OBJECT and isinstance(sent["equipment"], str):
        sent["equipment"] = {"type": "native", "value": sent["equipment"]}
    for name, empty in TASK_CREATE_DEFAULTS.items():
        if sent.get(name) is None:
            sent[name] = copy.deepcopy(empty)
    return sent


def _task_create() -> CommandSpec:
    generic = rest_command(
        "workbridge.mobilitywork.task.create",
        TaskCreate,
        "POST",
        TASKS_PATH,
        kind="create",
        description=TaskCreate.__doc__ or "",
    )

    def build(data: msgspec.Struct) -> PreparedCall:
        call = generic.build(data)
        assert isinstance(call.json, dict)
        return msgspec.structs.replace(call, json=task_body(call.json))

    return dataclasses.replace(generic, build=build)


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
        _task_create(),
        *(_undocumented(t, m, d) for t, m, d in UNDOCUMENTED_COMMANDS),
    ]
    return {spec.type: spec for spec in specs}


COMMANDS = _catalogue()
