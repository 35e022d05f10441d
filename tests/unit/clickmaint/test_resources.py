"""Click Maint listings with stub fetchers: the document's answers as test vectors, the
requests a pass makes, the record -> event mapping, entities, work-order details and part
transactions."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.clickmaint import SPEC
from adapters.clickmaint.resources import (
    ENTITIES,
    PAGINATOR,
    POLL,
    SINGULAR,
    EntityListing,
    PartTransactions,
    TransactionsState,
    decode_transactions_state,
    format_since,
    parse_time,
)
from adapters.clickmaint.undocumented import ClickMaintOptions
from adapters.core.change_source import PolledRecord, PollError, change_id
from adapters.core.pagination import PageRequest
from adapters.core.poll_state import ListState, StateError, encode_state
from adapters.core.secret import Secret
from adapters.core.vendor_http import VendorResponse
from adapters.settings import InstanceConfig
from tests.unit.core.poll_harness import Runner, client_fetch

T0 = datetime(2025, 9, 24, 14, 20, 25, tzinfo=UTC)

# The document's GET /entities answer (one entity; `meta.entity` is all null there).
ENTITIES_ANSWER: dict[str, Any] = {
    "status": "success",
    "data": [
        {
            "id": 2,
            "name": "Main Facility",
            "description": "Primary manufacturing and distribution facility",
            "address": "123 Example St",
            "datetime_format": "MM/DD/YYYY - 11:59 PM",
            "timezone": "Etc/UTC: +00:00",
            "currency": "USD",
            "currency_name": "United States Dollar",
            "currency_symbol": "$",
            "created_at": "2025-07-17T19:19:20Z",
            "updated_at": "2025-09-24T14:20:25Z",
            "created_by_id": 15,
            "updated_by_id": 22,
        }
    ],
    "meta": {
        "entity": {
            "id": None,
            "name": None,
            "currency": None,
            "currency_symbol": None,
            "datetime_format": None,
            "timezone": None,
        },
        "customer": {"id": 84, "name": "Acme Corporation"},
        "pagination": {"total": 50, "page": 1, "per_page": 25, "total_pages": 1},
        "sort": ["created_at desc"],
        "search": "Building A",
        "filter": {"name_cont": "Building A"},
    },
}

# The document's asset in the asset listing.
ASSET: dict[str, Any] = {
    "id": 102,
    "name": "Air Purifier",
    "description": "Machine used to purify the air in a shop by removing particles, "
    "allergens, and contaminants",
    "model": "Dyson Pure Cool Link Tower",
    "manufacturer": "Dyson",
    "serial_number": "H8tG5nWp",
    "warranty_expiration_notification": 30,
    "life_expectancy": 36,
    "asset_code": "AHU-BLD1-01-001",
    "status": "online",
    "purchase_cost": 549.99,
    "replacement_cost": 599.99,
    "salvage_value": 150,
    "parent": {"id": 44, "name": "Air Conditioner"},
    "location": {"id": 12, "name": "Building A", "path": "Building A > Main Conference Room"},
    "technicians": [{"id": 3, "name": "John", "surname": "Doe"}],
    "asset_types": [{"id": 4, "name": "HVAC"}],
    "parts": [{"id": 144, "name": "Part A"}, {"id": 145, "name": "Part B"}],
    "vendors": [{"id": 32, "name": "Summit HVAC & Refrigeration"}],
    "purchase_date": "2023-08-24",
    "warranty_exp_date": "2026-08-24",
    "qr_code": "guVT5ngMeZ9xPBIk8db4dCGXVU",
    "created_at": "2025-07-17T19:19:20Z",
    "updated_at": "2025-09-24T14:20:25Z",
    "created_by": {"id": 1, "name": "John", "surname": "Doe"},
    "updated_by": {"id": 2, "name": "Alice", "surname": "Johnson"},
}

# The document's work order in the listing, and the part assignment the single one carries.
WORK_ORDER_LISTED: dict[str, Any] = {
    "id": 1126,
    "title": "Fix water leakage in Freezer",
    "priority": "high",
    "type": "reactive",
    "status": {"id": 5, "name": "Open", "is_custom": False},
    "comments_count": 2,
    "created_at": "2025-07-17T19:19:20Z",
    "updated_at": "2025-09-24T14:20:25Z",
}
PART_ASSIGNMENT = {
    "part_id": 52,
    "part_name": "Air Filter",
    "quantity": 2,
    "unit_name": "Item",
    "unit_short_name": "itm",
    "type": "usage",
    "total_cost": 52.3,
}

# The document's part transaction.
TRANSACTION: dict[str, Any] = {
    "id": 102,
    "note": "Purchase order PO-12345 received",
    "type": "restock",
    "work_order_id": None,
    "cost": 26.15,
    "total_cost": 52.3,
    "quantity": 2,
    "created_at": "2025-07-17T19:19:20Z",
    "updated_at": "2025-09-24T14:20:25Z",
}


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def page(records: list[Any], number: int = 1, pages: int = 1) -> dict[str, Any]:
    """A list answer shaped like the document's."""
    return {
        "status": "success",
        "data": records,
        "meta": {
            "entity": {"id": 1, "name": "Main Facility"},
            "customer": {"id": 84, "name": "Acme Corporation"},
            "pagination": {
                "total": len(records) * pages,
                "page": number,
                "per_page": 25,
                "total_pages": pages,
            },
        },
    }


