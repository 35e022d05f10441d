"""Click Maint listings: every resource once per entity, newest change first.

Every request but `GET /entities` is made in one entity (`X-Entity-Id`), so each resource is
fanned out over the entities (`ENTITIES`, a `ListedScopes`): each (entity, resource) is a
poll task with its own owner and state. A listing asks for
`sort=updated_at desc&filter[updated_at_gteq]=<mark - overlap>&page=N&per_page=M` and reads
the records from `data`, the page count from `meta.pagination.total_pages` (documented:
page/per_page, sort, filter[field_matcher], the envelope; the sort field and the matcher are
guesses, see undocumented.py).

Events: `workbridge.clickmaint.<resource>.created` (the record's `created_at` equals its
`updated_at`) or `.updated`, subject `<resource>/<id>`, time = `updated_at`, data = the record
as listed (the `data` of the envelope, every field kept), the entity in the CloudEvents
extension `entityid`; `source` stays `/clickmaint/<instance>` (vendor and account, as for
every vendor). A record deleted at Click Maint is not visible in a listing: no event.

Two resources need more than one listing:
- `part_transactions` are listed only below their part: for each part whose `updated_at`
  moved since the last pass, its transactions (extension `partid`);
- `work_orders` are read once more each (`options.work_order_details`), since only the single
  work order carries its `part_assignments`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from adapters.clickmaint.undocumented import (
    DETAIL_PATH,
    ENTITIES_PATH,
    ENTITIES_REFRESH_S,
    POLL_PARAMS,
    RESOURCE_PATHS,
    TRANSACTIONS_MAX_PAGES,
    UPDATED_SINCE_MATCHER,
    ClickMaintOptions,
)
from adapters.core.change_source import (
    DeadLetter,
    Fetch,
    PollContext,
    PolledRecord,
    PollError,
    RecordMapper,
    Step,
    created_or_updated,
)
from adapters.core.list_source import DEAD, ListByReplicationKey, bounded
from adapters.core.pagination import (
    PageNumberPaginator,
    PageRequest,
    PageWalk,
    PaginationLoop,
    dig,
)
from adapters.core.poll_state import ListState, StateError, pass_floor
from adapters.core.record_details import with_details
from adapters.core.rest_command import PathFieldInvalid, path_segment
from adapters.core.scopes import ListedScopes
from adapters.core.vendor import EventDraft, PollResource, PollSpec
from adapters.settings import VendorOptions

log = logging.getLogger(__name__)

VENDOR = "clickmaint"
ENTITY_HEADER = "X-Entity-Id"
# CloudEvents extension names must match ^[a-z0-9]+$.
ENTITY_EXTENSION = "entityid"
PART_EXTENSION = "partid"

# Documented: `page` (default 1), `per_page` (default 50), and
# `meta.pagination: {total, page, per_page, total_pages}` in every list answer.
PAGINATOR = PageNumberPaginator()
RECORDS_AT = ("data",)

# The scopes every resource runs in: the entities `GET /entities` lists (their `id`), sent
# back as `X-Entity-Id`.
ENTITIES = ListedScopes(
    path=ENTITIES_PATH,
    paginator=PAGINATOR,
    header=ENTITY_HEADER,
    records_at=RECORDS_AT,
    refresh_every_s=ENTITIES_REFRESH_S,
)

# Polled resource -> the resource name in event types and subjects.
SINGULAR = {
    "assets": "asset",
    "locations": "location",
    "parts": "part",
    "part_transactions": "part_transaction",
    "pm_schedules": "pm_schedule",
    "procedures": "procedure",
    "work_order_requests": "work_order_request",
    "users": "user",
    "vendors": "vendor",
    "work_orders": "work_order",
}


def parse_time(value: str) -> datetime:
    """Click Maint times: ISO 8601 in UTC (`2025-09-24T14:20:25Z`, `…T12:00:00.000Z`)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_since(value: datetime) -> str:
    """The filter's time: ISO 8601 in UTC to the second, cut downwards (reads more, never less)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def since_param(matcher: str) -> str:
    """The query parameter of a `filter[field_matcher]`."""
    return f"filter[{matcher}]"


def options_of(ctx: PollContext) -> ClickMaintOptions:
    """The instance's options as Click Maint's struct (a checked instance has it already)."""
    return ClickMaintOptions.cast(ctx.options)


def entity_of(ctx: PollContext) -> str:
    """The entity a task runs in; every Click Maint resource is fanned out over entities."""
    if ctx.scope is None:
        raise PollError(f"{ctx.resource}: Click Maint resources are polled per entity")
    return ctx.scope


def record_event(resource: str) -> RecordMapper:
    """created/updated by the record's own times, with the entity as `entityid`."""
    base = created_or_updated(
        VENDOR, resource, replication_key="updated_at", created_key="created_at"
    )

    def to_event(seen: PolledRecord) -> EventDraft:
        draft = base(seen)
        if seen.scope is None:
            return draft
        return msgspec.structs.replace(
            draft, extensions={**draft.extensions, ENTITY_EXTENSION: seen.scope}
        )

    return to_event


