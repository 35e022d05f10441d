"""The idempotency ledger of one owned command partition, in memory that does not grow with it.

The ledger topic stays the truth. Beside it the owner keeps an index on local disk
(`ledger_index`): per ledger record key a 16-byte digest and the offset of the key's latest
record, about 25 bytes of disk and nothing of memory per key. That answers the common case,
a new key, by itself: the key is not in the index. A key that is there (a repeat, a
redelivery, a call cut off by a crash) has its entry read back from the topic at that offset
(`ledger_log`), so results, which can be large, are never held for the whole ledger.

Restoring reads the partition into the index without decoding the entries, so it runs at
the speed of the fetch. With a `state_dir` the index is also a checkpoint: it outlives the
process, and the next owner on the same disk reads only what was written after it, once it
has seen that the index belongs to this log (a record it applied is still where it was).
Until the index has reached the partition's end the ledger answers nothing: a key not yet
read could be in the part still unread.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge

from adapters.core.group_commit import Record
from adapters.core.ledger import (
    LedgerEntry,
    answered_record,
    classify,
    decode_entry,
    key_record,
    legacy_answered_record,
)
from adapters.core.ledger_index import LedgerIndex, Sample, digest
from adapters.core.ledger_log import (
    KafkaLedgerLog,
    LedgerLog,
    LedgerUnavailable,
    LogRecord,
    RestoreStalled,
)
from adapters.core.metrics import Metrics

__all__ = [
    "KafkaLedgerLog",
    "Ledger",
    "LedgerIndex",
    "LedgerLog",
    "LedgerMetrics",
    "LedgerUnavailable",
    "LogRecord",
    "RestoreReport",
    "RestoreStalled",
    "digest",
    "ledger_metrics",
]

log = logging.getLogger(__name__)

# Records staged per sqlite transaction while restoring: large enough to amortise the
# commit, small enough that one does not hold the event loop for long (~30 ms).
RESTORE_CHUNK = 10_000
# Staged records merged into the index at a time: bounds the staging's disk and what a
# restore cut off midway has to read again.
MERGE_EVERY = 1_000_000
# Entries recently written or read, kept whole: a repeat follows its original closely, and
# a record just committed may not be readable yet (its transaction marker still on the way).
RECENT_BYTES = 2 * 1024 * 1024


# -- metrics --------------------------------------------------------------------------------


class LedgerMetrics:
    """Restore progress and read-backs, per instance and partition."""

    def __init__(self, metrics: Metrics) -> None:
        r = metrics.registry
        labels = ["instance", "partition"]
        self.restoring = Gauge(
            "workbridge_ledger_restoring",
            "1 while a command partition's ledger is restored (its commands wait)",
            labels,
            registry=r,
        )
        self.remaining = Gauge(
            "workbridge_ledger_restore_remaining_offsets",
            "Ledger offsets still to read before the partition's commands are decided",
            labels,
            registry=r,
        )
        self.seconds = Gauge(
            "workbridge_ledger_restore_seconds",
            "Duration of the partition's last ledger restore",
            labels,
            registry=r,
        )
        self.index_bytes = Gauge(
            "workbridge_ledger_index_bytes",
            "Size of the partition's ledger index on disk after its restore",
            labels,
            registry=r,
        )
        self.reads = Counter(
            "workbridge_ledger_reads_total",
            "Ledger entries read back from the topic for a known key",
            ["instance"],
            registry=r,
        )


# One set per registry (a process may run several bridges, each with its own registry).
_METRICS: weakref.WeakKeyDictionary[Metrics, LedgerMetrics] = weakref.WeakKeyDictionary()


def ledger_metrics(metrics: Metrics) -> LedgerMetrics:
    """The ledger's metrics in `metrics`' registry, registered on first use."""
    found = _METRICS.get(metrics)
    if found is None:
        found = _METRICS[metrics] = LedgerMetrics(metrics)
    return found


# -- the ledger -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreReport:
    """What one restore did."""

    start: int
    end: int
    records: int
    seconds: float
    # Continued from a checkpoint (the index of an earlier run), rather than from scratch.
    resumed: bool


class _Recent:
    """Whole records recently written or read, by digest, bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[bytes, LogRecord] = OrderedDict()
        self._bytes = 0

    @staticmethod
    def _size(record: LogRecord) -> int:
        return 100 + len(record[1] or b"") + len(record[2] or b"")

    def get(self, key_digest: bytes) -> LogRecord | None:
        record = self._items.get(key_digest)
        if record is not None:
            self._items.move_to_end(key_digest)
        return record

    def put(self, key_digest: bytes, record: LogRecord) -> None:
        old = self._items.pop(key_digest, None)
        if old is not None:
            self._bytes -= self._size(old)
        size = self._size(record)
        if size > self.max_bytes // 8:
            return  # too large to keep; the old version is dropped all the same
        self._items[key_digest] = record
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, evicted = self._items.popitem(last=False)
            self._bytes -= self._size(evicted)


