"""Fault cases of commands and polling on the real broker: fencing, given-up marks, ledger keys."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from adapters.core.commands.model import decode_command
from adapters.core.group_commit import GroupCommitter
from adapters.core.kafka import Topics, transactional_producer
from adapters.core.ledger import (
    LedgerEntry,
    answered_record,
    decode_entry,
    encode_entry,
    key_record,
    read_ledger,
)
from adapters.core.metrics import Metrics
from adapters.core.poller import PollRunner
from adapters.core.state_restore import restore_partition
from adapters.moco.fake import FakeMoco
from tests.integration.conftest import BridgeFactory, read_records
from tests.unit.core.command_harness import ScriptedVendor, activity, harness

pytestmark = pytest.mark.integration

STEP_S = 15.0  # one wait on the broker; a hang fails the test


async def _wait(condition: Any, what: str, within: float = STEP_S) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _create_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


def _errors(metrics: Metrics, resource: str) -> float:
    return metrics.polls.labels("moco", resource, "error")._value.get()  # type: ignore[no-any-return]


async def test_a_fenced_poller_reports_fatal_and_stops_polling(
    kafka_bootstrap: str, prefix: str, fake_moco: FakeMoco, start_bridge: BridgeFactory
) -> None:
    polling = {"enabled": True, "interval_s": 0.3, "resources": ["companies"]}
    bridge = await start_bridge(polling=polling, webhooks={"enabled": False})
    older = bridge.pollers[0]
    await _wait(lambda: "companies" in older.tasks, "the older runner to own companies")
    partition = older.tasks["companies"].partition

    # A newer owner of the same partition, as after a rebalance the older one missed: its
    # producer has the same transactional id and fences the older one's.
    newer_fatal: list[str] = []
    newer = PollRunner(
        bridge.instances["moco"], bridge.config.kafka, Metrics(), on_fatal=newer_fatal.append
    )
    newer.consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
    await newer.consumer.start()
    try:
        await newer.consumer._client.force_metadata_update()
        await newer.acquire([partition])
        fake_moco.create_record("companies", {"name": "Acme", "type": "customer"})

        await _wait(lambda: bridge.failure is not None, "the older runner to report")
        assert f"poll partition {partition}" in (bridge.failure or "")
        [task] = older.owned[partition][1]
        await _wait(task.done, "the older poll task to end")
        errors = _errors(bridge.metrics, "companies")
        await asyncio.sleep(1.0)  # three intervals: a looping task would fail again
        assert _errors(bridge.metrics, "companies") == errors

        # The newer owner is unharmed and publishes the change.
        events = await read_records(kafka_bootstrap, Topics(prefix, "moco").events, count=1)
        assert len(events) == 1
        assert newer_fatal == []
    finally:
        await newer.release(list(newer.owned))
        await newer.consumer.stop()


async def test_an_inflight_mark_given_up_mid_transaction_does_not_land(
    kafka_bootstrap: str, prefix: str
) -> None:
    h = await harness(ScriptedVendor([200]), bootstrap=kafka_bootstrap, prefix=prefix)
    ledger = h.worker.inst.topics.ledger
    await _create_topic(kafka_bootstrap, ledger)
    producer = transactional_producer(h.worker.kafka, transactional_id=f"{prefix}-marks")
    await producer.start()
    h.work.writer.committer = GroupCommitter(
        producer,
        h.work.tp,
        f"{prefix}-group",
        commit_offset=h.work.schedule.commit_offset,
        name="test",
        on_fatal=h.fatal.append,
    )
    command = decode_command(h.record(subject="s/1", data=activity(), key="k1"))
    mark = asyncio.create_task(h.work.writer.mark_inflight(command, "digest"))

    # The hand-back cancels the command once its mark is in the open transaction.
    send = producer.send

    async def send_then_give_up(topic: str, **kwargs: Any) -> Any:
        future = await send(topic, **kwargs)
        if topic == ledger and kwargs.get("value") is not None:
            mark.cancel()
        return future

    producer.send = send_then_give_up  # type: ignore[method-assign]
    with contextlib.suppress(asyncio.CancelledError):
        await mark
    await h.work.commits.close(timeout_s=STEP_S)
    await producer.stop()

    restored = await restore_partition(h.worker.kafka, ledger, 0, decode_entry)
    assert restored == {}  # the next owner finds no call that might have happened
    assert h.fatal == []


async def test_ledger_records_of_both_formats_restore_from_kafka(
    kafka_bootstrap: str, prefix: str
) -> None:
    topic = f"{prefix}.ledger"
    await _create_topic(kafka_bootstrap, topic)
    at = datetime(2026, 1, 2, tzinfo=UTC)

    def entry(command_id: str, payload_hash: str) -> bytes:
        return encode_entry(
            LedgerEntry(
                state="done",
                command_id=command_id,
                command_type="t",
                payload_hash=payload_hash,
                at=at,
            )
        )

    records = [
        ("answered/old", entry("old", "")),  # written before the namespaces
        ("answered/c9", entry("c1", "h1")),  # a user key of that shape, before
        (answered_record("new"), entry("new", "")),
        (key_record("answered/new"), entry("c2", "h2")),
        (key_record("\x00odd"), entry("c3", "h3")),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key.encode(), partition=0)
    finally:
        await producer.stop()
    kafka = (await harness(ScriptedVendor([200]), bootstrap=kafka_bootstrap)).worker.kafka
    state = read_ledger(await restore_partition(kafka, topic, 0, decode_entry))
    assert state.answered == {"old", "new"}
    assert {k: e.command_id for k, e in state.keys.items()} == {
        "answered/c9": "c1",
        "answered/new": "c2",
        "\x00odd": "c3",
    }