@dataclass(frozen=True)
class EntityListing:
    """A resource's listing in one entity: a `ListByReplicationKey` bound, per instance, to its
    `updated_since_matcher` and order, and skipped in entities the instance does not poll.

    With `details`, each listed record that is new to the task is read once more at
    `{collection}/{id}` and published as that answer's `data` (work orders: the listing leaves
    out their `part_assignments`).
    """

    listing: ListByReplicationKey
    details: bool = False

    def initial(self) -> ListState:
        """A task that has never run."""
        return self.listing.initial()

    def decode(self, raw: bytes) -> ListState:
        """A committed state."""
        return self.listing.decode(raw)

    def bound(self, ctx: PollContext, options: ClickMaintOptions) -> ListByReplicationKey:
        """The listing as this instance asks for it."""
        matcher = options.updated_since_matcher
        sort = ctx.params(self.listing.params).get("sort", "")
        return dataclasses.replace(
            self.listing,
            since_param=since_param(matcher) if matcher else None,
            # Only the order asked for is checked as newest first (poll_params may change it).
            newest_first=" ".join(sort.lower().split()) == "updated_at desc",
        )

    async def run(self, ctx: PollContext, state: ListState) -> AsyncIterator[Step[ListState]]:
        """One cycle in the task's entity, or nothing where the instance does not poll it."""
        options = options_of(ctx)
        if not options.polls_entity(entity_of(ctx)):
            return
        source = self.bound(ctx, options)
        if self.details and options.work_order_details:
            ctx = with_details(ctx, source, state, detail_path=DETAIL_PATH, records_at=RECORDS_AT)
        async for step in source.run(ctx, state):
            yield step


# --- part transactions ------------------------------------------------------------------------

TRANSACTIONS_KIND = "clickmaint.part_transactions"
TRANSACTIONS_VERSION = 1


class _Header(msgspec.Struct):
    kind: str | None = None
    v: int | None = None


class TransactionsState(msgspec.Struct, kw_only=True):
    """A part-transactions task: the listing of changed parts (`parts`, a list state), and the
    transaction versions published (id -> `updated_at`) that a re-read must not repeat."""

    kind: str = TRANSACTIONS_KIND
    v: int = TRANSACTIONS_VERSION
    parts: ListState = msgspec.field(default_factory=ListState)
    seen: dict[str, datetime] = msgspec.field(default_factory=dict)


def decode_transactions_state(raw: bytes) -> TransactionsState:
    """A committed part-transactions state (a newer version or another kind is refused)."""
    header = msgspec.json.decode(raw, type=_Header)
    if header.kind != TRANSACTIONS_KIND:
        raise StateError(f"committed state is of kind {header.kind!r}, not {TRANSACTIONS_KIND!r}")
    if header.v is None or header.v > TRANSACTIONS_VERSION:
        raise StateError(
            f"committed {TRANSACTIONS_KIND} state has version {header.v}; this release reads "
            f"up to {TRANSACTIONS_VERSION}"
        )
    return msgspec.json.decode(raw, type=TransactionsState)


