"""What fuzzing and fault tests found in the webhook endpoint, each pinned (no Kafka here)."""

from __future__ import annotations

import gzip
import logging
import zlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiokafka.errors import MessageSizeTooLargeError

from adapters.core.dlq import webhook_dlq_headers
from adapters.core.json_depth import MAX_JSON_DEPTH, nests_deeper_than
from adapters.core.record_limits import (
    DLQ_REQUEST_HEADERS_BYTES,
    max_record_bytes,
    record_size,
)
from tests.unit.core.test_webhook_server import BODY, Env, instances, moco_headers, sign
from tests.unit.core.webhook_harness import FakePublisher, served

MAX_BODY = 32768


@pytest_asyncio.fixture
async def env() -> AsyncIterator[Env]:
    publisher = FakePublisher()
    ready = [True]
    async with served(instances(), publisher, max_body_bytes=MAX_BODY, ready=lambda: ready[0]) as (
        client,
        server,
    ):
        yield Env(client, publisher, server, ready)


def topics(env: Env) -> list[str]:
    return [r[0] for r in env.publisher.records]


def dlq_error(env: Env) -> str:
    [record] = env.publisher.records
    assert record[0].endswith(".dlq")
    return dict(record[3])["workbridge_error"].decode()


# --- Content-Encoding ------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_body_that_is_not_what_its_content_encoding_says_is_400(
    env: Env, encoding: str
) -> None:
    headers = {**moco_headers(BODY), "Content-Encoding": encoding}
    resp = await env.client.post("/webhooks/moco", data=BODY, headers=headers)
    assert resp.status == 400
    assert env.publisher.calls == []


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_correctly_encoded_body_is_verified_on_its_decoded_bytes(
    env: Env, encoding: str
) -> None:
    packed = gzip.compress(BODY) if encoding == "gzip" else zlib.compress(BODY)
    headers = {**moco_headers(BODY), "Content-Encoding": encoding}
    resp = await env.client.post("/webhooks/moco", data=packed, headers=headers)
    assert resp.status == 200
    assert env.publisher.records[0][2] == BODY


async def test_a_compressed_body_that_inflates_past_the_limit_is_413(env: Env) -> None:
    bomb = gzip.compress(b'{"id":1,"x":"' + b"a" * (MAX_BODY * 50) + b'"}')
    headers = {**moco_headers(BODY), "Content-Encoding": "gzip"}
    resp = await env.client.post("/webhooks/moco", data=bomb, headers=headers)
    assert resp.status == 413
    assert env.publisher.calls == []


# --- nesting ---------------------------------------------------------------------------------


def test_nesting_is_measured_outside_strings() -> None:
    assert not nests_deeper_than(b'{"a":[1,2,{"b":[]}]}', 4)
    assert nests_deeper_than(b'{"a":[1,2,{"b":[]}]}', 3)
    # Brackets in strings (with escaped quotes) do not count.
    assert not nests_deeper_than(b'{"a":"[[[[[[\\"[[[[[["}', 1)
    # Many brackets side by side are shallow.
    assert not nests_deeper_than(b"[" + b"[]," * 500 + b"[]]", 2)
    assert nests_deeper_than(b"[" * 100_000, MAX_JSON_DEPTH)


