"""What the design relies on, established against a real Kafka 4.x broker with aiokafka.

(a) idempotent producer with acks=all; (b) transactions: commit visible to read_committed,
abort not, zombie fencing; (c) consume-transform-produce with send_offsets_to_transaction
commits the group's offsets atomically with the output; (d) a two-member consumer group
splits the partitions; (e) the local broker can be stopped and restarted on the same port
with its data.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import ProducerFenced

from adapters.localkafka.launcher import LocalKafka

pytestmark = pytest.mark.integration

STEP_TIMEOUT = 30.0  # seconds for one await on the broker; a hang fails the test


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def _create_topic(bootstrap: str, partitions: int = 1) -> str:
    topic = _name("semantics")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1)]
        )
    finally:
        await admin.close()
    return topic


def _consumer(
    bootstrap: str,
    *topics: str,
    group_id: str | None = None,
    isolation_level: str = "read_committed",
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        isolation_level=isolation_level,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=500,
        metadata_max_age_ms=5_000,
    )


async def _read_values(consumer: AIOKafkaConsumer, until: bytes) -> list[bytes]:
    """Read values until ``until`` is seen (inclusive)."""
    values: list[bytes] = []
    async with asyncio.timeout(STEP_TIMEOUT):
        while until not in values:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                values.extend(r.value for r in records)
    return values


def _values(items: Iterable[str]) -> list[bytes]:
    return [v.encode() for v in items]


async def _committed_soon(
    consumer: AIOKafkaConsumer, tp: TopicPartition, expected: int, within: float = 5.0
) -> int | None:
    """The group's committed offset, polled until it equals ``expected`` or ``within`` passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        offset: int | None = await consumer.committed(tp)
        if offset == expected or loop.time() >= deadline:
            return offset
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------------------- (a)


async def test_idempotent_producer_acks_all(kafka_bootstrap: str) -> None:
    topic = await _create_topic(kafka_bootstrap)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
    )
    await producer.start()
    try:
        async with asyncio.timeout(STEP_TIMEOUT):
            futures = [
                await producer.send(topic, key=b"k", value=f"m{i}".encode()) for i in range(20)
            ]
            metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    assert [m.offset for m in metadata] == list(range(20))

    consumer = _consumer(kafka_bootstrap, topic, isolation_level="read_uncommitted")
    await consumer.start()
    try:
        got = await _read_values(consumer, b"m19")
    finally:
        await consumer.stop()
    assert got == _values(f"m{i}" for i in range(20))


# ---------------------------------------------------------------------------- (b)


async def test_transaction_commit_visible_abort_invisible(kafka_bootstrap: str) -> None:
    topic = await _create_topic(kafka_bootstrap)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=_name("tx"), acks="all"
    )
    await producer.start()
    try:
        async with asyncio.timeout(STEP_TIMEOUT):
            async with producer.transaction():
                await producer.send(topic, b"committed-1")
                await producer.send(topic, b"committed-2")

            await producer.begin_transaction()
            await producer.send_and_wait(topic, b"aborted")
            await producer.abort_transaction()

            async with producer.transaction():
                await producer.send(topic, b"committed-3")
    finally:
        await producer.stop()

    committed = _consumer(kafka_bootstrap, topic, isolation_level="read_committed")
    everything = _consumer(kafka_bootstrap, topic, isolation_level="read_uncommitted")
    await committed.start()
    await everything.start()
    try:
        assert await _read_values(committed, b"committed-3") == _values(
            ["committed-1", "committed-2", "committed-3"]
        )
        # The aborted record was really written: only the isolation level hides it.
        assert await _read_values(everything, b"committed-3") == _values(
            ["committed-1", "committed-2", "aborted", "committed-3"]
        )
    finally:
        await committed.stop()
        await everything.stop()