def one(record: dict[str, Any]) -> dict[str, Any]:
    return {"status": "success", "data": record, "meta": {"entity": {"id": 1}}}


class Vendor:
    """Answers by path (a list of bodies per path, the last one repeating), and logs."""

    def __init__(self, routes: dict[str, list[Any]], date: datetime | None = None) -> None:
        self.routes = routes
        self.sent: list[PageRequest] = []
        self.date = date

    async def __call__(self, request: PageRequest) -> VendorResponse:
        self.sent.append(request)
        answers = self.routes.get(request.url)
        if answers is None:
            return VendorResponse(404, {}, b'{"status": "error", "message": "Not found"}')
        body = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(body, int):
            return VendorResponse(body, {}, b'{"status": "error", "message": "boom"}')
        headers = {}
        if self.date is not None:
            headers["date"] = self.date.strftime("%a, %d %b %Y %H:%M:%S GMT")
        return VendorResponse(200, headers, msgspec.json.encode(body))

    def urls(self) -> list[str]:
        return [r.url for r in self.sent]


def source(name: str) -> Any:
    return POLL.resources[name].source


def runner(name: str, vendor: Vendor, scope: str = "1", **options: Any) -> Runner:
    return Runner(
        source(name),
        vendor,
        resource=name,
        scope=scope,
        page_size=25,
        options=ClickMaintOptions.decode(options),
        now=lambda: T0 + timedelta(hours=1),
    )


# --- times ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-09-24T14:20:25Z", T0),
        ("2025-02-18T12:00:00.000Z", datetime(2025, 2, 18, 12, tzinfo=UTC)),
        ("2025-09-24T16:20:25+02:00", T0),
        ("2025-09-24T14:20:25", T0),
    ],
)
def test_the_documents_times(text: str, expected: datetime) -> None:
    assert parse_time(text) == expected


def test_the_filter_time_is_utc_to_the_second_cut_downwards() -> None:
    assert format_since(T0) == "2025-09-24T14:20:25Z"
    assert format_since(T0 + timedelta(microseconds=999_999)) == "2025-09-24T14:20:25Z"
    assert format_since(parse_time("2025-09-24T16:20:25+02:00")) == "2025-09-24T14:20:25Z"


# --- the declaration --------------------------------------------------------------------------


def test_every_resource_of_the_document_is_polled_per_entity() -> None:
    assert set(POLL.resources) == {
        "assets",
        "locations",
        "parts",
        "part_transactions",
        "pm_schedules",
        "procedures",
        "work_order_requests",
        "users",
        "vendors",
        "work_orders",
    }
    assert all(r.scoped for r in POLL.resources.values())
    assert POLL.scopes is not None
    assert SPEC.poll is POLL
    assert set(SINGULAR) == set(POLL.resources)


