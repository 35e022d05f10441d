"""Helpers of the three-process scenario, shared by its integration test and its benchmark
(`benchmarks/bench_three_processes.py`): a paced command sender that knows where each
command went, a tail of a topic read to its end offsets, and the figures taken from them
(takeover per command partition, largest gap between requests, requests per window)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from adapters.core.budget import CLOCK_SKEW_S
from adapters.core.cloudevents_codec import make_event, to_kafka
from adapters.core.kafka import Topics
from adapters.moco.ids import change_event_id, parse_time

# aiokafka's defaults, which every consumer group of the bridge uses.
SESSION_TIMEOUT_S, HEARTBEAT_S = 10.0, 3.0


def command_takeover_s(window_s: float) -> float:
    """How soon a SIGKILLed (or drained) process's command partitions serve again.

    The group notices a SIGKILLed member at most a session timeout after its last
    heartbeat, and the survivors hear of the rebalance at their next heartbeat. Budget
    shares the dead process held become usable to their new owner one window +
    CLOCK_SKEW_S after the gain (adapters/core/budget.py: the last word on them is "held"
    by another member; after a drain it is "released", which is no later), while the
    survivors' own shares stay usable at once. One more second covers the next command's
    call and its transaction (as long as commands keep coming to every partition).
    """
    return SESSION_TIMEOUT_S + window_s + HEARTBEAT_S + CLOCK_SKEW_S + 1.0


def poll_takeover_s(
    limit: int, window_s: float, resources: int, share: float, processes: int
) -> float:
    """How soon a moved poll task lists again: as a command partition, and then its turn.

    A taken-over task starts as if just visited (adapters/core/poller.py), so it waits
    behind the new owner's own tasks: at most one listing of each other resource, at the
    polls' share (`polling.max_budget_share`) of a survivor's budget, which is at least
    its own 1/`processes` of `limit` until the dead process's shares settle.
    """
    per_window = max(1, int(share * (limit // processes)))
    return command_takeover_s(window_s) + (resources - 1) * window_s / per_window


# The polled MOCO resources and the singular the events name them by.
SINGULAR = {
    "projects": "project",
    "companies": "company",
    "activities": "activity",
    "users": "user",
    "deals": "deal",
    "offers": "offer",
    "invoices": "invoice",
}


def version_id(resource: str, record: dict[str, Any]) -> str:
    """The event id of one version of a MOCO record (adapters/moco/ids.py)."""
    return change_event_id(
        "moco", SINGULAR[resource], record["id"], parse_time(record["updated_at"])
    )


@dataclass(frozen=True)
class Sent:
    """One published command: its id, its partition (from the produce metadata), when."""

    index: int
    command_id: str
    partition: int
    at: float  # monotonic, when the broker acknowledged it
    wall: float  # time.time() at the same moment


@dataclass
class CommandSender:
    """Publishes `company.create` commands one by one every `pace_s`, each acknowledged
    (acks=all) before the next, until `stop()` or `limit` commands: load that keeps going
    for as long as the scenario needs it."""

    bootstrap: str
    prefix: str
    pace_s: float
    source: str
    name_prefix: str = "Co"
    limit: int = 10_000
    sent: list[Sent] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sending (in a task)."""
        self._task = asyncio.create_task(self._run(), name="three-proc-sender")

    def name(self, index: int) -> str:
        """The company name of command `index` (what the fake's records show)."""
        return f"{self.name_prefix} {index}"

    async def _run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        topic = Topics(self.prefix, "moco").commands
        try:
            for i in range(self.limit):
                if self._stop.is_set():
                    break
                command_id = str(uuid.uuid4())
                subject = f"company/{self.name_prefix.lower()}-{i}"
                event = make_event(
                    id=command_id,
                    source=self.source,
                    type="workbridge.moco.company.create",
                    subject=subject,
                    partitionkey=subject,
                    data=msgspec.json.encode(
                        {"name": self.name(i), "type": "customer", "currency": "CHF"}
                    ),
                    extensions={"idempotencykey": f"{self.name_prefix}-{i}"},
                )
                key, value, headers = to_kafka(event)
                meta = await producer.send_and_wait(topic, value=value, key=key, headers=headers)
                self.sent.append(Sent(i, command_id, meta.partition, time.monotonic(), time.time()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.pace_s)
        finally:
            await producer.stop()

    def sending(self, within_s: float = 2.0) -> bool:
        """Whether it still runs and acknowledged a command in the last `within_s`."""
        return (
            self._task is not None
            and not self._task.done()
            and bool(self.sent)
            and time.monotonic() - self.sent[-1].at < within_s
        )

    async def stop(self) -> list[Sent]:
        """Stop sending; every command sent."""
        self._stop.set()
        if self._task is not None:
            await self._task
        return self.sent

    def partition_of(self) -> dict[str, int]:
        """Command id -> the partition it went to."""
        return {s.command_id: s.partition for s in self.sent}


class TopicTail:
    """A read_committed reader of every partition of a topic, from its beginning, that
    reads up to the end offsets each time it is asked (nothing is read twice)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.records: list[ConsumerRecord[bytes, bytes]] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._tps: list[TopicPartition] = []
        self._reading = asyncio.Lock()  # one reader at a time (a progress task and a wait)

    async def start(self) -> None:
        """Connect and assign every partition from the beginning."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
        )
        await consumer.start()
        self._consumer = consumer
        deadline = time.monotonic() + 10
        parts = consumer.partitions_for_topic(self.topic)
        while not parts and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(self.topic)
        assert parts, f"{self.topic}: no partitions"
        self._tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        consumer.assign(self._tps)
        await consumer.seek_to_beginning(*self._tps)

    async def stop(self) -> None:
        """Disconnect."""
        if self._consumer is not None:
            await self._consumer.stop()

    async def read_to_end(self, wait_s: float = 10.0) -> list[ConsumerRecord[bytes, bytes]]:
        """Read until every partition's position reaches the end offset it had on the call
        (its last stable offset: read_committed); every record read so far."""
        consumer = self._consumer
        assert consumer is not None
        async with self._reading:
            ends = await consumer.end_offsets(self._tps)
            deadline = time.monotonic() + wait_s
            while not await self._reached(ends):
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self.topic}: end offsets {ends} not reached")
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    self.records.extend(batch)
        return self.records

    async def _reached(self, ends: dict[TopicPartition, int]) -> bool:
        assert self._consumer is not None
        for tp, end in ends.items():
            if await self._consumer.position(tp) < end:
                return False
        return True

    async def until(
        self,
        done: Any,
        *,
        wait_s: float,
        settle_s: float = 2.0,
        every_s: float = 0.5,
    ) -> list[ConsumerRecord[bytes, bytes]]:
        """Read to the end until `done(records)` holds (or `wait_s` passed); then `settle_s`
        more and read to the end again, so that a late duplicate is seen too."""
        deadline = time.monotonic() + wait_s
        while True:
            if done(await self.read_to_end()) or time.monotonic() > deadline:
                break
            await asyncio.sleep(every_s)
        await asyncio.sleep(settle_s)
        return await self.read_to_end()


def record_wall(record: ConsumerRecord[bytes, bytes]) -> float:
    """A record's timestamp (its producer's wall clock at send), in seconds."""
    return float(record.timestamp) / 1000.0


def first_after(
    results: Iterable[tuple[str, float]], partition_of: dict[str, int], after_wall: float
) -> dict[int, float]:
    """Per command partition, the seconds from `after_wall` to its first result written
    after it; `results` are (command id, wall time of the result record)."""
    first: dict[int, float] = {}
    for command_id, wall in results:
        partition = partition_of.get(command_id)
        if partition is None or wall < after_wall:
            continue
        first[partition] = min(first.get(partition, float("inf")), wall - after_wall)
    return first


def largest_gap(times: Iterable[float], after: float, until: float | None = None) -> float:
    """The longest stretch from `after` (to `until`) without one of `times`."""
    later = sorted(t for t in times if t >= after and (until is None or t <= until))
    if not later:
        return float("inf")
    points = [after, *later]
    return max(b - a for a, b in itertools.pairwise(points))
