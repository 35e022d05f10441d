"""Mitratech CMO's command catalogue: create, update, delete and read a standalone action.

- `workbridge.cmo.action.create`: `POST /api/actions`; CMO answers the new id as a bare JSON
  string, which becomes the result's `response` `{"id": "<id>"}`. Not safe to repeat, and
  CMO offers no look-up by a client reference, so a create whose answer was lost (a crash, a
  timeout, a 5xx other than 503) ends `ambiguous`.
- `workbridge.cmo.action.update`: `PUT /api/actions/{id}` with the fields to set; empty 200.
- `workbridge.cmo.action.delete`: `DELETE /api/actions/{id}`; empty 200.
- `workbridge.cmo.action.get`: `GET /api/actions/{id}`; the action is the result's `response`.

A command's `data` is CMO's request body, with CMO's own (camelCase) field names, and three
additions of ours: `id` (the action in the path, for update/delete/get), `dueOn` (a plain day,
turned into CMO's `dueDate` in the company's time zone, see due_dates.py; never sent) and the
checks below, made before anything is sent (a failed one is a `rejected` result):

- of each group of alternatives the document gives (`orgUnitName|orgUnitId`,
  `entityName|entityId`, `actionCategoryName|actionCategoryId`,
  `actionPriorityName|actionPriorityId`, `responsibleUserName|responsibleUserId|
  responsibleUserLogin`, and per custom field `customFieldName|customFieldId`) at most one;
  a custom field needs exactly one, it names nothing otherwise;
- `dueDate` or `dueOn`, not both;
- unknown top-level fields are refused rather than dropped in silence.

Which fields a create needs, the document does not say (its example sets them all). Only
`actionText` is required here, an action being its text; everything else is CMO's to decide,
which it does with a 400 naming the fields (`{"message", "errors": [{"field", "messages"}]}`,
quoted in the result, see errors.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import msgspec
from msgspec import UNSET, UnsetType

from adapters.cmo.due_dates import (
    InvalidTimeZone,
    as_sent,
    company_zone,
    end_of_day,
    format_due_date,
    in_last_second,
    parse_timestamp,
)
from adapters.cmo.undocumented import ACTION_PATH, ACTIONS_PATH, ActionId, CmoOptions
from adapters.core.rest_command import PathFieldInvalid, rest_command
from adapters.core.vendor import CommandSpec, PreparedCall
from adapters.settings import InstanceConfig

log = logging.getLogger(__name__)

PREFIX = "workbridge.cmo.action"
CREATE = f"{PREFIX}.create"
UPDATE = f"{PREFIX}.update"
DELETE = f"{PREFIX}.delete"
GET = f"{PREFIX}.get"

Name = Annotated[str, msgspec.Meta(min_length=1)]
# CMO's integer ids (org units, categories, custom fields, users: the GET example's `id`s).
IntId = Annotated[int, msgspec.Meta(ge=1)]
# CMO's uuid ids (entities, priorities: `0656ef56-f3e2-418b-9f47-1de3c889dd6f`), sent in
# their canonical lower-case form.
UuidId = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
# A number is sent as given, 15 as 15 and not 15.0: CMO's GET shows `"hoursTaken": 15` beside
# `"actionValue": 25.0`, so some of its fields are integers, which a .NET JSON reader may refuse
# to fill from 15.0.
Number = int | float
Amount = Annotated[int, msgspec.Meta(ge=0)] | Annotated[float, msgspec.Meta(ge=0)]
Percent = Annotated[int, msgspec.Meta(ge=0, le=100)]
# -1 with -1: "no risk" (the document's first way; the other is a null risk).
RiskCode = Annotated[int, msgspec.Meta(ge=-1)]
UtcTimestamp = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|z|[+-]\d{2}:\d{2})$",
        description="ISO 8601 with offset (2021-07-22T18:29:59.997Z): sent as given when in "
        "UTC, else converted to UTC; CMO takes it as the due day's end in the company's time "
        "zone: anywhere in that day's last second",
    ),
]
DueDay = Annotated[
    dt.date,
    msgspec.Meta(
        description="YYYY-MM-DD: the due day in the company's time zone "
        "(options.company_time_zone); sent as dueDate, the last millisecond of that day in UTC"
    ),
]

# Optional fields default to UNSET: left out they are not sent, an explicit null is sent as
# JSON null (rest_command tells the two apart by the UNSET default). Fields that name or
# reference a CMO object take no null: a null reference means nothing the document gives.
OptStr = str | UnsetType | None
OptAmount = Amount | UnsetType | None
OptBool = bool | UnsetType | None


class _Struct(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    pass


class GpsCoordinates(_Struct, kw_only=True):
    """Where the action is: `{"X": 1, "Y": 2, "Z": 3}` as the document writes it."""

    x: float = msgspec.field(name="X")
    y: float = msgspec.field(name="Y")
    # The GET example reads back x and y only: the third axis is optional.
    z: float | UnsetType = msgspec.field(default=UNSET, name="Z")


class Risk(_Struct, kw_only=True):
    """A risk rating: both codes -1 is "no risk" (as is a null risk)."""

    consequence_code: RiskCode = msgspec.field(name="consequenceCode")
    likelihood_code: RiskCode = msgspec.field(name="likelihoodCode")


class CustomField(_Struct, kw_only=True, rename="camel"):
    """A custom field's value, the field named by `customFieldName` or `customFieldId`."""

    custom_field_name: Name | UnsetType = UNSET
    custom_field_id: IntId | UnsetType = UNSET
    # As CMO takes it for the field's type (the document shows text); null is sent as null.
    value: Annotated[Any, msgspec.Meta(description="the value, as CMO takes it for the field")]

    def __post_init__(self) -> None:
        given = _given(self, ("custom_field_name", "custom_field_id"))
        if len(given) != 1:
            raise ValueError(
                "give exactly one of customFieldName, customFieldId"
                + (f" (both given: {', '.join(given)})" if given else "")
            )