# --- entities ---------------------------------------------------------------------------------


async def test_scopes_are_the_entities_that_get_entities_lists() -> None:
    vendor = Vendor({"/entities": [ENTITIES_ANSWER]})
    assert POLL.scopes is not None
    assert await POLL.scopes.discover(vendor) == ["2"]
    assert vendor.sent == [PageRequest("/entities", {"per_page": "100", "page": "1"})]
    assert POLL.scopes.refresh_s() == ENTITIES.refresh_s() == 300.0


async def test_an_instance_that_lists_its_entities_reads_no_entity_listing() -> None:
    vendor = Vendor({"/entities": [ENTITIES_ANSWER]})
    assert POLL.scopes is not None
    listed = ClickMaintOptions.decode({"entities": [7, 9]})
    assert await POLL.scopes.discover(vendor, listed) == ["7", "9"]
    assert vendor.sent == []
    every = ClickMaintOptions.decode({"entities": "all"})
    assert await POLL.scopes.discover(vendor, every) == ["2"]


async def test_entities_on_every_page_are_found() -> None:
    second = copy.deepcopy(ENTITIES_ANSWER)
    second["data"] = [{"id": 7, "name": "North Plant"}, {"id": 2, "name": "Main Facility"}]
    first = copy.deepcopy(ENTITIES_ANSWER)
    first["meta"]["pagination"]["total_pages"] = 2
    answers = [first, second]

    async def fetch(request: PageRequest) -> VendorResponse:
        return VendorResponse(200, {}, msgspec.json.encode(answers.pop(0)))

    assert POLL.scopes is not None
    assert await POLL.scopes.discover(fetch) == ["2", "7"]


async def test_a_rejected_key_is_a_poll_error_naming_the_status() -> None:
    async def fetch(request: PageRequest) -> VendorResponse:
        return VendorResponse(401, {}, b'{"status": "error", "message": "Invalid API key"}')

    assert POLL.scopes is not None
    with pytest.raises(PollError, match="401"):
        await POLL.scopes.discover(fetch)


def test_an_entity_is_sent_as_x_entity_id() -> None:
    assert POLL.scopes is not None
    assert POLL.scopes.headers("2") == {"X-Entity-Id": "2"}


# --- the listing's requests -------------------------------------------------------------------


async def test_a_first_pass_asks_newest_first_without_a_filter() -> None:
    vendor = Vendor({"/assets": [page([ASSET])]})
    run = runner("assets", vendor)
    done = await run.cycle()
    assert vendor.sent == [
        PageRequest("/assets", {"sort": "updated_at desc", "per_page": "25", "page": "1"})
    ]
    assert done.subjects == ["asset/102"]


async def test_the_next_pass_filters_by_mark_less_overlap_and_pages_by_number() -> None:
    date = T0 + timedelta(minutes=5)
    vendor = Vendor({"/assets": [page([ASSET])]}, date=date)
    run = runner("assets", vendor)
    await run.cycle()
    assert run.state.mark == date - timedelta(seconds=1)
    newer = {**ASSET, "id": 103, "updated_at": at(600)}
    vendor.routes["/assets"] = [page([newer], 1, 2), page([ASSET], 2, 2)]
    done = await run.cycle()
    since = format_since(date - timedelta(seconds=1) - timedelta(seconds=2))
    expected = {
        "sort": "updated_at desc",
        "filter[updated_at_gteq]": since,
        "per_page": "25",
    }
    assert [r.params for r in vendor.sent[1:]] == [
        {**expected, "page": "1"},
        {**expected, "page": "2"},
    ]
    assert done.subjects == ["asset/103"]  # 102 is older than the floor


