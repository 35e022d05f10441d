"""The vendor budget shared through Kafka: shares add up, follow the group, and never let
a new owner use a share inside the window of the one before it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from adapters.config import KafkaConfig
from adapters.core.budget import BudgetShare, Holding, budget_partitions
from adapters.core.kafka import Topics, client_kwargs, ensure_topics
from adapters.core.ratelimit import SlidingWindowLimiter

pytestmark = pytest.mark.integration

REQUESTS = 15  # MOCO's documented budget: 15 partitions of one request each
WINDOW_S = 4.0  # a short window, so that the test waits it out quickly


def _kafka(bootstrap: str, prefix: str) -> KafkaConfig:
    return msgspec.convert(
        {
            "bootstrap_servers": bootstrap,
            "topic_prefix": prefix,
            "topics": {"partitions": 2, "replication_factor": 1},
        },
        KafkaConfig,
    )


async def _idle(_timeout: float) -> bool:
    return True


Make = Callable[..., Awaitable[BudgetShare]]


@pytest.fixture
async def topics(kafka_bootstrap: str, prefix: str) -> Topics:
    topics = Topics(prefix, "moco")
    await ensure_topics(
        _kafka(kafka_bootstrap, prefix),
        [],
        budgets={topics.budget: budget_partitions(REQUESTS)},
    )
    return topics


@pytest.fixture
async def make(kafka_bootstrap: str, prefix: str, topics: Topics) -> AsyncIterator[Make]:
    started: list[BudgetShare] = []

    async def start(
        quiesce: Callable[[float], Awaitable[bool]] = _idle,
    ) -> BudgetShare:
        share = BudgetShare(
            _kafka(kafka_bootstrap, prefix),
            topic=topics.budget,
            group_id=topics.group("budget"),
            partitions=budget_partitions(REQUESTS),
            requests=REQUESTS,
            window_s=WINDOW_S,
            quiesce=quiesce,
            name=f"member{len(started)}",
        )
        await share.start()
        started.append(share)
        return share

    yield start
    for share in started:
        await share.stop()


async def until(check: Callable[[], bool], timeout_s: float = 30.0) -> float:
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout_s:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
    return time.monotonic() - began


async def test_a_first_member_of_a_fresh_budget_has_all_of_it_at_once(make: Make) -> None:
    one = await make()
    waited = await until(lambda: one.capacity() == REQUESTS)
    assert waited < WINDOW_S  # nobody can have used a budget never held


async def test_members_split_the_whole_budget_and_a_moved_share_waits_a_window(
    make: Make,
) -> None:
    one = await make()
    await until(lambda: one.capacity() == REQUESTS)
    two = await make()
    await until(lambda: one.held + two.held == REQUESTS and one.held > 0 and two.held > 0)
    # At no moment do the two have more than the whole budget between them.
    samples: list[int] = []
    moved_at = time.monotonic()
    while time.monotonic() - moved_at < WINDOW_S + 3:
        samples.append(one.capacity() + two.capacity())
        await asyncio.sleep(0.02)
    assert max(samples) <= REQUESTS
    assert one.capacity() + two.capacity() == REQUESTS
    # What moved to the second member was released by the first: not usable within the
    # window after that release (the first member kept what stayed with it).
    assert samples[0] < REQUESTS


async def test_a_graceful_leave_hands_the_share_over_after_a_window(make: Make) -> None:
    one = await make()
    two = await make()
    await until(lambda: one.capacity() + two.capacity() == REQUESTS)
    left_at = time.monotonic()
    await one.stop()
    waited = await until(lambda: two.capacity() == REQUESTS)
    total = time.monotonic() - left_at
    assert total >= WINDOW_S - 0.5  # the released share counts from its release
    assert waited < WINDOW_S + 15  # ... and arrives within a rebalance and a window


async def test_a_share_held_by_a_crashed_process_waits_a_window_from_the_takeover(
    make: Make, kafka_bootstrap: str, topics: Topics
) -> None:
    # A process that crashed leaves "held" as the last word on its partitions.
    producer = AIOKafkaProducer(**client_kwargs(KafkaConfig(bootstrap_servers=kafka_bootstrap)))
    await producer.start()
    crashed = Holding(state="held", member="crashed-process", at=time.time())
    for p in range(budget_partitions(REQUESTS)):
        await producer.send_and_wait(
            topics.budget, msgspec.json.encode(crashed), key=str(p).encode(), partition=p
        )
    await producer.stop()
    began = time.monotonic()
    restarted = await make()
    await until(lambda: restarted.held == REQUESTS)
    assert restarted.capacity() == 0
    await until(lambda: restarted.capacity() == REQUESTS, timeout_s=WINDOW_S + 10)
    assert time.monotonic() - began >= WINDOW_S


async def test_a_revoked_share_is_released_only_after_its_requests_came_back(
    make: Make,
) -> None:
    limiter = SlidingWindowLimiter(REQUESTS, WINDOW_S)
    one = await make(quiesce=limiter.quiesce)
    limiter.share(one.capacity)
    await until(lambda: one.capacity() == REQUESTS)
    answer = asyncio.Event()

    async def slow_call() -> None:
        async with limiter.slot():
            await answer.wait()

    call = asyncio.create_task(slow_call())
    await until(lambda: limiter.in_flight == 1)
    two = await make()
    await until(lambda: one.capacity() == 0 and one.held == 0, timeout_s=20)
    # The rebalance waits for the call: the second member has nothing usable yet.
    await asyncio.sleep(1.0)
    assert two.capacity() == 0
    answer.set()
    await call
    await until(lambda: one.held > 0 and two.held > 0)
    assert one.capacity() + two.capacity() <= REQUESTS