class Ledger:
    """One command partition's idempotency ledger: the entry of an idempotency key and
    whether a command id has its answer, from the index and, for known keys, the topic."""

    def __init__(
        self,
        index: LedgerIndex,
        log: LedgerLog,
        *,
        topic: str,
        partition: int,
        instance: str = "",
        metrics: LedgerMetrics | None = None,
        stall_s: float = 120.0,
        recent_bytes: int = RECENT_BYTES,
    ) -> None:
        self.index = index
        self.log = log
        self.topic = topic
        self.partition = partition
        self.instance = instance
        self.metrics = metrics
        self.stall_s = stall_s
        self.restored = False
        # What the last restore did (for the log, metrics and tests).
        self.report: RestoreReport | None = None
        self._recent = _Recent(recent_bytes)
        # Staged every RESTORE_CHUNK records while restoring.
        self._staged: list[tuple[bytes, int, int]] = []
        self._chunk_sample: Sample | None = None
        self._records = 0
        self._end = 0
        self._progress_at = 0.0
        # A step of the restore running in a worker thread: `close` waits for it, since a
        # cancelled coroutine does not stop its thread, which still holds the index.
        self._busy: asyncio.Future[None] | None = None
        self._set_restoring(True)  # from the moment the partition is owned until restored

    # -- restoring ------------------------------------------------------------------------

    async def restore(self) -> RestoreReport:
        """Bring the index to the partition's end: from its checkpoint when that is still
        good, else from the start. Kafka errors are retried as long as the restore moves
        on; `RestoreStalled` when it stops moving for `stall_s`."""
        started = self._progress_at = time.monotonic()
        delay = 0.5
        while True:
            try:
                first, end = await self.log.bounds()
                start, resumed = await self._resume_point(first, end)
                self._end, self._records = end, 0
                self._staged, self._chunk_sample = [], None
                self.index.discard_staged()
                self._gauge_remaining(end - start)
                position = await self.log.scan(start, end, self._take, stall_s=self.stall_s)
                await self._merge(position)
                break
            except (KafkaError, LedgerUnavailable) as exc:
                if time.monotonic() - self._progress_at > self.stall_s:
                    raise RestoreStalled(
                        f"{self.topic}[{self.partition}] cannot be read: {exc}"
                    ) from exc
                log.warning(
                    "restoring %s[%d]: %s; retrying in %.1fs",
                    self.topic,
                    self.partition,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(10.0, delay * 2)
        await self._in_thread(self.index.settle)
        self.restored = True
        self._set_restoring(False)
        report = RestoreReport(
            start=start,
            end=end,
            records=self._records,
            seconds=time.monotonic() - started,
            resumed=resumed,
        )
        if self.metrics is not None:
            labels = (self.instance, str(self.partition))
            self.metrics.seconds.labels(*labels).set(report.seconds)
            self.metrics.index_bytes.labels(*labels).set(self.index.size_bytes())
        self.report = report
        return report

    async def _resume_point(self, first: int, end: int) -> tuple[int, bool]:
        index = self.index
        if index.next_offset == 0 and not index.samples:
            return first, False
        problem = None
        if index.next_offset > end:
            problem = f"it is ahead of the partition's end ({index.next_offset} > {end})"
        elif not await self._recognised(first):
            problem = "none of its sample records is where it was (another log)"
        if problem is None:
            # Rows of records the retention removed can go; their keys are forgotten.
            await self._in_thread(functools.partial(index.purge_below, first))
            return max(index.next_offset, first), True
        log.info("ledger index of %s[%d] not reused: %s", self.topic, self.partition, problem)
        await self._in_thread(index.reset)
        return first, False

    async def _recognised(self, first: int) -> bool:
        for sample in reversed(self.index.samples):
            if sample.offset < first:
                continue
            record = await self.log.read(sample.offset)
            if record is not None and record[1] is not None and digest(record[1]) == sample.digest:
                return True
        return False

    async def _take(self, records: list[LogRecord], position: int) -> None:
        # The hot loop of a restore (once per record): kept to the bare minimum.
        staged, blake2b = self._staged, hashlib.blake2b
        last = None
        for offset, key, value in records:
            if key is None:
                continue
            d = blake2b(key, digest_size=16).digest()
            if value is None:
                staged.append((d, offset, 1))
            else:
                staged.append((d, offset, 0))
                last = (offset, d)
        if last is not None:
            self._chunk_sample = Sample(*last)
        self._records += len(records)
        self._progress_at = time.monotonic()
        self._gauge_remaining(self._end - position)
        if len(staged) >= RESTORE_CHUNK:
            self.index.stage(staged)
            self._staged = []
            if self.index.staged >= MERGE_EVERY:
                await self._merge(position)

    async def _merge(self, position: int) -> None:
        # Everything before `position` is staged once this has staged the rest.
        self.index.stage(self._staged)
        self._staged = []
        merge = functools.partial(self.index.merge, next_offset=position, sample=self._chunk_sample)
        await self._in_thread(merge)
        self._chunk_sample = None

    async def _in_thread(self, step: Callable[[], None]) -> None:
        # Seconds at millions of keys: off the event loop (heartbeats, other partitions).
        # Nothing else uses the index while it restores.
        self._busy = asyncio.ensure_future(asyncio.to_thread(step))
        await asyncio.shield(self._busy)

    def _set_restoring(self, restoring: bool) -> None:
        if self.metrics is not None:
            labels = (self.instance, str(self.partition))
            self.metrics.restoring.labels(*labels).set(1 if restoring else 0)

    def _gauge_remaining(self, remaining: int) -> None:
        if self.metrics is not None:
            labels = (self.instance, str(self.partition))
            self.metrics.remaining.labels(*labels).set(max(0, remaining))

    # -- answering ------------------------------------------------------------------------

    async def entry(self, idempotency_key: str) -> LedgerEntry | None:
        """The entry of an idempotency key, None if the ledger has none (within its
        retention). Raises `LedgerUnavailable` rather than guess."""
        record_key = key_record(idempotency_key)
        entry = await self._find(record_key)
        if entry is not None and classify(record_key, entry)[0] != "key":
            return None  # an answered record of the format before, not this key's entry
        return entry

    async def answered(self, command_id: str) -> bool:
        """Whether the command has its result though it used no key (rejected, conflict,
        a repeat of another command's key). Raises `LedgerUnavailable` rather than guess."""
        if await self._find(answered_record(command_id)) is not None:
            return True
        legacy_key = legacy_answered_record(command_id)
        legacy = await self._find(legacy_key)
        return legacy is not None and classify(legacy_key, legacy)[0] == "answered"

    async def _find(self, record_key: str) -> LedgerEntry | None:
        if not self.restored:
            raise LedgerUnavailable(f"{self.topic}[{self.partition}] is not restored yet")
        key = record_key.encode()
        d = digest(key)
        record = self._recent.get(d)
        if record is None:
            offset = self.index.lookup(d)
            if offset is None:
                return None
            record = await self.log.read(offset)
            if self.metrics is not None:
                self.metrics.reads.labels(self.instance).inc()
            if record is None:
                return None  # the retention removed it: the key is forgotten
            if record[0] != offset or record[1] != key:
                raise LedgerUnavailable(
                    f"{self.topic}[{self.partition}] offset {offset} does not hold the "
                    "record the index says: the index is out of step"
                )
            self._recent.put(d, record)
        _offset, found_key, value = record
        if found_key != key or value is None:
            return None
        return decode_entry(value)

    # -- writing --------------------------------------------------------------------------

    def committed(self, records: Iterable[tuple[Record, int]]) -> None:
        """Take in what a transaction of this partition committed, with its offsets (called
        before any writer hears that its commit succeeded)."""
        mine = sorted(
            (
                (offset, key, value)
                for (topic, key, value, _headers, partition), offset in records
                if topic == self.topic and partition == self.partition and key is not None
            ),
            key=lambda record: record[0],
        )
        if not mine:
            return
        if not self.restored:
            # The index only moves forward: an older record applied after a newer one
            # would undo it. Nothing writes before the restore; say so if something did.
            raise RuntimeError(f"{self.topic}[{self.partition}] written before its restore")
        upserts: dict[bytes, int] = {}
        deletes: set[bytes] = set()
        sample = None
        for offset, key, value in mine:
            assert key is not None
            d = digest(key)
            self._recent.put(d, (offset, key, value))
            if value is None:
                upserts.pop(d, None)
                deletes.add(d)
            else:
                upserts[d] = offset
                deletes.discard(d)
                sample = Sample(offset, d)
        self.index.apply(upserts, deletes, next_offset=mine[-1][0] + 1, sample=sample)

    async def close(self) -> None:
        """Close the topic reader and the index (a checkpoint stays for the next owner)."""
        self._set_restoring(False)
        if self._busy is not None:
            await asyncio.gather(self._busy, return_exceptions=True)
        try:
            await self.log.close()
        finally:
            self.index.close()