async def test_new_producer_with_same_transactional_id_fences_old_one(
    kafka_bootstrap: str,
) -> None:
    topic = await _create_topic(kafka_bootstrap)
    txn_id = _name("tx")
    old = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=txn_id)
    new = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=txn_id)
    await old.start()
    try:
        async with asyncio.timeout(STEP_TIMEOUT):
            await old.begin_transaction()
            await old.send_and_wait(topic, b"zombie")
            await new.start()  # InitProducerId bumps the epoch: aborts old's open transaction
            async with new.transaction():
                await new.send(topic, b"live")
            with pytest.raises(ProducerFenced):
                await old.commit_transaction()
    finally:
        await new.stop()
        await old.stop()

    consumer = _consumer(kafka_bootstrap, topic, isolation_level="read_committed")
    await consumer.start()
    try:
        assert await _read_values(consumer, b"live") == [b"live"]
    finally:
        await consumer.stop()


# ---------------------------------------------------------------------------- (c)


async def test_consume_transform_produce_commits_offsets_atomically(
    kafka_bootstrap: str,
) -> None:
    source = await _create_topic(kafka_bootstrap)
    sink = await _create_topic(kafka_bootstrap)
    group = _name("ctp")
    tp = TopicPartition(source, 0)

    seed = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    await seed.start()
    try:
        for i in range(5):
            await seed.send_and_wait(source, f"in{i}".encode())
    finally:
        await seed.stop()

    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=_name("ctp-tx"), acks="all"
    )
    consumer = _consumer(kafka_bootstrap, source, group_id=group)
    await producer.start()
    await consumer.start()
    try:
        async with asyncio.timeout(STEP_TIMEOUT):
            first = [await consumer.getone() for _ in range(3)]
            assert [r.value for r in first] == _values(["in0", "in1", "in2"])
            async with producer.transaction():
                for record in first:
                    await producer.send(sink, b"out-" + (record.value or b""))
                await producer.send_offsets_to_transaction({tp: first[-1].offset + 1}, group)
            # Visible a few ms after commit_transaction() returns (markers are written after
            # EndTxn answers, and aiokafka's OffsetFetch <= v3 cannot ask for stable offsets).
            assert await _committed_soon(consumer, tp, 3) == 3

            # An aborted transaction moves neither the output nor the group's offsets.
            rest = [await consumer.getone() for _ in range(2)]
            await producer.begin_transaction()
            await producer.send_and_wait(sink, b"out-aborted")
            await producer.send_offsets_to_transaction({tp: rest[-1].offset + 1}, group)
            await producer.abort_transaction()
            await asyncio.sleep(0.3)
            assert await consumer.committed(tp) == 3
    finally:
        await consumer.stop()
        await producer.stop()

    # A new member of the group starts after the committed offsets.
    successor = _consumer(kafka_bootstrap, source, group_id=group)
    await successor.start()
    try:
        async with asyncio.timeout(STEP_TIMEOUT):
            record = await successor.getone()
        assert (record.offset, record.value) == (3, b"in3")
    finally:
        await successor.stop()

    reader = _consumer(kafka_bootstrap, sink, isolation_level="read_committed")
    await reader.start()
    try:
        assert await _read_values(reader, b"out-in2") == _values(["out-in0", "out-in1", "out-in2"])
        await asyncio.sleep(0.5)
        assert await reader.getmany(timeout_ms=500) == {}
    finally:
        await reader.stop()


async def test_successor_with_same_transactional_id_sees_committed_offsets_at_once(
    kafka_bootstrap: str,
) -> None:
    """The hand-over pattern for aiokafka's pre-KIP-447 transactions on a partition move.

    A committed transaction's offsets become visible to OffsetFetch only once its markers
    are written, a few ms after commit_transaction() returns. InitProducerId for the same
    transactional id waits for those markers, so a successor that starts its producer first
    and fetches the committed offsets after always resumes after the last committed batch.
    """
    source = await _create_topic(kafka_bootstrap)
    sink = await _create_topic(kafka_bootstrap)
    group, txn_id = _name("handover"), _name("handover-tx")
    tp = TopicPartition(source, 0)
    rounds = 5

    seed = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    await seed.start()
    try:
        for i in range(rounds):
            await seed.send(source, f"in{i}".encode())
        await seed.flush()
    finally:
        await seed.stop()

    consumer = _consumer(kafka_bootstrap, source, group_id=group)
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=txn_id)
    await producer.start()
    try:
        async with asyncio.timeout(STEP_TIMEOUT):
            for _ in range(rounds):
                record = await consumer.getone()
                async with producer.transaction():
                    await producer.send(sink, record.value)
                    await producer.send_offsets_to_transaction({tp: record.offset + 1}, group)
                successor = AIOKafkaProducer(
                    bootstrap_servers=kafka_bootstrap, transactional_id=txn_id
                )
                await successor.start()  # fences `producer`, completes its transaction
                assert await consumer.committed(tp) == record.offset + 1
                await producer.stop()
                producer = successor
    finally:
        await consumer.stop()
        await producer.stop()


