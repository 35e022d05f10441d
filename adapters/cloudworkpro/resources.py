"""CLOUDWORK|PRO's polled resources: work orders and sites, and the stored webhook notifications.

Listings use the document's cursor pagination (`cursor`, `limit`; the answer's
`pagination.hasNext/nextCursor/totalResults`), newest first by the change time
(`sortBy=<field>:desc`, one column as the document allows) and filtered to the changes since
the last pass (`between=<field>![<since>, <far future>]`). The field names and paths are
guesses (undocumented.py). Each record becomes `workbridge.cloudworkpro.<resource>.created`
(its creation and change times are equal) or `.updated`, with the id a webhook of the same
version gets (ids.py): a change pushed and polled is one event id.

`webhook_notifications` is the missed-webhook recovery: the notifications CLOUDWORK|PRO keeps
(three months) listed by their `created_date` and mapped by the webhook's own mapper, so a
recovered notification is the event its push would have been, under the same id.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from adapters.cloudworkpro.ids import change_event_id, parse_time
from adapters.cloudworkpro.undocumented import (
    CREATED_FIELD,
    ID_FIELD,
    NOTIFICATION_ID_FIELD,
    NOTIFICATION_TIME_FIELD,
    RESOURCE_PATHS,
    UPDATED_FIELD,
    CloudworkProOptions,
)
from adapters.core.change_source import PollContext, PolledRecord, RecordMapper, SourceNeeds, Step
from adapters.core.list_source import ListByReplicationKey
from adapters.core.pagination import CursorPaginator, PageRequest
from adapters.core.poll_state import ListState, decode_list_state
from adapters.core.record_details import with_details
from adapters.core.vendor import EventDraft, PollResource, PollSpec, WebhookMapper
from adapters.core.vendor_http import VendorResponse
from adapters.core.webhook_recovery import as_delivered

VENDOR = "cloudworkpro"
SINGULAR = {"work_orders": "work_order", "sites": "site"}
PAGINATOR = CursorPaginator()
# The upper end of `between` for "changed since": far enough that nothing is newer.
UNTIL = "9999-12-31T23:59:59.999Z"


def format_time(value: datetime) -> str:
    """`2023-10-04T12:00:00.000Z`: UTC with milliseconds, as the API writes times."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def between(field: str) -> Any:
    """`format_since` for the document's `between=<field>![start, end]` filter."""

    def since(value: datetime) -> str:
        # No space after the comma: a `+` in the URL-encoded query must not be misread.
        return f"{field}![{format_time(value)},{UNTIL}]"

    return since


def record_event(resource: str) -> RecordMapper:
    """`.created` when the record's creation time is its change time, else `.updated`."""
    singular = SINGULAR[resource]

    def to_event(seen: PolledRecord) -> EventDraft:
        record = seen.record
        created = _same_time(record.get(CREATED_FIELD), seen.changed)
        return EventDraft(
            type=f"workbridge.{VENDOR}.{singular}.{'created' if created else 'updated'}",
            subject=f"{singular}/{seen.id}",
            id=change_event_id(seen.instance, singular, seen.id, seen.changed),
            time=seen.changed,
            data=msgspec.json.encode(record),
        )

    return to_event


def _same_time(value: Any, changed: datetime) -> bool:
    """Whether a creation time is the change time (`…00Z` and `…00.000Z` are one time)."""
    if not isinstance(value, str):
        return False
    try:
        return parse_time(value) == changed
    except ValueError:
        return False


def normalised(record: Any) -> Any:
    """A listed record with the key and change time the listing reads: `_id` (else `id`),
    `updated_date` (else, for a record never changed, its `created_date`)."""
    if not isinstance(record, dict):
        return record
    if record.get(ID_FIELD) in (None, "") and record.get("id") not in (None, ""):
        record = {**record, ID_FIELD: record["id"]}
    if record.get(UPDATED_FIELD) in (None, "") and record.get(CREATED_FIELD):
        record = {**record, UPDATED_FIELD: record[CREATED_FIELD]}
    return record


def normalised_notification(note: Any) -> Any:
    """A stored notification with its id at `_id` (else `id`, `notification_id`)."""
    if not isinstance(note, dict) or note.get(NOTIFICATION_ID_FIELD) not in (None, ""):
        return note
    for name in ("id", "notification_id", "notificationId"):
        if note.get(name) not in (None, ""):
            return {**note, NOTIFICATION_ID_FIELD: note[name]}
    return note


def with_normalised(ctx: PollContext, fix: Callable[[Any], Any]) -> PollContext:
    """`ctx` whose listing pages hold each record through `fix`."""

    async def fetch(request: PageRequest) -> VendorResponse:
        response = await ctx.fetch(request)
        if not 200 <= response.status < 300:
            return response
        try:
            body = response.json()
        except msgspec.DecodeError:
            return response
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            return response
        body["data"] = [fix(r) for r in body["data"]]
        return msgspec.structs.replace(response, body=msgspec.json.encode(body))

    return dataclasses.replace(ctx, fetch=fetch)


@dataclass(frozen=True)
class Listing:
    """A resource's listing with its records normalised (see `normalised`)."""

    listing: ListByReplicationKey

    def initial(self) -> ListState:
        """A task that has never run."""
        return self.listing.initial()

    def decode(self, raw: bytes) -> ListState:
        """A committed state."""
        return self.listing.decode(raw)

    async def run(self, ctx: PollContext, state: ListState) -> AsyncIterator[Step[ListState]]:
        """One cycle of the listing."""
        async for step in self.listing.run(with_normalised(ctx, normalised), state):
            yield step


