"""Change sources: how a poll task finds changes, and the state it commits with them.

A poll task is one resource of one instance, or one (scope, resource) when the resource is
fanned out over discovered scopes. Its `ChangeSource` reads the vendor through the context's
`fetch` and yields `Step`s. The core commits each step (its events, its dead letters and the
task's new state) in one Kafka transaction, in order, and starts the next cycle from the state
committed last. So a source commits as it goes (page by page) and a restart resumes it.

The sources a vendor declares:
- `ListByReplicationKey` (list_source.py): a listing filtered and ordered by a change time
  (MOCO; Click Maint and CLOUDWORK|PRO alike);
- `WatchTrackedIds` (watch_source.py): GET each tracked id, compare its content, 404 = deleted
  (CMO, which has no list endpoint);
- recovery of missed webhooks is a `ListByReplicationKey` over the vendor's stored
  notifications whose mapper is `webhook_recovery.as_delivered(<the webhook mapper>)`: it
  builds the webhook path's own event (same id), so a change seen by both is one event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

import msgspec

from adapters.core.cloudevents_codec import stable_id
from adapters.core.pagination import PageRequest
from adapters.core.track_change import TrackChange
from adapters.core.vendor import EventDraft
from adapters.core.vendor_http import VendorResponse
from adapters.settings import PolledVendorOptions, PollingConfig, VendorOptions

S = TypeVar("S", bound=msgspec.Struct)


class PollError(Exception):
    """A poll cycle could not complete; it is tried again at the next interval."""


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A vendor record that cannot become an event; it goes to the DLQ with `reason`."""

    record: Any
    reason: str
    record_id: str | None = None


@dataclass(frozen=True)
class Step(Generic[S]):
    """What the core commits in one transaction: events, dead letters and the new state."""

    events: list[EventDraft]
    dead: list[DeadLetter]
    state: S


@dataclass(frozen=True)
class PollSettings:
    """The instance's polling settings, as a source needs them."""

    overlap: timedelta
    page_size: int
    max_batch: int
    start_from: Literal["beginning", "now"]
    # Each overrides the source's own declaration where the instance sets it
    # (`polling.max_pages`, `polling.seen_limit`, `polling.date_margin_s`).
    max_pages: int | None = None
    seen_limit: int | None = None
    date_margin: timedelta | None = None
    # `polling.skip_published`: a source that can leave out what is on the topic does.
    skip_published: bool = True

    @classmethod
    def of(cls, cfg: PollingConfig) -> PollSettings:
        """An instance's `polling:` block as a source reads it."""
        return cls(
            overlap=timedelta(seconds=cfg.overlap_s),
            page_size=cfg.page_size,
            max_batch=cfg.max_batch,
            start_from=cfg.start_from,
            max_pages=cfg.max_pages,
            seen_limit=cfg.seen_limit,
            date_margin=None if cfg.date_margin_s is None else timedelta(seconds=cfg.date_margin_s),
            skip_published=cfg.skip_published,
        )


Fetch = Callable[[PageRequest], Awaitable[VendorResponse]]
"""GET one request with the instance's retries; a non-success answer raises `PollError`.
A 404 is returned, not raised, so that a watch can tell a deleted record."""


@dataclass(frozen=True)
class PollContext:
    """What a source gets for one cycle of one task."""

    instance: str
    resource: str
    scope: str | None
    settings: PollSettings
    fetch: Fetch
    # The instance's options as its vendor's struct; a `PolledVendorOptions` carries the
    # overrides `resource_paths` and `poll_params` that `path` and `params` apply.
    options: VendorOptions
    now: Callable[[], datetime]
    # The tracking topic as of this cycle (tracking.py), for a source whose
    # `needs.tracking` is set (a watch fed by commands).
    tracking: Mapping[str, TrackChange] | None = None
    # The ids on the instance's events topic produced since a time (recent_events.py), for
    # a source whose `needs.published` is set (a missed-webhook recovery).
    published_since: Callable[[datetime], Awaitable[set[str]]] | None = None

    def path(self, default: str) -> str:
        """The resource's path, unless the instance overrides it (`options.resource_paths`)."""
        if not isinstance(self.options, PolledVendorOptions):
            return default
        return self.options.resource_paths.get(self.resource, default)

    def params(self, default: Mapping[str, str]) -> dict[str, str]:
        """The listing's query: the declared one with the instance's `options.poll_params`
        for this resource over it (a value of null drops a parameter)."""
        overrides: Mapping[str, str | None] = {}
        if isinstance(self.options, PolledVendorOptions):
            overrides = self.options.poll_params.get(self.resource, {})
        merged: dict[str, str | None] = {**default, **overrides}
        return {key: value for key, value in merged.items() if value is not None}


