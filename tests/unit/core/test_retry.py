"""Backoff with full jitter, and the vendor's Retry-After."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from adapters.core.retry import backoff_delay, next_delay, retry_after_seconds


def test_backoff_stays_within_full_jitter_bounds() -> None:
    rng = random.Random(1234)
    base, cap = 0.5, 60.0
    for attempt in range(40):
        ceiling = min(cap, base * 2**attempt)
        samples = [backoff_delay(attempt, base, cap, rng) for _ in range(300)]
        assert min(samples) >= 0.0
        assert max(samples) <= ceiling
        # Full jitter really spreads over [0, ceiling], not a constant.
        assert max(samples) > 0.9 * ceiling
        assert min(samples) < 0.1 * ceiling


def test_backoff_ceiling_doubles_until_the_cap() -> None:
    class Top(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    rng = Top()
    assert [backoff_delay(a, 1.0, 10.0, rng) for a in range(6)] == [1, 2, 4, 8, 10, 10]


def test_backoff_huge_attempt_is_capped_without_overflow() -> None:
    rng = random.Random(7)
    for attempt in (31, 100, 10_000):
        assert 0.0 <= backoff_delay(attempt, 1.0, 60.0, rng) <= 60.0


def test_backoff_is_reproducible_with_a_seed() -> None:
    a = [backoff_delay(i % 8, 1.0, 30.0, random.Random(99)) for i in range(20)]
    b = [backoff_delay(i % 8, 1.0, 30.0, random.Random(99)) for i in range(20)]
    assert a == b


@pytest.mark.parametrize(
    ("value", "expected"),
    [("120", 120.0), ("0.2", 0.2), (" 3 ", 3.0), ("0", 0.0), ("-5", 0.0)],
)
def test_retry_after_seconds(value: str, expected: float) -> None:
    assert retry_after_seconds({"retry-after": value}) == expected


def test_retry_after_missing_or_garbage() -> None:
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"retry-after": "soon"}) is None


def test_retry_after_http_date() -> None:
    now = datetime(2015, 10, 21, 7, 27, 30, tzinfo=UTC)
    headers = {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}
    assert retry_after_seconds(headers, now) == 30.0


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    now = datetime(2015, 10, 21, 8, 0, 0, tzinfo=UTC)
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, now) == 0.0


def test_next_delay_never_below_retry_after() -> None:
    rng = random.Random(5)
    for attempt in range(12):
        for _ in range(50):
            d = next_delay(attempt, {"retry-after": "7"}, base_s=1.0, cap_s=60.0, rng=rng)
            assert d >= 7.0
            assert d <= 60.0


def test_next_delay_is_max_of_jitter_and_retry_after() -> None:
    seq = random.Random(11)
    expected_jitter = [backoff_delay(5, 1.0, 60.0, seq) for _ in range(30)]
    rng = random.Random(11)
    got = [next_delay(5, {"retry-after": "10"}, base_s=1.0, cap_s=60.0, rng=rng) for _ in range(30)]
    assert got == [max(10.0, j) for j in expected_jitter]
    # Some jitter draws are above 10 s: Retry-After is a floor, not a replacement.
    assert any(g > 10.0 for g in got)


def test_next_delay_without_retry_after_is_the_jitter() -> None:
    assert next_delay(3, {}, base_s=1.0, cap_s=60.0, rng=random.Random(3)) == backoff_delay(
        3, 1.0, 60.0, random.Random(3)
    )
