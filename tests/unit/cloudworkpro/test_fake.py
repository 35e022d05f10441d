"""Tests of the fake CLOUDWORK|PRO server: it must behave as CLOUDWORK|PRO's API document says
(vendor-docs/004_12534c0536ec6df0.txt, quoted as "the document"), follow the connector's
guesses (adapters/cloudworkpro/undocumented.py) by default, and each guess where the
document is silent (`FakeCloudworkProBehaviour`) must be switchable.

tests/unit/test_fake_knobs_covered.py checks that every knob is set by a test here: each knob
appears below as a keyword argument (`start(create_answer="id")`).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import msgspec
import pytest
import pytest_asyncio
from aiohttp import web
from multidict import CIMultiDictProxy

from adapters.cloudworkpro.auth import read_token
from adapters.cloudworkpro.dev import DEV_CLIENT_ID, DEV_WORK_ORDER_ID, start_dev
from adapters.cloudworkpro.fake import (
    DOCUMENT_WORK_TYPE_ID,
    FakeCloudworkPro,
    FakeCloudworkProBehaviour,
    format_timestamp,
    is_object_id,
)
from adapters.cloudworkpro.fake_main import behaviour as main_behaviour
from adapters.cloudworkpro.fake_main import build as main_build
from adapters.cloudworkpro.fake_main import parse_args
from adapters.cloudworkpro.webhooks import to_events
from adapters.core.auth import jwt_seconds_left
from adapters.core.vendor import WebhookRequest
from adapters.devkit import DEV_API_KEY
from tests.vendor_clock import VendorClock

CLIENT_ID = "test-client"
SECRET = "test-secret"
CREDENTIALS = {"client_id": CLIENT_ID, "client_secret": SECRET}
UNKNOWN_ID = "000000000000000000000000"
# The document's status example id.
DOCUMENT_WO_ID = "633cf3e1bb4e2453a0497b65"
WO_0005 = {
    "error": {
        "code": "WO_0005",
        "message": "The work types provided were not found in CWP platform",
        "detail": "This error happens when you send work type IDs that do not exists in CWP "
        "platform",
    },
    "code": 400,
    "reason": "The work types provided were not found in CWP platform",
    "data": {},
    "success": True,
}


@dataclass
class Answer:
    status: int
    body: Any
    headers: CIMultiDictProxy[str]
    raw: bytes

    @property
    def data(self) -> Any:
        assert self.status == 200, (self.status, self.body)
        assert self.body["code"] == 200, self.body
        return self.body["data"]


@dataclass
class TokenAnswer:
    """What the connector's token reader looks at."""

    status: int
    headers: dict[str, str]
    body: bytes