class Found(msgspec.Struct, frozen=True):
    """A transaction's event, with what `seen` remembers of it."""

    event: EventDraft
    id: str
    changed: datetime


def _changed_part(seen: PolledRecord) -> EventDraft:
    # Not published: the parts listing's "events" are the ids of the parts to read.
    return EventDraft(type="", subject=seen.id, id="", data=b"")


@dataclass(frozen=True)
class PartTransactions:
    """The transactions of every part that changed, read below the part.

    A pass lists the parts changed since the mark (as the `parts` task does, in its own
    state), and for each page of them lists each part's transactions changed since the same
    floor less `options.part_transactions_margin_s`. A page's transactions are committed with
    the parts listing's state after that page, in steps of at most `max_batch` events; a
    crash re-reads the page, and `seen` keeps what was published from being published again.
    """

    parts: EntityListing
    path: str
    max_pages: int = TRANSACTIONS_MAX_PAGES
    seen_limit: int = 20_000

    def initial(self) -> TransactionsState:
        """A task that has never run."""
        return TransactionsState()

    def decode(self, raw: bytes) -> TransactionsState:
        """A committed state."""
        return decode_transactions_state(raw)

    async def run(
        self, ctx: PollContext, state: TransactionsState
    ) -> AsyncIterator[Step[TransactionsState]]:
        """One cycle: the next pages of changed parts, each with its parts' transactions."""
        options = options_of(ctx)
        if not options.polls_entity(entity_of(ctx)):
            return
        parts_ctx = dataclasses.replace(ctx, resource="parts")
        listing = dataclasses.replace(self.parts.bound(parts_ctx, options), to_event=_changed_part)
        overlap = ctx.settings.overlap
        floor = pass_floor(state.parts, overlap)
        margin = timedelta(seconds=options.part_transactions_margin_s)
        since = floor - margin if floor is not None else None
        seen = dict(state.seen)
        before = state.parts
        async for step in listing.run(parts_ctx, state.parts):
            items: list[Found | DeadLetter] = []
            for draft in step.events:
                items += await self._part(ctx, options, draft.subject, since, seen)
            after = step.state
            size = ctx.settings.max_batch
            chunks = [items[i : i + size] for i in range(0, len(items), size)] or [[]]
            for index, chunk in enumerate(chunks):
                for item in chunk:
                    if isinstance(item, Found):
                        seen.pop(item.id, None)  # re-inserted last: `bounded` cuts oldest first
                        seen[item.id] = item.changed
                    elif item.record_id is not None:
                        seen[item.record_id] = DEAD
                last = index == len(chunks) - 1
                if last and after.listing is None and after.mark is not None:
                    # The pass ended: what the next pass cannot list again is forgotten.
                    keep_from = after.mark - overlap - margin
                    kept = {k: ts for k, ts in seen.items() if ts == DEAD or ts >= keep_from}
                    # Its own limit is above a listing's: an instance's may raise it only.
                    limit = max(ctx.settings.seen_limit or 0, self.seen_limit)
                    seen = bounded(kept, limit, keep_from)
                yield Step(
                    [i.event for i in chunk if isinstance(i, Found)],
                    [i for i in chunk if isinstance(i, DeadLetter)],
                    # All but the last step resume at the same page of parts: its parts are
                    # read again, and `seen` holds exactly what was committed so far.
                    TransactionsState(parts=after if last else before, seen=dict(seen)),
                )
            before = after

    async def _part(
        self,
        ctx: PollContext,
        options: ClickMaintOptions,
        part_id: str,
        since: datetime | None,
        seen: Mapping[str, datetime],
    ) -> list[Found | DeadLetter]:
        """The part's transactions not published yet (oldest first), and its bad records."""
        try:
            path = ctx.path(self.path).format(part_id=path_segment(part_id, "part_id"))
        except (KeyError, IndexError, PathFieldInvalid) as exc:
            raise PollError(f"part_transactions: bad path {ctx.path(self.path)!r}: {exc}") from None
        params = ctx.params(POLL_PARAMS)
        matcher = options.updated_since_matcher
        if since is not None and matcher:
            params[since_param(matcher)] = format_since(since)
        request: PageRequest | None = PAGINATOR.first(path, params, ctx.settings.page_size)
        walk = PageWalk(self.max_pages)
        good: dict[str, tuple[datetime, dict[str, Any]]] = {}
        dead: dict[str, DeadLetter] = {}
        unnamed: list[DeadLetter] = []
        while request is not None:
            try:
                walk.send(request)
            except PaginationLoop as exc:
                log.warning("poll %s/part_transactions: part %s: %s", ctx.instance, part_id, exc)
                break
            response = await ctx.fetch(request)
            if response.status == 404:
                return []  # the part is gone
            if not 200 <= response.status < 300:
                raise PollError(f"GET {request.url}: {response.status}")
            try:
                body = response.json()
            except msgspec.DecodeError as exc:
                raise PollError(f"GET {request.url}: unreadable listing: {exc}") from None
            records = dig(body, RECORDS_AT)
            if not isinstance(records, list):
                raise PollError(f"GET {request.url}: the listing holds no array of records")
            for record in records:
                item = _transaction(record, since, seen)
                if isinstance(item, DeadLetter):
                    if item.record_id is None:
                        unnamed.append(item)
                    else:
                        dead[item.record_id] = item
                elif item is not None:
                    rid, ts = item
                    if rid not in good or good[rid][0] < ts:
                        good[rid] = (ts, record)
            request = PAGINATOR.next(request, response, body)
            if request is not None and walk.capped:
                log.warning(
                    "poll %s/part_transactions: part %s has more than %d pages of "
                    "transactions; the older ones are left unread",
                    ctx.instance,
                    part_id,
                    self.max_pages,
                )
                break
        found = [
            Found(self._event(ctx, part_id, rid, ts, record), rid, ts)
            for rid, (ts, record) in sorted(good.items(), key=lambda item: (item[1][0], item[0]))
        ]
        return [*unnamed, *dead.values(), *found]

    def _event(
        self, ctx: PollContext, part_id: str, rid: str, ts: datetime, record: dict[str, Any]
    ) -> EventDraft:
        seen = PolledRecord(
            instance=ctx.instance,
            resource=ctx.resource,
            scope=ctx.scope,
            id=rid,
            changed=ts,
            record=record,
        )
        draft = record_event(SINGULAR["part_transactions"])(seen)
        return msgspec.structs.replace(
            draft, extensions={**draft.extensions, PART_EXTENSION: part_id}
        )


