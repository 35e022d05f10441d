"""Polls take at most their share of the budget (commands are never starved), and a task
visited too rarely shows in its staleness metric and the log."""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest

from adapters.config import parse_config
from adapters.core.instance import build_instance
from adapters.core.metrics import Metrics
from adapters.core.poller import PollRunner, poll_gate
from adapters.registry import VENDORS


def instance(**polling: Any) -> Any:
    cfg = parse_config(
        {
            "kafka": {"bootstrap_servers": "127.0.0.1:1"},
            "instances": [
                {
                    "vendor": "moco",
                    "base_url": "https://x.mocoapp.com/api/v1",
                    "api_key": "k",
                    "webhook_secret": "1d608b9d72219b90ff2393a1d3ee0ac0",
                    "polling": {"enabled": True, "resources": ["projects"], **polling},
                }
            ],
        },
        env={},
        vendors=VENDORS,
    )
    return cfg, build_instance(cfg.instances[0], VENDORS["moco"], "wb")


def test_polls_get_half_of_what_the_process_may_use_by_default() -> None:
    _, inst = instance()
    gate = poll_gate(inst)
    assert gate is not None
    assert gate.limiter.capacity == 7  # MOCO: 15 per 15 s; half, rounded down
    share = {"now": 3}
    inst.client.limiter.share(lambda: share["now"])
    assert gate.limiter.capacity == 1  # at least one request, while the process has any
    share["now"] = 0
    assert gate.limiter.capacity == 0


def test_a_share_of_one_or_an_unknown_budget_needs_no_gate() -> None:
    _, inst = instance(max_budget_share=1)
    assert poll_gate(inst) is None
    _, inst = instance(max_budget_share=0.25)
    gate = poll_gate(inst)
    assert gate is not None and gate.limiter.capacity == 3


async def test_polls_wait_for_their_share_while_commands_keep_the_rest() -> None:
    _, inst = instance()
    gate = poll_gate(inst)
    assert gate is not None
    for _ in range(7):
        async with gate.slot(0.0):
            pass
    blocked = asyncio.create_task(gate.limiter.acquire())
    await asyncio.sleep(0.05)
    assert not blocked.done()  # an eighth poll waits: its share of the window is spent ...
    assert inst.client.limiter.occupied() == 0  # ... and the budget's rest is the commands'
    blocked.cancel()


async def test_a_task_visited_too_rarely_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    cfg, inst = instance(interval_s=1, max_staleness_s=2)
    metrics = Metrics()
    runner = PollRunner(inst, cfg.kafka, metrics)
    runner.tasks["projects"] = SimpleNamespace(visited=time.monotonic() - 5)  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING):
        watch = asyncio.create_task(runner._watch_staleness(every_s=0.01))
        await asyncio.sleep(0.05)
        watch.cancel()
    value = metrics.poll_staleness.labels("moco", "projects")._value.get()
    assert value >= 5
    assert "projects: not visited for 5s" in caplog.text
    assert caplog.text.count("not visited") == 1  # once per crossing, not every tick
