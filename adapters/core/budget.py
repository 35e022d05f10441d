"""One vendor account's rate budget, shared by every process that calls it, through Kafka.

The budget is cut into units: the partitions of the instance's budget topic
(`<prefix>.<name>.state.budget`). Every process that calls the vendor for the instance
(pollers and command workers) joins the instance's budget group, and Kafka's group
protocol hands each one a set of partitions; a process may use
`requests * usable partitions / partitions` of the window. Kafka decides the shares, so
nothing is configured per replica, and they follow the deployment as it scales, restarts
and rebalances.

A share is never used twice in one window, which keeps the whole deployment within the
vendor's limit:
- Eager rebalancing revokes every partition before it assigns any, and a process stops
  using a partition the moment it is revoked (its capacity drops at once), waits for its
  requests in flight to come back (`quiesce`), and writes "released at T" to the partition.
- A partition a process gains is usable only once nobody else can still have requests of
  it inside the vendor's window: at `T + window` after a recorded release by another
  process; a window after the gain when its last record says another process held it
  (one that crashed or was evicted); at once when it was never held, or when its last
  holder was this process (whose own sliding window still counts those requests).
- Before using a gained partition a process records "held" on it, so that a crash right
  after is seen by the next owner.
A restarted process is a new member: it waits out the window of what it held before its
crash (no 429 across a restart), and a crash loop cannot reset the count.

What this does not cover: a process cut off from Kafka but not from the vendor keeps its
share until its consumer notices (at most about the session timeout, `aiokafka`'s
heartbeat), while the group may already have given it to another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Literal

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from adapters.core.kafka import client_kwargs
from adapters.settings import KafkaConfig

log = logging.getLogger(__name__)

# Most partitions a budget topic gets: enough for as many processes, few enough to be cheap.
MAX_BUDGET_PARTITIONS = 60
# Wall clocks of two processes may disagree by this much (NTP keeps them far closer).
CLOCK_SKEW_S = 1.0
# How long a revoked partition may wait for its requests in flight to come back.
QUIESCE_S = 30.0


# Fewest partitions a large budget is cut into: as many processes can each have a share.
MIN_BUDGET_PARTITIONS = 12


def budget_partitions(requests: int, limit: int = MAX_BUDGET_PARTITIONS) -> int:
    """The budget topic's partitions for a budget of `requests`.

    Up to `limit` requests, one partition per request: any split between processes adds up
    to the whole budget. Above, the largest divisor of `requests` up to `limit` (whole
    requests per partition, still exact) unless that leaves fewer than
    `MIN_BUDGET_PARTITIONS` (a prime such as 61): then `limit` partitions, and a process's
    share is rounded down (it loses less than one request per window).
    """
    if requests <= limit:
        return requests
    divisor = max(d for d in range(1, limit + 1) if requests % d == 0)
    return divisor if divisor >= MIN_BUDGET_PARTITIONS else limit


class Holding(msgspec.Struct, frozen=True):
    """The last word on one budget partition: who holds it, or who released it and when."""

    state: Literal["held", "released"]
    member: str
    at: float


class BudgetShare:
    """This process's part of one instance's vendor budget (see the module docstring).

    `capacity()` is what the instance's limiter may have in a window now; `quiesce` waits
    until the limiter has no request in flight (called when partitions are revoked).
    """

    def __init__(
        self,
        kafka: KafkaConfig,
        *,
        topic: str,
        group_id: str,
        partitions: int,
        requests: int,
        window_s: float,
        quiesce: Callable[[float], Awaitable[bool]],
        name: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kafka = kafka
        self.topic = topic
        self.group_id = group_id
        self.partitions = partitions
        self.requests = requests
        self.window_s = window_s
        self.quiesce = quiesce
        self.name = name
        self.clock = clock
        # This process, as the records name it: a restarted process is another member.
        self.member = uuid.uuid4().hex
        # Partition -> from when (wall clock) this process may use it; inf: not yet known.
        self.usable_at: dict[int, float] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self._loop: asyncio.Task[None] | None = None
        self._generation: dict[int, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the share --------------------------------------------------------------------------

    def capacity(self) -> int:
        """Requests this process may have in a window now."""
        now = self.clock()
        usable = sum(1 for at in self.usable_at.values() if at <= now)
        return self.requests * usable // self.partitions

    def topic_partitions(self, partitions: set[int] | None) -> None:
        """The budget topic as it is: one made for another budget keeps its count."""
        if partitions and len(partitions) != self.partitions:
            log.warning(
                "budget %s: %s has %d partitions, not %d: shares are rounded down (recreate "
                "the topic to use the whole budget)",
                self.name,
                self.topic,
                len(partitions),
                self.partitions,
            )
            self.partitions = len(partitions)

    @property
    def held(self) -> int:
        """Partitions assigned to this process (usable or not yet)."""
        return len(self.usable_at)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Join the budget group; the share grows as partitions are assigned and settled."""
        self.producer = AIOKafkaProducer(
            **client_kwargs(self.kafka),
            client_id=f"{self.kafka.client_id}-budget-{self.name}",
            acks="all",
            enable_idempotence=True,
        )
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(
            **client_kwargs(self.kafka),
            group_id=self.group_id,
            client_id=f"{self.kafka.client_id}-budget-{self.name}",
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )
        self.consumer.subscribe([self.topic], listener=_Rebalance(self))
        await self.consumer.start()
        self._loop = asyncio.create_task(self._keep_membership(), name=f"budget-{self.name}")

    async def stop(self) -> None:
        """Release every partition (after the requests in flight) and leave the group."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop
        await self.revoke(sorted(self.usable_at))
        for task in list(self._tasks):
            task.cancel()
        if self.consumer is not None:
            with contextlib.suppress(KafkaError):
                await self.consumer.stop()
        if self.producer is not None:
            with contextlib.suppress(KafkaError):
                await self.producer.stop()

    async def _keep_membership(self) -> None:
        # The partitions carry no work: fetching keeps the member inside max.poll.interval.
        assert self.consumer is not None
        while True:
            try:
                await self.consumer.getmany(timeout_ms=1000)
            except KafkaError as exc:
                log.warning("budget %s: %s", self.name, exc)
                await asyncio.sleep(1.0)

    # -- rebalancing ----------------------------------------------------------------------------

    async def revoke(self, partitions: list[int]) -> None:
        """Stop using `partitions` now; record their release once nothing is in flight."""
        owned = [p for p in partitions if p in self.usable_at]
        for p in owned:
            del self.usable_at[p]
        if not owned:
            return
        if not await self.quiesce(QUIESCE_S):
            # Not recorded as released: the next owner waits a window from when it gets it.
            log.warning("budget %s: requests still in flight after %.0fs", self.name, QUIESCE_S)
            return
        await self._record(owned, "released")

    def assign(self, partitions: list[int]) -> None:
        """Take `partitions`: each becomes usable once it is settled (see the module doc)."""
        gained = [p for p in partitions if p not in self.usable_at]
        self._start_settling(gained)

    def _start_settling(self, partitions: list[int]) -> None:
        for p in partitions:
            self.usable_at[p] = math.inf
            # A settling started before a revoke must not decide for this holding.
            self._generation[p] = self._generation.get(p, 0) + 1
        if partitions:
            generation = {p: self._generation[p] for p in partitions}
            task = asyncio.create_task(self._settle(generation, self.clock()))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _current(self, generation: dict[int, int]) -> list[int]:
        return [
            p for p, g in generation.items() if p in self.usable_at and self._generation[p] == g
        ]

    async def _settle(self, generation: dict[int, int], gained_at: float) -> None:
        partitions = list(generation)
        try:
            last = await self._last_words(partitions)
            await self._record(partitions, "held")
        except (KafkaError, OSError, TimeoutError) as exc:
            # Unrecorded, a use would be hidden from the next owner if this process crashed:
            # the partitions stay unused, and are settled again after a window.
            log.warning("budget %s: %s; settling again in %.0fs", self.name, exc, self.window_s)
            await asyncio.sleep(self.window_s)
            self._start_settling(self._current(generation))
            return
        conservative = gained_at + self.window_s + CLOCK_SKEW_S
        for p in self._current(generation):
            word = last.get(p)
            if word is None or word.member == self.member:
                at = self.clock()
            elif word.state == "released":
                at = min(conservative, word.at + self.window_s + CLOCK_SKEW_S)
            else:
                at = conservative
            self.usable_at[p] = at
        log.info(
            "budget %s: %d of %d partitions held, %d requests per %.0fs usable now",
            self.name,
            self.held,
            self.partitions,
            self.capacity(),
            self.window_s,
        )

    async def _last_words(self, partitions: list[int]) -> dict[int, Holding]:
        """Each partition's last record (none: never held), read outside the group."""
        tps = [TopicPartition(self.topic, p) for p in partitions]
        reader = AIOKafkaConsumer(
            **client_kwargs(self.kafka),
            client_id=f"{self.kafka.client_id}-budget-{self.name}-reader",
            enable_auto_commit=False,
        )
        await reader.start()
        try:
            reader.assign(tps)
            ends = await asyncio.wait_for(reader.end_offsets(tps), 10.0)
            wanted = {tp: end - 1 for tp, end in ends.items() if end > 0}
            for tp, offset in wanted.items():
                reader.seek(tp, offset)
            for tp in tps:
                if tp not in wanted:
                    reader.pause(tp)
            words: dict[int, Holding] = {}
            deadline = time.monotonic() + 10.0
            while len(words) < len(wanted):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.topic}: the last records could not be read")
                batch = await reader.getmany(timeout_ms=1000)
                for tp, records in batch.items():
                    for record in records:
                        if record.offset >= wanted[tp]:
                            words[tp.partition] = _decode(record.value)
                    if tp.partition in words:
                        reader.pause(tp)
            return words
        finally:
            await reader.stop()

    async def _record(self, partitions: list[int], state: Literal["held", "released"]) -> None:
        assert self.producer is not None
        value = msgspec.json.encode(Holding(state=state, member=self.member, at=self.clock()))
        sent = [
            await self.producer.send(self.topic, value, key=str(p).encode(), partition=p)
            for p in partitions
        ]
        await asyncio.gather(*sent)


def _decode(value: bytes | None) -> Holding:
    try:
        return msgspec.json.decode(value or b"", type=Holding)
    except msgspec.DecodeError:
        # Unreadable: assume the worst, someone held it until now.
        return Holding(state="held", member="?", at=time.time())


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, share: BudgetShare) -> None:
        self.share = share

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.share.revoke([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        consumer = self.share.consumer
        if consumer is not None:
            self.share.topic_partitions(consumer.partitions_for_topic(self.share.topic))
        if not assigned:
            log.warning(
                "budget %s: this process holds no share of the vendor budget (more processes "
                "call the vendor than %s has partitions); its vendor calls wait until a "
                "rebalance gives it one: run fewer replicas",
                self.share.name,
                self.share.topic,
            )
        self.share.assign([tp.partition for tp in assigned])
        if consumer is not None and assigned:
            consumer.pause(*assigned)  # nothing to read: the records are for the next owner