async def test_the_matcher_and_the_order_are_the_instances() -> None:
    vendor = Vendor({"/users": [page([])]})
    bound = source("users").bound(
        runner("users", vendor).ctx,
        ClickMaintOptions.decode({"updated_since_matcher": "updated_at_gt"}),
    )
    assert bound.since_param == "filter[updated_at_gt]"
    assert bound.newest_first
    unfiltered = runner(
        "users", vendor, updated_since_matcher=None, poll_params={"users": {"sort": None}}
    )
    bound = source("users").bound(unfiltered.ctx, unfiltered.ctx.options)
    assert bound.since_param is None
    assert not bound.newest_first  # no order asked for: the pass is judged without one
    run = runner("users", vendor, poll_params={"users": {"sort": "id asc"}})
    await run.cycle()
    assert vendor.sent[-1].params == {"sort": "id asc", "per_page": "25", "page": "1"}


async def test_resource_paths_move_a_listing() -> None:
    vendor = Vendor({"/v2/assets": [page([ASSET])]})
    done = await runner("assets", vendor, resource_paths={"assets": "/v2/assets"}).cycle()
    assert vendor.urls() == ["/v2/assets"]
    assert done.subjects == ["asset/102"]


async def test_requests_carry_the_bearer_key_and_the_entity() -> None:
    seen: list[tuple[str, dict[str, str]]] = []

    async def assets(request: web.Request) -> web.Response:
        seen.append((request.path_qs, dict(request.headers)))
        return web.json_response(page([ASSET]))

    app = web.Application()
    app.router.add_get("/api/v1/assets", assets)
    server = TestServer(app)
    await server.start_server()
    try:
        headers = SPEC.auth(_instance()).static_headers
        client, _ = client_fetch(str(server.make_url("/api/v1")), headers)
        assert POLL.scopes is not None
        entity = dict(POLL.scopes.headers("1"))

        async def fetch(request: PageRequest) -> VendorResponse:
            # What the poll task's fetch does: the scope's headers on every request.
            return await client.request("GET", request.url, params=request.params, headers=entity)

        run = Runner(
            source("assets"),
            fetch,
            resource="assets",
            scope="1",
            page_size=25,
            options=ClickMaintOptions(),
        )
        done = await run.cycle()
        await client.close()
    finally:
        await server.close()
    assert done.subjects == ["asset/102"]
    path, headers = seen[0]
    assert path == "/api/v1/assets?sort=updated_at+desc&per_page=25&page=1"
    assert headers["Authorization"] == "Bearer the-key"
    assert headers["X-Entity-Id"] == "1"
    assert headers["Accept"] == "application/json"


def _instance() -> InstanceConfig:
    return InstanceConfig(
        vendor="clickmaint",
        base_url="https://app.clickmaint.com/api/v1",
        api_key=Secret("the-key"),
    )


# --- records -> events ------------------------------------------------------------------------


def test_the_documents_asset_becomes_an_updated_event_in_its_entity() -> None:
    seen = PolledRecord(
        instance="acme",
        resource="assets",
        scope="1",
        id="102",
        changed=parse_time(ASSET["updated_at"]),
        record=ASSET,
    )
    event = source("assets").listing.to_event(seen)
    assert event.type == "workbridge.clickmaint.asset.updated"
    assert event.subject == "asset/102"
    assert event.time == T0
    assert event.extensions == {"entityid": "1"}
    assert event.source is None  # the instance's: /clickmaint/acme
    assert event.id == change_id(seen)
    assert msgspec.json.decode(event.data) == ASSET  # every field, as listed


def test_a_record_whose_update_is_its_creation_is_created() -> None:
    record = {**ASSET, "updated_at": ASSET["created_at"]}
    seen = PolledRecord(
        instance="acme",
        resource="assets",
        scope="1",
        id="102",
        changed=parse_time(record["updated_at"]),
        record=record,
    )
    assert source("assets").listing.to_event(seen).type == "workbridge.clickmaint.asset.created"


async def test_the_same_record_in_two_entities_is_two_events() -> None:
    first = await runner("assets", Vendor({"/assets": [page([ASSET])]}), scope="1").cycle()
    second = await runner("assets", Vendor({"/assets": [page([ASSET])]}), scope="2").cycle()
    assert first.events[0].id != second.events[0].id
    assert [e.extensions for e in first.events + second.events] == [
        {"entityid": "1"},
        {"entityid": "2"},
    ]


