"""Three `workbridge run` processes on one broker and the fake MOCO: polls and commands
spread over them; one is SIGKILLed under load and another SIGTERMed. Its work moves on,
no poll is published twice, no side effect repeats, every command gets one result, the
vendor's limit holds in every window, and events keep their ids."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from adapters.core.kafka import Topics
from adapters.core.poller import owner_partition
from adapters.moco.fake import FakeMoco
from adapters.moco.ids import change_event_id, parse_time
from tests.integration.conftest import API_KEY, SECRET, Outgoing, ce, publish_commands, read_records
from tests.process_cluster import Cluster, total

pytestmark = pytest.mark.integration

# A budget the test can watch: 20 requests per 2 s, for the whole deployment.
LIMIT, WINDOW_S = 20, 2.0
COMMANDS = 90
RESOURCES = ["projects", "companies", "activities", "users", "deals", "offers", "invoices"]
SESSION_TIMEOUT_S = 10.0  # aiokafka's default, which the consumer groups use
# Poll tasks go to cursor partitions by a stable hash of their key; with 4 partitions, each
# holds one of these resources at least, so that each of the three processes polls.
PARTITIONS = 4


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
        "polling": {"enabled": True, "resources": RESOURCES, "interval_s": 1, "page_size": 5},
        "commands": {"enabled": True, "deadline_s": 120, "backoff_base_s": 0.2},
    }


def company_creates(n: int) -> list[Outgoing]:
    return [
        (
            "workbridge.moco.company.create",
            {"name": f"Co {i}", "type": "customer", "currency": "CHF"},
            f"company/new-{i}",
        )
        for i in range(n)
    ]


async def results_so_far(bootstrap: str, prefix: str) -> list[Any]:
    records = await read_records(bootstrap, Topics(prefix, "moco").results, count=10**6, wait_s=1)
    return [ce(r) for r in records]


async def wait_results(bootstrap: str, prefix: str, n: int, wait_s: float) -> list[Any]:
    deadline = time.monotonic() + wait_s
    while True:
        results = await results_so_far(bootstrap, prefix)
        if len(results) >= n or time.monotonic() > deadline:
            return results
        await asyncio.sleep(1.0)


def busy(samples: dict[str, Any]) -> bool:
    return (
        total(samples.get("workbridge_polls_total", {})) > 0
        and total(samples.get("workbridge_command_results_total", {})) > 0
    )


async def until_spread(cluster: Cluster, wait_s: float = 60.0) -> list[dict[str, Any]]:
    """Each process's metrics once every one of them has polled and answered a command."""
    deadline = time.monotonic() + wait_s
    while True:
        spread = [await cluster.metrics(i) for i in range(cluster.size)]
        if all(busy(s) for s in spread) or time.monotonic() > deadline:
            return spread
        await asyncio.sleep(0.5)


def current_version_ids(fake: FakeMoco) -> set[str]:
    return {
        change_event_id("moco", singular, record["id"], parse_time(record["updated_at"]))
        for resource, singular in (("companies", "company"), ("projects", "project"))
        for record in fake.records(resource)
    }


async def until_versions_published(
    bootstrap: str, prefix: str, fake: FakeMoco, wait_s: float
) -> list[Any]:
    """The events topic once every current company and project version is on it."""
    deadline = time.monotonic() + wait_s
    while True:
        records = await read_records(
            bootstrap, Topics(prefix, "moco").events, count=10**6, wait_s=1, settle=0.5
        )
        events = [ce(r) for r in records]
        seen = {e.get_attributes()["id"] for e in events}
        if current_version_ids(fake) <= seen or time.monotonic() > deadline:
            return events
        await asyncio.sleep(1.0)


def largest_gap(times: list[float], after: float) -> float:
    later = sorted(t for t in times if t >= after)
    points = [after, *later]
    return max(b - a for a, b in itertools.pairwise(points)) if later else float("inf")


