"""The ledger partition on Kafka, as the ledger reads it: scanned on restore, read at one
offset for a key the index knows."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from adapters.core.kafka import client_kwargs
from adapters.settings import KafkaConfig

# (offset, key, value) of one ledger record; a None value is a tombstone.
LogRecord = tuple[int, bytes | None, bytes | None]


class LedgerUnavailable(Exception):
    """The ledger cannot answer now (not restored, or the topic cannot be read): the command
    must wait, never be decided as if its key were new."""


class RestoreStalled(Exception):
    """The restore made no progress for too long; the partition cannot be worked on here."""


class LedgerLog(Protocol):
    """The ledger partition: scanned on restore, read at one offset for a known key."""

    async def bounds(self) -> tuple[int, int]:
        """(first offset still kept, end offset): the end is the last stable offset, so
        an open transaction's records are not counted."""
        ...

    async def scan(
        self,
        start: int,
        end: int,
        on_batch: Callable[[list[LogRecord], int], Awaitable[None]],
        *,
        stall_s: float,
    ) -> int:
        """Hand over the committed records from `start` until `end`, in order, each batch
        with the position after it; return the final position. Raise `RestoreStalled` when
        the position does not move for `stall_s`."""
        ...

    async def read(self, offset: int) -> LogRecord | None:
        """The record at `offset`, None when it is no longer there (the retention removed
        it). Raise `LedgerUnavailable` when it cannot be read now."""
        ...

    async def close(self) -> None:
        """Release the connections."""
        ...


class KafkaLedgerLog:
    """The ledger partition on Kafka, read committed."""

    def __init__(
        self,
        kafka: KafkaConfig,
        topic: str,
        partition: int,
        *,
        client_id: str,
        read_wait_s: float = 30.0,
    ) -> None:
        self.kafka = kafka
        self.tp = TopicPartition(topic, partition)
        self.client_id = client_id
        # A record committed a moment ago becomes readable once its marker is written.
        self.read_wait_s = read_wait_s
        self._reader: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        # The records of the last point read: redelivered commands ask for their
        # neighbours next.
        self._near: dict[int, LogRecord] = {}

    def _consumer(self, fetch_bytes: int) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            **client_kwargs(self.kafka),
            client_id=self.client_id,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=fetch_bytes,
            fetch_max_bytes=max(fetch_bytes, 1024 * 1024),
        )

    async def _point_reader(self) -> AIOKafkaConsumer:
        if self._reader is None:
            reader = self._consumer(256 * 1024)
            await reader.start()
            reader.assign([self.tp])
            reader.pause(self.tp)  # fetched only when asked, not prefetched to the end
            self._reader = reader
        return self._reader

    async def bounds(self) -> tuple[int, int]:
        """(first offset still kept, last stable offset)."""
        async with self._lock:
            reader = await self._point_reader()
            first = (await reader.beginning_offsets([self.tp]))[self.tp]
            end = (await reader.end_offsets([self.tp]))[self.tp]
        return int(first), int(end)

    async def scan(
        self,
        start: int,
        end: int,
        on_batch: Callable[[list[LogRecord], int], Awaitable[None]],
        *,
        stall_s: float,
    ) -> int:
        """Read [start, end) with large fetches; see `LedgerLog.scan`."""
        if start >= end:
            return start
        consumer = self._consumer(4 * 1024 * 1024)
        await consumer.start()
        try:
            consumer.assign([self.tp])
            consumer.seek(self.tp, start)
            position = start
            moved = time.monotonic()
            while position < end:
                batch = (await consumer.getmany(self.tp, timeout_ms=500)).get(self.tp, [])
                now = await consumer.position(self.tp)
                if now > position:
                    moved = time.monotonic()
                elif time.monotonic() - moved > stall_s:
                    raise RestoreStalled(
                        f"{self.tp.topic}[{self.tp.partition}] stuck at offset {position} "
                        f"of {end} for {stall_s:.0f}s"
                    )
                position = now
                if batch:
                    await on_batch([(r.offset, r.key, r.value) for r in batch], position)
            return position
        finally:
            await _stop(consumer)

    async def read(self, offset: int) -> LogRecord | None:
        """The record at `offset`; see `LedgerLog.read`."""
        async with self._lock:
            if self._near and min(self._near) <= offset <= max(self._near):
                return self._near.get(offset)
            reader = await self._point_reader()
            reader.seek(self.tp, offset)
            reader.resume(self.tp)
            deadline = time.monotonic() + self.read_wait_s
            try:
                while True:
                    try:
                        batch = (await reader.getmany(self.tp, timeout_ms=200)).get(self.tp, [])
                    except KafkaError as exc:
                        raise LedgerUnavailable(f"cannot read the ledger: {exc}") from exc
                    if batch:
                        self._near = {r.offset: (r.offset, r.key, r.value) for r in batch}
                        return self._near.get(offset)
                    if time.monotonic() > deadline:
                        raise LedgerUnavailable(
                            f"{self.tp.topic}[{self.tp.partition}] offset {offset} not "
                            f"readable within {self.read_wait_s:.0f}s"
                        )
            finally:
                reader.pause(self.tp)

    async def close(self) -> None:
        """Stop the point reader."""
        if self._reader is not None:
            with contextlib.suppress(KafkaError, TimeoutError):
                await asyncio.wait_for(_stop(self._reader), 5.0)
            self._reader = None


async def _stop(consumer: AIOKafkaConsumer) -> None:
    # A group-less consumer stopped before its coordinator's first task ran re-raises that
    # task's cancellation from `stop()`, which reads as our own: let the task start first.
    await asyncio.sleep(0)
    await consumer.stop()