@dataclass(frozen=True)
class SourceNeeds:
    """What a source needs in its `PollContext` beyond `fetch`; the core opens a reader for
    each need only for the tasks whose source declares it (each costs a Kafka consumer)."""

    # `ctx.tracking`: the commands' tracking topic (a watch that creates and tracks feed).
    tracking: bool = False
    # `ctx.published_since`: the ids already on the events topic (a missed-webhook recovery
    # that publishes only what the push did not).
    published: bool = False


NEEDS_NOTHING = SourceNeeds()


@runtime_checkable
class DeclaresNeeds(Protocol):
    """A source that needs more than `fetch` says so here (most need nothing and omit it)."""

    @property
    def needs(self) -> SourceNeeds:
        """What this source reads besides the vendor."""
        ...


def needs_of(source: object) -> SourceNeeds:
    """The needs a source declares (`DeclaresNeeds`), or none."""
    return source.needs if isinstance(source, DeclaresNeeds) else NEEDS_NOTHING


class ChangeSource(Protocol[S]):
    """How one poll task finds changes; `S` is its versioned state struct."""

    def initial(self) -> S:
        """The state of a task that has never run."""
        ...

    def decode(self, raw: bytes) -> S:
        """A committed state (raises `poll_state.StateError` for one it cannot read)."""
        ...

    def run(self, ctx: PollContext, state: S) -> AsyncIterator[Step[S]]:
        """One cycle: the steps to commit, in order, from the last committed `state`."""
        ...


class PolledRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One record as a poll task saw it."""

    instance: str
    resource: str
    scope: str | None
    id: str
    changed: datetime
    record: dict[str, Any]


class UnmappableRecord(Exception):
    """A polled record the vendor's mapper cannot turn into an event; the text is the DLQ's
    reason. The record goes to the DLQ and its resource goes on."""


RecordMapper = Callable[[PolledRecord], EventDraft]
"""The vendor's mapping of a polled record to its event type, subject, id and data; raises
`UnmappableRecord` for one it cannot map."""


def change_id(seen: PolledRecord) -> str:
    """The same record at the same change time gets the same event id, however often polled."""
    scope = () if seen.scope is None else (seen.scope,)
    return stable_id(seen.instance, seen.resource, *scope, seen.id, seen.changed.isoformat())


def created_or_updated(
    vendor: str,
    event_resource: str,
    *,
    replication_key: str,
    created_key: str | None,
    event_id: Callable[[PolledRecord], str] = change_id,
) -> RecordMapper:
    """`workbridge.<vendor>.<event_resource>.created` when the record's creation time equals
    its change time, else `.updated`; subject `<event_resource>/<id>`. `event_id` is the
    vendor's rule where its webhooks carry the same change (so both paths give one id)."""

    def to_event(seen: PolledRecord) -> EventDraft:
        record = seen.record
        created = created_key is not None and record.get(created_key) == record.get(replication_key)
        verb = "created" if created else "updated"
        return EventDraft(
            type=f"workbridge.{vendor}.{event_resource}.{verb}",
            subject=f"{event_resource}/{seen.id}",
            id=event_id(seen),
            time=seen.changed,
            data=msgspec.json.encode(record),
        )

    return to_event


class ScopeSource(Protocol):
    """Discovers the scopes a fanned-out resource runs in (Click Maint: its entities), and says
    how a request is made in one of them."""

    def refresh_s(self, options: VendorOptions | None = None) -> float:
        """How often the scopes are discovered again for an instance with these options (a
        new scope starts its tasks then)."""
        ...

    async def discover(self, fetch: Fetch, options: VendorOptions | None = None) -> list[str]:
        """The scopes there are now, for an instance with these options (an instance may
        name its scopes instead of having them listed)."""
        ...

    def headers(self, scope: str) -> Mapping[str, str]:
        """Headers that put a request in `scope` (Click Maint: `X-Entity-Id`)."""
        ...
