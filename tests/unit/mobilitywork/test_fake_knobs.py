"""Every assumption knob of the fake Mobility Work, flipped: the fake behaves differently, and
Workbridge's code that meets the behaviour still does the right thing.

`FakeMobilityWorkBehaviour` holds what Mobility Work's document leaves open. Each test sets
one knob (or two that only make sense together) away from its default, shows that the fake's
answer changed, and runs Workbridge's own code against it without a broker: task commands
through the real validation, decision and executor (`run_command`), webhooks through the real
webhook server with a recording publisher (`Bridge.events`). Where a reasonable reading makes
Workbridge do the wrong thing the test is a strict xfail naming the bug.
tests/unit/test_fake_knobs_covered.py keeps a new knob from being added without such a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import msgspec
import pytest
from aiokafka.structs import ConsumerRecord
from cloudevents.core.v1.event import CloudEvent

from adapters.config import parse_config
from adapters.core.cloudevents_codec import from_record, make_event, to_kafka
from adapters.core.command_result import CommandResult
from adapters.core.commands.decision import Answer, Facts, decide, judge
from adapters.core.commands.executor import Executor, retry_policy
from adapters.core.commands.model import Checked, decode_command
from adapters.core.commands.validation import check
from adapters.core.errors import Action
from adapters.core.instance import Instance, build_instance
from adapters.core.metrics import Metrics
from adapters.core.publisher import NotAcknowledged
from adapters.core.vendor_call import call_with_retry
from adapters.mobilitywork import SPEC
from adapters.mobilitywork.commands import COMMANDS, TASKS_PATH
from adapters.mobilitywork.fake import (
    SEED_USERS,
    FakeMobilityWork,
    FakeMobilityWorkBehaviour,
)
from tests.unit.core.webhook_harness import FakePublisher, served

API_KEY = "913a8f7cef6ff084f1635511b9c7d07c3bab2816"
SECRET = "whsec-knobs"
DEFAULTS = FakeMobilityWorkBehaviour()
CREATE = "workbridge.mobilitywork.task.create"
UUID_EQUIPMENT = "0b7d1c2e-8f5a-4e0b-9a3c-2d6e4f1a8b90"


def task(**over: Any) -> dict[str, Any]:
    """The document's cURL example with a seeded equipment and seeded assignees
    (`...` leaves a field out)."""
    body: dict[str, Any] = {
        "equipment": 1001,
        "description": "My task",
        "startDateTime": "2022-01-11T09:00:00+00:00",
        "endDateTime": "2022-01-11T10:00:00+00:00",
        "allDay": False,
        "assignees": [3, SEED_USERS[1].email],
    }
    body.update(over)
    return {k: v for k, v in body.items() if v is not ...}


class TickingClock:
    """The vendor's clock: real time, one second later at every reading (so a refreshed
    `_sentAt` differs, while signatures stay within the receiver's tolerance)."""

    def __init__(self) -> None:
        self.readings = 0

    def __call__(self) -> datetime:
        self.readings += 1
        return datetime.now(UTC) + timedelta(seconds=self.readings)


# --------------------------------------------------------------------------- harness


@contextlib.asynccontextmanager
async def mobility_work(
    *, clock: TickingClock | None = None, **knobs: Any
) -> AsyncIterator[FakeMobilityWork]:
    """A started fake Mobility Work with `knobs` flipped (webhook retries fast)."""
    settings: dict[str, Any] = {"webhook_retry_initial_s": 0.02, "webhook_retry_max_s": 0.05}
    settings.update(knobs)
    fake = FakeMobilityWork(
        api_key=API_KEY,
        webhook_secret=SECRET,
        behaviour=FakeMobilityWorkBehaviour(**settings),
        clock=clock,
    )
    async with fake:
        yield fake


