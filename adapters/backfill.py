"""`workbridge backfill`: a missed-webhook recovery of a chosen window, on demand.

The periodic recovery (a poll task, e.g. CLOUDWORK|PRO's `webhook_notifications`) goes on
from its own mark. After an outage longer than its overlap, or to be sure, an operator runs
one pass from a given time: the vendor's stored notifications since then are listed and
those whose event is not on the events topic yet are published, under the ids their pushes
would have had, so nothing is duplicated for a consumer that deduplicates by id, and what
is already there is not written again.

The process takes a share of the instance's rate budget like any replica (it joins the
budget's consumer group), so the deployment's limit holds while it runs. It writes no poll
state: the periodic recovery's cursor is its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.config import Config
from adapters.core.budget import BudgetShare, budget_partitions
from adapters.core.change_source import PollContext, PollSettings
from adapters.core.instance import build_instance
from adapters.core.kafka import ensure_topics, event_producer
from adapters.core.poll_commit import dead_letter_record
from adapters.core.poll_state import ListState
from adapters.core.poller import fetch
from adapters.core.recent_events import RecentEvents
from adapters.core.vendor_call import RetryPolicy

log = logging.getLogger(__name__)


class BackfillError(Exception):
    """The backfill cannot run as asked; the message says what to do."""


def recovery_resources(config: Config, instance: str) -> list[str]:
    """The instance's resources that recover missed webhooks."""
    from adapters.registry import VENDORS

    inst = _instance_config(config, instance)
    spec = VENDORS[inst.vendor]
    if spec.poll is None:
        return []
    return [name for name, res in spec.poll.resources.items() if res.recovery]


def _instance_config(config: Config, instance: str) -> Any:
    for inst in config.instances:
        if inst.instance_name == instance:
            return inst
    names = ", ".join(i.instance_name for i in config.instances)
    raise BackfillError(f"no instance {instance!r} in the config (instances: {names})")


async def backfill(
    config: Config,
    *,
    instance: str,
    since: datetime,
    say: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> int:
    """One recovery pass from `since`; how many events were published."""
    from adapters.core.metrics import Metrics
    from adapters.registry import VENDORS

    cfg = _instance_config(config, instance)
    spec = VENDORS[cfg.vendor]
    names = recovery_resources(config, instance)
    if not names:
        raise BackfillError(
            f"{instance} ({cfg.vendor}) has no missed-webhook recovery: nothing to backfill"
        )
    if since < datetime.now(UTC) - timedelta(days=90):
        say("note: vendors keep notifications for a limited time (CLOUDWORK|PRO: 3 months)")
    inst = build_instance(cfg, spec, config.kafka.topic_prefix)
    assert spec.poll is not None
    limiter = inst.client.limiter
    budgets = {inst.topics.budget: budget_partitions(limiter.requests)} if limiter.requests else {}
    await ensure_topics(config.kafka, [inst.topics], budgets=budgets)
    share: BudgetShare | None = None
    if limiter.requests > 0:
        share = BudgetShare(
            config.kafka,
            topic=inst.topics.budget,
            group_id=inst.topics.group("budget"),
            partitions=budget_partitions(limiter.requests),
            requests=limiter.requests,
            window_s=limiter.window,
            quiesce=limiter.quiesce,
            name=inst.name,
        )
        limiter.share(share.capacity)
        await share.start()
    producer = event_producer(config.kafka, client_id=f"{config.kafka.client_id}-backfill")
    await producer.start()
    recent = RecentEvents(
        config.kafka, inst.topics.events, client_id=f"{config.kafka.client_id}-backfill"
    )
    metrics = Metrics()
    policy = RetryPolicy(deadline_s=120.0, max_attempts=8, base_s=1.0, cap_s=30.0)
    published = 0
    try:
        for name in names:
            source: Any = spec.poll.resources[name].source
            polling = cfg.polling
            ctx = PollContext(
                instance=inst.name,
                resource=name,
                scope=None,
                # The whole range asked for, from `since` on: no overlap, never "now".
                # What is on the topic already is never written again, whatever
                # `polling.skip_published` says for the poller.
                settings=dataclasses.replace(
                    PollSettings.of(polling),
                    overlap=timedelta(0),
                    start_from="beginning",
                    skip_published=True,
                ),
                fetch=lambda request: fetch(inst, request, policy, metrics),
                options=inst.options,
                now=lambda: datetime.now(UTC),
                published_since=recent.ids_since,
            )
            state: Any = ListState(mark=since)
            pages = 0
            while True:
                async for step in source.run(ctx, state):
                    sends = []
                    for draft in step.events:
                        key, value, headers = inst.encode(inst.event(draft))
                        sends.append(
                            await producer.send(
                                inst.topics.events, value=value, key=key, headers=headers
                            )
                        )
                    for dead in step.dead:
                        key, value, headers = dead_letter_record(
                            dead, instance=inst.name, resource=name, scope=None
                        )
                        sends.append(
                            await producer.send(
                                inst.topics.dlq, value=value, key=key, headers=headers
                            )
                        )
                    await asyncio.gather(*sends)
                    published += len(step.events)
                    state = step.state
                    pages += 1
                    say(f"backfill {inst.name}/{name}: step {pages}, {published} published so far")
                if not isinstance(state, ListState) or state.listing is None:
                    break  # the pass is over (a longer one yields per max_pages and goes on)
            say(f"backfill {inst.name}/{name}: done, {published} published")
    finally:
        with contextlib.suppress(Exception):
            await recent.close()
        with contextlib.suppress(Exception):
            await producer.stop()
        if share is not None:
            with contextlib.suppress(Exception):
                await share.stop()
        await inst.client.close()
    return published


def parse_since(text: str) -> datetime:
    """`--since`: an ISO time (UTC when it names no zone) or a duration back (`6h`, `3d`)."""
    units = {"m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].isdigit():
        return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BackfillError(
            f"--since {text!r}: give an ISO time (2026-11-30T08:00:00Z) or a duration back "
            "(90m, 6h, 3d)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
