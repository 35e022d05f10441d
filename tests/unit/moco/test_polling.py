"""MOCO's listings through the core's list source, against the fake MOCO (no broker).

Each test flips the fake's listing assumptions (its order, whether it sorts, its Link, its
page-size cap) and changes records while a listing is paged; nothing may be lost, nothing
published twice.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import msgspec
import pytest

from adapters.core.list_source import ListByReplicationKey
from adapters.moco.fake import FakeMoco, FakeMocoBehaviour
from adapters.moco.resources import POLL
from adapters.moco.undocumented import MocoOptions
from tests.unit.core.poll_harness import Runner, client_fetch
from tests.vendor_clock import VendorClock

KEY = "k"
SECRET = "1d608b9d72219b90ff2393a1d3ee0ac0"


@pytest.fixture
def clock() -> VendorClock:
    return VendorClock()


@pytest.fixture
async def fake(clock: VendorClock) -> AsyncIterator[FakeMoco]:
    server = FakeMoco(api_key=KEY, webhook_secret=SECRET, rate_limit=None, clock=clock)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def runner_for(fake: FakeMoco) -> AsyncIterator[Any]:
    clients = []

    def make(source: Any = None, **kwargs: Any) -> Runner:
        assert fake.base_url is not None
        client, fetch = client_fetch(fake.base_url, {"Authorization": f"Token token={KEY}"})
        clients.append(client)
        return Runner(source or POLL.resources["companies"].source, fetch, **kwargs)

    yield make
    for client in clients:
        await client.close()


def behave(fake: FakeMoco, **changes: Any) -> None:
    fake.behaviour = msgspec.structs.replace(fake.behaviour, **changes)


def companies(fake: FakeMoco, clock: VendorClock, n: int) -> list[dict[str, Any]]:
    made = []
    for i in range(n):
        clock.tick()
        made.append(fake.create_record("companies", {"name": f"C{i}", "type": "customer"}))
    return made


def subjects(records: list[dict[str, Any]]) -> list[str]:
    return [f"company/{r['id']}" for r in records]


def listings(fake: FakeMoco) -> list[str]:
    return [r.query for r in fake.requests if r.path.endswith("/companies")]


async def test_each_page_is_its_own_step_and_the_mark_is_when_the_listing_started(
    fake: FakeMoco, clock: VendorClock, runner_for: Any
) -> None:
    made = companies(fake, clock, 5)
    clock.tick(60)  # the listing starts a minute after the newest change
    run = runner_for(page_size=2)
    done = await run.cycle()
    assert done.steps == 3
    assert sorted(done.subjects) == sorted(subjects(made))
    # The vendor's Date, less a second for its precision; not the newest updated_at.
    assert run.state.mark == clock.now - timedelta(seconds=1)
    assert run.state.listing is None
    assert run.state.seen == {}  # all older than the next pass's floor: never re-read


async def test_the_listing_asks_newest_first_and_keeps_its_query_on_every_page(
    fake: FakeMoco, clock: VendorClock, runner_for: Any
) -> None:
    companies(fake, clock, 3)
    run = runner_for(page_size=2)
    await run.cycle()
    clock.tick()
    companies(fake, clock, 3)
    await run.cycle()
    queries = listings(fake)
    assert all("sort_by=updated_at" in q and "per_page=2" in q for q in queries), queries
    assert any("updated_after" in q and "page=2" in q for q in queries), queries


async def test_a_link_without_the_query_still_pages_the_same_listing(
    fake: FakeMoco, clock: VendorClock, runner_for: Any
) -> None:
    behave(fake, link_keeps_query_params=False)
    run = runner_for(page_size=2)
    made = companies(fake, clock, 2)
    await run.cycle()
    clock.tick(10)
    later = companies(fake, clock, 5)
    done = await run.cycle()
    assert sorted(done.subjects) == sorted(subjects(later))
    second_pass = listings(fake)[-3:]
    assert all("updated_after" in q and "per_page=2" in q for q in second_pass), second_pass
    assert sorted(run.all_subjects) == sorted(subjects(made + later))


@pytest.mark.parametrize(
    ("order", "descending"),
    [("updated_at", False), ("id", False), ("id", True)],
    ids=["by-update-time", "by-id", "by-id-reversed"],
)
async def test_a_vendor_that_ignores_the_order_loses_nothing_to_an_update_while_paging(
    fake: FakeMoco,
    clock: VendorClock,
    runner_for: Any,
    order: str,
    descending: bool,
) -> None:
    behave(fake, sortable_fields=(), default_sort_field=order, default_sort_descending=descending)
    a, b, c, d, e = companies(fake, clock, 5)
    fired = False

    def update_a(resource: str, page: int) -> None:
        nonlocal fired
        if not fired:
            fired = True
            clock.tick(10)
            fake.update_record("companies", a["id"], {"name": "A2"})

    fake.after_list_page = update_a
    run = runner_for(page_size=2)
    for _ in range(3):
        await run.cycle()
        clock.tick(5)  # the vendor's time goes on between cycles
    published = Counter(run.all_subjects)
    assert set(published) == set(subjects([a, b, c, d, e]))
    # A's first version may have been read before it changed: then both versions, once each.
    assert published[f"company/{a['id']}"] in (1, 2)
    assert all(n == 1 for s, n in published.items() if s != f"company/{a['id']}")
    assert await run.cycle() and run.history[-1].events == []  # nothing more to publish
    assert run.state.mark is not None  # a quiet pass moved the cursor


async def test_listed_by_update_time_the_shifted_record_is_read_by_the_next_pass(
    fake: FakeMoco, clock: VendorClock, runner_for: Any
) -> None:
    # The case independent testing found, step by step.
    behave(fake, sortable_fields=(), default_sort_field="updated_at")
    a, _b, c, _d, _e = companies(fake, clock, 5)
    fired = False

    def update_a(resource: str, page: int) -> None:
        nonlocal fired
        if page == 1 and not fired:
            fired = True
            clock.tick(10)
            fake.update_record("companies", a["id"], {"name": "A2"})

    fake.after_list_page = update_a
    run = runner_for(page_size=2)
    first = await run.cycle()
    assert f"company/{c['id']}" not in first.subjects  # C moved onto page 1, already read
    assert run.state.mark is None  # the pass saw A twice: the cursor does not move
    second = await run.cycle()
    assert second.subjects == [f"company/{c['id']}"]


async def test_newest_first_a_deletion_while_paging_is_rewound_in_the_same_pass(
    fake: FakeMoco, clock: VendorClock, runner_for: Any
) -> None:
    made = companies(fake, clock, 7)  # newest first: [7 6 5] [4 3 2] [1]
    fired = False

    def delete_on_page_1(resource: str, page: int) -> None:
        nonlocal fired
        if page == 1 and not fired:
            fired = True
            fake.delete_record("companies", made[5]["id"])  # 4 would shift onto page 1

    fake.after_list_page = delete_on_page_1
    run = runner_for(page_size=3)
    done = await run.cycle()
    assert sorted(done.subjects) == sorted(subjects(made))
    assert Counter(done.subjects).most_common(1)[0][1] == 1
    assert run.state.mark == clock.now - timedelta(seconds=1)  # safe: the cursor moved


async def test_a_smaller_page_than_asked_for_is_paged_and_rewound_by_its_own_size(
    fake: FakeMoco, clock: VendorClock, runner_for: Any
) -> None:
    behave(fake, per_page_max=2)
    made = companies(fake, clock, 7)  # asked for 10 a page, served 2: [7 6] [5 4] [3 2] [1]
    fired = False

    def delete_two(resource: str, page: int) -> None:
        nonlocal fired
        if page == 2 and not fired:
            fired = True
            fake.delete_record("companies", made[6]["id"])
            fake.delete_record("companies", made[4]["id"])

    fake.after_list_page = delete_two
    run = runner_for(page_size=10)
    done = await run.cycle()
    gone = {f"company/{made[6]['id']}", f"company/{made[4]['id']}"}
    assert set(subjects(made)) - gone <= set(done.subjects)
    assert max(Counter(done.subjects).values()) == 1


async def test_newest_first_an_update_while_paging_is_read_by_the_next_pass(
    fake: FakeMoco, clock: VendorClock, runner_for: Any
) -> None:
    made = companies(fake, clock, 5)
    fired = False

    def update_last(resource: str, page: int) -> None:
        nonlocal fired
        if page == 1 and not fired:
            fired = True
            clock.tick(5)
            fake.update_record("companies", made[0]["id"], {"name": "moved to the front"})

    fake.after_list_page = update_last
    run = runner_for(page_size=2)
    first = await run.cycle()
    # The moved record went to the front, already read: its old version is on no page.
    assert sorted(first.subjects) == sorted(subjects(made[1:]))
    assert run.state.mark is not None  # newest first, nothing can have slipped past
    second = await run.cycle()
    assert second.subjects == [f"company/{made[0]['id']}"]
    assert second.events[0].type == "workbridge.moco.company.updated"


async def test_a_crash_between_transactions_of_one_page_repeats_and_loses_nothing(
    fake: FakeMoco, clock: VendorClock, runner_for: Any
) -> None:
    made = companies(fake, clock, 5)
    run = runner_for(page_size=5, max_batch=2)
    crashed = await run.cycle(crash_after=1)  # 2 committed, the process dies
    assert len(crashed.subjects) == 2
    rest = await run.cycle()
    assert sorted(crashed.subjects + rest.subjects) == sorted(subjects(made))


async def test_a_long_listing_goes_on_where_the_page_cap_stopped_it(
    fake: FakeMoco, clock: VendorClock, runner_for: Any
) -> None:
    made = companies(fake, clock, 7)
    source = dataclasses.replace(POLL.resources["companies"].source, max_pages=2)
    run = runner_for(source, page_size=2)
    first = await run.cycle()
    assert first.steps == 2 and run.state.listing is not None
    assert run.state.mark is None
    second = await run.cycle()
    assert "page=3" in listings(fake)[2]  # resumed, not started again
    assert sorted(first.subjects + second.subjects) == sorted(subjects(made))
    assert run.state.listing is None and run.state.mark is not None


async def test_a_record_without_updated_at_is_a_dead_letter_once(
    fake: FakeMoco, clock: VendorClock, runner_for: Any
) -> None:
    fake.put_raw_record("companies", {"id": 50, "name": "no timestamps"})
    fake.put_raw_record("companies", {"id": 51, "updated_at": "yesterday"})
    made = companies(fake, clock, 2)
    run = runner_for(
        source=dataclasses.replace(POLL.resources["companies"].source, since_param=None)
    )
    first = await run.cycle()
    assert sorted(first.subjects) == sorted(subjects(made))
    assert {(d.record_id, d.reason) for d in first.dead} == {
        ("50", "the record has no updated_at (its replication key)"),
        ("51", "the record's updated_at is not a time: 'yesterday'"),
    }
    clock.tick()
    again = await run.cycle()  # this source re-reads everything: no second dead letter
    assert again.dead == [] and again.events == []


async def test_an_idle_listing_commits_nothing(
    fake: FakeMoco, clock: VendorClock, runner_for: Any
) -> None:
    companies(fake, clock, 2)
    run = runner_for(page_size=5)
    await run.cycle()
    clock.tick(30)
    idle = await run.cycle()
    assert idle.steps == 0


async def test_start_from_now_asks_the_vendor_nothing(fake: FakeMoco, runner_for: Any) -> None:
    run = runner_for(start_from="now")
    done = await run.cycle()
    assert done.steps == 1 and done.events == [] and run.state.mark is not None
    assert fake.requests == []


async def test_an_instance_may_drop_the_order_and_is_still_judged_by_what_comes_back(
    fake: FakeMoco, clock: VendorClock, runner_for: Any
) -> None:
    made = companies(fake, clock, 4)
    clock.tick(5)  # no record changed near the listing's start
    options = MocoOptions.decode({"poll_params": {"companies": {"sort_by": None}}})
    run = runner_for(page_size=2, options=options)
    done = await run.cycle()
    assert all("sort_by" not in q for q in listings(fake))
    assert sorted(done.subjects) == sorted(subjects(made))
    assert run.state.mark is not None  # listed by id, but nothing changed: quiet


def test_every_resource_asks_newest_first() -> None:
    for resource in POLL.resources.values():
        source = resource.source
        assert isinstance(source, ListByReplicationKey)
        assert source.newest_first and source.params == {"sort_by": "updated_at desc"}


def test_the_fake_default_order_is_documented_as_a_guess() -> None:
    behaviour = FakeMocoBehaviour()
    assert behaviour.default_sort_field == "id" and not behaviour.default_sort_descending
    assert behaviour.sortable_fields is None
