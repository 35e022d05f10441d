"""Reading a compacted state partition back into memory (cursors, ledger) on assignment."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from aiokafka import TopicPartition

from adapters.config import KafkaConfig
from adapters.core.kafka import committed_reader

T = TypeVar("T")


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
    reader = committed_reader(kafka, client_id=f"{kafka.client_id}-restore")
    await reader.start()
    state: dict[str, T] = {}
    deadline = time.monotonic() + timeout_s
    try:
        tp = TopicPartition(topic, partition)
        reader.assign([tp])
        await reader.seek_to_beginning(tp)
        end = (await reader.end_offsets([tp]))[tp]
        while await reader.position(tp) < end:
            if time.monotonic() > deadline:
                raise RestoreTimeout(
                    f"{topic}[{partition}] not read to offset {end} in {timeout_s}s"
                )
            batch = await reader.getmany(tp, timeout_ms=500)
            for record in batch.get(tp, []):
                if record.key is None:
                    continue
                key = record.key.decode()
                if record.value is None:
                    state.pop(key, None)  # tombstone
                else:
                    state[key] = decode(record.value)
    finally:
        await reader.stop()
    return state
