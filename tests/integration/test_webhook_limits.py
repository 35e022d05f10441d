"""Webhook size limits end to end on the real broker, and the SIGTERM drain of a real process."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from adapters.app import Bridge
from adapters.config import parse_config
from adapters.core.kafka import Topics, TopicsNotReady
from adapters.moco.fake import FakeMoco
from tests.integration.conftest import SECRET, BridgeFactory, ce, read_records
from tests.integration.test_process_lifecycle import (
    free_port,
    start_process,
    wait_ready,
    write_config,
)

pytestmark = pytest.mark.integration

MIB = 1_048_576


def signed(body: bytes, verb: str = "create") -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Moco-Target": "Activity",
        "X-Moco-Event": verb,
        "X-Moco-Timestamp": str(int(time.time() * 1000)),
        "X-Moco-Signature": hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
    }


def body_of_size(size: int, filler: str = "a", id: int = 1) -> bytes:
    head = b'{"id":%d,"description":"' % id
    tail = b'"}'
    unit = filler.encode()
    count = (size - len(head) - len(tail)) // len(unit)
    body = head + unit * count + tail
    assert len(body) == size, (len(body), size)
    return body


async def post(port: int, body: bytes, headers: dict[str, str]) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"http://127.0.0.1:{port}/webhooks/moco", data=body, headers=headers) as resp,
    ):
        await resp.read()
        return resp.status


@pytest.mark.parametrize("mode", ["binary", "structured"])
async def test_a_body_at_the_http_limit_reaches_kafka_and_one_byte_more_is_413(
    kafka_bootstrap: str, prefix: str, start_bridge: BridgeFactory, mode: str
) -> None:
    bridge = await start_bridge(content_mode=mode)
    assert bridge.config.server.max_body_bytes == MIB
    at_limit = body_of_size(MIB)
    assert await post(bridge.port, at_limit, signed(at_limit)) == 200
    over = body_of_size(MIB + 1, id=2)
    assert await post(bridge.port, over, signed(over)) == 413
    records = await read_records(
        kafka_bootstrap, Topics(prefix, "moco").events, count=1, settle=1.0
    )
    assert len(records) == 1
    assert ce(records[0]).get_attributes()["subject"] == "activity/1"


async def test_a_body_whose_event_outgrows_kafka_is_dead_lettered_whole(
    kafka_bootstrap: str, prefix: str, start_bridge: BridgeFactory
) -> None:
    # Structured mode escapes every non-ASCII character: the event is larger than the body.
    bridge = await start_bridge(content_mode="structured")
    body = body_of_size(MIB - 1, filler="\u00e9")
    status = await post(bridge.port, body, signed(body))
    assert status == 200
    topics = Topics(prefix, "moco")
    events = await read_records(kafka_bootstrap, topics.events, count=1, wait_s=3)
    dlq = await read_records(kafka_bootstrap, topics.dlq, count=1, wait_s=3)
    # Exactly one copy, whichever topic it fits: nothing lost, never a 503 loop.
    assert len(events) + len(dlq) == 1
    if dlq:
        assert dlq[0].value == body
        reason = dict(dlq[0].headers)["workbridge_error"].decode()
        assert "Kafka record limit" in reason


async def test_existing_topics_that_allow_less_than_the_body_limit_stop_start_up(
    kafka_bootstrap: str, prefix: str, fake_moco: FakeMoco
) -> None:
    topics = Topics(prefix, "moco")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topics.events, 2, 1, topic_configs={"max.message.bytes": "100000"})]
        )
    finally:
        await admin.close()
    assert fake_moco.base_url is not None
    config = parse_config(
        {
            "kafka": {
                "bootstrap_servers": kafka_bootstrap,
                "topic_prefix": prefix,
                "topics": {"partitions": 2, "replication_factor": 1},
            },
            "server": {"host": "127.0.0.1", "port": 0},
            "instances": [
                {
                    "vendor": "moco",
                    "name": "moco",
                    "base_url": fake_moco.base_url,
                    "webhook_secret": SECRET,
                }
            ],
        }
    )
    bridge = Bridge(config)
    with pytest.raises(TopicsNotReady) as raised:
        await bridge.start()
    await bridge.stop()
    message = str(raised.value)
    assert topics.events in message and "100000" in message
    assert "max.message.bytes" in message and "server.max_body_bytes" in message


async def test_sigterm_keeps_accepting_during_the_delay_then_answers_every_upload(
    tmp_path: Path, kafka_bootstrap: str, prefix: str, fake_moco: FakeMoco
) -> None:
    assert fake_moco.base_url is not None
    port = free_port()
    config = write_config(tmp_path / "wb.yaml", kafka_bootstrap, prefix, fake_moco.base_url, port)
    raw: dict[str, Any] = yaml.safe_load(config.read_text())
    raw["server"].update({"shutdown_grace_s": 8, "shutdown_delay_s": 1.5})
    raw["instances"][0]["commands"] = {"enabled": False}
    config.write_text(yaml.safe_dump(raw))
    proc = start_process(config)
    bodies = [body_of_size(2000, id=i) for i in range(1, 5)]
    try:
        await wait_ready(port, proc)
        # Three uploads under way when SIGTERM comes: headers and half the body sent.
        uploads = []
        for body in bodies[:3]:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            head = "".join(f"{k}: {v}\r\n" for k, v in signed(body).items())
            writer.write(
                f"POST /webhooks/moco HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                f"{head}\r\n".encode()
                + body[:1000]
            )
            await writer.drain()
            uploads.append((reader, writer, body))
        await asyncio.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        async with aiohttp.ClientSession() as http:
            # Unready at once ...
            async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                assert resp.status == 503
            # ... yet a webhook arriving during the delay is still taken.
            async with http.post(
                f"http://127.0.0.1:{port}/webhooks/moco", data=bodies[3], headers=signed(bodies[3])
            ) as resp:
                assert resp.status == 200
        # The uploads finish at 2, 2.5 and 3 s after SIGTERM, past the delay.
        statuses = []
        for i, (reader, writer, body) in enumerate(uploads):
            await asyncio.sleep(max(0.0, stopped_at + 2.0 + 0.5 * i - time.monotonic()))
            writer.write(body[1000:])
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), 5)
            statuses.append(int(status_line.split()[1]))
            writer.close()
        assert statuses == [200, 200, 200]
        code = await asyncio.to_thread(proc.wait, 20)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = proc.stdout.read().decode() if proc.stdout else ""
    assert code == 0, output
    records = await read_records(
        kafka_bootstrap, Topics(prefix, "moco").events, count=4, settle=1.0
    )
    subjects = sorted(ce(r).get_attributes()["subject"] for r in records)
    assert subjects == [f"activity/{i}" for i in range(1, 5)], output
    assert msgspec.json.decode(records[0].value)["id"] in range(1, 5)
