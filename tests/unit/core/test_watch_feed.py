"""A watch fed by the commands' tracking topic: ids join and leave, echoes are named."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec

from adapters.core.track_change import TrackChange, decode_change, tracking_record
from adapters.core.vendor import EventDraft
from adapters.core.vendor_http import VendorResponse
from adapters.core.watch_source import (
    GONE_KEPT,
    OptionIds,
    Watched,
    WatchTrackedIds,
    caused_by,
    watched_event,
)
from tests.unit.core.poll_harness import Runner
from tests.unit.core.test_watch_source import ACTION, ACTION_ID, OTHER_ID, Actions, watch_ids


def fed(**changes: Any) -> WatchTrackedIds:
    fields: dict[str, Any] = {"to_event": watched_event("cmo", "action"), **changes}
    return WatchTrackedIds(
        path="/api/actions/{id}", tracked=OptionIds(watch_ids), feed=True, **fields
    )


def told(run: Runner, *changes: TrackChange) -> None:
    """The tracking topic as the next cycle sees it (latest change per id)."""
    feed = dict(run.ctx.tracking or {})
    feed.update({c.id: c for c in changes})
    run.ctx = dataclasses.replace(run.ctx, tracking=feed)


def test_a_change_round_trips_through_its_record() -> None:
    change = TrackChange(id=ACTION_ID, caused_by="cmd-1")
    key, value = tracking_record(change)
    assert key == ACTION_ID.encode()
    assert decode_change(value) == change
    assert decode_change(b"not json") is None


async def test_an_id_from_a_command_is_watched_and_its_echo_named_once() -> None:
    cmo = Actions(ACTION)
    run = Runner(fed(), cmo, resource="actions")
    assert (await run.cycle()).events == []  # nothing tracked yet
    told(run, TrackChange(id=ACTION_ID, caused_by="create-1"))
    [first] = (await run.cycle()).events
    assert first.extensions == {"causedby": "create-1"}  # the create's own record
    cmo.actions[ACTION_ID]["progress"] = 95  # changed in CMO by someone
    [later] = (await run.cycle()).events
    assert later.extensions == {}  # the create's echo was seen already
    told(run, TrackChange(id=ACTION_ID, caused_by="update-2"))
    cmo.actions[ACTION_ID]["progress"] = 100  # what update-2 did
    [echo] = (await run.cycle()).events
    assert echo.extensions == {"causedby": "update-2"}


async def test_a_command_that_changed_nothing_does_not_claim_a_later_change() -> None:
    cmo = Actions(ACTION)
    run = Runner(fed(), cmo, resource="actions")
    told(run, TrackChange(id=ACTION_ID))
    await run.cycle()
    told(run, TrackChange(id=ACTION_ID, caused_by="update-same"))
    assert (await run.cycle()).events == []  # the update set the same values
    cmo.actions[ACTION_ID]["progress"] = 1  # a CMO user, later
    [event] = (await run.cycle()).events
    assert event.extensions == {}


async def test_untrack_drops_an_id_and_a_404_is_not_read_again() -> None:
    cmo = Actions(ACTION, {**ACTION, "id": OTHER_ID})
    run = Runner(fed(), cmo, resource="actions")
    told(run, TrackChange(id=ACTION_ID), TrackChange(id=OTHER_ID))
    assert len((await run.cycle()).events) == 2
    told(run, TrackChange(id=OTHER_ID, tracked=False))
    del cmo.actions[ACTION_ID]
    cmo.sent.clear()
    [gone] = (await run.cycle()).events
    assert gone.type == "workbridge.cmo.action.deleted"
    assert cmo.sent == [f"/api/actions/{ACTION_ID}"]  # the untracked one is not read
    cmo.sent.clear()
    assert (await run.cycle()).events == []
    assert cmo.sent == []  # still on the topic as tracked, but known to be gone
    assert run.state.gone == [ACTION_ID] and run.state.tracked == {}


async def test_the_deleted_ids_kept_are_bounded() -> None:
    cmo = Actions()
    run = Runner(fed(per_cycle=GONE_KEPT + 10), cmo, resource="actions")
    run.state = msgspec.structs.replace(
        run.state,
        tracked={f"id-{i:05d}": "digest" for i in range(GONE_KEPT + 5)},
    )
    await run.cycle()
    assert len(run.state.gone) == GONE_KEPT
    assert run.state.gone[-1] == f"id-{GONE_KEPT + 4:05d}"


async def test_what_is_remembered_reaches_the_next_reads_mapper() -> None:
    seen: list[Watched] = []

    def mapper(w: Watched) -> list[EventDraft]:
        seen.append(w)
        base = watched_event("cmo", "action")(w)
        assert isinstance(base, EventDraft)
        return [base, base]

    cmo = Actions(ACTION)
    run = Runner(
        fed(to_event=mapper, remember=lambda r: {"status": str(r["status"]["code"])}),
        cmo,
        resource="actions",
    )
    told(run, TrackChange(id=ACTION_ID))
    assert len((await run.cycle()).events) == 2  # a mapper may give several events
    cmo.actions[ACTION_ID]["status"] = {"code": 2, "name": "Completed"}
    await run.cycle()
    assert [w.before for w in seen] == [None, {"status": "1"}]
    assert run.state.facts == {ACTION_ID: {"status": "2"}}
    assert caused_by(seen[0]) == {}


async def test_an_echo_neither_starts_nor_stops_a_watch() -> None:
    cmo = Actions(ACTION)
    run = Runner(fed(), cmo, resource="actions")
    told(run, TrackChange(id=ACTION_ID, tracked=None, caused_by="update-1"))
    assert (await run.cycle()).events == [] and cmo.sent == []  # not watched: not read
    told(run, TrackChange(id=ACTION_ID))
    await run.cycle()
    told(run, TrackChange(id=ACTION_ID, tracked=None, caused_by="update-2"))
    cmo.actions[ACTION_ID]["progress"] = 7
    [echo] = (await run.cycle()).events
    assert echo.extensions == {"causedby": "update-2"}  # still watched, echo named


async def test_an_unsettled_cause_waits_for_the_change_it_announces() -> None:
    cmo = Actions(ACTION)
    run = Runner(fed(), cmo, resource="actions")
    told(run, TrackChange(id=ACTION_ID))
    await run.cycle()
    # Announced with the in-flight mark; the request has not reached CMO yet.
    told(run, TrackChange(id=ACTION_ID, tracked=None, caused_by="u-3", settled=False))
    assert (await run.cycle()).events == []
    cmo.actions[ACTION_ID]["progress"] = 3  # now it has
    [echo] = (await run.cycle()).events
    assert echo.extensions == {"causedby": "u-3"}


async def test_one_action_that_cannot_be_read_does_not_hold_back_the_others() -> None:
    class Refusing(Actions):
        async def __call__(self, request: Any) -> Any:
            if request.url.endswith(OTHER_ID):
                self.sent.append(request.url)
                return VendorResponse(403, {}, b"")
            return await super().__call__(request)

    cmo = Refusing(ACTION, {**ACTION, "id": OTHER_ID})
    run = Runner(fed(), cmo, resource="actions")
    told(run, TrackChange(id=OTHER_ID), TrackChange(id=ACTION_ID))
    [event] = (await run.cycle()).events
    assert event.subject == f"action/{ACTION_ID}"
    assert OTHER_ID in run.state.tracked  # kept, read again next round