def instance(fake: FakeMobilityWork) -> Instance:
    """A Workbridge Mobility Work instance on the fake, with fast command retries."""
    assert fake.base_url is not None
    cfg = parse_config(
        {
            "kafka": {"bootstrap_servers": "127.0.0.1:1"},
            "instances": [
                {
                    "vendor": "mobilitywork",
                    "name": "mw",
                    "base_url": fake.base_url,
                    "api_key": API_KEY,
                    "webhook_secret": SECRET,
                    "commands": {
                        "enabled": True,
                        "deadline_s": 10,
                        "max_attempts": 3,
                        "backoff_base_s": 0.01,
                        "backoff_max_s": 0.02,
                    },
                    "options": {"network_name": fake.network_name},
                }
            ],
        },
        env={},
    )
    return build_instance(cfg.instances[0], SPEC, "workbridge")


def command_record(data: Any) -> ConsumerRecord[bytes, bytes]:
    """A task.create command as it arrives from the commands topic."""
    event = make_event(
        id=str(uuid.uuid4()),
        source="/tests",
        type=CREATE,
        subject="task/new",
        partitionkey="task/new",
        data=msgspec.json.encode(data),
    )
    key, value, headers = to_kafka(event)
    return ConsumerRecord(
        "workbridge.mw.commands", 0, 1, 0, 0, key, value, None, len(key or b""), len(value), headers
    )


async def run_command(inst: Instance, data: dict[str, Any]) -> CommandResult:
    """The result Workbridge commits for a new task.create: decoded, validated and decided as
    the worker does, then carried out by the real executor (no ledger, no Kafka)."""
    command = decode_command(command_record(data))
    checked = check(inst, command)
    verdict = decide(command, Facts(), checked)
    if isinstance(verdict, Answer):
        return verdict.result
    assert isinstance(checked, Checked)

    async def before_send() -> None:
        return None

    return await Executor(inst, Metrics()).run(
        command, checked, replay=False, before_send=before_send, after_attempt=lambda _: None
    )


async def create(fake: FakeMobilityWork, data: dict[str, Any]) -> CommandResult:
    """One task.create command through a fresh instance."""
    inst = instance(fake)
    try:
        return await run_command(inst, data)
    finally:
        await inst.client.close()


class Bridge:
    """A Workbridge instance on the fake: commands and its webhook endpoint."""

    def __init__(self, inst: Instance, publisher: FakePublisher) -> None:
        self.inst, self.publisher = inst, publisher

    async def command(self, data: dict[str, Any]) -> CommandResult:
        return await run_command(self.inst, data)

    def events(self) -> list[CloudEvent]:
        """The CloudEvents the webhook endpoint published."""
        return [
            from_record(key, value, list(headers))
            for topic, key, value, headers in self.publisher.records
            if topic == self.inst.topics.events
        ]


@contextlib.asynccontextmanager
async def bridge(
    fake: FakeMobilityWork, publisher: FakePublisher | None = None
) -> AsyncIterator[Bridge]:
    """Workbridge on `fake`, its webhook endpoint subscribed (signed) to every event."""
    inst = instance(fake)
    wb = Bridge(inst, publisher or FakePublisher())
    async with served({inst.name: inst}, wb.publisher, max_body_bytes=1 << 20) as (client, _):
        fake.subscribe("*", str(client.make_url(f"/webhooks/{inst.name}")))
        try:
            yield wb
        finally:
            await fake.wait_deliveries_idle(5)