async def test_three_processes_share_the_work_and_survive_a_kill_and_a_drain(
    tmp_path: Path, kafka_bootstrap: str, prefix: str
) -> None:
    fake = FakeMoco(api_key=API_KEY, webhook_secret=SECRET, rate_limit=(LIMIT, WINDOW_S))
    await fake.start()
    assert fake.base_url is not None
    for resource in RESOURCES:
        for i in range(4):
            fake.create_record(resource, {"name": f"{resource}-{i}"})
    assert {owner_partition(r, PARTITIONS) for r in RESOURCES} == set(range(PARTITIONS))
    cluster = Cluster(
        tmp_path,
        kafka_bootstrap,
        prefix,
        [instance(fake.base_url, tmp_path)],
        partitions=PARTITIONS,
    )
    try:
        await cluster.start_all()
        began = time.monotonic()
        sender = asyncio.create_task(
            publish_commands(
                kafka_bootstrap,
                prefix,
                company_creates(COMMANDS),
                source="/tests/three-processes",
                idempotency_keys=[f"three-{i}" for i in range(COMMANDS)],
                pace_s=0.25,
            )
        )
        # Under load: records change while the commands run.
        await asyncio.sleep(3)
        for resource in RESOURCES:
            fake.update_record(resource, fake.records(resource)[0]["id"], {"name": "v2"})
        spread = await until_spread(cluster)
        kill_at = time.monotonic()
        cluster.kill(0)
        await asyncio.sleep(4)
        for resource in RESOURCES:
            fake.update_record(resource, fake.records(resource)[1]["id"], {"name": "v3"})
        term_at = time.monotonic()
        code = await cluster.terminate(1)
        ids = await sender
        results = await wait_results(kafka_bootstrap, prefix, COMMANDS, wait_s=120)
        # The survivor's polls see the last versions (its polls' share of the budget is
        # half of it, and the companies listing grew by the commands' records).
        events = await until_versions_published(kafka_bootstrap, prefix, fake, wait_s=90)
        survivor = await cluster.metrics(2)
    finally:
        await cluster.stop_all()
        await fake.stop()
    logs = "\n---\n".join(m.tail(30) for m in cluster.members)
    assert code == 0, logs

    # Work was spread: each process called the vendor and polled before the kill.
    for i, samples in enumerate(spread):
        assert total(samples.get("workbridge_vendor_requests_total", {})) > 0, (i, logs)
        assert busy(samples), (i, logs)
    assert total(survivor.get("workbridge_polls_total", {})) > 0

    # Every command got exactly one result; none was carried out twice.
    by_command = Counter(r.get_attributes()["commandid"] for r in results)
    assert set(by_command) == set(ids), logs
    assert set(by_command.values()) == {1}
    statuses = Counter(r.get_data()["status"] for r in results)
    assert set(statuses) <= {"succeeded", "ambiguous"}, statuses
    names = Counter(r["name"] for r in fake.records("companies"))
    assert all(names[f"Co {i}"] <= 1 for i in range(COMMANDS)), names
    succeeded = {
        r.get_data()["response"]["name"] for r in results if r.get_data()["status"] == "succeeded"
    }
    assert all(names[name] == 1 for name in succeeded)

    # The vendor's limit held in every window, across the kill, the drain and the takeovers.
    print(
        f"\nthree processes: {len(fake.requests)} vendor requests, most in a {WINDOW_S:.0f}s "
        f"window {fake.max_requests_in_any_window(WINDOW_S)}/{LIMIT}, 429s {fake.rejected_429}, "
        f"results {dict(statuses)}, events {len(events)}"
    )
    assert fake.rejected_429 == 0
    assert fake.max_requests_in_any_window(WINDOW_S) <= LIMIT

    # The killed and the drained process's work moved on within a session timeout: no
    # resource went unpolled, and no command partition unserved, for longer than that.
    slack = SESSION_TIMEOUT_S + WINDOW_S + 8.0
    for resource in RESOURCES:
        path = fake.behaviour.resource_paths[resource]
        listed = [e.at for e in fake.requests if e.method == "GET" and e.path.endswith(path)]
        assert largest_gap(listed, kill_at) < slack, (resource, logs)
        assert largest_gap(listed, term_at) < slack, (resource, logs)
    created = [e.at for e in fake.requests if e.method == "POST"]
    assert largest_gap(created, kill_at) < slack, logs

    # No poll was published twice, and each version's event has the change's own id.
    event_ids = Counter(e.get_attributes()["id"] for e in events)
    assert set(event_ids.values()) == {1}, [k for k, v in event_ids.items() if v > 1]
    for resource, singular in (("companies", "company"), ("projects", "project")):
        for record in fake.records(resource):
            expected = change_event_id(
                "moco", singular, record["id"], parse_time(record["updated_at"])
            )
            assert expected in event_ids, (resource, record)
    assert time.monotonic() - began < 300