# The document's alternatives: at most one of each group (attribute names; the message uses
# CMO's names).
ALTERNATIVES: tuple[tuple[str, ...], ...] = (
    ("org_unit_name", "org_unit_id"),
    ("entity_name", "entity_id"),
    ("action_category_name", "action_category_id"),
    ("action_priority_name", "action_priority_id"),
    ("responsible_user_name", "responsible_user_id", "responsible_user_login"),
)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _given(data: msgspec.Struct, names: tuple[str, ...]) -> list[str]:
    """CMO's names of the fields among `names` that `data` sets."""
    return [_camel(n) for n in names if getattr(data, n) is not UNSET]


class _ActionFields(_Struct, kw_only=True, rename="camel"):
    org_unit_name: Name | UnsetType = UNSET
    org_unit_id: IntId | UnsetType = UNSET
    entity_name: Name | UnsetType = UNSET
    entity_id: UuidId | UnsetType = UNSET
    action_category_name: Name | UnsetType = UNSET
    action_category_id: IntId | UnsetType = UNSET
    guidance_text: OptStr = UNSET
    responsible_user_name: Name | UnsetType = UNSET
    responsible_user_id: IntId | UnsetType = UNSET
    responsible_user_login: Name | UnsetType = UNSET
    carbon_copy_email: OptStr = UNSET
    action_priority_name: Name | UnsetType = UNSET
    action_priority_id: UuidId | UnsetType = UNSET
    gps_coordinates: GpsCoordinates | UnsetType | None = UNSET
    due_date: UtcTimestamp | UnsetType = UNSET
    # Ours, never sent: becomes dueDate in the instance's company_time_zone.
    due_on: DueDay | UnsetType = UNSET
    hours_taken: OptAmount = UNSET
    action_value: Number | UnsetType | None = UNSET
    progress: Percent | UnsetType | None = UNSET
    # The document shows only null; its shape is CMO's (sent as given).
    geocortex_feature: Annotated[Any, msgspec.Meta(description="sent as given")] = UNSET
    residual_risk: Risk | UnsetType | None = UNSET
    inherent_risk: Risk | UnsetType | None = UNSET
    attachment_required: OptBool = UNSET
    confidential: OptBool = UNSET
    custom_fields: list[CustomField] | UnsetType = UNSET

    def __post_init__(self) -> None:
        for group in ALTERNATIVES:
            given = _given(self, group)
            if len(given) > 1:
                raise ValueError(
                    f"{' and '.join(given)} are alternatives: give at most one of "
                    f"{', '.join(_camel(n) for n in group)}"
                )
        if self.due_date is not UNSET:
            parse_timestamp(self.due_date)  # a ValueError names the problem
        if self.due_date is not UNSET and self.due_on is not UNSET:
            raise ValueError(
                "dueDate and dueOn are alternatives: give dueDate (a UTC timestamp) or dueOn "
                "(a day in the company's time zone), not both"
            )


