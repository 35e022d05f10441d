"""Group commit: the writes of one partition share transactions instead of one each.

A transaction costs several round trips to the broker whatever it holds, so commands that
finish together are committed together: their results, ledger entries, DLQ copies and the
consumer offset. Each caller awaits its own write; none returns before its transaction
committed. Kafka errors are retried here until the partition is handed back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

from adapters.core.cloudevents_codec import Headers

log = logging.getLogger(__name__)

# (topic, key, value, headers, partition); a None value is a tombstone.
Record = tuple[str, bytes | None, bytes | None, Headers, int | None]
MAX_WRITES_PER_TRANSACTION = 200


class CommitterClosed(Exception):
    """The partition was handed back (or fenced) before this write committed."""


@dataclass
class _Write:
    records: list[Record]
    finished_offset: int | None
    future: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupCommitter:
    """Commits one partition's writes, batched, in transactions of its own producer."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        tp: TopicPartition,
        group_id: str,
        *,
        commit_offset: Callable[[set[int]], int],
        name: str,
    ) -> None:
        self.producer = producer
        self.tp = tp
        self.group_id = group_id
        # Given the offsets a batch finishes, the next offset the group may commit.
        self.commit_offset = commit_offset
        self.name = name
        self._queue: list[_Write] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self.fenced = False
        self._task = asyncio.create_task(self._run(), name=f"commit-{name}-{tp.partition}")

    async def write(self, records: list[Record], *, finished_offset: int | None = None) -> None:
        """Return once `records` (and the offset past `finished_offset`) are committed."""
        if self._closing:
            raise CommitterClosed(f"partition {self.tp.partition} is being handed back")
        item = _Write(records, finished_offset)
        self._queue.append(item)
        self._idle.clear()
        self._wakeup.set()
        await item.future

    async def close(self, timeout_s: float) -> None:
        """Commit what is queued (within the timeout), then stop; later writes fail."""
        self._closing = True
        self._wakeup.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._fail_all(CommitterClosed("handed back before the commit"))

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch = self._queue[:MAX_WRITES_PER_TRANSACTION]
                del self._queue[: len(batch)]
                if not await self._commit(batch):
                    self._fail_all(CommitterClosed("fenced: another replica owns the partition"))
                    self._idle.set()
                    return
            self._idle.set()

    async def _commit(self, batch: list[_Write]) -> bool:
        delay = 0.2
        finishing = {w.finished_offset for w in batch if w.finished_offset is not None}
        while True:
            try:
                async with self.producer.transaction():
                    for write in batch:
                        for topic, key, value, headers, partition in write.records:
                            await self.producer.send(
                                topic, key=key, value=value, headers=headers, partition=partition
                            )
                    if finishing:
                        offset = self.commit_offset(finishing)
                        await self.producer.send_offsets_to_transaction(
                            {self.tp: offset}, self.group_id
                        )
            except ProducerFenced:
                self.fenced = True
                for write in batch:
                    if not write.future.done():
                        write.future.set_exception(CommitterClosed("fenced"))
                return False
            except KafkaError as exc:
                # Retried until it lands; a hand-back stops this by cancelling the task.
                log.warning(
                    "%s partition %d: commit of %d writes failed (%s); retrying in %.1fs",
                    self.name,
                    self.tp.partition,
                    len(batch),
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(30.0, delay * 2)
                continue
            for write in batch:
                if not write.future.done():
                    write.future.set_result(None)
            return True

    def _fail_all(self, exc: Exception) -> None:
        for write in self._queue:
            if not write.future.done():
                write.future.set_exception(exc)
        self._queue.clear()
