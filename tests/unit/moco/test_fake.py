"""Tests of the fake MOCO server: it must behave as MOCO's API document says."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import msgspec
import pytest
import pytest_asyncio
from aiohttp import web

from adapters.moco.fake import FakeMoco, FakeMocoBehaviour, format_timestamp, sign_webhook

API_KEY = "test-api-key"
SECRET = "1d608b9d72219b90ff2393a1d3ee0ac0"
AUTH = {"Authorization": f"Token token={API_KEY}"}


class FakeClock:
    """A settable clock so tests decide which records share a timestamp."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


FAST_RETRIES = FakeMocoBehaviour(webhook_retry_initial_s=0.05, webhook_retry_max_s=0.1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeMoco]:
    async with FakeMoco(
        api_key=API_KEY,
        webhook_secret=SECRET,
        rate_limit=None,
        clock=clock,
        behaviour=FAST_RETRIES,
    ) as server:
        yield server


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Receiver:
    """A webhook receiver answering statuses from a script (then 200), recording each POST."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status)


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield rec
    await runner.cleanup()


# --------------------------------------------------------------------------- signing


def test_signature_matches_the_vendor_document_example() -> None:
    body = b'{id: 111, description: "a description"}'
    assert (
        sign_webhook(body, "1d608b9d72219b90ff2393a1d3ee0ac0")
        == "09f9ebc0adeb597cb7cb37fd72b20be0caeca6bd9fb67416b663606bd7f89183"
    )


def test_webhook_secret_must_be_32_hex_characters() -> None:
    with pytest.raises(ValueError):
        FakeMoco(api_key=API_KEY, webhook_secret="not-hex")


def test_timestamps_are_utc_seconds_with_z() -> None:
    moment = datetime(2026, 11, 23, 11, 0, 0, 987654, tzinfo=UTC)
    assert format_timestamp(moment) == "2026-11-23T11:00:00Z"


# --------------------------------------------------------------------------- auth


async def test_requests_without_a_valid_key_get_401_with_message(
    fake: FakeMoco, http: aiohttp.ClientSession
) -> None:
    url = f"{fake.base_url}/projects"
    for headers in (
        {},
        {"Authorization": "Token token=wrong"},
        {"Authorization": f"Bearer {API_KEY}"},
    ):
        async with http.get(url, headers=headers) as response:
            assert response.status == 401
            assert isinstance((await response.json())["message"], str)
    async with http.get(url, headers=AUTH) as response:
        assert response.status == 200
    async with http.get(f"{fake.base_url}/session", headers=AUTH) as response:
        assert response.status == 200
        assert (await response.json())["id"] == 1


# --------------------------------------------------------------------------- lists


async def test_pagination_headers_and_next_link_across_three_pages(
    fake: FakeMoco, http: aiohttp.ClientSession
) -> None:
    ids = [fake.create_record("projects", {"name": f"P{i}"})["id"] for i in range(7)]
    url: str | None = f"{fake.base_url}/projects.json?per_page=3&sort_by=id"
    seen: list[int] = []
    pages: list[str] = []
    while url is not None:
        async with http.get(url, headers=AUTH) as response:
            assert response.status == 200
            assert response.headers["X-Per-Page"] == "3"
            assert response.headers["X-Total"] == "7"
            pages.append(response.headers["X-Page"])
            seen += [record["id"] for record in await response.json()]
            link = response.headers.get("Link")
            if link is None:
                url = None
            else:
                assert link.endswith('>; rel="next"')
                url = link[1 : link.index(">")]
                # The next link keeps the other query parameters and the .json path.
                assert "per_page=3" in url and "sort_by=id" in url and "/projects.json" in url
                assert f"page={int(pages[-1]) + 1}" in url
    assert pages == ["1", "2", "3"]
    assert seen == ids


async def test_default_per_page_and_page_beyond_the_end(
    fake: FakeMoco, http: aiohttp.ClientSession
) -> None:
    for i in range(3):
        fake.create_record("projects", {"name": f"P{i}"})
    async with http.get(f"{fake.base_url}/projects", headers=AUTH) as response:
        assert response.headers["X-Per-Page"] == "100"
        assert "Link" not in response.headers
    async with http.get(f"{fake.base_url}/projects?page=5", headers=AUTH) as response:
        assert await response.json() == []
        assert response.headers["X-Total"] == "3"


async def test_no_next_link_when_the_last_page_is_exactly_full(
    fake: FakeMoco, http: aiohttp.ClientSession
) -> None:
    for i in range(6):
        fake.create_record("deals", {"name": f"D{i}"})
    async with http.get(f"{fake.base_url}/deals?per_page=3&page=1", headers=AUTH) as response:
        assert "page=2" in response.headers["Link"]
    async with http.get(f"{fake.base_url}/deals?per_page=3&page=2", headers=AUTH) as response:
        assert len(await response.json()) == 3
        assert "Link" not in response.headers


async def test_sort_by_field_desc(fake: FakeMoco, http: aiohttp.ClientSession) -> None:
    for name in ("b", "c", "a"):
        fake.create_record("offers", {"title": name})
    async with http.get(
        f"{fake.base_url}/offers", params={"sort_by": "title desc"}, headers=AUTH
    ) as response:
        assert [r["title"] for r in await response.json()] == ["c", "b", "a"]
    async with http.get(
        f"{fake.base_url}/offers", params={"sort_by": "title"}, headers=AUTH
    ) as response:
        assert [r["title"] for r in await response.json()] == ["a", "b", "c"]


async def _ids_updated_after(fake: FakeMoco, http: aiohttp.ClientSession, after: str) -> list[int]:
    async with http.get(
        f"{fake.base_url}/activities", params={"updated_after": after}, headers=AUTH
    ) as response:
        assert response.status == 200
        return [record["id"] for record in await response.json()]


async def test_updated_after_is_strict_and_equal_timestamps_are_shared(
    fake: FakeMoco, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    first = fake.create_record("activities", {"description": "a"})
    clock.advance(0.4)  # same second: same timestamp
    second = fake.create_record("activities", {"description": "b"})
    assert first["updated_at"] == second["updated_at"] == "2026-11-23T10:00:00Z"
    clock.advance(1)
    third = fake.create_record("activities", {"description": "c"})
    assert await _ids_updated_after(fake, http, "2026-11-23T10:00:00Z") == [third["id"]]
    assert await _ids_updated_after(fake, http, "2026-11-23T09:59:59Z") == [
        first["id"],
        second["id"],
        third["id"],
    ]
    # A UI change moves a record past the cursor.
    clock.advance(5)
    fake.update_record("activities", first["id"], {"description": "a2"})
    assert await _ids_updated_after(fake, http, "2026-11-23T10:00:01Z") == [first["id"]]
    async with http.get(
        f"{fake.base_url}/activities", params={"updated_after": "yesterday"}, headers=AUTH
    ) as response:
        assert response.status == 422


async def test_updated_after_inclusive_when_configured(
    clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    async with FakeMoco(
        api_key=API_KEY,
        webhook_secret=SECRET,
        clock=clock,
        behaviour=FakeMocoBehaviour(updated_after_inclusive=True),
    ) as fake:
        first = fake.create_record("activities", {"description": "a"})
        clock.advance(1)
        second = fake.create_record("activities", {"description": "b"})
        assert await _ids_updated_after(fake, http, first["updated_at"]) == [
            first["id"],
            second["id"],
        ]


async def _list(
    fake: FakeMoco, http: aiohttp.ClientSession, **params: str
) -> tuple[list[int], Any]:
    async with http.get(f"{fake.base_url}/companies", params=params, headers=AUTH) as response:
        assert response.status == 200
        return [r["id"] for r in await response.json()], response.headers


def _behave(fake: FakeMoco, **changes: Any) -> None:
    fake.behaviour = msgspec.structs.replace(fake.behaviour, **changes)


async def test_the_default_order_is_a_knob_by_id_by_update_time_or_reversed(
    fake: FakeMoco, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    # The document gives no default order: the fake's is a guess, and tests flip it.
    a, b, c = (fake.create_record("companies", {"name": n}) for n in "abc")
    clock.advance(5)
    fake.update_record("companies", a["id"], {"name": "a2"})
    assert (await _list(fake, http))[0] == [a["id"], b["id"], c["id"]]
    _behave(fake, default_sort_field="updated_at")
    assert (await _list(fake, http))[0] == [b["id"], c["id"], a["id"]]  # ties keep id order
    _behave(fake, default_sort_descending=True)
    assert (await _list(fake, http))[0] == [a["id"], b["id"], c["id"]]
    _behave(fake, default_sort_field="id")
    assert (await _list(fake, http))[0] == [c["id"], b["id"], a["id"]]


async def test_sort_by_an_unsortable_field_keeps_the_default_order(
    fake: FakeMoco, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    a = fake.create_record("companies", {"name": "a"})
    clock.advance(1)
    b = fake.create_record("companies", {"name": "b"})
    newest_first = {"sort_by": "updated_at desc"}
    assert (await _list(fake, http, **newest_first))[0] == [b["id"], a["id"]]
    _behave(fake, sortable_fields=("name",))
    assert (await _list(fake, http, **newest_first))[0] == [a["id"], b["id"]]
    assert (await _list(fake, http, sort_by="name desc"))[0] == [b["id"], a["id"]]


async def test_per_page_is_capped_when_configured(
    fake: FakeMoco, http: aiohttp.ClientSession
) -> None:
    for n in range(5):
        fake.create_record("companies", {"name": str(n)})
    _behave(fake, per_page_max=2)
    ids, headers = await _list(fake, http, per_page="10")
    assert len(ids) == 2 and headers["X-Per-Page"] == "2" and "page=2" in headers["Link"]


async def test_the_default_page_size_is_a_knob(fake: FakeMoco, http: aiohttp.ClientSession) -> None:
    # The document: "a common default of 100 entries per page"; a resource may page otherwise.
    for n in range(5):
        fake.create_record("companies", {"name": str(n)})
    _behave(fake, per_page_default=2)
    ids, headers = await _list(fake, http)
    assert len(ids) == 2 and headers["X-Per-Page"] == "2" and "page=2" in headers["Link"]
    # A per_page the client names still wins over the default.
    ids, headers = await _list(fake, http, per_page="10")
    assert len(ids) == 5 and headers["X-Per-Page"] == "10" and "Link" not in headers
    with pytest.raises(ValueError, match="per_page_default"):
        FakeMocoBehaviour(per_page_default=0)


async def test_the_next_link_may_drop_the_other_query_parameters(
    fake: FakeMoco, http: aiohttp.ClientSession
) -> None:
    for n in range(3):
        fake.create_record("companies", {"name": str(n)})
    _behave(fake, link_keeps_query_params=False)
    _, headers = await _list(fake, http, per_page="2", sort_by="id")
    link = headers["Link"]
    assert link.endswith('?page=2>; rel="next"') and "per_page" not in link


async def test_a_listing_is_dated_by_the_vendors_clock(
    fake: FakeMoco, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    _, headers = await _list(fake, http)
    assert headers["Date"] == "Mon, 23 Nov 2026 10:00:00 GMT"


async def test_a_raw_record_without_updated_at_is_listed_but_after_nothing(
    fake: FakeMoco, http: aiohttp.ClientSession
) -> None:
    fake.put_raw_record("companies", {"id": 40, "name": "raw"})
    made = fake.create_record("companies", {"name": "made"})
    assert made["id"] == 41  # ids go on after the raw record's
    assert (await _list(fake, http))[0] == [40, 41]
    assert (await _list(fake, http, updated_after="2000-01-01T00:00:00Z"))[0] == [41]


async def test_a_hook_runs_after_each_listing_page_is_cut(
    fake: FakeMoco, http: aiohttp.ClientSession
) -> None:
    for n in range(3):
        fake.create_record("companies", {"name": str(n)})
    calls: list[tuple[str, int]] = []

    def after(resource: str, page: int) -> None:
        calls.append((resource, page))
        fake.create_record("companies", {"name": "while paging"})

    fake.after_list_page = after
    ids, headers = await _list(fake, http, per_page="2")
    assert calls == [("companies", 1)] and len(ids) == 2 and headers["X-Total"] == "3"
    _, headers = await _list(fake, http, per_page="2", page="2")
    assert headers["X-Total"] == "4"


# --------------------------------------------------------------------------- rate limit


async def test_rate_limit_answers_429_with_retry_after(http: aiohttp.ClientSession) -> None:
    async with FakeMoco(api_key=API_KEY, webhook_secret=SECRET, rate_limit=(3, 1.0)) as fake:
        url = f"{fake.base_url}/projects"
        statuses = []
        retry_after = None
        for _ in range(4):
            async with http.get(url, headers=AUTH) as response:
                statuses.append(response.status)
                retry_after = response.headers.get("Retry-After")
        assert statuses == [200, 200, 200, 429]
        assert retry_after == "1"
        assert fake.rejected_429 == 1
        assert len(fake.request_times) == 3
        # Every authenticated arrival counts, the 429'd one too: the client sent 4 in 1 s.
        assert fake.max_requests_in_any_window(1.0) == 4
        # Requests without a key neither take a slot nor count as arrivals.
        async with http.get(url) as response:
            assert response.status == 401
        assert fake.max_requests_in_any_window(1.0) == 4
        await asyncio.sleep(1.05)
        async with http.get(url, headers=AUTH) as response:
            assert response.status == 200


async def test_rate_limit_is_per_key(http: aiohttp.ClientSession) -> None:
    async with FakeMoco(api_key=API_KEY, webhook_secret=SECRET, rate_limit=(1, 5.0)) as fake:
        fake.add_api_key("other", user_id=7)
        async with http.get(f"{fake.base_url}/projects", headers=AUTH) as response:
            assert response.status == 200
        other = {"Authorization": "Token token=other"}
        async with http.get(f"{fake.base_url}/session", headers=other) as response:
            assert response.status == 200
            assert (await response.json())["id"] == 7
        async with http.get(f"{fake.base_url}/projects", headers=AUTH) as response:
            assert response.status == 429


def test_max_requests_in_any_window_counts_half_open_windows() -> None:
    fake = FakeMoco(api_key=API_KEY, webhook_secret=SECRET)
    fake.arrival_times = [0.0, 0.5, 1.0, 1.4, 3.0]
    assert fake.max_requests_in_any_window(1.0) == 3  # 0.5, 1.0, 1.4
    assert fake.max_requests_in_any_window(0.5) == 2  # 1.0, 1.4
    fake.arrival_times = [0.0, 1.0, 2.0]
    assert fake.max_requests_in_any_window(1.0) == 1


# --------------------------------------------------------------------------- writes


async def _post(
    http: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with http.post(url, json=body, headers={**AUTH, **(headers or {})}) as response:
        return response.status, await response.json()


async def test_post_validation_answers_422_naming_the_field(
    fake: FakeMoco, http: aiohttp.ClientSession
) -> None:
    project = fake.create_record("projects", {"name": "P"})
    good = {"date": "2026-11-23", "description": "work", "project_id": project["id"], "hours": 1.5}
    url = f"{fake.base_url}/activities"
    cases: list[tuple[dict[str, Any], str]] = [
        ({k: v for k, v in good.items() if k != "date"}, "date"),
        ({**good, "date": "2026-13-01"}, "date"),
        ({**good, "date": "23.11.2026"}, "date"),
        ({**good, "project_id": 999}, "project_id"),
        ({**good, "custom_properties": {"X": 5}}, "custom_properties"),
    ]
    for body, field in cases:
        status, answer = await _post(http, url, body)
        assert status == 422, body
        assert field in answer["message"]
    status, answer = await _post(
        http, f"{fake.base_url}/companies", {"name": "ACME", "type": "friend"}
    )
    assert (status, "type" in answer["message"]) == (422, True)
    status, answer = await _post(
        http, f"{fake.base_url}/projects", {"name": "P2", "customer_id": 4}
    )
    assert (status, "customer_id" in answer["message"]) == (422, True)
    assert fake.calls == []
    assert len(fake.records("activities")) == 0

    status, record = await _post(http, url, good, {"X-IMPERSONATE-USER-ID": "42"})
    assert status == 200
    assert record["user_id"] == 42
    assert record["hours"] == 1.5 and record["custom_properties"] == {}
    status, record = await _post(http, url, {**good, "user_id": 99})
    assert record["user_id"] == 1  # the key's user; a body user_id is ignored
    assert [call.impersonate_user_id for call in fake.calls] == ["42", None]


async def test_post_to_customers_path_creates_a_company(
    fake: FakeMoco, http: aiohttp.ClientSession
) -> None:
    status, record = await _post(
        http, f"{fake.base_url}/customers.json", {"name": "Beispiel AG", "type": "customer"}
    )
    assert status == 200
    assert fake.get_record("companies", record["id"]) == record
    status, _ = await _post(http, f"{fake.base_url}/invoices", {"title": "x"})
    assert status == 405


async def test_put_custom_properties_replace_the_whole_set(
    fake: FakeMoco, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    company = fake.create_record(
        "companies",
        {"name": "ACME", "type": "customer", "custom_properties": {"UID": "1", "Line": "Auto"}},
    )
    url = f"{fake.base_url}/companies/{company['id']}"
    clock.advance(10)
    async with http.put(url, json={"name": "ACME 2"}, headers=AUTH) as response:
        assert response.status == 200
        record = await response.json()
    assert record["custom_properties"] == {"UID": "1", "Line": "Auto"}  # not sent: untouched
    assert record["name"] == "ACME 2" and record["type"] == "customer"
    assert record["updated_at"] == "2026-11-23T10:00:10Z"
    async with http.put(url, json={"custom_properties": {"UID": "2"}}, headers=AUTH) as response:
        assert (await response.json())["custom_properties"] == {"UID": "2"}
    assert fake.get_record("companies", company["id"])["custom_properties"] == {"UID": "2"}  # type: ignore[index]
    async with http.put(url, json={"type": "friend"}, headers=AUTH) as response:
        assert response.status == 422
    async with http.put(f"{fake.base_url}/companies/999", json={}, headers=AUTH) as response:
        assert response.status == 404
        assert "message" in await response.json()
    # A UI change, unlike the API, merges custom fields.
    merged = fake.update_record("companies", company["id"], {"custom_properties": {"New": "x"}})
    assert merged["custom_properties"] == {"UID": "2", "New": "x"}


async def test_delete_get_and_404(fake: FakeMoco, http: aiohttp.ClientSession) -> None:
    project = fake.create_record("projects", {"name": "P"})
    url = f"{fake.base_url}/projects/{project['id']}"
    async with http.get(url, headers=AUTH) as response:
        assert (response.status, (await response.json())["name"]) == (200, "P")
    async with http.delete(url, headers=AUTH) as response:
        assert response.status == 204
    for method in ("GET", "DELETE"):
        async with http.request(method, url, headers=AUTH) as response:
            assert response.status == 404
            assert "message" in await response.json()
    assert [(call.method, call.record_id) for call in fake.calls] == [("DELETE", project["id"])]


async def test_idempotency_key_is_recorded_but_not_honoured(
    fake: FakeMoco, http: aiohttp.ClientSession
) -> None:
    company = fake.create_record("companies", {"name": "C", "type": "customer"})
    body = {"name": "P", "customer_id": company["id"]}
    for _ in range(2):
        status, _ = await _post(http, f"{fake.base_url}/projects", body, {"Idempotency-Key": "k1"})
        assert status == 200
    assert len(fake.records("projects")) == 2  # MOCO documents no idempotency keys
    assert [call.idempotency_key_sent for call in fake.calls] == [True, True]


# --------------------------------------------------------------------------- webhooks


def _decode(body: bytes) -> Any:
    return msgspec.json.decode(body)


async def test_webhook_is_signed_and_resent_identically_after_a_failure(
    fake: FakeMoco, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    project = fake.create_record("projects", {"name": "P"})
    fake.subscribe("Activity", "create", receiver.url)
    receiver.statuses = [500]
    status, record = await _post(
        http,
        f"{fake.base_url}/activities",
        {"date": "2026-11-23", "description": "d", "project_id": project["id"], "hours": 2},
        {"X-IMPERSONATE-USER-ID": "933613686"},
    )
    assert status == 200
    await fake.wait_deliveries_idle(5)
    assert len(receiver.received) == 2
    (headers1, body1), (headers2, body2) = receiver.received
    assert body1 == body2
    for name in ("X-Moco-Signature", "X-Moco-Timestamp", "X-Moco-Target", "X-Moco-Event"):
        assert headers1[name] == headers2[name]
    expected = hmac.new(SECRET.encode(), body1, hashlib.sha256).hexdigest()
    assert headers1["X-Moco-Signature"] == expected
    assert headers1["X-Moco-Target"] == "Activity"
    assert headers1["X-Moco-Event"] == "create"
    assert headers1["X-Moco-User-Id"] == "933613686"
    assert headers1["Content-Type"] == "application/json"
    assert headers1["X-Moco-Timestamp"] == str(
        int(datetime(2026, 11, 23, 10, tzinfo=UTC).timestamp() * 1000)
    )
    assert _decode(body1) == record
    assert [(d.attempt, d.status) for d in fake.deliveries] == [(1, 500), (2, 200)]


async def test_webhook_retries_connection_errors_and_disables_after_consecutive_failures(
    http: aiohttp.ClientSession,
) -> None:
    behaviour = FakeMocoBehaviour(webhook_retry_initial_s=0.01, webhook_max_consecutive_failures=3)
    async with FakeMoco(api_key=API_KEY, webhook_secret=SECRET, behaviour=behaviour) as fake:
        # Port 1 on localhost refuses connections.
        subscription = fake.subscribe("*", "*", "http://127.0.0.1:1/hook")
        fake.create_record("projects", {"name": "P"})
        await fake.wait_deliveries_idle(5)
        assert [d.attempt for d in fake.deliveries] == [1, 2, 3]
        assert all(d.error is not None and d.status is None for d in fake.deliveries)
        assert not subscription.enabled
        assert fake.send_webhook("Project", "update", {"id": 1}, 1) == 0


async def test_ui_changes_fire_matching_webhooks_and_redeliveries_are_identical(
    fake: FakeMoco, receiver: Receiver
) -> None:
    fake.subscribe("Customer", "*", receiver.url)
    fake.subscribe("Activity", "delete", receiver.url)
    company = fake.create_record("companies", {"name": "C", "type": "customer"}, user_id=5)
    fake.update_record("companies", company["id"], {"name": "C2"}, user_id=6)
    activity = fake.create_record("activities", {"description": "x"})  # no create subscription
    fake.delete_record("activities", activity["id"])
    await fake.wait_deliveries_idle(5)
    events = sorted(
        (h["X-Moco-Target"], h["X-Moco-Event"], h["X-Moco-User-Id"]) for h, _ in receiver.received
    )
    assert events == [
        ("Activity", "delete", "1"),
        ("Customer", "create", "5"),
        ("Customer", "update", "6"),
    ]
    first_headers, first_body = receiver.received[0]
    index = next(i for i, d in enumerate(fake.deliveries) if d.body == first_body)
    fake.redeliver(index)
    await fake.wait_deliveries_idle(5)
    headers, body = receiver.received[-1]
    assert body == first_body
    assert headers["X-Moco-Signature"] == first_headers["X-Moco-Signature"]
    assert headers["X-Moco-Timestamp"] == first_headers["X-Moco-Timestamp"]
    fake.resend_last()
    await fake.wait_deliveries_idle(5)
    assert receiver.received[-1][1] == fake.webhooks[-1].body
    assert len(receiver.received) == 5


# --------------------------------------------------------------------------- fault injection


async def test_fail_next_answers_the_injected_status_first(
    http: aiohttp.ClientSession,
) -> None:
    async with FakeMoco(api_key=API_KEY, webhook_secret=SECRET, rate_limit=(2, 60.0)) as fake:
        fake.create_record("projects", {"name": "P"})
        fake.fail_next(2, 503, retry_after=0.5)
        url = f"{fake.base_url}/projects"
        answers = []
        for _ in range(3):
            async with http.get(url, headers=AUTH) as response:
                answers.append((response.status, response.headers.get("Retry-After")))
        assert answers == [(503, "0.5"), (503, "0.5"), (200, None)]
        # Injected failures take no rate-limit slot: one more request still fits.
        async with http.get(url, headers=AUTH) as response:
            assert response.status == 200
        assert fake.rejected_429 == 0
        assert [entry.status for entry in fake.requests] == [503, 503, 200, 200]
        fake.fail_next(1, 429)
        async with http.post(url, json={"name": "x"}, headers=AUTH) as response:
            assert response.status == 429
            assert "Retry-After" not in response.headers
        assert fake.calls == []


async def test_delay_next_slows_the_answer(fake: FakeMoco, http: aiohttp.ClientSession) -> None:
    fake.delay_next(1, 0.3)
    started = time.monotonic()
    async with http.get(f"{fake.base_url}/projects", headers=AUTH) as response:
        assert response.status == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    async with http.get(f"{fake.base_url}/projects", headers=AUTH) as response:
        assert response.status == 200
    assert time.monotonic() - started < 0.3


async def test_the_kits_control_routes_inject_faults_and_show_the_request_log(
    fake: FakeMoco, http: aiohttp.ClientSession
) -> None:
    control = fake.control_url
    async with http.post(f"{control}/fail_next", json={"n": 1, "status": 503}) as response:
        assert response.status == 204
    async with http.post(f"{control}/delay_next", json={"n": 1, "seconds": 0.2}) as response:
        assert response.status == 204
    async with http.post(f"{control}/delay_next", json={"n": 1}) as response:
        assert response.status == 400
    started = time.monotonic()
    async with http.get(f"{fake.base_url}/projects", headers=AUTH) as response:
        assert response.status == 503
        assert await response.json() == {"message": "injected failure (503)"}
    assert time.monotonic() - started >= 0.2
    async with http.get(f"{fake.base_url}/projects?page=2", headers=AUTH) as response:
        assert response.status == 200
    async with http.get(f"{control}/requests") as response:
        logged = await response.json()
    assert [(r["path"], r["query"], r["status"]) for r in logged] == [
        ("/api/v1/projects", "", 503),
        ("/api/v1/projects", "page=2", 200),
    ]


# --------------------------------------------------------------------------- control API


async def test_control_api_creates_updates_and_subscribes(
    fake: FakeMoco, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    control = fake.control_url
    async with http.post(
        f"{control}/subscriptions", json={"target": "Project", "event": "*", "url": receiver.url}
    ) as response:
        assert response.status == 200
    async with http.post(f"{control}/projects?user_id=3", json={"name": "P"}) as response:
        project = await response.json()
    async with http.put(f"{control}/projects/{project['id']}", json={"name": "Q"}) as response:
        assert (await response.json())["name"] == "Q"
    async with http.put(f"{control}/projects/999", json={"name": "Q"}) as response:
        assert response.status == 404
    await fake.wait_deliveries_idle(5)
    assert sorted(h["X-Moco-Event"] for h, _ in receiver.received) == ["create", "update"]
    async with http.delete(f"{fake.base_url}/projects/{project['id']}", headers=AUTH):
        pass
    async with http.get(f"{control}/calls") as response:
        calls = await response.json()
    assert [(c["method"], c["record_id"]) for c in calls] == [("DELETE", project["id"])]