async def test_deeply_nested_json_goes_to_the_dlq_with_its_reason_and_one_log_line(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    body = b'{"id":1,"x":' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    body = body[:MAX_BODY]  # within the HTTP limit, still thousands of levels deep
    caplog.set_level(logging.DEBUG)
    resp = await env.client.post("/webhooks/moco", data=body, headers=moco_headers(body))
    assert resp.status == 200
    assert f"nested deeper than {MAX_JSON_DEPTH}" in dlq_error(env)
    ours = [r for r in caplog.records if r.name.startswith("adapters")]
    assert len(ours) == 1
    assert ours[0].exc_info is None


async def test_structured_mode_with_deep_json_also_gets_the_dlq(env: Env) -> None:
    body = b'{"id":1,"x":' + b"[" * 2000 + b"]" * 2000 + b"}"
    resp = await env.client.post("/webhooks/acme", data=body, headers=moco_headers(body))
    assert resp.status == 200
    assert topics(env) == ["workbridge.acme.dlq"]


# --- record sizes ----------------------------------------------------------------------------


async def test_a_body_that_fits_but_whose_event_does_not_goes_to_the_dlq(env: Env) -> None:
    # The id becomes the subject, the key and the partition key: the event is ~4x the body.
    body = b'{"id":"' + b"7" * (MAX_BODY - 20) + b'"}'
    assert len(body) <= MAX_BODY
    resp = await env.client.post("/webhooks/moco", data=body, headers=moco_headers(body))
    assert resp.status == 200
    assert "exceeds the Kafka record limit" in dlq_error(env)
    [record] = env.publisher.records
    assert record[2] == body
    # The DLQ record itself fits what the producer and topics allow.
    assert record_size(record[1], record[2], record[3]) <= max_record_bytes(MAX_BODY)


async def test_a_record_kafka_refuses_as_too_large_is_dead_lettered_not_503(env: Env) -> None:
    refused = [MessageSizeTooLargeError("topic allows less")]
    real = env.publisher.publish

    async def publish(records: list[object], *, timeout_s: float) -> None:
        if refused:
            raise refused.pop()
        await real(records, timeout_s=timeout_s)

    env.publisher.publish = publish  # type: ignore[method-assign]
    resp = await env.client.post("/webhooks/moco", data=BODY, headers=moco_headers(BODY))
    assert resp.status == 200
    assert "exceeds the Kafka record limit" in dlq_error(env)


async def test_a_dlq_that_is_too_large_as_well_gets_a_final_413(env: Env) -> None:
    async def publish(records: list[object], *, timeout_s: float) -> None:
        raise MessageSizeTooLargeError("topic allows less")

    env.publisher.publish = publish  # type: ignore[method-assign]
    resp = await env.client.post("/webhooks/moco", data=BODY, headers=moco_headers(BODY))
    assert resp.status == 413


def test_dlq_copies_of_request_headers_are_bounded() -> None:
    request_headers = {f"x-h{i}": "v" * 1000 for i in range(100)}
    headers = webhook_dlq_headers(
        request_headers, instance="moco", error="e", secret_headers=frozenset()
    )
    copied = sum(len(k) + len(v) for k, v in headers if k.startswith("http_"))
    assert copied <= DLQ_REQUEST_HEADERS_BYTES
    assert ("workbridge_headers_truncated", b"true") in headers


# --- signatures ------------------------------------------------------------------------------


async def test_two_different_moco_signatures_are_refused(env: Env) -> None:
    base = [(k, v) for k, v in moco_headers(BODY).items() if k != "X-Moco-Signature"]
    for pair in ((sign(BODY, "other"), sign(BODY)), (sign(BODY), sign(BODY, "other"))):
        headers = base + [("X-Moco-Signature", v) for v in pair]
        resp = await env.client.post("/webhooks/moco", data=BODY, headers=headers)
        assert resp.status == 401
    assert env.publisher.calls == []


# --- stopping --------------------------------------------------------------------------------


async def test_while_stopping_readyz_is_503_but_webhooks_are_still_taken(env: Env) -> None:
    env.server.stopping = True
    ready = await env.client.get("/readyz")
    assert ready.status == 503
    resp = await env.client.post("/webhooks/moco", data=BODY, headers=moco_headers(BODY))
    assert resp.status == 200
    assert topics(env) == ["workbridge.moco.events"]


async def test_readyz_says_when_a_worker_is_still_restoring_its_ledger(env: Env) -> None:
    env.server.restoring = lambda: True
    ready = await env.client.get("/readyz")
    assert ready.status == 503
    assert await ready.json() == {"status": "restoring ledger"}
    env.server.restoring = lambda: False
    assert (await env.client.get("/readyz")).status == 200
