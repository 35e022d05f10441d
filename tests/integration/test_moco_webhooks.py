"""MOCO webhooks through the bridge, on the real broker, sent by the fake MOCO."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import msgspec
import pytest

from adapters.core.kafka import Topics
from adapters.localkafka.launcher import LocalKafka
from adapters.moco.fake import FakeMoco, sign_webhook
from tests.integration.conftest import SECRET, BridgeFactory, ce, read_records

pytestmark = pytest.mark.integration


def webhook_url(bridge_port: int) -> str:
    return f"http://127.0.0.1:{bridge_port}/webhooks/moco"


async def test_signed_webhook_becomes_cloudevent(
    kafka_bootstrap: str, prefix: str, fake_moco: FakeMoco, start_bridge: BridgeFactory
) -> None:
    bridge = await start_bridge()
    fake_moco.subscribe("Activity", "*", webhook_url(bridge.port))
    record = fake_moco.create_record("activities", {"description": "pump check", "hours": 1.5})
    await fake_moco.wait_deliveries_idle(10)
    assert [d.status for d in fake_moco.deliveries] == [200]

    [rec] = await read_records(kafka_bootstrap, Topics(prefix, "moco").events, count=1, settle=0.5)
    event = ce(rec)
    attrs = event.get_attributes()
    assert attrs["type"] == "workbridge.moco.activity.created"
    assert attrs["source"] == "/moco/moco"
    assert attrs["subject"] == f"activity/{record['id']}"
    assert rec.key == f"moco/activity/{record['id']}".encode()
    assert attrs["vendoruserid"] == "1"
    assert dict(rec.headers)["content-type"] == b"application/json"
    assert event.get_data()["description"] == "pump check"
    sent_ms = int(fake_moco.deliveries[0].headers["X-Moco-Timestamp"])
    assert abs(attrs["time"].timestamp() * 1000 - sent_ms) < 1


async def test_bad_signature_is_refused_and_nothing_published(
    kafka_bootstrap: str, prefix: str, start_bridge: BridgeFactory
) -> None:
    bridge = await start_bridge()
    body = b'{"id": 7, "description": "forged"}'
    headers = {
        "X-Moco-Target": "Activity",
        "X-Moco-Event": "create",
        "X-Moco-Timestamp": "1527170410463",
        "Content-Type": "application/json",
    }
    async with aiohttp.ClientSession() as http:
        wrong = sign_webhook(body, "0" * 32)
        async with http.post(
            webhook_url(bridge.port), data=body, headers={**headers, "X-Moco-Signature": wrong}
        ) as resp:
            assert resp.status == 401
        async with http.post(webhook_url(bridge.port), data=body, headers=headers) as resp:
            assert resp.status == 401  # unsigned
        good = b'{"id": 8, "description": "real"}'
        async with http.post(
            webhook_url(bridge.port),
            data=good,
            headers={**headers, "X-Moco-Signature": sign_webhook(good, SECRET)},
        ) as resp:
            assert resp.status == 200
    records = await read_records(
        kafka_bootstrap, Topics(prefix, "moco").events, count=1, settle=1.0
    )
    assert [ce(r).get_attributes()["subject"] for r in records] == ["activity/8"]


async def test_redelivered_webhook_keeps_its_id(
    kafka_bootstrap: str, prefix: str, fake_moco: FakeMoco, start_bridge: BridgeFactory
) -> None:
    bridge = await start_bridge()
    fake_moco.subscribe("Project", "*", webhook_url(bridge.port))
    fake_moco.create_record("projects", {"name": "Line 4"})
    await fake_moco.wait_deliveries_idle(10)
    fake_moco.resend_last()
    await fake_moco.wait_deliveries_idle(10)
    records = await read_records(
        kafka_bootstrap, Topics(prefix, "moco").events, count=2, settle=0.5
    )
    ids = [ce(r).get_attributes()["id"] for r in records]
    assert len(ids) == 2 and ids[0] == ids[1]


async def test_authentic_but_unparseable_body_goes_to_dlq(
    kafka_bootstrap: str, prefix: str, start_bridge: BridgeFactory
) -> None:
    bridge = await start_bridge()
    body = b"this is not json"
    headers = {
        "X-Moco-Target": "Activity",
        "X-Moco-Event": "create",
        "X-Moco-Timestamp": "1",
        "X-Moco-Signature": sign_webhook(body, SECRET),
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(webhook_url(bridge.port), data=body, headers=headers) as resp,
    ):
        assert 200 <= resp.status < 300
    topics = Topics(prefix, "moco")
    [dead] = await read_records(kafka_bootstrap, topics.dlq, count=1, settle=0.5)
    assert dead.value == body
    hdrs = dict(dead.headers)
    assert b"not JSON" in hdrs["workbridge_error"]
    assert hdrs["http_x-moco-target"] == b"Activity"
    assert await read_records(kafka_bootstrap, topics.events, count=0, settle=0.5) == []


async def test_kafka_down_answers_5xx_in_time_and_vendor_retry_lands(
    kafka_bootstrap: str,
    prefix: str,
    fake_moco: FakeMoco,
    start_bridge: BridgeFactory,
    restartable_kafka: LocalKafka,
) -> None:
    bridge = await start_bridge()
    fake_moco.subscribe("Activity", "*", webhook_url(bridge.port))
    # Warm up: topic metadata is known before the outage, as in a running deployment.
    fake_moco.create_record("activities", {"description": "before"})
    await fake_moco.wait_deliveries_idle(10)

    await restartable_kafka.pause()
    record = fake_moco.create_record("activities", {"description": "during outage"})
    started = time.monotonic()
    while not any(d.status is not None and d.status >= 500 for d in fake_moco.deliveries[1:]):
        assert time.monotonic() - started < 15, "no 5xx answer while Kafka was down"
        await asyncio.sleep(0.1)
    failing = [d for d in fake_moco.deliveries[1:] if d.status is not None and d.status >= 500]
    # Answered well within MOCO's 10 s, and not 2xx while Kafka could not take the event.
    assert all(d.status != 200 for d in fake_moco.deliveries[1:2])
    assert time.monotonic() - started < 10
    assert failing[0].status == 503

    await restartable_kafka.resume()
    await fake_moco.wait_deliveries_idle(60)
    assert fake_moco.deliveries[-1].status == 200
    records = await read_records(kafka_bootstrap, Topics(prefix, "moco").events, count=2, wait_s=30)
    subjects = {ce(r).get_attributes()["subject"] for r in records}
    assert f"activity/{record['id']}" in subjects
    body = msgspec.json.decode(records[-1].value)
    assert body["description"] in {"before", "during outage"}
