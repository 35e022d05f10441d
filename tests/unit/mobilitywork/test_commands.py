"""Mobility Work commands: task.create validated and built, the changelog's commands declared.

Vendor calls go to a loopback aiohttp fake; no Kafka.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from cloudevents.core.v1.event import CloudEvent

from adapters.config import parse_config
from adapters.core.command_worker import Command, CommandWorker, Invalid, _fill_path
from adapters.core.errors import Action
from adapters.core.instance import Instance, build_instance
from adapters.core.metrics import Metrics
from adapters.core.vendor import PreparedCall
from adapters.core.vendor_call import CallOutcome, RetryPolicy, call_with_retry
from adapters.mobilitywork import SPEC
from adapters.mobilitywork.commands import COMMANDS, TASKS_PATH, TaskCreate

CREATE = "workbridge.mobilitywork.task.create"
API_KEY = "913a8f7cef6ff084f1635511b9c7d07c3bab2816"
UNDOCUMENTED = {
    "workbridge.mobilitywork.task.complete",
    "workbridge.mobilitywork.task.report_activity",
    "workbridge.mobilitywork.equipment.create",
    "workbridge.mobilitywork.spare_part.recount_stock",
    "workbridge.mobilitywork.spare_part.relocate",
    "workbridge.mobilitywork.storage_location.create",
}


def task(**over: Any) -> dict[str, Any]:
    """The document's cURL example."""
    data: dict[str, Any] = {
        "equipment": 42,
        "description": "My task",
        "startDateTime": "2022-01-11T09:00:00+00:00",
        "endDateTime": "2022-01-11T10:00:00+00:00",
        "allDay": False,
        "assignees": [3, "jane.doe@factory.example"],
    }
    data.update(over)
    return {k: v for k, v in data.items() if v is not ...}


def convert(data: dict[str, Any]) -> TaskCreate:
    return msgspec.convert(data, TaskCreate)


def build(data: dict[str, Any]) -> PreparedCall:
    spec = COMMANDS[CREATE]
    return spec.build(msgspec.convert(data, spec.model))


# --- the catalogue -------------------------------------------------------------------------


def test_catalogue() -> None:
    assert set(COMMANDS) == {CREATE} | UNDOCUMENTED
    assert SPEC.commands is COMMANDS
    for type_, spec in COMMANDS.items():
        assert spec.type == type_
        assert spec.description


def test_task_create_spec() -> None:
    spec = COMMANDS[CREATE]
    assert (spec.method, spec.path, spec.kind) == ("POST", "/partners/v1/tasks", "create")
    assert spec.model is TaskCreate
    assert not spec.path_not_documented
    assert not spec.repeat_safe
    # No vendor look-up is documented: an unknown outcome after a crash is `ambiguous`.
    assert spec.lookup is None


@pytest.mark.parametrize("type_", sorted(UNDOCUMENTED))
def test_changelog_commands_are_declared_off(type_: str) -> None:
    spec = COMMANDS[type_]
    assert spec.path_not_documented is True
    assert spec.kind == "action"
    assert spec.model == dict[str, Any]
    assert spec.method == "POST"
    assert not spec.repeat_safe
    assert spec.lookup is None
    assert "command_paths" in spec.description
    data = {"taskId": 7, "comment": "done"}
    call = spec.build(msgspec.convert(data, spec.model))
    assert call.method == "POST"
    assert call.json == data


# --- TaskCreate ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "equipment",
    [
        42,
        "0b6a7d1e-1f2a-4c3b-9d4e-5f6a7b8c9d0e",
        {"type": "externalReference", "value": "EQ-PUMP-001"},
        {"type": "native", "value": "0b6a7d1e-1f2a-4c3b-9d4e-5f6a7b8c9d0e"},
        {"type": "native", "value": 42},
    ],
)
def test_equipment_as_native_id_uuid_or_external_reference(equipment: Any) -> None:
    model = convert(task(equipment=equipment))
    assert msgspec.to_builtins(model.equipment) == equipment


@pytest.mark.parametrize(
    "assignees",
    [[3], ["jane.doe@factory.example"], [3, "jane.doe@factory.example", 4], [], None],
)
def test_assignees_as_ids_or_emails(assignees: Any) -> None:
    assert convert(task(assignees=assignees)).assignees == assignees


