"""Watch tracked ids: for a vendor with no list endpoint and no webhooks (CMO's actions).

Each cycle GETs a slice of the tracked ids (the round goes on where the last cycle stopped,
so a large set stays within the rate limit), compares each record's content with the digest
last published, and publishes when it differs. A 404 is a deletion: published once, then the
id is no longer tracked. Where the ids come from is declared (`TrackedIds`: the instance's
options) and, with `feed`, the tracking topic the commands write (tracking.py): a create's
id, track and untrack commands, and the command whose echo the next read will see, which the
event names in its `causedby` extension.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import msgspec

from adapters.core.change_source import PollContext, PollError, SourceNeeds, Step
from adapters.core.cloudevents_codec import stable_id
from adapters.core.pagination import PageRequest
from adapters.core.poll_state import WatchState, decode_watch_state
from adapters.core.vendor import EventDraft
from adapters.settings import VendorOptions


class TrackedIds(Protocol):
    """The ids a watch should follow now (new ones join, known ones stay until deleted)."""

    async def ids(self, ctx: PollContext) -> Iterable[str]:
        """The ids to track."""
        ...


@dataclass(frozen=True)
class OptionIds:
    """Ids listed in the instance's options, per resource (`{resource: [ids]}`); `read` takes
    them from the vendor's options struct (typed, e.g. `lambda o: MyOptions.cast(o).ids`)."""

    read: Callable[[VendorOptions], Mapping[str, Iterable[object]]]

    async def ids(self, ctx: PollContext) -> Iterable[str]:
        """The ids the options list for this resource."""
        return [str(i) for i in self.read(ctx.options).get(ctx.resource, ())]


class Watched(msgspec.Struct, frozen=True, kw_only=True):
    """One watched record that changed: its content now (None: deleted), whether it was
    read before, what `remember` kept of the read before, and the command that caused the
    change where one did (its echo)."""

    instance: str
    resource: str
    id: str
    record: Any
    digest: str
    first_read: bool
    before: Mapping[str, str] | None = None
    caused_by: str | None = None

    @property
    def deleted(self) -> bool:
        """Whether the vendor answered 404."""
        return self.record is None


WatchMapper = Callable[[Watched], "EventDraft | list[EventDraft]"]
"""The vendor's events for a watched change (their type, subject and data)."""


def watched_event(vendor: str, event_resource: str) -> WatchMapper:
    """`workbridge.<vendor>.<event_resource>.deleted` on a 404, `.updated` otherwise (a watch
    cannot tell a creation); the id is that of the content, so a re-read repeats none."""

    def to_event(seen: Watched) -> EventDraft:
        verb = "deleted" if seen.deleted else "updated"
        data = {"id": seen.id} if seen.deleted else seen.record
        return EventDraft(
            type=f"workbridge.{vendor}.{event_resource}.{verb}",
            subject=f"{event_resource}/{seen.id}",
            id=stable_id(seen.instance, seen.resource, seen.id, verb, seen.digest),
            data=msgspec.json.encode(data),
            extensions=caused_by(seen),
        )

    return to_event


def caused_by(seen: Watched) -> dict[str, str]:
    """The `causedby` extension of a change a Workbridge command made (empty otherwise)."""
    return {"causedby": seen.caused_by} if seen.caused_by else {}


def content_digest(record: Any, ignore: tuple[str, ...] = ()) -> str:
    """A digest of a record's content, key order aside, without the `ignore`d top-level fields."""
    if isinstance(record, dict):
        record = {k: v for k, v in record.items() if k not in ignore}
    canonical = msgspec.json.encode(record, order="sorted")
    return hashlib.sha256(canonical).hexdigest()[:32]


log = logging.getLogger(__name__)

# How many deleted ids a watch remembers (see WatchState.gone).
GONE_KEPT = 1000


