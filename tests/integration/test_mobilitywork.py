"""Mobility Work on the real broker: signed webhooks and task commands, with its fake."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import msgspec
import pytest

from adapters.app import Bridge
from adapters.config import parse_config
from adapters.core.kafka import Topics
from adapters.mobilitywork.fake import FakeMobilityWork, new_nonce, signature_header
from tests.integration.conftest import ce, publish_command, read_records

pytestmark = pytest.mark.integration

API_KEY = "913a8f7cef6ff084f1635511b9c7d07c3bab2816"
SECRET = "mw-signing-secret"
NAME = "mw"


@pytest.fixture
async def fake_mw() -> AsyncIterator[FakeMobilityWork]:
    fake = FakeMobilityWork(api_key=API_KEY, webhook_secret=SECRET)
    await fake.start()
    yield fake
    await fake.stop()


MWBridge = Callable[..., Awaitable[Bridge]]


@pytest.fixture
async def mw_bridge(
    kafka_bootstrap: str, prefix: str, fake_mw: FakeMobilityWork
) -> AsyncIterator[MWBridge]:
    bridges: list[Bridge] = []

    async def start(**instance: Any) -> Bridge:
        raw = {
            "vendor": "mobilitywork",
            "name": NAME,
            "base_url": fake_mw.base_url,
            "api_key": API_KEY,
            "webhook_secret": SECRET,
            "options": {"network_name": "Factory Inc."},
            **instance,
        }
        config = parse_config(
            {
                "kafka": {
                    "bootstrap_servers": kafka_bootstrap,
                    "topic_prefix": prefix,
                    "topics": {"partitions": 2, "replication_factor": 1},
                },
                "server": {"host": "127.0.0.1", "port": 0, "shutdown_grace_s": 5},
                "instances": [raw],
            }
        )
        bridge = Bridge(config)
        await bridge.start()
        bridges.append(bridge)
        return bridge

    yield start
    for bridge in bridges:
        await bridge.stop()


def url(bridge: Bridge) -> str:
    return f"http://127.0.0.1:{bridge.port}/webhooks/{NAME}"


def events_topic(prefix: str) -> str:
    return Topics(prefix, NAME).events


async def test_signed_webhook_becomes_the_right_cloudevent(
    kafka_bootstrap: str, prefix: str, fake_mw: FakeMobilityWork, mw_bridge: MWBridge
) -> None:
    bridge = await mw_bridge()
    fake_mw.subscribe("*", url(bridge))
    sent = fake_mw.spare_part_consumed(quantity=3, previous_stock=116, spare_part=77)
    await fake_mw.wait_deliveries_idle(10)
    assert [d.status for d in fake_mw.deliveries] == [200]
    [record] = await read_records(kafka_bootstrap, events_topic(prefix), count=1, settle=0.5)
    attrs = ce(record).get_attributes()
    assert attrs["type"] == "workbridge.mobilitywork.spare_part.consumed"
    assert attrs["subject"] == "spare_part/77"
    assert attrs["source"] == f"/mobilitywork/{fake_mw.network_id}"
    assert attrs["time"].isoformat() == sent.envelope["emittedAt"]
    assert msgspec.json.decode(record.value)["consumed"]["quantity"] == 3
    assert record.key == f"{NAME}/spare_part/77".encode()


async def test_forged_and_stale_webhooks_are_refused_and_a_replay_is_published_once(
    kafka_bootstrap: str, prefix: str, fake_mw: FakeMobilityWork, mw_bridge: MWBridge
) -> None:
    bridge = await mw_bridge()
    fake_mw.subscribe("*", url(bridge))
    fake_mw.task_event("TaskWasCreated", {"id": 5, "description": "Replace motor part"})
    await fake_mw.wait_deliveries_idle(10)
    fake_mw.resend_last()  # the identical request again (a 200 that got lost): same nonce
    await fake_mw.wait_deliveries_idle(30)
    statuses = [d.status for d in fake_mw.deliveries]
    # The authentic repeat is answered 200, so Mobility Work stops retrying it, and it is
    # not published a second time (checked on the topic below).
    assert statuses == [200, 200]

    body = fake_mw.webhooks[-1].body
    now = int(time.time())
    async with aiohttp.ClientSession() as http:
        forged = signature_header("not-the-secret", now, new_nonce(), body)
        stale = signature_header(SECRET, now - 3600, new_nonce(), body)
        future = signature_header(SECRET, now + 3600, new_nonce(), body)
        for header in (forged, stale, future, ""):
            headers = {"X-MW-Signature": header} if header else {}
            async with http.post(url(bridge), data=body, headers=headers) as resp:
                assert resp.status == 401, header
    records = await read_records(kafka_bootstrap, events_topic(prefix), count=1, settle=1.0)
    assert [ce(r).get_attributes()["type"] for r in records] == [
        "workbridge.mobilitywork.task.created"
    ]


async def test_unknown_event_still_arrives_and_unsigned_instance_accepts(
    kafka_bootstrap: str, prefix: str, fake_mw: FakeMobilityWork, mw_bridge: MWBridge
) -> None:
    bridge = await mw_bridge(webhook_secret="")  # signing off at Mobility Work too
    fake_mw.subscribe("*", url(bridge), secret=None)
    fake_mw.emit("MeterReadingWasRecorded", {"meterReading": {"id": 9, "value": 4.2}})
    await fake_mw.wait_deliveries_idle(10)
    [record] = await read_records(kafka_bootstrap, events_topic(prefix), count=1, settle=0.5)
    attrs = ce(record).get_attributes()
    assert attrs["type"] == "workbridge.mobilitywork.meter_reading.recorded"
    assert attrs["subject"] == "meter_reading/9"


def task(**extra: Any) -> dict[str, Any]:
    return {
        "equipment": {"type": "externalReference", "value": "PUMP-001"},
        "description": "Replace motor part",
        "startDateTime": "2026-11-24T09:00:00+00:00",
        "endDateTime": "2026-11-24T10:00:00+00:00",
        "allDay": False,
        "assignees": [3],
        **extra,
    }


async def results(bootstrap: str, prefix: str, count: int) -> list[dict[str, Any]]:
    records = await read_records(bootstrap, Topics(prefix, NAME).results, count=count, settle=1.0)
    return [ce(r).get_data() for r in records]


FAST = {"enabled": True, "backoff_base_s": 0.2, "backoff_max_s": 1, "deadline_s": 30}


async def test_task_create_succeeds_with_the_request_id(
    kafka_bootstrap: str, prefix: str, fake_mw: FakeMobilityWork, mw_bridge: MWBridge
) -> None:
    await mw_bridge(commands=FAST, webhooks={"enabled": False})
    await publish_command(
        kafka_bootstrap,
        prefix,
        type="workbridge.mobilitywork.task.create",
        data=task(),
        subject="equipment/PUMP-001",
        instance=NAME,
    )
    [result] = await results(kafka_bootstrap, prefix, 1)
    assert result["status"] == "succeeded", result
    assert result["http_status"] == 201 and result.get("response") is None
    [call] = fake_mw.calls
    assert result["request_id"] == call.header("Request-Id") or result["request_id"]
    assert call.header("Api-Key") == API_KEY
    assert "Factory Inc." in (call.header("User-Agent") or "")
    assert call.header("Content-Type") == "application/json"
    assert len(fake_mw.tasks) == 1


async def test_task_create_400_carries_every_property_error_and_is_not_retried(
    kafka_bootstrap: str, prefix: str, fake_mw: FakeMobilityWork, mw_bridge: MWBridge
) -> None:
    await mw_bridge(commands=FAST, webhooks={"enabled": False})
    bad = task(equipment=99999, assignees=["nobody@factory.example", "ghost@factory.example"])
    await publish_command(
        kafka_bootstrap,
        prefix,
        type="workbridge.mobilitywork.task.create",
        data=bad,
        subject="equipment/99999",
        instance=NAME,
    )
    [result] = await results(kafka_bootstrap, prefix, 1)
    assert result["status"] == "failed" and result["attempts"] == 1
    errors = result["error"]["extended_message"]["property_errors"]
    assert set(errors) == {"/equipment", "/assignees/0", "/assignees/1"}
    assert errors["/equipment"][0]["messageKey"] == "error.payload.equipment.unknown"
    assert fake_mw.tasks == []


async def test_task_create_503_is_retried_and_invalid_data_never_sent(
    kafka_bootstrap: str, prefix: str, fake_mw: FakeMobilityWork, mw_bridge: MWBridge
) -> None:
    await mw_bridge(commands=FAST, webhooks={"enabled": False})
    fake_mw.fail_next(2, 503)
    await publish_command(
        kafka_bootstrap,
        prefix,
        type="workbridge.mobilitywork.task.create",
        data=task(),
        subject="equipment/PUMP-001",
        instance=NAME,
    )
    await publish_command(
        kafka_bootstrap,
        prefix,
        type="workbridge.mobilitywork.task.create",
        data=task(description="ab"),
        subject="equipment/PUMP-001",
        instance=NAME,
    )
    out = await results(kafka_bootstrap, prefix, 2)
    assert [r["status"] for r in out] == ["succeeded", "rejected"], out
    assert out[0]["attempts"] == 3
    assert "description" in out[1]["error"]
    assert len(fake_mw.calls) == 1