def test_minimal_task() -> None:
    model = convert(task(allDay=..., assignees=...))
    assert model.allDay is False
    assert model.assignees is None


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(task(description="ab"), id="description-too-short"),
        pytest.param(task(description=""), id="description-empty"),
        pytest.param(task(description=...), id="description-missing"),
        pytest.param(task(equipment=...), id="equipment-missing"),
        pytest.param(task(startDateTime=...), id="start-missing"),
        pytest.param(task(endDateTime=...), id="end-missing"),
        pytest.param(task(assignees=["not-an-email"]), id="bad-email"),
        pytest.param(task(assignees=["a@b"]), id="email-without-dot"),
        pytest.param(task(assignees=["jane doe@factory.example"]), id="email-with-space"),
        pytest.param(task(assignees=[0]), id="assignee-zero"),
        pytest.param(task(assignees=[True]), id="assignee-bool"),
        pytest.param(task(assignees="jane.doe@factory.example"), id="assignees-not-a-list"),
        pytest.param(task(priority="high"), id="unknown-field"),
        pytest.param(task(equipment={"type": "itemCode", "value": "EQ-1"}), id="equipment-type"),
        pytest.param(task(equipment={"type": "externalReference"}), id="equipment-no-value"),
        pytest.param(task(equipment={"type": "externalReference", "value": ""}), id="eq-empty"),
        pytest.param(
            task(equipment={"type": "externalReference", "value": "X", "extra": 1}),
            id="equipment-extra-field",
        ),
        pytest.param(task(equipment={"type": "native"}), id="native-no-value"),
        pytest.param(task(equipment={"type": "native", "value": 0}), id="native-zero"),
        pytest.param(task(equipment={"type": "native", "value": ""}), id="native-empty"),
        pytest.param(task(equipment={"type": "native", "value": [1]}), id="native-list"),
        pytest.param(
            task(equipment={"type": "native", "value": 1, "extra": 1}), id="native-extra-field"
        ),
        pytest.param(task(equipment={"value": 1}), id="equipment-object-without-type"),
        pytest.param(task(equipment=0), id="equipment-zero"),
        pytest.param(task(equipment=-1), id="equipment-negative"),
        pytest.param(task(equipment=""), id="equipment-empty-string"),
        pytest.param(task(equipment=[42]), id="equipment-list"),
        pytest.param(task(startDateTime="2022-01-11T09:00:00"), id="start-without-offset"),
        pytest.param(task(endDateTime="2022-01-11T10:00:00"), id="end-without-offset"),
        pytest.param(task(startDateTime="2022-01-11"), id="start-date-only"),
        pytest.param(task(startDateTime="2022-01-11T09:00:00.250"), id="fraction-no-offset"),
        pytest.param(task(endDateTime="2022-01-11 10:00:00"), id="end-space-no-offset"),
        pytest.param(task(startDateTime="tomorrow"), id="start-not-iso"),
        pytest.param(task(endDateTime="2022-01-11T08:59:59+00:00"), id="end-before-start"),
        pytest.param(
            task(
                startDateTime="2022-01-11T09:00:00+00:00",
                endDateTime="2022-01-11T10:30:00+02:00",
            ),
            id="end-before-start-across-offsets",
        ),
        pytest.param(task(allDay="yes"), id="all-day-not-bool"),
    ],
)
def test_invalid_task_is_rejected(data: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        convert(data)


def test_error_messages_name_the_problem() -> None:
    with pytest.raises(msgspec.ValidationError, match="offset"):
        convert(task(startDateTime="2022-01-11T09:00:00"))
    with pytest.raises(msgspec.ValidationError, match="before"):
        convert(task(endDateTime="2022-01-11T08:00:00+00:00"))
    with pytest.raises(msgspec.ValidationError, match="description"):
        convert(task(description="ab"))


def test_end_equal_to_start_and_other_offsets_are_accepted() -> None:
    convert(task(endDateTime="2022-01-11T09:00:00+00:00"))
    convert(task(endDateTime="2022-01-11T11:00:00+01:00"))
    convert(task(startDateTime="2022-01-11T09:00:00Z", endDateTime="2022-01-11T10:00:00Z"))


# --- build ---------------------------------------------------------------------------------


def test_build_sends_the_documented_payload() -> None:
    call = build(task())
    assert call.method == "POST"
    assert call.path == TASKS_PATH
    assert call.headers == {}
    assert call.json == task()


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("2022-01-11T09:00:00+00:00", "2022-01-11T09:00:00+00:00"),
        ("2022-01-11T09:00:00Z", "2022-01-11T09:00:00+00:00"),
        ("2022-01-11T09:00:00.500+01:00", "2022-01-11T09:00:00+01:00"),
        ("2022-01-11T09:00:00.999999-05:30", "2022-01-11T09:00:00-05:30"),
        ("2022-01-11 09:00+02:00", "2022-01-11T09:00:00+02:00"),
        ("20220111T090000Z", "2022-01-11T09:00:00+00:00"),
        ("2022-01-11T09:00:00+01:00:30", "2022-01-11T07:59:30+00:00"),
    ],
)
def test_build_sends_date_times_in_the_documented_form(given: str, sent: str) -> None:
    # The same instant to the second, the offset as given (or UTC), as the document writes.
    call = build(task(startDateTime=given, endDateTime="2022-01-11T23:00:00+00:00"))
    assert call.json["startDateTime"] == sent
    assert call.json["endDateTime"] == "2022-01-11T23:00:00+00:00"
    assert datetime.fromisoformat(sent) == datetime.fromisoformat(given).replace(microsecond=0)


