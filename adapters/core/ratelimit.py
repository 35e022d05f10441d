"""A per-instance request budget: a sliding window that also obeys the vendor's own signals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable

_RECHECK_S = 0.5

log = logging.getLogger(__name__)


class SlidingWindowLimiter:
    """At most `requests` requests in any `per_seconds` window, plus pauses the vendor asks for.

    A request holds its slot from the moment it is let through until `window` after its
    answer came back (`slot()`), not from when it was let through: the vendor counts
    arrivals, and an arrival lies somewhere between the two. So however the network, a
    Kafka commit made before the send (the command worker's in-flight mark) or the vendor's
    own queue delays a request, the vendor never sees more than the budget in a window.
    `margin_s` widens the window for clocks that tick coarsely at the vendor's end.

    `capacity`, when given, says how many of the `requests` this process may use now (its
    share of a budget that several processes split, see budget.py); it is read at every
    admission, so a share that shrinks takes effect at once.
    """

    def __init__(
        self,
        requests: int,
        per_seconds: float,
        *,
        margin_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        capacity: Callable[[], int] | None = None,
    ) -> None:
        if requests < 1:
            raise ValueError("requests must be at least 1")
        self.requests = requests
        # The vendor's own number where its answers say one lower than `requests`.
        self.learned: int | None = None
        self.window = per_seconds + margin_s
        self._clock = clock
        self._capacity = capacity
        # When each finished request's slot frees (answers come back in time order, so the
        # deque stays sorted).
        self._frees: deque[float] = deque()
        self.in_flight = 0
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        self._idle = asyncio.Event()
        self._idle.set()
        # Tasks waiting for a slot now: a hand-back lets their commands go (nothing left).
        self.waiting: set[asyncio.Task[object]] = set()

    def share(self, capacity: Callable[[], int]) -> None:
        """From now on, use only `capacity()` of the budget (this process's share of it)."""
        self._capacity = capacity

    @property
    def capacity(self) -> int:
        """The requests this process may have in a window now: its share of the budget, the
        budget lowered to the vendor's own limit where that is lower."""
        budget = self.requests if self.learned is None else min(self.requests, self.learned)
        if self._capacity is None:
            return budget
        share = max(0, min(self.requests, self._capacity()))
        # The share is of `requests`; a learned lower limit shrinks every share alike.
        return share * budget // self.requests

    def occupied(self) -> int:
        """Slots held now: requests in flight and those answered less than a window ago."""
        now = self._clock()
        while self._frees and self._frees[0] <= now:
            self._frees.popleft()
        return self.in_flight + len(self._frees)

    async def _admit(self) -> None:
        async with self._lock:  # FIFO: waiting callers are served in arrival order
            while True:
                now = self._clock()
                wait = self._paused_until - now
                if self.occupied() >= self.capacity:
                    # The first slot frees a window after the oldest answer; one in flight
                    # frees later still. A shared capacity can grow meanwhile: look again at
                    # least every half second.
                    first_free = self._frees[0] - now if self._frees else _RECHECK_S
                    wait = max(wait, min(first_free, _RECHECK_S))
                if wait <= 0:
                    self.in_flight += 1
                    self._idle.clear()
                    return
                await asyncio.sleep(wait)

    def _done(self) -> None:
        self.in_flight -= 1
        self._frees.append(self._clock() + self.window)
        if self.in_flight == 0:
            self._idle.set()

    async def _wait_turn(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.waiting.add(task)
        try:
            await self._admit()
        finally:
            if task is not None:
                self.waiting.discard(task)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait until one more request may go out; hold its slot until a window after the
        block ends (the answer came back, or the request failed)."""
        await self._wait_turn()
        try:
            yield
        finally:
            self._done()

    async def acquire(self) -> None:
        """Take a slot for a request sent right away (held for one window from now)."""
        await self._wait_turn()
        self._done()

    async def quiesce(self, timeout_s: float) -> bool:
        """Wait until no request is in flight (at most `timeout_s`); whether none is."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def pause(self, seconds: float) -> None:
        """Start nothing for `seconds` (a 429's Retry-After, an exhausted quota until reset)."""
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    def observe_remaining(self, remaining: int, reset_in_s: float) -> None:
        """Adapt to the vendor's `remaining`/`reset` headers: none left means wait for reset."""
        if remaining <= 0:
            self.pause(reset_in_s)

    def observe_limit(self, limit: int) -> None:
        """The vendor's limit header: a number below the budget lowers it (never raises it:
        the configured budget is an upper bound the operator chose)."""
        learned = limit if 0 < limit < self.requests else None
        if limit < 1 or learned == self.learned:
            return
        self.learned = learned
        if learned is None:
            log.info("rate limit: the vendor's limit is back to the budget of %d", self.requests)
            return
        log.warning(
            "rate limit: the vendor says %d requests per window, below the configured %d: "
            "using %d (set rate_limit.requests to match)",
            limit,
            self.requests,
            limit,
        )


class Unlimited(SlidingWindowLimiter):
    """No number known or configured: no window of our own, but the vendor's signals rule.

    A 429's `Retry-After` and rate-limit headers that say none are left pause every caller
    until the vendor's reset, exactly as with a known budget (a vendor whose documented
    number was lost, such as Click Maint's copy, still says it in every answer).
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(1, 1.0, margin_s=0.0, clock=clock)
        self.requests = 0  # no window of our own

    async def _admit(self) -> None:
        # Wait only while the vendor asked for a pause.
        async with self._lock:
            # A pause can be extended while we sleep (another 429): look again after it.
            wait = self._paused_until - self._clock()
            while wait > 0:
                await asyncio.sleep(wait)
                wait = self._paused_until - self._clock()
            self.in_flight += 1
            self._idle.clear()

    def _done(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()


Limiter = SlidingWindowLimiter
