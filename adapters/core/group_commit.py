"""Group commit: the writes of one partition share transactions instead of one each.

A transaction costs several round trips to the broker whatever it holds, so commands that
finish together are committed together: their results, ledger entries, DLQ copies and the
consumer offset. Each caller awaits its own write; none returns before its transaction
committed with every record in it. Retriable Kafka errors are retried here until the
partition is handed back; anything else stops the committer and is reported as fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    ConcurrentTransactions,
    KafkaError,
    KafkaTimeoutError,
    KafkaUnavailableError,
)

from adapters.core.cloudevents_codec import Headers

log = logging.getLogger(__name__)

# Outage-like errors aiokafka does not mark retriable; they pass when the brokers are back.
_TRANSIENT = (KafkaTimeoutError, KafkaUnavailableError, ConcurrentTransactions)


def is_transient(exc: KafkaError) -> bool:
    """Whether retrying the same transaction later can succeed."""
    return bool(getattr(exc, "retriable", False)) or isinstance(exc, _TRANSIENT)


# (topic, key, value, headers, partition); a None value is a tombstone.
Record = tuple[str, bytes | None, bytes | None, Headers, int | None]
MAX_WRITES_PER_TRANSACTION = 200


class CommitterClosed(Exception):
    """The partition was handed back, fenced or broken before this write committed."""


def _new_future() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


@dataclass
class _Write:
    records: list[Record]
    finished_offset: int | None
    future: asyncio.Future[None] = field(default_factory=_new_future)


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
        on_fatal: Callable[[str], None],
    ) -> None:
        self.producer = producer
        self.tp = tp
        self.group_id = group_id
        # Given the offsets a batch finishes, the next offset the group may commit.
        self.commit_offset = commit_offset
        self.name = name
        # Fenced (another owner, or our own transaction timed out) or a non-retriable error:
        # this process can no longer write for the partition and must leave the group.
        self.on_fatal = on_fatal
        self._queue: list[_Write] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.closed = False
        self._in_batch: list[_Write] = []
        self._task = asyncio.create_task(self._run(), name=f"commit-{name}-{tp.partition}")

    async def write(self, records: list[Record], *, finished_offset: int | None = None) -> None:
        """Return once `records` (and the offset past `finished_offset`) are committed."""
        if self.closed:
            raise CommitterClosed(f"partition {self.tp.partition} is no longer written")
        item = _Write(records, finished_offset)
        self._queue.append(item)
        self._idle.clear()
        self._wakeup.set()
        await item.future

    async def close(self, timeout_s: float) -> None:
        """Commit what is queued (within the timeout), then stop; later writes fail."""
        self.closed = True
        self._wakeup.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        self._task.cancel()
        # Aborting an open transaction waits for the broker; a hand-back must not wait for
        # the end of an outage (the next owner fences this producer anyway).
        await asyncio.wait({self._task}, timeout=timeout_s)
        self._fail_all(CommitterClosed("handed back before the commit"))

    async def _run(self) -> None:
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._queue:
                    # Writes whose caller gave up (cancelled at a hand-back) are dropped: an
                    # in-flight mark for a call that never happened must not land.
                    batch = [
                        w for w in self._queue[:MAX_WRITES_PER_TRANSACTION] if not w.future.done()
                    ]
                    del self._queue[:MAX_WRITES_PER_TRANSACTION]
                    if batch:
                        await self._commit(batch)
                self._idle.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.closed = True
            self._fail_all(CommitterClosed(f"commits stopped: {exc!r}"), also=self._in_batch)
            self._idle.set()
            self.on_fatal(f"{self.name} partition {self.tp.partition}: {exc!r}")

    async def _commit(self, batch: list[_Write]) -> None:
        self._in_batch = batch
        delay = 0.2
        finishing = {w.finished_offset for w in batch if w.finished_offset is not None}
        while True:
            try:
                async with self.producer.transaction():
                    sends = []
                    for write in batch:
                        for topic, key, value, headers, partition in write.records:
                            sends.append(
                                await self.producer.send(
                                    topic,
                                    key=key,
                                    value=value,
                                    headers=headers,
                                    partition=partition,
                                )
                            )
                    # aiokafka commits a transaction even when one of its batches failed
                    # for good: every record must be acknowledged before the commit.
                    await asyncio.gather(*sends)
                    if finishing:
                        await self.producer.send_offsets_to_transaction(
                            {self.tp: self.commit_offset(finishing)}, self.group_id
                        )
            except KafkaError as exc:
                if not is_transient(exc):
                    raise  # fenced, too large, not authorised: _run reports it as fatal
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
            self._in_batch = []
            return

    def _fail_all(self, exc: Exception, also: list[_Write] | None = None) -> None:
        for write in [*(also or []), *self._queue]:
            if not write.future.done():
                write.future.set_exception(exc)
        self._queue.clear()
