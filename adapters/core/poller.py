"""The polling runtime: cursors in Kafka, events and cursor in one transaction.

Ownership: each poll task (instance, resource) maps to one partition of the instance's
cursor topic; a consumer group over that topic assigns partitions, so with several replicas
each task runs in exactly one. Each partition's work has its own transactional id, so a new
owner fences the old one and any transaction the old owner left open is aborted.

A cursor is a high-water mark plus the ids seen within an overlap window behind it: vendor
timestamps are coarse (MOCO: seconds), so equal timestamps must not lose or repeat changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    OutOfOrderSequenceNumber,
    ProducerFenced,
    TransactionalIdAuthorizationFailed,
)

from adapters.config import KafkaConfig
from adapters.core.cloudevents_codec import stable_id
from adapters.core.errors import Action
from adapters.core.instance import Instance
from adapters.core.kafka import client_kwargs, transactional_producer
from adapters.core.metrics import Metrics
from adapters.core.state_restore import restore_partition
from adapters.core.vendor import EventDraft, PollResource, PollSpec
from adapters.core.vendor_call import RetryPolicy, call_with_retry
from adapters.core.vendor_http import ForeignURL

log = logging.getLogger(__name__)


class Cursor(msgspec.Struct, kw_only=True):
    """Where a resource's polling stands: the newest change time and the ids seen near it."""

    mark: datetime | None = None
    seen: dict[str, datetime] = msgspec.field(default_factory=dict)


class PollError(Exception):
    """A poll cycle could not complete; it is retried at the next interval."""


# What stops aiokafka's sender for good: the producer can never write again.
_PRODUCER_LOST = (ProducerFenced, OutOfOrderSequenceNumber, TransactionalIdAuthorizationFailed)


def producer_lost(exc: BaseException, producer: AIOKafkaProducer) -> bool:
    """Whether a failed cycle means this producer cannot write any more (fenced by a newer
    owner of the same transactional id, or broken), so that retrying is pointless."""
    if isinstance(exc, _PRODUCER_LOST):
        return True
    # After that, each new transaction fails with an AssertionError of aiokafka's state
    # machine ("Invalid state transition"), not with the error that ended it.
    txn = getattr(producer, "_txn_manager", None)
    return bool(txn is not None and txn.is_fatal_error())


def owner_partition(resource: str, partitions: int) -> int:
    """The cursor-topic partition that owns a resource (stable across processes)."""
    return zlib.crc32(resource.encode()) % partitions


def select_new(
    records: list[dict[str, Any]],
    cursor: Cursor,
    res: PollResource,
    spec: PollSpec,
    overlap: timedelta,
) -> list[tuple[datetime, str, dict[str, Any]]]:
    """Records not yet published, oldest first, as (change time, id, record)."""
    floor = cursor.mark - overlap if cursor.mark else None
    out: dict[str, tuple[datetime, str, dict[str, Any]]] = {}
    for record in records:
        rid = str(record[res.primary_key])
        ts = spec.parse_time(str(record[res.replication_key]))
        if floor is not None and ts < floor:
            continue
        if cursor.seen.get(rid) == ts:
            continue
        out[rid] = (ts, rid, record)
    return sorted(out.values(), key=lambda item: (item[0], item[1]))


def advance(
    cursor: Cursor, chunk: list[tuple[datetime, str, dict[str, Any]]], overlap: timedelta
) -> Cursor:
    """The cursor after `chunk` is published."""
    mark = max(
        [cursor.mark, *(ts for ts, _, _ in chunk)] if cursor.mark else [ts for ts, _, _ in chunk]
    )
    seen = {**cursor.seen, **{rid: ts for ts, rid, _ in chunk}}
    floor = mark - overlap
    return Cursor(mark=mark, seen={k: v for k, v in seen.items() if v >= floor})


