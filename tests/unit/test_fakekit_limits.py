"""The fake kit's rate limit: what the vendor fakes answer when a client is too fast."""

from __future__ import annotations

from adapters.fakekit_limits import FakeRateLimit, LimitHeaders, max_in_any_window


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_the_rate_limit_admits_a_window_and_says_when_to_come_back() -> None:
    clock = Clock()
    limit = FakeRateLimit(3, 10.0, clock=clock, wall_clock=lambda: 5000.0)
    assert [limit.check("k").admitted for _ in range(4)] == [True, True, True, False]
    refused = limit.check("k")
    assert refused.headers == {"Retry-After": "10"}
    assert limit.check("other").admitted  # per key
    clock.t += 10
    assert limit.check("k").admitted


def test_click_maint_style_headers_on_every_answer() -> None:
    clock = Clock()
    limit = FakeRateLimit(2, 300.0, headers=LimitHeaders(), clock=clock, wall_clock=lambda: 5000.0)
    first = limit.check("k")
    assert first.headers["X-RateLimit-Limit"] == "2"
    assert first.headers["X-RateLimit-Remaining"] == "1"
    assert first.headers["X-RateLimit-Reset"] == "5300"
    limit.check("k")
    refused = limit.check("k")
    assert not refused.admitted
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert refused.headers["retry-after"] == "300"


def test_counting_rejected_requests_keeps_a_hammering_client_out() -> None:
    clock = Clock()
    limit = FakeRateLimit(1, 10.0, counts_rejected=True, clock=clock)
    assert limit.check("k").admitted
    clock.t += 9
    assert not limit.check("k").admitted
    clock.t += 2  # the first slot is free, but the refused arrival took one
    assert not limit.check("k").admitted
    global_limit = FakeRateLimit(1, 10.0, per_key=False, clock=clock)
    assert global_limit.check("a").admitted and not global_limit.check("b").admitted


def test_the_caller_may_pass_the_arrival_time() -> None:
    # A fake that stamps its request log with one time passes the same to the limit.
    limit = FakeRateLimit(1, 10.0, clock=lambda: 0.0)
    assert limit.check("k", now=100.0).admitted
    refused = limit.check("k", now=104.5)
    assert not refused.admitted and refused.wait_s == 5.5
    assert refused.headers == {"Retry-After": "6"}
    assert limit.check("k", now=110.0).admitted


def test_a_zero_limit_refuses_everything_without_failing() -> None:
    limit = FakeRateLimit(0, 10.0, clock=Clock())
    refused = limit.check("k")
    assert not refused.admitted and refused.headers == {"Retry-After": "10"}
    assert limit.rejected == 1


def test_max_in_any_window_counts_half_open_windows() -> None:
    times = [1.4, 0.0, 0.5, 1.0, 3.0]  # in any order
    assert max_in_any_window(times, 1.0) == 3  # 0.5, 1.0, 1.4
    assert max_in_any_window(times, 0.5) == 2  # 1.0, 1.4
    assert max_in_any_window([0.0, 1.0, 2.0], 1.0) == 1
    assert max_in_any_window([], 1.0) == 0
