"""CMO's changes, without a list endpoint or webhooks: a watch over the actions Workbridge knows.

The tracked actions are those the instance's commands created or tracked (the tracking topic,
adapters/core/tracking.py) and `options.tracked_ids`. Each is read with
`GET /api/actions/{id}` within the instance's budget, a slice per poll cycle; a change of its
content is `workbridge.cmo.action.updated`, plus `.status_changed` when `status.code` moved,
and a 404 is `.deleted` (then the action is no longer read). A read that follows a Workbridge
command on that action names the command in the `causedby` extension (its echo).

What a consumer cannot learn: an action created in CMO by someone else is not seen until it
is tracked (`workbridge.cmo.action.track`, or `options.tracked_ids`); a change is seen at the
next read, so two changes between reads are one event.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from adapters.cmo.undocumented import ACTION_PATH, WATCH_IGNORE_FIELDS, WATCH_PER_CYCLE, CmoOptions
from adapters.core.change_source import PollContext
from adapters.core.cloudevents_codec import stable_id
from adapters.core.vendor import EventDraft, PollResource, PollSpec
from adapters.core.watch_source import Watched, WatchTrackedIds, caused_by, watched_event

RESOURCE = "actions"
EVENT_PREFIX = "workbridge.cmo.action"


class ConfiguredIds:
    """`options.tracked_ids`: actions to watch from the start."""

    async def ids(self, ctx: PollContext) -> Iterable[str]:
        """The ids the options list."""
        return list(CmoOptions.cast(ctx.options).tracked_ids)


def _status(record: Any) -> str | None:
    status = record.get("status") if isinstance(record, dict) else None
    code = status.get("code") if isinstance(status, dict) else None
    return None if code is None else str(code)


def remember(record: Any) -> dict[str, str]:
    """What the next read compares with: the status code."""
    code = _status(record)
    return {} if code is None else {"status": code}


_plain = watched_event("cmo", "action")


def to_events(seen: Watched) -> list[EventDraft]:
    """`.updated` / `.deleted` as any watch; `.status_changed` too when `status.code` moved
    since the last read (not on the first read: there is nothing it moved from)."""
    made = _plain(seen)
    events = made if isinstance(made, list) else [made]
    if seen.deleted or seen.before is None:
        return events
    before, now = seen.before.get("status"), _status(seen.record)
    if before is None or now is None or before == now:
        return events
    status = seen.record.get("status")
    data = {"id": seen.id, "from": {"code": _number(before)}, "to": status, "action": seen.record}
    events.append(
        EventDraft(
            type=f"{EVENT_PREFIX}.status_changed",
            subject=f"action/{seen.id}",
            id=stable_id(seen.instance, seen.resource, seen.id, "status_changed", seen.digest),
            data=msgspec.json.encode(data),
            extensions=caused_by(seen),
        )
    )
    return events


def _number(code: str) -> int | str:
    try:
        return int(code)
    except ValueError:
        return code


WATCH = WatchTrackedIds(
    path=ACTION_PATH,
    tracked=ConfiguredIds(),
    to_event=to_events,
    ignore_fields=WATCH_IGNORE_FIELDS,
    per_cycle=WATCH_PER_CYCLE,
    per_cycle_of=lambda options: CmoOptions.cast(options).watch_per_cycle,
    feed=True,
    remember=remember,
)

POLL = PollSpec(resources={RESOURCE: PollResource(name=RESOURCE, source=WATCH)})


# --- event data models (schemas/) -------------------------------------------------------------


class Ref(msgspec.Struct, kw_only=True):
    """A related record as CMO embeds it (`{"id", "name"}`)."""

    id: int | str | None = None
    name: str | None = None


class Status(msgspec.Struct, kw_only=True):
    """An action's status (`{"code": 1, "name": "Pending"}`)."""

    code: int | None = None
    name: str | None = None


class User(msgspec.Struct, kw_only=True):
    """A CMO user as an action embeds it."""

    id: int | None = None
    firstName: str | None = None
    lastName: str | None = None
    loginName: str | None = None
    email: str | None = None


class Risk(msgspec.Struct, kw_only=True):
    """A risk rating; -1 codes mean no risk."""

    consequenceCode: int | None = None
    likelihoodCode: int | None = None


class Action(msgspec.Struct, kw_only=True):
    """An action as `GET /api/actions/{id}` returns it (the document's example; fields the
    example does not show are kept as CMO sends them)."""

    id: str
    uniqueID: str | None = None
    actionText: str | None = None
    status: Status | None = None
    guidanceText: str | None = None
    carbonCopyEmail: str | None = None
    orgUnit: Ref | None = None
    entity: Ref | None = None
    category: Ref | None = None
    priority: Ref | None = None
    assignorUser: User | None = None
    responsibleUser: User | None = None
    createdDateTime: str | None = None
    dueDate: str | None = None
    verifications: list[Any] | None = None
    gpsCoordinates: dict[str, float] | None = None
    actionValue: float | None = None
    hoursTaken: float | None = None
    progress: float | None = None
    residualRisk: Risk | None = None
    inherentRisk: Risk | None = None
    customFields: list[dict[str, Any]] | None = None


class Deleted(msgspec.Struct, kw_only=True):
    """A tracked action that CMO no longer has (404)."""

    id: str


class StatusChanged(msgspec.Struct, kw_only=True):
    """An action whose `status.code` moved since the last read."""

    id: str
    # The status code read before (CMO's name for it is not kept).
    from_: dict[str, Any] = msgspec.field(name="from")
    to: Status
    action: Action


def event_models() -> dict[str, type[msgspec.Struct]]:
    """The data models of the event types, for schemas/."""
    return {
        f"{EVENT_PREFIX}.updated": Action,
        f"{EVENT_PREFIX}.deleted": Deleted,
        f"{EVENT_PREFIX}.status_changed": StatusChanged,
    }