def test_build_keeps_the_other_fields_with_normalised_date_times() -> None:
    start, end = "2022-01-11T09:00:00.500+01:00", "2022-01-11T10:00:00Z"
    call = build(task(startDateTime=start, endDateTime=end, allDay=True))
    assert call.json["startDateTime"] == "2022-01-11T09:00:00+01:00"
    assert call.json["endDateTime"] == "2022-01-11T10:00:00+00:00"
    assert call.json["allDay"] is True


def test_build_sends_all_day_false_and_empty_assignees_when_none_are_given() -> None:
    # Under the reading that all six documented fields are required, leaving one out is a 400.
    call = build(task(allDay=..., assignees=...))
    assert call.json == {
        "equipment": 42,
        "description": "My task",
        "startDateTime": "2022-01-11T09:00:00+00:00",
        "endDateTime": "2022-01-11T10:00:00+00:00",
        "allDay": False,
        "assignees": [],
    }
    assert build(task(assignees=None)).json["assignees"] == []
    assert build(task(assignees=[])).json["assignees"] == []
    assert build(task(assignees=[3])).json["assignees"] == [3]


def test_build_keeps_the_external_reference_object() -> None:
    ref = {"type": "externalReference", "value": "EQ-PUMP-001"}
    assert build(task(equipment=ref)).json["equipment"] == ref


@pytest.mark.parametrize(
    "ref",
    [
        {"type": "native", "value": "0b6a7d1e-1f2a-4c3b-9d4e-5f6a7b8c9d0e"},
        {"type": "native", "value": 42},
    ],
)
def test_build_keeps_the_native_object(ref: dict[str, Any]) -> None:
    assert build(task(equipment=ref)).json["equipment"] == ref


def test_build_sends_a_bare_native_uuid_in_the_object_form() -> None:
    # The document's advice ("favor the object format"): a bare string may be read as an
    # item code, or refused, where a number cannot be mistaken.
    uuid = "0b6a7d1e-1f2a-4c3b-9d4e-5f6a7b8c9d0e"
    assert build(task(equipment=uuid)).json["equipment"] == {"type": "native", "value": uuid}
    assert build(task(equipment=42)).json["equipment"] == 42


# --- configured paths ----------------------------------------------------------------------


def test_fill_path() -> None:
    assert _fill_path("/partners/v1/tasks/{taskId}/complete", {"taskId": 12}) == (
        "/partners/v1/tasks/12/complete"
    )
    assert _fill_path("/x/{a}/{b}", {"a": "a b/c?d", "b": "é"}) == "/x/a%20b%2Fc%3Fd/%C3%A9"
    assert _fill_path("/partners/v1/equipments", {"name": "x"}) == "/partners/v1/equipments"


@pytest.mark.parametrize(
    "data", [{}, {"other": 1}, {"taskId": {"id": 1}}, {"taskId": [1]}], ids=str
)
def test_fill_path_needs_a_scalar_field(data: dict[str, Any]) -> None:
    with pytest.raises(Invalid, match="taskId"):
        _fill_path("/partners/v1/tasks/{taskId}/complete", data)


# --- the worker's validation and judgement, with a real instance ---------------------------


COMPLETE_PATH = "/partners/v1/tasks/{taskId}/complete"


