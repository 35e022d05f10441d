"""Remembers delivery keys (signed nonces) for a while, so a repeated delivery publishes once."""

from __future__ import annotations

import asyncio
import enum
import time
from collections import OrderedDict
from collections.abc import Callable


class Claim(enum.Enum):
    """What `ReplayGuard.begin` found for a delivery key."""

    CLAIMED = "claimed"  # new: the caller publishes it and then calls `end`
    PUBLISHED = "published"  # already on Kafka: the copy is answered 2xx and dropped


class ReplayGuard:
    """Keys seen within `window_s`, oldest first; bounded so a flood cannot grow memory.

    A key is remembered only once its delivery was published: a vendor's retry of a
    delivery we answered 5xx must still get through. A copy that arrives while the first
    is being published waits for it (the future `begin` returns) instead of racing it.
    """

    def __init__(
        self, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._in_flight: dict[str, asyncio.Future[bool]] = {}
        self._max = max_keys
        self._clock = clock

    def begin(self, key: str, window_s: float) -> Claim | asyncio.Future[bool]:
        """Claim a delivery key, or say it was published, or hand the in-flight copy's end.

        The future resolves to whether that copy was published; then call `begin` again.
        """
        pending = self._in_flight.get(key)
        if pending is not None:
            return pending
        if self.seen(key, window_s):
            return Claim.PUBLISHED
        self._in_flight[key] = asyncio.get_running_loop().create_future()
        return Claim.CLAIMED

    def end(self, key: str, window_s: float, *, published: bool) -> None:
        """Release a claim; a published key is remembered, a failed one may come again."""
        pending = self._in_flight.pop(key, None)
        if published:
            self.remember(key, window_s)
        if pending is not None and not pending.done():
            pending.set_result(published)

    def seen(self, key: str, window_s: float) -> bool:
        """Whether `key` was remembered within the last `window_s` seconds."""
        self._expire(window_s)
        return key in self._seen

    def remember(self, key: str, window_s: float) -> None:
        """Record a published delivery's key."""
        self._expire(window_s)
        self._seen[key] = self._clock()
        self._seen.move_to_end(key)
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)

    def _expire(self, window_s: float) -> None:
        cutoff = self._clock() - window_s
        while self._seen:
            key, at = next(iter(self._seen.items()))
            if at >= cutoff:
                break
            del self._seen[key]
