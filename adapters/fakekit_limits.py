"""Fake vendors' rate limits: a sliding window per key, answered the way each vendor does.

A fake declares its budget and how it says so: MOCO only answers 429 (with `Retry-After`
where configured); Click Maint sends `X-RateLimit-Limit/Remaining/Reset` (the reset as a
Unix time) on every answer and `retry-after` on a 429. `check` is called on arrival and
returns whether the request is admitted and the headers to add to the answer.
`max_in_any_window` tells a test how close to its budget a client went.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LimitHeaders:
    """The names of a vendor's rate-limit headers; `reset` is a Unix time."""

    limit: str = "X-RateLimit-Limit"
    remaining: str = "X-RateLimit-Remaining"
    reset: str = "X-RateLimit-Reset"
    retry_after: str = "retry-after"


@dataclass
class Verdict:
    """Whether a request is admitted, and the headers its answer carries."""

    admitted: bool
    headers: dict[str, str]
    wait_s: float = 0.0


@dataclass
class FakeRateLimit:
    """`limit` requests in any `window_s`, per key (or for all keys together)."""

    limit: int
    window_s: float
    per_key: bool = True
    # Whether a refused request takes a slot too (some vendors count every arrival).
    counts_rejected: bool = False
    send_retry_after: bool = True
    # None: the vendor sends no rate-limit headers, only the 429.
    headers: LimitHeaders | None = None
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    _windows: dict[str, deque[float]] = field(default_factory=dict)
    rejected: int = 0

    def check(self, key: str, now: float | None = None) -> Verdict:
        """Count an arrival for `key` (admitted or not) and say how to answer it.

        `now` (on `clock`'s scale) is the arrival time when the caller already took it, so
        that one request carries one time through a fake's logs and its limit.
        """
        if now is None:
            now = self.clock()
        window = self._windows.setdefault(key if self.per_key else "*", deque())
        while window and window[0] <= now - self.window_s:
            window.popleft()
        admitted = len(window) < self.limit
        if admitted or self.counts_rejected:
            window.append(now)
        # An empty window that still refuses is a zero limit: nothing frees within a window.
        oldest = window[0] if window else now
        wait = 0.0 if admitted else max(0.0, oldest + self.window_s - now)
        headers: dict[str, str] = {}
        if self.headers is not None:
            reset_in = (window[0] + self.window_s - now) if window else 0.0
            headers[self.headers.limit] = str(self.limit)
            headers[self.headers.remaining] = str(max(0, self.limit - len(window)))
            headers[self.headers.reset] = str(math.ceil(self.wall_clock() + reset_in))
        if not admitted:
            self.rejected += 1
            if self.send_retry_after:
                name = self.headers.retry_after if self.headers else "Retry-After"
                headers[name] = str(max(1, math.ceil(wait)))
        return Verdict(admitted, headers, wait)


def max_in_any_window(times: Iterable[float], window_s: float) -> int:
    """Most of `times` (arrivals, in seconds) that fall in any `[t, t+window_s)`."""
    ordered = sorted(times)
    best = 0
    start = 0
    for end, moment in enumerate(ordered):
        while ordered[start] <= moment - window_s:
            start += 1
        best = max(best, end - start + 1)
    return best