def make_instance(base_url: str, **options: Any) -> Instance:
    cfg = parse_config(
        {
            "kafka": {"bootstrap_servers": "127.0.0.1:1"},
            "instances": [
                {
                    "vendor": "mobilitywork",
                    "name": "mw",
                    "base_url": base_url,
                    "api_key": API_KEY,
                    "commands": {"enabled": True},
                    "options": {"network_name": "Factory Inc.", **options},
                }
            ],
        },
        env={},
    )
    return build_instance(cfg.instances[0], SPEC, "workbridge")


def command(type_: str, data: Any) -> Command:
    event = CloudEvent(
        {
            "specversion": "1.0",
            "id": "cmd-1",
            "source": "/tests",
            "type": type_,
            "subject": "task/1",
            "datacontenttype": "application/json",
        },
        data,
    )
    return Command(
        record=None,  # type: ignore[arg-type]
        event=event,
        command_id="cmd-1",
        command_type=type_,
        subject="task/1",
        idem_key="cmd-1",
    )


@pytest_asyncio.fixture
async def worker() -> AsyncIterator[CommandWorker]:
    inst = make_instance(
        "http://127.0.0.1:1",
        command_paths={"workbridge.mobilitywork.task.complete": COMPLETE_PATH},
    )
    w = CommandWorker(inst, parse_config({"kafka": {"bootstrap_servers": "x:1"}}).kafka, Metrics())
    try:
        yield w
    finally:
        await inst.client.close()


async def test_validate_task_create(worker: CommandWorker) -> None:
    spec, data, call = worker._validate(command(CREATE, task()))
    assert spec is COMMANDS[CREATE]
    assert isinstance(data, TaskCreate)
    assert call.path == TASKS_PATH
    assert call.json == task()


@pytest.mark.parametrize(
    "data", [task(description="ab"), task(startDateTime="2022-01-11T09:00:00"), [1], "x"]
)
async def test_validate_rejects_invalid_task_create(worker: CommandWorker, data: Any) -> None:
    with pytest.raises(Invalid):
        worker._validate(command(CREATE, data))


async def test_validate_rejects_a_changelog_command_without_a_path(worker: CommandWorker) -> None:
    with pytest.raises(Invalid, match="command_paths"):
        worker._validate(command("workbridge.mobilitywork.equipment.create", {"name": "Pump"}))


async def test_validate_uses_the_configured_path(worker: CommandWorker) -> None:
    data = {"taskId": "a/1", "comment": "done"}
    _, _, call = worker._validate(command("workbridge.mobilitywork.task.complete", data))
    assert call.path == "/partners/v1/tasks/a%2F1/complete"
    assert call.json == data
    with pytest.raises(Invalid, match="taskId"):
        worker._validate(command("workbridge.mobilitywork.task.complete", {"comment": "x"}))


async def test_worker_backoff_follows_the_documents_advice(worker: CommandWorker) -> None:
    # "re-try the exact same call a few minutes later": the base is a minute, not a second.
    assert worker.policy.base_s == 60.0
    inst = make_instance("http://127.0.0.1:1")
    inst.cfg.commands.backoff_base_s = 2.0
    try:
        assert CommandWorker(inst, worker.kafka, Metrics()).policy.base_s == 2.0
    finally:
        await inst.client.close()


# --- against a loopback fake ---------------------------------------------------------------

PROPERTY_ERRORS = {
    "/description": [
        {"messageKey": "error.payload.min_length", "parameters": {"min": 3, "length": 1}}
    ],
    "/equipment": [
        {
            "messageKey": "error.payload.equipment.unknown",
            "parameters": {"type": "native", "value": 99999},
        }
    ],
    "/assignees/0": [
        {
            "messageKey": "error.payload.assignees.unknown",
            "parameters": {"type": "email", "value": "nobody@factory.example"},
        }
    ],
}
ERROR_400 = {
    "http_status_code": 400,
    "code": "400044",
    "message": "The request payload is not valid.",
    "extended_message": {"global_errors": [], "property_errors": PROPERTY_ERRORS},
    "more_info_url": None,
}
ERROR_401 = {
    "http_status_code": 401,
    "code": "401001",
    "message": "Authentication error",
    "extended_message": {
        "global_errors": [{"messageKey": "Invalid Api Key.", "parameters": {}}],
        "property_errors": {},
    },
    "more_info_url": None,
}


@dataclass
class Fake:
    answers: list[tuple[int, Any]] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((request.method, request.path, dict(request.headers), body))
        status, payload = self.answers.pop(0) if self.answers else (201, None)
        headers = {"Request-Id": f"req-{len(self.requests)}"}
        if payload is None:
            return web.Response(status=status, headers=headers)
        return web.json_response(payload, status=status, headers=headers)


