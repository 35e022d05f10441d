"""The webhook endpoint with aiohttp's test client and a recording publisher (no Kafka)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from adapters.config import parse_config
from adapters.core.cloudevents_codec import from_record, stable_id
from adapters.core.instance import Instance, build_instance
from adapters.core.metrics import Metrics
from adapters.core.publisher import NotAcknowledged, Overloaded
from adapters.core.webhook_server import WebhookServer
from adapters.registry import VENDORS
from tests.unit.core.webhook_harness import FakePublisher, served

SECRET = "1d608b9d72219b90ff2393a1d3ee0ac0"
BODY = b'{"id":4711,"date":"2024-05-06","description":"a description","hours":1.5}'


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def moco_headers(body: bytes, **extra: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Moco-Target": "Activity",
        "X-Moco-Event": "create",
        "X-Moco-Timestamp": "1527170410463",
        "X-Moco-Signature": sign(body),
        "X-Moco-User-Id": "933613686",
        **extra,
    }


def instances() -> dict[str, Instance]:
    base = {"base_url": "http://127.0.0.1:1/api/v1", "api_key": "apikey-not-in-output"}
    cfg = parse_config(
        {
            "kafka": {"bootstrap_servers": "127.0.0.1:1"},
            "instances": [
                {"vendor": "moco", **base, "webhook_secret": SECRET},
                {
                    "vendor": "moco",
                    "name": "acme",
                    "content_mode": "structured",
                    **base,
                    "webhook_secret": SECRET,
                },
                {"vendor": "moco", "name": "quiet", **base, "webhooks": {"enabled": False}},
            ],
        },
        env={},
    )
    built = [build_instance(i, VENDORS["moco"], "workbridge") for i in cfg.instances]
    return {i.name: i for i in built}


@dataclass
class Env:
    client: TestClient
    publisher: FakePublisher
    server: WebhookServer
    ready: list[bool]


@pytest_asyncio.fixture
async def env() -> AsyncIterator[Env]:
    publisher = FakePublisher()
    ready = [True]
    async with served(instances(), publisher, max_body_bytes=1024, ready=lambda: ready[0]) as (
        client,
        server,
    ):
        yield Env(client, publisher, server, ready)


async def test_valid_signature_publishes_and_answers_200(env: Env) -> None:
    resp = await env.client.post("/webhooks/moco", data=BODY, headers=moco_headers(BODY))
    assert resp.status == 200
    assert await resp.json() == {"message": "published"}
    assert len(env.publisher.calls) == 1
    [(topic, key, value, headers)] = env.publisher.records
    assert topic == "workbridge.moco.events"
    assert key == b"moco/activity/4711"
    assert value == BODY
    hdrs = dict(headers)
    assert hdrs["ce_type"] == b"workbridge.moco.activity.created"
    assert hdrs["ce_subject"] == b"activity/4711"
    assert hdrs["ce_source"] == b"/moco/moco"
    assert hdrs["ce_partitionkey"] == b"moco/activity/4711"
    assert hdrs["ce_vendoruserid"] == b"933613686"
    assert hdrs["ce_time"] == b"2018-05-24T14:00:10.463000Z"
    assert hdrs["ce_dataschema"] == (
        b"https://workbridge.dev/schemas/events/workbridge.moco.activity.created.json"
    )
    event = from_record(key, value, headers)
    assert event.get_time() == datetime(2018, 5, 24, 14, 0, 10, 463000, tzinfo=UTC)
    assert event.get_id() == stable_id(
        "moco", "webhook", "activity", "create", hashlib.sha256(BODY).digest()
    )


async def test_redelivery_gets_the_same_event_id(env: Env) -> None:
    for _ in range(2):
        resp = await env.client.post("/webhooks/moco", data=BODY, headers=moco_headers(BODY))
        assert resp.status == 200
    a, b = env.publisher.records
    assert dict(a[3])["ce_id"] == dict(b[3])["ce_id"]


async def test_send_timeout_is_kept_below_the_vendor_deadline(env: Env) -> None:
    await env.client.post("/webhooks/moco", data=BODY, headers=moco_headers(BODY))
    assert env.publisher.calls[0][1] == 1.0
    env.server.send_timeout_s = 30.0
    await env.client.post("/webhooks/moco", data=BODY, headers=moco_headers(BODY))
    # MOCO's 10 s minus the 1.5 s margin, less the moment the request took so far.
    assert 8.0 < env.publisher.calls[1][1] <= 8.5


async def test_structured_instance(env: Env) -> None:
    resp = await env.client.post("/webhooks/acme", data=BODY, headers=moco_headers(BODY))
    assert resp.status == 200
    [(topic, key, value, headers)] = env.publisher.records
    assert topic == "workbridge.acme.events"
    assert key == b"acme/activity/4711"
    assert headers == [("content-type", b"application/cloudevents+json")]
    doc = json.loads(value)
    assert doc["source"] == "/moco/acme"
    assert doc["data"] == json.loads(BODY)


@pytest.mark.parametrize(
    "signature",
    [
        "0" * 64,
        sign(BODY, "another-secret-0000000000000000"),
        sign(BODY + b" "),
        "",
        "not-hex",
    ],
)
async def test_bad_signature_is_401_and_nothing_published(env: Env, signature: str) -> None:
    resp = await env.client.post(
        "/webhooks/moco", data=BODY, headers=moco_headers(BODY, **{"X-Moco-Signature": signature})
    )
    assert resp.status == 401
    assert env.publisher.calls == []


async def test_missing_signature_is_401(env: Env) -> None:
    headers = moco_headers(BODY)
    del headers["X-Moco-Signature"]
    resp = await env.client.post("/webhooks/moco", data=BODY, headers=headers)
    assert resp.status == 401
    assert env.publisher.calls == []


async def test_bad_signature_on_garbage_is_401_not_dlq(env: Env) -> None:
    body = b"not json at all"
    resp = await env.client.post(
        "/webhooks/moco", data=body, headers=moco_headers(body, **{"X-Moco-Signature": "0" * 64})
    )
    assert resp.status == 401
    assert env.publisher.calls == []


async def test_unparseable_authentic_body_goes_to_the_dlq(env: Env) -> None:
    body = b"{this is not json"
    headers = moco_headers(body, Authorization="Bearer must-not-be-copied")
    resp = await env.client.post("/webhooks/moco", data=body, headers=headers)
    assert 200 <= resp.status < 300
    assert resp.status == 200  # 2xx; exactly 200, as Mobility Work requires
    [(topic, key, value, dlq_headers)] = env.publisher.records
    assert topic == "workbridge.moco.dlq"
    assert key is None
    assert value == body
    hdrs = dict(dlq_headers)
    assert hdrs["workbridge_origin"] == b"webhook"
    assert hdrs["workbridge_instance"] == b"moco"
    assert hdrs["workbridge_error"].startswith(b"body is not JSON")
    assert hdrs["http_x-moco-target"] == b"Activity"
    assert "http_authorization" not in hdrs
    assert all(b"must-not-be-copied" not in v for v in hdrs.values())


async def test_authentic_body_without_target_goes_to_the_dlq(env: Env) -> None:
    headers = moco_headers(BODY)
    del headers["X-Moco-Target"]
    resp = await env.client.post("/webhooks/moco", data=BODY, headers=headers)
    assert resp.status == 200  # 2xx; exactly 200, as Mobility Work requires
    assert [r[0] for r in env.publisher.records] == ["workbridge.moco.dlq"]


async def test_dlq_not_acknowledged_is_503(env: Env) -> None:
    env.publisher.raises = NotAcknowledged("no ack")
    body = b"[]"
    resp = await env.client.post("/webhooks/moco", data=body, headers=moco_headers(body))
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "5"


async def test_not_acknowledged_is_503(env: Env) -> None:
    env.publisher.raises = NotAcknowledged("no ack within 1.0s")
    resp = await env.client.post("/webhooks/moco", data=BODY, headers=moco_headers(BODY))
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "5"


async def test_overloaded_is_503_with_retry_after(env: Env) -> None:
    env.publisher.raises = Overloaded("2000 sends await Kafka")
    resp = await env.client.post("/webhooks/moco", data=BODY, headers=moco_headers(BODY))
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"


async def test_any_other_publish_failure_is_still_5xx(env: Env) -> None:
    env.publisher.raises = RuntimeError("MessageSizeTooLargeError")
    resp = await env.client.post("/webhooks/moco", data=BODY, headers=moco_headers(BODY))
    assert 500 <= resp.status < 600


async def test_unknown_instance_is_404(env: Env) -> None:
    resp = await env.client.post("/webhooks/nobody", data=BODY, headers=moco_headers(BODY))
    assert resp.status == 404
    assert env.publisher.calls == []


async def test_disabled_webhooks_is_404(env: Env) -> None:
    resp = await env.client.post("/webhooks/quiet", data=BODY, headers=moco_headers(BODY))
    assert resp.status == 404


async def test_body_over_the_limit_is_413(env: Env) -> None:
    body = b'{"id":1,"x":"' + b"a" * 2000 + b'"}'
    resp = await env.client.post("/webhooks/moco", data=body, headers=moco_headers(body))
    assert resp.status == 413
    assert env.publisher.calls == []


async def test_draining_is_503(env: Env) -> None:
    env.server.draining = True
    resp = await env.client.post("/webhooks/moco", data=BODY, headers=moco_headers(BODY))
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "5"
    assert env.publisher.calls == []
    ready = await env.client.get("/readyz")
    assert ready.status == 503
    assert await ready.json() == {"status": "draining"}


async def test_healthz(env: Env) -> None:
    resp = await env.client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_readyz_follows_ready(env: Env) -> None:
    resp = await env.client.get("/readyz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ready"}
    env.ready[0] = False
    resp = await env.client.get("/readyz")
    assert resp.status == 503
    assert await resp.json() == {"status": "kafka unavailable"}


async def test_metrics_count_outcomes_and_hold_no_secret(env: Env) -> None:
    await env.client.post("/webhooks/moco", data=BODY, headers=moco_headers(BODY))
    await env.client.post(
        "/webhooks/moco", data=BODY, headers=moco_headers(BODY, **{"X-Moco-Signature": "0" * 64})
    )
    resp = await env.client.get("/metrics")
    assert resp.status == 200
    text = await resp.text()
    assert 'workbridge_webhooks_total{instance="moco",outcome="published"} 1.0' in text
    assert 'workbridge_webhooks_total{instance="moco",outcome="unauthorized"} 1.0' in text
    assert 'workbridge_events_published_total{instance="moco",origin="webhook"} 1.0' in text
    assert SECRET not in text
    assert "apikey-not-in-output" not in text


async def test_no_publisher_is_503() -> None:
    insts = instances()
    server = WebhookServer(
        instances=insts,
        publisher=None,
        metrics=Metrics(),
        max_body_bytes=1024,
        send_timeout_s=1.0,
        ready=lambda: True,
    )
    async with TestClient(TestServer(server.app, host="127.0.0.1", port=0)) as client:
        resp = await client.post("/webhooks/moco", data=BODY, headers=moco_headers(BODY))
        assert resp.status == 503
    for inst in insts.values():
        await inst.client.close()
