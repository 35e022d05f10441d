"""Tests of the fake Mobility Work server: it must behave as Mobility Work's API document says.

Where the document is silent the tests pin the fake's declared guesses
(`FakeMobilityWorkBehaviour`), read from the behaviour so that a changed guess is one edit.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import msgspec
import pytest
import pytest_asyncio
from aiohttp import web
from multidict import CIMultiDictProxy

from adapters.mobilitywork.fake import (
    DEFAULT_NETWORK_ID,
    SEED_USERS,
    FakeMobilityWork,
    FakeMobilityWorkBehaviour,
    format_timestamp,
    sign,
    signature_header,
)
from adapters.mobilitywork.fake_main import build_fake, parse_args

API_KEY = "913a8f7cef6ff084f1635511b9c7d07c3bab2816"
SECRET = "whsec-test-key"
AUTH = {"Api-Key": API_KEY}
NOW = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
SIGNATURE_RE = re.compile(r"^t=(\d+),nonce=([0-9a-f]{40}),signature=([0-9a-f]{64})$")
FAST_RETRIES = FakeMobilityWorkBehaviour(webhook_retry_initial_s=0.02, webhook_retry_max_s=0.05)


def mail(local: str, domain: str = "factory.example") -> str:
    """An e-mail address (built, so that no tool rewrites a literal address in this file)."""
    return f"{local}{chr(64)}{domain}"


def minified(data: Any) -> bytes:
    """The exact bytes of minified JSON with keys in the given order."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


class FakeClock:
    """A settable clock for `emittedAt`, `_sentAt` and the signature timestamp."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def valid_task(**overrides: Any) -> dict[str, Any]:
    """The document's curl example with a seeded equipment and seeded assignees."""
    body: dict[str, Any] = {
        "equipment": 1001,
        "description": "My task",
        "startDateTime": "2022-01-11T09:00:00+00:00",
        "endDateTime": "2022-01-11T10:00:00+00:00",
        "allDay": False,
        "assignees": [3, SEED_USERS[1].email],
    }
    body.update(overrides)
    return body


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeMobilityWork]:
    async with FakeMobilityWork(
        api_key=API_KEY, webhook_secret=SECRET, clock=clock, behaviour=FAST_RETRIES
    ) as server:
        yield server


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Receiver:
    """A webhook endpoint answering statuses from a script (then 200), recording each POST."""

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


async def post_task(
    http: aiohttp.ClientSession,
    fake: FakeMobilityWork,
    body: Any,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, CIMultiDictProxy[str]]:
    async with http.post(
        f"{fake.api_url}/tasks", json=body, headers=AUTH if headers is None else headers
    ) as response:
        return response.status, await response.read(), response.headers


def parse_signature(value: str) -> tuple[int, str, str]:
    match = SIGNATURE_RE.match(value)
    assert match is not None, value
    return int(match.group(1)), match.group(2), match.group(3)