async def post_task(
    fake: FakeMobilityWork,
    body: Any = None,
    *,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """POST /partners/v1/tasks as any client would: (status, decoded body or None)."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{fake.api_url}/tasks",
            json=body if data is None else None,
            data=data,
            headers={"Api-Key": API_KEY, **(headers or {})},
        ) as response,
    ):
        raw = await response.read()
        return response.status, msgspec.json.decode(raw) if raw else None


def property_errors(answer: Any) -> dict[str, Any]:
    """The `property_errors` of the document's 400 body (of the vendor or of a result)."""
    errors: dict[str, Any] = answer["extended_message"]["property_errors"]
    return errors


def failed_once(result: CommandResult, status: int = 400) -> None:
    """A permanent failure: the vendor's answer in the result, sent once, not retried."""
    assert (result.status, result.http_status, result.attempts) == ("failed", status, 1)
    assert result.request_id


# --------------------------------------------------------------------------- task payloads


async def test_when_fewer_fields_are_required_workbridge_still_asks_for_the_dates() -> None:
    async with mobility_work(task_required_fields=("equipment", "description")) as fake:
        status, _ = await post_task(fake, task(startDateTime=..., endDateTime=...))
        assert status == 201  # the default reading refuses it
        result = await create(fake, task(startDateTime=..., endDateTime=...))
        # Workbridge schedules tasks: an unscheduled one is refused before any call.
        assert result.status == "rejected"
        assert len(fake.calls) == 1
        assert (await create(fake, task())).status == "succeeded"


ALL_SIX = (*DEFAULTS.task_required_fields, "allDay", "assignees")


async def test_when_every_documented_field_is_required_a_full_task_is_created() -> None:
    async with mobility_work(task_required_fields=ALL_SIX) as fake:
        status, answer = await post_task(fake, task(assignees=...))
        assert status == 400
        assert property_errors(answer) == {
            "/assignees": [{"messageKey": DEFAULTS.message_keys["required"], "parameters": {}}]
        }
        # allDay is always sent (false by default), so a task without it goes through.
        result = await create(fake, task(allDay=...))
        assert result.status == "succeeded"
        assert fake.calls[-1].json["allDay"] is False


async def test_when_every_documented_field_is_required_a_task_without_assignees_is_created() -> (
    None
):
    async with mobility_work(task_required_fields=ALL_SIX) as fake:
        result = await create(fake, task(assignees=...))
        assert result.status == "succeeded"
        assert fake.calls[-1].json["assignees"] == []  # sent empty, not left out
        assert fake.tasks[-1].assignee_ids == []


async def test_empty_assignees_are_taken_where_assignees_are_optional() -> None:
    async with mobility_work() as fake:
        assert "assignees" not in fake.behaviour.task_required_fields
        result = await create(fake, task(assignees=...))
        assert result.status == "succeeded"
        assert fake.calls[-1].json["assignees"] == []
        assert fake.tasks[-1].assignee_ids == []


async def test_a_longer_minimum_description_fails_with_the_vendors_reason() -> None:
    async with mobility_work(description_min_length=5) as fake:
        status, answer = await post_task(fake, task(description="abcd"))
        assert status == 400
        result = await create(fake, task(description="abcd"))
        failed_once(result)
        expected = {
            "/description": [
                {"messageKey": "error.payload.min_length", "parameters": {"min": 5, "length": 4}}
            ]
        }
        assert property_errors(answer) == property_errors(result.error) == expected
        assert (await create(fake, task(description="abcde"))).status == "succeeded"
        assert len(fake.tasks) == 1


async def test_a_maximum_description_fails_with_the_vendors_own_message_key() -> None:
    keys = {**DEFAULTS.message_keys, "max_length": "validation.length.too_long"}
    async with mobility_work(description_max_length=20, message_keys=keys) as fake:
        long = "Replace the motor part of the feed pump"
        result = await create(fake, task(description=long))
        failed_once(result)
        assert property_errors(result.error) == {
            "/description": [
                {
                    "messageKey": "validation.length.too_long",
                    "parameters": {"max": 20, "length": len(long)},
                }
            ]
        }
        assert (await create(fake, task(description=long[:20]))).status == "succeeded"


NO_Z = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$"
FRACTIONS = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{2}:\d{2}|Z)$"
DOCUMENTED = "2022-01-11T09:00:00+00:00"


