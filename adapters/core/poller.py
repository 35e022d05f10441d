"""The polling runtime: poll tasks, their ownership, and their transactions.

A poll task is one resource of one instance, or one (scope, resource) for a resource fanned
out over discovered scopes (scopes.py). Each task key maps to one partition of the
instance's cursors topic; a consumer group over that topic assigns the partitions, so with
several replicas each task runs in exactly one. Each partition's work has its own
transactional id, so a new owner fences the old one and any transaction the old owner left
open is aborted.

A task runs its `ChangeSource` (change_source.py). Every step the source yields (its events,
its dead letters and the task's new state) is committed in one Kafka transaction, so a
crash or a restart neither loses nor repeats a change.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import zlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    OutOfOrderSequenceNumber,
    ProducerFenced,
    TransactionalIdAuthorizationFailed,
)

from adapters.core.change_source import PollContext, PollError, PollSettings, Step, needs_of
from adapters.core.errors import Action
from adapters.core.instance import Instance
from adapters.core.kafka import client_kwargs, transactional_producer
from adapters.core.metrics import Metrics
from adapters.core.pagination import PageRequest
from adapters.core.poll_commit import dead_letter_record
from adapters.core.poll_order import StalestFirst
from adapters.core.poll_state import StateError, encode_state
from adapters.core.ratelimit import SlidingWindowLimiter
from adapters.core.recent_events import RecentEvents
from adapters.core.state_restore import restore_partition, restore_stamped
from adapters.core.tracking import TrackingView
from adapters.core.vendor import PollResource
from adapters.core.vendor_call import RetryPolicy, call_with_retry
from adapters.core.vendor_http import ForeignURL, VendorResponse
from adapters.settings import KafkaConfig

log = logging.getLogger(__name__)

# What stops aiokafka's sender for good: the producer can never write again.
_PRODUCER_LOST = (ProducerFenced, OutOfOrderSequenceNumber, TransactionalIdAuthorizationFailed)

__all__ = [
    "PollError",
    "PollRunner",
    "PollTask",
    "owner_partition",
    "placed_partitions",
    "producer_lost",
    "task_key",
]


def producer_lost(exc: BaseException, producer: AIOKafkaProducer) -> bool:
    """Whether a failed cycle means this producer cannot write any more (fenced by a newer
    owner of the same transactional id, or broken), so that retrying is pointless."""
    if isinstance(exc, _PRODUCER_LOST):
        return True
    # After that, each new transaction fails with an AssertionError of aiokafka's state
    # machine ("Invalid state transition"), not with the error that ended it.
    txn = getattr(producer, "_txn_manager", None)
    return bool(txn is not None and txn.is_fatal_error())


def task_key(resource: str, scope: str | None = None) -> str:
    """A task's key on the cursors topic; an unscoped task's is its resource (as before scopes)."""
    return resource if scope is None else f"{resource}/{scope}"


def owner_partition(key: str, partitions: int) -> int:
    """The cursor-topic partition of a fanned-out task's key, by a hash (stable across
    processes); also where an unscoped task's state was kept before `placed_partitions`."""
    return zlib.crc32(key.encode()) % partitions


def placed_partitions(names: Iterable[str], partitions: int) -> dict[str, int]:
    """The cursor partition of each unscoped task: dealt round-robin in name order, so that
    every partition gets its share (a hash put MOCO's seven resources 3/4/0 on three
    partitions, and a third replica never polled). Every process with the same configured
    resources computes the same placement."""
    return {name: i % partitions for i, name in enumerate(sorted(set(names)))}


def poll_gate(inst: Instance) -> StalestFirst | None:
    """The polls' part of the instance's budget: `polling.max_budget_share` of what this
    process may use (at least one request), so that commands always find room, handed to
    the stalest task first. None for a budget of unknown size, or a share of 1."""
    main = inst.client.limiter
    share = inst.cfg.polling.max_budget_share
    if main.requests <= 0 or share >= 1:
        return None
    return StalestFirst(
        SlidingWindowLimiter(
            main.requests,
            main.window,
            margin_s=0.0,
            capacity=lambda: max(1, int(share * main.capacity)) if main.capacity else 0,
        )
    )


