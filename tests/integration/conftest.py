"""Integration fixtures: a fake MOCO, bridges on the real broker, topic readers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from adapters.app import Bridge
from adapters.config import Config, parse_config
from adapters.core.cloudevents_codec import from_record, make_event, to_kafka
from adapters.core.kafka import Topics
from adapters.moco.fake import FakeMoco

pytestmark = pytest.mark.integration

API_KEY = "test-api-key"
SECRET = "1d608b9d72219b90ff2393a1d3ee0ac0"


@pytest.fixture
async def fake_moco() -> AsyncIterator[FakeMoco]:
    """A fake MOCO with the documented 15 requests / 15 s limit."""
    fake = FakeMoco(api_key=API_KEY, webhook_secret=SECRET)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def prefix() -> str:
    """A topic prefix of this test's own, so tests never read each other's records."""
    return f"t{uuid.uuid4().hex[:10]}"


def moco_config(bootstrap: str, prefix: str, base_url: str, **instance: Any) -> Config:
    """A bridge configuration with one MOCO instance named `moco`."""
    raw_instance: dict[str, Any] = {
        "vendor": "moco",
        "name": "moco",
        "base_url": base_url,
        "api_key": API_KEY,
        "webhook_secret": SECRET,
        **instance,
    }
    return parse_config(
        {
            "kafka": {
                "bootstrap_servers": bootstrap,
                "topic_prefix": prefix,
                "topics": {"partitions": 2, "replication_factor": 1},
                "send_timeout_s": 3.0,
            },
            "server": {"host": "127.0.0.1", "port": 0, "shutdown_grace_s": 5},
            "instances": [raw_instance],
        }
    )


BridgeFactory = Callable[..., Awaitable[Bridge]]


@pytest.fixture
async def start_bridge(
    kafka_bootstrap: str, prefix: str, fake_moco: FakeMoco
) -> AsyncIterator[BridgeFactory]:
    """Start bridges for this test (stopped at its end)."""
    bridges: list[Bridge] = []

    async def start(**instance: Any) -> Bridge:
        assert fake_moco.base_url is not None
        bridge = Bridge(moco_config(kafka_bootstrap, prefix, fake_moco.base_url, **instance))
        await bridge.start()
        bridges.append(bridge)
        return bridge

    yield start
    for bridge in bridges:
        if bridge.server is not None and not bridge.server.draining:
            await bridge.stop()


async def read_records(
    bootstrap: str, topic: str, *, count: int, wait_s: float = 20.0, settle: float = 0.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Committed records of a topic from the beginning: wait for `count`, then `settle` more
    seconds to catch any extra (a duplicate would show up there)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        deadline = time.monotonic() + 10
        while not parts and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts or [])]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + wait_s
        while len(records) < count and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                records.extend(batch)
        end = time.monotonic() + settle
        while time.monotonic() < end:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


def ce(record: ConsumerRecord[bytes, bytes]) -> Any:
    """The CloudEvent in a record."""
    return from_record(record.key, record.value, list(record.headers))


async def results_by_command(
    bootstrap: str, topic: str, count: int, *, settle: float = 0.5, wait_s: float = 60.0
) -> dict[str, dict[str, Any]]:
    """The results topic's data by command id: wait for `count`, then `settle` seconds more;
    a second result for one command fails here."""
    records = await read_records(bootstrap, topic, count=count, wait_s=wait_s, settle=settle)
    out: dict[str, dict[str, Any]] = {}
    for record in records:
        event = ce(record)
        cid = event.get_attributes()["commandid"]
        assert cid not in out, f"two results for command {cid}"
        out[cid] = event.get_data()
    return out


async def read_events(
    bootstrap: str, topic: str, count: int, *, settle: float = 1.0, wait_s: float = 30.0
) -> list[Any]:
    """The CloudEvents of an events topic: wait for `count`, then `settle` seconds more (a
    repeat shows up there)."""
    records = await read_records(bootstrap, topic, count=count, wait_s=wait_s, settle=settle)
    return [ce(record) for record in records]


async def wait_until(
    check: Callable[[], bool], timeout_s: float, what: str, *, every_s: float = 0.05
) -> None:
    """Poll `check` until it holds; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(every_s)


Outgoing = tuple[str, Any, str]
"""A command to publish: (type, data, subject)."""


async def publish_commands(
    bootstrap: str,
    prefix: str,
    commands: list[Outgoing],
    *,
    instance: str = "moco",
    source: str = "/tests",
    idempotency_keys: list[str] | None = None,
    pace_s: float = 0.0,
) -> list[str]:
    """Publish commands (binary mode) with one producer, keyed by subject; their ids, in
    order. `pace_s` spreads them out (each acknowledged before the next); without it they
    are sent together."""
    import msgspec

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    ids: list[str] = []
    try:
        topic = Topics(prefix, instance).commands
        sends = []
        for i, (type_, data, subject) in enumerate(commands):
            cid = str(uuid.uuid4())
            key_ext = {"idempotencykey": idempotency_keys[i]} if idempotency_keys else {}
            event = make_event(
                id=cid,
                source=source,
                type=type_,
                subject=subject,
                partitionkey=subject,
                data=msgspec.json.encode(data),
                extensions=key_ext,
            )
            key, value, headers = to_kafka(event)
            sent = await producer.send(topic, value=value, key=key, headers=headers)
            ids.append(cid)
            if pace_s:
                await sent
                await asyncio.sleep(pace_s)
            else:
                sends.append(sent)
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    return ids


async def publish_command(
    bootstrap: str,
    prefix: str,
    *,
    type: str,
    data: Any,
    subject: str,
    command_id: str | None = None,
    idempotency_key: str | None = None,
    raw_value: bytes | None = None,
    instance: str = "moco",
) -> str:
    """Publish a command CloudEvent (binary mode) the way a user's service would."""
    import msgspec

    command_id = command_id or str(uuid.uuid4())
    ext = {"idempotencykey": idempotency_key} if idempotency_key else {}
    event = make_event(
        id=command_id,
        source="/tests",
        type=type,
        subject=subject,
        partitionkey=subject,
        data=msgspec.json.encode(data),
        extensions=ext,
    )
    key, value, headers = to_kafka(event)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        topic = Topics(prefix, instance).commands
        await producer.send_and_wait(
            topic, value=raw_value if raw_value is not None else value, key=key, headers=headers
        )
    finally:
        await producer.stop()
    return command_id