def poll_draft(
    inst: Instance, res: PollResource, ts: datetime, rid: str, record: dict[str, Any]
) -> EventDraft:
    """The event for one polled change: created when created == updated, else updated."""
    spec = inst.spec.poll
    assert spec is not None
    created = res.created_key and record.get(res.created_key) == record.get(res.replication_key)
    verb = "created" if created else "updated"
    return EventDraft(
        type=f"workbridge.{inst.spec.id}.{res.event_resource}.{verb}",
        subject=f"{res.event_resource}/{rid}",
        # Same record at the same change time → same id, however often it is polled.
        id=stable_id(inst.name, res.name, rid, ts.isoformat()),
        time=ts,
        data=msgspec.json.encode(record),
    )


class PollTask:
    """Polls one resource of one instance for as long as this process owns it."""

    def __init__(
        self,
        inst: Instance,
        res: PollResource,
        producer: AIOKafkaProducer,
        cursor: Cursor,
        partition: int,
        metrics: Metrics,
        tx_lock: asyncio.Lock,
        *,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        self.inst, self.res, self.producer, self.cursor = inst, res, producer, cursor
        # Told once the partition's producer can no longer write (fenced): the task ends.
        self.on_lost = on_lost or (lambda message: log.critical("%s", message))
        # Tasks of one partition share its transactional producer: one transaction at a time.
        self.tx_lock = tx_lock
        self.partition = partition
        self.metrics = metrics
        cfg = inst.cfg.polling
        self.overlap = timedelta(seconds=cfg.overlap_s)
        self.policy = RetryPolicy(
            deadline_s=max(30.0, cfg.interval_s), max_attempts=6, base_s=1.0, cap_s=30.0
        )

    async def run(self) -> None:
        """Poll at the configured interval until cancelled, or until the producer is lost."""
        while True:
            try:
                await self.poll_once()
                self.metrics.polls.labels(self.inst.name, self.res.name, "ok").inc()
            except Exception as exc:  # a bug or vendor surprise must not end polling for good
                if producer_lost(exc, self.producer):
                    # Another owner has the partition (or the producer broke): polling on
                    # would fail forever and never hand the partition to a healthy member.
                    self.metrics.polls.labels(self.inst.name, self.res.name, "error").inc()
                    self.on_lost(f"{self.res.name}: {exc!r}")
                    return
                if not isinstance(exc, PollError):
                    log.exception("poll %s/%s crashed", self.inst.name, self.res.name)
                self.metrics.polls.labels(self.inst.name, self.res.name, "error").inc()
                log.error(
                    "poll %s/%s failed: %s (next try in %.0fs)",
                    self.inst.name,
                    self.res.name,
                    exc,
                    self.inst.cfg.polling.interval_s,
                )
            await asyncio.sleep(self.inst.cfg.polling.interval_s)

    async def poll_once(self) -> int:
        """One cycle: fetch changes, publish them with the cursor; returns how many."""
        cfg = self.inst.cfg.polling
        if self.cursor.mark is None and cfg.start_from == "now":
            await self._commit([], Cursor(mark=datetime.now(UTC)))
            return 0
        records = await self._fetch_all()
        spec = self.inst.spec.poll
        assert spec is not None
        new = select_new(records, self.cursor, self.res, spec, self.overlap)
        for start in range(0, len(new), cfg.max_batch):
            chunk = new[start : start + cfg.max_batch]
            await self._commit(chunk, advance(self.cursor, chunk, self.overlap))
        if new:
            log.info("poll %s/%s: %d changes published", self.inst.name, self.res.name, len(new))
        return len(new)

    async def _commit(
        self, chunk: list[tuple[datetime, str, dict[str, Any]]], cursor: Cursor
    ) -> None:
        topics = self.inst.topics
        async with self.tx_lock, self.producer.transaction():
            sends = []
            for ts, rid, record in chunk:
                key, value, headers = self.inst.encode(
                    self.inst.event(poll_draft(self.inst, self.res, ts, rid, record))
                )
                sends.append(
                    await self.producer.send(topics.events, value=value, key=key, headers=headers)
                )
            sends.append(
                await self.producer.send(
                    topics.cursors,
                    key=self.res.name.encode(),
                    value=msgspec.json.encode(cursor),
                    partition=self.partition,
                )
            )
            # aiokafka would commit even if a record failed for good: acknowledge all first.
            await asyncio.gather(*sends)
        self.cursor = cursor
        self.metrics.events.labels(self.inst.name, "poll").inc(len(chunk))

    async def _fetch_all(self) -> list[dict[str, Any]]:
        spec = self.inst.spec.poll
        assert spec is not None
        params = {**self.res.params, spec.page_size_param: str(self.inst.cfg.polling.page_size)}
        if self.cursor.mark is not None:
            params[self.res.since_param] = spec.format_since(self.cursor.mark - self.overlap)
        # A record deleted while we page shifts later pages by one and could hide a change.
        # The vendor's total on every page tells us; such a listing is read again, and one
        # that never holds still moves no cursor (the next interval tries again).
        for _ in range(3):
            records: list[dict[str, Any]] = []
            # The path may be overridden per instance where the vendor document gives none.
            url: str | None = self.inst.cfg.options.get("resource_paths", {}).get(
                self.res.name, self.res.path
            )
            first_params: dict[str, str] | None = params
            totals: set[int | None] = set()
            while url is not None:
                try:
                    outcome = await call_with_retry(
                        self.inst.client,
                        "GET",
                        url,
                        errors=self.inst.spec.errors,
                        policy=self.policy,
                        params=first_params,
                    )
                except ForeignURL as exc:
                    raise PollError(f"{self.res.name}: next page {exc}") from None
                self.metrics.vendor_calls.labels(
                    self.inst.name, str(outcome.response.status if outcome.response else "none")
                ).inc()
                if outcome.action is not Action.SUCCESS or outcome.response is None:
                    status = outcome.response.status if outcome.response else "no answer"
                    raise PollError(f"GET {url}: {status}: {outcome.error}")
                try:
                    page = spec.read_page(outcome.response)
                except (ValueError, msgspec.DecodeError) as exc:
                    raise PollError(f"GET {url}: unreadable listing: {exc}") from None
                totals.add(page.total)
                records.extend(page.records)
                url, first_params = page.next_url, None
            if totals == {None} or totals == {len(records)}:
                return records
            log.warning(
                "poll %s/%s: listing changed while paging (%d records, totals %s); reading again",
                self.inst.name,
                self.res.name,
                len(records),
                sorted(t or 0 for t in totals),
            )
        raise PollError(f"{self.res.name}: the listing kept changing while paged; cursor kept")


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: PollRunner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.runner.release([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        try:
            await self.runner.acquire([tp.partition for tp in assigned])
        except Exception as exc:
            # aiokafka would swallow this and leave those poll tasks unowned.
            self.runner.on_fatal(f"cannot take over poll partitions {assigned}: {exc}")
            raise


class PollRunner:
    """Runs the poll tasks of one instance whose cursor partitions this process owns."""

    def __init__(
        self,
        inst: Instance,
        kafka: KafkaConfig,
        metrics: Metrics,
        *,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        self.inst, self.kafka, self.metrics = inst, kafka, metrics
        self.on_fatal = on_fatal or (lambda message: log.critical("%s", message))
        spec = inst.spec.poll
        assert spec is not None
        self.resources = [spec.resources[name] for name in inst.cfg.polling.resources]
        self.consumer: AIOKafkaConsumer | None = None
        self.owned: dict[int, tuple[AIOKafkaProducer, list[asyncio.Task[None]]]] = {}
        self.tasks: dict[str, PollTask] = {}
        # Partitions whose producer was fenced (reported once; their tasks have ended).
        self.lost: set[int] = set()
        self._loop_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Join the instance's poller group; tasks start as partitions are assigned."""
        self.consumer = AIOKafkaConsumer(
            **client_kwargs(self.kafka),
            group_id=self.inst.topics.group("pollers"),
            client_id=f"{self.kafka.client_id}-{self.inst.name}-pollers",
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        self.consumer.subscribe([self.inst.topics.cursors], listener=_Rebalance(self))
        await self.consumer.start()
        self._loop_task = asyncio.create_task(self._membership())
        self._loop_task.add_done_callback(self._loop_ended)

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.on_fatal(f"poller group loop of {self.inst.name} died: {task.exception()!r}")

    async def _membership(self) -> None:
        # Group membership needs regular polls; the records are our own cursors, already known.
        assert self.consumer is not None
        while True:
            await self.consumer.getmany(timeout_ms=1000)

    async def acquire(self, partitions: list[int]) -> None:
        """Fence earlier owners, restore the cursors, start the owned tasks."""
        for p in partitions:
            if p in self.owned:
                continue
            producer = transactional_producer(
                self.kafka, transactional_id=f"{self.inst.topics.group('poller')}.{p}"
            )
            await producer.start()  # init_transactions: aborts what a previous owner left open
            try:
                cursors = await self._restore(p)
            except BaseException:
                await producer.stop()  # cancelled by a shutdown mid-rebalance: leave nothing open
                raise
            tx_lock = asyncio.Lock()
            tasks = []
            for res in self.resources:
                if owner_partition(res.name, self._partition_count()) != p:
                    continue
                task = PollTask(
                    self.inst,
                    res,
                    producer,
                    cursors.get(res.name, Cursor()),
                    p,
                    self.metrics,
                    tx_lock,
                    on_lost=functools.partial(self._partition_lost, p),
                )
                self.tasks[res.name] = task
                tasks.append(
                    asyncio.create_task(task.run(), name=f"poll-{self.inst.name}-{res.name}")
                )
            self.owned[p] = (producer, tasks)
            log.info(
                "poller %s owns partition %d: %s", self.inst.name, p, [t.get_name() for t in tasks]
            )

    def _partition_lost(self, partition: int, message: str) -> None:
        # Like a fenced command partition: nothing more is written for it from here, and
        # the process leaves so that the group gives the partition to a healthy member.
        entry = self.owned.get(partition)
        if entry is None or partition in self.lost:
            return
        self.lost.add(partition)
        current = asyncio.current_task()
        for task in entry[1]:
            if task is not current:
                task.cancel()
        self.on_fatal(f"cannot write for poll partition {partition}: {message}")

    async def release(self, partitions: list[int]) -> None:
        """Stop the tasks of partitions handed to another replica (an open transaction aborts)."""
        for p in partitions:
            entry = self.owned.pop(p, None)
            if entry is None:
                continue
            producer, tasks = entry
            self.lost.discard(p)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await producer.stop()
        for name in [n for n, t in self.tasks.items() if t.partition in partitions]:
            del self.tasks[name]

    def _partition_count(self) -> int:
        assert self.consumer is not None
        parts = self.consumer.partitions_for_topic(self.inst.topics.cursors)
        if not parts:
            # Guessing would let two replicas own one resource under different ids.
            raise RuntimeError(f"no partition metadata for {self.inst.topics.cursors}")
        return len(parts)

    async def _restore(self, partition: int) -> dict[str, Cursor]:
        return await restore_partition(
            self.kafka,
            self.inst.topics.cursors,
            partition,
            lambda raw: msgspec.json.decode(raw, type=Cursor),
        )

    async def stop(self) -> None:
        """Stop polling, leave the group (another replica takes over)."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop_task
        await self.release(list(self.owned))
        if self.consumer is not None:
            await self.consumer.stop()
        # A rebalance callback may have acquired a partition meanwhile.
        await self.release(list(self.owned))