def _transaction(
    record: Any, since: datetime | None, seen: Mapping[str, datetime]
) -> tuple[str, datetime] | DeadLetter | None:
    """A listed transaction's (id, updated_at) when it is new, a dead letter, or None."""
    if not isinstance(record, dict):
        return DeadLetter(record=record, reason="a listed record is not an object")
    rid = record.get("id")
    if rid is None or isinstance(rid, dict | list):
        return DeadLetter(record=record, reason="the record has no id")
    rid = str(rid)
    raw = record.get("updated_at")
    try:
        ts = parse_time(str(raw)) if raw is not None else None
    except (TypeError, ValueError):
        ts = None
    if ts is None:
        if seen.get(rid) == DEAD:
            return None
        what = "has no updated_at" if raw is None else f"has an updated_at that is no time: {raw!r}"
        return DeadLetter(record=record, reason=f"the record {what}"[:200], record_id=rid)
    if (since is not None and ts < since) or seen.get(rid) == ts:
        return None
    return rid, ts


# --- the declaration --------------------------------------------------------------------------


def listing(name: str) -> ListByReplicationKey:
    """The change source of one Click Maint collection (bound per instance by `EntityListing`)."""
    return ListByReplicationKey(
        path=RESOURCE_PATHS[name],
        paginator=PAGINATOR,
        replication_key="updated_at",  # every record the document shows has it
        parse_time=parse_time,
        since_param=since_param(UPDATED_SINCE_MATCHER),
        format_since=format_since,
        to_event=record_event(SINGULAR[name]),
        records_at=RECORDS_AT,
        params=POLL_PARAMS,
        newest_first=True,
    )


