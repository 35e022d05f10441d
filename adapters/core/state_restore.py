"""Reading a compacted state partition back into memory on assignment (poll cursors).

Everything is held in memory and the read has a deadline: right for a few thousand cursors,
not for the idempotency ledger, which the command worker restores into an index on disk
(`ledger_store`). Reading a ledger with this stays possible, for tools and tests and the
ledger benchmark's baseline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from adapters.core.kafka import committed_reader
from adapters.settings import KafkaConfig

T = TypeVar("T")
log = logging.getLogger(__name__)


class RestoreTimeout(Exception):
    """The state partition could not be read to its end in time."""


async def restore_partition(
    kafka: KafkaConfig,
    topic: str,
    partition: int,
    decode: Callable[[bytes], T],
    *,
    timeout_s: float = 60.0,
) -> dict[str, T]:
    """Latest committed value per key of one partition (read_committed, up to its end).

    Call it after the partition's transactional producer started: that fences the previous
    owner and aborts its open transaction, so the end offset is final.
    """
    stamped = await restore_stamped(kafka, topic, partition, decode, timeout_s=timeout_s)
    return {key: value for key, (_stamp, value) in stamped.items()}


async def restore_stamped(
    kafka: KafkaConfig,
    topic: str,
    partition: int,
    decode: Callable[[bytes], T],
    *,
    timeout_s: float = 60.0,
) -> dict[str, tuple[int, T]]:
    """`restore_partition` with each value's record timestamp (ms): to tell which of two
    partitions holds a key's newer value."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await _read(kafka, topic, partition, decode, deadline)
        except KafkaError as exc:
            # A topic created a moment ago may not have a leader yet (NotLeaderForPartition).
            if time.monotonic() > deadline:
                raise RestoreTimeout(f"{topic}[{partition}] could not be read: {exc}") from None
            log.info("restoring %s[%d]: %s; retrying", topic, partition, exc)
            await asyncio.sleep(0.5)


async def _read(
    kafka: KafkaConfig, topic: str, partition: int, decode: Callable[[bytes], T], deadline: float
) -> dict[str, tuple[int, T]]:
    reader = committed_reader(kafka, client_id=f"{kafka.client_id}-restore")
    await reader.start()
    state: dict[str, tuple[int, T]] = {}
    try:
        tp = TopicPartition(topic, partition)
        reader.assign([tp])
        await reader.seek_to_beginning(tp)
        end = (await reader.end_offsets([tp]))[tp]
        while await reader.position(tp) < end:
            if time.monotonic() > deadline:
                raise RestoreTimeout(f"{topic}[{partition}] not read to offset {end} in time")
            batch = await reader.getmany(tp, timeout_ms=500)
            for record in batch.get(tp, []):
                if record.key is None:
                    continue
                key = record.key.decode()
                if record.value is None:
                    state.pop(key, None)  # tombstone
                else:
                    state[key] = (record.timestamp, decode(record.value))
    finally:
        await reader.stop()
    return state
