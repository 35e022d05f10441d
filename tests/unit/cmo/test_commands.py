"""CMO commands: the document's request bodies, the alternatives, risks, the due day, and what
an answer becomes."""

from __future__ import annotations

import copy
import dataclasses
import logging
import uuid
from typing import Any

import msgspec
import pytest
from aiokafka.structs import ConsumerRecord

from adapters.cmo.commands import (
    COMMANDS,
    CREATE,
    DELETE,
    GET,
    NO_ZONE,
    UPDATE,
    ActionCreate,
    bind_commands,
    created_id,
)
from adapters.cmo.errors import ERRORS
from adapters.cmo.undocumented import CmoOptions
from adapters.core.cloudevents_codec import make_event, to_kafka
from adapters.core.command_result import CommandResult
from adapters.core.commands.executor import Executor
from adapters.core.commands.model import Checked, Command, Rejected, decode_command
from adapters.core.commands.validation import check
from adapters.core.instance import Instance, build_instance
from adapters.core.metrics import Metrics
from adapters.core.rest_command import PathFieldInvalid
from adapters.core.vendor import PreparedCall, VendorSpec, static_auth
from adapters.core.vendor_http import VendorResponse
from adapters.settings import InstanceConfig, OptionsError

ACTION_ID = "14b44c76-b1d4-4df1-84b6-2f2f583ae67d"
NEW_ID = "68579fa4-a2bd-4ae4-b041-76c08dc4699b"

# The document's create body (its first line's missing quote restored).
CREATE_BODY: dict[str, Any] = {
    "orgUnitName": "North America Operations",
    "entityName": "Head Office",
    "actionCategoryName": "Emergency Response",
    "actionText": "Fix the pipes ",
    "guidanceText": "Guidance Text for Action Created via public API #3",
    "responsibleUserName": "Dan Johnson",
    "carbonCopyEmail": "test@example.com",
    "actionPriorityName": "High",
    "gpsCoordinates": {"X": 1, "Y": 2, "Z": 3},
    "dueDate": "2021-07-02T13:59:59.997Z",
    "hoursTaken": 15,
    "actionValue": 25,
    "progress": 33,
    "geocortexFeature": None,
    "residualRisk": {"consequenceCode": 1, "likelihoodCode": 1},
    "inherentRisk": {"consequenceCode": 2, "likelihoodCode": 2},
    "attachmentRequired": True,
    "confidential": False,
    "customFields": [{"customFieldName": "happiness", "value": "very high score"}],
}
# The document's update body.
UPDATE_BODY: dict[str, Any] = {
    **CREATE_BODY,
    "orgUnitName": "Albama",
    "entityName": "ActionEntity",
    "actionCategoryName": "Act",
    "actionText": "Action Updated via public API #3",
    "guidanceText": "Guidance Text for Action Updated via public API #3",
}
ENTITY_ID = "0656ef56-f3e2-418b-9f47-1de3c889dd6f"


def config(zone: str | None = None) -> InstanceConfig:
    return msgspec.convert(
        {
            "vendor": "cmo",
            "name": "acme",
            "base_url": "https://cmo.example.com",
            "commands": {
                "enabled": True,
                "deadline_s": 2,
                "backoff_base_s": 0.001,
                "backoff_max_s": 0.002,
            },
            "options": {"company_time_zone": zone} if zone else {},
        },
        InstanceConfig,
    )


def build(type_: str, data: dict[str, Any], zone: str | None = None) -> PreparedCall:
    spec = bind_commands(config(zone), COMMANDS)[type_]
    return spec.build(msgspec.convert(data, spec.model))


def refused(type_: str, data: dict[str, Any]) -> str:
    with pytest.raises(msgspec.ValidationError) as exc:
        msgspec.convert(data, COMMANDS[type_].model)
    return str(exc.value)


# --- the catalogue ----------------------------------------------------------------------------