@pytest.mark.parametrize("name", sorted(SINGULAR))
async def test_every_resource_maps_to_its_event_type(name: str) -> None:
    if name == "part_transactions":
        return  # below: read per part
    vendor = Vendor({SPEC_PATHS[name]: [page([{"id": 5, "updated_at": at(0)}])]})
    done = await runner(name, vendor, work_order_details=False).cycle()
    assert [e.type for e in done.events] == [f"workbridge.clickmaint.{SINGULAR[name]}.updated"]
    assert done.subjects == [f"{SINGULAR[name]}/5"]


SPEC_PATHS = ClickMaintOptions().resource_paths


async def test_a_record_without_its_change_time_goes_to_the_dlq() -> None:
    vendor = Vendor({"/locations": [page([{"id": 9, "name": "x"}, {**ASSET, "id": 10}])]})
    done = await runner("locations", vendor).cycle()
    assert done.subjects == ["location/10"]
    assert [d.reason for d in done.dead] == ["the record has no updated_at (its replication key)"]


# --- entities the instance polls --------------------------------------------------------------


async def test_an_entity_outside_the_listed_ones_is_not_polled() -> None:
    vendor = Vendor({"/assets": [page([ASSET])]})
    done = await runner("assets", vendor, scope="3", entities=[1, 2]).cycle()
    assert done.events == [] and vendor.sent == []
    done = await runner("assets", vendor, scope="2", entities=[1, 2]).cycle()
    assert done.subjects == ["asset/102"]


async def test_a_task_without_an_entity_is_an_error() -> None:
    run = Runner(source("assets"), Vendor({}), resource="assets", options=ClickMaintOptions())
    with pytest.raises(PollError, match="per entity"):
        await run.cycle()


# --- work orders and their part assignments ---------------------------------------------------


async def test_a_changed_work_order_is_published_as_its_single_record() -> None:
    detail = {**WORK_ORDER_LISTED, "part_assignments": [PART_ASSIGNMENT], "checklist": []}
    vendor = Vendor(
        {"/work_orders": [page([WORK_ORDER_LISTED])], "/work_orders/1126": [one(detail)]}
    )
    run = runner("work_orders", vendor)
    done = await run.cycle()
    assert vendor.urls() == ["/work_orders", "/work_orders/1126"]
    assert vendor.sent[1].params == {}
    assert done.subjects == ["work_order/1126"]
    assert msgspec.json.decode(done.events[0].data)["part_assignments"] == [PART_ASSIGNMENT]
    # Listed again, unchanged: not read again, not published again.
    await run.cycle()
    assert vendor.urls()[2:] == ["/work_orders"]


async def test_a_work_order_gone_since_listed_is_published_as_listed() -> None:
    vendor = Vendor({"/work_orders": [page([WORK_ORDER_LISTED])]})
    done = await runner("work_orders", vendor).cycle()
    assert msgspec.json.decode(done.events[0].data) == WORK_ORDER_LISTED


async def test_a_failed_detail_read_fails_the_cycle_and_commits_nothing() -> None:
    vendor = Vendor({"/work_orders": [page([WORK_ORDER_LISTED])], "/work_orders/1126": [500]})

    async def fetch(request: PageRequest) -> VendorResponse:
        answer = await vendor(request)
        if answer.status >= 500:
            raise PollError(f"GET {request.url}: {answer.status}")  # as the poll task's fetch
        return answer

    run = Runner(
        source("work_orders"), fetch, resource="work_orders", scope="1", options=ClickMaintOptions()
    )
    with pytest.raises(PollError):
        await run.cycle()
    assert run.state == ListState()


async def test_work_order_details_can_be_switched_off() -> None:
    vendor = Vendor({"/work_orders": [page([WORK_ORDER_LISTED])]})
    done = await runner("work_orders", vendor, work_order_details=False).cycle()
    assert vendor.urls() == ["/work_orders"]
    assert msgspec.json.decode(done.events[0].data) == WORK_ORDER_LISTED


