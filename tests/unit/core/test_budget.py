"""The budget share's rules, without a broker: how many partitions, when a gained one is
usable, and that capacity is whole requests that add up to the budget."""

from __future__ import annotations

import asyncio
import math

import pytest

from adapters.config import KafkaConfig
from adapters.core.budget import CLOCK_SKEW_S, BudgetShare, Holding, budget_partitions

WINDOW = 15.0


@pytest.mark.parametrize(
    ("requests", "partitions"),
    [(15, 15), (300, 60), (100, 50), (7, 7), (1, 1), (120, 60), (90, 45), (60, 60), (13, 13)],
)
def test_every_partition_is_a_whole_number_of_requests(requests: int, partitions: int) -> None:
    assert budget_partitions(requests) == partitions
    assert requests % partitions == 0


@pytest.mark.parametrize("requests", [61, 67, 122])
def test_a_budget_with_few_divisors_is_cut_finely_and_rounded_down(requests: int) -> None:
    parts = budget_partitions(requests)
    assert parts == 60
    # Two processes: each loses less than one request per window.
    assert 2 * (requests * 30 // parts) >= requests - 2


@pytest.mark.parametrize("members", [1, 2, 3, 4, 5, 7])
def test_any_split_of_the_partitions_adds_up_to_the_budget(members: int) -> None:
    requests = 15
    parts = budget_partitions(requests)
    split = [parts // members + (1 if i < parts % members else 0) for i in range(members)]
    assert sum(requests * n // parts for n in split) == requests


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def share(clock: Clock, words: dict[int, Holding], requests: int = 15) -> BudgetShare:
    s = BudgetShare(
        KafkaConfig(bootstrap_servers="127.0.0.1:1"),
        topic="t.moco.state.budget",
        group_id="t.moco.budget",
        partitions=budget_partitions(requests),
        requests=requests,
        window_s=WINDOW,
        quiesce=_idle,
        name="moco",
        clock=clock,
    )
    recorded: list[tuple[list[int], str]] = []

    async def last_words(partitions: list[int]) -> dict[int, Holding]:
        return {p: words[p] for p in partitions if p in words}

    async def record(partitions: list[int], state: str) -> None:
        recorded.append((partitions, state))

    s._last_words = last_words  # type: ignore[method-assign]
    s._record = record  # type: ignore[method-assign,assignment]
    s.recorded = recorded  # type: ignore[attr-defined]
    return s


async def _idle(_timeout: float) -> bool:
    return True


async def settled(s: BudgetShare) -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_a_never_held_partition_is_usable_at_once_and_recorded_as_held() -> None:
    clock = Clock()
    s = share(clock, {})
    s.assign(list(range(15)))
    assert s.capacity() == 0  # nothing before the "held" record is written
    await settled(s)
    assert s.capacity() == 15
    assert s.recorded == [(list(range(15)), "held")]  # type: ignore[attr-defined]


async def test_a_partition_another_process_released_waits_out_the_window_from_the_release() -> None:
    clock = Clock()
    released = Holding(state="released", member="other", at=clock.now - 5.0)
    s = share(clock, {p: released for p in range(15)})
    s.assign(list(range(15)))
    await settled(s)
    assert s.capacity() == 0
    clock.now += WINDOW - 5.0 + CLOCK_SKEW_S - 0.01
    assert s.capacity() == 0
    clock.now += 0.02
    assert s.capacity() == 15


async def test_a_partition_another_process_still_held_waits_a_whole_window_from_the_gain() -> None:
    clock = Clock()
    crashed = Holding(state="held", member="crashed", at=clock.now - 3600)
    s = share(clock, {0: crashed, 1: crashed})
    s.assign([0, 1, 2])
    await settled(s)
    assert s.capacity() == 1  # only the never-held partition
    clock.now += WINDOW + CLOCK_SKEW_S
    assert s.capacity() == 3


async def test_what_this_process_held_before_a_rebalance_stays_usable() -> None:
    clock = Clock()
    s = share(clock, {})
    s.assign([0, 1, 2, 3])
    await settled(s)
    assert s.capacity() == 4
    await s.revoke([0, 1, 2, 3])
    assert s.capacity() == 0  # revoked: not used for a moment longer
    mine = Holding(state="released", member=s.member, at=clock.now)
    s._last_words = lambda parts: _const({p: mine for p in parts})  # type: ignore[method-assign]
    s.assign([0, 1, 2, 3])
    await settled(s)
    assert s.capacity() == 4


async def _const(value: dict[int, Holding]) -> dict[int, Holding]:
    return value


async def test_a_revoke_waits_for_requests_in_flight_before_recording_the_release() -> None:
    clock = Clock()
    s = share(clock, {})
    s.assign([0, 1])
    await settled(s)
    gate = asyncio.Event()

    async def in_flight(_timeout: float) -> bool:
        await gate.wait()
        return True

    s.quiesce = in_flight
    revoking = asyncio.create_task(s.revoke([0, 1]))
    await settled(s)
    assert s.capacity() == 0
    assert s.recorded[-1][1] == "held"  # type: ignore[attr-defined]
    gate.set()
    await revoking
    assert s.recorded[-1] == ([0, 1], "released")  # type: ignore[attr-defined]


async def test_requests_still_in_flight_leave_the_release_unrecorded() -> None:
    clock = Clock()
    s = share(clock, {})
    s.assign([0])
    await settled(s)

    async def stuck(_timeout: float) -> bool:
        return False

    s.quiesce = stuck
    await s.revoke([0])
    # The next owner sees "held" and waits a whole window from its gain.
    assert s.recorded[-1][1] == "held"  # type: ignore[attr-defined]


async def test_a_settling_from_before_a_revoke_does_not_decide_a_later_holding() -> None:
    clock = Clock()
    s = share(clock, {})
    gate = asyncio.Event()
    crashed = Holding(state="held", member="crashed", at=clock.now)

    async def slow_words(partitions: list[int]) -> dict[int, Holding]:
        await gate.wait()
        return {}

    s._last_words = slow_words  # type: ignore[method-assign]
    s.assign([0])
    await settled(s)
    await s.revoke([0])
    s._last_words = lambda parts: _const({p: crashed for p in parts})  # type: ignore[method-assign]
    s.assign([0])
    await settled(s)
    gate.set()
    await settled(s)
    assert s.usable_at[0] > clock.now  # the newer settling ("held by crashed") decided
    assert s.usable_at[0] != math.inf


def test_capacity_rounds_down_when_the_topic_has_another_count() -> None:
    clock = Clock()
    s = share(clock, {}, requests=15)
    s.topic_partitions(set(range(4)))  # made earlier for another budget
    s.usable_at = {0: clock.now, 1: clock.now}
    assert s.capacity() == 7  # 15 * 2 // 4