class PollTask:
    """Polls one task (resource, scope) of one instance for as long as this process owns it."""

    def __init__(
        self,
        inst: Instance,
        res: PollResource,
        producer: AIOKafkaProducer,
        state: Any,
        partition: int,
        metrics: Metrics,
        tx_lock: asyncio.Lock,
        *,
        scope: str | None = None,
        scope_headers: dict[str, str] | None = None,
        on_lost: Callable[[str], None] | None = None,
        on_commit: Callable[[str, bytes], None] | None = None,
        gate: StalestFirst | None = None,
        tracking: TrackingView | None = None,
        recent: RecentEvents | None = None,
    ) -> None:
        self.inst, self.res, self.producer, self.state = inst, res, producer, state
        # The commands' tracking topic, for a watch they feed (tracking.py).
        self.tracking = tracking
        # The events topic read back, for a recovery that skips what is there already.
        self.recent = recent
        # The polls' part of the budget (see PollRunner); None: no reserve for commands.
        self.gate = gate
        # When the task last completed a cycle (or was taken over): its staleness.
        self.visited = time.monotonic()
        self.scope = scope
        self.key = task_key(res.name, scope)
        self._scope_headers = scope_headers or {}
        # Told once the partition's producer can no longer write (fenced): the task ends.
        self.on_lost = on_lost or (lambda message: log.critical("%s", message))
        self.on_commit = on_commit or (lambda _key, _raw: None)
        # Tasks of one partition share its transactional producer: one transaction at a time.
        self.tx_lock = tx_lock
        self.partition = partition
        self.metrics = metrics
        cfg = inst.cfg.polling
        self.settings = PollSettings.of(cfg)
        self.policy = RetryPolicy(
            deadline_s=max(30.0, cfg.interval_s), max_attempts=6, base_s=1.0, cap_s=30.0
        )

    async def run(self) -> None:
        """Poll at the configured interval until cancelled, or until the producer is lost."""
        try:
            await self._run()
        finally:
            for reader in (self.tracking, self.recent):
                if reader is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(reader.close())

    async def _run(self) -> None:
        interval = self.inst.cfg.polling.interval_s
        while True:
            try:
                await self.poll_once()
                self.visited = time.monotonic()
                self.metrics.polls.labels(self.inst.name, self.key, "ok").inc()
            except Exception as exc:  # a bug or vendor surprise must not end polling for good
                self.metrics.polls.labels(self.inst.name, self.key, "error").inc()
                if producer_lost(exc, self.producer):
                    # Another owner has the partition (or the producer broke): polling on
                    # would fail forever and never hand the partition to a healthy member.
                    self.on_lost(f"{self.key}: {exc!r}")
                    return
                if not isinstance(exc, PollError):
                    log.exception("poll %s/%s crashed", self.inst.name, self.key)
                log.error(
                    "poll %s/%s failed: %s (next try in %.0fs)",
                    self.inst.name,
                    self.key,
                    exc,
                    interval,
                )
            await asyncio.sleep(interval)

    async def poll_once(self) -> int:
        """One cycle of the task's source; returns how many events it committed."""
        ctx = PollContext(
            instance=self.inst.name,
            resource=self.res.name,
            scope=self.scope,
            settings=self.settings,
            fetch=self._fetch,
            options=self.inst.options,
            now=lambda: datetime.now(UTC),
            tracking=await self.tracking.refresh() if self.tracking is not None else None,
            published_since=self.recent.ids_since if self.recent is not None else None,
        )
        published = 0
        async for step in self.res.source.run(ctx, self.state):
            await self._commit(step)
            published += len(step.events)
        if published:
            log.info("poll %s/%s: %d changes published", self.inst.name, self.key, published)
        return published

    async def _commit(self, step: Step[Any]) -> None:
        topics = self.inst.topics
        raw = encode_state(step.state)
        async with self.tx_lock, self.producer.transaction():
            sends = []
            for draft in step.events:
                key, value, headers = self.inst.encode(self.inst.event(draft))
                sends.append(
                    await self.producer.send(topics.events, value=value, key=key, headers=headers)
                )
            for dead in step.dead:
                key, value, headers = dead_letter_record(
                    dead, instance=self.inst.name, resource=self.res.name, scope=self.scope
                )
                sends.append(
                    await self.producer.send(topics.dlq, value=value, key=key, headers=headers)
                )
            sends.append(
                await self.producer.send(
                    topics.cursors, key=self.key.encode(), value=raw, partition=self.partition
                )
            )
            # aiokafka would commit even if a record failed for good: acknowledge all first.
            await asyncio.gather(*sends)
        self.state = step.state
        self.on_commit(self.key, raw)
        self.metrics.events.labels(self.inst.name, "poll").inc(len(step.events))
        for dead in step.dead:
            self.metrics.dlq.labels(self.inst.name, "poll_record").inc()
            log.warning(
                "poll %s/%s: record %s sent to the DLQ: %s",
                self.inst.name,
                self.key,
                dead.record_id or "(no id)",
                dead.reason,
            )

    async def _fetch(self, request: PageRequest) -> VendorResponse:
        if self.gate is None:
            return await fetch(
                self.inst, request, self.policy, self.metrics, headers=self._scope_headers
            )
        # Ordered by the last completed visit: a cycle's later pages keep its place.
        async with self.gate.slot(self.visited):
            return await fetch(
                self.inst, request, self.policy, self.metrics, headers=self._scope_headers
            )


