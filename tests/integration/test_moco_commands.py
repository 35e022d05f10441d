"""MOCO commands on the real broker: one side effect per key, one result per command."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from adapters.core.kafka import Topics
from adapters.moco.fake import FakeMoco
from tests.integration.conftest import BridgeFactory, ce, publish_command, read_records

pytestmark = pytest.mark.integration

COMMANDS = {"enabled": True, "deadline_s": 30, "backoff_base_s": 0.2, "backoff_max_s": 2}
QUIET = {"webhooks": {"enabled": False}}


def seed(fake: FakeMoco) -> tuple[dict[str, Any], dict[str, Any]]:
    company = fake.create_record("companies", {"name": "Acme", "type": "customer"})
    project = fake.create_record("projects", {"name": "Line 4", "customer_id": company["id"]})
    return company, project


async def results(
    bootstrap: str, prefix: str, count: int, settle: float = 1.0
) -> list[dict[str, Any]]:
    records = await read_records(
        bootstrap, Topics(prefix, "moco").results, count=count, settle=settle
    )
    out = []
    for record in records:
        event = ce(record)
        out.append(
            {
                **event.get_data(),
                "_commandid": event.get_attributes()["commandid"],
                "_type": event.get_attributes()["type"],
            }
        )
    return out


def activity(project_id: int, **extra: Any) -> dict[str, Any]:
    return {
        "date": "2026-11-23",
        "project_id": project_id,
        "hours": 2.0,
        "description": "pump check",
        **extra,
    }


async def test_create_succeeds_with_vendor_answer(
    kafka_bootstrap: str, prefix: str, fake_moco: FakeMoco, start_bridge: BridgeFactory
) -> None:
    _, project = seed(fake_moco)
    await start_bridge(commands=COMMANDS, **QUIET)
    cid = await publish_command(
        kafka_bootstrap,
        prefix,
        type="workbridge.moco.activity.create",
        data=activity(project["id"], impersonate_user_id=933613686),
        subject="project/1",
    )
    [result] = await results(kafka_bootstrap, prefix, 1)
    assert result["_commandid"] == cid
    assert result["_type"] == "workbridge.moco.activity.create.result"
    assert result["status"] == "succeeded", result
    assert result["attempts"] == 1 and result["http_status"] == 200
    [call] = fake_moco.calls
    assert call.method == "POST" and call.impersonate_user_id == "933613686"
    assert "impersonate_user_id" not in call.json
    assert result["response"]["id"] == call.record_id
    assert result["response"]["user_id"] == 933613686


async def test_same_command_twice_calls_vendor_once(
    kafka_bootstrap: str, prefix: str, fake_moco: FakeMoco, start_bridge: BridgeFactory
) -> None:
    _, project = seed(fake_moco)
    await start_bridge(commands=COMMANDS, **QUIET)
    cid = str(uuid.uuid4())
    for _ in range(2):
        await publish_command(
            kafka_bootstrap,
            prefix,
            type="workbridge.moco.activity.create",
            data=activity(project["id"]),
            subject="project/1",
            command_id=cid,
        )
    # A different command with the same idempotency key and payload: no second call either.
    other = await publish_command(
        kafka_bootstrap,
        prefix,
        type="workbridge.moco.activity.create",
        data=activity(project["id"]),
        subject="project/1",
        idempotency_key=cid,
    )
    out = await results(kafka_bootstrap, prefix, 2, settle=2.0)
    assert len(fake_moco.calls) == 1
    assert [r["_commandid"] for r in out] == [cid, other]
    assert out[0]["status"] == out[1]["status"] == "succeeded"
    assert out[1]["duplicate_of"] == cid
    assert out[1]["response"] == out[0]["response"]


async def test_key_reused_with_other_payload_is_a_conflict(
    kafka_bootstrap: str, prefix: str, fake_moco: FakeMoco, start_bridge: BridgeFactory
) -> None:
    _, project = seed(fake_moco)
    await start_bridge(commands=COMMANDS, **QUIET)
    await publish_command(
        kafka_bootstrap,
        prefix,
        type="workbridge.moco.activity.create",
        data=activity(project["id"]),
        subject="project/1",
        idempotency_key="k1",
    )
    await publish_command(
        kafka_bootstrap,
        prefix,
        type="workbridge.moco.activity.create",
        data=activity(project["id"], hours=5.0),
        subject="project/1",
        idempotency_key="k1",
    )
    out = await results(kafka_bootstrap, prefix, 2)
    assert [r["status"] for r in out] == ["succeeded", "conflict"]
    assert len(fake_moco.calls) == 1


async def test_invalid_command_is_rejected_and_never_sent(
    kafka_bootstrap: str, prefix: str, fake_moco: FakeMoco, start_bridge: BridgeFactory
) -> None:
    await start_bridge(commands=COMMANDS, **QUIET)
    bad = await publish_command(
        kafka_bootstrap,
        prefix,
        type="workbridge.moco.activity.create",
        data={"date": "23.11.2026", "project_id": 1},
        subject="project/1",
    )
    unknown = await publish_command(
        kafka_bootstrap, prefix, type="workbridge.moco.rocket.launch", data={}, subject="x/1"
    )
    garbage = await publish_command(
        kafka_bootstrap,
        prefix,
        type="workbridge.moco.activity.create",
        data={},
        subject="project/1",
        raw_value=b"\xff not json",
    )
    out = await results(kafka_bootstrap, prefix, 3)
    by_id = {r["_commandid"]: r for r in out}
    assert by_id[bad]["status"] == "rejected" and "date" in by_id[bad]["error"]
    assert (
        by_id[unknown]["status"] == "rejected" and "unknown command type" in by_id[unknown]["error"]
    )
    assert by_id[garbage]["status"] == "rejected"
    assert fake_moco.calls == [] and not [r for r in fake_moco.requests if r.method != "GET"]
    dlq = await read_records(kafka_bootstrap, Topics(prefix, "moco").dlq, count=3, settle=0.5)
    assert len(dlq) == 3
    assert {dict(r.headers)["workbridge_status"] for r in dlq} == {b"rejected"}


async def test_vendor_422_fails_without_retry_and_503_is_retried(
    kafka_bootstrap: str, prefix: str, fake_moco: FakeMoco, start_bridge: BridgeFactory
) -> None:
    _, project = seed(fake_moco)
    await start_bridge(commands=COMMANDS, **QUIET)
    missing_project = await publish_command(
        kafka_bootstrap,
        prefix,
        type="workbridge.moco.activity.create",
        data=activity(999999),
        subject="project/999999",
    )
    [first] = await results(kafka_bootstrap, prefix, 1)
    assert first["_commandid"] == missing_project
    assert first["status"] == "failed" and first["attempts"] == 1 and first["http_status"] == 422
    assert "project_id" in first["error"]["message"]

    fake_moco.fail_next(2, 503)
    retried = await publish_command(
        kafka_bootstrap,
        prefix,
        type="workbridge.moco.activity.create",
        data=activity(project["id"]),
        subject="project/1",
    )
    # Results come from two partitions: find this command's by its id, not by position.
    by_id = {r["_commandid"]: r for r in await results(kafka_bootstrap, prefix, 2)}
    assert by_id[retried]["status"] == "succeeded" and by_id[retried]["attempts"] == 3
    assert len(fake_moco.calls) == 1


async def test_429_retry_after_is_honoured(
    kafka_bootstrap: str, prefix: str, fake_moco: FakeMoco, start_bridge: BridgeFactory
) -> None:
    _, project = seed(fake_moco)
    await start_bridge(commands=COMMANDS, **QUIET)
    fake_moco.fail_next(1, 429, retry_after=2.0)
    await publish_command(
        kafka_bootstrap,
        prefix,
        type="workbridge.moco.activity.create",
        data=activity(project["id"]),
        subject="project/1",
    )
    [result] = await results(kafka_bootstrap, prefix, 1)
    assert result["status"] == "succeeded" and result["attempts"] == 2
    times = [r.at for r in fake_moco.requests if r.method == "POST"]
    assert len(times) == 2 and times[1] - times[0] >= 2.0


async def test_update_keeps_custom_properties_it_omits(
    kafka_bootstrap: str, prefix: str, fake_moco: FakeMoco, start_bridge: BridgeFactory
) -> None:
    company, _ = seed(fake_moco)
    fake_moco.update_record(
        "companies",
        company["id"],
        {"custom_properties": {"UID": "123-UID-456", "Line of business": "Automotive"}},
    )
    await start_bridge(commands=COMMANDS, **QUIET)
    await publish_command(
        kafka_bootstrap,
        prefix,
        type="workbridge.moco.company.update",
        data={"id": company["id"], "custom_properties": {"Line of business": ["Banking"]}},
        subject=f"company/{company['id']}",
    )
    [result] = await results(kafka_bootstrap, prefix, 1)
    assert result["status"] == "succeeded", result
    assert fake_moco.get_record("companies", company["id"])["custom_properties"] == {
        "UID": "123-UID-456",
        "Line of business": ["Banking"],
    }


async def test_commands_of_one_subject_run_in_order(
    kafka_bootstrap: str, prefix: str, fake_moco: FakeMoco, start_bridge: BridgeFactory
) -> None:
    company, _ = seed(fake_moco)
    await start_bridge(commands=COMMANDS, **QUIET)
    for i in range(5):
        await publish_command(
            kafka_bootstrap,
            prefix,
            type="workbridge.moco.company.update",
            data={"id": company["id"], "info": f"step {i}"},
            subject=f"company/{company['id']}",
        )
    await results(kafka_bootstrap, prefix, 5)
    infos = [c.json["info"] for c in fake_moco.calls if c.method == "PUT"]
    assert infos == [f"step {i}" for i in range(5)]
    assert fake_moco.get_record("companies", company["id"])["info"] == "step 4"


async def test_never_more_than_15_requests_in_15_seconds(
    kafka_bootstrap: str, prefix: str, fake_moco: FakeMoco, start_bridge: BridgeFactory
) -> None:
    _, project = seed(fake_moco)
    await start_bridge(commands=COMMANDS, **QUIET)
    started = time.monotonic()
    for i in range(20):
        await publish_command(
            kafka_bootstrap,
            prefix,
            type="workbridge.moco.activity.create",
            data=activity(project["id"], description=f"n{i}"),
            subject=f"s/{i}",
        )
    out = await results(kafka_bootstrap, prefix, 20, settle=0.5)
    assert [r["status"] for r in out] == ["succeeded"] * 20
    assert fake_moco.rejected_429 == 0
    assert fake_moco.max_requests_in_any_window(15.0) <= 15
    assert time.monotonic() - started > 15  # 20 calls cannot fit in one window
    await asyncio.sleep(0)


async def test_create_timing_out_is_ambiguous_not_repeated(
    kafka_bootstrap: str, prefix: str, fake_moco: FakeMoco, start_bridge: BridgeFactory
) -> None:
    # MOCO acts on the request but answers after our timeout: sending it again could book
    # the time twice, so the result says `ambiguous` and the call is not repeated.
    _, project = seed(fake_moco)
    await start_bridge(commands=COMMANDS, http_timeout_s=1.0, **QUIET)
    fake_moco.delay_next(1, 2.0)
    await publish_command(
        kafka_bootstrap,
        prefix,
        type="workbridge.moco.activity.create",
        data=activity(project["id"]),
        subject="project/1",
    )
    [result] = await results(kafka_bootstrap, prefix, 1, settle=3.0)
    assert result["status"] == "ambiguous", result
    assert result["attempts"] == 1
    await asyncio.sleep(1.5)
    assert len(fake_moco.calls) == 1


async def test_update_timing_out_is_retried(
    kafka_bootstrap: str, prefix: str, fake_moco: FakeMoco, start_bridge: BridgeFactory
) -> None:
    company, _ = seed(fake_moco)
    await start_bridge(commands=COMMANDS, http_timeout_s=1.0, **QUIET)
    fake_moco.delay_next(2, 2.0)  # the GET for the custom-property merge, then the PUT
    await publish_command(
        kafka_bootstrap,
        prefix,
        type="workbridge.moco.company.update",
        data={"id": company["id"], "info": "x"},
        subject="company/1",
    )
    [result] = await results(kafka_bootstrap, prefix, 1)
    assert result["status"] == "succeeded", result
    assert fake_moco.get_record("companies", company["id"])["info"] == "x"


async def test_a_rejected_command_delivered_twice_gets_one_result(
    kafka_bootstrap: str, prefix: str, fake_moco: FakeMoco, start_bridge: BridgeFactory
) -> None:
    await start_bridge(commands=COMMANDS, **QUIET)
    for _ in range(2):
        await publish_command(
            kafka_bootstrap,
            prefix,
            type="workbridge.moco.activity.create",
            data={"date": "nope"},
            subject="project/1",
            command_id="bad-1",
        )
    out = await results(kafka_bootstrap, prefix, 1, settle=2.0)
    assert [(r["_commandid"], r["status"]) for r in out] == [("bad-1", "rejected")]


async def test_broker_outage_mid_commands_loses_and_repeats_nothing(
    kafka_bootstrap: str,
    prefix: str,
    fake_moco: FakeMoco,
    start_bridge: BridgeFactory,
    restartable_kafka: Any,
) -> None:
    company, _ = seed(fake_moco)
    await start_bridge(commands=COMMANDS, **QUIET)
    ids = []
    for i in range(6):
        ids.append(
            await publish_command(
                kafka_bootstrap,
                prefix,
                type="workbridge.moco.company.update",
                data={"id": company["id"], "info": f"v{i}"},
                subject=f"company/{i % 3}",
            )
        )
    fake_moco.delay_next(3, 1.0)  # calls are in flight when the broker goes away
    await asyncio.sleep(0.5)
    await restartable_kafka.pause()
    await asyncio.sleep(4)
    await restartable_kafka.resume()
    out = await results(kafka_bootstrap, prefix, 6, settle=3.0)
    assert sorted(r["_commandid"] for r in out) == sorted(ids)  # each exactly once
    assert {r["status"] for r in out} == {"succeeded"}
