"""MOCO polling on the real broker: cursors in Kafka, no gap, no repeat, one owner."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer

from adapters.app import Bridge
from adapters.core.kafka import Topics, ensure_topics
from adapters.core.poller import owner_partition, placed_partitions
from adapters.core.record_limits import max_record_bytes
from adapters.moco.fake import FakeMoco
from tests.integration.conftest import BridgeFactory, ce, moco_config, read_records

pytestmark = pytest.mark.integration

FAST = {"enabled": True, "interval_s": 0.5, "resources": ["projects", "companies"]}


async def _wait_polled(bridge: Bridge, cycles: int = 2) -> None:
    """Let every poll task of the bridge run `cycles` more complete cycles."""
    metric = bridge.metrics.polls

    def done() -> float:
        return sum(
            s.value for m in metric.collect() for s in m.samples if s.name.endswith("_total")
        )

    start = done()
    for _ in range(200):
        if done() - start >= cycles * 2:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("poll cycles did not complete")


def _events(records: list) -> list[tuple[str, str]]:
    return [(ce(r).get_attributes()["subject"], ce(r).get_attributes()["type"]) for r in records]


async def test_polling_publishes_created_and_updated_once_across_restart(
    kafka_bootstrap: str, prefix: str, fake_moco: FakeMoco, start_bridge: BridgeFactory
) -> None:
    # Several records share one second: the cursor must not lose or repeat any of them.
    a = fake_moco.create_record("companies", {"name": "A", "type": "customer"})
    b = fake_moco.create_record("companies", {"name": "B", "type": "customer"})
    p = fake_moco.create_record("projects", {"name": "P", "customer_id": a["id"]})
    bridge = await start_bridge(polling=FAST, webhooks={"enabled": False})
    await _wait_polled(bridge)
    topic = Topics(prefix, "moco").events
    first = await read_records(kafka_bootstrap, topic, count=3, settle=1.0)
    assert sorted(_events(first)) == sorted(
        [
            (f"company/{a['id']}", "workbridge.moco.company.created"),
            (f"company/{b['id']}", "workbridge.moco.company.created"),
            (f"project/{p['id']}", "workbridge.moco.project.created"),
        ]
    )

    # Changes while no bridge runs are picked up by the next one, from the committed cursor.
    await bridge.stop()
    await asyncio.sleep(1.1)  # a new second, so the update is a change MOCO can tell apart
    fake_moco.update_record("companies", b["id"], {"name": "B2"})
    c = fake_moco.create_record("companies", {"name": "C", "type": "supplier"})
    bridge2 = await start_bridge(polling=FAST, webhooks={"enabled": False})
    await _wait_polled(bridge2, cycles=3)
    after = await read_records(kafka_bootstrap, topic, count=5, settle=1.5)
    # Records come from two partitions, so compare as multisets: the first three, plus two.
    assert sorted(_events(after)) == sorted(
        [
            *_events(first),
            (f"company/{b['id']}", "workbridge.moco.company.updated"),
            (f"company/{c['id']}", "workbridge.moco.company.created"),
        ]
    )
    ids = [ce(r).get_attributes()["id"] for r in after]
    assert len(ids) == len(set(ids)) == 5


async def test_a_record_arriving_later_with_the_same_timestamp_is_not_lost(
    kafka_bootstrap: str, prefix: str, fake_moco: FakeMoco, start_bridge: BridgeFactory
) -> None:
    fixed = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
    fake_moco._clock = lambda: fixed  # every change in the same second, across polls
    fake_moco.create_record("companies", {"name": "first", "type": "customer"})
    bridge = await start_bridge(polling=FAST, webhooks={"enabled": False})
    await _wait_polled(bridge)
    late = fake_moco.create_record("companies", {"name": "late", "type": "customer"})
    await _wait_polled(bridge, cycles=3)
    records = await read_records(
        kafka_bootstrap, Topics(prefix, "moco").events, count=2, settle=1.0
    )
    subjects = [ce(r).get_attributes()["subject"] for r in records]
    assert subjects.count(f"company/{late['id']}") == 1
    assert len(subjects) == 2


async def test_two_replicas_split_poll_tasks_without_overlap(
    kafka_bootstrap: str, prefix: str, fake_moco: FakeMoco, start_bridge: BridgeFactory
) -> None:
    resources = {
        "enabled": True,
        "interval_s": 0.5,
        "resources": [
            "projects",
            "companies",
            "activities",
            "users",
            "deals",
            "offers",
            "invoices",
        ],
    }
    one = await start_bridge(polling=resources, webhooks={"enabled": False})
    two = await start_bridge(polling=resources, webhooks={"enabled": False})
    for _ in range(100):
        a, b = set(one.pollers[0].tasks), set(two.pollers[0].tasks)
        if a | b == set(resources["resources"]) and a and b:
            break
        await asyncio.sleep(0.2)
    assert a.isdisjoint(b), (a, b)
    assert a | b == set(resources["resources"])
    # When one replica leaves, the other takes over all tasks.
    await one.stop()
    for _ in range(100):
        if set(two.pollers[0].tasks) == set(resources["resources"]):
            break
        await asyncio.sleep(0.2)
    assert set(two.pollers[0].tasks) == set(resources["resources"])


async def test_polling_backs_off_on_429_with_retry_after(
    kafka_bootstrap: str, prefix: str, fake_moco: FakeMoco, start_bridge: BridgeFactory
) -> None:
    company = fake_moco.create_record("companies", {"name": "A", "type": "customer"})
    fake_moco.fail_next(1, 429, retry_after=1.5)
    await start_bridge(
        polling={"enabled": True, "interval_s": 30, "resources": ["companies"]},
        webhooks={"enabled": False},
    )
    [record] = await read_records(kafka_bootstrap, Topics(prefix, "moco").events, count=1)
    assert ce(record).get_attributes()["subject"] == f"company/{company['id']}"
    first, second = fake_moco.requests[0], fake_moco.requests[1]
    assert first.status == 429 and second.status == 200
    assert second.at - first.at >= 1.5


async def test_structured_mode_instance_writes_structured_cloudevents(
    kafka_bootstrap: str, prefix: str, fake_moco: FakeMoco, start_bridge: BridgeFactory
) -> None:
    import msgspec

    company = fake_moco.create_record("companies", {"name": "A", "type": "customer"})
    await start_bridge(polling=FAST, webhooks={"enabled": False}, content_mode="structured")
    [record] = await read_records(kafka_bootstrap, Topics(prefix, "moco").events, count=1)
    assert dict(record.headers)["content-type"] == b"application/cloudevents+json"
    envelope = msgspec.json.decode(record.value)
    assert envelope["type"] == "workbridge.moco.company.created"
    assert envelope["data"]["name"] == "A" and envelope["data"]["id"] == company["id"]
    assert record.key == f"moco/company/{company['id']}".encode()


@pytest.mark.parametrize(
    "resources",
    [
        # Where the previous release kept it: the task is placed on the same partition.
        ["companies"],
        # Polled with activities, companies is placed on partition 1, but the previous
        # release's hash kept its cursor on 0: the new owner must take it from there, or it
        # would publish every company again.
        ["activities", "companies"],
    ],
    ids=["same-partition", "placed-elsewhere"],
)
async def test_a_cursor_of_the_previous_release_is_resumed_on_upgrade(
    kafka_bootstrap: str,
    prefix: str,
    fake_moco: FakeMoco,
    start_bridge: BridgeFactory,
    resources: list[str],
) -> None:
    # The previous poller committed `{"mark", "seen"}` under the resource's name, on the
    # partition its hash gave; the new one reads it as its listing state: what it covered is
    # not published again.
    then = datetime(2026, 11, 20, 9, 0, 0, tzinfo=UTC)
    fake_moco._clock = lambda: then
    old = [fake_moco.create_record("companies", {"name": n, "type": "customer"}) for n in "AB"]
    fake_moco._clock = lambda: datetime(2026, 11, 20, 9, 0, 30, tzinfo=UTC)
    new = fake_moco.create_record("companies", {"name": "C", "type": "customer"})

    assert fake_moco.base_url is not None
    config = moco_config(kafka_bootstrap, prefix, fake_moco.base_url)
    partitions = config.kafka.topics.partitions
    before = owner_partition("companies", partitions)
    moved = placed_partitions(resources, partitions)["companies"] != before
    assert moved == (len(resources) > 1)  # each case is the one it says
    topics = Topics(prefix, "moco")
    limit = max_record_bytes(config.server.max_body_bytes)
    await ensure_topics(config.kafka, [topics], max_record_bytes=limit)
    stamp = then.strftime("%Y-%m-%dT%H:%M:%SZ")
    seen = ",".join(f'"{r["id"]}":"{stamp}"' for r in old)
    legacy = f'{{"mark":"{stamp}","seen":{{{seen}}}}}'.encode()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.cursors, key=b"companies", value=legacy, partition=before
        )
    finally:
        await producer.stop()

    bridge = await start_bridge(
        polling={"enabled": True, "interval_s": 0.5, "resources": resources},
        webhooks={"enabled": False},
    )
    await _wait_polled(bridge, cycles=1)
    records = await read_records(kafka_bootstrap, topics.events, count=1, settle=1.5)
    assert [ce(r).get_attributes()["subject"] for r in records] == [f"company/{new['id']}"]
