"""The connector against the fake Click Maint (adapters/clickmaint/fake.py), through the core's
own poll fetch and command executor: entities, listings per entity, work-order details, part
transactions, commands and a rejected key. No broker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from aiokafka.structs import ConsumerRecord

from adapters.clickmaint import SPEC
from adapters.clickmaint.fake import FakeClickMaint
from adapters.clickmaint.resources import POLL
from adapters.config import parse_config
from adapters.core.change_source import PollError
from adapters.core.cloudevents_codec import make_event, to_kafka
from adapters.core.command_result import CommandResult
from adapters.core.commands.executor import Executor
from adapters.core.commands.model import Checked, decode_command
from adapters.core.commands.validation import check
from adapters.core.instance import Instance, build_instance
from adapters.core.metrics import Metrics
from adapters.core.pagination import PageRequest
from adapters.core.poller import fetch as poll_fetch
from adapters.core.vendor_call import RetryPolicy
from adapters.core.vendor_http import VendorResponse
from adapters.registry import VENDORS
from tests.unit.core.poll_harness import Runner

KEY = "fake-key"
P = "workbridge.clickmaint"
POLICY = RetryPolicy(deadline_s=5, max_attempts=2, base_s=0.01, cap_s=0.01)


class SteppingClock:
    """The fake's record times: an hour ago, one second further on each read (distinct
    `updated_at`s however fast the test runs, all before the fake's `Date`)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeClickMaint]:
    server = FakeClickMaint(
        api_key=KEY,
        entities=[{"id": 1, "name": "Main Facility"}, {"id": 2, "name": "North Plant"}],
        clock=SteppingClock(),
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def instance(fake: FakeClickMaint, key: str = KEY, **options: Any) -> Instance:
    cfg = parse_config(
        {
            "kafka": {"bootstrap_servers": "127.0.0.1:1"},
            "instances": [
                {
                    "vendor": "clickmaint",
                    "name": "acme",
                    "base_url": fake.base_url,
                    "api_key": key,
                    "polling": {"enabled": True, "resources": sorted(POLL.resources)},
                    "commands": {"enabled": True, "deadline_s": 2, "backoff_base_s": 0.01},
                    "options": options,
                }
            ],
        },
        env={},
        vendors=VENDORS,
    )
    return build_instance(cfg.instances[0], SPEC, "workbridge")


def runner(inst: Instance, resource: str, entity: str) -> Runner:
    """A poll task of `resource` in `entity`, fetching as the core's poll task does."""
    assert POLL.scopes is not None
    headers = dict(POLL.scopes.headers(entity))

    async def fetch(request: PageRequest) -> VendorResponse:
        return await poll_fetch(inst, request, POLICY, Metrics(), headers=headers)

    return Runner(
        POLL.resources[resource].source,
        fetch,
        resource=resource,
        scope=entity,
        page_size=2,
        options=inst.options,
    )


async def execute(inst: Instance, type_: str, data: Any) -> CommandResult:
    event = make_event(
        id=str(uuid.uuid4()),
        source="/tests",
        type=type_,
        subject="x/1",
        partitionkey="x/1",
        data=msgspec.json.encode(data),
    )
    key, value, headers = to_kafka(event)
    record = ConsumerRecord("t", 0, 1, 0, 0, key, value, None, 0, len(value), headers)
    command = decode_command(record)
    checked = check(inst, command)
    assert isinstance(checked, Checked), checked

    async def nothing() -> None:
        return None

    return await Executor(inst, Metrics()).run(
        command, checked, replay=False, before_send=nothing, after_attempt=lambda _acted: None
    )


async def test_entities_are_discovered_and_each_lists_its_own_records(
    fake: FakeClickMaint,
) -> None:
    inst = instance(fake)
    try:
        assert POLL.scopes is not None
        found = await POLL.scopes.discover(lambda r: poll_fetch(inst, r, POLICY, Metrics()))
        assert found == ["1", "2"]
        for n in range(3):
            fake.create_record(1, "assets", {"name": f"Pump {n}"})
        other = fake.create_record(2, "assets", {"name": "Compressor"})
        one = await runner(inst, "assets", "1").cycle()
        two = await runner(inst, "assets", "2").cycle()
    finally:
        await inst.client.close()
    assert len(one.events) == 3  # over two pages of two
    assert {e.type for e in one.events} == {f"{P}.asset.created"}
    assert {e.extensions["entityid"] for e in one.events} == {"1"}
    assert two.subjects == [f"asset/{other['id']}"]
    assert two.events[0].extensions == {"entityid": "2"}


async def test_a_change_is_published_by_the_next_pass_and_nothing_else(
    fake: FakeClickMaint,
) -> None:
    inst = instance(fake)
    try:
        first = fake.create_record(1, "locations", {"name": "Building A"})
        fake.create_record(1, "locations", {"name": "Building B"})
        run = runner(inst, "locations", "1")
        assert len((await run.cycle()).events) == 2
        fake.update_record(1, "locations", first["id"], {"address": "101-123 Example St"})
        again = await run.cycle()
        quiet = await run.cycle()
    finally:
        await inst.client.close()
    assert again.subjects == [f"location/{first['id']}"]
    assert again.events[0].type == f"{P}.location.updated"
    assert msgspec.json.decode(again.events[0].data)["address"] == "101-123 Example St"
    assert quiet.events == []
    listed = [r for r in fake.requests if r.path.endswith("/locations")]
    assert listed, "the fake logged no listing"


async def test_commands_and_the_work_orders_part_assignments(fake: FakeClickMaint) -> None:
    inst = instance(fake, entities=[1])
    try:
        part = fake.create_record(1, "parts", {"name": "Air Filter", "on_hand_qty": 6})
        created = await execute(
            inst, f"{P}.work_order.create", {"title": "Fix water leakage in Freezer"}
        )
        assert created.status == "succeeded", created
        assert isinstance(created.response, dict)
        work_order = created.response["data"]["id"]
        run = runner(inst, "work_orders", "1")
        first = await run.cycle()
        added = await execute(
            inst,
            f"{P}.work_order.add_part",
            {"id": work_order, "part_id": part["id"], "quantity": 2},
        )
        assert added.status == "succeeded", added
        second = await run.cycle()
    finally:
        await inst.client.close()
    assert first.subjects == [f"work_order/{work_order}"]
    assert first.events[0].type == f"{P}.work_order.created"
    assert second.subjects == [f"work_order/{work_order}"]
    data = msgspec.json.decode(second.events[0].data)
    assert [(a["part_id"], a["quantity"]) for a in data["part_assignments"]] == [(part["id"], 2)]


async def test_a_restock_becomes_a_part_transaction(fake: FakeClickMaint) -> None:
    inst = instance(fake, entities=[1])
    try:
        part = fake.create_record(1, "parts", {"name": "Air Filter", "on_hand_qty": 6})
        run = runner(inst, "part_transactions", "1")
        assert (await run.cycle()).events == []  # the part has no transactions yet
        restocked = await execute(
            inst,
            f"{P}.part.restock",
            {"id": part["id"], "quantity": 4, "cost": 26.15, "note": "PO-12345 received"},
        )
        assert restocked.status == "succeeded", restocked
        done = await run.cycle()
        again = await run.cycle()
    finally:
        await inst.client.close()
    (transaction,) = fake.transactions(1, part["id"])
    assert done.subjects == [f"part_transaction/{transaction['id']}"]
    assert done.events[0].extensions == {"entityid": "1", "partid": str(part["id"])}
    assert msgspec.json.decode(done.events[0].data) == transaction
    assert again.events == []
    assert fake.get_record(1, "parts", part["id"])["on_hand_qty"] == 10  # type: ignore[index]


async def test_without_entity_id_a_command_in_an_account_of_two_entities_fails(
    fake: FakeClickMaint,
) -> None:
    inst = instance(fake)
    try:
        result = await execute(inst, f"{P}.asset.create", {"name": "Pump"})
        given = await execute(inst, f"{P}.asset.create", {"name": "Pump", "entity_id": 2})
    finally:
        await inst.client.close()
    assert result.status == "failed"
    assert "several entities (1, 2)" in (result.reason or "")
    assert given.status == "succeeded"
    assert [r["name"] for r in fake.records(2, "assets")] == ["Pump"]
    assert fake.records(1, "assets") == []


async def test_a_wrong_key_fails_discovery_and_commands_without_retries(
    fake: FakeClickMaint,
) -> None:
    inst = instance(fake, key="wrong", entities=[1])
    try:
        assert POLL.scopes is not None
        with pytest.raises(PollError, match="Invalid API key"):
            await POLL.scopes.discover(lambda r: poll_fetch(inst, r, POLICY, Metrics()))
        result = await execute(inst, f"{P}.asset.create", {"name": "Pump"})
    finally:
        await inst.client.close()
    assert result.status == "failed"
    assert result.attempts == 1
    assert result.http_status == 401
    assert result.error == {"status": "error", "message": "Invalid API key"}