@dataclass
class Vendor:
    fake: Fake
    inst: Instance
    worker: CommandWorker

    async def create(self, data: dict[str, Any], attempts: int = 3) -> CallOutcome:
        spec = COMMANDS[CREATE]
        call = spec.build(msgspec.convert(data, spec.model))
        return await call_with_retry(
            self.inst.client,
            call.method,
            call.path,
            errors=SPEC.errors,
            policy=RetryPolicy(max_attempts=attempts, base_s=0.001, cap_s=0.005, deadline_s=5),
            repeat_safe=spec.repeat_safe,
            json=call.json,
            headers=call.headers,
        )

    def judge(self, outcome: CallOutcome) -> Any:
        base = {"command_type": CREATE, "idempotency_key": "k"}
        return self.worker._judge(outcome, base, COMMANDS[CREATE], replay=False)


@pytest_asyncio.fixture
async def vendor() -> AsyncIterator[Vendor]:
    fake = Fake()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    inst = make_instance(str(server.make_url("")))
    worker = CommandWorker(
        inst, parse_config({"kafka": {"bootstrap_servers": "x:1"}}).kafka, Metrics()
    )
    try:
        yield Vendor(fake, inst, worker)
    finally:
        await inst.client.close()
        await server.close()


async def test_created_with_the_documented_headers(vendor: Vendor) -> None:
    outcome = await vendor.create(task())
    assert outcome.action is Action.SUCCESS
    [(method, path, headers, body)] = vendor.fake.requests
    assert (method, path) == ("POST", "/partners/v1/tasks")
    assert headers["Api-Key"] == API_KEY
    assert "Factory Inc." in headers["User-Agent"]
    assert headers["Content-Type"].startswith("application/json")
    assert msgspec.json.decode(body) == task()
    result = vendor.judge(outcome)
    assert result.status == "succeeded"
    assert result.http_status == 201
    assert result.request_id == "req-1"
    assert result.accepted_async is None


async def test_202_is_succeeded_and_asynchronous(vendor: Vendor) -> None:
    vendor.fake.answers = [(202, None)]
    result = vendor.judge(await vendor.create(task()))
    assert result.status == "succeeded"
    assert result.accepted_async is True


@pytest.mark.parametrize("status", [500, 503])
async def test_5xx_is_retried_with_the_exact_same_call(vendor: Vendor, status: int) -> None:
    vendor.fake.answers = [(status, {"message": "oops"}), (201, None)]
    outcome = await vendor.create(task())
    assert outcome.action is Action.SUCCESS
    assert outcome.attempts == 2
    first, second = vendor.fake.requests
    assert first[3] == second[3]
    assert vendor.judge(outcome).status == "succeeded"


async def test_5xx_until_the_end_is_failed_not_ambiguous(vendor: Vendor) -> None:
    vendor.fake.answers = [(500, {"message": "oops"})] * 3
    outcome = await vendor.create(task(), attempts=3)
    assert outcome.attempts == 3
    result = vendor.judge(outcome)
    assert result.status == "failed"
    assert result.reason.startswith("gave up")
    assert result.request_id == "req-3"


async def test_400_is_failed_with_every_property_error(vendor: Vendor) -> None:
    vendor.fake.answers = [(400, ERROR_400)]
    outcome = await vendor.create(task(assignees=["nobody@factory.example"]))
    assert outcome.action is Action.FAIL
    assert outcome.attempts == 1
    result = vendor.judge(outcome)
    assert result.status == "failed"
    assert result.http_status == 400
    assert result.request_id == "req-1"
    assert result.error["extended_message"]["property_errors"] == PROPERTY_ERRORS
    assert len(vendor.fake.requests) == 1


async def test_401_is_failed_once_with_an_error_log(
    vendor: Vendor, caplog: pytest.LogCaptureFixture
) -> None:
    vendor.fake.answers = [(401, ERROR_401)] * 3
    with caplog.at_level(logging.ERROR):
        outcome = await vendor.create(task())
        result = vendor.judge(outcome)
    assert outcome.attempts == 1
    assert result.status == "failed"
    assert result.error == ERROR_401
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("API key" in m for m in errors)
    assert all(API_KEY not in m for m in errors)
    assert API_KEY not in msgspec.json.encode(result).decode()