@pytest.mark.parametrize(
    ("pattern", "refused", "accepted"),
    [
        pytest.param(NO_Z, "2022-01-11T09:00:00Z", DOCUMENTED, id="offset-only"),
        pytest.param(
            FRACTIONS, "2022-01-11 09:00:00+00:00", "2022-01-11T09:00:00.250+00:00", id="fractions"
        ),
    ],
)
async def test_date_times_are_sent_in_the_documented_form_which_any_reading_takes(
    pattern: str, refused: str, accepted: str
) -> None:
    async with mobility_work(date_time_pattern=pattern) as fake:
        assert (await post_task(fake, task(startDateTime=refused)))[0] == 400
        assert (await post_task(fake, task(startDateTime=accepted)))[0] == 201
        # The flip changed the answer: the default reading decides these two the other way
        # round, or refuses both.
        default = re.compile(DEFAULTS.date_time_pattern)
        assert bool(default.match(refused)) or not default.match(accepted)
        result = await create(fake, task(startDateTime=accepted))
        assert result.status == "succeeded"
        assert fake.calls[-1].json["startDateTime"] == DOCUMENTED


async def test_a_date_time_pattern_set_on_a_running_fake_applies() -> None:
    async with mobility_work() as fake:
        assert (await post_task(fake, task(startDateTime="2022-01-11T09:00:00Z")))[0] == 201
        fake.behaviour = msgspec.structs.replace(fake.behaviour, date_time_pattern=NO_Z)
        assert (await post_task(fake, task(startDateTime="2022-01-11T09:00:00Z")))[0] == 400


@pytest.mark.parametrize(
    ("pattern", "given"),
    [
        pytest.param(NO_Z, "2022-01-11T09:00:00Z", id="z-where-only-offsets"),
        pytest.param(
            DEFAULTS.date_time_pattern, "2022-01-11T09:00:00.250+00:00", id="fractions-default"
        ),
    ],
)
async def test_a_valid_date_time_is_sent_in_the_documented_form(pattern: str, given: str) -> None:
    async with mobility_work(date_time_pattern=pattern) as fake:
        assert (await post_task(fake, task(startDateTime=given)))[0] == 400  # as given: refused
        result = await create(fake, task(startDateTime=given))
        assert result.status == "succeeded"
        assert fake.calls[-1].json["startDateTime"] == DOCUMENTED
        # An offset-less time is still refused before any call: its instant is unknown.
        naive = await create(fake, task(startDateTime="2022-01-11T09:00:00.250"))
        assert naive.status == "rejected" and "offset" in str(naive.error)
        assert len(fake.tasks) == len(fake.calls) == 1  # only Workbridge's first one
        assert len(fake.requests) == 2  # the raw one and that one


async def test_the_vendors_date_time_format_reaches_the_failed_result() -> None:
    label = "Y-m-d\\TH:i:sO"
    async with mobility_work(date_time_format_label=label) as fake:
        inst = instance(fake)
        spec = COMMANDS[CREATE]
        try:
            # Past Workbridge's own checks, as a body another build might send.
            outcome = await call_with_retry(
                inst.client,
                "POST",
                TASKS_PATH,
                errors=SPEC.errors,
                policy=retry_policy(inst),
                repeat_safe=spec.repeat_safe,
                json=task(startDateTime="11/01/2022 09:00"),
            )
        finally:
            await inst.client.close()
        result = judge(
            outcome, {"command_type": CREATE, "idempotency_key": "k"}, spec, replay=False
        )
        assert (outcome.action, outcome.attempts) == (Action.FAIL, 1)
        failed_once(result)
        [error] = property_errors(result.error)["/startDateTime"]
        assert error["parameters"] == {"format": label, "value": "11/01/2022 09:00"}
        assert label != DEFAULTS.date_time_format_label


async def test_an_end_before_the_start_is_refused_by_workbridge_whatever_the_vendor_allows() -> (
    None
):
    backwards = {"endDateTime": "2022-01-11T08:00:00+00:00"}
    async with mobility_work(reject_end_before_start=False) as fake:
        assert (await post_task(fake, task(**backwards)))[0] == 201  # the default: 400
        result = await create(fake, task(**backwards))
        assert result.status == "rejected" and "before" in str(result.error)
        assert len(fake.calls) == 1  # only the raw one
        same = await create(fake, task(endDateTime=DOCUMENTED))
        assert same.status == "succeeded"


# --------------------------------------------------------------------------- references


