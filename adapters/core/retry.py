"""Exponential backoff with full jitter, honouring the vendor's Retry-After."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def backoff_delay(
    attempt: int, base_s: float, cap_s: float, rng: random.Random | None = None
) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt)] (attempt counts from 0)."""
    ceiling = min(cap_s, base_s * (2 ** min(attempt, 30)))
    return (rng or random).uniform(0.0, ceiling)


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds the vendor asked us to wait (`Retry-After` as seconds or HTTP date), if any."""
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def next_delay(
    attempt: int,
    headers: Mapping[str, str],
    *,
    base_s: float,
    cap_s: float,
    rng: random.Random | None = None,
) -> float:
    """The wait before the next attempt: never shorter than what the vendor asked for."""
    jittered = backoff_delay(attempt, base_s, cap_s, rng)
    asked = retry_after_seconds(headers)
    return jittered if asked is None else max(asked, jittered)
