"""Watching tracked ids, with the CMO document's action (`GET [cmo-base-url]/api/actions/{id}`):
no list endpoint, so each tracked action is read, compared, and a 404 is a deletion."""

from __future__ import annotations

import copy
from typing import Any

import msgspec

from adapters.core.pagination import PageRequest
from adapters.core.vendor_http import VendorResponse
from adapters.core.watch_source import OptionIds, WatchTrackedIds, content_digest, watched_event
from adapters.settings import PolledVendorOptions, VendorOptions
from tests.unit.core.poll_harness import Runner

ACTION_ID = "14b44c76-b1d4-4df1-84b6-2f2f583ae67d"
# The document's example answer (abridged to the fields a change would touch).
ACTION = {
    "id": ACTION_ID,
    "uniqueID": "6142",
    "actionText": "Action Created via public API #4 asd",
    "status": {"code": 1, "name": "Pending"},
    "dueDate": "2021-07-02T13:59:59.997Z",
    "progress": 90,
    "residualRisk": {"consequenceCode": -1, "likelihoodCode": -1},
    "customFields": [{"customFieldID": 3590, "customFieldName": "happiness", "value": "x"}],
}
OTHER_ID = "0656ef56-f3e2-418b-9f47-1de3c889dd6f"


class Actions:
    """A CMO with a few actions; GET only, 404 for an unknown id."""

    def __init__(self, *actions: dict[str, Any]) -> None:
        self.actions = {a["id"]: copy.deepcopy(a) for a in actions}
        self.sent: list[str] = []

    async def __call__(self, request: PageRequest) -> VendorResponse:
        self.sent.append(request.url)
        action = self.actions.get(request.url.rsplit("/", 1)[1])
        if action is None:
            return VendorResponse(404, {}, b"")
        return VendorResponse(200, {}, msgspec.json.encode(action))


def watch(**changes: Any) -> WatchTrackedIds:
    return WatchTrackedIds(
        path="/api/actions/{id}",
        tracked=OptionIds(watch_ids),
        to_event=watched_event("cmo", "action"),
        **changes,
    )


class WatchOptions(PolledVendorOptions, kw_only=True):
    """A watched vendor's options, as CMO's will declare them: the ids to follow."""

    watch_ids: dict[str, list[str]] = msgspec.field(default_factory=dict)


def watch_ids(options: VendorOptions) -> dict[str, list[str]]:
    return WatchOptions.cast(options).watch_ids


def tracking(*ids: str) -> WatchOptions:
    return WatchOptions(watch_ids={"actions": list(ids)})


async def test_a_changed_action_is_published_once_and_a_404_is_its_deletion() -> None:
    cmo = Actions(ACTION)
    run = Runner(watch(), cmo, resource="actions", options=tracking(ACTION_ID))
    first = await run.cycle()
    assert [e.type for e in first.events] == ["workbridge.cmo.action.updated"]
    assert first.events[0].subject == f"action/{ACTION_ID}"
    assert cmo.sent == [f"/api/actions/{ACTION_ID}"]

    assert (await run.cycle()).steps == 0  # unchanged: nothing published, nothing written

    cmo.actions[ACTION_ID]["status"] = {"code": 2, "name": "Completed"}
    changed = await run.cycle()
    assert len(changed.events) == 1
    assert msgspec.json.decode(changed.events[0].data)["status"]["name"] == "Completed"

    del cmo.actions[ACTION_ID]
    gone = await run.cycle()
    assert [e.type for e in gone.events] == ["workbridge.cmo.action.deleted"]
    assert msgspec.json.decode(gone.events[0].data) == {"id": ACTION_ID}
    # Untracked after its deletion, unless the options still list it: then a 404 says nothing.
    assert (await run.cycle()).events == []


async def test_the_same_content_gets_the_same_event_id() -> None:
    one = await Runner(
        watch(), Actions(ACTION), resource="actions", options=tracking(ACTION_ID)
    ).cycle()
    two = await Runner(
        watch(), Actions(ACTION), resource="actions", options=tracking(ACTION_ID)
    ).cycle()
    assert one.events[0].id == two.events[0].id


async def test_ignored_fields_and_key_order_are_no_change() -> None:
    assert content_digest({"a": 1, "b": 2}) == content_digest({"b": 2, "a": 1})
    cmo = Actions(ACTION)
    run = Runner(
        watch(ignore_fields=("progress",)), cmo, resource="actions", options=tracking(ACTION_ID)
    )
    await run.cycle()
    cmo.actions[ACTION_ID]["progress"] = 95
    assert (await run.cycle()).events == []


async def test_an_id_never_found_is_dropped_without_an_event() -> None:
    run = Runner(watch(), Actions(ACTION), resource="actions", options=tracking(OTHER_ID))
    done = await run.cycle()
    assert done.events == [] and run.state.tracked == {}


async def test_a_large_set_is_read_a_slice_per_cycle_round_the_ids() -> None:
    ids = [f"{n:08d}-0000-0000-0000-000000000000" for n in range(5)]
    cmo = Actions(*({**ACTION, "id": i} for i in ids))
    run = Runner(watch(per_cycle=2), cmo, resource="actions", options=tracking(*ids))
    for _ in range(3):
        await run.cycle()
    assert [u.rsplit("/", 1)[1] for u in cmo.sent] == [*ids, ids[0]]
    assert sorted(e.subject for c in run.history for e in c.events) == [f"action/{i}" for i in ids]


async def test_a_first_read_may_only_set_the_baseline() -> None:
    cmo = Actions(ACTION)
    run = Runner(
        watch(publish_first_read=False), cmo, resource="actions", options=tracking(ACTION_ID)
    )
    assert (await run.cycle()).events == []
    cmo.actions[ACTION_ID]["progress"] = 100
    assert len((await run.cycle()).events) == 1


async def test_an_id_is_sent_as_one_path_segment() -> None:
    cmo = Actions()
    await Runner(watch(), cmo, resource="actions", options=tracking("a/b?c")).cycle()
    assert cmo.sent == ["/api/actions/a%2Fb%3Fc"]