def test_catalogue() -> None:
    assert set(COMMANDS) == {CREATE, UPDATE, DELETE, GET}
    assert CREATE == "workbridge.cmo.action.create"
    for type_, spec in COMMANDS.items():
        assert spec.type == type_
        assert spec.description
        assert not spec.path_not_documented and not spec.path_guessed  # all documented
        assert spec.lookup is None  # CMO has no look-up by a reference of ours
        msgspec.json.schema(spec.model)  # each model has a JSON Schema


@pytest.mark.parametrize(
    ("type_", "method", "path", "kind", "repeat_safe"),
    [
        (CREATE, "POST", "/api/actions", "create", False),
        (UPDATE, "PUT", "/api/actions/{id}", "update", True),
        (DELETE, "DELETE", "/api/actions/{id}", "delete", True),
        (GET, "GET", "/api/actions/{id}", "action", True),
    ],
)
def test_what_each_command_is(
    type_: str, method: str, path: str, kind: str, repeat_safe: bool
) -> None:
    spec = COMMANDS[type_]
    assert (spec.method, spec.path, spec.kind, spec.repeat_safe) == (
        method,
        path,
        kind,
        repeat_safe,
    )


def test_binding_keeps_the_catalogue() -> None:
    # The vendor's catalogue may hold more (the watch's track/untrack): kept as they are.
    other = dataclasses.replace(COMMANDS[GET], type="workbridge.cmo.action.track")
    catalogue = {**COMMANDS, other.type: other}
    for zone in (None, "Asia/Kolkata"):
        bound = bind_commands(config(zone), catalogue)
        assert set(bound) == set(catalogue)
        assert bound[other.type] is other
        for type_ in COMMANDS:
            spec, plain = bound[type_], COMMANDS[type_]
            assert (spec.model, spec.kind, spec.repeat_safe) == (
                plain.model,
                plain.kind,
                plain.repeat_safe,
            )
            assert spec.answer is plain.answer


# --- the document's bodies --------------------------------------------------------------------


def test_the_documents_create_body_is_sent_as_it_is() -> None:
    call = build(CREATE, CREATE_BODY)
    assert (call.method, call.path, call.headers) == ("POST", "/api/actions", {})
    assert call.json == CREATE_BODY
    # Numbers keep their JSON type (15, not 15.0), as CMO's model binder takes them.
    assert msgspec.json.encode(call.json).count(b'"hoursTaken":15,') == 1


def test_the_documents_update_body_goes_to_the_action() -> None:
    call = build(UPDATE, {"id": ACTION_ID, **UPDATE_BODY})
    assert (call.method, call.path) == ("PUT", f"/api/actions/{ACTION_ID}")
    assert call.json == UPDATE_BODY


@pytest.mark.parametrize(("type_", "method"), [(DELETE, "DELETE"), (GET, "GET")])
def test_delete_and_get_send_no_body(type_: str, method: str) -> None:
    call = build(type_, {"id": ACTION_ID})
    assert (call.method, call.path, call.json) == (method, f"/api/actions/{ACTION_ID}", None)


def test_an_id_is_one_path_segment() -> None:
    assert build(GET, {"id": "a/../b?c"}).path == "/api/actions/a%2F..%2Fb%3Fc"
    with pytest.raises(PathFieldInvalid):
        build(DELETE, {"id": ".."})
    assert "$.id" in refused(GET, {"id": ""})


def test_only_action_text_is_required_on_create() -> None:
    required = {f.encode_name for f in msgspec.structs.fields(ActionCreate) if f.required}
    assert required == {"actionText"}
    assert build(CREATE, {"actionText": "Fix"}).json == {"actionText": "Fix"}
    assert "missing required field `actionText`" in refused(CREATE, {"orgUnitId": 1})
    assert "$.actionText" in refused(CREATE, {"actionText": ""})


def test_an_update_sends_only_what_it_sets() -> None:
    call = build(UPDATE, {"id": ACTION_ID, "progress": 90})
    assert call.json == {"progress": 90}
    assert "nothing to update" in refused(UPDATE, {"id": ACTION_ID})
    assert "missing required field `id`" in refused(UPDATE, {"progress": 90})