def independent_signature(secret: str, t: int, nonce: str, body: bytes) -> str:
    """The document's PHP recipe, redone here: hash_hmac('sha256', "t.nonce.payload", key)."""
    content = str(t).encode() + b"." + nonce.encode() + b"." + body
    return hmac.new(secret.encode(), content, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- signing


def test_sign_matches_an_openssl_test_vector_and_the_documented_recipe() -> None:
    t, nonce = 1660338149, "752c14ea195c460bac3c3b7896975ee9fd15eeb7"
    body = b'{"_event":"SparePartWasConsumed","quantity":3}'
    # printf '1660338149.752c….{…}' | openssl dgst -sha256 -hmac 'whsec-test-key'
    expected = "bdb9a6cc0d7e025af7874c099178343303bbf2f48f299f06fa37ea0ddba0c23f"
    assert sign(SECRET, t, nonce, body) == expected
    assert independent_signature(SECRET, t, nonce, body) == expected
    assert sign("other-key", t, nonce, body) != expected
    assert signature_header(SECRET, t, nonce, body) == (
        f"t=1660338149,nonce=752c14ea195c460bac3c3b7896975ee9fd15eeb7,signature={expected}"
    )


def test_timestamps_are_utc_seconds_with_offset() -> None:
    moment = datetime(2023, 2, 9, 0, 0, 0, 987654, tzinfo=UTC) + timedelta(hours=-1)
    assert format_timestamp(moment) == "2023-02-08T23:00:00+00:00"


# --------------------------------------------------------------------------- auth


async def test_missing_or_wrong_api_key_gets_the_documented_401(
    fake: FakeMobilityWork, http: aiohttp.ClientSession
) -> None:
    documented = {
        "http_status_code": 401,
        "code": "401001",
        "message": "Authentication error",
        "extended_message": {
            "global_errors": [{"messageKey": "Invalid Api Key.", "parameters": {}}],
            "property_errors": {},
        },
        "more_info_url": None,
    }
    for headers in ({}, {"Api-Key": "wrong"}, {"Authorization": f"Bearer {API_KEY}"}):
        status, body, response_headers = await post_task(http, fake, valid_task(), headers)
        assert status == 401
        assert body == minified(documented)  # exact shape, key order and minified
        assert response_headers["Request-Id"]
    assert fake.tasks == []
    assert fake.calls == []


# --------------------------------------------------------------------------- creating tasks


async def test_created_task_answers_201_without_body_with_a_unique_request_id(
    fake: FakeMobilityWork, http: aiohttp.ClientSession
) -> None:
    headers = {**AUTH, "User-Agent": "curl/1.2.3 Factory Inc."}
    first = await post_task(http, fake, valid_task(), headers)
    second = await post_task(http, fake, valid_task(assignees=[]), AUTH)
    for status, body, response_headers in (first, second):
        assert status == 201
        assert body == b""
        assert "Content-Type" not in response_headers
    request_ids = [first[2]["Request-Id"], second[2]["Request-Id"]]
    assert request_ids[0] != request_ids[1]

    task = fake.tasks[0]
    assert (task.equipment_id, task.description, task.all_day) == (1001, "My task", False)
    assert task.assignee_ids == [3, SEED_USERS[1].id]  # an id and an e-mail, both resolved
    assert task.start_date_time == "2022-01-11T09:00:00+00:00"
    assert [t.request_id for t in fake.tasks] == request_ids
    assert fake.tasks[0].id != fake.tasks[1].id

    call = fake.calls[0]
    assert call.header("user-agent") == "curl/1.2.3 Factory Inc."
    assert call.header("Content-Type") == "application/json"
    assert call.json == valid_task()
    assert call.user_agent_names_network
    assert not fake.calls[1].user_agent_names_network
    assert [(r.path, r.status, r.request_id) for r in fake.requests] == [
        ("/partners/v1/tasks", 201, request_ids[0]),
        ("/partners/v1/tasks", 201, request_ids[1]),
    ]


async def test_document_example_400_lists_every_invalid_property_at_once(
    fake: FakeMobilityWork, http: aiohttp.ClientSession
) -> None:
    unknown = [mail("ghost"), mail("nobody", "elsewhere.example")]
    body = valid_task(description="M", equipment=99999, assignees=unknown)
    status, raw, headers = await post_task(http, fake, body)
    assert status == 400
    assert headers["Request-Id"]
    documented = {
        "http_status_code": 400,
        "code": "400044",
        "message": "The request payload is not valid.",
        "extended_message": {
            "global_errors": [],
            "property_errors": {
                "/description": [
                    {
                        "messageKey": "error.payload.min_length",
                        "parameters": {"min": 3, "length": 1},
                    }
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
                        "parameters": {"type": "email", "value": unknown[0]},
                    }
                ],
                "/assignees/1": [
                    {
                        "messageKey": "error.payload.assignees.unknown",
                        "parameters": {"type": "email", "value": unknown[1]},
                    }
                ],
            },
        },
        "more_info_url": None,
    }
    assert raw == minified(documented)
    assert fake.tasks == []
    assert fake.calls == []