class Api:
    """Requests to one started fake, with a token got as the connector gets it."""

    def __init__(self, http: aiohttp.ClientSession, fake: FakeCloudworkPro) -> None:
        self.http = http
        self.fake = fake
        self.token: str | None = None

    async def login(self, **credentials: str) -> Answer:
        """POST the token request with the behaviour's body fields."""
        given = credentials or CREDENTIALS
        fields = self.fake.behaviour.token_request_fields
        body = {field: given[name] for field, name in fields.items() if name in given}
        return await self("POST", self.fake.behaviour.token_path, json=body, headers={}, auth=False)

    async def ensure_token(self) -> str:
        if self.token is None:
            answer = await self.login()
            grant = read_token(TokenAnswer(answer.status, {}, answer.raw))
            self.token = grant.value
        return self.token

    async def __call__(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Any = None,
        params: Any = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> Answer:
        sent: dict[str, str] = {}
        if auth:
            sent["Authorization"] = f"Bearer {await self.ensure_token()}"
        sent.update(headers or {})
        async with self.http.request(
            method,
            self.fake._require_base() + path,
            headers=sent,
            params=params,
            json=json,
            data=data,
        ) as response:
            raw = await response.read()
            body = msgspec.json.decode(raw) if raw else None
            return Answer(response.status, body, response.headers, raw)

    async def ids(self, path: str, params: Any = None) -> list[str]:
        answer = await self("GET", path, params=params)
        return [record["_id"] for record in answer.data]

    async def page(self, path: str, params: Any) -> tuple[list[str], dict[str, Any]]:
        answer = await self("GET", path, params=params)
        return [record["_id"] for record in answer.data], answer.body["pagination"]


Start = Callable[..., Awaitable[tuple[FakeCloudworkPro, Api]]]


@pytest.fixture
def clock() -> VendorClock:
    return VendorClock()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest_asyncio.fixture
async def start(clock: VendorClock, http: aiohttp.ClientSession) -> AsyncIterator[Start]:
    """`await start(**knobs)`: a started fake with those knobs, and an `Api` to it.

    No rate limit unless a test asks for one: tests page through listings quickly.
    """
    fakes: list[FakeCloudworkPro] = []

    async def _start(**knobs: Any) -> tuple[FakeCloudworkPro, Api]:
        knobs.setdefault("rate_limit_requests", None)
        fake = FakeCloudworkPro(
            client_id=CLIENT_ID,
            client_secret=SECRET,
            clock=clock,
            behaviour=FakeCloudworkProBehaviour(**knobs),
        )
        await fake.start()
        fakes.append(fake)
        return fake, Api(http, fake)

    yield _start
    for fake in fakes:
        await fake.stop()


@dataclass
class Got:
    remote: str | None
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """A webhook listener on 127.0.0.1: answers the queued statuses (then 200)."""

    url: str = ""
    got: list[Got] = field(default_factory=list)
    statuses: deque[int] = field(default_factory=deque)
    delays: deque[float] = field(default_factory=deque)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append(
            Got(request.remote, dict(request.headers), await request.read(), time.monotonic())
        )
        self.arrived.set()
        # Both taken on arrival: a slow answer does not take the next request's status.
        delay = self.delays.popleft() if self.delays else 0.0
        status = self.statuses.popleft() if self.statuses else 200
        if delay:
            await asyncio.sleep(delay)
        return web.Response(status=status)

    async def wait_for(self, n: int, within_s: float = 3.0) -> list[Got]:
        async with asyncio.timeout(within_s):
            while len(self.got) < n:
                self.arrived.clear()
                await self.arrived.wait()
        return self.got

    def bodies(self) -> list[dict[str, Any]]:
        return [msgspec.json.decode(g.body) for g in self.got]


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/hook", found.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    found.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield found
    await runner.cleanup()


def work_order(fake: FakeCloudworkPro, clock: VendorClock, **fields: Any) -> dict[str, Any]:
    """A work order made by hand, a second after the last change."""
    clock.tick()
    return fake.create_record("work_orders", {"name": "WO", **fields}, notify=False)


def form(content: bytes = b"%PDF-1.4 ...", **extra: str) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for name, value in extra.items():
        data.add_field(name, value)
    data.add_field("file", content, filename="report.pdf", content_type="application/pdf")
    return data


# --------------------------------------------------------------------------- authentication


async def test_a_token_from_the_credentials_is_a_jwt_in_the_envelope(
    start: Start, clock: VendorClock
) -> None:
    # "use the …/auth/token endpoint and request a token that will allow you to use the
    # Public API": a JSON body with client_id and client_secret (the connector's guess).
    fake, api = await start()
    answer = await api.login()
    assert answer.status == 200
    body = answer.body
    assert list(body) == ["code", "reason", "data", "success"]
    assert (body["code"], body["reason"], body["success"]) == (200, "", True)
    assert set(body["data"]) == {"token", "expires_in"}
    assert body["data"]["expires_in"] == 3600
    token = body["data"]["token"]
    assert jwt_seconds_left(token, now_epoch=clock.now.timestamp()) == pytest.approx(3600)
    # The connector reads it.
    assert read_token(TokenAnswer(200, {}, answer.raw)).value == token
    assert fake.tokens_issued == 1 and fake.tokens == [token]
    listed = await api("GET", "/workorders")
    assert listed.status == 200
    assert fake.requests[-1].auth_ok and fake.requests[-1].client_id == CLIENT_ID


async def test_no_wrong_or_expired_token_is_401(start: Start, clock: VendorClock) -> None:
    # "401 - You're not sending the bearer token or the token is expired."
    fake, api = await start(token_lifetime_s=60)
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        answer = await api("GET", "/workorders", headers=headers, auth=False)
        assert answer.status == 401
        assert answer.body == {"code": 401, "reason": "Unauthorized", "data": {}, "success": False}
    assert not fake.requests[-1].auth_ok
    assert (await api.login()).body["data"]["expires_in"] == 60
    assert (await api("GET", "/sites")).status == 200
    clock.tick(60)
    assert (await api("GET", "/sites")).status == 401
    api.token = None
    assert (await api("GET", "/sites")).status == 200
    fake.expire_tokens()
    assert (await api("GET", "/sites")).status == 401
    api.token = None
    await api("GET", "/sites")
    assert api.token is not None
    fake.revoke_token(api.token)
    assert (await api("GET", "/sites")).status == 401
    assert fake.tokens_issued == 4


async def test_wrong_credentials_are_refused(start: Start) -> None:
    fake, api = await start()
    for wrong in (
        {"client_id": CLIENT_ID, "client_secret": "wrong"},
        {"client_id": "nobody", "client_secret": SECRET},
        {"client_id": CLIENT_ID},
    ):
        answer = await api.login(**wrong)
        assert answer.status == 401, wrong
    assert fake.tokens_issued == 0
    fake.add_client("second", "other-secret")
    assert (await api.login(client_id="second", client_secret="other-secret")).status == 200

    _, api = await start(token_refused="bad_request")
    answer = await api.login(client_id=CLIENT_ID, client_secret="wrong")
    assert answer.status == 200
    assert answer.body["code"] == 400 and answer.body["error"]["code"] == "AUTH_0001"
    with pytest.raises(ValueError, match="refused"):
        read_token(TokenAnswer(200, {}, answer.raw))


async def test_the_token_request_body_and_answer_are_knobs(
    start: Start, clock: VendorClock
) -> None:
    fields = {"clientId": "client_id", "clientSecret": "client_secret"}
    _, api = await start(
        token_request_fields=fields,
        token_answer="bare",
        token_key="access_token",
        token_expires_in=False,
        token_format="opaque",
    )
    refused = await api("POST", "/auth/token", json=CREDENTIALS, auth=False)
    assert refused.status == 401  # the default field names are not read any more
    answer = await api.login()
    assert set(answer.body) == {"access_token"}
    token = answer.body["access_token"]
    assert "." not in token and jwt_seconds_left(token) is None
    assert read_token(TokenAnswer(200, {}, answer.raw)) == read_token(
        TokenAnswer(200, {}, msgspec.json.encode({"access_token": token}))
    )
    assert (await api("GET", "/sites")).status == 200

    _, api = await start(token_format="jwt_without_exp")
    token = (await api.login()).body["data"]["token"]
    assert token.count(".") == 2 and jwt_seconds_left(token) is None
    payload = token.split(".")[1]
    claims = msgspec.json.decode(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert "exp" not in claims


async def test_a_token_without_the_permission_is_403(start: Start) -> None:
    # "403 - Your token doesn't have the permissions to perform the request."
    fake, api = await start()
    fake.set_permissions(CLIENT_ID, {"work_orders:read"})
    assert (await api("GET", "/workorders")).status == 200
    answer = await api("POST", "/workorders", json={"name": "x"})
    assert answer.status == 403 and answer.body["code"] == 403
    assert (await api("GET", "/sites")).status == 403
    assert (await api("GET", "/webhooks/notifications")).status == 403
    assert fake.calls == [] and fake.records("work_orders") == []


# --------------------------------------------------------------------------- errors


async def test_a_bad_request_is_http_200_with_code_400(start: Start, clock: VendorClock) -> None:
    # The document's error example, to the letter.
    fake, api = await start()
    answer = await api("POST", "/workorders", json={"name": "x", "work_type_ids": [UNKNOWN_ID]})
    assert (answer.status, answer.body) == (200, WO_0005)
    assert list(answer.body) == ["error", "code", "reason", "data", "success"]
    assert fake.requests[-1].code == 400 and fake.records("work_orders") == []
    wo = work_order(fake, clock)
    answer = await api("PUT", f"/workorders/{wo['_id']}", json={"work_type_ids": ["nope"]})
    assert answer.body == WO_0005
    for body in (b"[1, 2]", b"not json", b""):
        answer = await api(
            "POST", "/workorders", data=body, headers={"Content-Type": "application/json"}
        )
        assert answer.body["code"] == 400 and answer.body["error"]["code"] == "GEN_0001"

    _, api = await start(bad_request_http_status=400, status_body="empty")
    answer = await api("POST", "/workorders", json={"name": "x", "work_type_ids": [UNKNOWN_ID]})
    assert (answer.status, answer.body) == (400, WO_0005)
    missing = await api("GET", f"/workorders/{UNKNOWN_ID}")
    assert (missing.status, missing.raw) == (404, b"")


async def test_unknown_ids_and_paths_are_404(start: Start, clock: VendorClock) -> None:
    # "404 - The resource you requested doesn't exist".
    fake, api = await start()
    for method, path in (
        ("GET", f"/workorders/{UNKNOWN_ID}"),
        ("GET", "/workorders/not-an-id"),
        ("PUT", f"/workorders/{UNKNOWN_ID}/status"),
        ("GET", f"/sites/{UNKNOWN_ID}"),
        ("GET", f"/webhooks/notifications/{UNKNOWN_ID}"),
        ("GET", "/nowhere"),
        ("DELETE", "/workorders"),
    ):
        answer = await api(method, path, json={"status": "draft"} if method == "PUT" else None)
        assert answer.status == 404, (method, path)
        assert answer.body == {"code": 404, "reason": "Not Found", "data": {}, "success": False}
    # Without a token a path is 401 first, whatever it is.
    assert (await api("GET", "/nowhere", auth=False)).status == 401
    site = fake.create_record("sites", {"name": "HQ"}, notify=False)
    assert (await api("GET", f"/sites/{site['_id']}")).data == site

    _, api = await start(malformed_id="bad_request")
    answer = await api("GET", "/workorders/not-an-id")
    assert answer.status == 200 and answer.body["error"]["code"] == "GEN_0002"
    assert (await api("GET", f"/workorders/{UNKNOWN_ID}")).status == 404


async def test_a_wrong_content_type_is_422(start: Start, clock: VendorClock) -> None:
    # "422 - … the request's Content-Type header was not set correctly."
    fake, api = await start()
    wo = work_order(fake, clock)
    as_text = {"Content-Type": "text/plain"}
    assert (await api("POST", "/workorders", data=b'{"name": "x"}', headers=as_text)).status == 422
    assert (await api("POST", "/auth/token", data=b"{}", headers=as_text, auth=False)).status == (
        422
    )
    # The documents endpoint takes form-data, not JSON.
    answer = await api("POST", f"/workorders/{wo['_id']}/documents", json={"file": "x"})
    assert answer.status == 422
    status_path = f"/workorders/{wo['_id']}/status"
    status_form = aiohttp.FormData({"status": "draft"})
    assert (await api("PUT", status_path, data=status_form)).status == 422
    # A charset is fine; a GET needs no Content-Type by default.
    charset = {"Content-Type": "application/json; charset=utf-8"}
    assert (await api("POST", "/sites", data=b'{"name": "HQ"}', headers=charset)).data["name"] == (
        "HQ"
    )
    assert (await api("GET", "/workorders")).status == 200

    _, api = await start(content_type_checked_on="all")
    assert (await api("GET", "/workorders")).status == 422
    json_type = {"Content-Type": "application/json"}
    assert (await api("GET", "/workorders", headers=json_type)).status == 200


async def test_the_rate_limit_answers_429(start: Start) -> None:
    # "429 - Too many request … use an exponential backoff"; the number is the connector's
    # guess (10 per second), per client.
    fake, api = await start(rate_limit_requests=10)
    await api.ensure_token()
    answers = [await api("GET", "/sites") for _ in range(11)]
    assert [a.status for a in answers] == [200] * 10 + [429]
    assert answers[-1].body["code"] == 429 and "Retry-After" not in answers[-1].headers
    assert fake.rejected_429 == 1
    # The token endpoint is not limited.
    assert (await api.login()).status == 200

    fake, api = await start(
        rate_limit_requests=2, rate_limit_window_s=0.2, rate_limit_retry_after=True
    )
    statuses = [(await api("GET", "/sites")).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert fake.requests[-1].status == 429
    refused = await api("GET", "/sites")
    assert refused.headers["Retry-After"] == "1"
    await asyncio.sleep(0.25)
    assert (await api("GET", "/sites")).status == 200


async def test_injected_faults_and_delays(start: Start, clock: VendorClock) -> None:
    fake, api = await start()
    await api.ensure_token()
    for status in (500, 502, 503, 504):
        fake.fail_next(1, status, retry_after=0.5 if status == 503 else None)
        answer = await api("GET", "/workorders", auth=False)
        assert answer.status == status
        assert answer.body["reason"] == f"injected failure ({status})"
        assert ("Retry-After" in answer.headers) == (status == 503)
    assert fake.requests[-1].injected
    # A delayed write is made all the same, after the delay.
    fake.delay_next(1, 0.1)
    started = time.monotonic()
    answer = await api("POST", "/sites", json={"name": "Slow"})
    assert time.monotonic() - started >= 0.1 and answer.data["name"] == "Slow"


# --------------------------------------------------------------------------- records and writes


async def test_a_create_answers_the_work_order_with_object_id_and_ms_times(
    start: Start, clock: VendorClock
) -> None:
    fake, api = await start()
    site = await api("POST", "/sites", json={"name": "HQ", "address": "1 Main St"})
    site_id = site.data["_id"]
    answer = await api(
        "POST",
        "/workorders",
        json={
            "name": "WiFi survey",
            "work_type_ids": [DOCUMENT_WORK_TYPE_ID],
            "site_id": site_id,
            "_id": "ffffffffffffffffffffffff",  # read-only: ignored
        },
    )
    data = answer.data
    assert is_object_id(data["_id"]) and data["_id"] != "ffffffffffffffffffffffff"
    stamp = format_timestamp(clock.now)
    assert stamp == "2026-11-01T08:00:00.000Z"
    assert data == {
        "_id": data["_id"],
        "name": "WiFi survey",
        "work_type_ids": [DOCUMENT_WORK_TYPE_ID],
        "site_id": site_id,
        "status": "draft",
        "created_date": stamp,
        "updated_date": stamp,
    }
    assert fake.get_record("work_orders", data["_id"]) == data
    assert [c.action for c in fake.calls] == ["create", "create"]
    assert fake.calls[-1].json["name"] == "WiFi survey"
    # Ids count up: sorting by id is creation order.
    assert site_id < data["_id"]


async def test_create_checks_the_fields(start: Start, clock: VendorClock) -> None:
    fake, api = await start()

    async def code(body: dict[str, Any], path: str = "/workorders") -> str:
        answer = await api("POST", path, json=body)
        assert answer.status == 200 and answer.body["code"] == 400, answer.body
        return str(answer.body["error"]["code"])

    assert await code({}) == "WO_0001"
    assert await code({"name": ""}) == "WO_0001"
    assert await code({"name": "x", "site_id": UNKNOWN_ID}) == "WO_0006"
    assert await code({"name": "x", "status": "bogus"}) == "WO_0007"
    assert await code({"address": "nowhere"}, "/sites") == "WO_0001"
    assert fake.records("work_orders") == [] and fake.calls == []

    _, api = await start(
        work_order_required=("name", "site_id"),
        site_required=(),
        check_site_id=False,
        work_order_statuses=("open", "closed"),
        default_status="open",
    )
    answer = await api("POST", "/workorders", json={"name": "x"})
    assert answer.body["error"]["code"] == "WO_0001"
    created = (await api("POST", "/workorders", json={"name": "x", "site_id": UNKNOWN_ID})).data
    assert created["status"] == "open" and created["site_id"] == UNKNOWN_ID
    assert (await api("POST", "/sites", json={})).data["_id"]
    status_path = f"/workorders/{created['_id']}/status"
    assert (await api("PUT", status_path, json={"status": "draft"})).body["code"] == 400
    assert (await api("PUT", status_path, json={"status": "closed"})).data.endswith(created["_id"])


async def test_the_create_answer_is_a_knob(start: Start) -> None:
    fake, api = await start(create_answer="id")
    answer = await api("POST", "/workorders", json={"name": "x"})
    assert answer.data == fake.records("work_orders")[0]["_id"]


async def test_an_update_merges_and_bumps_updated_date(start: Start, clock: VendorClock) -> None:
    fake, api = await start()
    wo = work_order(fake, clock, description="old", priority="low")
    clock.tick(5)
    answer = await api("PUT", f"/workorders/{wo['_id']}", json={"description": "new"})
    data = answer.data
    assert data["description"] == "new" and data["priority"] == "low"
    assert data["created_date"] == wo["created_date"]
    assert data["updated_date"] == format_timestamp(clock.now) != wo["updated_date"]
    assert (await api("PUT", f"/workorders/{wo['_id']}", json={"name": ""})).body["code"] == 400
    assert fake.calls[-1].action == "update"

    fake, api = await start(update_mode="replace")
    wo = work_order(fake, clock, description="old", priority="low", status="scheduled")
    answer = await api("PUT", f"/workorders/{wo['_id']}", json={"name": "Renamed"})
    data = answer.data
    assert "description" not in data and "priority" not in data
    assert (data["name"], data["status"]) == ("Renamed", "scheduled")
    assert (await api("PUT", f"/workorders/{wo['_id']}", json={})).body["code"] == 400


async def test_the_status_change_answers_the_documents_example(
    start: Start, clock: VendorClock
) -> None:
    # "data": "Status updated successfully to: 'draft' for work order with ID: 633cf3e1…"
    fake, api = await start()
    fake.create_record(
        "work_orders", {"_id": DOCUMENT_WO_ID, "name": "x", "status": "scheduled"}, notify=False
    )
    clock.tick()
    answer = await api("PUT", f"/workorders/{DOCUMENT_WO_ID}/status", json={"status": "draft"})
    assert answer.status == 200
    assert answer.raw == (
        b'{"code":200,"reason":"","data":"Status updated successfully to: \'draft\' for work '
        b'order with ID: 633cf3e1bb4e2453a0497b65","success":true}'
    )
    record = fake.get_record("work_orders", DOCUMENT_WO_ID)
    assert record is not None
    assert record["status"] == "draft" and record["updated_date"] == format_timestamp(clock.now)
    assert (await api("PUT", f"/workorders/{DOCUMENT_WO_ID}/status", json={"state": "x"})).body[
        "code"
    ] == 400


async def test_summary_full_expands_the_work_types(start: Start, clock: VendorClock) -> None:
    # "if you send the query param `summary` with the value `full`": `work_types` beside
    # `work_type_ids`, on `GET /workorders/:id` only.
    fake, api = await start()
    wo = work_order(fake, clock, work_type_ids=[DOCUMENT_WORK_TYPE_ID])
    plain = (await api("GET", f"/workorders/{wo['_id']}")).data
    assert plain == wo and "work_types" not in plain
    full = (await api("GET", f"/workorders/{wo['_id']}", params={"summary": "full"})).data
    assert full["work_type_ids"] == [DOCUMENT_WORK_TYPE_ID]
    assert full["work_types"] == [
        {
            "_id": "636953eebf54aa00087e75ee",
            "name": "WiFi Heat Mapping",
            "description": "WiFi Heat Mapping",
        }
    ]
    listed = (await api("GET", "/workorders", params={"summary": "full"})).data
    assert "work_types" not in listed[0]
    fake.add_work_type("aaaaaaaaaaaaaaaaaaaaaaaa", "Cabling")
    created = await api(
        "POST", "/workorders", json={"name": "y", "work_type_ids": ["aaaaaaaaaaaaaaaaaaaaaaaa"]}
    )
    assert created.data["work_type_ids"] == ["aaaaaaaaaaaaaaaaaaaaaaaa"]

    fake, api = await start(summary_full_on_lists=True)
    work_order(fake, clock, work_type_ids=[DOCUMENT_WORK_TYPE_ID])
    listed = (await api("GET", "/workorders", params={"summary": "full"})).data
    assert listed[0]["work_types"][0]["name"] == "WiFi Heat Mapping"


async def test_record_field_names_and_time_precision_are_knobs(
    start: Start, clock: VendorClock
) -> None:
    _, api = await start(
        id_field="id", created_field="createdAt", updated_field="updatedAt", timestamp_precision="s"
    )
    data = (await api("POST", "/sites", json={"name": "HQ"})).data
    assert set(data) == {"id", "name", "createdAt", "updatedAt"}
    assert data["createdAt"] == "2026-11-01T08:00:00Z"
    listed = await api("GET", "/sites", params={"sortBy": "updatedAt:desc"})
    assert listed.data == [data]


async def test_a_document_is_uploaded_as_form_data_and_kept(
    start: Start, clock: VendorClock
) -> None:
    # "some of the endpoints that require sending documents work with `form-data` payloads".
    fake, api = await start()
    wo = work_order(fake, clock)
    clock.tick()
    answer = await api(
        "POST",
        f"/workorders/{wo['_id']}/documents",
        data=form(b"%PDF-1.4 hello", resource_name="work_order_extra_photos"),
    )
    data = answer.data
    assert is_object_id(data["_id"])
    assert (data["name"], data["content_type"], data["size"]) == (
        "report.pdf",
        "application/pdf",
        14,
    )
    [upload] = fake.uploads
    assert (upload.work_order_id, upload.filename, upload.content_type, upload.data) == (
        wo["_id"],
        "report.pdf",
        "application/pdf",
        b"%PDF-1.4 hello",
    )
    assert upload.fields == {"resource_name": "work_order_extra_photos"}
    record = fake.get_record("work_orders", wo["_id"])
    assert record is not None and record["updated_date"] == format_timestamp(clock.now)
    # A reference instead of the bytes (the connector's `url` field), and no file at all.
    by_url = aiohttp.FormData({"url": "https://example.com/a.pdf"})
    by_url._is_multipart = True  # aiohttp sends fields-only forms urlencoded otherwise
    answer = await api("POST", f"/workorders/{wo['_id']}/documents", data=by_url)
    assert answer.data["url"] == "https://example.com/a.pdf" and fake.uploads[-1].data == b""
    nothing = aiohttp.FormData({"note": "x"})
    nothing._is_multipart = True
    answer = await api("POST", f"/workorders/{wo['_id']}/documents", data=nothing)
    assert answer.body["error"]["code"] == "DOC_0001"
    assert (await api("POST", f"/workorders/{UNKNOWN_ID}/documents", data=form())).status == 404

    fake, api = await start(document_url_field=None)
    wo = work_order(fake, clock)
    by_url = aiohttp.FormData({"url": "https://example.com/a.pdf"})
    by_url._is_multipart = True
    answer = await api("POST", f"/workorders/{wo['_id']}/documents", data=by_url)
    assert answer.body["error"]["code"] == "DOC_0001"


async def test_paths_methods_and_the_document_field_are_knobs(
    start: Start, clock: VendorClock
) -> None:
    _, api = await start(
        token_path="/oauth/token",
        work_orders_path="/work-orders",
        work_order_path="/work-orders/{id}",
        work_order_status_path="/work-orders/{id}/state",
        work_order_documents_path="/work-orders/{id}/files",
        sites_path="/locations",
        notifications_path="/notifications",
        notification_path="/notifications/{id}",
        update_method="PATCH",
        status_method="POST",
        document_field="document",
    )
    assert (await api("POST", "/auth/token", json=CREDENTIALS, auth=False)).status == 401
    wo = (await api("POST", "/work-orders", json={"name": "x"})).data
    assert (await api("PUT", f"/work-orders/{wo['_id']}", json={"name": "y"})).status == 404
    assert (await api("PATCH", f"/work-orders/{wo['_id']}", json={"name": "y"})).data["name"] == "y"
    state = await api("POST", f"/work-orders/{wo['_id']}/state", json={"status": "completed"})
    assert state.data.startswith("Status updated successfully to: 'completed'")
    document = aiohttp.FormData()
    document.add_field("document", b"abc", filename="a.txt", content_type="text/plain")
    assert (await api("POST", f"/work-orders/{wo['_id']}/files", data=document)).data["size"] == 3
    site = (await api("POST", "/locations", json={"name": "HQ"})).data
    assert (await api("GET", f"/locations/{site['_id']}")).data == site
    notes = await api("GET", "/notifications")
    assert [n["event"] for n in notes.data] == ["WORKORDER.CREATE", "SITE.CREATE"]
    one = await api("GET", f"/notifications/{notes.data[0]['_id']}")
    assert one.data == notes.data[0]
    assert (await api("GET", "/workorders")).status == 404


# --------------------------------------------------------------------------- listings


async def test_cursor_pages_follow_the_document(start: Start, clock: VendorClock) -> None:
    # `cursor`, `limit` ("Default: 100"), and the answer's `pagination` and `options`.
    fake, api = await start()
    made = [work_order(fake, clock, name=f"WO {n:03}")["_id"] for n in range(105)]
    answer = await api("GET", "/workorders")
    body = answer.body
    assert list(body) == ["code", "reason", "data", "pagination", "options", "success"]
    assert body["options"] == {"limit": 100}
    pagination = body["pagination"]
    assert pagination["hasNext"] is True and pagination["hasPrev"] is False
    assert pagination["nextCursor"].startswith("next_") and pagination["prevCursor"] is None
    assert (pagination["pageResults"], pagination["totalResults"]) == (100, 105)
    seen = [r["_id"] for r in body["data"]]
    second, pagination = await api.page("/workorders", {"cursor": pagination["nextCursor"]})
    assert seen + second == made  # by id: creation order
    assert pagination["hasNext"] is False and pagination["nextCursor"] is None
    assert pagination["prevCursor"].startswith("prev_")
    back, _ = await api.page("/workorders", {"cursor": pagination["prevCursor"]})
    assert back == made[:100]

    # sortBy `column:value`, echoed in options.
    answer = await api("GET", "/workorders", params={"sortBy": "name:desc", "limit": "3"})
    assert [r["name"] for r in answer.data] == ["WO 104", "WO 103", "WO 102"]
    assert answer.body["options"] == {"limit": 3, "sortBy": {"field": "name", "value": "desc"}}
    query = {"sortBy": "name:desc", "limit": "3", "cursor": answer.body["pagination"]["nextCursor"]}
    assert [r["name"] for r in (await api("GET", "/workorders", params=query)).data] == [
        "WO 101",
        "WO 100",
        "WO 099",
    ]


async def test_listing_knobs(start: Start, clock: VendorClock) -> None:
    fake, api = await start(default_limit=2, max_limit=3, no_cursor="", default_sort="name:desc")
    for name in "abcd":
        work_order(fake, clock, name=name)
    answer = await api("GET", "/workorders")
    assert [r["name"] for r in answer.data] == ["d", "c"]
    assert answer.body["options"] == {"limit": 2}
    answer = await api("GET", "/workorders", params={"limit": "50"})
    assert answer.body["pagination"]["pageResults"] == 3 and answer.body["options"]["limit"] == 3
    # No such page: "" rather than null.
    answer = await api("GET", "/workorders", params={"in": "name![a, b]"})
    assert [r["name"] for r in answer.data] == ["b", "a"]
    assert answer.body["pagination"]["nextCursor"] == "" == answer.body["pagination"]["prevCursor"]


async def test_bad_paging_parameters_are_code_400(start: Start, clock: VendorClock) -> None:
    fake, api = await start()
    work_order(fake, clock)
    for params in (
        {"limit": "0"},
        {"limit": "ten"},
        {"cursor": "next_???"},
        {"cursor": "elsewhere"},
        {"sortBy": "name"},
        {"sortBy": "name:up"},
        {"filterBy": "{not json"},
        {"filterBy": '["name"]'},
        {"filterOperator": "xor"},
        {"in": "status[draft]"},
        {"between": "created_date![2026-01-01]"},
    ):
        answer = await api("GET", "/workorders", params=params)
        assert answer.status == 200, params
        assert answer.body["code"] == 400 and answer.body["error"]["code"] == "PAG_0001", params

    _, api = await start(invalid_paging="default", invalid_cursor="first_page")
    answer = await api("GET", "/workorders", params={"limit": "0", "cursor": "next_???"})
    assert answer.body["options"]["limit"] == 100 and answer.body["pagination"]["hasPrev"] is False


async def test_filters_in_and_between_on_any_field(start: Start, clock: VendorClock) -> None:
    # filterBy (URL-encoded JSON), filterOperator and/or, `in=column![v1, v2]`,
    # `between=column![start, end]`, as many `in`/`between` as wanted.
    fake, api = await start()
    a = work_order(fake, clock, name="IoT Devices", status="draft", floor=1)["_id"]
    b = work_order(fake, clock, name="Cabling", status="scheduled", floor=2)["_id"]
    c = work_order(
        fake,
        clock,
        name="IoT Devices",
        status="completed",
        floor=3,
        work_type_ids=[DOCUMENT_WORK_TYPE_ID],
    )["_id"]
    wos = "/workorders"
    answer = await api("GET", wos, params={"filterBy": '{ "name": "IoT Devices" }'})
    assert [r["_id"] for r in answer.data] == [a, c]
    assert answer.body["options"]["filterBy"] == [{"field": "name", "value": "IoT Devices"}]
    both = '{"name": "IoT Devices", "status": "completed"}'
    assert await api.ids(wos, {"filterBy": both}) == [c]
    assert await api.ids(wos, {"filterBy": both, "filterOperator": "or"}) == [a, c]
    assert await api.ids(wos, {"filterBy": '{"floor": 2}'}) == [b]
    # An array field matches when it holds the value.
    assert await api.ids(wos, {"filterBy": f'{{"work_type_ids": "{DOCUMENT_WORK_TYPE_ID}"}}'}) == [
        c
    ]
    assert await api.ids(wos, {"in": "status![draft, completed]"}) == [a, c]
    assert await api.ids(wos, {"in": 'status!["scheduled"]'}) == [b]
    assert await api.ids(wos, {"between": "floor![2, 3]"}) == [b, c]
    assert await api.ids(
        wos, [("in", "status![draft, completed]"), ("between", "floor![2, 9]")]
    ) == [c]
    times = [r["created_date"] for r in fake.records("work_orders")]
    assert await api.ids(wos, {"between": f"created_date![{times[0]}, {times[1]}]"}) == [a, b]
    # The connector's incremental query: changed since, newest first.
    since = {
        "between": f"updated_date![{times[1]}, 9999-12-31T23:59:59.999Z]",
        "sortBy": "updated_date:desc",
    }
    assert await api.ids(wos, since) == [c, b]
    # `in`/`between` narrow an or'ed filterBy further.
    either = {"filterBy": both, "filterOperator": "or", "between": "floor![1, 1]"}
    assert await api.ids(wos, either) == [a]
    assert await api.ids(wos, {"filterBy": '{"nothing": "x"}'}) == []

    fake, api = await start(
        filter_by_match="contains", filter_operator_scope="all", between_end="exclusive"
    )
    a = work_order(fake, clock, name="IoT Devices", floor=1)["_id"]
    b = work_order(fake, clock, name="Cabling", floor=2)["_id"]
    assert await api.ids(wos, {"filterBy": '{"name": "iot"}'}) == [a]
    assert await api.ids(wos, {"between": "floor![1, 2]"}) == [a]
    assert await api.ids(
        wos, {"filterBy": '{"name": "iot"}', "filterOperator": "or", "in": "floor![2]"}
    ) == [a, b]


async def test_a_keyset_cursor_sees_a_record_updated_while_paging_again(
    start: Start, clock: VendorClock
) -> None:
    # The document's cursors read as a sort key (`_id|<id>|-1`): an update moves a record in
    # an update-time order, across the page edge.
    fake, api = await start()
    w1, w2, w3, w4 = (work_order(fake, clock, name=f"w{n}")["_id"] for n in range(1, 5))
    pages: list[tuple[str, int]] = []

    def change(resource: str, n: int) -> None:
        pages.append((resource, n))
        if n == 1:
            clock.tick()
            fake.update_record("work_orders", w1, {"name": "w1 again"})

    fake.after_list_page = change
    query = {"sortBy": "updated_date:asc", "limit": "2"}
    first, pagination = await api.page("/workorders", query)
    second, pagination = await api.page(
        "/workorders", {**query, "cursor": pagination["nextCursor"]}
    )
    third, pagination = await api.page("/workorders", {**query, "cursor": pagination["nextCursor"]})
    assert (first, second, third) == ([w1, w2], [w3, w4], [w1])
    assert pagination["hasNext"] is False
    assert pages == [("work_orders", 1), ("work_orders", 2), ("work_orders", 3)]

    # An offset cursor shifts instead when a record before its edge goes.
    fake, api = await start(cursor_format="offset")
    w1, w2, w3, w4 = (work_order(fake, clock, name=f"w{n}")["_id"] for n in range(1, 5))
    first, pagination = await api.page("/workorders", {"limit": "2"})
    fake.delete_record("work_orders", w1)
    second, _ = await api.page("/workorders", {"limit": "2", "cursor": pagination["nextCursor"]})
    assert (first, second) == ([w1, w2], [w4])


# --------------------------------------------------------------------------- webhooks


async def test_a_webhook_comes_from_the_source_address_with_basic_auth(
    start: Start, clock: VendorClock, receiver: Receiver
) -> None:
    # "delivered by CWP from two possible IPs", "CWP supports Basic Authentication".
    fake, api = await start(webhook_source_addresses=("127.0.0.2",))
    fake.add_listener(receiver.url, username="cwp", password="s3cret")
    created = (await api("POST", "/workorders", json={"name": "x"})).data
    [got] = await receiver.wait_for(1)
    assert got.remote == "127.0.0.2"
    assert got.headers["Authorization"] == "Basic " + base64.b64encode(b"cwp:s3cret").decode()
    assert got.headers["Content-Type"] == "application/json"
    body = msgspec.json.decode(got.body)
    assert list(body) == ["_id", "event", "created_date", "data"]
    assert body["event"] == "WORKORDER.CREATE" and body["data"] == created
    assert body["created_date"] == created["updated_date"] and is_object_id(body["_id"])
    await fake.wait_deliveries_idle(2)
    [delivery] = fake.deliveries
    assert (delivery.source, delivery.status, delivery.ok, delivery.attempt) == (
        "127.0.0.2",
        200,
        True,
        1,
    )
    assert delivery.notification_id == body["_id"]
    # The connector maps it.
    [event] = to_events(WebhookRequest({}, got.body, datetime.now(UTC)), "acme")
    assert event.type == "workbridge.cloudworkpro.work_order.created"
    assert event.subject == f"work_order/{created['_id']}"


async def test_two_source_addresses_take_turns(start: Start, receiver: Receiver) -> None:
    fake, _ = await start(webhook_source_addresses=("127.0.0.2", "127.0.0.3"))
    fake.add_listener(receiver.url)
    fake.create_record("sites", {"name": "a"})
    fake.create_record("sites", {"name": "b"})
    got = await receiver.wait_for(2)
    assert sorted(g.remote or "" for g in got) == ["127.0.0.2", "127.0.0.3"]
    assert "Authorization" not in got[0].headers


async def test_failed_deliveries_are_retried_n_times_the_unit(
    start: Start, receiver: Receiver
) -> None:
    # "resend a notification every n * 10 minutes … A maximum of 5 retries", scaled down.
    unit = 0.03
    fake, _ = await start(webhook_retry_unit_s=unit)
    fake.add_listener(receiver.url)
    receiver.statuses.extend([500, 503, 201, 404, 500])
    fake.create_record("sites", {"name": "HQ"})
    got = await receiver.wait_for(6)
    await fake.wait_deliveries_idle(2)
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(got)]
    for n, gap in enumerate(gaps, start=1):
        assert gap >= n * unit * 0.9, gaps
    assert [d.status for d in fake.deliveries] == [500, 503, 201, 404, 500, 200]
    assert [d.attempt for d in fake.deliveries] == [1, 2, 3, 4, 5, 6]
    assert [d.ok for d in fake.deliveries] == [False] * 5 + [True]
    # Every retry is byte-identical.
    assert len({g.body for g in got}) == 1

    # Past the last retry it gives up; 2xx may count as delivered; a slow listener fails.
    fake, _ = await start(
        webhook_retry_unit_s=0.01,
        webhook_max_retries=2,
        webhook_success="2xx",
        webhook_timeout_s=0.1,
    )
    fake.add_listener(receiver.url)
    receiver.got.clear()
    receiver.statuses.extend([500, 500, 500, 500])
    fake.create_record("sites", {"name": "HQ"})
    await receiver.wait_for(3)
    await fake.wait_deliveries_idle(2)
    assert len(fake.deliveries) == 3 and not any(d.ok for d in fake.deliveries)
    receiver.statuses.clear()
    receiver.got.clear()
    receiver.statuses.extend([201, 201])
    receiver.delays.append(0.3)
    fake.create_record("sites", {"name": "Slow"})
    await receiver.wait_for(2)
    await fake.wait_deliveries_idle(2)
    first, second = fake.deliveries[-2:]
    assert first.status is None and first.error is not None and "Timeout" in first.error
    assert second.status == 201 and second.ok


async def test_deliveries_can_arrive_out_of_order(
    start: Start, clock: VendorClock, receiver: Receiver
) -> None:
    # "CWP does not guarantee that webhooks will be sent in the order in which they are
    # generated … make use of the `created_date` timestamp".
    fake, _ = await start(webhook_jitter_s=0.2)
    fake.add_listener(receiver.url)
    for n in range(8):
        clock.tick()
        fake.create_record("sites", {"name": f"s{n}"})
    await receiver.wait_for(8)
    names = [b["data"]["name"] for b in receiver.bodies()]
    assert sorted(names) == [f"s{n}" for n in range(8)] and names != sorted(names)
    by_time = sorted(receiver.bodies(), key=lambda b: b["created_date"])
    assert [b["data"]["name"] for b in by_time] == [f"s{n}" for n in range(8)]


async def test_events_and_notification_fields_are_knobs(
    start: Start, clock: VendorClock, receiver: Receiver
) -> None:
    fake, api = await start()
    fake.add_listener(receiver.url)
    wo = (await api("POST", "/workorders", json={"name": "x"})).data
    await api("PUT", f"/workorders/{wo['_id']}", json={"name": "y"})
    await api("PUT", f"/workorders/{wo['_id']}/status", json={"status": "completed"})
    fake.delete_record("work_orders", wo["_id"])
    await fake.wait_deliveries_idle(2)
    # Only the document's events by default.
    assert [b["event"] for b in receiver.bodies()] == ["WORKORDER.CREATE"]

    fake, api = await start(
        events=("WORKORDER.UPDATE", "WORKORDER.DELETE", "SITE.CREATE"),
        notification_fields={
            "id": "id",
            "event": "type",
            "time": "created_date",
            "data": "payload",
        },
    )
    fake.add_listener(receiver.url, events=["WORKORDER.UPDATE", "WORKORDER.DELETE"])
    receiver.got.clear()
    wo = (await api("POST", "/workorders", json={"name": "x"})).data
    clock.tick()
    await api("PUT", f"/workorders/{wo['_id']}/status", json={"status": "completed"})
    await api("POST", "/sites", json={"name": "HQ"})
    clock.tick()
    fake.delete_record("work_orders", wo["_id"])
    await fake.wait_deliveries_idle(2)
    bodies = receiver.bodies()
    assert [b["type"] for b in bodies] == ["WORKORDER.UPDATE", "WORKORDER.DELETE"]
    assert set(bodies[0]) == {"id", "type", "created_date", "payload"}
    assert bodies[0]["payload"]["status"] == "completed"
    # The site's notification is stored though no listener wanted it.
    assert [n["type"] for n in fake.notifications()] == [
        "WORKORDER.UPDATE",
        "SITE.CREATE",
        "WORKORDER.DELETE",
    ]
    custom = fake.notify("WORKORDER.ASSIGN", {"_id": wo["_id"]})
    assert custom["type"] == "WORKORDER.ASSIGN"


async def test_a_redelivery_is_byte_identical(
    start: Start, clock: VendorClock, receiver: Receiver
) -> None:
    fake, _ = await start()
    fake.add_listener(receiver.url, username="u", password="p")
    fake.create_record("sites", {"name": "HQ"})
    await receiver.wait_for(1)
    note_id = fake.notifications()[0]["_id"]
    clock.tick(3600)
    assert fake.redeliver(note_id) == 1
    fake.resend_last()
    got = await receiver.wait_for(3)
    assert got[0].body == got[1].body == got[2].body
    assert got[0].headers["Authorization"] == got[1].headers["Authorization"]
    await fake.wait_deliveries_idle(2)
    assert [d.redelivery for d in fake.deliveries] == [False, True, True]
    # A removed listener gets nothing more.
    fake.remove_listener(fake.listeners[0].id)
    fake.create_record("sites", {"name": "Other"})
    await fake.wait_deliveries_idle(2)
    assert len(receiver.got) == 3


async def test_notifications_are_listed_and_404_after_three_months(
    start: Start, clock: VendorClock, receiver: Receiver
) -> None:
    # "CWP retains notification records for up to 3 months per event. Attempting to retrieve
    # a webhook message that is older than 3 months results in a `404 Not Found` response."
    fake, api = await start()
    fake.add_listener(receiver.url)
    receiver.statuses.extend([500] * 6)  # every attempt fails: stored all the same
    fake.create_record("sites", {"name": "old"})
    clock.tick(60 * 86400)
    fake.create_record("sites", {"name": "mid"})
    clock.tick(25 * 86400)
    fake.create_record("sites", {"name": "new"})
    path = "/webhooks/notifications"
    listed = await api("GET", path, params={"sortBy": "created_date:asc"})
    notes = listed.data
    assert [n["data"]["name"] for n in notes] == ["old", "mid", "new"]
    assert listed.body["pagination"]["totalResults"] == 3
    old, mid, new = notes
    answer = await api("GET", f"{path}/{old['_id']}")
    assert answer.data == old
    # The recovery's query: a time range, sorted; paged like any listing.
    window = f"created_date![{mid['created_date']}, 9999-12-31T23:59:59.999Z]"
    first, pagination = await api.page(
        path, {"between": window, "sortBy": "created_date:desc", "limit": "1"}
    )
    assert first == [new["_id"]] and pagination["totalResults"] == 2
    rest, _ = await api.page(
        path,
        {
            "between": window,
            "sortBy": "created_date:desc",
            "limit": "1",
            "cursor": pagination["nextCursor"],
        },
    )
    assert rest == [mid["_id"]]
    assert await api.ids(path, {"filterBy": '{"event": "SITE.CREATE"}'}) == [
        old["_id"],
        mid["_id"],
        new["_id"],
    ]

    clock.tick(6 * 86400)  # "old" is 91 days old now
    api.token = None  # and the token expired long ago
    assert (await api("GET", f"{path}/{old['_id']}")).status == 404
    assert await api.ids(path) == [mid["_id"], new["_id"]]
    assert len(fake.notifications()) == 3  # the fake still has it

    fake, api = await start(notification_retention_s=60)
    fake.create_record("sites", {"name": "short-lived"})
    note_id = fake.notifications()[0]["_id"]
    assert (await api("GET", f"{path}/{note_id}")).status == 200
    clock.tick(61)
    answer = await api("GET", f"{path}/{note_id}")
    assert answer.status == 404 and fake.requests[-1].auth_ok


async def test_deliveries_can_be_dropped_on_purpose(
    start: Start, clock: VendorClock, receiver: Receiver
) -> None:
    fake, api = await start()
    fake.add_listener(receiver.url)
    fake.webhooks_down()
    fake.create_record("sites", {"name": "missed"})
    fake.webhooks_down(False)
    fake.lose_next(1)
    fake.create_record("sites", {"name": "lost"})
    fake.create_record("sites", {"name": "delivered"})
    await fake.wait_deliveries_idle(2)
    assert [b["data"]["name"] for b in receiver.bodies()] == ["delivered"]
    notes = fake.notifications()
    assert fake.lost == [notes[0]["_id"], notes[1]["_id"]]
    # All three are there to recover.
    names = [n["data"]["name"] for n in (await api("GET", "/webhooks/notifications")).data]
    assert names == ["missed", "lost", "delivered"]


# --------------------------------------------------------------------------- control API, dev


async def test_the_control_api(
    start: Start, clock: VendorClock, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    fake, api = await start()
    ctl = fake.control_url

    async def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with http.request(method, ctl + path, json=body) as response:
            raw = await response.read()
            if response.content_type != "application/json":
                return response.status, raw.decode()
            return response.status, msgspec.json.decode(raw)

    status, listener = await call(
        "POST", "/listeners", {"url": receiver.url, "username": "u", "password": "p"}
    )
    assert status == 200 and listener["id"] == 1
    status, site = await call("POST", "/sites", {"name": "HQ"})
    assert status == 200 and is_object_id(site["_id"])
    status, wo = await call(
        "POST", "/work_orders", {"name": "x", "work_type_ids": [DOCUMENT_WORK_TYPE_ID]}
    )
    clock.tick()
    status, changed = await call("PATCH", f"/work_orders/{wo['_id']}", {"status": "completed"})
    assert changed["status"] == "completed" and changed["updated_date"] != wo["updated_date"]
    status, full = await call("GET", f"/work_orders/{wo['_id']}")
    assert full["work_types"][0]["name"] == "WiFi Heat Mapping"
    assert (await call("GET", "/work_orders"))[1] == [changed]
    assert (await call("GET", "/work_types"))[1][DOCUMENT_WORK_TYPE_ID][
        "name"
    ] == "WiFi Heat Mapping"
    assert (await call("GET", "/nothing"))[0] == 404
    assert (await call("PUT", f"/sites/{UNKNOWN_ID}", {}))[0] == 404
    await receiver.wait_for(2)
    await fake.wait_deliveries_idle(2)
    status, notes = await call("GET", "/notifications")
    assert [n["event"] for n in notes] == ["SITE.CREATE", "WORKORDER.CREATE"]
    assert len((await call("GET", "/deliveries"))[1]) == 2
    assert (await call("POST", f"/redeliver/{notes[0]['_id']}"))[1] == {"listeners": 1}
    await receiver.wait_for(3)
    assert (await call("POST", f"/redeliver/{UNKNOWN_ID}"))[0] == 404
    assert (await call("POST", "/webhooks_down", {"down": True}))[0] == 204
    await call("POST", "/sites", {"name": "unseen"})
    assert len(fake.lost) == 1
    assert (await call("DELETE", f"/sites/{site['_id']}"))[0] == 204
    await api.ensure_token()
    assert (await call("POST", "/fail_next", {"n": 1, "status": 503}))[0] == 204
    assert (await api("GET", "/sites")).status == 503
    assert (await call("POST", "/fail_next", {"n": "x"}))[0] == 400
    assert (await call("POST", "/delay_next", {"n": 1, "seconds": 0.01}))[0] == 204
    assert (await call("POST", "/expire_tokens"))[0] == 204
    assert (await api("GET", "/sites")).status == 401
    requests = (await call("GET", "/requests"))[1]
    assert [r["status"] for r in requests[-2:]] == [503, 401]
    assert (await call("GET", "/calls"))[1] == []
    wo_id = wo["_id"]
    api.token = None
    await api("POST", f"/workorders/{wo_id}/documents", data=form(b"abc"))
    uploads = (await call("GET", "/uploads"))[1]
    assert base64.b64decode(uploads[0]["data"]) == b"abc"


async def test_dev_fake_serves_the_dev_client(http: aiohttp.ClientSession) -> None:
    dev = await start_dev()
    try:
        fake = dev.fake
        assert isinstance(fake, FakeCloudworkPro)
        assert dev.settings["credentials"]["client_secret"] == DEV_API_KEY
        api = Api(http, fake)
        answer = await api.login(client_id=DEV_CLIENT_ID, client_secret=DEV_API_KEY)
        assert answer.status == 200
        api.token = answer.body["data"]["token"]
        assert len(await api.ids("/workorders")) == 3
        assert len(await api.ids("/sites")) == 2
        status = await api(
            "PUT", f"/workorders/{DEV_WORK_ORDER_ID}/status", json={"status": "draft"}
        )
        assert status.data.endswith(DEV_WORK_ORDER_ID)
        dev.subscribe("http://127.0.0.1:9/webhooks/cloudworkpro")
        assert fake.listeners[0].username == dev.settings["credentials"]["webhook_user"]
        assert fake.notifications() == []  # seeded silently
    finally:
        await dev.fake.stop()


def test_fake_main_builds_the_fake_the_command_line_asks_for() -> None:
    args = parse_args(
        [
            "--client-secret",
            "s",
            "--rate-limit",
            "5/2",
            "--token-lifetime",
            "30",
            "--listener",
            "http://127.0.0.1:1/hook",
            "--listener-user",
            "u",
            "--listener-password",
            "p",
            "--source-address",
            "127.0.0.2",
            "--retry-unit",
            "1.5",
            "--seed",
        ]
    )
    chosen = main_behaviour(args)
    assert (chosen.rate_limit_requests, chosen.rate_limit_window_s) == (5, 2.0)
    assert chosen.token_lifetime_s == 30 and chosen.webhook_retry_unit_s == 1.5
    assert chosen.webhook_source_addresses == ("127.0.0.2",)
    fake = main_build(args)
    assert fake.listeners[0].username == "u" and len(fake.records("work_orders")) == 3
    off = main_behaviour(parse_args(["--client-secret", "s", "--rate-limit", "off"]))
    assert off.rate_limit_requests is None


def test_the_fakes_clock_makes_ids_and_times(clock: VendorClock) -> None:
    fake = FakeCloudworkPro(client_secret="s", clock=clock, seed=7)
    first = fake.create_record("sites", {"name": "a"})
    clock.tick(1)
    second = fake.create_record("sites", {"name": "b", "created_date": "2020-01-01T00:00:00Z"})
    assert first["_id"][:8] == f"{int(clock.now.timestamp()) - 1:08x}"
    assert second["created_date"] == "2020-01-01T00:00:00.000Z"
    assert second["updated_date"] == "2020-01-01T00:00:00.000Z"
    with pytest.raises(ValueError):
        fake.create_record("sites", {"name": "c", "updated_date": "yesterday"})
    with pytest.raises(KeyError):
        fake.records("assets")
    # Not started: notifications are stored, not delivered.
    assert len(fake.notifications()) == 2 and len(fake.lost) == 2
    assert fake.notify("SITE.CREATE", {}, created=clock.now - timedelta(days=1))[
        "created_date"
    ] == (format_timestamp(clock.now - timedelta(days=1)))
