"""List by replication key: a listing filtered by change time, committed page by page.

A pass asks for everything changed since `mark - overlap`, in the order the vendor is asked
for (newest first where it allows it, see listing_guard.py), and commits each page's events
with the state that resumes the pass after it. When the pass ends, the mark moves to when the
listing started (the vendor's `Date`, else the local clock, less a margin), not to the newest
change seen: a record that changed while the listing was paged is newer than that, so the next
pass reads it. If the pass cannot rule out a skipped record, the mark stays and the next pass
reads the range again; `seen` keeps that from publishing anything twice.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import msgspec

from adapters.core.change_source import (
    DeadLetter,
    PollContext,
    PolledRecord,
    PollError,
    RecordMapper,
    SourceNeeds,
    Step,
    UnmappableRecord,
)
from adapters.core.listing_guard import Verdict, judge
from adapters.core.pagination import (
    JsonPath,
    PageRequest,
    PageWalk,
    PaginationBroken,
    PaginationLoop,
    Paginator,
    dig,
)
from adapters.core.poll_state import ListingPass, ListState, decode_list_state, pass_floor
from adapters.core.vendor import EventDraft
from adapters.core.vendor_http import VendorResponse

log = logging.getLogger(__name__)

# The version `seen` holds for a record sent to the DLQ, so that a re-read does not send it again.
DEAD = datetime(1970, 1, 1, tzinfo=UTC)

Keyed = tuple[datetime, str, dict[str, Any]]


@dataclass(frozen=True)
class ListByReplicationKey:
    """A listing of one resource by a change time (a Singer stream with a replication key)."""

    path: str
    paginator: Paginator
    replication_key: str
    parse_time: Callable[[str], datetime]
    to_event: RecordMapper
    # The query parameter that filters by "changed after" (None: every pass reads it all).
    since_param: str | None = None
    format_since: Callable[[datetime], str] = datetime.isoformat
    primary_key: str = "id"
    # Where the records are in the body (`()`: the body is the array).
    records_at: JsonPath = ()
    # The listing's own query: the order to ask for, fixed filters.
    params: Mapping[str, str] = field(default_factory=dict)
    # Whether `params` ask for newest first by the replication key (checked on every page).
    newest_first: bool = False
    # The vendor's `Date` has whole seconds; without one, the local clock may be ahead.
    date_margin: timedelta = timedelta(seconds=1)
    local_clock_margin: timedelta = timedelta(seconds=60)
    # Pages per cycle: a longer listing goes on at the next cycle, where it stopped.
    max_pages: int = 50
    # Published versions kept in the state (each costs ~40 bytes of the state record).
    seen_limit: int = 10_000
    max_rewinds: int = 5
    history_pages: int = 4
    # Leave out the events already on the events topic: a change that a webhook published
    # under the same id (the vendor's id rule gives both paths one id) is not published
    # again by the poll. The ids are read back from the pass's floor less this margin (a
    # push is produced after the change; Kafka's clock may be behind the vendor's). None:
    # publish every version listed (consumers deduplicate by id). The first pass, which has
    # no floor, skips nothing.
    skip_published: timedelta | None = None

    @property
    def needs(self) -> SourceNeeds:
        """The published ids, when this listing skips what is on the topic already."""
        return SourceNeeds(published=self.skip_published is not None)

    def initial(self) -> ListState:
        """A task that has never run: no mark, so the first pass lists everything."""
        return ListState()

    def decode(self, raw: bytes) -> ListState:
        """A committed state, also one written by an earlier release."""
        return decode_list_state(raw)

    async def run(self, ctx: PollContext, state: ListState) -> AsyncIterator[Step[ListState]]:
        """One cycle: the rest of the pass under way, or a new pass from the mark."""
        if state.mark is None and state.listing is None and ctx.settings.start_from == "now":
            yield Step([], [], ListState(mark=ctx.now()))
            return
        floor, margin = pass_floor(state, ctx.settings.overlap), self.skip_published
        skips = margin is not None and floor is not None and ctx.settings.skip_published
        published = None
        if skips and margin is not None and floor is not None:
            published = _Published(ctx, margin, floor)
        async for step in _Pass(self, ctx, state).steps():
            if published is not None and step.events:
                step = await published.left_out(step)
            yield step


class _Published:
    """The ids already on the events topic, read back from the oldest change a step holds
    (less the margin) to the topic's end: a webhook of a change is produced after it. A
    quiet resource (no events) reads nothing; a failed read publishes the step whole (a
    repeat under the same id, never a loss)."""

    def __init__(self, ctx: PollContext, margin: timedelta, floor: datetime) -> None:
        self.ctx, self.margin, self.floor = ctx, margin, floor
        self.since: datetime | None = None
        self.ids: set[str] = set()

    async def left_out(self, step: Step[ListState]) -> Step[ListState]:
        read = self.ctx.published_since
        if read is None:
            return step
        # An event without a time may be of any change since the pass's floor.
        oldest = min(self.floor if e.time is None else e.time for e in step.events)
        since = max(oldest, self.floor) - self.margin
        if self.since is None or since < self.since:
            try:
                self.ids = await read(since)
            except Exception as exc:  # an ACL, a timeout: publish, as without skipping
                log.warning(
                    "poll %s/%s: cannot read back the events topic (%s); publishing "
                    "this page whole",
                    self.ctx.instance,
                    self.ctx.resource,
                    exc,
                )
                return step
            self.since = since
        fresh = [e for e in step.events if e.id not in self.ids]
        return step if len(fresh) == len(step.events) else Step(fresh, step.dead, step.state)


class _Pass:
    """One pass (or the rest of one) of a `ListByReplicationKey` source."""

    def __init__(self, source: ListByReplicationKey, ctx: PollContext, state: ListState) -> None:
        self.src, self.ctx = source, ctx
        self.mark = state.mark
        self.seen = dict(state.seen)
        self.resumed = state.listing
        sent = list(state.listing.history.values()) if state.listing else []
        self.walk = PageWalk(ctx.settings.max_pages or source.max_pages, sent)

    async def steps(self) -> AsyncIterator[Step[ListState]]:
        listing = self.resumed
        request, floor = (listing.next, listing.floor) if listing else self._first()
        while True:
            try:
                self.walk.send(request)
            except PaginationLoop as exc:
                assert listing is not None  # a first request cannot repeat
                log.error("poll %s/%s: %s", self.ctx.instance, self._name(), exc)
                # The rest of the listing is unread: whatever it held must not fall behind.
                ended = msgspec.structs.replace(listing, unsafe=str(exc), quiet=False)
                yield Step([], [], self._finish(ended))
                return
            sent_at = self.ctx.now()
            response = await self.ctx.fetch(request)
            body, records = self._read(request, response)
            if listing is None:
                listing = ListingPass(
                    started=self._started(response, sent_at), floor=floor, next=request, index=1
                )
            good, dead = self._parse(records)
            keyed = [(ts, rid) for ts, rid, _ in good]
            total = self.src.paginator.total(response, body)
            verdict = judge(
                listing,
                keyed,
                total,
                newest_first=self.src.newest_first,
                max_rewinds=self.src.max_rewinds,
            )
            broken: str | None = None
            try:
                following = self.src.paginator.next(request, response, body)
            except PaginationBroken as exc:
                log.error("poll %s/%s: %s", self.ctx.instance, self._name(), exc)
                following, broken = None, str(exc)
            after = self._advance(listing, request, keyed, total, verdict, following, records)
            if broken is not None:
                after = msgspec.structs.replace(after, unsafe=broken, quiet=False, broken=True)
            done = after.next is None
            single = done and after.index == 1 and after.rewinds == 0 and self.resumed is None
            events, unmappable = self._publish(good, floor)
            dead += unmappable
            if single and not events and not dead:
                return  # nothing new on the only page: the committed state still holds
            for step in self._chunks(events, dead, listing, after):
                yield step
            if done:
                return
            assert after.next is not None
            listing, request = after, after.next
            if self.walk.capped:
                log.info(
                    "poll %s/%s: %d pages read; the listing goes on at the next cycle",
                    self.ctx.instance,
                    self._name(),
                    self.walk.pages,
                )
                return

    def _name(self) -> str:
        scope = f"@{self.ctx.scope}" if self.ctx.scope is not None else ""
        return f"{self.ctx.resource}{scope}"

    def _first(self) -> tuple[PageRequest, datetime | None]:
        floor = self.mark - self.ctx.settings.overlap if self.mark is not None else None
        params = self.ctx.params(self.src.params)
        if floor is not None and self.src.since_param:
            params[self.src.since_param] = self.src.format_since(floor)
        path = self.ctx.path(self.src.path)
        return self.src.paginator.first(path, params, self.ctx.settings.page_size), floor

    def _read(self, request: PageRequest, response: VendorResponse) -> tuple[Any, list[Any]]:
        if not 200 <= response.status < 300:
            raise PollError(f"GET {request.url}: {response.status}")
        try:
            body = response.json()
        except msgspec.DecodeError as exc:
            raise PollError(f"GET {request.url}: unreadable listing: {exc}") from None
        records = dig(body, self.src.records_at)
        if not isinstance(records, list):
            raise PollError(f"GET {request.url}: the listing holds no array of records")
        return body, records

    def _started(self, response: VendorResponse, sent_at: datetime) -> datetime:
        raw = response.headers.get("date")
        if raw:
            try:
                vendor_now = parsedate_to_datetime(raw)
            except (TypeError, ValueError):
                vendor_now = None
            if vendor_now is not None and vendor_now.tzinfo is not None:
                margin = self.ctx.settings.date_margin
                return vendor_now - (self.src.date_margin if margin is None else margin)
        return sent_at - self.src.local_clock_margin

    def _parse(self, records: list[Any]) -> tuple[list[Keyed], list[DeadLetter]]:
        good: list[Keyed] = []
        dead: list[DeadLetter] = []
        key, pk = self.src.replication_key, self.src.primary_key
        for record in records:
            if not isinstance(record, dict):
                dead.append(DeadLetter(record=record, reason="a listed record is not an object"))
                continue
            rid = record.get(pk)
            if rid is None or isinstance(rid, dict | list):
                dead.append(DeadLetter(record=record, reason=f"the record has no {pk}"))
                continue
            rid = str(rid)
            raw = record.get(key)
            reason = None
            if raw is None:
                reason = f"the record has no {key} (its replication key)"
            else:
                try:
                    good.append((self.src.parse_time(str(raw)), rid, record))
                except (TypeError, ValueError):
                    reason = f"the record's {key} is not a time: {str(raw)[:100]!r}"
            if reason is not None and self.seen.get(rid) != DEAD:
                dead.append(DeadLetter(record=record, reason=reason, record_id=rid))
        return good, dead

    def _publish(
        self, good: list[Keyed], floor: datetime | None
    ) -> tuple[list[Published], list[DeadLetter]]:
        """The page's new versions, oldest first, as events, and those the vendor's mapper
        refused, as dead letters (`seen` is not changed yet)."""
        newest: dict[str, Keyed] = {}
        for ts, rid, record in good:
            if floor is not None and ts < floor:
                continue  # older than the mark: published by an earlier pass
            if self.seen.get(rid) == ts or (rid in newest and newest[rid][0] >= ts):
                continue
            newest[rid] = (ts, rid, record)
        events: list[Published] = []
        dead: list[DeadLetter] = []
        for ts, rid, record in sorted(newest.values(), key=lambda item: (item[0], item[1])):
            seen = PolledRecord(
                instance=self.ctx.instance,
                resource=self.ctx.resource,
                scope=self.ctx.scope,
                id=rid,
                changed=ts,
                record=record,
            )
            try:
                events.append(Published(self.src.to_event(seen), rid, ts))
            except UnmappableRecord as exc:
                dead.append(DeadLetter(record=record, reason=str(exc), record_id=rid))
        return events, dead

    def _advance(
        self,
        listing: ListingPass,
        request: PageRequest,
        keyed: list[tuple[datetime, str]],
        total: int | None,
        verdict: Verdict,
        following: PageRequest | None,
        records: list[Any],
    ) -> ListingPass:
        history = {**listing.history, listing.index: request}
        for index in sorted(history)[: -self.src.history_pages]:
            del history[index]
        common: dict[str, Any] = {
            "history": history,
            "total": total,
            "page_len": max(listing.page_len, len(records)),
            "previous": listing.recent,
            "recent": {rid: ts for ts, rid in keyed},
            "unsafe": verdict.unsafe,
            "quiet": verdict.quiet,
        }
        if verdict.rewind_to is not None:
            target = history[verdict.rewind_to]
            self.walk.rewind_to(target)
            log.info(
                "poll %s/%s: the listing's total dropped while paged; re-reading from page %d",
                self.ctx.instance,
                self._name(),
                verdict.rewind_to,
            )
            return msgspec.structs.replace(
                listing,
                next=target,
                index=verdict.rewind_to,
                last_key=None,
                rewinds=listing.rewinds + 1,
                **common,
            )
        return msgspec.structs.replace(
            listing,
            next=following,
            index=listing.index + 1 if following is not None else listing.index,
            last_key=keyed[-1][0] if keyed else listing.last_key,
            **common,
        )

    def _finish(self, listing: ListingPass) -> ListState:
        one_page = listing.index == 1 and listing.rewinds == 0 and self.resumed is None
        safe = not listing.broken and (
            one_page or listing.quiet or (self.src.newest_first and listing.unsafe is None)
        )
        mark = self.mark
        if safe:
            mark = max(mark, listing.started) if mark is not None else listing.started
        else:
            log.warning(
                "poll %s/%s: the listing changed while it was paged (%s); the cursor stays "
                "and the next pass reads the same range again",
                self.ctx.instance,
                self._name(),
                listing.unsafe or "not quiet",
            )
        overlap = self.ctx.settings.overlap
        floor = mark - overlap if mark is not None else None
        kept = {
            rid: ts for rid, ts in self.seen.items() if floor is None or ts == DEAD or ts >= floor
        }
        protect = listing.started - overlap
        limit = self.ctx.settings.seen_limit or self.src.seen_limit
        return ListState(mark=mark, seen=bounded(kept, limit, protect))

    def _chunks(
        self,
        events: list[Published],
        dead: list[DeadLetter],
        before: ListingPass,
        after: ListingPass,
    ) -> list[Step[ListState]]:
        """The page as steps of at most `max_batch` records. Each step's state holds in
        `seen` exactly what it and the steps before it published; all but the last resume at
        this page, the last one after it (or ends the pass)."""
        size = self.ctx.settings.max_batch
        items: list[Published | DeadLetter] = [*dead, *events]
        steps: list[Step[ListState]] = []
        for start in range(0, max(len(items), 1), size):
            part = items[start : start + size]
            for item in part:
                if isinstance(item, Published):
                    _remember(self.seen, item.id, item.changed)
                elif item.record_id is not None:
                    _remember(self.seen, item.record_id, DEAD)
            last = start + size >= len(items)
            if not last:
                state = ListState(mark=self.mark, seen=dict(self.seen), listing=before)
            elif after.next is None:
                state = self._finish(after)
            else:
                state = ListState(mark=self.mark, seen=dict(self.seen), listing=after)
            steps.append(
                Step(
                    [i.event for i in part if isinstance(i, Published)],
                    [i for i in part if isinstance(i, DeadLetter)],
                    state,
                )
            )
        return steps


class Published(msgspec.Struct, frozen=True):
    """An event for one record version, with what `seen` remembers of it."""

    event: EventDraft
    id: str
    changed: datetime


def _remember(seen: dict[str, datetime], rid: str, ts: datetime) -> None:
    # Re-inserted at the end: `bounded` evicts what was published longest ago first.
    seen.pop(rid, None)
    seen[rid] = ts


def bounded(seen: dict[str, datetime], limit: int, protect_from: datetime) -> dict[str, datetime]:
    """`seen` cut to `limit` entries: first those published longest ago that the next pass
    will not re-read (older than `protect_from`), then, if need be, any longest ago.

    Cutting can only make a record published twice (with the same event id), never lost.
    """
    if len(seen) <= limit:
        return seen
    excess = len(seen) - limit
    out = dict(seen)
    for rid, ts in seen.items():
        if excess == 0:
            break
        if ts != DEAD and ts < protect_from:
            del out[rid]
            excess -= 1
    for rid in list(out)[:excess]:
        del out[rid]
    return out