@pytest.mark.parametrize("bare", ["externalReference", "native", None])
async def test_numbers_and_reference_objects_find_the_equipment_under_any_bare_string_reading(
    bare: str | None,
) -> None:
    async with mobility_work(bare_string_equipment=bare) as fake:
        status, answer = await post_task(fake, task(equipment="PRESS-003"))
        if bare == "externalReference":
            assert status == 201
        else:
            assert status == 400
            [error] = property_errors(answer)["/equipment"]
            kind = "error.payload.equipment.unknown" if bare else DEFAULTS.message_keys["type"]
            assert error["messageKey"] == kind
        for equipment in (1002, {"type": "externalReference", "value": "PUMP-001"}):
            assert (await create(fake, task(equipment=equipment))).status == "succeeded"
        assert [t.equipment_id for t in fake.tasks][-2:] == [1002, 1001]


@pytest.mark.parametrize("bare", ["externalReference", "native", None])
async def test_a_native_uuid_equipment_is_found(bare: str | None) -> None:
    async with mobility_work(bare_string_equipment=bare) as fake:
        fake.add_equipment(UUID_EQUIPMENT, "LATHE-9", "Lathe")
        result = await create(fake, task(equipment=UUID_EQUIPMENT))
        assert result.status == "succeeded"
        assert fake.tasks[-1].equipment_id == UUID_EQUIPMENT
        # Sent in the object form, which no reading of a bare string can mistake.
        native = {"type": "native", "value": UUID_EQUIPMENT}
        assert fake.calls[-1].json["equipment"] == native
        explicit = await create(fake, task(equipment=native))
        assert explicit.status == "succeeded"
        assert fake.calls[-1].json["equipment"] == native
        assert [t.equipment_id for t in fake.tasks] == [UUID_EQUIPMENT, UUID_EQUIPMENT]


async def test_only_external_references_in_the_object_form_are_what_workbridge_sends() -> None:
    async with mobility_work(equipment_reference_types=("externalReference",)) as fake:
        status, answer = await post_task(fake, task(equipment={"type": "native", "value": 1001}))
        assert status == 400
        assert (
            property_errors(answer)["/equipment/type"][0]["messageKey"]
            == (DEFAULTS.message_keys["choice"])
        )
        by_code = {"type": "externalReference", "value": "CONV-002"}
        assert (await create(fake, task(equipment=by_code))).status == "succeeded"
        assert (await create(fake, task(equipment=1003))).status == "succeeded"
        assert [t.equipment_id for t in fake.tasks] == [1002, 1003]


@pytest.mark.parametrize("case_sensitive", [True, False])
async def test_an_item_code_is_sent_as_given(case_sensitive: bool) -> None:
    async with mobility_work(item_code_case_sensitive=case_sensitive) as fake:
        by_code = {"type": "externalReference", "value": "pump-001"}
        result = await create(fake, task(equipment=by_code))
        assert fake.calls == [] or fake.calls[0].json["equipment"] == by_code
        if case_sensitive:
            failed_once(result)
            assert "/equipment" in property_errors(result.error)
        else:
            assert result.status == "succeeded"
            assert fake.tasks[0].equipment_id == 1001


@pytest.mark.parametrize("case_insensitive", [True, False])
async def test_an_assignee_email_is_sent_as_given(case_insensitive: bool) -> None:
    async with mobility_work(email_case_insensitive=case_insensitive) as fake:
        shouted = SEED_USERS[0].email.upper()
        result = await create(fake, task(assignees=[shouted]))
        if case_insensitive:
            assert result.status == "succeeded"
        else:
            failed_once(result)
            assert property_errors(result.error) == {
                "/assignees/0": [
                    {
                        "messageKey": "error.payload.assignees.unknown",
                        "parameters": {"type": "email", "value": shouted},
                    }
                ]
            }
        exact = await create(fake, task(assignees=[SEED_USERS[0].email]))
        assert exact.status == "succeeded"
        assert fake.tasks[-1].assignee_ids == [SEED_USERS[0].id]


