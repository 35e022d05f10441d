"""SlidingWindowLimiter on a fake clock: never more than N starts in any window."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from adapters.core import ratelimit
from adapters.core.ratelimit import SlidingWindowLimiter, Unlimited


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    """A clock that `asyncio.sleep` inside the limiter advances instead of waiting."""
    fake = FakeClock()
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float, result: object = None) -> object:
        fake.sleeps.append(delay)
        fake.t += delay
        await real_sleep(0)
        return result

    monkeypatch.setattr(ratelimit.asyncio, "sleep", fake_sleep)
    yield fake


def max_in_any_window(starts: list[float], window: float) -> int:
    return max(sum(1 for s in starts if t <= s < t + window) for t in starts)


async def test_bursts_are_spread_to_n_per_window(clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(3, 1.0, margin_s=0.25, clock=clock)
    assert limiter.window == 1.25
    starts = []
    for _ in range(10):
        await limiter.acquire()
        starts.append(clock.t)
    assert starts == [0.0, 0.0, 0.0, 1.25, 1.25, 1.25, 2.5, 2.5, 2.5, 3.75]
    assert max_in_any_window(starts, 1.25) == 3


async def test_concurrent_callers_never_exceed_the_budget(clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(15, 15.0, clock=clock)  # MOCO's documented budget
    starts: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        starts.append(clock.t)

    await asyncio.gather(*(one() for _ in range(100)))
    assert len(starts) == 100
    assert max_in_any_window(starts, limiter.window) == 15
    assert starts == sorted(starts)  # FIFO: served in arrival order
    assert starts[-1] == pytest.approx(6 * 15.1)


async def test_irregular_arrivals(clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(2, 1.0, margin_s=0.0, clock=clock)
    starts = []
    for gap in (0.0, 0.3, 0.3, 0.3, 2.0, 0.1, 0.1):
        clock.t += gap
        await limiter.acquire()
        starts.append(round(clock.t, 9))
    # 0, 0.3 | third must wait till 1.0, fourth till 1.3 | 3.3, 3.4, then 4.3.
    assert starts == [0.0, 0.3, 1.0, 1.3, 3.3, 3.4, 4.3]
    assert max_in_any_window(starts, 1.0 - 1e-9) <= 2


async def test_pause_is_honoured(clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(100, 1.0, clock=clock)
    await limiter.acquire()
    limiter.pause(5.0)
    await limiter.acquire()
    assert clock.t == 5.0


async def test_a_shorter_pause_does_not_shorten_a_longer_one(clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(100, 1.0, clock=clock)
    limiter.pause(5.0)
    limiter.pause(1.0)
    limiter.pause(-3.0)
    await limiter.acquire()
    assert clock.t == 5.0


async def test_observe_remaining(clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(100, 1.0, clock=clock)
    limiter.observe_remaining(3, 30.0)
    await limiter.acquire()
    assert clock.t == 0.0
    limiter.observe_remaining(0, 4.0)
    await limiter.acquire()
    assert clock.t == 4.0


async def test_real_clock_tiny_window() -> None:
    limiter = SlidingWindowLimiter(2, 0.1, margin_s=0.0)
    loop = asyncio.get_running_loop()
    starts = []
    for _ in range(5):
        await limiter.acquire()
        starts.append(loop.time())
    assert starts[2] - starts[0] >= 0.099
    assert starts[4] - starts[2] >= 0.099


def test_requests_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SlidingWindowLimiter(0, 1.0)


async def test_unlimited_never_waits_on_its_own(clock: FakeClock) -> None:
    u = Unlimited(clock=clock)
    u.observe_remaining(5, 100.0)
    for _ in range(1000):
        await u.acquire()
    assert clock.sleeps == []


async def test_unlimited_still_obeys_the_vendor(clock: FakeClock) -> None:
    # No number configured or documented (Click Maint's copy lost it): the vendor's 429 and
    # its "none remaining until reset" headers must still hold every caller back.
    u = Unlimited(clock=clock)
    u.pause(30.0)
    await u.acquire()
    assert clock.sleeps and sum(clock.sleeps) >= 30.0
    clock.sleeps.clear()
    u.observe_remaining(0, 12.0)
    await u.acquire()
    assert sum(clock.sleeps) >= 12.0


async def test_a_slot_is_held_until_a_window_after_the_answer(clock: FakeClock) -> None:
    # The vendor counts arrivals: a request let through at 0 whose answer came at 4 may have
    # arrived at 4, so the next one may start only a window after that.
    limiter = SlidingWindowLimiter(1, 10.0, margin_s=0.0, clock=clock)
    async with limiter.slot():
        clock.t += 4.0  # a slow commit before the send, then a slow answer
    async with limiter.slot():
        assert clock.t == 14.0


async def test_requests_in_flight_count_against_the_budget(clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(2, 10.0, margin_s=0.0, clock=clock)
    started: list[float] = []
    release = asyncio.Event()

    async def one() -> None:
        async with limiter.slot():
            started.append(clock.t)
            await release.wait()

    tasks = [asyncio.create_task(one()) for _ in range(3)]
    for _ in range(20):
        await asyncio.sleep(0)  # the fake sleep: a third caller waits, the clock moves on
    assert len(started) == 2 and limiter.in_flight == 2
    answered_at = clock.t
    release.set()
    await asyncio.gather(*tasks)
    assert started[2] >= answered_at + 10.0


async def test_a_shared_capacity_is_read_at_every_admission(clock: FakeClock) -> None:
    share = {"now": 0}
    limiter = SlidingWindowLimiter(10, 1.0, clock=clock, capacity=lambda: share["now"])
    waiter = asyncio.create_task(limiter.acquire())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiter.done()  # no share yet: nothing goes out
    share["now"] = 2
    await waiter
    await limiter.acquire()
    assert limiter.occupied() == 2
    blocked = asyncio.create_task(limiter.acquire())
    for _ in range(3):
        await asyncio.sleep(0)
    assert limiter.capacity == 2
    await blocked  # freed a window later
    assert clock.t >= limiter.window


async def test_quiesce_waits_for_requests_in_flight() -> None:
    limiter = SlidingWindowLimiter(5, 1.0)
    assert await limiter.quiesce(0.01)
    entered = asyncio.Event()
    leave = asyncio.Event()

    async def one() -> None:
        async with limiter.slot():
            entered.set()
            await leave.wait()

    task = asyncio.create_task(one())
    await entered.wait()
    assert not await limiter.quiesce(0.01)
    leave.set()
    assert await limiter.quiesce(1.0)
    await task


async def test_a_vendor_limit_below_the_budget_lowers_it_and_never_raises_it(
    clock: FakeClock,
) -> None:
    limiter = SlidingWindowLimiter(10, 60.0, margin_s=0.0, clock=clock)
    limiter.observe_limit(4)
    assert limiter.capacity == 4
    for _ in range(4):
        await limiter.acquire()
    assert limiter.occupied() == 4
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.05)
    assert not waiter.done()  # the fifth waits for the window, as the vendor counts
    limiter.observe_limit(50)  # more than the budget: the budget is the upper bound
    assert limiter.capacity == 10
    await asyncio.wait_for(waiter, 1)
    limiter.observe_limit(0)  # nonsense: ignored
    assert limiter.capacity == 10


def test_a_learned_limit_shrinks_a_shared_budgets_share_alike() -> None:
    limiter = SlidingWindowLimiter(300, 300.0, capacity=lambda: 100)  # a third of the budget
    limiter.observe_limit(150)
    assert limiter.capacity == 50
