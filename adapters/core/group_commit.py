"""Group commit: the writes of one partition share transactions instead of one each.

A transaction costs several round trips to the broker whatever it holds, so commands that
finish together are committed together: their results, ledger entries, DLQ copies and the
consumer offset. Each caller awaits its own write; none returns before its transaction
committed with every record in it. A write can name its `undo`, so that a caller that gives
up (cancelled at a hand-back) leaves nothing behind, wherever its write had got to.
Retriable Kafka errors are retried here until the partition is handed back; anything else
stops the committer and is reported as fatal. Whoever keeps a view of the partition's state
(the ledger's index) hears of every committed record, with its offset, before any caller
hears that its write committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
# A record that a transaction committed, with the offset it got.
Committed = tuple[Record, int]
MAX_WRITES_PER_TRANSACTION = 200


class CommitterClosed(Exception):
    """The partition was handed back, fenced or broken before this write committed."""


def _new_future() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


def _orphan_future() -> asyncio.Future[None]:
    # Nobody awaits it: its failure is reported by the committer, not as "never retrieved".
    future = _new_future()
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    return future


@dataclass
class _Write:
    records: list[Record]
    finished_offset: int | None
    # What takes `records` back (tombstones) should the caller give up once they were sent.
    undo: list[Record] | None = None
    future: asyncio.Future[None] = field(default_factory=_new_future)

    @property
    def given_up(self) -> bool:
        """The caller stopped waiting (cancelled at a hand-back)."""
        return self.future.cancelled()


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
        on_committed: Callable[[list[Committed]], None] | None = None,
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
        # Told of every committed record (an exception there is fatal like a broken commit:
        # the view it keeps would no longer match the topic).
        self.on_committed = on_committed
        self._queue: list[_Write] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.closed = False
        self._in_batch: list[_Write] = []
        self._task = asyncio.create_task(self._run(), name=f"commit-{name}-{tp.partition}")

    async def write(
        self,
        records: list[Record],
        *,
        finished_offset: int | None = None,
        undo: list[Record] | None = None,
    ) -> None:
        """Return once `records` (and the offset past `finished_offset`) are committed.

        With `undo`, a caller that is cancelled before the commit leaves nothing behind:
        its records are left out of a transaction not yet sent, `undo` follows them in
        the same transaction once they were sent, or in the next one if the caller gave
        up during the commit itself.
        """
        if self.closed:
            raise CommitterClosed(f"partition {self.tp.partition} is no longer written")
        item = _Write(records, finished_offset, undo)
        self._queue.append(item)
        self._idle.clear()
        self._wakeup.set()
        try:
            await item.future
        except asyncio.CancelledError:
            if undo and item.future.done() and not item.future.cancelled():
                # Committed just as the caller was cancelled: it will not act on the
                # records, so they are taken back like those of any caller that gave up.
                self._follow_up(undo)
            raise

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
        delay = 0.2
        while True:
            # A caller that gave up while an earlier try was retried has nothing more sent
            # but its undo (that try may have committed after all; undoing is harmless).
            batch = [w for w in batch if not w.given_up or w.undo]
            self._in_batch = batch
            if not batch:
                return
            finishing = {
                w.finished_offset for w in batch if w.finished_offset is not None and not w.given_up
            }
            sent: list[_Write] = []
            undone: set[int] = set()  # id() of writes whose undo is in this transaction
            landed: list[tuple[Record, Any]] = []  # every record sent, with its metadata
            try:
                async with self.producer.transaction():
                    sends: list[tuple[Record, asyncio.Future[Any]]] = []
                    for write in batch:
                        if not write.given_up:
                            sends += await self._send(write.records)
                            sent.append(write)
                        elif write.undo:
                            sends += await self._send(write.undo)
                            undone.add(id(write))
                    # aiokafka commits a transaction even when one of its batches failed
                    # for good: every record must be acknowledged before the commit.
                    metadata = await asyncio.gather(*(future for _, future in sends))
                    landed += zip((record for record, _ in sends), metadata, strict=True)
                    if finishing:
                        await self.producer.send_offsets_to_transaction(
                            {self.tp: self.commit_offset(finishing)}, self.group_id
                        )
                    # Callers that gave up while their records were being sent.
                    for write in sent:
                        if write.given_up and write.undo:
                            undo = await self._send(write.undo)
                            metadata = await asyncio.gather(*(future for _, future in undo))
                            landed += zip((record for record, _ in undo), metadata, strict=True)
                            undone.add(id(write))
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
            if self.on_committed is not None:
                self.on_committed([(record, meta.offset) for record, meta in landed])
            for write in batch:
                if not write.future.done():
                    write.future.set_result(None)
                elif write.given_up and write.undo and id(write) not in undone:
                    # Gave up during the commit: its records landed, so their undo follows.
                    self._follow_up(write.undo)
            self._in_batch = []
            return

    def _follow_up(self, records: list[Record]) -> None:
        self._queue.append(_Write(records, None, future=_orphan_future()))
        self._idle.clear()
        self._wakeup.set()

    async def _send(self, records: list[Record]) -> list[tuple[Record, asyncio.Future[Any]]]:
        futures = []
        for record in records:
            topic, key, value, headers, partition = record
            future = await self.producer.send(
                topic, key=key, value=value, headers=headers, partition=partition
            )
            futures.append((record, future))
        return futures

    def _fail_all(self, exc: Exception, also: list[_Write] | None = None) -> None:
        for write in [*(also or []), *self._queue]:
            if not write.future.done():
                write.future.set_exception(exc)
        self._queue.clear()