def test_null_is_sent_as_null() -> None:
    call = build(UPDATE, {"id": ACTION_ID, "guidanceText": None, "gpsCoordinates": None})
    assert call.json == {"guidanceText": None, "gpsCoordinates": None}


@pytest.mark.parametrize(
    ("type_", "data", "where"),
    [
        (CREATE, {"actionText": "A", "color": "red"}, "unknown field `color`"),
        (CREATE, {"actionText": "A", "action_text": "B"}, "unknown field `action_text`"),
        (UPDATE, {"id": ACTION_ID, "status": 2}, "unknown field `status`"),
        (DELETE, {"id": ACTION_ID, "force": True}, "unknown field `force`"),
        (CREATE, {"actionText": "A", "gpsCoordinates": {"x": 1, "y": 2}}, "unknown field `x`"),
        (CREATE, {"actionText": "A", "gpsCoordinates": {"X": 1}}, "`Y`"),
        (CREATE, {"actionText": "A", "progress": 101}, "$.progress"),
        (CREATE, {"actionText": "A", "hoursTaken": -1}, "$.hoursTaken"),
        (CREATE, {"actionText": "A", "orgUnitId": "12480"}, "$.orgUnitId"),
        (CREATE, {"actionText": "A", "entityId": ""}, "$.entityId"),
        (CREATE, {"actionText": "A", "orgUnitName": None}, "$.orgUnitName"),
        (
            CREATE,
            {"actionText": "A", "residualRisk": {"consequenceCode": -2, "likelihoodCode": 1}},
            "$.residualRisk.consequenceCode",
        ),
        (CREATE, {"actionText": "A", "inherentRisk": {"consequenceCode": 1}}, "likelihoodCode"),
        (CREATE, {"actionText": "A", "dueDate": "2021-07-22T18:29:59.997"}, "$.dueDate"),
        (CREATE, {"actionText": "A", "dueOn": "22.07.2021"}, "$.dueOn"),
    ],
)
def test_bad_data_is_refused(type_: str, data: dict[str, Any], where: str) -> None:
    assert where in refused(type_, data)


# --- the alternatives -------------------------------------------------------------------------

GROUPS: list[tuple[str, Any, str, Any]] = [
    ("orgUnitName", "Albama", "orgUnitId", 12480),
    ("entityName", "Some Entity Name", "entityId", ENTITY_ID),
    ("actionCategoryName", "Act", "actionCategoryId", 2233),
    ("actionPriorityName", "High", "actionPriorityId", "7cc13288-e9f9-46d4-bfc9-443e3ad00c9b"),
    ("responsibleUserName", "Dan Johnson", "responsibleUserId", 20518),
    ("responsibleUserName", "Dan Johnson", "responsibleUserLogin", "superadmin"),
    ("responsibleUserId", 20518, "responsibleUserLogin", "superadmin"),
]


@pytest.mark.parametrize(("name", "name_value", "alt", "alt_value"), GROUPS)
@pytest.mark.parametrize("type_", [CREATE, UPDATE])
def test_one_of_a_group_is_sent_two_are_refused(
    type_: str, name: str, name_value: Any, alt: str, alt_value: Any
) -> None:
    base = {"actionText": "A"} if type_ == CREATE else {"id": ACTION_ID}
    for field, value in ((name, name_value), (alt, alt_value)):
        assert build(type_, {**base, field: value}).json == {
            **({"actionText": "A"} if type_ == CREATE else {}),
            field: value,
        }
    message = refused(type_, {**base, name: name_value, alt: alt_value})
    assert f"{name} and {alt} are alternatives" in message
    assert "give at most one of" in message


def test_the_documents_id_example() -> None:
    call = build(CREATE, {"actionText": "A", "orgUnitId": 12480, "entityId": ENTITY_ID})
    assert call.json == {"actionText": "A", "orgUnitId": 12480, "entityId": ENTITY_ID}
    # An id is sent as given (the document shows uuids; CMO compares them, not Workbridge).
    upper = build(CREATE, {"actionText": "A", "entityId": ENTITY_ID.upper()})
    assert upper.json == {"actionText": "A", "entityId": ENTITY_ID.upper()}


