"""A per-instance request budget: a sliding window that also obeys the vendor's own signals."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable


class SlidingWindowLimiter:
    """At most `requests` starts in any `per_seconds` window, plus pauses the vendor asks for.

    The window is widened by `margin_s` because the vendor counts arrivals, not our send
    times: network jitter can pull two of our sends closer together at the vendor's end.
    """

    def __init__(
        self,
        requests: int,
        per_seconds: float,
        *,
        margin_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if requests < 1:
            raise ValueError("requests must be at least 1")
        self.requests = requests
        self.window = per_seconds + margin_s
        self._clock = clock
        self._starts: deque[float] = deque()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait until one more request may start, then count it."""
        async with self._lock:  # FIFO: waiting callers are served in arrival order
            while True:
                now = self._clock()
                while self._starts and now - self._starts[0] >= self.window:
                    self._starts.popleft()
                wait = self._paused_until - now
                if len(self._starts) >= self.requests:
                    wait = max(wait, self._starts[0] + self.window - now)
                if wait <= 0:
                    self._starts.append(now)
                    return
                await asyncio.sleep(wait)

    def pause(self, seconds: float) -> None:
        """Start nothing for `seconds` (a 429's Retry-After, an exhausted quota until reset)."""
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    def observe_remaining(self, remaining: int, reset_in_s: float) -> None:
        """Adapt to the vendor's `remaining`/`reset` headers: none left means wait for reset."""
        if remaining <= 0:
            self.pause(reset_in_s)


class Unlimited(SlidingWindowLimiter):
    """No number known or configured: no window of our own, but the vendor's signals rule.

    A 429's `Retry-After` and rate-limit headers that say none are left pause every caller
    until the vendor's reset, exactly as with a known budget (a vendor whose documented
    number was lost, such as Click Maint's copy, still says it in every answer).
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(1, 1.0, margin_s=0.0, clock=clock)
        self.requests = 0  # no window of our own

    async def acquire(self) -> None:
        """Wait only while the vendor asked for a pause."""
        async with self._lock:
            # A pause can be extended while we sleep (another 429): look again after it.
            wait = self._paused_until - self._clock()
            while wait > 0:
                await asyncio.sleep(wait)
                wait = self._paused_until - self._clock()


Limiter = SlidingWindowLimiter