async def test_equipment_by_external_reference_and_unknown_references(
    fake: FakeMobilityWork, http: aiohttp.ClientSession
) -> None:
    by_item_code = {"type": "externalReference", "value": "CONV-002"}
    status, _, _ = await post_task(http, fake, valid_task(equipment=by_item_code))
    assert status == 201

    fake.add_equipment("0b7d1c2e-8f5a-4e0b-9a3c-2d6e4f1a8b90", "LATHE-9", "Lathe")
    native_uuid = {"type": "native", "value": "0b7d1c2e-8f5a-4e0b-9a3c-2d6e4f1a8b90"}
    status, _, _ = await post_task(http, fake, valid_task(equipment=native_uuid))
    assert status == 201

    # Declared guess: a bare string is an item code.
    status, _, _ = await post_task(http, fake, valid_task(equipment="PRESS-003"))
    assert status == 201
    assert [t.equipment_id for t in fake.tasks] == [
        1002,
        "0b7d1c2e-8f5a-4e0b-9a3c-2d6e4f1a8b90",
        1003,
    ]

    for equipment in (
        {"type": "externalReference", "value": "conv-002"},  # item codes are case-sensitive
        {"type": "externalReference", "value": "NOPE"},
    ):
        status, raw, _ = await post_task(
            http, fake, valid_task(equipment=equipment, assignees=[99])
        )
        assert status == 400
        errors = msgspec.json.decode(raw)["extended_message"]["property_errors"]
        assert errors == {
            "/equipment": [
                {
                    "messageKey": "error.payload.equipment.unknown",
                    "parameters": {"type": "externalReference", "value": equipment["value"]},
                }
            ],
            "/assignees/0": [
                {
                    "messageKey": "error.payload.assignees.unknown",
                    "parameters": {"type": "id", "value": 99},
                }
            ],
        }
    assert len(fake.tasks) == 3  # the refused ones stored nothing


async def test_missing_and_wrongly_typed_fields_use_the_declared_guesses(
    fake: FakeMobilityWork, http: aiohttp.ClientSession
) -> None:
    keys = fake.behaviour.message_keys
    body = {"description": 5, "startDateTime": "2022-01-11 09:00", "allDay": "no", "assignees": 3}
    status, raw, _ = await post_task(http, fake, body)
    assert status == 400
    errors = msgspec.json.decode(raw)["extended_message"]["property_errors"]
    assert errors == {
        "/description": [
            {"messageKey": keys["type"], "parameters": {"expected": "string", "actual": "integer"}}
        ],
        "/equipment": [{"messageKey": keys["required"], "parameters": {}}],
        "/startDateTime": [
            {
                "messageKey": keys["date_time"],
                "parameters": {"format": "Y-m-d\\TH:i:sP", "value": "2022-01-11 09:00"},
            }
        ],
        "/endDateTime": [{"messageKey": keys["required"], "parameters": {}}],
        "/allDay": [
            {"messageKey": keys["type"], "parameters": {"expected": "boolean", "actual": "string"}}
        ],
        "/assignees": [
            {"messageKey": keys["type"], "parameters": {"expected": "array", "actual": "integer"}}
        ],
    }

    later_start = valid_task(startDateTime="2022-01-11T11:00:00+00:00")
    status, raw, _ = await post_task(http, fake, later_start)
    assert status == 400
    assert msgspec.json.decode(raw)["extended_message"]["property_errors"] == {
        "/endDateTime": [
            {
                "messageKey": keys["date_range"],
                "parameters": {
                    "startDateTime": "2022-01-11T11:00:00+00:00",
                    "endDateTime": "2022-01-11T10:00:00+00:00",
                },
            }
        ]
    }

    async with http.post(f"{fake.api_url}/tasks", data=b"[1, 2", headers=AUTH) as response:
        assert response.status == 400
        answer = await response.json()
    assert answer["code"] == "400044"
    assert answer["extended_message"]["global_errors"] == [
        {"messageKey": keys["invalid_json"], "parameters": {}}
    ]
    assert fake.tasks == []


async def test_202_when_switched_to_asynchronous_processing(
    http: aiohttp.ClientSession,
) -> None:
    behaviour = FakeMobilityWorkBehaviour(task_create_status=202)
    async with FakeMobilityWork(api_key=API_KEY, webhook_secret=None, behaviour=behaviour) as fake:
        status, body, headers = await post_task(http, fake, valid_task())
        assert (status, body) == (202, b"")
        assert headers["Request-Id"]
        assert [t.status for t in fake.tasks] == [202]
        assert [c.status for c in fake.calls] == [202]
    with pytest.raises(ValueError):
        FakeMobilityWorkBehaviour(task_create_status=200)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- fault injection