# --- part transactions ------------------------------------------------------------------------


def part(pid: int, seconds: float) -> dict[str, Any]:
    return {"id": pid, "name": f"Part {pid}", "created_at": at(-9999), "updated_at": at(seconds)}


def txn(tid: int, seconds: float) -> dict[str, Any]:
    return {**TRANSACTION, "id": tid, "created_at": at(seconds), "updated_at": at(seconds)}


async def test_the_transactions_of_every_changed_part_are_read_below_it() -> None:
    vendor = Vendor(
        {
            "/parts": [page([part(72, 10), part(73, 5)])],
            "/parts/72/transactions": [page([TRANSACTION])],
            "/parts/73/transactions": [page([txn(200, 3), txn(201, 4)])],
        },
        date=T0 + timedelta(minutes=1),
    )
    run = runner("part_transactions", vendor)
    done = await run.cycle()
    # Parts oldest change first (as the listing publishes), each part's transactions likewise.
    assert vendor.urls() == ["/parts", "/parts/73/transactions", "/parts/72/transactions"]
    assert vendor.sent[1].params == {"sort": "updated_at desc", "per_page": "25", "page": "1"}
    assert done.subjects == [
        "part_transaction/200",
        "part_transaction/201",
        "part_transaction/102",
    ]
    assert done.events[0].type == "workbridge.clickmaint.part_transaction.created"
    assert done.events[0].extensions == {"entityid": "1", "partid": "73"}
    doc = done.events[2]
    assert doc.type == "workbridge.clickmaint.part_transaction.updated"
    assert doc.extensions == {"entityid": "1", "partid": "72"}
    assert doc.time == T0
    assert msgspec.json.decode(doc.data) == TRANSACTION
    assert isinstance(run.state, TransactionsState)
    assert run.state.parts.mark == T0 + timedelta(minutes=1) - timedelta(seconds=1)


async def test_the_next_pass_reads_only_changed_parts_from_the_floor_less_the_margin() -> None:
    date = T0 + timedelta(minutes=1)
    vendor = Vendor(
        {
            "/parts": [page([part(72, 10)])],
            "/parts/72/transactions": [page([TRANSACTION])],
        },
        date=date,
    )
    run = runner("part_transactions", vendor)
    await run.cycle()
    vendor.routes["/parts"] = [page([part(73, 120)])]
    vendor.routes["/parts/73/transactions"] = [page([txn(300, 119)])]
    done = await run.cycle()
    floor = date - timedelta(seconds=1) - timedelta(seconds=2)
    assert vendor.sent[2].url == "/parts"
    assert vendor.sent[2].params["filter[updated_at_gteq]"] == format_since(floor)
    assert vendor.sent[3].url == "/parts/73/transactions"
    assert vendor.sent[3].params["filter[updated_at_gteq]"] == format_since(
        floor - timedelta(hours=1)
    )
    assert done.subjects == ["part_transaction/300"]


async def test_the_transactions_margin_is_the_instances() -> None:
    date = T0 + timedelta(minutes=1)
    vendor = Vendor(
        {"/parts": [page([part(72, 10)])], "/parts/72/transactions": [page([TRANSACTION])]},
        date=date,
    )
    run = runner("part_transactions", vendor, part_transactions_margin_s=0)
    await run.cycle()
    vendor.routes["/parts"] = [page([part(72, 90)])]
    await run.cycle()
    floor = date - timedelta(seconds=1) - timedelta(seconds=2)
    assert vendor.sent[-1].url == "/parts/72/transactions"
    assert vendor.sent[-1].params["filter[updated_at_gteq]"] == format_since(floor)


