"""Two webhook receivers (the chart's webhook Deployment with two replicas), and a restart.

A signed Mobility Work request replayed to the other replica, or to a receiver that
restarted, is not refused there: the nonce guard lives in one process's memory. What holds
across replicas and restarts is the event id: it is the event's (the body without
`_sentAt`), so the replay, like the vendor's own retries signed anew, lands under the id
the first delivery got, and consumers that deduplicate by id drop it (README: webhook
threat model). This test checks that on the topic.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import aiohttp
import pytest

from adapters.app import Bridge
from adapters.config import parse_config
from adapters.core.kafka import Topics
from adapters.mobilitywork.fake import FakeMobilityWork
from tests.integration.conftest import ce, read_records

pytestmark = pytest.mark.integration

SECRET = "mw-signing-secret"
NAME = "mw"


def receiver_config(bootstrap: str, prefix: str, base_url: str) -> Any:
    return parse_config(
        {
            "kafka": {
                "bootstrap_servers": bootstrap,
                "topic_prefix": prefix,
                "topics": {"partitions": 2, "replication_factor": 1},
            },
            "server": {"host": "127.0.0.1", "port": 0, "shutdown_grace_s": 2},
            "roles": {"webhooks": True, "pollers": False, "commands": False},
            "instances": [
                {
                    "vendor": "mobilitywork",
                    "name": NAME,
                    "base_url": base_url,
                    "webhook_secret": SECRET,
                    "options": {"network_name": "Factory Inc."},
                }
            ],
        }
    )


async def post(bridge: Bridge, body: bytes, headers: dict[str, str]) -> int:
    url = f"http://127.0.0.1:{bridge.port}/webhooks/{NAME}"
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
        return r.status


async def test_a_replay_to_another_replica_or_after_a_restart_keeps_the_event_id(
    kafka_bootstrap: str, prefix: str
) -> None:
    fake = FakeMobilityWork(api_key="mw-key", webhook_secret=SECRET)
    await fake.start()
    assert fake.base_url is not None
    a = Bridge(receiver_config(kafka_bootstrap, prefix, fake.base_url))
    b = Bridge(receiver_config(kafka_bootstrap, prefix, fake.base_url))
    await a.start()
    await b.start()
    try:
        fake.subscribe("*", f"http://127.0.0.1:{a.port}/webhooks/{NAME}")
        fake.spare_part_consumed(spare_part=77, quantity=3, previous_stock=116)
        fake.spare_part_consumed(spare_part=78, quantity=1, previous_stock=5)
        await fake.wait_deliveries_idle(10)
        first, second = fake.deliveries
        assert (first.status, second.status) == (200, 200)
        headers = {k: v for k, v in first.headers.items() if k.lower() != "content-length"}
        # The same request, byte for byte: refused as a replay where it was seen ...
        assert await post(a, first.body, headers) == 200
        # ... and let through by the other replica, which never saw its nonce.
        assert await post(b, first.body, headers) == 200
        # After a restart, the receiver has forgotten the nonce too.
        await a.stop()
        a = Bridge(receiver_config(kafka_bootstrap, prefix, fake.base_url))
        await a.start()
        assert await post(a, first.body, headers) == 200
        records = await read_records(
            kafka_bootstrap, Topics(prefix, NAME).events, count=4, wait_s=15, settle=2.0
        )
    finally:
        await a.stop()
        await b.stop()
        await fake.stop()
    ids = Counter(ce(r).get_attributes()["id"] for r in records)
    subjects = {ce(r).get_attributes()["id"]: ce(r).get_attributes()["subject"] for r in records}
    # Two events: the first delivered once and replayed twice where its nonce was unknown.
    assert sorted(ids.values()) == [1, 3], ids
    assert sorted(subjects.values()) == ["spare_part/77", "spare_part/78"]
