"""ReplayGuard: keys remembered for a window, bounded in number."""

from __future__ import annotations

from adapters.core.replay_guard import ReplayGuard


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_is_seen_within_its_window_only() -> None:
    clock = Clock()
    guard = ReplayGuard(clock=clock)
    assert not guard.seen("n1", 300)
    guard.remember("n1", 300)
    clock.now += 299
    assert guard.seen("n1", 300)
    clock.now += 2
    assert not guard.seen("n1", 300)


def test_memory_is_bounded() -> None:
    guard = ReplayGuard(max_keys=3, clock=Clock())
    for key in "abcd":
        guard.remember(key, 300)
    assert [guard.seen(k, 300) for k in "abcd"] == [False, True, True, True]
