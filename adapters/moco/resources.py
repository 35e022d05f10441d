"""MOCO listings: `updated_after`, `X-Page`/`X-Total` headers and `Link rel="next"`."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from adapters.core.pagination import link_url
from adapters.core.vendor import Page, PollResource, PollSpec
from adapters.core.vendor_http import VendorResponse
from adapters.moco.undocumented import PAGE_SIZE_PARAM, RESOURCE_PATHS

_SINGULAR = {
    "projects": "project",
    "offers": "offer",
    "companies": "company",
    "activities": "activity",
    "users": "user",
    "deals": "deal",
    "invoices": "invoice",
}


def read_page(response: VendorResponse) -> Page:
    """Records from the JSON array; next page from the Link header (none on the last page)."""
    records = response.json()
    if not isinstance(records, list):
        raise ValueError("MOCO listing is not a JSON array")
    total = response.headers.get("x-total")
    return Page(
        records=records,
        next_url=link_url(response.headers.get("link"), "next"),
        total=int(total) if total and total.isdigit() else None,
    )


def parse_time(value: str) -> datetime:
    """MOCO timestamps: ISO 8601 in UTC."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_since(value: datetime) -> str:
    """`updated_after` value: ISO 8601 in UTC."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


POLL = PollSpec(
    resources={
        name: PollResource(
            name=name,
            path=path,
            event_resource=_SINGULAR[name],
            replication_key="updated_at",  # documented: sent for all entities
            created_key="created_at",
            since_param="updated_after",  # documented filter for synchronisation
        )
        for name, path in RESOURCE_PATHS.items()
    },
    read_page=read_page,
    parse_time=parse_time,
    format_since=format_since,
    page_size_param=PAGE_SIZE_PARAM,
)


class MocoRecord(msgspec.Struct, kw_only=True):
    """A MOCO record as the API returns it; fields beyond these are kept as they are."""

    id: int
    created_at: str | None = None
    updated_at: str | None = None
    custom_properties: dict[str, str | list[str]] | None = None


def event_models() -> dict[str, type[msgspec.Struct]]:
    """Known event types (polled and webhook verbs) and their data model."""
    verbs = ("created", "updated", "deleted", "archived")
    return {
        f"workbridge.moco.{singular}.{verb}": MocoRecord
        for singular in sorted(set(_SINGULAR.values()))
        for verb in verbs
    }