async def test_fail_next_answers_503_in_the_document_error_shape_and_stores_nothing(
    fake: FakeMobilityWork, http: aiohttp.ClientSession
) -> None:
    fake.fail_next(2, 503)
    answers = []
    for headers in (AUTH, {}, AUTH):  # injected failures come before authentication
        status, raw, response_headers = await post_task(http, fake, valid_task(), headers)
        assert response_headers["Request-Id"]
        answers.append((status, raw))
    assert [status for status, _ in answers] == [503, 503, 201]
    assert msgspec.json.decode(answers[0][1]) == {
        "http_status_code": 503,
        "code": "503" + fake.behaviour.error_code_suffix,
        "message": "Service Unavailable",
        "extended_message": {"global_errors": [], "property_errors": {}},
        "more_info_url": None,
    }
    assert len(fake.tasks) == 1
    assert len(fake.calls) == 1
    assert [r.status for r in fake.requests] == [503, 503, 201]


async def test_delay_next_keeps_the_write_when_the_client_hangs_up(
    fake: FakeMobilityWork, http: aiohttp.ClientSession
) -> None:
    fake.delay_next(1, 0.5)
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        async with http.post(
            f"{fake.api_url}/tasks",
            json=valid_task(),
            headers=AUTH,
            timeout=aiohttp.ClientTimeout(total=0.1),
        ):
            pass
    assert time.monotonic() - started < 0.4
    # The client gave up, yet the server had the request and processed it.
    assert len(fake.tasks) == 1
    assert len(fake.calls) == 1
    # Only the next request was delayed.
    started = time.monotonic()
    status, _, _ = await post_task(http, fake, valid_task())
    assert status == 201
    assert time.monotonic() - started < 0.3
    assert len(fake.tasks) == 2


# --------------------------------------------------------------------------- webhooks


async def test_spare_part_consumed_webhook_is_the_documented_envelope_and_signed(
    fake: FakeMobilityWork, receiver: Receiver, clock: FakeClock
) -> None:
    fake.subscribe("SparePartWasConsumed", receiver.url)
    fake.subscribe("TaskWasCreated", receiver.url)  # another event: nothing sent
    emitted = fake.spare_part_consumed(
        quantity=3,
        previous_stock=116,
        task={"id": 42, "tags": ["urgent"]},
        spare_part={"id": 17},
        location="b2f1a0c4-3d5e-4f60-8a71-9c2b3d4e5f60",
        initiator=3,
        emitted_at=datetime(2023, 2, 8, 23, 0, tzinfo=UTC),
    )
    await fake.wait_deliveries_idle(5)
    assert len(receiver.received) == 1
    headers, body = receiver.received[0]
    assert body == emitted.body
    envelope = msgspec.json.decode(body)
    assert list(envelope) == [
        "_type",
        "_event",
        "_sentAt",
        "emittedAt",
        "_metadata",
        "task",
        "sparePart",
        "location",
        "initiator",
        "consumed",
        "networkId",
    ]
    assert envelope["_type"] == "SparePartWasConsumedWebhook"
    assert envelope["_event"] == "SparePartWasConsumed"
    assert envelope["_sentAt"] == "2026-11-23T10:00:00+00:00"
    assert envelope["emittedAt"] == "2023-02-08T23:00:00+00:00"
    assert envelope["_metadata"] == ""
    assert envelope["task"] == {"id": 42, "tags": ["urgent"], "requiredSpareParts": []}
    assert envelope["location"] == {"id": "b2f1a0c4-3d5e-4f60-8a71-9c2b3d4e5f60"}
    assert envelope["initiator"] == {"id": 3, "email": SEED_USERS[0].email}
    assert envelope["consumed"] == {
        "_type": "SparePartConsumption",
        "quantity": 3,
        "previousStock": 116,
    }
    assert envelope["networkId"] == DEFAULT_NETWORK_ID

    t, nonce, signature = parse_signature(headers["X-MW-Signature"])
    assert t == int(clock.now.timestamp())
    assert signature == independent_signature(SECRET, t, nonce, body)
    assert "Api-Key" not in headers
    assert headers["Content-Type"] == "application/json"
    assert [(d.attempt, d.status, d.ok) for d in fake.deliveries] == [(1, 200, True)]


