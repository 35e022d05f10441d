"""Tests of the fake Click Maint server: it must behave as Click Maint's API document says
(vendor-docs/001_9e38201a03f4da29.txt, quoted as "the document"), and each guess where the
document is silent (`FakeClickMaintBehaviour`) must be switchable.

tests/unit/test_fake_knobs_covered.py checks that every knob is set by a test here: each knob
appears below as a keyword argument (`start(create_status=200)`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import msgspec
import pytest
import pytest_asyncio
from multidict import CIMultiDictProxy

from adapters.clickmaint.dev import start_dev
from adapters.clickmaint.fake import (
    FakeClickMaint,
    FakeClickMaintBehaviour,
    format_timestamp,
)
from adapters.clickmaint.fake_main import behaviour as main_behaviour
from adapters.clickmaint.fake_main import entities as main_entities
from adapters.clickmaint.fake_main import parse_args
from adapters.devkit import DEV_API_KEY
from tests.vendor_clock import VendorClock

API_KEY = "test-api-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
E1 = {**AUTH, "X-Entity-Id": "1"}
E2 = {**AUTH, "X-Entity-Id": "2"}
ENTITIES = [
    {"id": 1, "name": "Main Facility", "currency": "USD", "currency_symbol": "$"},
    {"id": 2, "name": "North Plant", "currency": "CAD", "currency_symbol": "$"},
]
DEFAULTS = FakeClickMaintBehaviour()

# The document's examples, quoted.
ASSET_CREATE = {
    "asset": {
        "name": "Air Purifier",
        "asset_code": "AST-001",
        "description": "Machine used to purify the air in a shop by removing particles, "
        "allergens, and contaminants",
        "model": "Dyson Pure Cool Link Tower",
        "manufacturer": "Dyson",
        "serial_number": "H8tG5nWp",
        "purchase_date": "2023-08-24",
        "warranty_exp_date": "2026-08-24",
        "purchase_cost": 549.99,
        "location_id": 12,
        "parent_id": 44,
        "asset_types_ids": [4],
        "technicians_ids": [3],
        "parts_ids": [144, 145],
        "vendors_ids": [32],
        "qr_code_attributes": {"value": "guVT5ngMeZ9xPBIk8db4dCGXVU", "generate_qr_code": True},
    }
}
WORK_ORDER_CREATE = {
    "work_order": {
        "title": "Fix water leakage in Freezer",
        "type": "reactive",
        "description": "Water leakage due to blocked defrost drain",
        "priority": "high",
        "work_order_request_id": 864,
        "due_date": "2025-07-17T12:00:00Z",
        "location_id": 122,
        "asset_id": 45,
        "status_id": 5,
        "checklist": [
            {"text": "Inspect defrost drain for blockages", "order": 1, "checked": False},
            {"text": "Clear drain line with warm water", "order": 2, "checked": False},
        ],
    }
}
WORK_ORDER_UPDATE = {
    "work_order": {
        "title": "Fix water leakage in Freezer",
        "description": "Water leakage due to blocked defrost drain",
        "priority": "none",
        "due_date": "2019-08-24T14:15:22Z",
        "status_id": 1,
    }
}
# The document's part (`"id": 72, "name": "Air Filter", … "on_hand_qty": 6, …
# "unit_cost": 26.15, "avg_unit_cost": 26.15, … "measurement_unit": {"id": 2, "name":
# "Item", "short_name": "itm"}`).
AIR_FILTER = {
    "id": 72,
    "name": "Air Filter",
    "description": "Fiberglass panel filter",
    "number": "FL_A",
    "on_hand_qty": 6,
    "min_qty": 5,
    "desired_qty": 8,
    "unit_cost": 26.15,
    "avg_unit_cost": 26.15,
    "measurement_unit": {"id": 2, "name": "Item", "short_name": "itm"},
}
# The document's batch example.
BATCH_EXAMPLE = {
    "ops": [
        {"method": "GET", "url": "/api/v1/parts"},
        {
            "method": "PATCH",
            "url": "/api/v1/parts/24/reconcile",
            "params": {"quantity": -2, "note": "2 units damaged during shipping"},
        },
    ],
    "sequential": True,
}


@dataclass
class Answer:
    status: int
    body: Any
    headers: CIMultiDictProxy[str]


class Api:
    """Requests to one started fake."""

    def __init__(self, http: aiohttp.ClientSession, fake: FakeClickMaint) -> None:
        self.http = http
        self.fake = fake

    async def __call__(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        json: Any = None,
        data: bytes | None = None,
    ) -> Answer:
        async with self.http.request(
            method,
            self.fake.root_url + path,
            headers=E1 if headers is None else headers,
            params=params,
            json=json,
            data=data,
        ) as response:
            raw = await response.read()
            body = msgspec.json.decode(raw) if raw else None
            return Answer(response.status, body, response.headers)

    async def ids(self, path: str, **params: str) -> list[int]:
        answer = await self("GET", path, params=params)
        assert answer.status == 200, answer.body
        return [record["id"] for record in answer.body["data"]]


Start = Callable[..., Awaitable[tuple[FakeClickMaint, Api]]]


@pytest.fixture
def clock() -> VendorClock:
    return VendorClock()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest_asyncio.fixture
async def start(clock: VendorClock, http: aiohttp.ClientSession) -> AsyncIterator[Start]:
    """`await start(**knobs)`: a started fake with those knobs, and an `Api` to it."""
    fakes: list[FakeClickMaint] = []

    async def _start(**knobs: Any) -> tuple[FakeClickMaint, Api]:
        fake = FakeClickMaint(
            api_key=API_KEY,
            entities=ENTITIES,
            clock=clock,
            behaviour=FakeClickMaintBehaviour(**knobs),
        )
        await fake.start()
        fakes.append(fake)
        return fake, Api(http, fake)

    yield _start
    for fake in fakes:
        await fake.stop()


def error(message: str) -> dict[str, str]:
    return {"status": "error", "message": message}


# --------------------------------------------------------------------------- authentication


async def test_the_documents_first_request_lists_assets(start: Start, clock: VendorClock) -> None:
    # `curl -X GET "https://app.clickmaint.com/api/v1/assets" -H "Authorization: Bearer
    # <your-api-key>" -H "X-Entity-Id: <your-entity-id>" -H "Accept: application/json"`
    fake, api = await start()
    fake.create_record(1, "assets", {"id": 102, "name": "Air Purifier", "status": "online"})
    answer = await api("GET", "/api/v1/assets", headers={**E1, "Accept": "application/json"})
    assert answer.status == 200
    stamp = format_timestamp(clock.now)
    assert answer.body["status"] == "success"
    assert answer.body["data"] == [
        {
            "id": 102,
            "name": "Air Purifier",
            "status": "online",
            "created_at": stamp,
            "updated_at": stamp,
        }
    ]
    meta = answer.body["meta"]
    assert meta["entity"] == {
        "id": 1,
        "name": "Main Facility",
        "currency": "USD",
        "currency_symbol": "$",
        "datetime_format": None,
        "timezone": None,
    }
    assert meta["customer"] == {"id": 84, "name": "Acme Corporation"}
    assert meta["pagination"] == {"total": 1, "page": 1, "per_page": 50, "total_pages": 1}
    assert meta["sort"] == ["name asc"]
    assert stamp.endswith("Z") and len(stamp) == len("2025-07-17T19:19:20Z")
    # The answer's Date is the fake's clock, the one that stamps updated_at.
    assert parsedate_to_datetime(answer.headers["Date"]) == clock.now
    refused = await api("GET", "/api/v1/assets", headers={})
    assert parsedate_to_datetime(refused.headers["Date"]) == clock.now


async def test_a_wrong_or_missing_key_is_the_documents_error(start: Start) -> None:
    # The document's one error: `{"status": "error", "message": "Invalid API key"}`.
    fake, api = await start()
    for headers in (
        {"X-Entity-Id": "1"},
        {"Authorization": "Bearer wrong", "X-Entity-Id": "1"},
        {"Authorization": f"Token token={API_KEY}", "X-Entity-Id": "1"},
    ):
        answer = await api("GET", "/api/v1/assets", headers=headers)
        assert (answer.status, answer.body) == (401, error("Invalid API key"))
        # It counts for nobody: no rate-limit headers, no slot.
        assert "X-RateLimit-Limit" not in answer.headers
    assert fake.arrival_times == []
    fake.add_api_key("second-key")
    answer = await api(
        "GET", "/api/v1/assets", headers={**E1, "Authorization": "Bearer second-key"}
    )
    assert answer.status == 200

    _, api = await start(invalid_api_key_status=403)
    answer = await api("GET", "/api/v1/entities", headers={})
    assert (answer.status, answer.body) == (403, error("Invalid API key"))


# --------------------------------------------------------------------------- entities


async def test_entities_are_listed_without_an_entity_id(start: Start) -> None:
    # "To get the Entity ID, you must first make a call to the GET /entities API endpoint."
    _, api = await start()
    answer = await api("GET", "/api/v1/entities", headers=AUTH)
    assert answer.status == 200
    assert [(e["id"], e["name"]) for e in answer.body["data"]] == [
        (1, "Main Facility"),
        (2, "North Plant"),
    ]
    # The document's entities listing: `"entity": {"id": null, "name": null, …}`.
    assert set(answer.body["meta"]["entity"].values()) == {None}
    assert answer.body["meta"]["pagination"]["total"] == 2
    assert all("created_at" in e and "updated_at" in e for e in answer.body["data"])
    assert await api.ids("/api/v1/entities", sort="name desc") == [2, 1]


async def test_the_entities_path_is_a_knob(start: Start) -> None:
    _, api = await start(entities_path="/entities")
    assert (await api("GET", "/entities", headers=AUTH)).status == 200
    assert (await api("GET", "/api/v1/entities", headers=AUTH)).status == 404


async def test_a_record_of_one_entity_is_invisible_from_another(start: Start) -> None:
    fake, api = await start()
    asset = fake.create_record(1, "assets", {"name": "Pump"})
    assert await api.ids("/api/v1/assets") == [asset["id"]]
    answer = await api("GET", "/api/v1/assets", headers=E2)
    assert answer.body["data"] == []
    assert answer.body["meta"]["entity"]["name"] == "North Plant"
    answer = await api("GET", f"/api/v1/assets/{asset['id']}", headers=E2)
    assert (answer.status, answer.body) == (404, error("Asset not found"))
    answer = await api("PATCH", f"/api/v1/assets/{asset['id']}", headers=E2, json=ASSET_CREATE)
    assert answer.status == 404
    assert fake.get_record(1, "assets", asset["id"]) == asset


async def test_a_missing_or_unknown_entity_id_is_refused(start: Start) -> None:
    _, api = await start()
    answer = await api("GET", "/api/v1/assets", headers=AUTH)
    assert (answer.status, answer.body) == (400, error("X-Entity-Id header is required"))
    for entity in ("99", "abc", "-1"):
        answer = await api("GET", "/api/v1/assets", headers={**AUTH, "X-Entity-Id": entity})
        assert (answer.status, answer.body) == (404, error("Entity not found"))

    _, api = await start(missing_entity_status=422, unknown_entity_status=403)
    assert (await api("GET", "/api/v1/work_orders", headers=AUTH)).status == 422
    answer = await api("GET", "/api/v1/work_orders", headers={**AUTH, "X-Entity-Id": "7"})
    assert answer.status == 403


# --------------------------------------------------------------------------- create and update


async def test_create_answers_the_record_in_the_envelope(start: Start, clock: VendorClock) -> None:
    fake, api = await start()
    answer = await api("POST", "/api/v1/assets", json=ASSET_CREATE)
    assert answer.status == 201
    data = answer.body["data"]
    assert data["name"] == "Air Purifier" and data["asset_code"] == "AST-001"
    assert data["created_at"] == data["updated_at"] == format_timestamp(clock.now)
    assert answer.body["meta"]["entity"]["id"] == 1
    assert fake.get_record(1, "assets", data["id"]) == data
    assert [(c.action, c.resource, c.entity_id, c.status) for c in fake.calls] == [
        ("create", "assets", 1, 201)
    ]

    _, api = await start(create_status=200, first_id=500)
    answer = await api("POST", "/api/v1/work_orders", json=WORK_ORDER_CREATE)
    assert answer.status == 200
    assert answer.body["data"]["id"] == 500
    assert answer.body["data"]["part_assignments"] == []


async def test_update_bumps_updated_at(start: Start, clock: VendorClock) -> None:
    _, api = await start()
    created = (await api("POST", "/api/v1/work_orders", json=WORK_ORDER_CREATE)).body["data"]
    clock.tick(60)
    path = f"/api/v1/work_orders/{created['id']}"
    answer = await api("PATCH", path, json=WORK_ORDER_UPDATE)
    assert answer.status == 200
    updated = answer.body["data"]
    assert updated["priority"] == "none" and updated["status_id"] == 1
    assert updated["created_at"] == created["created_at"]
    assert updated["updated_at"] == format_timestamp(clock.now) != created["updated_at"]
    # An update that changes nothing still bumps it (by default).
    clock.tick(60)
    answer = await api("PUT", path, json=WORK_ORDER_UPDATE)
    assert answer.body["data"]["updated_at"] == format_timestamp(clock.now)
    # id and timestamps in a body are ignored.
    answer = await api("PATCH", path, json={"work_order": {"id": 9, "updated_at": "2000-01-01"}})
    assert answer.body["data"]["id"] == created["id"]
    assert answer.body["data"]["updated_at"] == format_timestamp(clock.now)

    _, api = await start(bump_on_noop_update=False)
    created = (await api("POST", "/api/v1/work_orders", json=WORK_ORDER_CREATE)).body["data"]
    clock.tick(60)
    same = {"work_order": {"title": created["title"]}}
    answer = await api("PATCH", f"/api/v1/work_orders/{created['id']}", json=same)
    assert answer.body["data"]["updated_at"] == created["updated_at"]


async def test_update_methods_and_unsupported_methods(start: Start) -> None:
    fake, api = await start()
    # PM schedules, procedures, users and vendors are documented as list and get only.
    answer = await api("POST", "/api/v1/users", json={"user": {"name": "x"}})
    assert (answer.status, answer.body) == (404, error("Not found"))
    asset = fake.create_record(1, "assets", {"name": "Pump"})
    assert (await api("DELETE", f"/api/v1/assets/{asset['id']}")).status == 404

    fake, api = await start(update_methods=("PATCH",), unsupported_method_status=405)
    asset = fake.create_record(1, "assets", {"name": "Pump"})
    answer = await api("PUT", f"/api/v1/assets/{asset['id']}", json=ASSET_CREATE)
    assert (answer.status, answer.body) == (405, error("Not found"))
    assert (await api("PATCH", f"/api/v1/assets/{asset['id']}", json=ASSET_CREATE)).status == 200
    assert (await api("POST", "/api/v1/vendors", json={"vendor": {}})).status == 405


async def test_request_bodies_wrap_the_resource(start: Start) -> None:
    _, api = await start()
    answer = await api("POST", "/api/v1/work_orders", json={"title": "unwrapped"})
    assert (answer.status, answer.body) == (
        400,
        error("param is missing or the value is empty: work_order"),
    )
    answer = await api("POST", "/api/v1/work_orders", data=b"{not json")
    assert (answer.status, answer.body) == (400, error("body must be a JSON object"))
    answer = await api("POST", "/api/v1/work_orders", json={"work_order": {"title": " "}})
    assert (answer.status, answer.body) == (422, error("Title can't be blank"))
    answer = await api("POST", "/api/v1/locations", json={"location": {"description": "x"}})
    assert (answer.status, answer.body) == (422, error("Name can't be blank"))

    _, api = await start(
        invalid_json_status=422,
        validation_status=400,
        required_fields={"work_orders": ("title", "priority")},
    )
    assert (await api("POST", "/api/v1/work_orders", json=[1])).status == 422
    answer = await api("POST", "/api/v1/work_orders", json={"work_order": {"title": "t"}})
    assert (answer.status, answer.body) == (400, error("Priority can't be blank"))
    # Locations need nothing under this table.
    assert (await api("POST", "/api/v1/locations", json={"location": {}})).status == 201


async def test_not_found_answers(start: Start) -> None:
    _, api = await start()
    answer = await api("GET", "/api/v1/work_orders/999")
    assert (answer.status, answer.body) == (404, error("Work order not found"))
    assert (await api("GET", "/api/v1/nothing")).status == 404
    assert (await api("GET", "/api/v1/assets/abc")).status == 404

    _, api = await start(not_found_status=410)
    assert (await api("GET", "/api/v1/assets/1")).status == 410


async def test_resource_paths_are_a_knob(start: Start) -> None:
    paths = {**DEFAULTS.resource_paths, "procedure_templates": "procedures"}
    del paths["procedures"]
    fake, api = await start(resource_paths=paths)
    fake.create_record(1, "procedures", {"id": 10, "name": "Building Maintenance Audit"})
    assert await api.ids("/api/v1/procedure_templates") == [10]
    assert (await api("GET", "/api/v1/procedures")).status == 404


# --------------------------------------------------------------------------- listings


async def seed_assets(fake: FakeClickMaint, clock: VendorClock, names: list[str]) -> list[int]:
    ids = []
    for name in names:
        ids.append(fake.create_record(1, "assets", {"name": name})["id"])
        clock.tick(1)
    return ids


async def test_pages_by_page_and_per_page(start: Start, clock: VendorClock) -> None:
    # "page | integer Default: 1", "per_page | integer Default: 50", and
    # `"pagination": {"total": 50, "page": 1, "per_page": 25, "total_pages": 2}`.
    fake, api = await start()
    a, b, _, _, e = await seed_assets(fake, clock, ["A", "B", "C", "D", "E"])
    answer = await api("GET", "/api/v1/assets", params={"per_page": "2"})
    assert [r["id"] for r in answer.body["data"]] == [a, b]
    assert answer.body["meta"]["pagination"] == {
        "total": 5,
        "page": 1,
        "per_page": 2,
        "total_pages": 3,
    }
    assert await api.ids("/api/v1/assets", per_page="2", page="3") == [e]
    assert await api.ids("/api/v1/assets", per_page="2", page="4") == []
    answer = await api("GET", "/api/v1/assets", params={"page": "0"})
    assert (answer.status, answer.body) == (400, error("page must be an integer >= 1"))
    empty = await api("GET", "/api/v1/vendors")
    assert empty.body["meta"]["pagination"]["total_pages"] == 0

    fake, api = await start(invalid_paging="default", per_page_max=2, total_pages_when_empty=1)
    await seed_assets(fake, clock, ["A", "B", "C"])
    answer = await api("GET", "/api/v1/assets", params={"page": "x", "per_page": "10"})
    assert answer.status == 200
    assert answer.body["meta"]["pagination"] == {
        "total": 3,
        "page": 1,
        "per_page": 2,
        "total_pages": 2,
    }
    empty = await api("GET", "/api/v1/vendors")
    assert empty.body["meta"]["pagination"]["total_pages"] == 1

    _, api = await start(invalid_query_status=422)
    assert (await api("GET", "/api/v1/assets", params={"per_page": "-1"})).status == 422


async def test_sort_as_the_document_writes_it(start: Start, clock: VendorClock) -> None:
    # `sort | string Default: "name asc" Example: sort=created_at desc`
    fake, api = await start()
    first, second, third = await seed_assets(fake, clock, ["B", "C", "A"])
    assert await api.ids("/api/v1/assets") == [third, first, second]
    answer = await api("GET", "/api/v1/assets", params={"sort": "created_at desc"})
    assert [r["id"] for r in answer.body["data"]] == [third, second, first]
    assert answer.body["meta"]["sort"] == ["created_at desc"]
    # Work orders and work-order requests: "Default: "created_at desc"".
    w1 = fake.create_record(1, "work_orders", {"title": "z", "priority": "high"})["id"]
    clock.tick(1)
    w2 = fake.create_record(1, "work_orders", {"title": "a", "priority": "high"})["id"]
    clock.tick(1)
    w3 = fake.create_record(1, "work_orders", {"title": "m", "priority": "low"})["id"]
    assert await api.ids("/api/v1/work_orders") == [w3, w2, w1]
    # Several terms, comma-separated; ties keep id order.
    assert await api.ids("/api/v1/work_orders", sort="priority asc,title desc") == [w1, w2, w3]
    assert await api.ids("/api/v1/work_orders", sort="priority asc") == [w1, w2, w3]
    # A malformed term is ignored: the default order stays.
    assert await api.ids("/api/v1/work_orders", sort="title sideways") == [w3, w2, w1]

    fake, api = await start(invalid_sort="reject", sortable_fields=("title", "created_at"))
    answer = await api("GET", "/api/v1/work_orders", params={"sort": "title sideways"})
    assert (answer.status, answer.body) == (400, error("invalid sort 'title sideways'"))
    assert (await api("GET", "/api/v1/work_orders", params={"sort": "priority asc"})).status == 400

    fake, api = await start(sortable_fields=("title",))
    w1 = fake.create_record(1, "work_orders", {"title": "b", "priority": "2"})["id"]
    clock.tick(1)
    w2 = fake.create_record(1, "work_orders", {"title": "a", "priority": "1"})["id"]
    assert await api.ids("/api/v1/work_orders", sort="priority asc") == [w2, w1]
    assert await api.ids("/api/v1/work_orders", sort="id asc") == [w2, w1]
    assert await api.ids("/api/v1/work_orders", sort="title desc") == [w1, w2]

    fake, api = await start(default_sorts={"work_orders": "title asc"})
    w1 = fake.create_record(1, "work_orders", {"title": "b"})["id"]
    w2 = fake.create_record(1, "work_orders", {"title": "a"})["id"]
    answer = await api("GET", "/api/v1/work_orders")
    assert [r["id"] for r in answer.body["data"]] == [w2, w1]
    assert answer.body["meta"]["sort"] == ["title asc"]


async def test_filter_field_matcher(start: Start, clock: VendorClock) -> None:
    # `filter[name_cont]=building Filter using filter[field_matcher] syntax`, and the meta's
    # `"filter": {"name_cont": "Building A"}`.
    fake, api = await start()
    building_a, main_building, pump = await seed_assets(
        fake, clock, ["Building A", "Main building", "Pump"]
    )
    answer = await api("GET", "/api/v1/assets", params={"filter[name_cont]": "building"})
    assert [r["id"] for r in answer.body["data"]] == [building_a, main_building]
    assert answer.body["meta"]["filter"] == {"name_cont": "building"}
    assert await api.ids("/api/v1/assets", **{"filter[name_eq]": "Pump"}) == [pump]
    # An unknown matcher and a blank value are no condition.
    assert len(await api.ids("/api/v1/assets", **{"filter[name_like]": "Pump"})) == 3
    assert len(await api.ids("/api/v1/assets", **{"filter[name_cont]": ""})) == 3

    # `filter[can_be_assigned_to_wo_eq]=true` (users).
    fake.create_record(1, "users", {"id": 1, "name": "John", "can_be_assigned_to_wo": True})
    fake.create_record(1, "users", {"id": 2, "name": "Alice", "can_be_assigned_to_wo": False})
    users = await api.ids("/api/v1/users", **{"filter[can_be_assigned_to_wo_eq]": "true"})
    assert users == [1]

    # "Updated since": the guessed matchers gt / gteq on updated_at.
    stamps = [fake.get_record(1, "assets", i)["updated_at"] for i in (building_a, main_building)]
    since = {"filter[updated_at_gteq]": stamps[1], "sort": "updated_at asc"}
    assert await api.ids("/api/v1/assets", **since) == [main_building, pump]
    assert await api.ids("/api/v1/assets", **{"filter[updated_at_gt]": stamps[1]}) == [pump]
    assert await api.ids("/api/v1/assets", **{"filter[updated_at_lt]": stamps[1]}) == [building_a]
    # `location_id` also reads the rendered `"location": {"id": 12, …}`.
    nested = fake.create_record(1, "assets", {"name": "Fan", "location": {"id": 12}})["id"]
    assert await api.ids("/api/v1/assets", **{"filter[location_id_eq]": "12"}) == [nested]

    fake, api = await start(filter_matchers=("eq", "cont"))
    await seed_assets(fake, clock, ["Old", "New"])
    everything = await api.ids("/api/v1/assets", **{"filter[updated_at_gt]": "2100-01-01"})
    assert len(everything) == 2

    _, api = await start(unknown_filter="reject")
    answer = await api("GET", "/api/v1/assets", params={"filter[name_like]": "x"})
    assert (answer.status, answer.body) == (400, error("unknown filter condition name_like"))


async def test_search(start: Start, clock: VendorClock) -> None:
    fake, api = await start()
    purifier, _ = await seed_assets(fake, clock, ["Air Purifier", "Pump"])
    answer = await api("GET", "/api/v1/assets", params={"search": "PURIF"})
    assert [r["id"] for r in answer.body["data"]] == [purifier]
    assert answer.body["meta"]["search"] == "PURIF"

    fake, api = await start(search_fields=("number",))
    part = fake.create_record(1, "parts", {"name": "Air Filter", "number": "FL_A"})["id"]
    assert await api.ids("/api/v1/parts", search="fl_a") == [part]
    assert await api.ids("/api/v1/parts", search="air") == []


async def test_a_record_changed_while_the_listing_is_paged(
    start: Start, clock: VendorClock
) -> None:
    fake, api = await start()
    w1, w2, w3 = (
        fake.create_record(1, "work_orders", {"title": t})["id"] for t in ("one", "two", "three")
    )
    for record_id in (w1, w2, w3):
        clock.tick(1)
        fake.update_record(1, "work_orders", record_id, {"priority": "low"})
    seen_pages: list[tuple[str, int | None, int]] = []

    def change(resource: str, entity: int | None, page: int) -> None:
        seen_pages.append((resource, entity, page))
        if page == 1:
            clock.tick(1)
            fake.update_record(1, "work_orders", w1, {"priority": "high"})

    fake.after_list_page = change
    query = {"sort": "updated_at desc", "per_page": "1"}
    pages = [await api.ids("/api/v1/work_orders", **query, page=str(n)) for n in (1, 2, 3)]
    # w1 moved to the front after page 1: w3 is seen twice and w1 not at all.
    assert pages == [[w3], [w3], [w2]]
    assert seen_pages == [("work_orders", 1, 1), ("work_orders", 1, 2), ("work_orders", 1, 3)]


# --------------------------------------------------------------------------- rate limit


async def test_rate_limit_headers_on_every_answer(start: Start) -> None:
    # "X-RateLimit-Limit: Maximum requests allowed", "X-RateLimit-Remaining: Requests
    # remaining in current window", "X-RateLimit-Reset: Unix timestamp when the limit resets".
    _, api = await start()
    first = await api("GET", "/api/v1/entities", headers=AUTH)
    second = await api("GET", "/api/v1/assets/404")
    third = await api("GET", "/api/v1/assets", headers=AUTH)  # 400: no entity
    assert [a.headers["X-RateLimit-Limit"] for a in (first, second, third)] == ["300"] * 3
    assert [a.headers["X-RateLimit-Remaining"] for a in (first, second, third)] == [
        "299",
        "298",
        "297",
    ]
    # The reset is a time on the server's clock, the one its `Date` says (the test's vendor
    # clock, a month before today's): a client computes the wait from the two.
    reset = int(first.headers["X-RateLimit-Reset"])
    date = parsedate_to_datetime(first.headers["Date"]).timestamp()
    assert date + 299 <= reset <= date + 301
    assert "retry-after" not in first.headers


async def test_429_with_retry_after_past_the_limit(start: Start) -> None:
    # "retry-after: Amount of seconds to wait until limit resets".
    fake, api = await start(rate_limit_requests=3, rate_limit_window_s=0.5)
    for _ in range(3):
        assert (await api("GET", "/api/v1/assets")).status == 200
    refused = await api("GET", "/api/v1/assets")
    assert (refused.status, refused.body) == (429, error("Too many requests"))
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert fake.rejected_429 == 1
    assert fake.max_requests_in_any_window(0.5) == 4
    assert len(fake.request_times) == 3
    await asyncio.sleep(0.6)
    assert (await api("GET", "/api/v1/assets")).status == 200
    assert [entry.status for entry in fake.requests] == [200, 200, 200, 429, 200]


async def test_the_rate_limit_scope_is_a_knob(start: Start) -> None:
    second = {**E1, "Authorization": "Bearer second-key"}
    fake, api = await start(rate_limit_requests=2)
    fake.add_api_key("second-key")
    for _ in range(2):
        assert (await api("GET", "/api/v1/assets")).status == 200
    assert (await api("GET", "/api/v1/assets")).status == 429
    assert (await api("GET", "/api/v1/assets", headers=second)).status == 200

    # The vendor's page: "per IP": both keys come from 127.0.0.1.
    fake, api = await start(rate_limit_requests=2, rate_limit_scope="ip")
    fake.add_api_key("second-key")
    for _ in range(2):
        assert (await api("GET", "/api/v1/assets")).status == 200
    assert (await api("GET", "/api/v1/assets", headers=second)).status == 429


async def test_rejected_requests_may_take_a_slot(start: Start) -> None:
    for counts, expected in ((False, 200), (True, 429)):
        _, api = await start(
            rate_limit_requests=1, rate_limit_window_s=0.4, rate_limit_counts_rejected=counts
        )
        assert (await api("GET", "/api/v1/assets")).status == 200
        await asyncio.sleep(0.25)
        assert (await api("GET", "/api/v1/assets")).status == 429
        await asyncio.sleep(0.25)
        assert (await api("GET", "/api/v1/assets")).status == expected


async def test_no_limit_sends_no_headers(start: Start) -> None:
    fake, api = await start(rate_limit_requests=None)
    answer = await api("GET", "/api/v1/assets")
    assert answer.status == 200 and "X-RateLimit-Limit" not in answer.headers
    assert fake.arrival_times == []


# --------------------------------------------------------------------------- batch


async def test_the_documents_batch_example(start: Start) -> None:
    # `{"results": [{"status": 200, "body": { }}, {"status": 200, "body": { }}]}`
    fake, api = await start()
    fake.create_record(1, "parts", {"id": 24, "name": "Air Filter", "on_hand_qty": 6})
    answer = await api("POST", "/api/v1/batch", json=BATCH_EXAMPLE)
    assert answer.status == 200
    results = answer.body["results"]
    assert [r["status"] for r in results] == [200, 200]
    # Each op as if it were its own request: the listing (before the adjustment) and the part.
    assert results[0]["body"]["status"] == "success"
    assert results[0]["body"]["data"][0]["on_hand_qty"] == 6
    assert results[1]["body"]["data"]["on_hand_qty"] == 4
    assert fake.get_record(1, "parts", 24)["on_hand_qty"] == 4
    ops = [
        (e.method, e.path, e.batch_op, e.status) for e in fake.requests if e.batch_op is not None
    ]
    assert ops == [
        ("GET", "/api/v1/parts", 0, 200),
        ("PATCH", "/api/v1/parts/24/reconcile", 1, 200),
    ]
    assert [(c.action, c.batch_op) for c in fake.calls] == [("reconcile", 1)]
    assert answer.headers["X-RateLimit-Remaining"] == "299"


async def test_a_failing_op_in_the_middle_of_a_batch(start: Start) -> None:
    ops = [
        {"method": "GET", "url": "/api/v1/parts"},
        {"method": "PATCH", "url": "/api/v1/parts/999/reconcile", "params": {"quantity": 1}},
        {"method": "POST", "url": "/api/v1/work_orders", "params": WORK_ORDER_CREATE},
        {"method": "get", "url": "/api/v1/assets/5"},
    ]
    fake, api = await start()
    answer = await api("POST", "/api/v1/batch", json={"ops": ops, "sequential": True})
    results = answer.body["results"]
    assert [r["status"] for r in results] == [200, 404, 201, 404]
    assert results[1]["body"] == error("Part not found")
    assert len(fake.records(1, "work_orders")) == 1

    fake, api = await start(batch_stop_on_error=True)
    answer = await api("POST", "/api/v1/batch", json={"ops": ops, "sequential": True})
    assert [r["status"] for r in answer.body["results"]] == [200, 404]
    assert fake.records(1, "work_orders") == []


async def test_batch_rules(start: Start) -> None:
    # "Array of objects [ 1 .. 100 ] items Operations to be run sequentially", "sequential
    # required | boolean Value: true", "X-Entity-Id required".
    one = {"method": "GET", "url": "/api/v1/assets"}
    _, api = await start()
    for body, message in (
        ({"ops": [], "sequential": True}, "ops must be a list of 1 to 100 items"),
        ({"ops": [one] * 101, "sequential": True}, "ops must be a list of 1 to 100 items"),
        ({"ops": [one]}, "sequential must be true"),
        ({"ops": [one], "sequential": False}, "sequential must be true"),
        ({"ops": [{"method": "GET"}], "sequential": True}, "ops[0].url is required"),
        ({"ops": [{**one, "params": [1]}], "sequential": True}, "ops[0].params must be an object"),
    ):
        answer = await api("POST", "/api/v1/batch", json=body)
        assert (answer.status, answer.body) == (422, error(message))
    answer = await api("POST", "/api/v1/batch", json={"ops": [one] * 100, "sequential": True})
    assert answer.status == 200 and len(answer.body["results"]) == 100
    answer = await api("POST", "/api/v1/batch", headers=AUTH, json=BATCH_EXAMPLE)
    assert answer.status == 400
    nested = {"ops": [{"method": "POST", "url": "/api/v1/batch"}], "sequential": True}
    answer = await api("POST", "/api/v1/batch", json=nested)
    assert answer.body["results"][0]["status"] == 422

    _, api = await start(batch_max_ops=2, batch_invalid_status=400)
    answer = await api("POST", "/api/v1/batch", json={"ops": [one] * 3, "sequential": True})
    assert (answer.status, answer.body) == (400, error("ops must be a list of 1 to 2 items"))


async def test_batch_ops_run_in_the_batchs_entity_with_get_params_as_query(
    start: Start, clock: VendorClock
) -> None:
    fake, api = await start()
    purifier, _ = await seed_assets(fake, clock, ["Air Purifier", "Pump"])
    other = fake.create_record(2, "assets", {"name": "Elsewhere"})["id"]
    ops = [
        {"method": "GET", "url": "/api/v1/assets", "params": {"filter": {"name_cont": "pur"}}},
        {"method": "GET", "url": f"/api/v1/assets/{other}"},
        {"method": "GET", "url": "/api/v1/assets?per_page=1", "params": {"page": 2}},
    ]
    answer = await api("POST", "/api/v1/batch", json={"ops": ops, "sequential": True})
    first, second, third = answer.body["results"]
    assert [r["id"] for r in first["body"]["data"]] == [purifier]
    assert second["status"] == 404
    assert third["body"]["meta"]["pagination"]["page"] == 2
    logged = [e for e in fake.requests if e.batch_op == 0]
    assert "name_cont" in logged[0].query and logged[0].entity == "1"


async def test_how_a_batch_counts_against_the_rate_limit(start: Start) -> None:
    three = {"ops": [{"method": "GET", "url": "/api/v1/assets"}] * 3, "sequential": True}
    remaining = {}
    for mode in ("one", "per_op", "one_plus_per_op"):
        fake, api = await start(rate_limit_requests=10, batch_rate_limit=mode)
        answer = await api("POST", "/api/v1/batch", json=three)
        remaining[mode] = answer.headers["X-RateLimit-Remaining"]
        assert fake.max_requests_in_any_window(60) == 10 - int(remaining[mode])
    assert remaining == {"one": "9", "per_op": "7", "one_plus_per_op": "6"}

    # Per op, the ops beyond the limit answer 429 in their results.
    fake, api = await start(rate_limit_requests=2, batch_rate_limit="per_op")
    answer = await api("POST", "/api/v1/batch", json=three)
    assert answer.status == 200
    assert [r["status"] for r in answer.body["results"]] == [200, 200, 429]
    assert answer.body["results"][2]["body"] == error("Too many requests")
    assert fake.rejected_429 == 1
    # A batch refused before any op ran still counts as one request.
    fake, api = await start(rate_limit_requests=5, batch_rate_limit="per_op")
    answer = await api("POST", "/api/v1/batch", json={"ops": [], "sequential": True})
    assert answer.headers["X-RateLimit-Remaining"] == "4"


async def test_the_batch_path_is_a_knob(start: Start) -> None:
    _, api = await start(batch_path="/batch")
    assert (await api("POST", "/batch", json=BATCH_EXAMPLE)).status == 200
    assert (await api("POST", "/api/v1/batch", json=BATCH_EXAMPLE)).status == 404


# --------------------------------------------------------------------------- parts


async def test_restock_as_the_document_shows_it(start: Start, clock: VendorClock) -> None:
    # `{"quantity": 4, "cost": 26.15, "note": "Purchase order PO-12345 received"}`
    fake, api = await start()
    fake.create_record(1, "parts", AIR_FILTER)
    clock.tick(60)
    body = {"quantity": 4, "cost": 26.15, "note": "Purchase order PO-12345 received"}
    answer = await api("PATCH", "/api/v1/parts/72/restock", json=body)
    assert answer.status == 200
    part = answer.body["data"]
    assert (part["on_hand_qty"], part["unit_cost"], part["avg_unit_cost"]) == (10, 26.15, 26.15)
    assert part["available"] == 10
    assert part["updated_at"] == format_timestamp(clock.now)
    # A restock at another cost moves the average (weighted), not the unit cost.
    answer = await api("PATCH", "/api/v1/parts/72/restock", json={"quantity": 10, "cost": 30})
    part = answer.body["data"]
    assert (part["on_hand_qty"], part["unit_cost"], part["avg_unit_cost"]) == (20, 26.15, 28.07)
    # "quantity … decimal places <= 3", "cost … decimal places <= 2 >= 0".
    for bad, message in (
        ({"quantity": 1.2345, "cost": 1}, "Quantity must have at most 3 decimal places"),
        ({"quantity": 1, "cost": 1.234}, "Cost must have at most 2 decimal places"),
        ({"quantity": 1, "cost": -1}, "Cost must be greater than or equal to 0"),
        ({"quantity": 0, "cost": 1}, "Quantity must be greater than 0"),
        ({"cost": 1}, "Quantity is required"),
        ({"quantity": "4", "cost": 1}, "Quantity is not a number"),
    ):
        answer = await api("PATCH", "/api/v1/parts/72/restock", json=bad)
        assert (answer.status, answer.body) == (422, error(message))
    assert (await api("PATCH", "/api/v1/parts/99/restock", json=body)).status == 404
    assert (await api("POST", "/api/v1/parts/72/restock", json=body)).status == 404

    fake, api = await start(restock_sets_unit_cost=True)
    fake.create_record(1, "parts", AIR_FILTER)
    answer = await api("PATCH", "/api/v1/parts/72/restock", json={"quantity": 4, "cost": 30})
    assert answer.body["data"]["unit_cost"] == 30


async def test_part_transactions(start: Start, clock: VendorClock) -> None:
    # The transactions listing: "sort … Default: "updated_at desc"", `"type": "restock"`,
    # `"cost": 26.15, "total_cost": 52.3, "quantity": 2`, and `"total_used": 8.5` in its meta.
    fake, api = await start()
    fake.create_record(1, "parts", AIR_FILTER)
    restock = {"quantity": 2, "cost": 26.15, "note": "Purchase order PO-12345 received"}
    await api("PATCH", "/api/v1/parts/72/restock", json=restock)
    clock.tick(1)
    await api(
        "PATCH",
        "/api/v1/parts/72/reconcile",
        json={"quantity": -2, "note": "2 units damaged during shipping"},
    )
    answer = await api("GET", "/api/v1/parts/72/transactions")
    data = answer.body["data"]
    assert [t["type"] for t in data] == ["adjustment", "restock"]
    stamp = data[1]["created_at"]
    assert data[1] == {
        "id": data[1]["id"],
        "note": "Purchase order PO-12345 received",
        "type": "restock",
        "work_order_id": None,
        "cost": 26.15,
        "total_cost": 52.3,
        "quantity": 2,
        "created_at": stamp,
        "updated_at": stamp,
    }
    assert answer.body["meta"]["total_used"] == 0
    assert answer.body["meta"]["sort"] == ["updated_at desc"]
    found = await api.ids("/api/v1/parts/72/transactions", **{"filter[note_cont]": "damaged"})
    assert found == [data[0]["id"]]
    one = await api("GET", f"/api/v1/parts/72/transactions/{data[1]['id']}")
    assert one.body["data"] == data[1]
    assert (await api("GET", "/api/v1/parts/72/transactions/999")).status == 404
    assert (await api("GET", "/api/v1/parts/72/transactions", headers=E2)).status == 404
    assert fake.transactions(1, 72) == sorted(data, key=lambda t: t["id"])

    fake, api = await start(
        part_transactions_segment="part_transactions",
        transaction_types={"restock": "purchase", "usage": "usage"},
    )
    fake.create_record(1, "parts", AIR_FILTER)
    await api("PATCH", "/api/v1/parts/72/restock", json=restock)
    answer = await api("GET", "/api/v1/parts/72/part_transactions")
    assert [t["type"] for t in answer.body["data"]] == ["purchase"]
    assert (await api("GET", "/api/v1/parts/72/transactions")).status == 404


async def test_reconcile_adjusts_the_quantity(start: Start) -> None:
    # "quantity … Positive or negative adjustment amount. The resulting …", "note required".
    fake, api = await start()
    fake.create_record(1, "parts", AIR_FILTER)
    body = {"quantity": -2, "note": "2 units damaged during shipping"}
    answer = await api("PATCH", "/api/v1/parts/72/reconcile", json=body)
    assert answer.body["data"]["on_hand_qty"] == 4
    answer = await api("PATCH", "/api/v1/parts/72/reconcile", json={"quantity": 1})
    assert (answer.status, answer.body) == (422, error("Note can't be blank"))
    answer = await api("PATCH", "/api/v1/parts/72/reconcile", json={**body, "quantity": -5})
    assert (answer.status, answer.body) == (422, error("Resulting quantity can't be negative"))

    fake, api = await start(reconcile_allows_negative=True)
    fake.create_record(1, "parts", AIR_FILTER)
    answer = await api("PATCH", "/api/v1/parts/72/reconcile", json={**body, "quantity": -8.5})
    assert answer.body["data"]["on_hand_qty"] == -2.5


async def test_set_cost_and_set_average_cost(start: Start) -> None:
    # `{"cost": 225.5, "note": "Cost updated per invoice INV-9847"}` and `{"cost": 207.35,
    # "note": "Adjusting after supplier rebate credit"}`.
    fake, api = await start()
    fake.create_record(1, "parts", AIR_FILTER)
    body = {"cost": 225.5, "note": "Cost updated per invoice INV-9847"}
    answer = await api("PATCH", "/api/v1/parts/72/set_cost", json=body)
    assert (answer.body["data"]["unit_cost"], answer.body["data"]["avg_unit_cost"]) == (
        225.5,
        26.15,
    )
    body = {"cost": 207.35, "note": "Adjusting after supplier rebate credit"}
    answer = await api("PATCH", "/api/v1/parts/72/set_avg_cost", json=body)
    assert answer.body["data"]["avg_unit_cost"] == 207.35
    answer = await api("PATCH", "/api/v1/parts/72/set_cost", json={"cost": -1})
    assert answer.status == 422

    routes = {
        "restock": ("POST", "stock/restock"),
        "reconcile": ("PUT", "reconcile"),
        "set_cost": ("PUT", "cost"),
        "set_avg_cost": ("PUT", "average_cost"),
    }
    fake, api = await start(part_action_routes=routes)
    fake.create_record(1, "parts", AIR_FILTER)
    answer = await api("POST", "/api/v1/parts/72/stock/restock", json={"quantity": 1, "cost": 1})
    assert answer.body["data"]["on_hand_qty"] == 7
    assert (await api("PUT", "/api/v1/parts/72/cost", json={"cost": 5})).body["data"][
        "unit_cost"
    ] == 5
    assert (await api("PATCH", "/api/v1/parts/72/reconcile", json={"quantity": 1})).status == 404


async def test_a_part_update_leaves_stock_to_the_stock_actions(start: Start) -> None:
    # The document's part update example has no on_hand_qty, unit_cost or is_non_stock.
    update = {"part": {"name": "Air Filter XL", "on_hand_qty": 100, "unit_cost": 1}}
    fake, api = await start()
    fake.create_record(1, "parts", AIR_FILTER)
    part = (await api("PATCH", "/api/v1/parts/72", json=update)).body["data"]
    assert (part["name"], part["on_hand_qty"], part["unit_cost"]) == ("Air Filter XL", 6, 26.15)

    fake, api = await start(part_update_stock_fields="reject")
    fake.create_record(1, "parts", AIR_FILTER)
    answer = await api("PATCH", "/api/v1/parts/72", json=update)
    assert answer.status == 422
    assert answer.body["message"].startswith("on_hand_qty, unit_cost cannot be updated")

    fake, api = await start(part_update_stock_fields="apply")
    fake.create_record(1, "parts", AIR_FILTER)
    part = (await api("PATCH", "/api/v1/parts/72", json=update)).body["data"]
    assert (part["on_hand_qty"], part["unit_cost"], part["available"]) == (100, 1, 100)


# --------------------------------------------------------------------------- part assignments


async def seed_work_order(fake: FakeClickMaint) -> None:
    fake.create_record(1, "parts", {**AIR_FILTER, "id": 52, "on_hand_qty": 10})
    fake.create_record(1, "work_orders", {"id": 1126, "title": "HVAC filter replacement"})


async def test_work_order_part_assignments(start: Start, clock: VendorClock) -> None:
    # Add: `{"part_id": 52, "quantity": 2}` answers `{"part_id": 52, "part_name": "Air Filter",
    # "quantity": 2, "unit_name": "Item", "unit_short_name": "itm", "type": "usage",
    # "total_cost": 52.3}`; "If this Part is already assigned, this will add to the existing
    # quantity"; change: "New quantity for existing Part assignment"; remove by part id.
    fake, api = await start()
    await seed_work_order(fake)
    path = "/api/v1/work_orders/1126/part_assignments"
    clock.tick(60)
    answer = await api("POST", path, json={"part_id": 52, "quantity": 2})
    assert answer.status == 200
    assert answer.body["data"] == {
        "part_id": 52,
        "part_name": "Air Filter",
        "quantity": 2,
        "unit_name": "Item",
        "unit_short_name": "itm",
        "type": "usage",
        "total_cost": 52.3,
    }
    work_order = fake.get_record(1, "work_orders", 1126)
    assert work_order["updated_at"] == format_timestamp(clock.now)
    answer = await api("POST", path, json={"part_id": 52, "quantity": 2})
    assert answer.body["data"]["quantity"] == 4
    answer = await api("PATCH", path, json={"part_id": 52, "quantity": 1})
    assert (answer.body["data"]["quantity"], answer.body["data"]["total_cost"]) == (1, 26.15)
    detail = await api("GET", "/api/v1/work_orders/1126")
    assert [(a["part_id"], a["quantity"]) for a in detail.body["data"]["part_assignments"]] == [
        (52, 1)
    ]
    # "consume": the part's stock falls, with "usage" transactions of the work order.
    assert fake.get_record(1, "parts", 52)["on_hand_qty"] == 9
    usage = [(t["type"], t["quantity"], t["work_order_id"]) for t in fake.transactions(1, 52)]
    assert usage == [("usage", 2, 1126), ("usage", 2, 1126), ("usage", -3, 1126)]
    listed = await api("GET", "/api/v1/parts/52/transactions")
    assert listed.body["meta"]["total_used"] == 1

    answer = await api("DELETE", f"{path}/52")
    assert (answer.status, answer.body["data"]["quantity"]) == (200, 1)
    assert fake.get_record(1, "work_orders", 1126)["part_assignments"] == []
    assert fake.get_record(1, "parts", 52)["on_hand_qty"] == 10
    assert [c.action for c in fake.calls] == ["add", "add", "change", "remove"]

    # Errors.
    answer = await api("PATCH", path, json={"part_id": 52, "quantity": 1})
    assert (answer.status, answer.body) == (404, error("Part assignment not found"))
    assert (await api("DELETE", f"{path}/52")).status == 404
    answer = await api("POST", path, json={"part_id": 52, "quantity": -1})
    assert (answer.status, answer.body) == (
        422,
        error("Quantity must be greater than or equal to 0"),
    )
    assert (await api("POST", path, json={"part_id": 77, "quantity": 1})).status == 404
    assert (await api("POST", path, json={"quantity": 1})).status == 422
    assert (await api("POST", path, headers=E2, json={"part_id": 52, "quantity": 1})).status == 404
    assert (await api("PUT", path, json={"part_id": 52, "quantity": 1})).status == 404


async def test_assignment_knobs(start: Start, clock: VendorClock) -> None:
    path = "/api/v1/work_orders/1126/part_assignments"
    fake, api = await start(assignment_stock="reserve", assignment_add_status=201)
    await seed_work_order(fake)
    answer = await api("POST", path, json={"part_id": 52, "quantity": 2})
    assert answer.status == 201
    part = fake.get_record(1, "parts", 52)
    assert (part["on_hand_qty"], part["reserved"], part["available"]) == (10, 2, 8)
    assert fake.transactions(1, 52) == []

    fake, api = await start(
        assignment_stock="none",
        assignment_bumps_work_order=False,
        remove_assignment_answer="no_content",
    )
    await seed_work_order(fake)
    before = fake.get_record(1, "work_orders", 1126)["updated_at"]
    clock.tick(60)
    await api("POST", path, json={"part_id": 52, "quantity": 2})
    assert fake.get_record(1, "work_orders", 1126)["updated_at"] == before
    assert fake.get_record(1, "parts", 52)["on_hand_qty"] == 10
    answer = await api("DELETE", f"{path}/52")
    assert (answer.status, answer.body) == (204, None)

    routes = {
        "add": ("PUT", "parts"),
        "change": ("PATCH", "parts/{part_id}"),
        "remove": ("POST", "parts/{part_id}/remove"),
    }
    fake, api = await start(assignment_routes=routes)
    await seed_work_order(fake)
    base = "/api/v1/work_orders/1126/parts"
    assert (await api("PUT", base, json={"part_id": 52, "quantity": 2})).status == 200
    assert (await api("PATCH", f"{base}/52", json={"part_id": 52, "quantity": 3})).status == 200
    assert (await api("POST", f"{base}/52/remove")).status == 200
    assert (await api("POST", path, json={"part_id": 52, "quantity": 2})).status == 404


# --------------------------------------------------------------------------- faults, control API


async def test_fail_next_and_delay_next(start: Start, http: aiohttp.ClientSession) -> None:
    fake, api = await start()
    fake.fail_next(1, 503, retry_after=2)
    answer = await api("GET", "/api/v1/assets")
    assert (answer.status, answer.body) == (503, error("injected failure (503)"))
    assert answer.headers["retry-after"] == "2"
    assert "X-RateLimit-Limit" not in answer.headers
    assert (await api("GET", "/api/v1/assets")).status == 200

    fake.delay_next(1, 0.2)
    began = time.monotonic()
    assert (await api("POST", "/api/v1/assets", json=ASSET_CREATE)).status == 201
    assert time.monotonic() - began >= 0.2

    async with http.post(fake.control_url + "/fail_next", json={"n": 1, "status": 500}) as r:
        assert r.status == 204
    assert (await api("GET", "/api/v1/assets")).status == 500
    async with http.post(fake.control_url + "/delay_next", json={"n": 1, "seconds": 0.1}) as r:
        assert r.status == 204
    began = time.monotonic()
    assert (await api("GET", "/api/v1/assets")).status == 200
    assert time.monotonic() - began >= 0.1
    async with http.post(fake.control_url + "/fail_next", json={"status": 500}) as r:
        assert r.status == 400


async def test_the_control_api(
    start: Start, http: aiohttp.ClientSession, clock: VendorClock
) -> None:
    fake, api = await start()
    control = fake.control_url
    async with http.post(control + "/entities", json={"id": 3, "name": "Depot"}) as r:
        assert r.status == 200
    assert await api.ids("/api/v1/entities") == [3, 1, 2]
    async with http.post(control + "/entities", json={"name": "no id"}) as r:
        assert r.status == 400
    async with http.post(
        control + "/entities/3/work_orders", json={"id": 7, "title": "By hand"}
    ) as r:
        created = await r.json()
    assert created["id"] == 7
    depot = {**AUTH, "X-Entity-Id": "3"}
    listed = await api("GET", "/api/v1/work_orders", headers=depot)
    assert [r["id"] for r in listed.body["data"]] == [7]
    clock.tick(5)
    async with http.patch(control + "/entities/3/work_orders/7", json={"priority": "low"}) as r:
        updated = await r.json()
    assert updated["priority"] == "low" and updated["updated_at"] == format_timestamp(clock.now)
    async with http.get(control + "/entities/3/work_orders") as r:
        assert [w["id"] for w in await r.json()] == [7]
    async with http.delete(control + "/entities/3/work_orders/7") as r:
        assert r.status == 204
    async with http.delete(control + "/entities/3/work_orders/7") as r:
        assert r.status == 404
    async with http.post(control + "/entities/9/work_orders", json={}) as r:
        assert r.status == 404
    async with http.post(control + "/entities/3/nothing", json={}) as r:
        assert r.status == 404
    async with http.get(control + "/entities") as r:
        assert [e["id"] for e in await r.json()] == [1, 2, 3]
    await api("POST", "/api/v1/assets", json=ASSET_CREATE)
    async with http.get(control + "/calls") as r:
        assert [c["action"] for c in await r.json()] == ["create"]
    async with http.get(control + "/requests") as r:
        logged = await r.json()
    assert logged[-1]["method"] == "POST" and logged[-1]["entity"] == "1"
    assert set(logged[-1]) == {"method", "path", "query", "entity", "status", "at", "batch_op"}
    # The control API needs no key and takes no rate-limit slot.
    assert len(fake.arrival_times) == len(logged)


async def test_dev_start_serves_two_entities_and_the_documents_records(
    http: aiohttp.ClientSession,
) -> None:
    dev = await start_dev()
    try:
        assert dev.settings == {"api_key": DEV_API_KEY, "polling": {"interval_s": 30}}
        assert {"work_orders", "part_transactions"} <= dev.changing_resources
        dev.subscribe("http://127.0.0.1:1/ignored")
        headers = {"Authorization": f"Bearer {DEV_API_KEY}", "X-Entity-Id": "1"}
        assert dev.base_url.endswith("/api/v1")
        async with http.get(dev.base_url + "/entities", headers=headers) as r:
            assert [e["name"] for e in (await r.json())["data"]] == ["Main Facility", "North Plant"]
        async with http.get(dev.base_url + "/parts/72", headers=headers) as r:
            assert (await r.json())["data"]["name"] == "Air Filter"
        assert "/_fake/entities/1/work_orders" in dev.hints
    finally:
        await dev.fake.stop()


def test_fake_main_arguments() -> None:
    args = parse_args(["--api-key", "k", "--rate-limit", "off", "--entity", "5:Depot"])
    assert main_behaviour(args).rate_limit_requests is None
    assert [(e["id"], e["name"]) for e in main_entities(args.entity)] == [(5, "Depot")]
    args = parse_args(["--api-key", "k", "--rate-limit", "10/60", "--rate-limit-scope", "ip"])
    limited = main_behaviour(args)
    assert (limited.rate_limit_requests, limited.rate_limit_window_s) == (10, 60.0)
    assert limited.rate_limit_scope == "ip"
    assert main_entities([])[0]["name"] == "Main Facility"