def test_all_three_responsible_user_fields_are_refused() -> None:
    message = refused(
        CREATE,
        {
            "actionText": "A",
            "responsibleUserName": "Dan Johnson",
            "responsibleUserId": 20518,
            "responsibleUserLogin": "superadmin",
        },
    )
    assert "responsibleUserName and responsibleUserId and responsibleUserLogin" in message


def test_a_custom_field_is_named_by_exactly_one() -> None:
    by_id = [{"customFieldId": 3590, "value": "not so high score"}]
    assert build(CREATE, {"actionText": "A", "customFields": by_id}).json == {
        "actionText": "A",
        "customFields": by_id,
    }
    cleared = [{"customFieldName": "happiness", "value": None}]
    assert build(UPDATE, {"id": ACTION_ID, "customFields": cleared}).json == {
        "customFields": cleared
    }
    both = [{"customFieldName": "happiness", "customFieldId": 3590, "value": "x"}]
    message = refused(CREATE, {"actionText": "A", "customFields": both})
    assert "customFieldName, customFieldId" in message
    assert "$.customFields[0]" in message
    assert "exactly one" in refused(CREATE, {"actionText": "A", "customFields": [{"value": 1}]})
    assert "`value`" in refused(CREATE, {"actionText": "A", "customFields": [{"customFieldId": 1}]})


# --- risks ------------------------------------------------------------------------------------


def test_a_risk_left_out_null_or_none() -> None:
    left_out = build(UPDATE, {"id": ACTION_ID, "progress": 1}).json
    assert "residualRisk" not in left_out and "inherentRisk" not in left_out
    null = build(UPDATE, {"id": ACTION_ID, "residualRisk": None, "inherentRisk": None}).json
    assert null == {"residualRisk": None, "inherentRisk": None}
    assert msgspec.json.encode(null) == b'{"residualRisk":null,"inherentRisk":null}'
    no_risk = {"consequenceCode": -1, "likelihoodCode": -1}
    assert build(CREATE, {"actionText": "A", "residualRisk": no_risk}).json == {
        "actionText": "A",
        "residualRisk": no_risk,
    }


# --- the due day ------------------------------------------------------------------------------


def test_due_on_is_the_last_millisecond_of_the_day_in_the_company_zone() -> None:
    call = build(CREATE, {"actionText": "A", "dueOn": "2021-07-22"}, zone="Asia/Kolkata")
    assert call.json == {"actionText": "A", "dueDate": "2021-07-22T18:29:59.997Z"}
    update = build(UPDATE, {"id": ACTION_ID, "dueOn": "2021-03-28"}, zone="Europe/Berlin")
    assert update.json == {"dueDate": "2021-03-28T21:59:59.997Z"}
    fall = build(UPDATE, {"id": ACTION_ID, "dueOn": "2021-11-07"}, zone="America/New_York")
    assert fall.json == {"dueDate": "2021-11-08T04:59:59.997Z"}


def test_each_instance_uses_its_own_zone() -> None:
    data = {"actionText": "A", "dueOn": "2021-07-22"}
    assert build(CREATE, data, zone="UTC").json["dueDate"] == "2021-07-22T23:59:59.997Z"
    assert build(CREATE, data, zone="Asia/Kolkata").json["dueDate"] == ("2021-07-22T18:29:59.997Z")


@pytest.mark.parametrize("zone", [None, "Asia/Kolkata"])
def test_due_date_is_sent_in_utc_with_milliseconds(zone: str | None) -> None:
    for given, sent in (
        ("2021-07-22T18:29:59.997Z", "2021-07-22T18:29:59.997Z"),
        ("2021-07-22T23:59:59.997+05:30", "2021-07-22T18:29:59.997Z"),
        # In UTC: sent as given (the "dueDate as given").
        ("2021-07-22T18:29:59Z", "2021-07-22T18:29:59Z"),
        ("2021-07-22T18:29:59.9999999Z", "2021-07-22T18:29:59.9999999Z"),
        # Another offset: converted, seven .NET digits cut (never rounded into the next day).
        ("2021-07-22T23:59:59.9999999+05:30", "2021-07-22T18:29:59.999Z"),
    ):
        assert build(CREATE, {"actionText": "A", "dueDate": given}, zone=zone).json == {
            "actionText": "A",
            "dueDate": sent,
        }


