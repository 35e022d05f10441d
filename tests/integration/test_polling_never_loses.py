"""Polling that never loses a change, on the real broker, against a fake MOCO that is changed
while its listing is being paged (the cases independent testing found, and their relatives).

The fake's clock is the vendor's: it stamps records and the `Date` of each listing page, so a
test decides which records share a second and when "now" is at the vendor.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest

from adapters.app import Bridge
from adapters.core.kafka import Topics
from adapters.moco.fake import FakeMoco
from tests.integration.conftest import API_KEY, SECRET, BridgeFactory, ce, read_records
from tests.vendor_clock import VendorClock

pytestmark = pytest.mark.integration


@pytest.fixture
def clock() -> VendorClock:
    return VendorClock()


@pytest.fixture
async def fake_moco(clock: VendorClock) -> AsyncIterator[FakeMoco]:
    """The conftest's fake MOCO, on a clock of the test's own (overrides the fixture)."""
    fake = FakeMoco(api_key=API_KEY, webhook_secret=SECRET, clock=clock)
    await fake.start()
    yield fake
    await fake.stop()


def behave(fake: FakeMoco, **changes: Any) -> None:
    fake.behaviour = msgspec.structs.replace(fake.behaviour, **changes)


def polling(page_size: int) -> dict[str, Any]:
    return {
        "enabled": True,
        "interval_s": 0.3,
        "resources": ["companies"],
        "page_size": page_size,
    }


def companies(fake: FakeMoco, clock: VendorClock, n: int) -> list[dict[str, Any]]:
    """`n` companies, one vendor second apart (so every order tells them apart)."""
    made = []
    for i in range(n):
        clock.tick()
        made.append(fake.create_record("companies", {"name": f"C{i}", "type": "customer"}))
    return made


def once(hook: Callable[[], None], when: Callable[[str, int], bool]) -> Callable[[str, int], None]:
    """A listing hook that runs `hook` the first time `when(resource, page)` holds."""
    done = False

    def after_page(resource: str, page: int) -> None:
        nonlocal done
        if not done and when(resource, page):
            done = True
            hook()

    return after_page


async def published(
    bootstrap: str, prefix: str, count: int, *, settle: float = 2.0
) -> Counter[tuple[str, str]]:
    records = await read_records(
        bootstrap, Topics(prefix, "moco").events, count=count, settle=settle
    )
    return Counter(
        (ce(r).get_attributes()["subject"], ce(r).get_attributes()["type"].rsplit(".", 1)[1])
        for r in records
    )


async def wait_requests(fake: FakeMoco, count: int, wait_s: float = 20.0) -> None:
    for _ in range(int(wait_s / 0.1)):
        if len(fake.requests) >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"only {len(fake.requests)} requests reached the fake")


@pytest.mark.parametrize(
    ("order", "descending"),
    [("updated_at", False), ("updated_at", True), ("id", False)],
    ids=["by-update-time", "by-update-time-reversed", "by-id"],
)
async def test_an_update_while_paging_loses_no_record_whatever_the_vendors_order(
    kafka_bootstrap: str,
    prefix: str,
    fake_moco: FakeMoco,
    clock: VendorClock,
    start_bridge: BridgeFactory,
    order: str,
    descending: bool,
) -> None:
    # The vendor ignores the requested order and lists in its own. After the first page is
    # read, a record on it is updated: listed by update time it moves to the end, and the
    # next record shifts onto the page already read while X-Total stays the same.
    behave(
        fake_moco,
        sortable_fields=(),
        default_sort_field=order,
        default_sort_descending=descending,
    )
    a, b, c, d, e = companies(fake_moco, clock, 5)

    def update_first() -> None:
        clock.tick(10)
        fake_moco.update_record("companies", a["id"], {"name": "A2"})

    fake_moco.after_list_page = once(update_first, lambda _r, page: page == 1)
    await start_bridge(polling=polling(page_size=2), webhooks={"enabled": False})
    seen = await published(kafka_bootstrap, prefix, count=6)
    expected = {(f"company/{r['id']}", "created") for r in (a, b, c, d, e)}
    expected.add((f"company/{a['id']}", "updated"))
    # Listed newest first, A's first version is never on a page: only its update is seen.
    if descending:
        expected.discard((f"company/{a['id']}", "created"))
    assert set(seen) == expected
    assert all(n == 1 for n in seen.values()), seen


async def test_a_deletion_hidden_by_a_creation_while_paging_loses_no_record(
    kafka_bootstrap: str,
    prefix: str,
    fake_moco: FakeMoco,
    clock: VendorClock,
    start_bridge: BridgeFactory,
) -> None:
    # After page 1, a record on it is deleted and a new one is created: X-Total is the same,
    # and in id order the record after the page boundary moves onto the page already read.
    made = companies(fake_moco, clock, 7)
    created: list[dict[str, Any]] = []

    def delete_and_create() -> None:
        clock.tick()
        fake_moco.delete_record("companies", made[1]["id"])
        created.append(fake_moco.create_record("companies", {"name": "new", "type": "customer"}))

    fake_moco.after_list_page = once(delete_and_create, lambda _r, page: page == 1)
    await start_bridge(polling=polling(page_size=3), webhooks={"enabled": False})
    expected = {(f"company/{r['id']}", "created") for r in [*made, *created]}
    seen = await published(kafka_bootstrap, prefix, count=len(expected))
    # The deleted record may have been read before it went; every other one must be there.
    missing = expected - set(seen) - {(f"company/{made[1]['id']}", "created")}
    assert not missing
    assert all(n == 1 for n in seen.values()), seen


async def test_a_busy_account_publishes_page_by_page_while_its_listing_keeps_changing(
    kafka_bootstrap: str,
    prefix: str,
    fake_moco: FakeMoco,
    clock: VendorClock,
    start_bridge: BridgeFactory,
) -> None:
    # Every page served is followed by a new record, so no two pages ever show one total.
    made = companies(fake_moco, clock, 9)
    busy = True
    added: list[dict[str, Any]] = []

    def keep_changing(resource: str, page: int) -> None:
        if busy:
            clock.tick()
            added.append(fake_moco.create_record("companies", {"name": "x", "type": "customer"}))

    fake_moco.after_list_page = keep_changing
    await start_bridge(polling=polling(page_size=3), webhooks={"enabled": False})
    # Progress while it is busy: the first records are published, not held back for good.
    first = await published(kafka_bootstrap, prefix, count=len(made), settle=0.0)
    assert {(f"company/{r['id']}", "created") for r in made} <= set(first)
    busy = False
    expected = {(f"company/{r['id']}", "created") for r in [*made, *added]}
    seen = await published(kafka_bootstrap, prefix, count=len(expected))
    assert set(seen) == expected
    assert all(n == 1 for n in seen.values()), seen


async def test_a_record_without_its_replication_key_goes_to_the_dlq_and_blocks_nothing(
    kafka_bootstrap: str,
    prefix: str,
    fake_moco: FakeMoco,
    clock: VendorClock,
    start_bridge: BridgeFactory,
) -> None:
    fake_moco.put_raw_record("companies", {"id": 500, "name": "no timestamps"})
    made = companies(fake_moco, clock, 2)
    await start_bridge(polling=polling(page_size=10), webhooks={"enabled": False})
    seen = await published(kafka_bootstrap, prefix, count=2, settle=1.0)
    assert set(seen) == {(f"company/{r['id']}", "created") for r in made}
    dead = await read_records(kafka_bootstrap, Topics(prefix, "moco").dlq, count=1, settle=1.0)
    assert len(dead) == 1
    headers = dict(dead[0].headers)
    assert headers["workbridge_origin"] == b"poll"
    assert b"updated_at" in headers["workbridge_error"]
    assert msgspec.json.decode(dead[0].value) == {"id": 500, "name": "no timestamps"}
    # It keeps the resource moving: a later change is still picked up.
    clock.tick()
    later = fake_moco.create_record("companies", {"name": "later", "type": "customer"})
    seen = await published(kafka_bootstrap, prefix, count=3, settle=1.0)
    assert seen[(f"company/{later['id']}", "created")] == 1


async def test_a_next_link_without_the_query_still_pages_the_first_requests_query(
    kafka_bootstrap: str,
    prefix: str,
    fake_moco: FakeMoco,
    clock: VendorClock,
    start_bridge: BridgeFactory,
) -> None:
    # The fake's Link then carries page=N only, without per_page, updated_after or sort_by.
    behave(fake_moco, link_keeps_query_params=False)
    made = companies(fake_moco, clock, 5)
    bridge: Bridge = await start_bridge(polling=polling(page_size=2), webhooks={"enabled": False})
    seen = await published(kafka_bootstrap, prefix, count=5, settle=1.0)
    assert set(seen) == {(f"company/{r['id']}", "created") for r in made}
    clock.tick()
    later = fake_moco.create_record("companies", {"name": "later", "type": "customer"})
    seen = await published(kafka_bootstrap, prefix, count=6, settle=1.0)
    assert seen[(f"company/{later['id']}", "created")] == 1
    await bridge.stop()
    listings = [r for r in fake_moco.requests if r.path.endswith("/companies")]
    assert listings and all("per_page=2" in r.query for r in listings)
    assert any("page=2" in r.query and "updated_after" in r.query for r in listings)
