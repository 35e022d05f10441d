"""MOCO listings: `updated_after`, `sort_by`, `X-Total` and `Link rel="next"` (the document's
Pagination, Sorting and "For synchronization ... updated_after")."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from adapters.core.change_source import created_or_updated
from adapters.core.list_source import ListByReplicationKey
from adapters.core.pagination import HeaderLinkPaginator
from adapters.core.vendor import PollResource, PollSpec
from adapters.moco.ids import change_event_id, parse_time
from adapters.moco.undocumented import (
    PAGE_SIZE_PARAM,
    POLL_PARAMS,
    PUBLISHED_MARGIN,
    RESOURCE_PATHS,
)

_SINGULAR = {
    "projects": "project",
    "offers": "offer",
    "companies": "company",
    "activities": "activity",
    "users": "user",
    "deals": "deal",
    "invoices": "invoice",
}

# Documented: X-Total is the number of entries, and no Link rel="next" means the last page.
PAGINATOR = HeaderLinkPaginator(size_param=PAGE_SIZE_PARAM, total_header="x-total")


def format_since(value: datetime) -> str:
    """`updated_after` value: ISO 8601 in UTC."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def listing(name: str, path: str) -> ListByReplicationKey:
    """The change source of one MOCO collection."""
    return ListByReplicationKey(
        path=path,
        paginator=PAGINATOR,
        replication_key="updated_at",  # documented: sent for all entities
        parse_time=parse_time,
        since_param="updated_after",  # documented filter for synchronisation
        format_since=format_since,
        to_event=created_or_updated(
            "moco",
            _SINGULAR[name],
            replication_key="updated_at",
            created_key="created_at",
            # The webhook of the same change gets the same id (ids.py).
            event_id=lambda seen: change_event_id(
                seen.instance, _SINGULAR[name], seen.id, seen.changed
            ),
        ),
        params=POLL_PARAMS,
        # POLL_PARAMS ask for it; every page is checked against it.
        newest_first=True,
        # A version its webhook already published (same id, ids.py) is not published again.
        skip_published=PUBLISHED_MARGIN,
    )


POLL = PollSpec(
    resources={
        name: PollResource(name=name, source=listing(name, path))
        for name, path in RESOURCE_PATHS.items()
    }
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