async def test_no_signature_header_without_a_secret_key(
    http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    async with FakeMobilityWork(
        api_key=API_KEY, webhook_secret=None, behaviour=FAST_RETRIES
    ) as fake:
        fake.subscribe("*", receiver.url)
        fake.subscribe("*", receiver.url, secret=SECRET)  # this one was given a key
        fake.task_event("TaskWasUpdated", 7)
        await fake.wait_deliveries_idle(5)
    signed = ["X-MW-Signature" in headers for headers, _ in receiver.received]
    assert sorted(signed) == [False, True]
    async with FakeMobilityWork(
        api_key=API_KEY, webhook_secret=SECRET, behaviour=FAST_RETRIES
    ) as fake:
        fake.subscribe("*", receiver.url, secret=None)
        fake.task_event("TaskWasUpdated", 7)
        await fake.wait_deliveries_idle(5)
    assert "X-MW-Signature" not in receiver.received[-1][0]


async def test_anything_but_200_is_retried_with_identical_headers_and_body(
    fake: FakeMobilityWork, receiver: Receiver
) -> None:
    fake.subscribe("*", receiver.url)
    receiver.statuses = [500, 201, 202]
    fake.spare_part_consumed(quantity=1, previous_stock=10)
    await fake.wait_deliveries_idle(5)
    assert [(d.attempt, d.status, d.ok) for d in fake.deliveries] == [
        (1, 500, False),
        (2, 201, False),
        (3, 202, False),
        (4, 200, True),
    ]
    assert len(receiver.received) == 4
    first_headers, first_body = receiver.received[0]
    for headers, body in receiver.received[1:]:
        assert body == first_body
        assert headers["X-MW-Signature"] == first_headers["X-MW-Signature"]


async def test_retries_resign_with_a_fresh_nonce_when_switched(
    clock: FakeClock, receiver: Receiver
) -> None:
    behaviour = FakeMobilityWorkBehaviour(
        retry_resigns=True, webhook_retry_initial_s=0.02, webhook_retry_max_s=0.05
    )
    async with FakeMobilityWork(
        api_key=API_KEY, webhook_secret=SECRET, behaviour=behaviour, clock=clock
    ) as fake:
        fake.subscribe("*", receiver.url)
        receiver.statuses = [503, 500]
        fake.spare_part_consumed(quantity=1, previous_stock=10)
        await fake.wait_deliveries_idle(5)
    assert len(receiver.received) == 3
    nonces = set()
    for headers, body in receiver.received:
        assert body == receiver.received[0][1]  # _sentAt is not refreshed by default
        t, nonce, signature = parse_signature(headers["X-MW-Signature"])
        assert signature == independent_signature(SECRET, t, nonce, body)
        nonces.add(nonce)
    assert len(nonces) == 3


async def test_connection_errors_are_retried_up_to_the_declared_attempts() -> None:
    behaviour = FakeMobilityWorkBehaviour(webhook_retry_initial_s=0.01, webhook_max_attempts=3)
    async with FakeMobilityWork(
        api_key=API_KEY, webhook_secret=SECRET, behaviour=behaviour
    ) as fake:
        fake.subscribe("*", "http://127.0.0.1:1/hook")  # port 1 refuses connections
        fake.task_event("TaskWasCreated", {"id": 1})
        await fake.wait_deliveries_idle(5)
        assert [d.attempt for d in fake.deliveries] == [1, 2, 3]
        assert all(d.status is None and d.error for d in fake.deliveries)


async def test_redeliver_and_resend_last_replay_the_same_nonce(
    fake: FakeMobilityWork, receiver: Receiver
) -> None:
    fake.subscribe("*", receiver.url)
    fake.spare_part_consumed(quantity=2, previous_stock=5)
    fake.spare_part_consumption_canceled(quantity=2, previous_stock=3, cost_center={"id": 9})
    await fake.wait_deliveries_idle(5)
    first_headers, first_body = receiver.received[0]
    fake.redeliver(0)
    await fake.wait_deliveries_idle(5)
    assert receiver.received[-1][1] == first_body
    assert receiver.received[-1][0]["X-MW-Signature"] == first_headers["X-MW-Signature"]
    assert fake.deliveries[-1].redelivery

    fake.resend_last()
    await fake.wait_deliveries_idle(5)
    headers, body = receiver.received[-1]
    canceled = msgspec.json.decode(body)
    assert canceled["_event"] == fake.behaviour.canceled_consumption_event
    assert canceled["_type"] == fake.behaviour.canceled_consumption_event + "Webhook"
    assert canceled[fake.behaviour.canceled_consumption_field]["quantity"] == 2
    assert canceled[fake.behaviour.cost_center_field] == {"id": 9}
    assert headers["X-MW-Signature"] == receiver.received[1][0]["X-MW-Signature"]
    assert len(receiver.received) == 4


async def test_api_created_task_fires_the_declared_task_webhook(
    fake: FakeMobilityWork, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    fake.subscribe("TaskWasCreated", receiver.url)
    status, _, _ = await post_task(http, fake, valid_task())
    assert status == 201
    await fake.wait_deliveries_idle(5)
    envelope = msgspec.json.decode(receiver.received[0][1])
    assert envelope["_event"] == fake.behaviour.api_task_created_event
    task = envelope["task"]
    assert task["id"] == fake.tasks[0].id
    assert task["equipment"] == {"id": 1001, "itemCode": "PUMP-001"}
    assert [a["id"] for a in task["assignees"]] == [3, SEED_USERS[1].id]
    with pytest.raises(ValueError):
        fake.task_event("TaskWasCreatd", 1)
    with pytest.raises(ValueError):
        fake.emit("SparePartWasConsumed", {"networkId": "x"})


# --------------------------------------------------------------------------- control API


async def test_control_api_subscribes_emits_and_lists_calls(
    fake: FakeMobilityWork, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    control = fake.control_url
    async with http.post(
        f"{control}/subscriptions", json={"event": "SparePartWasConsumed", "url": receiver.url}
    ) as response:
        assert response.status == 200
    async with http.post(f"{control}/equipments", json={"id": 77, "itemCode": "X-77"}) as response:
        assert response.status == 200
    fields = {"task": {"id": 5}, "consumed": {"_type": "SparePartConsumption", "quantity": 1}}
    async with http.post(f"{control}/webhooks/SparePartWasConsumed", json=fields) as response:
        assert response.status == 200
        assert (await response.json())["subscribers"] == 1
    async with http.post(f"{control}/webhooks/X", json={"_type": "nope"}) as response:
        assert response.status == 400
    await fake.wait_deliveries_idle(5)
    envelope = msgspec.json.decode(receiver.received[0][1])
    assert envelope["task"] == {"id": 5}
    assert envelope["_type"] == "SparePartWasConsumedWebhook"

    status, _, _ = await post_task(http, fake, valid_task(equipment=77))
    assert status == 201
    async with http.get(f"{control}/calls") as response:
        calls = await response.json()
    assert [(c["method"], c["path"], c["status"]) for c in calls] == [
        ("POST", "/partners/v1/tasks", 201)
    ]
    assert all(r.path.startswith("/partners/") for r in fake.requests)  # control not logged


async def test_the_kits_control_routes_inject_faults_and_show_the_request_log(
    fake: FakeMobilityWork, http: aiohttp.ClientSession
) -> None:
    control = fake.control_url
    async with http.post(f"{control}/fail_next", json={"n": 1, "status": 502}) as response:
        assert response.status == 204
    async with http.post(f"{control}/delay_next", json={"n": 1, "seconds": 0.2}) as response:
        assert response.status == 204
    async with http.post(f"{control}/fail_next", json={"status": 502}) as response:
        # The control API's own errors come in the document's error shape too.
        assert response.status == 400
        assert (await response.json())["http_status_code"] == 400
    started = time.monotonic()
    status, raw, _ = await post_task(http, fake, valid_task())
    assert status == 502 and msgspec.json.decode(raw)["code"] == "502000"
    assert time.monotonic() - started >= 0.2
    status, _, _ = await post_task(http, fake, valid_task())
    assert status == 201
    async with http.get(f"{control}/requests") as response:
        logged = await response.json()
    assert [(r["path"], r["status"]) for r in logged] == [
        ("/partners/v1/tasks", 502),
        ("/partners/v1/tasks", 201),
    ]
    assert all(r["request_id"] for r in logged)


def test_fake_main_builds_the_fake_from_arguments() -> None:
    args = parse_args(
        [
            "--api-key",
            "K",
            "--webhook-secret",
            "S",
            "--subscribe",
            "*:http://127.0.0.1:8080/webhooks/mobilitywork",
        ]
    )
    assert args.port == 8082
    fake = build_fake(args)
    assert (fake.api_key, fake.webhook_secret) == ("K", "S")
    assert [(s.event, s.url, s.secret) for s in fake.subscriptions] == [
        ("*", "http://127.0.0.1:8080/webhooks/mobilitywork", "S")
    ]
