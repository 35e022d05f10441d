"""Remembers delivery keys (signed nonces) for a while, to refuse replayed webhooks."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class ReplayGuard:
    """Keys seen within `window_s`, oldest first; bounded so a flood cannot grow memory.

    A key is remembered only once its delivery was published: a vendor's retry of a
    delivery we answered 5xx must still get through.
    """

    def __init__(
        self, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._in_flight: set[str] = set()
        self._max = max_keys
        self._clock = clock

    def begin(self, key: str, window_s: float) -> bool:
        """Claim a delivery key; False if it was published or another copy is in flight."""
        if key in self._in_flight or self.seen(key, window_s):
            return False
        self._in_flight.add(key)
        return True

    def end(self, key: str, window_s: float, *, published: bool) -> None:
        """Release a claim; a published key is remembered, a failed one may come again."""
        self._in_flight.discard(key)
        if published:
            self.remember(key, window_s)

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
