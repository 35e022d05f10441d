"""Watch tracked ids: for a vendor with no list endpoint and no webhooks (CMO's actions).

Each cycle GETs a slice of the tracked ids (the round goes on where the last cycle stopped,
so a large set stays within the rate limit), compares each record's content with the digest
last published, and publishes when it differs. A 404 is a deletion: published once, then the
id is no longer tracked. Where the ids come from is declared (`TrackedIds`): the instance's
options, and (not yet built) the records Workbridge's own commands created.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import msgspec

from adapters.core.change_source import PollContext, PollError, Step
from adapters.core.cloudevents_codec import stable_id
from adapters.core.pagination import PageRequest
from adapters.core.poll_state import WatchState, decode_watch_state
from adapters.core.vendor import EventDraft


class TrackedIds(Protocol):
    """The ids a watch should follow now (new ones join, known ones stay until deleted)."""

    async def ids(self, ctx: PollContext) -> Iterable[str]:
        """The ids to track."""
        ...


@dataclass(frozen=True)
class OptionIds:
    """Ids listed in the instance's options under `key` (per resource: `{resource: [ids]}`)."""

    key: str = "watch_ids"

    async def ids(self, ctx: PollContext) -> Iterable[str]:
        """The ids the options list for this resource."""
        listed: Mapping[str, Iterable[object]] = getattr(ctx.options, self.key, {})
        return [str(i) for i in listed.get(ctx.resource, ())]


class Watched(msgspec.Struct, frozen=True, kw_only=True):
    """One watched record that changed: its content now (None: deleted), and whether it was
    read before."""

    instance: str
    resource: str
    id: str
    record: Any
    digest: str
    first_read: bool

    @property
    def deleted(self) -> bool:
        """Whether the vendor answered 404."""
        return self.record is None


WatchMapper = Callable[[Watched], EventDraft]
"""The vendor's event for a watched change (its type, subject and data)."""


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
        )

    return to_event


def content_digest(record: Any, ignore: tuple[str, ...] = ()) -> str:
    """A digest of a record's content, key order aside, without the `ignore`d top-level fields."""
    if isinstance(record, dict):
        record = {k: v for k, v in record.items() if k not in ignore}
    canonical = msgspec.json.encode(record, order="sorted")
    return hashlib.sha256(canonical).hexdigest()[:32]


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
    # Whether the first read of an id is published (False: it only sets the baseline).
    publish_first_read: bool = True

    def initial(self) -> WatchState:
        """Nothing tracked yet."""
        return WatchState()

    def decode(self, raw: bytes) -> WatchState:
        """A committed watch state."""
        return decode_watch_state(raw)

    async def run(self, ctx: PollContext, state: WatchState) -> AsyncIterator[Step[WatchState]]:
        """One slice of the round: a step per `max_batch` changes, the last with the cursor."""
        tracked = dict(state.tracked)
        for rid in await self.tracked.ids(ctx):
            tracked.setdefault(rid, None)
        order = sorted(tracked)
        if not order:
            return
        start = state.cursor % len(order)
        todo = (order[start:] + order[:start])[: self.per_cycle]
        events: list[EventDraft] = []
        for done, rid in enumerate(todo, start=1):
            change = await self._read(ctx, rid, tracked.get(rid))
            if change is not None:
                event, digest = change
                if event is not None:
                    events.append(event)
                if digest is None:
                    del tracked[rid]
                else:
                    tracked[rid] = digest
            now = WatchState(tracked=dict(tracked), cursor=(start + done) % len(order))
            last = done == len(todo)
            # An unchanged state needs no transaction: a quiet watch writes nothing.
            if len(events) >= ctx.settings.max_batch or (last and (events or now != state)):
                yield Step(events, [], now)
                events = []

    async def _read(
        self, ctx: PollContext, rid: str, previous: str | None
    ) -> tuple[EventDraft | None, str | None] | None:
        """(event or None, the new digest or None when the id is gone), or None: unchanged."""
        path = ctx.path(self.path).format(id=quote(rid, safe=""))
        response = await ctx.fetch(PageRequest(path))
        if response.status == 404:
            if previous is None:
                return None, None  # never read: nothing to say it was there
            seen = Watched(
                instance=ctx.instance,
                resource=ctx.resource,
                id=rid,
                record=None,
                digest=previous,
                first_read=False,
            )
            return self.to_event(seen), None
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
        )
        publish = not first or self.publish_first_read
        return (self.to_event(seen) if publish else None), digest