def test_a_due_date_off_the_last_second_is_sent_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="adapters.cmo.commands"):
        build(CREATE, {"actionText": "A", "dueDate": "2021-07-22T18:29:59.997Z"}, "Asia/Kolkata")
        assert not caplog.records
        call = build(CREATE, {"actionText": "A", "dueDate": "2021-07-22T12:00:00Z"}, "Asia/Kolkata")
    assert call.json == {"actionText": "A", "dueDate": "2021-07-22T12:00:00Z"}
    assert len(caplog.records) == 1
    assert "not in the last second of a day in Asia/Kolkata" in caplog.records[0].getMessage()


def test_both_due_date_and_due_on_are_refused() -> None:
    data = {"actionText": "A", "dueDate": "2021-07-22T18:29:59.997Z", "dueOn": "2021-07-22"}
    assert "dueDate and dueOn are alternatives" in refused(CREATE, data)
    assert "dueDate and dueOn" in refused(UPDATE, {"id": ACTION_ID, **data})


def test_due_on_without_a_zone_cannot_be_built() -> None:
    data = msgspec.convert({"actionText": "A", "dueOn": "2021-07-22"}, ActionCreate)
    for spec in (COMMANDS[CREATE], bind_commands(config(), COMMANDS)[CREATE]):
        with pytest.raises(PathFieldInvalid, match=r"set options\.company_time_zone"):
            spec.build(data)


def test_an_unknown_zone_is_refused_with_the_options() -> None:
    # CmoOptions checks the zone: an instance with a bad one is a configuration error.
    with pytest.raises(OptionsError, match="company_time_zone 'Mars/Olympus'"):
        bind_commands(config("Mars/Olympus"), COMMANDS)


# --- through validation: rejected or checked --------------------------------------------------

SPEC = VendorSpec(
    id="cmo",
    auth=static_auth(lambda _inst: {"Authorization": "Bearer t"}),
    errors=ERRORS,
    commands=COMMANDS,
    bind_commands=bind_commands,
    options=CmoOptions,
)


def instance(zone: str | None = None) -> Instance:
    return build_instance(config(zone), SPEC, "workbridge")


def command(type_: str, data: Any) -> Command:
    event = make_event(
        id=str(uuid.uuid4()),
        source="/tests",
        type=type_,
        subject="action/1",
        partitionkey="action/1",
        data=msgspec.json.encode(data),
    )
    key, value, headers = to_kafka(event)
    topic = "workbridge.acme.commands"
    record = ConsumerRecord(topic, 0, 1, 0, 0, key, value, None, 0, len(value), headers)
    return decode_command(record)


def checked(inst: Instance, type_: str, data: Any) -> Checked | Rejected:
    return check(inst, command(type_, data))


def test_due_on_without_a_zone_is_rejected_with_what_to_set() -> None:
    got = checked(instance(), CREATE, {"actionText": "A", "dueOn": "2021-07-22"})
    assert isinstance(got, Rejected)
    assert got.problem == f"{CREATE}: {NO_ZONE}"
    assert "options.company_time_zone" in got.problem and "dueDate" in got.problem


def test_due_on_with_a_zone_is_checked_and_never_sent() -> None:
    got = checked(instance("Asia/Kolkata"), CREATE, {"actionText": "A", "dueOn": "2021-07-22"})
    assert isinstance(got, Checked)
    assert got.call.json == {"actionText": "A", "dueDate": "2021-07-22T18:29:59.997Z"}


