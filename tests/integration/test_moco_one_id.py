"""A MOCO change seen by its webhook and by the next poll is one event id on the topic.

This is `workbridge dev`'s setup: webhooks and polling both on. A consumer that
deduplicates by id sees each change once.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from adapters.core.kafka import Topics
from adapters.moco.fake import FakeMoco
from tests.integration.conftest import BridgeFactory, ce, read_records

pytestmark = pytest.mark.integration


async def test_webhook_and_poll_of_one_change_share_the_event_id(
    kafka_bootstrap: str, prefix: str, fake_moco: FakeMoco, start_bridge: BridgeFactory
) -> None:
    bridge = await start_bridge(
        polling={"enabled": True, "resources": ["companies"], "interval_s": 1},
        rate_limit={"requests": 100, "per_seconds": 1, "above_documented": True},
    )
    fake_moco.subscribe("Customer", "*", f"http://127.0.0.1:{bridge.port}/webhooks/moco")
    made = fake_moco.create_record("companies", {"name": "Acme", "type": "customer"})
    await asyncio.sleep(1.5)  # the next poll sees the same version
    changed = fake_moco.update_record("companies", made["id"], {"name": "Acme AG"})
    await fake_moco.wait_deliveries_idle(10)
    records = await read_records(
        kafka_bootstrap, Topics(prefix, "moco").events, count=4, wait_s=30, settle=3.0
    )
    events = [ce(r) for r in records]
    by_path = Counter(
        (e.get_attributes()["id"], "poll" if e.get_attributes()["time"] else "?") for e in events
    )
    ids = Counter(e.get_attributes()["id"] for e in events)
    # Two versions (create, update), each published by its webhook and by a poll: two ids.
    assert len(events) == 4, by_path
    assert len(ids) == 2 and set(ids.values()) == {2}
    subjects = {e.get_attributes()["subject"] for e in events}
    assert subjects == {f"company/{made['id']}"}
    assert changed["updated_at"] != made["updated_at"]