class ActionCreate(_ActionFields, kw_only=True):
    """Create a standalone action in CMO (`POST /api/actions`); the result's response is
    `{"id": "<the new action's id>"}`. Each `…Name` may be given as its `…Id` instead
    (`responsibleUserName`: `responsibleUserId` or `responsibleUserLogin`), one of each.
    The due day: `dueDate` (a UTC timestamp within the day's last second) or `dueOn` (a
    day, computed in options.company_time_zone). Only actionText is required here; CMO
    answers 400 naming any other field it needs. Not repeated after a lost answer (CMO has
    no look-up): such a create is `ambiguous`."""

    action_text: Name


class ActionUpdate(_ActionFields, kw_only=True):
    """Change fields of action `id` (`PUT /api/actions/{id}`); fields left out are not sent,
    null is sent as null (a null residualRisk/inherentRisk is "no risk"). Alternatives and
    the due day as for a create. The document does not say whether CMO keeps what a PUT
    leaves out (its example sends every field)."""

    id: ActionId
    action_text: Name | UnsetType = UNSET

    def __post_init__(self) -> None:
        super().__post_init__()
        changed = [
            f.encode_name
            for f in msgspec.structs.fields(self)
            if f.name != "id" and getattr(self, f.name) is not UNSET
        ]
        if not changed:
            raise ValueError("nothing to update: give at least one field besides id")


class ActionDelete(_Struct, kw_only=True):
    """Delete action `id` (`DELETE /api/actions/{id}`). CMO refuses (400) to delete actions
    created by an Event Workflow."""

    id: ActionId


class ActionGet(_Struct, kw_only=True):
    """Read action `id` (`GET /api/actions/{id}`): the action as CMO gives it is the result's
    response."""

    id: ActionId


# --- the due day ------------------------------------------------------------------------------


class DueDateUnresolvable(PathFieldInvalid):
    """A `dueOn` the instance cannot turn into a `dueDate` (no or no valid time zone): the
    command is rejected (validation answers a PathFieldInvalid with `rejected`)."""


NO_ZONE = (
    "dueOn needs the company's time zone: set options.company_time_zone of this instance "
    "(the IANA zone of CMO's Admin / Business Rules, e.g. Asia/Kolkata), or send dueDate "
    "(a UTC timestamp) instead"
)


def created_id(body: Any) -> Any:
    """A create's answer as the result's response: CMO's bare id string → `{"id": …}`.

    Anything else (not documented) is kept beside a null id, so nothing CMO said is lost.
    """
    if isinstance(body, str) and body.strip():
        return {"id": body.strip().strip('"')}
    if isinstance(body, dict):
        for key in ("id", "Id", "ID", "actionId"):
            if isinstance(body.get(key), str | int) and str(body[key]):
                return {"id": str(body[key]), "answer": body}
    return {"id": None, "answer": body}


