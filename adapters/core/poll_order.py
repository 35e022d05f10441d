"""The polls' share of the budget, handed to the stalest poll first.

With many (entity, resource) tasks and a tight vendor limit, polls queue for the budget. A
first-come order lets tasks that poll often (their cycles end quickly, so they are back
first) crowd out one that waits for a slot; ordering by when each task was last visited
serves the one that has gone longest without a visit first, which is what
`polling.max_staleness_s` asks of the schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator

from adapters.core.ratelimit import SlidingWindowLimiter


class StalestFirst:
    """Admits callers to `limiter` one at a time, lowest `priority` (oldest visit) first.

    Only the caller at the door waits inside the limiter; the others wait here, so the
    limiter's own first-come order never decides between polls.
    """

    def __init__(self, limiter: SlidingWindowLimiter) -> None:
        self.limiter = limiter
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._door: asyncio.Future[None] | None = None

    @property
    def waiting(self) -> int:
        """Callers waiting for their turn (not counting the one at the door)."""
        return sum(1 for _p, _s, f in self._heap if not f.done())

    @contextlib.asynccontextmanager
    async def slot(self, priority: float) -> AsyncIterator[None]:
        """A slot of the limiter, after every waiting caller of lower `priority`."""
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (priority, next(self._seq), turn))
        self._open()
        try:
            await turn
            async with self.limiter.slot():
                self._leave(turn)
                yield
        finally:
            # Cancelled while waiting (here or in the limiter): the next caller's turn.
            if not turn.done():
                turn.cancel()
            self._leave(turn)

    def _leave(self, turn: asyncio.Future[None]) -> None:
        if self._door is turn:
            self._door = None
            self._open()

    def _open(self) -> None:
        while self._door is None and self._heap:
            _priority, _seq, turn = heapq.heappop(self._heap)
            if turn.done():  # its caller gave up
                continue
            turn.set_result(None)
            self._door = turn
