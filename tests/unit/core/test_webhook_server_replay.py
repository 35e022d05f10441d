"""The webhook server with Mobility Work instances: signed nonces, replays, unsigned calls.

No Kafka: aiohttp's loopback test server and a recording publisher.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from adapters.config import parse_config
from adapters.core.cloudevents_codec import stable_id
from adapters.core.instance import Instance, build_instance
from adapters.core.publisher import NotAcknowledged, Overloaded
from adapters.core.replay_guard import ReplayGuard
from adapters.core.webhook_server import WebhookServer
from adapters.mobilitywork.webhooks import event_digest
from adapters.registry import VENDORS
from tests.unit.core.webhook_harness import FakePublisher, served

SECRET = "mw-webhook-secret-0123456789abcdef"
API_KEY = "913a8f7cef6ff084f1635511b9c7d07c3bab2816"
NETWORK = "6f1d0c1e-4b7a-4f4e-9d1a-0a2b3c4d5e6f"
NONCE = "752c14ea195c460bac3c3b7896975ee9fd15eeb7"


def body_of(event: str = "SparePartWasConsumed", **extra: Any) -> bytes:
    data = {
        "_type": f"{event}Webhook",
        "_event": event,
        "_sentAt": "2022-06-02T14:31:06+00:00",
        "emittedAt": "2023-02-08T23:00:00+00:00",
        "_metadata": "",
        "task": {"id": 987},
        "sparePart": {"id": 456},
        "consumed": {"_type": "SparePartConsumption", "quantity": 3, "previousStock": 116},
        "networkId": NETWORK,
        **extra,
    }
    return json.dumps(data, separators=(",", ":")).encode()


BODY = body_of()


def mw_headers(
    body: bytes = BODY,
    *,
    nonce: str = NONCE,
    t: str | None = None,
    secret: str = SECRET,
    **extra: str,
) -> dict[str, str]:
    stamp = str(int(time.time())) if t is None else t
    sig = hmac.new(secret.encode(), f"{stamp}.{nonce}.".encode() + body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-MW-Signature": f"t={stamp},nonce={nonce},signature={sig}",
        **extra,
    }


def instances() -> dict[str, Instance]:
    base = {
        "vendor": "mobilitywork",
        "base_url": "http://127.0.0.1:1",
        "api_key": API_KEY,
        "options": {"network_name": "Factory Inc."},
    }
    cfg = parse_config(
        {
            "kafka": {"bootstrap_servers": "127.0.0.1:1"},
            "instances": [
                {**base, "name": "mw", "webhook_secret": SECRET},
                {**base, "name": "mw-b", "webhook_secret": SECRET},
                {**base, "name": "mw-open"},
            ],
        },
        env={},
    )
    built = [build_instance(i, VENDORS["mobilitywork"], "workbridge") for i in cfg.instances]
    return {i.name: i for i in built}


@dataclass
class Env:
    client: TestClient
    publisher: FakePublisher
    server: WebhookServer
    instances: dict[str, Instance]

    async def post(self, name: str, body: bytes, headers: dict[str, str]) -> int:
        resp = await self.client.post(f"/webhooks/{name}", data=body, headers=headers)
        await resp.read()
        return resp.status


@pytest_asyncio.fixture
async def env() -> AsyncIterator[Env]:
    publisher = FakePublisher()
    insts = instances()
    async with served(insts, publisher, max_body_bytes=65536) as (client, server):
        yield Env(client, publisher, server, insts)


def hdrs(record: tuple[str, bytes | None, bytes, Any]) -> dict[str, bytes]:
    return dict(record[3])


# --- a signed delivery ---------------------------------------------------------------------


async def test_signed_webhook_becomes_the_right_cloudevent(env: Env) -> None:
    assert await env.post("mw", BODY, mw_headers()) == 200
    [(topic, key, value, headers)] = env.publisher.records
    assert topic == "workbridge.mw.events"
    assert key == b"mw/spare_part/456"
    assert value == BODY
    h = dict(headers)
    assert h["ce_type"] == b"workbridge.mobilitywork.spare_part.consumed"
    assert h["ce_subject"] == b"spare_part/456"
    assert h["ce_source"] == f"/mobilitywork/{NETWORK}".encode()
    assert h["ce_id"] == stable_id("mw", "webhook", event_digest(json.loads(BODY))).encode()
    assert h["ce_time"].startswith(b"2023-02-08T23:00:00")
    assert h["ce_partitionkey"] == b"mw/spare_part/456"
    assert h["ce_dataschema"] == (
        b"https://workbridge.dev/schemas/events/workbridge.mobilitywork.spare_part.consumed.json"
    )
    assert all(SECRET.encode() not in v and API_KEY.encode() not in v for v in h.values())


async def test_unknown_event_still_arrives_without_a_dataschema(env: Env) -> None:
    body = body_of("MeterReadingWasRecorded", meterReading={"id": 77})
    assert await env.post("mw", body, mw_headers(body)) == 200
    [record] = env.publisher.records
    h = hdrs(record)
    assert record[0] == "workbridge.mw.events"
    assert h["ce_type"] == b"workbridge.mobilitywork.meter_reading.recorded"
    assert h["ce_subject"] == b"meter_reading/77"
    assert "ce_dataschema" not in h


# --- replays -------------------------------------------------------------------------------


async def test_a_retried_delivery_already_published_gets_200_and_publishes_nothing(
    env: Env,
) -> None:
    # Mobility Work retries anything but 200: a lost 200 must not become a 401 loop.
    headers = mw_headers()
    assert await env.post("mw", BODY, headers) == 200
    assert await env.post("mw", BODY, headers) == 200
    assert await env.post("mw", BODY, headers) == 200
    assert len(env.publisher.calls) == 1


async def test_a_nonce_re_signed_later_is_the_same_delivery(env: Env) -> None:
    assert await env.post("mw", BODY, mw_headers()) == 200
    # Re-signed later (another t), same nonce: still the same delivery, published once.
    assert await env.post("mw", BODY, mw_headers(t=str(int(time.time()) - 30))) == 200
    assert len(env.publisher.calls) == 1


async def test_a_replay_that_is_forged_or_stale_is_still_401(env: Env) -> None:
    assert await env.post("mw", BODY, mw_headers()) == 200
    assert await env.post("mw", BODY, mw_headers(secret="wrong-secret")) == 401
    assert await env.post("mw", BODY, mw_headers(t=str(int(time.time()) - 900))) == 401
    assert len(env.publisher.calls) == 1


async def test_a_new_nonce_is_a_new_delivery_of_the_same_event(env: Env) -> None:
    # The vendor may sign a retry anew: it is let through (the nonce is new) and published
    # under the event's own id, so consumers drop it as a repeat.
    assert await env.post("mw", BODY, mw_headers()) == 200
    assert await env.post("mw", BODY, mw_headers(nonce="another-nonce")) == 200
    a, b = env.publisher.records
    assert hdrs(a)["ce_id"] == hdrs(b)["ce_id"]


@pytest.mark.parametrize(
    "failure", [NotAcknowledged("no ack within 1.0s"), Overloaded("2000 sends await Kafka")]
)
async def test_a_retry_after_a_503_is_accepted(env: Env, failure: Exception) -> None:
    headers = mw_headers()
    env.publisher.raises = failure
    assert await env.post("mw", BODY, headers) == 503
    assert env.publisher.calls == []
    # The nonce is remembered only after a successful publish: Mobility Work's retry passes.
    env.publisher.raises = None
    assert await env.post("mw", BODY, headers) == 200
    assert len(env.publisher.calls) == 1
    # ... and from then on it is a replay: answered 200, not published again.
    assert await env.post("mw", BODY, headers) == 200
    assert len(env.publisher.calls) == 1


async def test_a_rejected_request_does_not_burn_its_nonce(env: Env) -> None:
    assert await env.post("mw", BODY, mw_headers(secret="wrong-secret")) == 401
    assert await env.post("mw", BODY, mw_headers()) == 200


async def test_a_dead_lettered_delivery_is_remembered(env: Env) -> None:
    body = b'{"no":"event"}'
    assert await env.post("mw", body, mw_headers(body)) == 200
    assert [r[0] for r in env.publisher.records] == ["workbridge.mw.dlq"]
    # It is on Kafka (in the DLQ) and was answered 2xx: a second copy is a replay.
    assert env.server.replays["mw"].seen(NONCE, 600)
    assert await env.post("mw", body, mw_headers(body)) == 200
    assert len(env.publisher.records) == 1


async def test_replay_guard_is_per_instance(env: Env) -> None:
    headers = mw_headers()
    assert await env.post("mw", BODY, headers) == 200
    assert await env.post("mw-b", BODY, headers) == 200
    assert [r[0] for r in env.publisher.records] == [
        "workbridge.mw.events",
        "workbridge.mw-b.events",
    ]
    assert await env.post("mw-b", BODY, headers) == 200
    assert len(env.publisher.records) == 2


async def test_the_nonce_is_remembered_for_twice_the_tolerance(env: Env) -> None:
    now = [1000.0]
    env.server.replays["mw"] = ReplayGuard(clock=lambda: now[0])
    assert await env.post("mw", BODY, mw_headers()) == 200
    now[0] += 599
    assert await env.post("mw", BODY, mw_headers()) == 200
    assert len(env.publisher.calls) == 1
    now[0] += 2
    # Forgotten after 2 x 300 s (a real replay would be refused by its stale timestamp by then).
    assert await env.post("mw", BODY, mw_headers()) == 200


async def test_a_concurrent_replay_is_not_published_twice(env: Env) -> None:
    env.publisher.gate = asyncio.Event()
    headers = mw_headers()
    first = asyncio.create_task(env.post("mw", BODY, headers))
    for _ in range(200):
        if env.publisher.entered == 1:
            break
        await asyncio.sleep(0.005)
    assert env.publisher.entered == 1
    second = asyncio.create_task(env.post("mw", BODY, headers))
    for _ in range(200):
        if second.done() or env.publisher.entered >= 2:
            break
        await asyncio.sleep(0.005)
    # The copy waits for the first instead of racing it...
    assert not second.done()
    assert env.publisher.entered == 1
    env.publisher.gate.set()
    statuses = await asyncio.gather(first, second)
    # ... and, once that one is on Kafka, is answered 200 without a second publish.
    assert statuses == [200, 200]
    assert len(env.publisher.calls) == 1


async def test_a_concurrent_copy_publishes_itself_when_the_first_fails(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = asyncio.Event()
    failures = [NotAcknowledged("no ack within 1.0s")]
    calls: list[Any] = []

    async def publish(records: list[Any], *, timeout_s: float) -> None:
        calls.append(records)
        await gate.wait()
        if failures:
            raise failures.pop()

    monkeypatch.setattr(env.publisher, "publish", publish)
    headers = mw_headers()
    first = asyncio.create_task(env.post("mw", BODY, headers))
    for _ in range(200):
        if calls:
            break
        await asyncio.sleep(0.005)
    second = asyncio.create_task(env.post("mw", BODY, headers))
    await asyncio.sleep(0.05)
    assert len(calls) == 1  # the copy waits
    gate.set()
    # The first copy's publish failed (503, the vendor will retry); the waiting copy then
    # claims the nonce and publishes.
    assert await asyncio.gather(first, second) == [503, 200]
    assert len(calls) == 2


async def test_two_different_signature_headers_are_refused(env: Env) -> None:
    good = mw_headers()["X-MW-Signature"]
    forged = mw_headers(secret="wrong-secret")["X-MW-Signature"]
    for pair in ((forged, good), (good, forged)):
        headers = [("Content-Type", "application/json")] + [("X-MW-Signature", v) for v in pair]
        resp = await env.client.post("/webhooks/mw", data=BODY, headers=headers)
        assert resp.status == 401
    assert env.publisher.calls == []
    # The same value twice is one signature.
    headers = [("X-MW-Signature", good), ("X-MW-Signature", good)]
    resp = await env.client.post("/webhooks/mw", data=BODY, headers=headers)
    assert resp.status == 200


# --- refused -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_headers",
    [
        # Built when the test runs: a timestamp taken at import goes stale in a long session.
        pytest.param(lambda: mw_headers(secret="wrong-secret"), id="wrong-signature"),
        pytest.param(lambda: mw_headers(t=str(int(time.time()) - 600)), id="stale"),
        pytest.param(lambda: mw_headers(t=str(int(time.time()) + 600)), id="future"),
        pytest.param(lambda: mw_headers(BODY + b" "), id="body-changed"),
        pytest.param(lambda: {"Content-Type": "application/json"}, id="missing"),
        pytest.param(lambda: {"X-MW-Signature": "garbage"}, id="malformed"),
        pytest.param(lambda: {"X-MW-Signature": "t=abc,nonce=n,signature=00"}, id="non-digit-t"),
    ],
)
async def test_refused_with_401_and_nothing_published(
    env: Env, make_headers: Callable[[], dict[str, str]]
) -> None:
    assert await env.post("mw", BODY, make_headers()) == 401
    assert env.publisher.calls == []


async def test_a_bad_signature_on_garbage_is_401_not_dlq(env: Env) -> None:
    body = b"not json"
    assert await env.post("mw", body, mw_headers(body, secret="wrong-secret")) == 401
    assert env.publisher.calls == []


async def test_authentic_body_without_event_goes_to_the_dlq_without_credentials(env: Env) -> None:
    body = b'{"_type":"X"}'
    headers = mw_headers(body, **{"Api-Key": "must-not-be-copied"})
    assert await env.post("mw", body, headers) == 200
    [(topic, key, value, dlq_headers)] = env.publisher.records
    assert topic == "workbridge.mw.dlq"
    assert key is None
    assert value == body
    h = dict(dlq_headers)
    assert h["workbridge_error"] == b"body has no `_event`"
    assert "http_api-key" not in h
    assert "http_x-mw-signature" in h
    assert all(b"must-not-be-copied" not in v for v in h.values())


# --- unsigned instance ---------------------------------------------------------------------


def test_unsigned_instance_is_warned_about_at_start_up() -> None:
    base = {"vendor": "mobilitywork", "base_url": "http://127.0.0.1:1"}
    cfg = parse_config(
        {
            "kafka": {"bootstrap_servers": "127.0.0.1:1"},
            "instances": [
                {**base, "name": "mw", "webhook_secret": SECRET},
                {**base, "name": "mw-open"},
                {**base, "name": "mw-empty", "webhook_secret": ""},
                {**base, "name": "mw-off", "webhooks": {"enabled": False}},
            ],
        },
        env={},
    )
    spec = VENDORS["mobilitywork"]
    signed, open_, empty, off = (spec.startup_warnings(i) for i in cfg.instances)
    assert signed == []
    for name, warnings in (("mw-open", open_), ("mw-empty", empty)):
        [warning] = warnings
        assert f"/webhooks/{name}" in warning
        assert "UNSIGNED" in warning
    assert off == []


async def test_unsigned_instance_accepts_unsigned_posts(env: Env) -> None:
    headers = {"Content-Type": "application/json"}
    assert await env.post("mw-open", BODY, headers) == 200
    # No replay key: a re-sent body is published again, under the same id.
    assert await env.post("mw-open", BODY, headers) == 200
    a, b = env.publisher.records
    assert a[0] == "workbridge.mw-open.events"
    assert hdrs(a)["ce_id"] == hdrs(b)["ce_id"]
    assert (
        hdrs(a)["ce_id"] == stable_id("mw-open", "webhook", event_digest(json.loads(BODY))).encode()
    )
    # The vendor's retry with a new _sentAt is the same event.
    resent = body_of(_sentAt="2022-06-02T14:36:06+00:00")
    assert await env.post("mw-open", resent, headers) == 200
    assert hdrs(env.publisher.records[2])["ce_id"] == hdrs(a)["ce_id"]
    assert env.server.replays["mw-open"].seen(NONCE, 600) is False
