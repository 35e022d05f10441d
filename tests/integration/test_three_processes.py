"""Three `workbridge run` processes on one broker and the fake MOCO: polls and commands
spread over them; one is SIGKILLed under load and started again (as Kubernetes would),
and another is SIGTERMed. Their work moves on within a session timeout, no poll is
published twice, no side effect repeats, every command gets one result, the vendor's limit
holds in every window (across the restart too), and events keep their ids."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from math import inf
from pathlib import Path
from typing import Any

import pytest

from adapters.core.kafka import Topics
from adapters.core.poller import placed_partitions
from adapters.moco.fake import FakeMoco
from tests.integration.conftest import API_KEY, SECRET, ce
from tests.integration.three_proc import (
    CommandSender,
    TopicTail,
    command_takeover_s,
    first_after,
    largest_gap,
    poll_takeover_s,
    record_wall,
    version_id,
)
from tests.process_cluster import Cluster, total

pytestmark = pytest.mark.integration

# A budget the test can watch: 20 requests per 2 s, for the whole deployment.
LIMIT, WINDOW_S = 20, 2.0
RESOURCES = ["projects", "companies", "activities", "users", "deals", "offers", "invoices"]
POLL_INTERVAL_S = 1.0
# Commands one process works on at once (`commands.concurrency`): a SIGKILLed process can
# have had at most this many with an in-flight mark and no result, the only ones whose
# next owner must answer `ambiguous` (a SIGTERMed one finishes its calls first).
CONCURRENCY = 4
# Poll tasks are dealt over the cursor partitions in name order (placed_partitions); with 4
# partitions each holds one of these resources at least, so that each of the three
# processes polls. The command topic has 4 partitions too.
PARTITIONS = 4
PACE_S = 0.25  # one command every 0.25 s, about one per partition per second
# How soon a dead or drained process's work must be served again (see three_proc.py for
# the derivation): a session timeout + a budget window + a margin of a heartbeat interval,
# the budget's clock skew allowance and 1 s for the call (17 s here); for a poll task, in
# addition its turn behind the new owner's own tasks under the polls' budget share (4 s).
POLL_SHARE = 0.5
TAKEOVER_S = command_takeover_s(WINDOW_S)
POLL_TAKEOVER_S = poll_takeover_s(LIMIT, WINDOW_S, len(RESOURCES), POLL_SHARE, processes=3)


def instance(base_url: str, workdir: Path) -> dict[str, Any]:
    (workdir / "api_key").write_text(API_KEY + "\n")
    return {
        "vendor": "moco",
        "name": "moco",
        "base_url": base_url,
        "api_key_file": str(workdir / "api_key"),
        "webhook_secret": SECRET,
        "webhooks": {"enabled": False},
        "rate_limit": {"requests": LIMIT, "per_seconds": WINDOW_S, "above_documented": True},
        "polling": {
            "enabled": True,
            "resources": RESOURCES,
            "interval_s": POLL_INTERVAL_S,
            "page_size": 10,
            "max_budget_share": POLL_SHARE,
        },
        "commands": {
            "enabled": True,
            "deadline_s": 120,
            "backoff_base_s": 0.2,
            "concurrency": CONCURRENCY,
        },
    }


def busy(samples: dict[str, Any]) -> bool:
    return (
        total(samples.get("workbridge_polls_total", {})) > 0
        and total(samples.get("workbridge_command_results_total", {})) > 0
    )


async def until(what: Callable[[], Awaitable[bool]], wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while not await what():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.3)
    return True


def rounded(figures: dict[str, dict[Any, float]]) -> dict[str, dict[Any, float]]:
    return {what: {k: round(v, 1) for k, v in sorted(f.items())} for what, f in figures.items()}


def result_times(records: list[Any]) -> list[tuple[str, float]]:
    return [(ce(r).get_attributes()["commandid"], record_wall(r)) for r in records]


async def test_three_processes_share_the_work_and_survive_a_kill_and_a_drain(
    tmp_path: Path, kafka_bootstrap: str, prefix: str
) -> None:
    fake = FakeMoco(api_key=API_KEY, webhook_secret=SECRET, rate_limit=(LIMIT, WINDOW_S))
    await fake.start()
    assert fake.base_url is not None
    # Every version of every record the fake ever had, by its event id.
    versions: set[str] = set()
    for resource in RESOURCES:
        for i in range(4):
            versions.add(version_id(resource, fake.create_record(resource, {"name": f"r{i}"})))

    def change(index: int, label: str) -> None:
        """Under load, as a human would: change one record of every polled resource."""
        for resource in RESOURCES:
            record_id = fake.records(resource)[index]["id"]
            versions.add(
                version_id(resource, fake.update_record(resource, record_id, {"name": label}))
            )

    assert set(placed_partitions(RESOURCES, PARTITIONS).values()) == set(range(PARTITIONS))
    cluster = Cluster(
        tmp_path,
        kafka_bootstrap,
        prefix,
        [instance(fake.base_url, tmp_path)],
        partitions=PARTITIONS,
    )
    topics = Topics(prefix, "moco")
    results_tail = TopicTail(kafka_bootstrap, topics.results)
    events_tail = TopicTail(kafka_bootstrap, topics.events)
    sender = CommandSender(kafka_bootstrap, prefix, PACE_S, source="/tests/three-processes")
    spread: list[dict[str, Any]] = []
    sending: dict[str, bool] = {}
    # (what, monotonic, wall): the disruptions, each one once the previous one's work moved.
    moments: list[tuple[str, float, float]] = []
    timeline: list[str] = []

    def mark(what: str) -> tuple[float, float]:
        sending[what] = sender.sending()
        moments.append((what, time.monotonic(), time.time()))
        return moments[-1][1:]

    def step(what: str) -> None:
        timeline.append(f"{what} {time.monotonic() - began:.1f}s")

    def listings(resource: str) -> list[float]:
        path = fake.behaviour.resource_paths[resource]
        return [e.at for e in fake.requests if e.method == "GET" and e.path.endswith(path)]

    async def served_since_last() -> bool:
        """Whether every command partition has a result since the last disruption."""
        records = await results_tail.read_to_end()
        served = first_after(result_times(records), sender.partition_of(), moments[-1][2])
        return set(served) == set(range(PARTITIONS))

    async def moved_on() -> bool:
        """Since the last disruption every command partition has a result and every
        resource was listed."""
        at = moments[-1][1]
        listed = all(any(t >= at for t in listings(r)) for r in RESOURCES)
        return listed and await served_since_last()

    async def spread_out() -> bool:
        spread[:] = [await cluster.metrics(i) for i in range(cluster.size)]
        return all(busy(s) for s in spread)

    async def restarted_busy() -> bool:
        return busy(await cluster.metrics(0))

    try:
        await cluster.start_all()
        began = time.monotonic()
        await results_tail.start()
        await events_tail.start()
        sender.start()
        assert await until(spread_out, 60), spread
        step("spread")
        change(0, "v2")

        # Calls in flight at the kill: the next LIMIT requests are answered 1 s late.
        fake.delay_next(LIMIT, 1.0)
        await asyncio.sleep(0.5)
        kill_at, kill_wall = mark("kill")
        cluster.kill(0)
        change(1, "v3")
        await until(moved_on, 40)
        step("moved after kill")

        # Restarted as Kubernetes would, while the load goes on: a new member, whose
        # shares must wait out the window of those who held them (no fresh window).
        mark("restart")
        cluster.start(0)
        await cluster.wait_ready(0)
        restarted = await until(restarted_busy, 30)
        await until(moved_on, 30)
        step("restarted, busy")
        change(2, "v4")

        # Drained while the load goes on; the load stops once every command partition
        # served again (the listings go on, and are judged, to the end).
        mark("term")
        drain = asyncio.create_task(cluster.terminate(1))
        await until(served_since_last, 40)

        async def load_went_on() -> bool:  # what "under load" asserts below, for the drain
            return sum(1 for s in sender.sent if s.at > moments[-1][1] + 1.0) >= PARTITIONS

        await until(load_went_on, 20)
        change(3, "v5")
        sent = await sender.stop()
        code = await drain
        step("drained, served after term")
        ids = {s.command_id for s in sent}

        # Read to the end offsets until every command has a result and every record's
        # current version is an event; then, 2 s later, to the end again: a late duplicate
        # would show.
        await results_tail.until(
            lambda rs: ids <= {ce(r).get_attributes()["commandid"] for r in rs},
            wait_s=90,
            settle_s=0,
        )
        step("results")
        versions.update(version_id("companies", r) for r in fake.records("companies"))

        def current() -> set[str]:
            return {version_id(res, r) for res in RESOURCES for r in fake.records(res)}

        await events_tail.until(
            lambda rs: current() <= {ce(r).get_attributes()["id"] for r in rs},
            wait_s=60,
            settle_s=2.0,
        )
        step("events")
        records = await results_tail.read_to_end()
        event_records = events_tail.records
        survivor = await cluster.metrics(2)
    finally:
        await results_tail.stop()
        await events_tail.stop()
        await cluster.stop_all()
        await fake.stop()
    logs = "\n---\n".join(m.tail(30) for m in cluster.members)
    assert code == 0, logs
    results = [ce(r) for r in records]
    events = [ce(r) for r in event_records]
    partition_of = sender.partition_of()
    statuses = Counter(r.get_data()["status"] for r in results)
    # Per disruption: seconds to the first result per command partition, and to the first
    # listing per resource.
    served = {
        what: first_after(result_times(records), partition_of, wall) for what, _, wall in moments
    }
    listed = {
        what: {r: min((t - at for t in listings(r) if t >= at), default=inf) for r in RESOURCES}
        for what, at, _ in moments
    }
    summary = (
        f"three processes: {len(sent)} commands, {len(fake.requests)} vendor requests, most "
        f"in a {WINDOW_S:.0f}s window {fake.max_requests_in_any_window(WINDOW_S)}/{LIMIT}, "
        f"429s {fake.rejected_429}, results {dict(statuses)}, events {len(events)}; "
        f"first result per partition {rounded(served)}, first listing {rounded(listed)} "
        f"(bounds {TAKEOVER_S:.0f}s, {POLL_TAKEOVER_S:.0f}s); {', '.join(timeline)}"
    )
    print("\n" + summary)

    # Under load: commands were still being sent at the kill, the restart and the drain,
    # and went on after each.
    assert sending == {"kill": True, "restart": True, "term": True}, sending
    for what, at, _ in moments:
        assert sum(1 for s in sent if s.at > at + 1.0) >= PARTITIONS, (what, summary)

    # Work was spread: each process called the vendor and polled before the kill, and the
    # restarted one again after its restart.
    for i, samples in enumerate(spread):
        assert total(samples.get("workbridge_vendor_requests_total", {})) > 0, (i, logs)
        assert busy(samples), (i, logs)
    assert restarted, logs
    assert total(survivor.get("workbridge_polls_total", {})) > 0

    # Every command got exactly one result; none was carried out twice.
    by_command = Counter(r.get_attributes()["commandid"] for r in results)
    assert set(by_command) == ids, logs
    assert set(by_command.values()) == {1}, [c for c, n in by_command.items() if n > 1]
    # `ambiguous` only for what the SIGKILLed process had in flight: at most its
    # concurrency, each answered after the kill; every other command succeeded.
    ambiguous = [
        (r.get_attributes()["commandid"], record_wall(rec))
        for r, rec in zip(results, records, strict=True)
        if r.get_data()["status"] == "ambiguous"
    ]
    assert len(ambiguous) <= CONCURRENCY, ambiguous
    assert all(wall >= kill_wall for _, wall in ambiguous), (kill_wall, ambiguous)
    assert statuses["succeeded"] == len(ids) - len(ambiguous), statuses
    names = Counter(r["name"] for r in fake.records("companies"))
    assert all(names[sender.name(s.index)] <= 1 for s in sent), names
    succeeded = {
        r.get_data()["response"]["name"] for r in results if r.get_data()["status"] == "succeeded"
    }
    assert all(names[name] == 1 for name in succeeded)

    # The vendor's limit held in every window of the whole run: across the kill, the
    # restart, the drain and the takeovers.
    assert fake.rejected_429 == 0, summary
    assert fake.max_requests_in_any_window(WINDOW_S) <= LIMIT, summary

    # Each disruption's work moved on within a session timeout (plus the margins above):
    # every command partition had a result, and every resource a listing, that soon after
    # it; and no resource went unlisted for longer from the kill to the end.
    for what, takeover in served.items():
        assert set(takeover) == set(range(PARTITIONS)), (what, summary, logs)
        late = {p: s for p, s in takeover.items() if s > TAKEOVER_S}
        assert not late, (what, late, summary, logs)
    for what, firsts in listed.items():
        unlisted = {r: s for r, s in firsts.items() if s > POLL_TAKEOVER_S}
        assert not unlisted, (what, unlisted, summary, logs)
    for resource in RESOURCES:
        gap = largest_gap(listings(resource), kill_at)
        assert gap <= POLL_TAKEOVER_S, (resource, gap, summary, logs)

    # No poll was published twice, each event is of a version the record had, with the
    # change's own id, and every record's current version was published.
    event_ids = Counter(e.get_attributes()["id"] for e in events)
    assert set(event_ids.values()) == {1}, [k for k, v in event_ids.items() if v > 1]
    assert set(event_ids) <= versions, set(event_ids) - versions
    for resource in RESOURCES:
        for record in fake.records(resource):
            assert version_id(resource, record) in event_ids, (resource, record)
    assert time.monotonic() - began < 300