def _normalised(plain: Callable[[msgspec.Struct], PreparedCall]) -> Any:
    """The build without a time zone: dueDate in CMO's form, dueOn refused, never sent."""

    def build(data: msgspec.Struct) -> PreparedCall:
        assert isinstance(data, _ActionFields)
        if data.due_on is not UNSET:
            raise DueDateUnresolvable(NO_ZONE)
        call = plain(data)
        assert isinstance(call.json, dict)
        body = {k: v for k, v in call.json.items() if k != "dueOn"}
        if data.due_date is not UNSET:
            body["dueDate"] = as_sent(data.due_date)
        return msgspec.structs.replace(call, json=body)

    return build


def _catalogue() -> dict[str, CommandSpec]:
    create = rest_command(
        CREATE,
        ActionCreate,
        "POST",
        ACTIONS_PATH,
        kind="create",
        description=ActionCreate.__doc__ or "",
    )
    update = rest_command(
        UPDATE,
        ActionUpdate,
        "PUT",
        ACTION_PATH,
        kind="update",  # a PUT of fields: sent twice, set once
        description=ActionUpdate.__doc__ or "",
    )
    specs = [
        # No lookup: CMO cannot find an action by a reference of ours.
        dataclasses.replace(create, build=_normalised(create.build), answer=created_id),
        dataclasses.replace(update, build=_normalised(update.build)),
        rest_command(
            DELETE,
            ActionDelete,
            "DELETE",
            ACTION_PATH,
            kind="delete",
            description=ActionDelete.__doc__ or "",
        ),
        # A read: no kind of its own, "action" with repeat_safe (reading twice changes nothing).
        rest_command(
            GET,
            ActionGet,
            "GET",
            ACTION_PATH,
            kind="action",
            repeat_safe=True,
            description=ActionGet.__doc__ or "",
        ),
    ]
    return {spec.type: spec for spec in specs}


COMMANDS = _catalogue()

# The commands whose data carries a due day.
DATED = frozenset({CREATE, UPDATE})


class _Zone:
    """The instance's company time zone, as far as it is usable."""

    def __init__(self, name: str | None) -> None:
        self.name = name
        self.zone: ZoneInfo | None = None
        self.problem: str | None = None
        if name is not None:
            try:
                self.zone = company_zone(name)
            except InvalidTimeZone as exc:
                # check_instance is where a bad zone should stop start-up; here a dueOn is
                # rejected with the reason, and dueDate commands still work.
                self.problem = f"options.company_time_zone: {exc}"


def bind_commands(
    inst: InstanceConfig, catalogue: Mapping[str, CommandSpec]
) -> dict[str, CommandSpec]:
    """The catalogue for one instance: a `dueOn` becomes the `dueDate` of that day in its
    `options.company_time_zone`."""
    zone = _Zone(CmoOptions.of(inst).company_time_zone)
    return {
        type_: dataclasses.replace(spec, build=_dated(spec.build, zone)) if type_ in DATED else spec
        for type_, spec in catalogue.items()
    }


def _dated(build: Callable[[msgspec.Struct], PreparedCall], zone: _Zone) -> Any:
    def bound(data: msgspec.Struct) -> PreparedCall:
        assert isinstance(data, _ActionFields)
        if data.due_on is not UNSET:
            if zone.zone is None:
                raise DueDateUnresolvable(f"{zone.problem}; {NO_ZONE}" if zone.problem else NO_ZONE)
            due = format_due_date(end_of_day(data.due_on, zone.zone))
            data = msgspec.structs.replace(data, due_on=UNSET, due_date=due)
        elif (
            data.due_date is not UNSET
            and zone.zone is not None
            and not in_last_second(parse_timestamp(data.due_date), zone.zone)
        ):
            # A warning, not a rejection: the document asks for the last second, but what
            # CMO does with another instant is not known, and the sender may mean it.
            log.warning(
                "CMO dueDate %s is not in the last second of a day in %s (the company's "
                "time zone): CMO may show another due day than meant; send dueOn to have "
                "it computed",
                data.due_date,
                zone.name,
            )
        return build(data)

    return bound
