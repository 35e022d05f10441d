"""A fake vendor's clock that moves only when a test says so (shared by polling tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class VendorClock:
    """The fake vendor's clock: moves only when a test says so."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, 8, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float = 1.0) -> None:
        self.now += timedelta(seconds=seconds)