def listing(resource: str) -> ListByReplicationKey:
    """A resource's incremental listing."""
    return ListByReplicationKey(
        path=RESOURCE_PATHS[resource],
        paginator=PAGINATOR,
        replication_key=UPDATED_FIELD,
        parse_time=parse_time,
        to_event=record_event(resource),
        since_param="between",
        format_since=between(UPDATED_FIELD),
        primary_key=ID_FIELD,
        records_at=("data",),
        params={"sortBy": f"{UPDATED_FIELD}:desc"},
        newest_first=True,
    )


@dataclass(frozen=True)
class Recovery:
    """The stored notifications, listed by `created_date` and mapped as if delivered; those
    whose event is on the topic already (pushed) are not published again.

    The first pass reaches back `options.recovery_lookback_s` (at most the three months the
    API keeps), not to the beginning: older notifications answer 404.
    """

    mapper: WebhookMapper
    # Pushes are produced after their notification was made; this much earlier covers a
    # vendor clock ahead of Kafka's.
    clock_margin: timedelta = timedelta(minutes=5)

    @property
    def needs(self) -> SourceNeeds:
        """The ids already on the events topic (recent_events.py), to skip what was pushed."""
        return SourceNeeds(published=True)

    def _listing(self, ctx: PollContext) -> ListByReplicationKey:
        return ListByReplicationKey(
            path=CloudworkProOptions.cast(ctx.options).notifications_path,
            paginator=PAGINATOR,
            replication_key=NOTIFICATION_TIME_FIELD,
            parse_time=parse_time,
            to_event=as_delivered(self.mapper),
            since_param="between",
            format_since=between(NOTIFICATION_TIME_FIELD),
            primary_key=NOTIFICATION_ID_FIELD,
            records_at=("data",),
            params={"sortBy": f"{NOTIFICATION_TIME_FIELD}:desc"},
            newest_first=True,
            skip_published=self.clock_margin,
        )

    def initial(self) -> ListState:
        """Nothing recovered yet."""
        return ListState()

    def decode(self, raw: bytes) -> ListState:
        """A committed state."""
        return decode_list_state(raw)

    async def run(self, ctx: PollContext, state: ListState) -> AsyncIterator[Step[ListState]]:
        """A pass over the notifications stored since the last one (the first: the lookback),
        publishing those not on the events topic yet."""
        if state.mark is None and state.listing is None:
            lookback = CloudworkProOptions.cast(ctx.options).recovery_lookback_s
            state = replace_mark(state, ctx.now() - timedelta(seconds=lookback))
        ctx = with_normalised(ctx, normalised_notification)
        async for step in self._listing(ctx).run(ctx, state):
            yield step


def replace_mark(state: ListState, mark: datetime) -> ListState:
    """The state with its mark moved (a first recovery starts at its lookback)."""
    return msgspec.structs.replace(state, mark=mark)


@dataclass(frozen=True)
class WorkOrders:
    """The work orders' listing; with `options.expand_work_orders`, each new one is read
    again at `GET /workorders/:id?summary=full` (the one endpoint the document says expands:
    its `work_types` and the like), one request per change."""

    listing: ListByReplicationKey

    def initial(self) -> ListState:
        """A task that has never run."""
        return self.listing.initial()

    def decode(self, raw: bytes) -> ListState:
        """A committed state."""
        return self.listing.decode(raw)

    async def run(self, ctx: PollContext, state: ListState) -> AsyncIterator[Step[ListState]]:
        """One cycle of the listing, expanded where the instance asks for it."""
        options = CloudworkProOptions.cast(ctx.options)
        ctx = with_normalised(ctx, normalised)
        if options.expand_work_orders:
            ctx = with_details(
                ctx, self.listing, state, detail_path=WORK_ORDER_DETAIL, params=EXPANDED
            )
        async for step in self.listing.run(ctx, state):
            yield step


# `GET /workorders/:id` relative to the (possibly overridden) collection path.
WORK_ORDER_DETAIL = "{collection}/{id}"
EXPANDED = {"summary": "full"}  # documented


def poll_spec(mapper: WebhookMapper) -> PollSpec:
    """Work orders, sites, and the recovery of missed webhooks with the webhook's mapper."""
    sources: dict[str, Any] = {
        "work_orders": WorkOrders(listing("work_orders")),
        "sites": Listing(listing("sites")),
    }
    resources = {name: PollResource(name=name, source=sources[name]) for name in RESOURCE_PATHS}
    resources["webhook_notifications"] = PollResource(
        name="webhook_notifications", source=Recovery(mapper), recovery=True
    )
    return PollSpec(resources=resources)


# --- event data models (schemas/) -------------------------------------------------------------


class WorkOrder(msgspec.Struct, kw_only=True):
    """A work order as CLOUDWORK|PRO gives it (the fields the document shows; the rest are
    kept as sent)."""

    _id: str | None = None
    status: str | None = None
    work_type_ids: list[str] | None = None
    # With options.expand_work_orders (`summary=full`).
    work_types: list[dict[str, Any]] | None = None
    created_date: str | None = None
    updated_date: str | None = None


class Site(msgspec.Struct, kw_only=True):
    """A site as CLOUDWORK|PRO gives it (kept as sent)."""

    _id: str | None = None
    name: str | None = None
    created_date: str | None = None
    updated_date: str | None = None


def event_models() -> dict[str, type[msgspec.Struct]]:
    """The data models of the event types, for schemas/ (a webhook of another
    `<THING>.<VERB>` is published too, with the record as delivered)."""
    return {
        f"workbridge.{VENDOR}.work_order.created": WorkOrder,
        f"workbridge.{VENDOR}.work_order.updated": WorkOrder,
        f"workbridge.{VENDOR}.site.created": Site,
        f"workbridge.{VENDOR}.site.updated": Site,
    }