async def test_workbridge_sends_only_the_documented_properties() -> None:
    async with mobility_work(reject_unknown_properties=True) as fake:
        status, answer = await post_task(fake, task(priority="high"))
        assert status == 400
        assert property_errors(answer) == {
            "/priority": [
                {"messageKey": DEFAULTS.message_keys["unknown_property"], "parameters": {}}
            ]
        }
        assert (await create(fake, task())).status == "succeeded"
        assert (await create(fake, task(allDay=..., assignees=...))).status == "succeeded"
        known = {"equipment", "description", "startDateTime", "endDateTime", "allDay", "assignees"}
        assert all(set(call.json) <= known for call in fake.calls)


@pytest.mark.parametrize("status", [400, 415])
async def test_workbridge_always_sends_json_as_json(status: int) -> None:
    async with mobility_work(wrong_content_type_status=status) as fake:
        body = msgspec.json.encode(task())
        sent = await post_task(fake, data=body, headers={"Content-Type": "text/plain"})
        assert sent[0] == status  # the default reading parses it anyway
        result = await create(fake, task())
        assert result.status == "succeeded"
        assert fake.calls[-1].header("Content-Type") == "application/json"


# --------------------------------------------------------------------------- answers


async def test_the_vendors_own_error_codes_reach_the_result_and_5xx_is_retried() -> None:
    async with mobility_work(error_code_suffix="001") as fake:
        fake.fail_next(1, 500)
        recovered = await create(fake, task())
        fake.fail_next(3, 500)
        exhausted = await create(fake, task())
        assert (recovered.status, recovered.attempts) == ("succeeded", 2)
        assert (exhausted.status, exhausted.attempts, exhausted.http_status) == ("failed", 3, 500)
        assert exhausted.error["code"] == "500001"  # the default reading: "500000"
        assert exhausted.reason is not None and exhausted.reason.startswith("gave up")
        assert len(fake.tasks) == 1


@pytest.mark.parametrize(("fmt", "shape"), [("uuid", r"[0-9a-f-]{36}"), ("hex", r"[0-9a-f]{32}")])
async def test_the_request_id_is_reported_whatever_its_form(fmt: str, shape: str) -> None:
    async with mobility_work(request_id_format=fmt) as fake:
        result = await create(fake, task())
        assert result.status == "succeeded"
        assert result.request_id == fake.calls[0].request_id
        assert re.fullmatch(shape, result.request_id)


# --------------------------------------------------------------------------- webhooks


async def test_task_ids_from_another_start_are_the_webhook_events_subject() -> None:
    async with mobility_work(first_task_id=500) as fake, bridge(fake) as wb:
        result = await wb.command(task())
        await fake.wait_deliveries_idle(5)
        assert result.status == "succeeded"
        assert [t.id for t in fake.tasks] == [500]
        [event] = wb.events()
        assert event.get_type() == "workbridge.mobilitywork.task.created"
        assert event.get_subject() == "task/500"


@pytest.mark.parametrize("event", [None, "TaskWasScheduled"])
async def test_a_created_task_is_an_event_only_if_the_vendor_says_so(event: str | None) -> None:
    async with mobility_work(api_task_created_event=event) as fake, bridge(fake) as wb:
        result = await wb.command(task())
        await fake.wait_deliveries_idle(5)
        assert result.status == "succeeded"
        subjects = [(e.get_type(), e.get_subject()) for e in wb.events()]
        if event is None:
            assert fake.webhooks == [] and subjects == []
        else:
            assert subjects == [("workbridge.mobilitywork.task.scheduled", "task/1")]


@pytest.mark.parametrize(
    "defaults",
    [{}, {"tags": ["urgent"], "requiredSpareParts": [], "checklist": []}],
    ids=["none", "more"],
)
async def test_a_task_webhook_is_published_as_sent_whatever_its_default_fields(
    defaults: dict[str, Any],
) -> None:
    async with mobility_work(task_default_fields=defaults) as fake, bridge(fake) as wb:
        emitted = fake.task_event("TaskWasUpdated", {"id": 7})
        await fake.wait_deliveries_idle(5)
        assert emitted.envelope["task"] == {"id": 7, **defaults}
        [event] = wb.events()
        assert (event.get_type(), event.get_subject()) == (
            "workbridge.mobilitywork.task.updated",
            "task/7",
        )
        data = event.get_data()
        assert data == msgspec.json.decode(emitted.body)


