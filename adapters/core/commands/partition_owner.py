"""Partition ownership and fetch: the consumer group of one instance's command topic.

A partition is paused from the moment it is assigned until its owner says it is ready (its
transactional producer fenced the previous owner and its ledger is restored): nothing of
it is handed out before. Records fetched for a partition that is not ready, or no longer
ours, are fetched again later. A partition with too large a backlog is paused until the
backlog halves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from adapters.core.kafka import client_kwargs
from adapters.settings import KafkaConfig

log = logging.getLogger(__name__)


class OwnedPartition(Protocol):
    """What the owner needs of the work on one partition."""

    @property
    def accepting(self) -> bool:
        """Ready for commands (restored) and not being handed back."""
        ...

    async def wait_ready(self) -> None:
        """Return once the partition can take commands."""
        ...

    def dispatch(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Take a fetched record."""
        ...

    def should_pause(self) -> bool:
        """Whether fetching must pause for the backlog (True once per pause)."""
        ...


W = TypeVar("W", bound=OwnedPartition)


class _Rebalance(ConsumerRebalanceListener, Generic[W]):  # type: ignore[misc]
    def __init__(self, owner: PartitionOwner[W]) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.owner.release(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        try:
            await self.owner.acquire(assigned)
        except Exception as exc:
            # aiokafka would swallow this and leave the partitions unowned and paused.
            self.owner.on_fatal(f"cannot take over command partitions {assigned}: {exc}")
            raise


class PartitionOwner(Generic[W]):
    """Owns the partitions the group assigns, through `open_partition` and
    `close_partitions`, and feeds each the records fetched for it."""

    def __init__(
        self,
        kafka: KafkaConfig,
        *,
        topic: str,
        group_id: str,
        client_id: str,
        open_partition: Callable[[TopicPartition], Awaitable[W]],
        close_partitions: Callable[[list[W]], Awaitable[None]],
        on_fatal: Callable[[str], None],
        name: str,
    ) -> None:
        self.kafka = kafka
        self.topic = topic
        self.group_id = group_id
        self.client_id = client_id
        self.open_partition = open_partition
        self.close_partitions = close_partitions
        self.on_fatal = on_fatal
        self.name = name
        self.parts: dict[TopicPartition, W] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self._loop: asyncio.Task[None] | None = None
        self._readiness: dict[TopicPartition, asyncio.Task[None]] = {}

    async def start(self) -> None:
        """Join the group; partitions are taken over as they are assigned."""
        self.consumer = AIOKafkaConsumer(
            **client_kwargs(self.kafka),
            group_id=self.group_id,
            client_id=self.client_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            max_poll_interval_ms=300_000,
        )
        self.consumer.subscribe([self.topic], listener=_Rebalance(self))
        await self.consumer.start()
        self._loop = asyncio.create_task(self._fetch_loop(), name=f"commands-{self.name}")
        self._loop.add_done_callback(self._loop_ended)

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.on_fatal(f"command fetch loop of {self.name} died: {task.exception()!r}")

    async def stop(self) -> None:
        """Stop fetching, hand every partition back, leave the group."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop
        await self.release(list(self.parts))
        if self.consumer is not None:
            await self.consumer.stop()
        # A rebalance callback may have acquired a partition meanwhile.
        await self.release(list(self.parts))

    async def acquire(self, tps: list[TopicPartition]) -> None:
        """Take over assigned partitions; each is fetched once it is ready."""
        # aiokafka may fetch a partition as soon as it is assigned, while this callback still
        # takes it over; paused, nothing of it is handed out before it is ready.
        assert self.consumer is not None
        self.consumer.pause(*tps)
        for tp in tps:
            work = self.parts.get(tp)
            if work is None:
                work = self.parts[tp] = await self.open_partition(tp)
            earlier = self._readiness.pop(tp, None)
            if earlier is not None:
                earlier.cancel()
            self._readiness[tp] = asyncio.create_task(self._resume_when_ready(tp, work))

    async def _resume_when_ready(self, tp: TopicPartition, work: W) -> None:
        await work.wait_ready()
        if self.parts.get(tp) is work:
            self.resume(tp)

    def resume(self, tp: TopicPartition) -> None:
        """Fetch the partition again (if it is still ours)."""
        if self.consumer is not None and tp in self.parts and tp in self.consumer.assignment():
            self.consumer.resume(tp)

    async def release(self, tps: list[TopicPartition]) -> None:
        """Hand partitions back (what that means is `close_partitions`')."""
        works = [w for tp in tps if (w := self.parts.pop(tp, None)) is not None]
        waits = [t for tp in tps if (t := self._readiness.pop(tp, None)) is not None]
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
        if works:
            await self.close_partitions(works)

    async def _fetch_loop(self) -> None:
        assert self.consumer is not None
        while True:
            batches = await self.consumer.getmany(timeout_ms=500, max_records=500)
            for tp, records in batches.items():
                work = self.parts.get(tp)
                if work is None or not work.accepting:
                    # Not ours (any more), or not ready: fetch these again when it is.
                    if records and tp in self.consumer.assignment():
                        self.consumer.seek(tp, records[0].offset)
                    continue
                for record in records:
                    work.dispatch(record)
                if work.should_pause():
                    self.consumer.pause(tp)