@dataclass(frozen=True)
class WatchTrackedIds:
    """GET `path` (with `{id}`) for each tracked id; publish what changed, 404 = deleted."""

    path: str
    tracked: TrackedIds
    to_event: WatchMapper
    # Fields that change without the record changing (a computed age, a view counter).
    ignore_fields: tuple[str, ...] = ()
    # GETs per cycle; the round over the ids goes on at the next cycle.
    per_cycle: int = 50
    # Reads an instance's own `per_cycle` from its options (None: `per_cycle` it is).
    per_cycle_of: Callable[[VendorOptions], int] | None = None
    # Whether the first read of an id is published (False: it only sets the baseline).
    publish_first_read: bool = True
    # Whether the commands' tracking topic adds and drops ids (tracking.py).
    feed: bool = False
    # What to keep of each read for the next one's mapper (`Watched.before`).
    remember: Callable[[Any], dict[str, str]] | None = None

    @property
    def needs(self) -> SourceNeeds:
        """The tracking topic, when the commands feed this watch."""
        return SourceNeeds(tracking=self.feed)

    def initial(self) -> WatchState:
        """Nothing tracked yet."""
        return WatchState()

    def decode(self, raw: bytes) -> WatchState:
        """A committed watch state."""
        return decode_watch_state(raw)

    async def run(self, ctx: PollContext, state: WatchState) -> AsyncIterator[Step[WatchState]]:
        """One slice of the round: a step per `max_batch` changes, the last with the cursor."""
        tracked = dict(state.tracked)
        facts = dict(state.facts)
        echoed = dict(state.echoed)
        gone = list(state.gone)
        for rid in await self.tracked.ids(ctx):
            if rid not in gone:
                tracked.setdefault(rid, None)
        feed = ctx.tracking if self.feed and ctx.tracking is not None else {}
        for rid, change in feed.items():
            if change.tracked is False:
                tracked.pop(rid, None)
                facts.pop(rid, None)
                echoed.pop(rid, None)
                if rid in gone:
                    gone.remove(rid)  # told: it no longer needs remembering
            elif change.tracked is True and rid not in gone:
                tracked.setdefault(rid, None)
        order = sorted(tracked)
        if not order:
            if (tracked, facts, echoed, gone) != (
                state.tracked,
                state.facts,
                state.echoed,
                state.gone,
            ):
                yield Step([], [], WatchState(facts=facts, echoed=echoed, gone=gone))
            return
        per_cycle = self.per_cycle if self.per_cycle_of is None else self.per_cycle_of(ctx.options)
        start = state.cursor % len(order)
        todo = (order[start:] + order[:start])[:per_cycle]
        events: list[EventDraft] = []
        failed: list[PollError] = []
        for done, rid in enumerate(todo, start=1):
            told = feed.get(rid)
            # The command whose change this read may show, once per command.
            cause = told.caused_by if told is not None else None
            fresh_cause = cause if cause is not None and echoed.get(rid) != cause else None
            try:
                read = await self._read(ctx, rid, tracked.get(rid), facts.get(rid), fresh_cause)
            except PollError as exc:
                # One record the vendor will not show (a 403, a 500) must not hold back the
                # others: it is read again next round.
                log.warning("watch %s/%s: %s (read again next round)", ctx.instance, rid, exc)
                failed.append(exc)
                read = None
            else:
                # A read that shows no change yet uses the echo up only once the command is
                # settled (its call may still be on its way).
                if fresh_cause is not None and (read is not None or told is None or told.settled):
                    echoed[rid] = fresh_cause
            if read is not None:
                drafts, digest, kept = read
                events.extend(drafts)
                if digest is None:
                    del tracked[rid]
                    facts.pop(rid, None)
                    echoed.pop(rid, None)
                    if self.feed:
                        gone = [*[g for g in gone if g != rid][-(GONE_KEPT - 1) :], rid]
                else:
                    tracked[rid] = digest
                    if kept is not None:
                        facts[rid] = kept
            now = WatchState(
                tracked=dict(tracked),
                cursor=(start + done) % len(order),
                facts=dict(facts),
                echoed=dict(echoed),
                gone=list(gone),
            )
            last = done == len(todo)
            if last and failed and len(failed) == len(todo):
                raise failed[0]  # nothing could be read: the cycle failed (and is retried)
            # An unchanged state needs no transaction: a quiet watch writes nothing.
            if len(events) >= ctx.settings.max_batch or (last and (events or now != state)):
                yield Step(events, [], now)
                events = []

    async def _read(
        self,
        ctx: PollContext,
        rid: str,
        previous: str | None,
        before: Mapping[str, str] | None,
        cause: str | None,
    ) -> tuple[list[EventDraft], str | None, dict[str, str] | None] | None:
        """(events, the new digest or None when the id is gone, what to remember), or None:
        unchanged."""
        path = ctx.path(self.path).format(id=quote(rid, safe=""))
        response = await ctx.fetch(PageRequest(path))
        if response.status == 404:
            if previous is None:
                return [], None, None  # never read: nothing to say it was there
            seen = Watched(
                instance=ctx.instance,
                resource=ctx.resource,
                id=rid,
                record=None,
                digest=previous,
                first_read=False,
                before=before,
                caused_by=cause,
            )
            return _drafts(self.to_event(seen)), None, None
        if not 200 <= response.status < 300:
            raise PollError(f"GET {path}: {response.status}")
        try:
            record = response.json()
        except msgspec.DecodeError as exc:
            raise PollError(f"GET {path}: unreadable record: {exc}") from None
        digest = content_digest(record, self.ignore_fields)
        if digest == previous:
            return None
        first = previous is None
        seen = Watched(
            instance=ctx.instance,
            resource=ctx.resource,
            id=rid,
            record=record,
            digest=digest,
            first_read=first,
            before=before,
            caused_by=cause,
        )
        publish = not first or self.publish_first_read
        kept = self.remember(record) if self.remember is not None else None
        return (_drafts(self.to_event(seen)) if publish else []), digest, kept


def _drafts(made: EventDraft | list[EventDraft]) -> list[EventDraft]:
    return made if isinstance(made, list) else [made]
