"""Polls waiting for their share of the budget are served stalest first."""

from __future__ import annotations

import asyncio

from adapters.core.poll_order import StalestFirst
from adapters.core.ratelimit import SlidingWindowLimiter


async def test_waiting_polls_go_stalest_first_whatever_order_they_came_in() -> None:
    gate = StalestFirst(SlidingWindowLimiter(1, 0.05, margin_s=0.0))
    served: list[str] = []

    async def poll(name: str, visited: float) -> None:
        async with gate.slot(visited):
            served.append(name)

    holder = gate.slot(0.0)
    await holder.__aenter__()  # the only slot is taken: everyone below waits
    tasks = [
        asyncio.create_task(poll(name, visited))
        for name, visited in [("fresh", 30.0), ("middle", 10.0), ("stale", 1.0)]
    ]
    await asyncio.sleep(0.01)
    assert gate.waiting == 2  # one is at the door, waiting inside the limiter
    await holder.__aexit__(None, None, None)
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    # The first to arrive was at the door already; the other two by staleness.
    assert served == ["fresh", "stale", "middle"]


async def test_the_door_is_handed_on_while_callers_wait_not_after_they_finish() -> None:
    gate = StalestFirst(SlidingWindowLimiter(5, 1.0, margin_s=0.0))
    inside = 0
    most = 0

    async def poll(visited: float) -> None:
        nonlocal inside, most
        async with gate.slot(visited):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.02)
            inside -= 1

    await asyncio.wait_for(asyncio.gather(*(poll(float(i)) for i in range(5))), 2)
    assert most == 5  # a slow poll does not hold the others back while the budget has room


async def test_a_caller_that_gives_up_does_not_block_the_others() -> None:
    gate = StalestFirst(SlidingWindowLimiter(1, 0.05, margin_s=0.0))
    holder = gate.slot(0.0)
    await holder.__aenter__()
    served: list[str] = []

    async def poll(name: str, visited: float) -> None:
        async with gate.slot(visited):
            served.append(name)

    at_door = asyncio.create_task(poll("door", 1.0))
    queued = asyncio.create_task(poll("queued", 2.0))
    later = asyncio.create_task(poll("later", 3.0))
    await asyncio.sleep(0.01)
    at_door.cancel()  # waiting inside the limiter
    queued.cancel()  # waiting for its turn
    await holder.__aexit__(None, None, None)
    await asyncio.wait_for(later, 2)
    assert served == ["later"]
    assert gate.waiting == 0