async def test_default_task_fields_never_replace_what_an_api_created_task_holds() -> None:
    defaults: dict[str, Any] = {"assignees": [], "tags": []}
    async with mobility_work(task_default_fields=defaults) as fake, bridge(fake) as wb:
        result = await wb.command(task())
        await fake.wait_deliveries_idle(5)
        assert result.status == "succeeded"
        [event] = wb.events()
        data = event.get_data()
        assert isinstance(data, dict)
        published = data["task"]
        assert [a["id"] for a in published["assignees"]] == [3, SEED_USERS[1].id]
        assert published["tags"] == []
        assert event.get_subject() == f"task/{fake.tasks[0].id}"


@pytest.mark.parametrize(
    "names",
    [
        pytest.param(("TaskWasCreated", "TaskWasClosed"), id="was-verb"),
        pytest.param(("TaskCreated", "TaskClosed"), id="without-was"),
    ],
)
async def test_a_task_webhook_is_about_its_task_whatever_its_name(names: tuple[str, str]) -> None:
    async with mobility_work(task_events=names) as fake, bridge(fake) as wb:
        fake.task_event(names[1], {"id": 7})
        await fake.wait_deliveries_idle(5)
        [event] = wb.events()
        assert event.get_subject() == "task/7"
        assert event.get_type() == "workbridge.mobilitywork.task.closed"


@pytest.mark.parametrize("suffix", ["", "Event"])
async def test_the_type_suffix_does_not_change_the_event(suffix: str) -> None:
    async with mobility_work(webhook_type_suffix=suffix) as fake, bridge(fake) as wb:
        emitted = fake.spare_part_consumed(quantity=3, previous_stock=116, spare_part={"id": 17})
        await fake.wait_deliveries_idle(5)
        assert emitted.envelope["_type"] == f"SparePartWasConsumed{suffix}"
        [event] = wb.events()
        assert event.get_type() == "workbridge.mobilitywork.spare_part.consumed"
        assert event.get_subject() == "spare_part/17"


@pytest.mark.parametrize(
    "knobs",
    [
        pytest.param(dict(canceled_consumption_event="SparePartConsumptionWasCancelled"), id="ll"),
        pytest.param(dict(canceled_consumption_field="cancellation"), id="field"),
        pytest.param(dict(canceled_consumption_type="SparePartConsumptionCanceled"), id="type"),
        pytest.param(dict(cost_center_field="costCentre"), id="cost-center"),
    ],
)
async def test_a_canceled_consumption_is_one_event_type_whatever_its_payload_names(
    knobs: dict[str, Any],
) -> None:
    async with mobility_work(**knobs) as fake, bridge(fake) as wb:
        emitted = fake.spare_part_consumption_canceled(
            quantity=2, previous_stock=3, spare_part={"id": 17}, cost_center={"id": 9}
        )
        await fake.wait_deliveries_idle(5)
        behaviour = fake.behaviour
        envelope = emitted.envelope
        assert envelope["_event"] == behaviour.canceled_consumption_event
        assert envelope[behaviour.canceled_consumption_field]["_type"] == (
            behaviour.canceled_consumption_type
        )
        assert envelope[behaviour.cost_center_field] == {"id": 9}
        [(knob, value)] = knobs.items()
        assert getattr(behaviour, knob) == value != getattr(DEFAULTS, knob)
        [event] = wb.events()
        assert event.get_type() == "workbridge.mobilitywork.spare_part.consumption_canceled"
        assert event.get_subject() == "spare_part/17"
        assert event.get_data() == msgspec.json.decode(emitted.body)


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "text/plain"])
async def test_a_webhook_is_taken_whatever_its_content_type(content_type: str) -> None:
    async with mobility_work(webhook_content_type=content_type) as fake, bridge(fake) as wb:
        fake.spare_part_consumed(quantity=1, previous_stock=2)
        await fake.wait_deliveries_idle(5)
        [delivery] = fake.deliveries
        assert delivery.headers["Content-Type"] == content_type and delivery.ok
        assert len(wb.events()) == 1