async def fetch(
    inst: Instance,
    request: PageRequest,
    policy: RetryPolicy,
    metrics: Metrics,
    *,
    headers: dict[str, str] | None = None,
) -> VendorResponse:
    """GET a poll request with retries; a 404 is returned (a watch tells deletions by it),
    any other failure raises `PollError`."""
    try:
        outcome = await call_with_retry(
            inst.client,
            "GET",
            request.url,
            errors=inst.spec.errors,
            policy=policy,
            params=request.params,
            headers=headers or None,
        )
    except ForeignURL as exc:
        raise PollError(f"{request.url}: {exc}") from None
    response = outcome.response
    metrics.vendor_calls.labels(inst.name, str(response.status if response else "none")).inc()
    if response is not None and response.status == 404:
        return response
    if outcome.action is not Action.SUCCESS or response is None:
        status = response.status if response else "no answer"
        raise PollError(f"GET {request.url}: {status}: {outcome.error}")
    return response


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
        self.spec = spec
        self.resources = [spec.resources[name] for name in inst.cfg.polling.resources]
        self.gate = poll_gate(inst)
        polling = inst.cfg.polling
        self.max_staleness_s = polling.max_staleness_s or 10 * polling.interval_s
        self._stale: set[str] = set()
        self._staleness_task: asyncio.Task[None] | None = None
        self.consumer: AIOKafkaConsumer | None = None
        # Per owned partition: its producer and the asyncio tasks of its poll tasks.
        self.owned: dict[int, tuple[AIOKafkaProducer, list[asyncio.Task[None]]]] = {}
        self.tasks: dict[str, PollTask] = {}
        # Per owned partition: the states read back (and committed since), and the lock that
        # keeps its tasks to one transaction at a time on their shared producer.
        self._states: dict[int, dict[str, bytes]] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._runs: dict[str, asyncio.Task[None]] = {}
        # Scopes of fanned-out resources, once discovered (None: not yet).
        self.scopes: list[str] | None = None
        # Partitions whose producer was fenced (reported once; their tasks have ended).
        self.lost: set[int] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._scope_task: asyncio.Task[None] | None = None

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
        self._staleness_task = asyncio.create_task(self._watch_staleness())
        self._loop_task.add_done_callback(self._loop_ended)
        if self.spec.scopes is not None and any(r.scoped for r in self.resources):
            self._scope_task = asyncio.create_task(self._discover_scopes())
            self._scope_task.add_done_callback(self._loop_ended)

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.on_fatal(f"poller loop of {self.inst.name} died: {task.exception()!r}")

    async def _membership(self) -> None:
        # Group membership needs regular polls; the records are our own cursors, already known.
        assert self.consumer is not None
        while True:
            await self.consumer.getmany(timeout_ms=1000)

    async def _discover_scopes(self) -> None:
        # Every replica discovers on its own; ownership stays a function of the task key.
        scopes = self.spec.scopes
        assert scopes is not None
        interval = self.inst.cfg.polling.interval_s
        policy = RetryPolicy(deadline_s=max(30.0, interval), max_attempts=6, base_s=1.0, cap_s=30.0)
        while True:
            try:
                found = sorted(
                    set(
                        await scopes.discover(
                            lambda r: fetch(self.inst, r, policy, self.metrics), self.inst.options
                        )
                    )
                )
            except Exception as exc:  # the vendor being down must not end the process
                log.error("poll %s: scope discovery failed: %s", self.inst.name, exc)
                await asyncio.sleep(interval)
                continue
            if found != self.scopes:
                log.info("poll %s: scopes %s", self.inst.name, found)
                self.scopes = found
                self._sync_tasks()
            await asyncio.sleep(scopes.refresh_s(self.inst.options))

    def _wanted(self, partition: int) -> dict[str, tuple[PollResource, str | None]]:
        """The tasks (key -> resource, scope) that `partition` owns, as far as known."""
        count = self._partition_count()
        placed = placed_partitions((r.name for r in self.resources if not r.scoped), count)
        wanted: dict[str, tuple[PollResource, str | None]] = {}
        for res in self.resources:
            for scope in (self.scopes or []) if res.scoped else [None]:
                key = task_key(res.name, scope)
                owner = placed[key] if scope is None else owner_partition(key, count)
                if owner == partition:
                    wanted[key] = (res, scope)
        return wanted

    def _sync_tasks(self) -> None:
        """Start the owned tasks not running yet; stop those whose scope is gone."""
        for partition, (_producer, runs) in self.owned.items():
            if partition in self.lost:
                continue
            wanted = self._wanted(partition)
            mine = [k for k, t in self.tasks.items() if t.partition == partition]
            for key in [k for k in mine if k not in wanted]:
                run = self._runs.pop(key)
                run.cancel()
                runs.remove(run)
                del self.tasks[key]
            for key, (res, scope) in wanted.items():
                if key not in self.tasks:
                    self._start_task(partition, res, scope)

    def _start_task(self, partition: int, res: PollResource, scope: str | None) -> None:
        producer, runs = self.owned[partition]
        states = self._states[partition]
        key = task_key(res.name, scope)
        raw = states.get(key)
        try:
            state = res.source.decode(raw) if raw is not None else res.source.initial()
        except StateError as exc:
            # Read on as if new, this task would publish everything again.
            self.on_fatal(f"poll state of {self.inst.name}/{key}: {exc}")
            return
        headers = dict(self.spec.scopes.headers(scope)) if scope and self.spec.scopes else {}
        task = PollTask(
            self.inst,
            res,
            producer,
            state,
            partition,
            self.metrics,
            self._locks[partition],
            scope=scope,
            scope_headers=headers,
            on_lost=functools.partial(self._partition_lost, partition),
            on_commit=states.__setitem__,
            gate=self.gate,
            tracking=self._tracking_view(res, key),
            recent=self._recent_events(res, key),
        )
        self.tasks[key] = task
        run = asyncio.create_task(task.run(), name=f"poll-{self.inst.name}-{key}")
        self._runs[key] = run
        runs.append(run)

    def _tracking_view(self, res: PollResource, key: str) -> TrackingView | None:
        if not needs_of(res.source).tracking:
            return None
        client_id = f"{self.kafka.client_id}-{self.inst.name}-tracked-{key}"
        return TrackingView(self.kafka, self.inst.topics.tracked, client_id=client_id)

    def _recent_events(self, res: PollResource, key: str) -> RecentEvents | None:
        if not (needs_of(res.source).published and self.inst.cfg.polling.skip_published):
            return None
        client_id = f"{self.kafka.client_id}-{self.inst.name}-recent-{key}"
        return RecentEvents(self.kafka, self.inst.topics.events, client_id=client_id)

    async def acquire(self, partitions: list[int]) -> None:
        """Fence earlier owners, restore the states, start the owned tasks."""
        for p in partitions:
            if p in self.owned:
                continue
            producer = transactional_producer(
                self.kafka, transactional_id=f"{self.inst.topics.group('poller')}.{p}"
            )
            await producer.start()  # init_transactions: aborts what a previous owner left open
            try:
                states = await self._restore(p)
            except BaseException:
                await producer.stop()  # cancelled by a shutdown mid-rebalance: leave nothing open
                raise
            # An unscoped task placed here whose state this partition does not hold.
            wanted = self._wanted(p).items()
            missing = [k for k, (_r, scope) in wanted if scope is None and k not in states]
            if missing:
                try:
                    states.update(await self._moved_states(p, missing))
                except BaseException:
                    await producer.stop()
                    raise
            self.owned[p] = (producer, [])
            self._states[p] = states
            self._locks[p] = asyncio.Lock()
            for res, scope in self._wanted(p).values():
                self._start_task(p, res, scope)
            mine = sorted(k for k, t in self.tasks.items() if t.partition == p)
            log.info("poller %s owns partition %d: %s", self.inst.name, p, mine)

    def _partition_lost(self, partition: int, message: str) -> None:
        # Like a fenced command partition: nothing more is written for it from here, and
        # the process leaves so that the group gives the partition to a healthy member.
        owned = self.owned.get(partition)
        if owned is None or partition in self.lost:
            return
        self.lost.add(partition)
        current = asyncio.current_task()
        for task in owned[1]:
            if task is not current:
                task.cancel()
        self.on_fatal(f"cannot write for poll partition {partition}: {message}")

    async def release(self, partitions: list[int]) -> None:
        """Stop the tasks of partitions handed to another replica (an open transaction aborts)."""
        for p in partitions:
            owned = self.owned.pop(p, None)
            if owned is None:
                continue
            producer, runs = owned
            self.lost.discard(p)
            self._states.pop(p, None)
            self._locks.pop(p, None)
            for task in runs:
                task.cancel()
            await asyncio.gather(*runs, return_exceptions=True)
            await producer.stop()
        for name in [n for n, t in self.tasks.items() if t.partition in partitions]:
            del self.tasks[name]
            self._runs.pop(name, None)
            with contextlib.suppress(KeyError):
                self.metrics.poll_staleness.remove(self.inst.name, name)

    async def _watch_staleness(self, every_s: float = 5.0) -> None:
        # Staleness as a gauge per owned task, and a warning when one is visited too rarely
        # (a budget too small for this many tasks at this interval).
        while True:
            now = time.monotonic()
            for key, task in list(self.tasks.items()):
                stale = now - task.visited
                self.metrics.poll_staleness.labels(self.inst.name, key).set(stale)
                if stale > self.max_staleness_s and key not in self._stale:
                    self._stale.add(key)
                    log.warning(
                        "poll %s/%s: not visited for %.0fs (polling.max_staleness_s %.0f): the "
                        "polls' part of the rate budget cannot serve %d task(s) this often; "
                        "raise polling.interval_s or polling.max_budget_share, or poll fewer "
                        "resources",
                        self.inst.name,
                        key,
                        stale,
                        self.max_staleness_s,
                        len(self.tasks),
                    )
                elif stale <= self.max_staleness_s:
                    self._stale.discard(key)
            await asyncio.sleep(every_s)

    def _partition_count(self) -> int:
        assert self.consumer is not None
        parts = self.consumer.partitions_for_topic(self.inst.topics.cursors)
        if not parts:
            # Guessing would let two replicas own one task under different ids.
            raise RuntimeError(f"no partition metadata for {self.inst.topics.cursors}")
        return len(parts)

    async def _moved_states(self, partition: int, keys: list[str]) -> dict[str, bytes]:
        """The newest state of each of `keys` kept in another partition: the task was placed
        there before (an earlier release's hash, or other configured resources). Without
        it the task would start as new and publish everything again."""
        found: dict[str, tuple[int, int, bytes]] = {}
        for other in range(self._partition_count()):
            if other == partition:
                continue
            kept = await restore_stamped(
                self.kafka, self.inst.topics.cursors, other, lambda raw: raw
            )
            for key in keys:
                if key in kept and (key not in found or kept[key][0] > found[key][0]):
                    found[key] = (kept[key][0], other, kept[key][1])
        for key, (_stamp, other, _raw) in found.items():
            log.info(
                "poll %s/%s: its state is taken from cursor partition %d (placed on %d now)",
                self.inst.name,
                key,
                other,
                partition,
            )
        return {key: raw for key, (_stamp, _other, raw) in found.items()}

    async def _restore(self, partition: int) -> dict[str, bytes]:
        # Raw: each task's source decodes (and upgrades) its own state.
        return await restore_partition(
            self.kafka, self.inst.topics.cursors, partition, lambda raw: raw
        )

    async def stop(self) -> None:
        """Stop polling, leave the group (another replica takes over)."""
        for loop in (self._scope_task, self._loop_task, self._staleness_task):
            if loop is not None:
                loop.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await loop
        await self.release(list(self.owned))
        if self.consumer is not None:
            await self.consumer.stop()
        # A rebalance callback may have acquired a partition meanwhile.
        await self.release(list(self.owned))