@pytest.mark.parametrize(
    ("type_", "data", "says"),
    [
        (CREATE, {"actionText": "A", "colour": "red"}, "unknown field `colour`"),
        (
            CREATE,
            {"actionText": "A", "orgUnitName": "X", "orgUnitId": 1},
            "orgUnitName and orgUnitId",
        ),
        (UPDATE, {"id": ACTION_ID}, "nothing to update"),
        (GET, {}, "missing required field `id`"),
    ],
)
def test_invalid_data_is_rejected(type_: str, data: dict[str, Any], says: str) -> None:
    got = checked(instance(), type_, data)
    assert isinstance(got, Rejected)
    assert got.problem.startswith(f"data does not match {type_}: ")
    assert says in got.problem


# --- answers ----------------------------------------------------------------------------------


def test_a_create_answer_becomes_its_id() -> None:
    assert created_id(NEW_ID) == {"id": NEW_ID}
    assert created_id("") == {"id": None, "answer": ""}
    assert created_id({"x": 1}) == {"id": None, "answer": {"x": 1}}
    assert COMMANDS[CREATE].answer is created_id
    assert all(COMMANDS[t].answer is None for t in (UPDATE, DELETE, GET))


class ScriptedClient:
    """The vendor client, answering (status, raw body) in order, and logging the calls."""

    def __init__(self, *answers: tuple[int, bytes]) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, str, Any]] = []

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        headers: Any = None,
        before_send: Any = None,
    ) -> VendorResponse:
        if before_send is not None:
            await before_send()
        self.sent.append((method, path, copy.deepcopy(json)))
        status, body = self.answers.pop(0)
        return VendorResponse(status, {}, body)


async def run(
    type_: str, data: Any, *answers: tuple[int, bytes], zone: str | None = None
) -> tuple[CommandResult, ScriptedClient]:
    inst = instance(zone)
    client = ScriptedClient(*answers)
    inst.client = client  # type: ignore[assignment]
    cmd = command(type_, data)
    got = check(inst, cmd)
    assert isinstance(got, Checked), got

    async def nothing() -> None:
        return None

    result = await Executor(inst, Metrics()).run(
        cmd, got, replay=False, before_send=nothing, after_attempt=lambda _acted: None
    )
    return result, client


async def test_a_create_succeeds_with_the_new_id() -> None:
    result, client = await run(
        CREATE, CREATE_BODY, (200, msgspec.json.encode(NEW_ID)), zone="Asia/Kolkata"
    )
    assert (result.status, result.http_status, result.response) == (
        "succeeded",
        200,
        {"id": NEW_ID},
    )
    assert client.sent == [("POST", "/api/actions", CREATE_BODY)]


@pytest.mark.parametrize("type_", [UPDATE, DELETE])
async def test_an_update_or_delete_succeeds_with_an_empty_body(type_: str) -> None:
    data = {"id": ACTION_ID, "progress": 90} if type_ == UPDATE else {"id": ACTION_ID}
    result, client = await run(type_, data, (200, b""))
    assert result.status == "succeeded"
    assert [s[:2] for s in client.sent] == [(COMMANDS[type_].method, f"/api/actions/{ACTION_ID}")]


async def test_a_get_answers_the_action() -> None:
    action = {"id": ACTION_ID, "uniqueID": "6142", "status": {"code": 1, "name": "Pending"}}
    result, _ = await run(GET, {"id": ACTION_ID}, (200, msgspec.json.encode(action)))
    assert (result.status, result.response) == ("succeeded", action)


async def test_a_create_after_a_500_is_ambiguous_not_repeated() -> None:
    result, client = await run(CREATE, {"actionText": "A"}, (500, b""), (200, b'"x"'))
    assert result.status == "ambiguous"
    assert len(client.sent) == 1


async def test_a_refused_create_fails_with_the_field_errors() -> None:
    error = {
        "message": "Model can't be processed due to following errors",
        "errors": [{"field": "OrgUnitName", "messages": ["System is unable to find object"]}],
    }
    result, client = await run(
        CREATE, {"actionText": "A", "orgUnitName": "Albama"}, (400, msgspec.json.encode(error))
    )
    assert (result.status, result.attempts, result.error) == ("failed", 1, error)
    assert "OrgUnitName: System is unable to find object" in (result.reason or "")
    assert len(client.sent) == 1
