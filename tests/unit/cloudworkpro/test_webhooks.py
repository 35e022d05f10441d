"""CLOUDWORK|PRO webhooks: Basic authentication, notifications as events, one id per change."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from adapters.cloudworkpro.ids import change_event_id
from adapters.cloudworkpro.resources import listing
from adapters.cloudworkpro.webhooks import (
    PASSWORD_CREDENTIAL,
    USER_CREDENTIAL,
    check_instance,
    event_type,
    past_tense,
    snake,
    startup_warnings,
    to_events,
    verify,
)
from adapters.config import InstanceConfig
from adapters.core.change_source import PolledRecord
from adapters.core.pagination import PageRequest
from adapters.core.secret import Secret
from adapters.core.vendor import WebhookRejected, WebhookRequest, WebhookUnparseable
from adapters.core.vendor_http import VendorResponse
from adapters.core.webhook_recovery import as_delivered
from tests.unit.core.poll_harness import Runner

RECEIVED = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
USER = "cwp-hooks"
PASSWORD = "s3cr3t:with-colon"
WO = "633cf3e1bb4e2453a0497b65"


def inst(user: str | None = USER, password: str | None = PASSWORD, **more: Any) -> InstanceConfig:
    credentials = {}
    if user is not None:
        credentials[USER_CREDENTIAL] = Secret(user)
    if password is not None:
        credentials[PASSWORD_CREDENTIAL] = Secret(password)
    return InstanceConfig(
        vendor="cloudworkpro", name="acme", base_url="http://c", credentials=credentials, **more
    )


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def req(body: Any = b"{}", **headers: str) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else msgspec.json.encode(body)
    return WebhookRequest({k.lower(): v for k, v in headers.items()}, raw, RECEIVED)


# --- Basic authentication ----------------------------------------------------------------------


def test_the_configured_pair_is_accepted() -> None:
    assert verify(req(authorization=basic(USER, PASSWORD)), inst()) is None
    # The scheme's case and surrounding space do not matter.
    token = basic(USER, PASSWORD).split()[1]
    assert verify(req(authorization=f"  basic {token} "), inst()) is None


def test_a_utf8_pair_is_accepted() -> None:
    assert verify(req(authorization=basic("usér", "pässwörd")), inst("usér", "pässwörd")) is None


@pytest.mark.parametrize(
    "header",
    [
        basic("someone", PASSWORD),  # wrong user
        basic(USER, "wrong"),  # wrong password
        basic(USER, PASSWORD + "x"),
        basic(USER, PASSWORD[:-1]),
        basic(USER.upper(), PASSWORD),
        basic("", ""),
    ],
)
def test_wrong_credentials_are_refused_without_saying_which_or_what(header: str) -> None:
    with pytest.raises(WebhookRejected) as caught:
        verify(req(authorization=header), inst())
    message = str(caught.value)
    assert message == "the Basic credentials do not match the instance's"
    assert PASSWORD not in message and USER not in message


def test_a_missing_header_is_refused() -> None:
    for request in (req(), req(authorization=""), req(authorization="   ")):
        with pytest.raises(WebhookRejected, match="Authorization missing"):
            verify(request, inst())


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("Bearer abc", "not Basic credentials"),
        ("Basic", "not Basic credentials"),
        ("Basic ", "not Basic credentials"),
        (base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(), "not Basic credentials"),
        ("Basic not-base64!!", "not base64"),
        ("Basic " + base64.b64encode(b"no-colon").decode(), "lack `user:password`"),
    ],
)
def test_a_malformed_header_is_refused(header: str, problem: str) -> None:
    with pytest.raises(WebhookRejected, match=problem) as caught:
        verify(req(authorization=header), inst())
    assert PASSWORD not in str(caught.value)


def test_without_configured_credentials_every_request_is_taken() -> None:
    # The source addresses are the core's to check (WebhookSpec.allowed_sources).
    assert verify(req(), inst(None, None)) is None
    assert verify(req(authorization=basic("any", "thing")), inst(None, None)) is None
    assert verify(req(), inst("", "")) is None


def test_a_half_configured_pair_refuses_everything() -> None:
    for half in (inst(USER, None), inst(None, PASSWORD)):
        with pytest.raises(WebhookRejected, match="only one of") as caught:
            verify(req(authorization=basic(USER, PASSWORD)), half)
        assert PASSWORD not in str(caught.value)


def test_check_instance_names_the_missing_credential() -> None:
    assert check_instance(inst()) is None
    assert check_instance(inst(None, None)) is None
    key, problem = check_instance(inst(USER, None)) or ("", "")
    assert key == f"credentials.{PASSWORD_CREDENTIAL}" and "needs both" in problem
    key, _ = check_instance(inst(None, PASSWORD)) or ("", "")
    assert key == f"credentials.{USER_CREDENTIAL}"


def test_startup_warnings() -> None:
    assert startup_warnings(inst()) == []
    (warning,) = startup_warnings(inst(None, None))
    assert "without Basic authentication" in warning
    warnings = startup_warnings(inst(None, None, webhook_secret=Secret("x")))
    assert len(warnings) == 2 and "webhook_secret is not used" in warnings[1]


# --- mapping -----------------------------------------------------------------------------------

RECORD: dict[str, Any] = {
    "_id": WO,
    "name": "Replace the router",
    "work_type_ids": ["636953eebf54aa00087e75ee"],
    "status": "draft",
    "created_date": "2026-11-30T10:00:00.000Z",
    "updated_date": "2026-11-30T10:00:00.000Z",
    "something_new": {"kept": True},
}


def notification(event: str, record: Any = RECORD, **more: Any) -> dict[str, Any]:
    return {
        "_id": "6566f0c2a1b2c3d4e5f60718",
        "event": event,
        "created_date": "2026-11-30T10:00:01.250Z",
        "data": record,
        **more,
    }


def one(body: Any, instance: str = "acme") -> Any:
    (draft,) = to_events(req(body), instance)
    return draft


def test_a_work_order_create() -> None:
    draft = one(notification("WORKORDER.CREATE"))
    assert draft.type == "workbridge.cloudworkpro.work_order.created"
    assert draft.subject == f"work_order/{WO}"
    assert draft.time == datetime(2026, 11, 30, 10, 0, 1, 250000, tzinfo=UTC)
    assert msgspec.json.decode(draft.data) == RECORD  # as delivered, unknown fields kept
    assert draft.id == change_event_id(
        "acme", "work_order", WO, datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    )


def test_a_site_create() -> None:
    site = {"_id": "s1", "name": "HQ", "created_date": "2026-11-30T09:00:00Z"}
    draft = one(notification("SITE.CREATE", site))
    assert draft.type == "workbridge.cloudworkpro.site.created"
    assert draft.subject == "site/s1"
    assert draft.id == change_event_id("acme", "site", "s1", datetime(2026, 11, 30, 9, tzinfo=UTC))


@pytest.mark.parametrize(
    ("event", "type_"),
    [
        ("WORKORDER.UPDATE", "work_order.updated"),
        ("WORKORDER.DELETE", "work_order.deleted"),
        ("SITE.UPDATE", "site.updated"),
        ("ASSET.CREATE", "asset.created"),
        ("PURCHASE_ORDER.CLOSE", "purchase_order.closed"),
        ("PurchaseOrder.Assign", "purchase_order.assigned"),
        ("WORKORDER.STATUS_CHANGE", "work_order.status_changed"),
        ("WORKORDER.COPY", "work_order.copied"),
        ("WORKORDER.COMPLETED", "work_order.completed"),
        ("WORKORDER.SEND", "work_order.sent"),
        ("INVOICE.PAY", "invoice.paid"),
        ("workorder.create", "work_order.created"),
        ("PING", "event.pinged"),
    ],
)
def test_other_things_and_verbs(event: str, type_: str) -> None:
    assert one(notification(event)).type == f"workbridge.cloudworkpro.{type_}"


def test_names() -> None:
    assert snake("WORK ORDER") == "work_order"
    assert snake("work-order") == "work_order"
    assert past_tense("PLAY") == "played"
    assert past_tense("APPROVE") == "approved"
    assert event_type("WORKORDER.") == ("work_order", "unknown")


def test_one_id_for_a_push_its_redelivery_its_recovery_and_the_poll() -> None:
    body = notification("WORKORDER.UPDATE", {**RECORD, "updated_date": "2026-11-30T11:00:00Z"})
    pushed = one(body)
    # A redelivery: the same notification, serialised otherwise (key order, spacing).
    reordered = dict(reversed(list(body.items())))
    again = to_events(req(msgspec.json.encode(reordered).replace(b",", b", ")), "acme")
    assert again == [pushed]
    # The missed-webhook recovery hands the stored notification to the same mapper.
    seen = PolledRecord(
        instance="acme",
        resource="webhook_notifications",
        scope=None,
        id=str(body["_id"]),
        changed=RECEIVED,
        record=body,
    )
    recovered = as_delivered(to_events)(seen)
    assert recovered == pushed
    # The poll of the same version (resources.py) makes the id of the record and its time.
    polled = change_event_id("acme", "work_order", WO, datetime(2026, 11, 30, 11, tzinfo=UTC))
    assert pushed.id == polled
    # Another time zone of the same instant is the same version.
    shifted = notification(
        "WORKORDER.UPDATE", {**RECORD, "updated_date": "2026-11-30T12:00:00+01:00"}
    )
    assert one(shifted).id == polled


def test_another_version_or_instance_is_another_id() -> None:
    first = one(notification("WORKORDER.UPDATE"))
    later = one(notification("WORKORDER.UPDATE", {**RECORD, "updated_date": "2026-11-30T12:00Z"}))
    assert later.id != first.id
    assert one(notification("WORKORDER.UPDATE"), "other").id != first.id


def test_a_delete_is_not_the_update_of_the_same_version() -> None:
    updated = one(notification("WORKORDER.UPDATE"))
    deleted = one(notification("WORKORDER.DELETE"))
    assert deleted.id != updated.id
    assert one(notification("WORKORDER.DELETE", {**RECORD}, _id="other")).id == deleted.id


def test_without_a_version_the_notifications_id_then_its_body() -> None:
    bare = {"_id": WO, "name": "x"}
    by_notification = one(notification("WORKORDER.UPDATE", bare))
    assert by_notification.subject == f"work_order/{WO}"
    assert one(notification("WORKORDER.UPDATE", {"_id": WO, "name": "y"})).id == (
        by_notification.id
    )
    assert one(notification("WORKORDER.UPDATE", bare, _id="n2")).id != by_notification.id
    anonymous = {k: v for k, v in notification("WORKORDER.UPDATE", bare).items() if k != "_id"}
    by_body = one(anonymous)
    assert by_body.id == one(dict(reversed(list(anonymous.items())))).id
    assert by_body.id != one({**anonymous, "data": {"_id": WO, "name": "z"}}).id
    # An unreadable change time is no version either.
    broken = one(notification("WORKORDER.UPDATE", {**bare, "updated_date": "yesterday"}))
    assert broken.id == by_notification.id


def test_a_record_without_an_id_is_still_published() -> None:
    draft = one(notification("SITE.CREATE", {"name": "HQ"}))
    assert draft.subject == "site/6566f0c2a1b2c3d4e5f60718"
    alt = one(notification("SITE.CREATE", {"id": 42, "created_date": "2026-11-30T09:00:00Z"}))
    assert alt.subject == "site/42"


def test_the_time_falls_back_to_the_records() -> None:
    body = notification("WORKORDER.UPDATE")
    del body["created_date"]
    assert one(body).time == datetime(2026, 11, 30, 10, tzinfo=UTC)
    assert one({**body, "created_date": "not a time"}).time == datetime(
        2026, 11, 30, 10, tzinfo=UTC
    )
    assert one(notification("WORKORDER.UPDATE", {"_id": WO}, created_date=None)).time is None


def test_the_mapping_is_a_pure_function_of_the_body() -> None:
    body = msgspec.json.encode(notification("WORKORDER.CREATE"))
    late = WebhookRequest({"x-anything": "1"}, body, datetime(2030, 1, 1, tzinfo=UTC), "1.2.3.4")
    assert to_events(late, "acme") == to_events(req(body), "acme")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "not JSON"),
        (b"event=WORKORDER.CREATE", "not JSON"),
        (b'{"event": "WORKORDER.CREATE"', "not JSON"),
        (b"[]", "not a JSON object"),
        (b'"WORKORDER.CREATE"', "not a JSON object"),
        ({"data": RECORD}, "no event name"),
        ({"event": "", "data": RECORD}, "no event name"),
        ({"event": 5, "data": RECORD}, "no event name"),
        ({"event": "WORKORDER.CREATE"}, "no record"),
        ({"event": "WORKORDER.CREATE", "data": [RECORD]}, "no record"),
        ({"event": "WORKORDER.CREATE", "data": WO}, "no record"),
    ],
)
def test_unparseable_bodies(body: Any, problem: str) -> None:
    with pytest.raises(WebhookUnparseable, match=problem):
        to_events(req(body), "acme")


async def test_the_poll_of_the_same_version_is_the_same_event_id() -> None:
    # The listing of resources.py, fed one page holding the record the webhook carried.
    async def page(_: PageRequest) -> VendorResponse:
        body = {"code": 200, "data": [RECORD], "pagination": {"hasNext": False}, "success": True}
        return VendorResponse(200, {}, msgspec.json.encode(body), {})

    polled = await Runner(listing("work_orders"), page, resource="work_orders").cycle()
    (event,) = polled.events
    pushed = one(notification("WORKORDER.CREATE"))
    assert (event.id, event.type, event.subject) == (pushed.id, pushed.type, pushed.subject)
    assert msgspec.json.decode(event.data) == msgspec.json.decode(pushed.data)
