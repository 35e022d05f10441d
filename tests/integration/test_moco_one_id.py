"""A MOCO change seen by its webhook and by a poll is one event id, and the poll leaves out
a version its webhook already put on the topic.

This is `workbridge dev`'s setup: webhooks and polling both on.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from adapters.core.kafka import Topics
from adapters.moco.fake import FakeMoco
from tests.integration.conftest import BridgeFactory, ce, read_records

pytestmark = pytest.mark.integration

FAST = {"requests": 100, "per_seconds": 1, "above_documented": True}


def listings(fake: FakeMoco) -> int:
    return sum(1 for r in fake.requests if r.method == "GET" and r.path.endswith("/companies"))


async def polls_after(fake: FakeMoco, seen: int, more: int, timeout_s: float = 20) -> None:
    """Wait until the fake has answered `more` company listings after the first `seen`: the
    first of them listed what changed before, the next began after that cycle committed."""
    deadline = time.monotonic() + timeout_s
    while listings(fake) < seen + more:
        assert time.monotonic() < deadline, "the poller stopped listing companies"
        await asyncio.sleep(0.1)


async def test_a_poll_leaves_out_the_version_its_webhook_published(
    kafka_bootstrap: str, prefix: str, fake_moco: FakeMoco, start_bridge: BridgeFactory
) -> None:
    topic = Topics(prefix, "moco").events
    seed = fake_moco.create_record("companies", {"name": "Seed", "type": "customer"})
    bridge = await start_bridge(
        polling={"enabled": True, "resources": ["companies"], "interval_s": 1},
        rate_limit=FAST,
    )
    await read_records(kafka_bootstrap, topic, count=1, wait_s=30)  # the first pass: its mark
    # Creations are pushed, updates are not (no subscription): the poll must publish those.
    fake_moco.subscribe("Customer", "create", f"http://127.0.0.1:{bridge.port}/webhooks/moco")
    made = fake_moco.create_record("companies", {"name": "Acme", "type": "customer"})
    await fake_moco.wait_deliveries_idle(10)
    await read_records(kafka_bootstrap, topic, count=2, wait_s=30)
    await polls_after(fake_moco, listings(fake_moco), 2)  # a whole cycle listed the creation
    changed = fake_moco.update_record("companies", made["id"], {"name": "Acme AG"})
    records = await read_records(kafka_bootstrap, topic, count=3, wait_s=30, settle=3.0)

    events = [ce(r).get_attributes() for r in records]
    ids = Counter(e["id"] for e in events)
    assert len(events) == 3, [(e["type"], e["subject"]) for e in events]
    assert set(ids.values()) == {1}
    # The topic orders only within a partition (subject): compare without order.
    assert sorted((e["type"], e["subject"]) for e in events) == sorted(
        [
            ("workbridge.moco.company.created", f"company/{seed['id']}"),
            ("workbridge.moco.company.created", f"company/{made['id']}"),  # the webhook's
            ("workbridge.moco.company.updated", f"company/{made['id']}"),  # the poll's
        ]
    )
    assert changed["updated_at"] != made["updated_at"]


async def test_without_skipping_webhook_and_poll_of_one_change_share_the_event_id(
    kafka_bootstrap: str, prefix: str, fake_moco: FakeMoco, start_bridge: BridgeFactory
) -> None:
    bridge = await start_bridge(
        polling={
            "enabled": True,
            "resources": ["companies"],
            "interval_s": 1,
            "skip_published": False,
        },
        rate_limit=FAST,
    )
    fake_moco.subscribe("Customer", "*", f"http://127.0.0.1:{bridge.port}/webhooks/moco")
    made = fake_moco.create_record("companies", {"name": "Acme", "type": "customer"})
    await fake_moco.wait_deliveries_idle(10)
    await polls_after(fake_moco, listings(fake_moco), 2)  # the poll read this version too
    changed = fake_moco.update_record("companies", made["id"], {"name": "Acme AG"})
    await fake_moco.wait_deliveries_idle(10)
    records = await read_records(
        kafka_bootstrap, Topics(prefix, "moco").events, count=4, wait_s=30, settle=3.0
    )
    events = [ce(r).get_attributes() for r in records]
    ids = Counter(e["id"] for e in events)
    # Two versions (create, update), each published by its webhook and by a poll: two ids,
    # each twice, so a consumer that deduplicates by id sees each change once.
    assert len(events) == 4, [(e["type"], e["subject"]) for e in events]
    assert len(ids) == 2 and set(ids.values()) == {2}
    assert {e["subject"] for e in events} == {f"company/{made['id']}"}
    assert changed["updated_at"] != made["updated_at"]