async def test_a_transaction_listed_again_is_not_published_again() -> None:
    vendor = Vendor(
        {"/parts": [page([part(72, 10)])], "/parts/72/transactions": [page([TRANSACTION])]},
        date=T0 + timedelta(seconds=30),
    )
    run = runner("part_transactions", vendor)
    await run.cycle()
    # The part changes again (a new transaction), the old one is listed again beside it.
    vendor.routes["/parts"] = [page([part(72, 40)])]
    vendor.routes["/parts/72/transactions"] = [page([txn(103, 40), TRANSACTION])]
    done = await run.cycle()
    assert done.subjects == ["part_transaction/103"]


async def test_a_crash_between_batches_neither_loses_nor_repeats_a_transaction() -> None:
    routes = {
        "/parts": [page([part(72, 10), part(73, 5)])],
        "/parts/72/transactions": [page([txn(1, 1), txn(2, 2)])],
        "/parts/73/transactions": [page([txn(3, 3)])],
    }
    vendor = Vendor(routes, date=T0 + timedelta(minutes=1))
    run = Runner(
        source("part_transactions"),
        vendor,
        resource="part_transactions",
        scope="1",
        max_batch=2,
        options=ClickMaintOptions(),
    )
    crashed = await run.cycle(crash_after=1)
    assert crashed.subjects == ["part_transaction/3", "part_transaction/1"]
    assert run.state.parts.mark is None  # the page of parts is not done
    done = await run.cycle()
    assert done.subjects == ["part_transaction/2"]
    assert run.state.parts.mark is not None


async def test_a_part_gone_since_listed_has_no_transactions() -> None:
    vendor = Vendor({"/parts": [page([part(72, 10)])]})
    done = await runner("part_transactions", vendor).cycle()
    assert done.events == [] and done.dead == []


async def test_a_transaction_without_its_time_goes_to_the_dlq_once() -> None:
    bad = {"id": 9, "note": "x"}
    vendor = Vendor(
        {"/parts": [page([part(72, 10)])], "/parts/72/transactions": [page([bad, TRANSACTION])]},
        date=T0 + timedelta(seconds=30),
    )
    run = runner("part_transactions", vendor)
    done = await run.cycle()
    assert done.subjects == ["part_transaction/102"]
    assert [(d.record_id, d.reason) for d in done.dead] == [("9", "the record has no updated_at")]
    vendor.routes["/parts"] = [page([part(72, 40)])]
    again = await run.cycle()
    assert again.dead == [] and again.events == []


async def test_transactions_in_an_entity_not_polled_are_not_read() -> None:
    vendor = Vendor({"/parts": [page([part(72, 10)])]})
    done = await runner("part_transactions", vendor, scope="5", entities=[1]).cycle()
    assert done.events == [] and vendor.sent == []


async def test_start_from_now_publishes_no_old_transaction() -> None:
    vendor = Vendor({"/parts": [page([part(72, 10)])]})
    run = Runner(
        source("part_transactions"),
        vendor,
        resource="part_transactions",
        scope="1",
        start_from="now",
        options=ClickMaintOptions(),
        now=lambda: T0,
    )
    done = await run.cycle()
    assert done.events == [] and vendor.sent == []
    assert run.state.parts.mark == T0


def test_the_transactions_state_is_versioned() -> None:
    state = TransactionsState(seen={"1": T0})
    assert decode_transactions_state(encode_state(state)) == state
    assert isinstance(source("part_transactions"), PartTransactions)
    with pytest.raises(StateError, match="kind"):
        decode_transactions_state(encode_state(ListState()))
    with pytest.raises(StateError, match="version 9"):
        decode_transactions_state(b'{"kind": "clickmaint.part_transactions", "v": 9}')


def test_pagination_is_the_documents_meta_pagination() -> None:
    sent = PageRequest("/assets", {"sort": "updated_at desc", "per_page": "25", "page": "1"})
    response = VendorResponse(200, {}, b"")
    assert PAGINATOR.next(sent, response, page([ASSET], 1, 2)) == PageRequest(
        "/assets", {**sent.params, "page": "2"}
    )
    assert PAGINATOR.next(sent, response, page([ASSET], 1, 1)) is None
    assert PAGINATOR.total(response, ENTITIES_ANSWER) == 50
    assert isinstance(source("assets"), EntityListing)
