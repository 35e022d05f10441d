"""The ledger on the real broker: a restoring worker is not ready and decides nothing, a
deep ledger answers a repeat from the topic, and a checkpoint is resumed by the next run."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from adapters.config import Config
from adapters.core.cloudevents_codec import make_event, to_kafka
from adapters.core.command_result import CommandResult
from adapters.core.commands.model import Checked, decode_command
from adapters.core.commands.validation import check
from adapters.core.instance import build_instance
from adapters.core.kafka import Topics, ensure_topics
from adapters.core.ledger import LedgerEntry, encode_entry, key_record
from adapters.core.ledger_store import Ledger, RestoreReport
from adapters.core.record_limits import max_record_bytes
from adapters.moco.fake import FakeMoco
from adapters.registry import VENDORS
from tests.integration.conftest import (
    BridgeFactory,
    ce,
    moco_config,
    publish_command,
    read_records,
)

pytestmark = pytest.mark.integration

COMMANDS = {"enabled": True, "deadline_s": 30, "backoff_base_s": 0.2, "backoff_max_s": 2}
QUIET = {"webhooks": {"enabled": False}}
CREATE = "workbridge.moco.activity.create"


def activity(project_id: int, **extra: Any) -> dict[str, Any]:
    return {
        "date": "2026-11-23",
        "project_id": project_id,
        "hours": 2.0,
        "description": "x",
        **extra,
    }


async def wait_for(condition: Callable[[], bool], what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def results(bootstrap: str, prefix: str, count: int, **kw: Any) -> list[dict[str, Any]]:
    records = await read_records(bootstrap, Topics(prefix, "moco").results, count=count, **kw)
    return [
        {**ce(r).get_data(), "_commandid": ce(r).get_attributes()["commandid"]} for r in records
    ]


async def get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}{path}") as resp,
    ):
        return resp.status, await resp.text()


async def test_a_restoring_worker_is_not_ready_and_decides_nothing_until_restored(
    kafka_bootstrap: str,
    prefix: str,
    fake_moco: FakeMoco,
    start_bridge: BridgeFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = asyncio.Event()
    restore = Ledger.restore

    async def held(self: Ledger) -> RestoreReport:
        await gate.wait()
        return await restore(self)

    monkeypatch.setattr(Ledger, "restore", held)
    project = fake_moco.create_record("projects", {"name": "P", "customer_id": 1})
    bridge = await start_bridge(commands=COMMANDS, **QUIET)
    worker = bridge.workers[0]
    await wait_for(lambda: len(worker.parts) == 2, "both partitions to be assigned")
    assert worker.restoring
    status, body = await get(bridge.port, "/readyz")
    assert status == 503 and "restoring ledger" in body
    _, metrics = await get(bridge.port, "/metrics")
    assert 'workbridge_ledger_restoring{instance="moco",partition="0"} 1.0' in metrics

    cid = await publish_command(
        kafka_bootstrap, prefix, type=CREATE, data=activity(project["id"]), subject="p/1"
    )
    assert await results(kafka_bootstrap, prefix, 1, wait_s=2.0) == []
    assert fake_moco.calls == []

    gate.set()
    [result] = await results(kafka_bootstrap, prefix, 1)
    assert result["_commandid"] == cid and result["status"] == "succeeded"
    await wait_for(lambda: not worker.restoring, "the restore to end")
    assert (await get(bridge.port, "/readyz"))[0] == 200
    _, metrics = await get(bridge.port, "/metrics")
    assert 'workbridge_ledger_restoring{instance="moco",partition="0"} 0.0' in metrics


def _digest_of(config: Config, prefix: str, data: dict[str, Any], key: str) -> str:
    """The payload digest the worker will compute for this command."""
    inst = build_instance(config.instances[0], VENDORS["moco"], prefix)
    event = make_event(
        id="probe",
        source="/tests",
        type=CREATE,
        subject="p/1",
        partitionkey="p/1",
        data=msgspec.json.encode(data),
        extensions={"idempotencykey": key},
    )
    k, v, h = to_kafka(event)
    record: ConsumerRecord[bytes, bytes] = ConsumerRecord("t", 0, 0, 0, 0, k, v, None, 0, len(v), h)
    checked = check(inst, decode_command(record))
    assert isinstance(checked, Checked)
    return checked.digest


async def test_a_repeat_of_a_key_deep_in_the_ledger_gets_its_result_from_the_topic(
    kafka_bootstrap: str, prefix: str, fake_moco: FakeMoco, start_bridge: BridgeFactory
) -> None:
    project = fake_moco.create_record("projects", {"name": "P", "customer_id": 1})
    assert fake_moco.base_url is not None
    config = moco_config(kafka_bootstrap, prefix, fake_moco.base_url)
    topics = Topics(prefix, "moco")
    await ensure_topics(
        config.kafka, [topics], max_record_bytes=max_record_bytes(config.server.max_body_bytes)
    )
    data = activity(project["id"])
    digest = _digest_of(config, prefix, data, "old-1234")
    earlier = CommandResult(
        status="succeeded",
        command_type=CREATE,
        idempotency_key="old-1234",
        attempts=1,
        http_status=200,
        response={"id": 4242},
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=20)
    await producer.start()
    try:
        sends = []
        for i in range(5000):  # a ledger of other keys around it, on both partitions
            key = f"old-{i}"
            entry = LedgerEntry(
                state="done",
                command_id=f"earlier-{i}",
                command_type=CREATE,
                payload_hash=digest if i == 1234 else f"h{i}",
                at=datetime.now(UTC),
                result=msgspec.to_builtins(earlier) if i == 1234 else {"status": "failed"},
            )
            for partition in (0, 1):
                sends.append(
                    await producer.send(
                        topics.ledger,
                        encode_entry(entry),
                        key=key_record(key).encode(),
                        partition=partition,
                    )
                )
        await asyncio.gather(*sends)
    finally:
        await producer.stop()

    await start_bridge(commands=COMMANDS, **QUIET)
    repeat = await publish_command(
        kafka_bootstrap,
        prefix,
        type=CREATE,
        data=data,
        subject="p/1",
        idempotency_key="old-1234",
    )
    new = await publish_command(
        kafka_bootstrap, prefix, type=CREATE, data=data, subject="p/2", idempotency_key="new-1"
    )
    by_id = {r["_commandid"]: r for r in await results(kafka_bootstrap, prefix, 2, settle=1.0)}
    assert by_id[repeat]["status"] == "succeeded"
    assert by_id[repeat]["duplicate_of"] == "earlier-1234"
    assert by_id[repeat]["response"] == {"id": 4242}
    assert by_id[new]["status"] == "succeeded" and by_id[new].get("duplicate_of") is None
    assert len(fake_moco.calls) == 1  # only the new key reached the vendor


async def test_the_next_run_resumes_the_ledger_index_and_still_knows_every_key(
    kafka_bootstrap: str,
    prefix: str,
    fake_moco: FakeMoco,
    start_bridge: BridgeFactory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("WORKBRIDGE_LEDGER_DIR", str(tmp_path))
    project = fake_moco.create_record("projects", {"name": "P", "customer_id": 1})
    first = await start_bridge(commands=COMMANDS, **QUIET)
    keys = [f"key-{i}" for i in range(4)]  # over both partitions
    for i, key in enumerate(keys):
        await publish_command(
            kafka_bootstrap,
            prefix,
            type=CREATE,
            data=activity(project["id"]),
            subject=f"p/{i}",
            idempotency_key=key,
        )
    assert len(await results(kafka_bootstrap, prefix, 4)) == 4
    await first.stop()
    files = await asyncio.to_thread(os.listdir, tmp_path)
    assert sorted(name for name in files if name.endswith(".sqlite3")) == [
        f"{prefix}.moco.state.ledger.0.sqlite3",
        f"{prefix}.moco.state.ledger.1.sqlite3",
    ]

    second = await start_bridge(commands=COMMANDS, **QUIET)
    worker = second.workers[0]
    await wait_for(
        lambda: len(worker.parts) == 2 and not worker.restoring, "the second run's restore"
    )
    reports = [work.ledger.report for work in worker.parts.values()]
    assert all(r is not None and r.resumed for r in reports), reports
    for i, key in enumerate(keys):
        await publish_command(
            kafka_bootstrap,
            prefix,
            type=CREATE,
            data=activity(project["id"]),
            subject=f"p/{i}",
            idempotency_key=key,
        )
    out = await results(kafka_bootstrap, prefix, 8, settle=1.0)
    assert len(out) == 8
    assert sum(1 for r in out if r.get("duplicate_of")) == 4
    assert len(fake_moco.calls) == 4
