"""MOCO's command catalogue: activities, projects and companies (create, update, delete)."""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Literal

import msgspec

from adapters.core.rest_command import rest_command
from adapters.core.vendor import CommandSpec, PreparedCall, Reader
from adapters.moco.undocumented import COMMAND_PATHS, CUSTOM_PROPERTY_RESOURCES

Date = Annotated[datetime.date, msgspec.Meta(description="YYYY-MM-DD")]
Id = Annotated[int, msgspec.Meta(gt=0)]
# MOCO encodes custom values as strings, Multiple Choice as a list of strings.
CustomProperties = dict[str, str | list[str]]


class _Command(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    # Act as this MOCO user (X-IMPERSONATE-USER-ID); the API user needs the Staff permission.
    impersonate_user_id: Id | None = None


Name = Annotated[str, msgspec.Meta(min_length=1)]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}\Z")]
CompanyType = Literal["customer", "supplier", "organization"]


class _ActivityFields(_Command, kw_only=True):
    task_id: Id | None = None
    hours: Annotated[float, msgspec.Meta(ge=0)] | None = None
    seconds: Annotated[int, msgspec.Meta(ge=0)] | None = None
    description: str | None = None
    billable: bool | None = None
    tag: str | None = None


class ActivityCreate(_ActivityFields, kw_only=True):
    """Book time on a project task."""

    date: Date
    project_id: Id
    remote_service: str | None = None
    remote_id: str | None = None
    remote_url: str | None = None


class ActivityUpdate(_ActivityFields, kw_only=True):
    """Change fields of an activity; fields left out are unchanged."""

    id: Id
    date: Date | None = None
    project_id: Id | None = None


class Delete(_Command, kw_only=True):
    """Delete the record with this id."""

    id: Id


class _ProjectFields(_Command, kw_only=True):
    currency: Currency | None = None
    identifier: str | None = None
    leader_id: Id | None = None
    start_date: Date | None = None
    finish_date: Date | None = None
    budget: float | None = None
    billing_address: str | None = None
    info: str | None = None
    tags: list[str] | None = None
    custom_properties: CustomProperties | None = None


class ProjectCreate(_ProjectFields, kw_only=True):
    """Create a project for a customer."""

    name: Name
    customer_id: Id
    fixed_price: bool | None = None


class ProjectUpdate(_ProjectFields, kw_only=True):
    """Change fields of a project; custom properties left out are kept (merged)."""

    id: Id
    name: Name | None = None
    customer_id: Id | None = None


class _CompanyFields(_Command, kw_only=True):
    currency: Currency | None = None
    website: str | None = None
    email: str | None = None
    phone: str | None = None
    address: str | None = None
    info: str | None = None
    tags: list[str] | None = None
    custom_properties: CustomProperties | None = None


class CompanyCreate(_CompanyFields, kw_only=True):
    """Create a customer, supplier or organisation."""

    name: Name
    type: CompanyType


class CompanyUpdate(_CompanyFields, kw_only=True):
    """Change fields of a company; custom properties left out are kept (merged)."""

    id: Id
    name: Name | None = None
    type: CompanyType | None = None


async def merge_custom_properties(
    reader: Reader, data: msgspec.Struct, call: PreparedCall
) -> PreparedCall:
    """MOCO removes the custom properties an update does not send: send the current ones too.

    Done for every update of a resource with custom fields, also one that sets none: the
    document's warning does not say an update without `custom_properties` is safe.
    """
    body = call.json
    if not isinstance(body, dict):
        return call
    response = await reader.get(call.path, call.headers)
    current: Any = (response.json() or {}).get("custom_properties") or {}
    given = body.get("custom_properties") or {}
    if not current and not given:
        return call
    return msgspec.structs.replace(call, json={**body, "custom_properties": {**current, **given}})


IMPERSONATE = {"impersonate_user_id": "X-IMPERSONATE-USER-ID"}


def _catalogue() -> dict[str, CommandSpec]:
    specs = []
    for resource, create, update in (
        ("activity", ActivityCreate, ActivityUpdate),
        ("project", ProjectCreate, ProjectUpdate),
        ("company", CompanyCreate, CompanyUpdate),
    ):
        path, guessed = COMMAND_PATHS[resource]
        merge = merge_custom_properties if resource in CUSTOM_PROPERTY_RESOURCES else None
        prefix = f"workbridge.moco.{resource}"
        specs += [
            rest_command(
                f"{prefix}.create",
                create,
                "POST",
                path,
                kind="create",
                header_fields=IMPERSONATE,
                path_guessed=guessed,
                description=create.__doc__ or "",
            ),
            rest_command(
                f"{prefix}.update",
                update,
                "PUT",
                f"{path}/{{id}}",
                kind="update",
                header_fields=IMPERSONATE,
                path_guessed=guessed,
                prepare=merge,
                description=update.__doc__ or "",
            ),
            rest_command(
                f"{prefix}.delete",
                Delete,
                "DELETE",
                f"{path}/{{id}}",
                kind="delete",
                header_fields=IMPERSONATE,
                path_guessed=guessed,
                description=f"Delete a {resource}.",
            ),
        ]
    return {spec.type: spec for spec in specs}


COMMANDS = _catalogue()