def _resources() -> dict[str, PollResource]:
    sources: dict[str, Any] = {
        name: EntityListing(listing(name), details=name == "work_orders")
        for name in RESOURCE_PATHS
        if name != "part_transactions"
    }
    sources["part_transactions"] = PartTransactions(
        parts=sources["parts"], path=RESOURCE_PATHS["part_transactions"]
    )
    return {
        name: PollResource(name=name, source=sources[name], scoped=True)
        for name in sorted(RESOURCE_PATHS)
    }


class EntityScopes:
    """The instance's entities: those its options list, else every one `GET /entities` lists."""

    def __init__(self, listed: ListedScopes) -> None:
        self.listed = listed

    def refresh_s(self, options: VendorOptions | None = None) -> float:
        """How often `GET /entities` is read again: `options.entities_refresh_s`."""
        return ClickMaintOptions.cast(options or ClickMaintOptions()).entities_refresh_s

    async def discover(self, fetch: Fetch, options: VendorOptions | None = None) -> list[str]:
        """`options.entities` when it lists ids (nothing is read), else `GET /entities`."""
        entities = ClickMaintOptions.cast(options or ClickMaintOptions()).entities
        if entities != "all":
            return [str(e) for e in entities]
        return await self.listed.discover(fetch)

    def headers(self, scope: str) -> Mapping[str, str]:
        """`X-Entity-Id: <entity>`."""
        return self.listed.headers(scope)


POLL = PollSpec(resources=_resources(), scopes=EntityScopes(ENTITIES))


# --- event data models (schemas/) -------------------------------------------------------------


class Ref(msgspec.Struct, kw_only=True):
    """A related record as Click Maint embeds it (`{"id", "name", …}`)."""

    id: int | None = None
    name: str | None = None


class ClickMaintRecord(msgspec.Struct, kw_only=True):
    """A Click Maint record as listed (the `data` of the answer); every other field is kept.

    The entity it belongs to is the event's `entityid` extension.
    """

    id: int
    created_at: str | None = None
    updated_at: str
    created_by: Ref | None = None
    updated_by: Ref | None = None


class PartAssignment(msgspec.Struct, kw_only=True):
    """A part assigned to a work order, as the single work order carries it."""

    part_id: int
    part_name: str | None = None
    quantity: float | None = None
    unit_name: str | None = None
    unit_short_name: str | None = None
    type: str | None = None
    total_cost: float | None = None


class WorkOrderRecord(ClickMaintRecord, kw_only=True):
    """A Click Maint work order; with `options.work_order_details` (the default) as
    `GET /work_orders/{id}` answers it, `part_assignments` included. Other fields are kept."""

    title: str | None = None
    part_assignments: list[PartAssignment] | None = None


class PartTransactionRecord(ClickMaintRecord, kw_only=True):
    """A transaction of a part (restock, adjustment, use), as its part's transaction listing
    gives it; the part is the event's `partid` extension, the entity its `entityid`."""

    type: str | None = None
    quantity: float | None = None
    cost: float | None = None
    total_cost: float | None = None
    work_order_id: int | None = None
    note: str | None = None


def event_models() -> dict[str, type[msgspec.Struct]]:
    """Every event type the listings publish, with its data model."""
    models: dict[str, type[msgspec.Struct]] = {}
    for name, resource in sorted(SINGULAR.items()):
        model: type[msgspec.Struct] = ClickMaintRecord
        if name == "work_orders":
            model = WorkOrderRecord
        elif name == "part_transactions":
            model = PartTransactionRecord
        for verb in ("created", "updated"):
            models[f"workbridge.{VENDOR}.{resource}.{verb}"] = model
    return models
