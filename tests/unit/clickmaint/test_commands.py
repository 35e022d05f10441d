"""Click Maint commands: the document's request bodies as test vectors, the entity of a call,
validation, and how answers are classified."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest
from aiokafka.structs import ConsumerRecord

from adapters.clickmaint import ERRORS, SPEC, error_message
from adapters.clickmaint.commands import (
    COMMANDS,
    AssetCreate,
    EntityUnclear,
    PartAdjust,
    PartRestock,
    PartSetCost,
    WorkOrderCreate,
    WorkOrderPart,
    bind_commands,
)
from adapters.clickmaint.undocumented import REQUIRED_ON_CREATE
from adapters.config import parse_config
from adapters.core.cloudevents_codec import make_event, to_kafka
from adapters.core.command_result import CommandResult
from adapters.core.commands.executor import Executor
from adapters.core.commands.model import Checked, Rejected, decode_command
from adapters.core.commands.validation import check
from adapters.core.errors import Action
from adapters.core.instance import Instance, build_instance
from adapters.core.metrics import Metrics
from adapters.core.vendor import CommandSpec, PreparedCall, PrepareFailed
from adapters.core.vendor_call import RetryPolicy, call_with_retry
from adapters.core.vendor_http import VendorResponse
from adapters.registry import VENDORS

P = "workbridge.clickmaint"

# --- the document's request bodies ------------------------------------------------------------

ASSET_BODY: dict[str, Any] = {
    "name": "Air Purifier",
    "asset_code": "AST-001",
    "description": "Machine used to purify the air in a shop by removing particles, "
    "allergens, and contaminants",
    "model": "Dyson Pure Cool Link Tower",
    "manufacturer": "Dyson",
    "serial_number": "H8tG5nWp",
    "purchase_date": "2023-08-24",
    "warranty_exp_date": "2026-08-24",
    "warranty_expiration_notification": 30,
    "life_expectancy": 36,
    "purchase_cost": 549.99,
    "replacement_cost": 599.99,
    "salvage_value": 150,
    "location_id": 12,
    "parent_id": 44,
    "asset_types_ids": [4],
    "technicians_ids": [3],
    "parts_ids": [144, 145],
    "vendors_ids": [32],
    "qr_code_attributes": {"value": "guVT5ngMeZ9xPBIk8db4dCGXVU", "generate_qr_code": True},
}
LOCATION_BODY: dict[str, Any] = {
    "name": "Main Conference Room",
    "description": "Large conference room with projector and whiteboard. Seats up to 12 people.",
    "address": "101-123 Example St",
    "parent_id": 55,
    "qr_code_attributes": {
        "value": "guVT5ngMeZ9xPBIk8db4dCGXVU",
        "generate_qr_code": True,
        "_destroy_qr_code": True,
    },
}
PART_BODY: dict[str, Any] = {
    "name": "Air Filter",
    "description": "Fiberglass panel filter",
    "is_non_stock": False,
    "on_hand_qty": 6,
    "min_qty": 5,
    "desired_qty": 8,
    "unit_cost": 26.15,
    "number": "FL_A",
    "area": "Filters bin",
    "lead_time": 7,
    "part_type_id": 3,
    "storeroom_id": 1,
    "measurement_unit_id": 2,
    "assets_ids": [12],
    "vendor_parts_attributes": [
        {"vendor_id": 32, "vendor_part_number": "ABC-12345", "is_preferred": True}
    ],
    "qr_code_attributes": {"value": "guVT5ngMeZ9xPBIk8db4dCGXVU", "generate_qr_code": True},
}
PART_UPDATE_BODY: dict[str, Any] = {
    "name": "Air Filter",
    "description": "Fiberglass panel filter",
    "min_qty": 5,
    "desired_qty": 8,
    "number": "FL_A",
    "area": "Filters bin",
    "lead_time": 7,
    "part_type_id": 3,
    "storeroom_id": 1,
    "measurement_unit_id": 2,
    "assets_ids": [12],
    "vendor_parts_attributes": [
        {
            "vendor_id": 32,
            "vendor_part_number": "ABC-12345",
            "is_preferred": True,
            "_destroy": True,
        }
    ],
    "qr_code_attributes": {
        "value": "guVT5ngMeZ9xPBIk8db4dCGXVU",
        "generate_qr_code": True,
        "_destroy_qr_code": True,
    },
}
CHECKLIST = [
    {"text": "Inspect defrost drain for blockages", "order": 1, "checked": False},
    {"text": "Clear drain line with warm water", "order": 2, "checked": False},
]
WORK_ORDER_BODY: dict[str, Any] = {
    "title": "Fix water leakage in Freezer",
    "type": "reactive",
    "description": "Water leakage due to blocked defrost drain",
    "priority": "high",
    "work_order_request_id": 864,
    "due_date": "2025-07-17T12:00:00Z",
    "completed_at": "2025-07-15T09:30:00Z",
    "location_id": 122,
    "asset_id": 45,
    "status_id": 5,
    "categories_ids": [10],
    "account_codes_ids": [1],
    "procedure_template_ids": [10],
    "technicians_ids": [3],
    "vendors_ids": [32],
    "notify_vendors_on_create": "yes",
    "notify_vendors_on_update": "yes",
    "checklist": CHECKLIST,
}
WORK_ORDER_UPDATE_BODY: dict[str, Any] = {
    "title": "Fix water leakage in Freezer",
    "description": "Water leakage due to blocked defrost drain",
    "priority": "none",
    "due_date": "2019-08-24T14:15:22Z",
    "completed_at": "2019-08-24T14:15:22Z",
    "location_id": 122,
    "asset_id": 45,
    "status_id": 1,
    "categories_ids": [10],
    "account_codes_ids": [1],
    "procedure_template_ids": [10],
    "technicians_ids": [3],
    "vendors_ids": [32],
    "notify_vendors_on_update": "yes",
    "checklist": CHECKLIST,
}
REQUEST_BODY: dict[str, Any] = {
    "title": "Fix water leakage in Freezer",
    "description": "Water leakage due to blocked defrost drain",
    "status": "on_hold",
    "notify": True,
    "priority": "high",
    "location_id": 122,
    "asset_id": 45,
    "categories_ids": [5, 10],
    "technicians_ids": [3],
    "vendors_ids": [32],
    "due_date": "2025-07-17T12:00:00Z",
}


def build(type_: str, data: dict[str, Any]) -> PreparedCall:
    spec = COMMANDS[type_]
    return spec.build(msgspec.convert(data, spec.model))


def test_catalogue() -> None:
    resources = ("asset", "location", "part", "work_order", "work_order_request")
    expected = {f"{P}.{r}.{a}" for r in resources for a in ("create", "update")} | {
        f"{P}.part.restock",
        f"{P}.part.adjust",
        f"{P}.part.set_cost",
        f"{P}.work_order.add_part",
        f"{P}.work_order.set_part_quantity",
        f"{P}.work_order.remove_part",
    }
    assert set(COMMANDS) == expected
    assert SPEC.commands is COMMANDS
    for type_, spec in COMMANDS.items():
        assert spec.type == type_
        assert spec.description
        assert not spec.path_not_documented  # every action is on
    # Documented paths: the asset and part collections and reconcile; the rest are guesses.
    documented = {t for t, s in COMMANDS.items() if not s.path_guessed}
    assert documented == {
        f"{P}.asset.create",
        f"{P}.asset.update",
        f"{P}.part.create",
        f"{P}.part.update",
        f"{P}.part.adjust",
    }


def test_the_required_fields_of_a_create_are_the_declared_guess() -> None:
    for resource, field in REQUIRED_ON_CREATE.items():
        model = COMMANDS[f"{P}.{resource}.create"].model
        required = {f.name for f in msgspec.structs.fields(model) if f.required}
        assert required == {field}, resource


@pytest.mark.parametrize(
    ("type_", "kind", "repeat_safe"),
    [
        (f"{P}.asset.create", "create", False),
        (f"{P}.work_order.update", "update", True),
        (f"{P}.part.restock", "action", False),  # restocked twice is stock counted twice
        (f"{P}.part.adjust", "action", False),
        (f"{P}.part.set_cost", "action", True),
        (f"{P}.work_order.add_part", "action", False),  # "adds to the existing quantity"
        (f"{P}.work_order.set_part_quantity", "update", True),
        (f"{P}.work_order.remove_part", "delete", True),
    ],
)
def test_what_may_be_repeated(type_: str, kind: str, repeat_safe: bool) -> None:
    spec = COMMANDS[type_]
    assert (spec.kind, spec.repeat_safe) == (kind, repeat_safe)


@pytest.mark.parametrize(
    ("type_", "data", "method", "path", "body"),
    [
        (f"{P}.asset.create", ASSET_BODY, "POST", "/assets", {"asset": ASSET_BODY}),
        (
            f"{P}.asset.update",
            {"id": 102, "name": "Air Purifier"},
            "PATCH",
            "/assets/102",
            {"asset": {"name": "Air Purifier"}},
        ),
        (
            f"{P}.location.create",
            {**LOCATION_BODY, "qr_code_attributes": ASSET_BODY["qr_code_attributes"]},
            "POST",
            "/locations",
            {"location": {**LOCATION_BODY, "qr_code_attributes": ASSET_BODY["qr_code_attributes"]}},
        ),
        (
            f"{P}.location.update",
            {"id": 56, **LOCATION_BODY},
            "PATCH",
            "/locations/56",
            {"location": LOCATION_BODY},
        ),
        (f"{P}.part.create", PART_BODY, "POST", "/parts", {"part": PART_BODY}),
        (
            f"{P}.part.update",
            {"id": 72, **PART_UPDATE_BODY},
            "PATCH",
            "/parts/72",
            {"part": PART_UPDATE_BODY},
        ),
        (
            f"{P}.work_order.create",
            WORK_ORDER_BODY,
            "POST",
            "/work_orders",
            {"work_order": WORK_ORDER_BODY},
        ),
        (
            f"{P}.work_order.update",
            {"id": 1126, **WORK_ORDER_UPDATE_BODY},
            "PATCH",
            "/work_orders/1126",
            {"work_order": WORK_ORDER_UPDATE_BODY},
        ),
        (
            f"{P}.work_order_request.create",
            REQUEST_BODY,
            "POST",
            "/work_order_requests",
            {"work_order_request": REQUEST_BODY},
        ),
        (
            f"{P}.work_order_request.update",
            {"id": 1126, **REQUEST_BODY},
            "PATCH",
            "/work_order_requests/1126",
            {"work_order_request": REQUEST_BODY},
        ),
        (
            f"{P}.part.restock",
            {"id": 72, "quantity": 4, "cost": 26.15, "note": "Purchase order PO-12345 received"},
            "PATCH",
            "/parts/72/restock",
            {"quantity": 4, "cost": 26.15, "note": "Purchase order PO-12345 received"},
        ),
        (
            # The batch example's op: PATCH /api/v1/parts/24/reconcile with these params.
            f"{P}.part.adjust",
            {"id": 24, "quantity": -2, "note": "2 units damaged during shipping"},
            "PATCH",
            "/parts/24/reconcile",
            {"quantity": -2, "note": "2 units damaged during shipping"},
        ),
        (
            f"{P}.part.set_cost",
            {"id": 72, "cost": 225.5, "note": "Cost updated per invoice INV-9847"},
            "PATCH",
            "/parts/72/set_cost",
            {"cost": 225.5, "note": "Cost updated per invoice INV-9847"},
        ),
        (
            f"{P}.work_order.add_part",
            {"id": 1126, "part_id": 52, "quantity": 2},
            "POST",
            "/work_orders/1126/part_assignments",
            {"part_id": 52, "quantity": 2},
        ),
        (
            f"{P}.work_order.set_part_quantity",
            {"id": 1126, "part_id": 52, "quantity": 2},
            "PATCH",
            "/work_orders/1126/part_assignments",
            {"part_id": 52, "quantity": 2},
        ),
        (
            f"{P}.work_order.remove_part",
            {"id": 1126, "part_id": 52},
            "DELETE",
            "/work_orders/1126/part_assignments/52",
            None,
        ),
    ],
)
def test_the_documents_bodies(
    type_: str, data: dict[str, Any], method: str, path: str, body: Any
) -> None:
    call = build(type_, {**data, "entity_id": 1})
    assert (call.method, call.path) == (method, path)
    assert call.json == body
    assert call.headers == {"X-Entity-Id": "1"}


def test_a_field_left_out_is_not_sent_and_null_is_sent_as_null() -> None:
    call = build(f"{P}.asset.update", {"id": 102, "parent_id": None, "entity_id": 3})
    assert call.json == {"asset": {"parent_id": None}}


def test_fields_the_document_does_not_show_go_in_extra() -> None:
    call = build(
        f"{P}.work_order.create",
        {"title": "T", "extra": {"custom_fields": {"cost_center": "A1"}, "x": None}},
    )
    assert call.json == {
        "work_order": {"title": "T", "custom_fields": {"cost_center": "A1"}, "x": None}
    }


@pytest.mark.parametrize(
    ("type_", "data", "where"),
    [
        (f"{P}.asset.create", {"name": "A", "colour": "red"}, "unknown field `colour`"),
        (f"{P}.asset.create", {"asset_code": "A"}, "missing required field `name`"),
        (f"{P}.asset.create", {"name": ""}, "$.name"),
        (f"{P}.asset.create", {"name": "A", "extra": {"name": "B"}}, "extra.name is a field"),
        (f"{P}.asset.create", {"name": "A", "purchase_date": "24.08.2023"}, "$.purchase_date"),
        (f"{P}.asset.create", {"name": "A", "purchase_cost": -1}, "$.purchase_cost"),
        (f"{P}.asset.create", {"name": "A", "location_id": "12"}, "$.location_id"),
        (f"{P}.asset.create", {"name": "A", "entity_id": 0}, "$.entity_id"),
        (f"{P}.asset.update", {"id": "../x"}, "$.id"),
        (f"{P}.asset.update", {"name": "A"}, "missing required field `id`"),
        (f"{P}.work_order.create", {"title": "T", "due_date": "2025-07-17T12:00:00"}, "$.due_date"),
        (f"{P}.work_order.create", {"title": "T", "checklist": [{"order": 1}]}, "`text`"),
        (f"{P}.part.restock", {"id": 1, "quantity": 1.2345, "cost": 1}, "3 decimal places"),
        (f"{P}.part.restock", {"id": 1, "quantity": 1, "cost": 1.234}, "2 decimal places"),
        (f"{P}.part.restock", {"id": 1, "quantity": 1, "cost": -1}, "$.cost"),
        (f"{P}.part.adjust", {"id": 1, "quantity": -2}, "missing required field `note`"),
        (f"{P}.part.adjust", {"id": 1, "quantity": -2, "note": ""}, "$.note"),
        (f"{P}.part.set_cost", {"id": 1, "cost": 207.355}, "2 decimal places"),
        (f"{P}.part.update", {"id": 1, "on_hand_qty": 3}, "unknown field `on_hand_qty`"),
        (f"{P}.work_order.add_part", {"id": 1, "part_id": 52, "quantity": -1}, "$.quantity"),
        (f"{P}.work_order.add_part", {"id": 1, "quantity": 1}, "`part_id`"),
    ],
)
def test_bad_data_is_refused(type_: str, data: dict[str, Any], where: str) -> None:
    with pytest.raises(msgspec.ValidationError) as exc:
        msgspec.convert(data, COMMANDS[type_].model)
    assert where in str(exc.value)


def test_decimals_within_the_documents_places_pass() -> None:
    assert msgspec.convert({"id": 1, "quantity": 1.125, "cost": 26.15}, PartRestock).cost == 26.15
    assert msgspec.convert({"id": 1, "quantity": -0.001, "note": "n"}, PartAdjust).quantity < 0
    assert msgspec.convert({"id": 1, "cost": 0}, PartSetCost).cost == 0
    assert msgspec.convert({"id": 1, "part_id": 2, "quantity": 0}, WorkOrderPart).quantity == 0


def test_dates_are_sent_as_the_document_writes_them() -> None:
    data = msgspec.convert({"title": "T", "due_date": "2025-07-17T14:00:00+02:00"}, WorkOrderCreate)
    call = COMMANDS[f"{P}.work_order.create"].build(data)
    assert call.json == {"work_order": {"title": "T", "due_date": "2025-07-17T14:00:00+02:00"}}
    asset = msgspec.convert({"name": "A", "purchase_date": "2023-08-24"}, AssetCreate)
    assert COMMANDS[f"{P}.asset.create"].build(asset).json == {
        "asset": {"name": "A", "purchase_date": "2023-08-24"}
    }


# --- the entity of a call ---------------------------------------------------------------------


def instance(
    entities: Any = "all", base_url: str = "https://app.clickmaint.com/api/v1", **options: Any
) -> Instance:
    cfg = parse_config(
        {
            "kafka": {"bootstrap_servers": "127.0.0.1:1"},
            "instances": [
                {
                    "vendor": "clickmaint",
                    "name": "acme",
                    "base_url": base_url,
                    "api_key": "k",
                    "commands": {
                        "enabled": True,
                        "deadline_s": 2,
                        "backoff_base_s": 0.001,
                        "backoff_max_s": 0.002,
                    },
                    "options": {"entities": entities, **options},
                }
            ],
        },
        env={},
        vendors=VENDORS,
    )
    return build_instance(cfg.instances[0], SPEC, "workbridge")


def command(type_: str, data: Any) -> Any:
    event = make_event(
        id=str(uuid.uuid4()),
        source="/tests",
        type=type_,
        subject="x/1",
        partitionkey="x/1",
        data=msgspec.json.encode(data),
    )
    key, value, headers = to_kafka(event)
    topic = "workbridge.acme.commands"
    record = ConsumerRecord(topic, 0, 1, 0, 0, key, value, None, 0, len(value), headers)
    return decode_command(record)


def checked(inst: Instance, type_: str, data: Any) -> Checked | Rejected:
    return check(inst, command(type_, data))


def test_the_only_listed_entity_is_the_default() -> None:
    got = checked(instance([7]), f"{P}.asset.create", {"name": "A"})
    assert isinstance(got, Checked)
    assert got.call.headers == {"X-Entity-Id": "7"}
    assert got.call.path == "/assets"


def test_several_listed_entities_need_entity_id() -> None:
    inst = instance([7, 8])
    got = checked(inst, f"{P}.asset.create", {"name": "A"})
    assert isinstance(got, Rejected)
    assert "several entities (7, 8): set data.entity_id" in got.problem
    ok = checked(inst, f"{P}.asset.create", {"name": "A", "entity_id": 8})
    assert isinstance(ok, Checked) and ok.call.headers == {"X-Entity-Id": "8"}


def test_an_entity_outside_the_listed_ones_is_rejected() -> None:
    got = checked(
        instance([7, 8]), f"{P}.part.restock", {"id": 1, "quantity": 1, "cost": 1, "entity_id": 9}
    )
    assert isinstance(got, Rejected)
    assert "entity_id 9 is not one of this instance's options.entities (7, 8)" in got.problem


def test_with_all_entities_a_given_entity_is_used_as_is() -> None:
    got = checked(
        instance(), f"{P}.work_order.remove_part", {"id": 5, "part_id": 6, "entity_id": 9}
    )
    assert isinstance(got, Checked)
    assert got.call.headers == {"X-Entity-Id": "9"}
    assert got.call.method == "DELETE" and got.call.json is None


def test_a_command_path_override_fills_and_quotes_fields() -> None:
    inst = instance([1], command_paths={f"{P}.part.restock": "/v2/parts/{id}/stock/{note}"})
    got = checked(inst, f"{P}.part.restock", {"id": 3, "quantity": 1, "cost": 1, "note": "a/b c"})
    assert isinstance(got, Checked)
    assert got.call.path == "/v2/parts/3/stock/a%2Fb%20c"


def test_update_method_is_the_instances() -> None:
    inst = instance([1], update_method="PUT")
    got = checked(inst, f"{P}.work_order.update", {"id": 3, "title": "T"})
    assert isinstance(got, Checked) and got.call.method == "PUT"
    assert inst.commands[f"{P}.work_order.update"].method == "PUT"
    # Only the resources' updates: the part-assignment change keeps its own method.
    quantity = checked(
        inst, f"{P}.work_order.set_part_quantity", {"id": 3, "part_id": 1, "quantity": 1}
    )
    assert isinstance(quantity, Checked) and quantity.call.method == "PATCH"


def test_binding_keeps_the_catalogue() -> None:
    bound = bind_commands(instance().cfg, COMMANDS)
    assert set(bound) == set(COMMANDS)
    with pytest.raises(EntityUnclear):
        bind_commands(instance([1, 2]).cfg, COMMANDS)[f"{P}.asset.create"].build(
            msgspec.convert({"name": "A"}, AssetCreate)
        )


class Reader:
    def __init__(self, *bodies: Any) -> None:
        self.bodies = list(bodies)
        self.sent: list[str] = []

    async def get(self, path: str, headers: Any) -> VendorResponse:
        self.sent.append(path)
        return VendorResponse(200, {}, msgspec.json.encode(self.bodies.pop(0)))


def entities(*ids: int, pages: int = 1) -> dict[str, Any]:
    return {
        "status": "success",
        "data": [{"id": i, "name": f"E{i}"} for i in ids],
        "meta": {
            "pagination": {"total": len(ids), "page": 1, "per_page": 100, "total_pages": pages}
        },
    }


def spec_of(inst: Instance, type_: str) -> CommandSpec:
    return inst.commands[type_]


async def test_with_all_entities_the_accounts_only_entity_is_asked_for_once() -> None:
    inst = instance()
    spec = spec_of(inst, f"{P}.asset.create")
    assert spec.prepare is not None
    got = checked(inst, f"{P}.asset.create", {"name": "A"})
    assert isinstance(got, Checked) and got.call.headers == {}
    reader = Reader(entities(2))
    call = await spec.prepare(reader, got.data, got.call)
    assert call.headers == {"X-Entity-Id": "2"}
    assert reader.sent == ["/entities?per_page=100"]
    # Remembered for a while: the next command does not ask again.
    again = await spec_of(inst, f"{P}.part.create").prepare(reader, got.data, got.call)  # type: ignore[misc]
    assert again.headers == {"X-Entity-Id": "2"}
    assert reader.sent == ["/entities?per_page=100"]


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (entities(2, 7), "several entities (2, 7): set data.entity_id"),
        (entities(2, pages=2), "several entities (2, …)"),
        (entities(), "GET /entities lists no entity for this API key"),
        ({"status": "success", "data": {}}, "holds no list of entities"),
    ],
)
async def test_with_all_entities_several_fail_with_the_reason(answer: Any, problem: str) -> None:
    spec = spec_of(instance(), f"{P}.asset.create")
    assert spec.prepare is not None
    data = msgspec.convert({"name": "A"}, AssetCreate)
    with pytest.raises(PrepareFailed) as exc:
        await spec.prepare(Reader(answer), data, spec.build(data))
    assert exc.value.outcome.action is Action.FAIL
    assert problem in (exc.value.outcome.error or "")


async def test_a_given_entity_needs_no_read() -> None:
    spec = spec_of(instance(), f"{P}.asset.create")
    assert spec.prepare is not None
    data = msgspec.convert({"name": "A", "entity_id": 4}, AssetCreate)
    reader = Reader()
    call = await spec.prepare(reader, data, spec.build(data))
    assert call.headers == {"X-Entity-Id": "4"} and reader.sent == []


def test_listed_entities_need_no_read() -> None:
    assert all(s.prepare is None for s in instance([1]).commands.values())


# --- through the executor ---------------------------------------------------------------------


class ScriptedClient:
    """The vendor client, answering (status, body) in order, and logging the calls."""

    def __init__(self, *answers: tuple[int, Any]) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, str, Any, dict[str, str]]] = []

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
        self.sent.append((method, path, json, dict(headers or {})))
        status, body = self.answers.pop(0)
        return VendorResponse(
            status, {"retry-after": "0"} if status == 429 else {}, msgspec.json.encode(body)
        )


async def run(
    inst: Instance, type_: str, data: Any, *answers: tuple[int, Any]
) -> tuple[CommandResult, ScriptedClient]:
    client = ScriptedClient(*answers)
    inst.client = client  # type: ignore[assignment]
    inst.batcher = None  # one command: it goes alone (batching: tests/unit/core/test_batching.py)
    cmd = command(type_, data)
    got = check(inst, cmd)
    assert isinstance(got, Checked), got

    async def nothing() -> None:
        return None

    result = await Executor(inst, Metrics()).run(
        cmd, got, replay=False, before_send=nothing, after_attempt=lambda _acted: None
    )
    return result, client


CREATED = {"status": "success", "data": {"id": 1126, "title": "T"}, "meta": {"entity": {"id": 2}}}
INVALID_KEY = {"status": "error", "message": "Invalid API key"}


async def test_a_command_without_entity_goes_to_the_only_one() -> None:
    result, client = await run(
        instance(), f"{P}.work_order.create", {"title": "T"}, (200, entities(2)), (201, CREATED)
    )
    assert result.status == "succeeded"
    assert result.response == CREATED
    assert [s[:2] for s in client.sent] == [
        ("GET", "/entities?per_page=100"),
        ("POST", "/work_orders"),
    ]
    assert client.sent[1][2] == {"work_order": {"title": "T"}}
    assert client.sent[1][3] == {"X-Entity-Id": "2"}


async def test_a_command_without_entity_in_an_account_of_several_fails_unsent() -> None:
    result, client = await run(
        instance(), f"{P}.work_order.create", {"title": "T"}, (200, entities(2, 3))
    )
    assert result.status == "failed"
    assert "several entities (2, 3)" in (result.reason or "")
    assert [s[0] for s in client.sent] == ["GET"]


async def test_an_invalid_key_fails_at_once_with_the_vendors_message() -> None:
    result, client = await run(
        instance([1]),
        f"{P}.part.adjust",
        {"id": 24, "quantity": -2, "note": "n"},
        (401, INVALID_KEY),
    )
    assert result.status == "failed"
    assert result.attempts == 1
    assert result.http_status == 401
    assert result.error == INVALID_KEY
    assert "rejected the API key" in (result.reason or "")
    assert "Invalid API key" in (result.reason or "")
    assert len(client.sent) == 1


async def test_a_validation_error_is_not_retried() -> None:
    error = {"status": "error", "message": "Name can't be blank"}
    result, client = await run(instance([1]), f"{P}.asset.create", {"name": "A"}, (422, error))
    assert (result.status, result.attempts, result.error) == ("failed", 1, error)
    assert "Name can't be blank" in (result.reason or "")
    assert len(client.sent) == 1


async def test_429_and_5xx_are_retried() -> None:
    result, client = await run(
        instance([1]),
        f"{P}.work_order.update",
        {"id": 5, "title": "T"},
        (429, {"status": "error", "message": "Too many requests"}),
        (500, {"status": "error", "message": "oops"}),
        (200, CREATED),
    )
    assert (result.status, result.attempts) == ("succeeded", 3)
    assert len(client.sent) == 3


async def test_a_create_after_a_500_is_ambiguous_not_repeated() -> None:
    result, client = await run(
        instance([1]),
        f"{P}.asset.create",
        {"name": "A"},
        (500, {"status": "error", "message": "x"}),
    )
    assert result.status == "ambiguous"
    assert len(client.sent) == 1


async def test_an_error_envelope_in_a_2xx_answer_fails() -> None:
    error = {"status": "error", "message": "Part is not stocked"}
    result, _ = await run(
        instance([1]), f"{P}.part.restock", {"id": 1, "quantity": 1, "cost": 1}, (200, error)
    )
    assert (result.status, result.error) == ("failed", error)
    assert "Part is not stocked" in (result.reason or "")


# --- the error table --------------------------------------------------------------------------


def answer(status: int, body: Any) -> VendorResponse:
    return VendorResponse(status, {}, msgspec.json.encode(body) if body is not None else b"")


@pytest.mark.parametrize(
    ("status", "body", "action", "may_have_acted"),
    [
        (200, {"status": "success", "data": {}}, Action.SUCCESS, False),
        (201, {"status": "success", "data": {}}, Action.SUCCESS, False),
        (200, {"results": [{"status": 200, "body": {}}]}, Action.SUCCESS, False),
        (200, {"status": "error", "message": "x"}, Action.FAIL, False),
        (401, INVALID_KEY, Action.FAIL, False),
        (403, {"status": "error", "message": "Forbidden"}, Action.FAIL, False),
        (404, {"status": "error", "message": "Not found"}, Action.FAIL, False),
        (400, {"status": "error", "message": "Entity missing"}, Action.FAIL, False),
        (422, {"status": "error", "message": "invalid"}, Action.FAIL, False),
        (429, {"status": "error", "message": "slow down"}, Action.RETRY, False),
        (500, None, Action.RETRY, True),
        (502, None, Action.RETRY, True),
        (503, None, Action.RETRY, False),
    ],
)
def test_classification(status: int, body: Any, action: Action, may_have_acted: bool) -> None:
    rule = ERRORS.classify(answer(status, body))
    assert rule.action is action
    assert rule.may_have_acted is may_have_acted


def test_the_invalid_key_rule_alerts() -> None:
    rule = ERRORS.classify(answer(401, INVALID_KEY))
    assert rule.alert
    assert "api_key" in rule.reason


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (INVALID_KEY, "Invalid API key"),
        ({"status": "error"}, "error (no message given)"),
        ({"status": "success", "data": {}}, None),
        (None, None),
        ([1, 2], None),
    ],
)
def test_the_error_envelopes_message(body: Any, message: str | None) -> None:
    assert error_message(answer(400, body)) == message
    assert ERRORS.message(answer(400, body)) == message


async def test_a_retried_call_stops_at_the_first_401() -> None:
    client = ScriptedClient((401, INVALID_KEY), (200, CREATED))
    outcome = await call_with_retry(
        client,  # type: ignore[arg-type]
        "GET",
        "/assets",
        errors=ERRORS,
        policy=RetryPolicy(deadline_s=5, max_attempts=5, base_s=0.001, cap_s=0.001),
    )
    assert (outcome.action, outcome.attempts) == (Action.FAIL, 1)
    assert outcome.error is not None and "Invalid API key" in outcome.error