@pytest.mark.parametrize("user_agent", ["GuzzleHttp/7.8 curl/8.5 PHP/8.3", "Mobility Work"])
async def test_a_webhook_is_taken_whatever_its_user_agent(user_agent: str) -> None:
    async with mobility_work(webhook_user_agent=user_agent) as fake, bridge(fake) as wb:
        fake.spare_part_consumed(quantity=1, previous_stock=2)
        await fake.wait_deliveries_idle(5)
        [delivery] = fake.deliveries
        assert delivery.headers["User-Agent"] == user_agent and delivery.ok
        assert len(wb.events()) == 1


class FlakyPublisher(FakePublisher):
    """Fails the first `failures` publishes (Kafka did not acknowledge), timing each one;
    `slow_s` delays the acknowledgement of the first one, which is on Kafka at once (as with
    the real publisher, a client hanging up meanwhile does not take it back)."""

    def __init__(self, failures: int = 0, slow_s: float = 0.0) -> None:
        super().__init__()
        self.failures = failures
        self.slow_s = slow_s
        self.times: list[float] = []

    async def publish(self, records: list[Any], *, timeout_s: float) -> None:
        self.times.append(time.monotonic())
        if len(self.times) <= self.failures:
            raise NotAcknowledged("not acknowledged")
        self.calls.append((records, timeout_s))
        if len(self.times) == 1 and self.slow_s:
            await asyncio.sleep(self.slow_s)


@pytest.mark.parametrize("factor", [1.0, 3.0])
async def test_webhook_retries_on_any_schedule_publish_the_event_once(factor: float) -> None:
    async with mobility_work(
        webhook_retry_initial_s=0.1, webhook_retry_factor=factor, webhook_retry_max_s=5.0
    ) as fake:
        publisher = FlakyPublisher(failures=2)
        async with bridge(fake, publisher) as wb:
            fake.spare_part_consumed(quantity=1, previous_stock=2)
            await fake.wait_deliveries_idle(5)
        assert [d.status for d in fake.deliveries] == [503, 503, 200]
        first, second = (b - a for a, b in zip(publisher.times, publisher.times[1:], strict=False))
        assert 0.1 <= first < 0.25
        if factor == 1.0:
            assert second < 0.25
        else:
            assert second >= 0.3
        assert len(wb.events()) == 1


@pytest.mark.parametrize(
    ("resigns", "refreshes"),
    [
        pytest.param(False, False, id="same-request"),
        pytest.param(True, False, id="resigned"),
        pytest.param(True, True, id="resigned-new-sent-at"),
    ],
)
async def test_a_vendor_that_gives_up_early_resends_an_event_with_the_same_id(
    resigns: bool, refreshes: bool
) -> None:
    clock = TickingClock()
    async with mobility_work(
        clock=clock,
        webhook_timeout_s=0.1,
        retry_resigns=resigns,
        retry_refreshes_sent_at=refreshes,
    ) as fake:
        publisher = FlakyPublisher(slow_s=0.25)  # on Kafka, but after the vendor gave up
        async with bridge(fake, publisher) as wb:
            fake.spare_part_consumed(quantity=1, previous_stock=2)
            await fake.wait_deliveries_idle(5)
            await asyncio.sleep(0.2)  # the slow first acknowledgement ends
        first, last = fake.deliveries[0], fake.deliveries[-1]
        assert first.status is None and first.error and last.ok
        # The fake: a refreshed _sentAt changes the body, re-signing changes the header.
        assert (first.body != last.body) is refreshes
        assert (first.headers["X-MW-Signature"] != last.headers["X-MW-Signature"]) is resigns
        events = wb.events()
        assert events
        assert len({e.get_id() for e in events}) == 1