async def test_txn_offset_commit_is_not_fenced_by_group_membership(kafka_bootstrap: str) -> None:
    """Canary: aiokafka sends TxnOffsetCommit v0 (no member id / generation, pre-KIP-447).

    So the broker cannot fence a zombie by group generation: any transactional producer may
    commit a group's offsets, even while another member owns the partition. Zombie fencing
    must come from the transactional id alone: one transactional id per input partition.
    If this test starts failing, aiokafka has gained KIP-447 support: revisit the design.
    """
    source = await _create_topic(kafka_bootstrap)
    group = _name("nofence")
    tp = TopicPartition(source, 0)
    owner = _consumer(kafka_bootstrap, source, group_id=group)
    outsider = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=_name("out"))
    await owner.start()
    await outsider.start()
    try:
        async with asyncio.timeout(STEP_TIMEOUT):
            while not owner.assignment():
                await owner.getmany(timeout_ms=200)
            async with outsider.transaction():
                await outsider.send_offsets_to_transaction({tp: 42}, group)
            assert await _committed_soon(owner, tp, 42) == 42
    finally:
        await outsider.stop()
        await owner.stop()


# ---------------------------------------------------------------------------- (d)


async def test_consumer_group_members_split_partitions(kafka_bootstrap: str) -> None:
    topic = await _create_topic(kafka_bootstrap, partitions=2)
    group = _name("split")
    one = _consumer(kafka_bootstrap, topic, group_id=group)
    two = _consumer(kafka_bootstrap, topic, group_id=group)
    await one.start()
    await two.start()
    try:
        async with asyncio.timeout(STEP_TIMEOUT):
            while True:
                await asyncio.gather(one.getmany(timeout_ms=200), two.getmany(timeout_ms=200))
                a, b = one.assignment(), two.assignment()
                if len(a) == 1 and len(b) == 1 and a != b:
                    break
        assert a | b == {TopicPartition(topic, 0), TopicPartition(topic, 1)}

        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"p0", partition=0)
            await producer.send_and_wait(topic, b"p1", partition=1)
        finally:
            await producer.stop()
        expect = {TopicPartition(topic, 0): [b"p0"], TopicPartition(topic, 1): [b"p1"]}
        (tp_one,), (tp_two,) = a, b
        assert await _read_values(one, expect[tp_one][0]) == expect[tp_one]
        assert await _read_values(two, expect[tp_two][0]) == expect[tp_two]
        # plain (non-transactional) OffsetCommit by a member works too
        await one.commit()
        assert await one.committed(tp_one) == 1
    finally:
        await one.stop()
        await two.stop()


# ---------------------------------------------------------------------------- (e)


async def test_local_broker_restarts_on_same_port_with_its_data(
    restartable_kafka: LocalKafka,
) -> None:
    kafka = restartable_kafka
    servers = kafka.bootstrap_servers
    topic = await _create_topic(servers)
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"before")
        await kafka.pause()
        assert not kafka.is_running
        with pytest.raises(OSError):  # nothing listens on the port any more
            await asyncio.open_connection(kafka.host, kafka.port)
        with pytest.raises(TimeoutError):  # a send cannot complete while the broker is down
            async with asyncio.timeout(1):
                await producer.send_and_wait(topic, b"during")
        await kafka.resume()
        assert kafka.bootstrap_servers == servers
        async with asyncio.timeout(STEP_TIMEOUT):
            await producer.send_and_wait(topic, b"after")
    finally:
        await producer.stop()

    consumer = _consumer(servers, topic, isolation_level="read_uncommitted")
    await consumer.start()
    try:
        values = await _read_values(consumer, b"after")
    finally:
        await consumer.stop()
    # Data written before the outage survived the restart; the in-flight send may land too.
    assert values in ([b"before", b"after"], [b"before", b"during", b"after"])
