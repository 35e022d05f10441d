"""MOCO's command catalogue: activities, projects and companies (create, update, delete)."""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Literal

import msgspec

from adapters.core.rest_command import rest_command
from adapters.core.vendor import CommandSpec, PreparedCall, Transient
from adapters.core.vendor_http import VendorClient

Date = Annotated[datetime.date, msgspec.Meta(description="YYYY-MM-DD")]
Id = Annotated[int, msgspec.Meta(gt=0)]
# MOCO encodes custom values as strings, Multiple Choice as a list of strings.
CustomProperties = dict[str, str | list[str]]


class _Command(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    # Act as this MOCO user (X-IMPERSONATE-USER-ID); the API user needs the Staff permission.
    impersonate_user_id: Id | None = None


class ActivityCreate(_Command):
    """Book time on a project task."""

    date: Date
    project_id: Id
    task_id: Id | None = None
    hours: Annotated[float, msgspec.Meta(ge=0)] | None = None
    seconds: Annotated[int, msgspec.Meta(ge=0)] | None = None
    description: str | None = None
    billable: bool | None = None
    tag: str | None = None
    remote_service: str | None = None
    remote_id: str | None = None
    remote_url: str | None = None


class ActivityUpdate(_Command):
    """Change fields of an activity; fields left out are unchanged."""

    id: Id
    date: Date | None = None
    project_id: Id | None = None
    task_id: Id | None = None
    hours: Annotated[float, msgspec.Meta(ge=0)] | None = None
    seconds: Annotated[int, msgspec.Meta(ge=0)] | None = None
    description: str | None = None
    billable: bool | None = None
    tag: str | None = None


class Delete(_Command):
    """Delete the record with this id."""

    id: Id


class ProjectCreate(_Command):
    """Create a project for a customer."""

    name: Annotated[str, msgspec.Meta(min_length=1)]
    customer_id: Id
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}\Z")] | None = None
    identifier: str | None = None
    leader_id: Id | None = None
    start_date: Date | None = None
    finish_date: Date | None = None
    fixed_price: bool | None = None
    budget: float | None = None
    billing_address: str | None = None
    info: str | None = None
    tags: list[str] | None = None
    custom_properties: CustomProperties | None = None


class ProjectUpdate(_Command):
    """Change fields of a project; custom properties left out are kept (merged)."""

    id: Id
    name: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    customer_id: Id | None = None
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}\Z")] | None = None
    identifier: str | None = None
    leader_id: Id | None = None
    start_date: Date | None = None
    finish_date: Date | None = None
    budget: float | None = None
    billing_address: str | None = None
    info: str | None = None
    tags: list[str] | None = None
    custom_properties: CustomProperties | None = None


class CompanyCreate(_Command):
    """Create a customer, supplier or organisation."""

    name: Annotated[str, msgspec.Meta(min_length=1)]
    type: Literal["customer", "supplier", "organization"]
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}\Z")] | None = None
    website: str | None = None
    email: str | None = None
    phone: str | None = None
    address: str | None = None
    info: str | None = None
    tags: list[str] | None = None
    custom_properties: CustomProperties | None = None


class CompanyUpdate(_Command):
    """Change fields of a company; custom properties left out are kept (merged)."""

    id: Id
    name: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    type: Literal["customer", "supplier", "organization"] | None = None
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}\Z")] | None = None
    website: str | None = None
    email: str | None = None
    phone: str | None = None
    address: str | None = None
    info: str | None = None
    tags: list[str] | None = None
    custom_properties: CustomProperties | None = None


async def merge_custom_properties(
    client: VendorClient, data: msgspec.Struct, call: PreparedCall
) -> PreparedCall:
    """MOCO removes every custom property an update leaves out: send the current ones too."""
    body = call.json
    if not isinstance(body, dict) or "custom_properties" not in body:
        return call
    response = await client.request("GET", call.path, headers=call.headers)
    if response.status != 200:
        raise Transient(f"reading current custom_properties: HTTP {response.status}", response)
    current: Any = (response.json() or {}).get("custom_properties") or {}
    merged = {**current, **body["custom_properties"]}
    return msgspec.structs.replace(call, json={**body, "custom_properties": merged})


IMPERSONATE = {"impersonate_user_id": "X-IMPERSONATE-USER-ID"}


def _catalogue() -> dict[str, CommandSpec]:
    specs = []
    for resource, path, create, update in (
        ("activity", "/activities", ActivityCreate, ActivityUpdate),
        ("project", "/projects", ProjectCreate, ProjectUpdate),
        ("company", "/companies", CompanyCreate, CompanyUpdate),
    ):
        prefix = f"workbridge.moco.{resource}"
        specs += [
            rest_command(
                f"{prefix}.create",
                create,
                "POST",
                path,
                kind="create",
                header_fields=IMPERSONATE,
                description=create.__doc__ or "",
            ),
            rest_command(
                f"{prefix}.update",
                update,
                "PUT",
                f"{path}/{{id}}",
                kind="update",
                header_fields=IMPERSONATE,
                prepare=merge_custom_properties,
                description=update.__doc__ or "",
            ),
            rest_command(
                f"{prefix}.delete",
                Delete,
                "DELETE",
                f"{path}/{{id}}",
                kind="delete",
                header_fields=IMPERSONATE,
                description=f"Delete a {resource}.",
            ),
        ]
    return {spec.type: spec for spec in specs}


COMMANDS = _catalogue()
