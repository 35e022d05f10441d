"""Mobility Work webhooks: X-MW-Signature verification and `_event` → CloudEvent drafts."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from adapters.config import InstanceConfig, parse_config
from adapters.core.cloudevents_codec import stable_id
from adapters.core.vendor import WebhookRejected, WebhookRequest, WebhookUnparseable
from adapters.mobilitywork import webhooks
from adapters.mobilitywork.webhooks import (
    Envelope,
    event_digest,
    event_type,
    parse_header,
    replay_window_s,
    signature,
    to_events,
    verify,
)

SECRET = "mw-webhook-secret-0123456789abcdef"
NONCE = "752c14ea195c460bac3c3b7896975ee9fd15eeb7"
NETWORK = "6f1d0c1e-4b7a-4f4e-9d1a-0a2b3c4d5e6f"


def payload(event: str = "SparePartWasConsumed", **extra: Any) -> dict[str, Any]:
    """The document's SparePartWasConsumed example, with values filled in."""
    return {
        "_type": f"{event}Webhook",
        "_event": event,
        "_sentAt": "2022-06-02T14:31:06+00:00",
        "emittedAt": "2023-02-08T23:00:00+00:00",
        "_metadata": "",
        "task": {"id": 987, "description": "Replace motor part"},
        "sparePart": {"id": 456, "name": "Bearing 6204"},
        "location": {"id": 12},
        "initiator": {"id": 3},
        "consumed": {"_type": "SparePartConsumption", "quantity": 3, "previousStock": 116},
        "networkId": NETWORK,
        **extra,
    }


def body_of(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


BODY = body_of(payload())


def cfg(**over: Any) -> InstanceConfig:
    raw = {
        "vendor": "mobilitywork",
        "base_url": "https://api.mobility-work.com",
        "api_key": "913a8f7cef6ff084f1635511b9c7d07c3bab2816",
        **over,
    }
    config = parse_config(
        {"kafka": {"bootstrap_servers": "127.0.0.1:1"}, "instances": [raw]}, env={}
    )
    return config.instances[0]


SIGNED = cfg(webhook_secret=SECRET)
UNSIGNED = cfg()


def hmac_hex(secret: str, t: str, nonce: str, body: bytes) -> str:
    """Independent of the code under test: the document's hash_hmac over "t.nonce.payload"."""
    content = f"{t}.{nonce}.{body.decode('utf-8')}"
    return hmac.new(secret.encode(), content.encode("utf-8"), hashlib.sha256).hexdigest()


def sig_header(t: str, nonce: str, sig: str) -> str:
    return f"t={t},nonce={nonce},signature={sig}"


def now_t(offset: float = 0) -> str:
    return str(int(time.time() + offset))


def req(body: bytes = BODY, headers: dict[str, str] | None = None) -> WebhookRequest:
    return WebhookRequest(headers or {}, body, datetime.now(UTC))


def signed(
    body: bytes = BODY,
    *,
    t: str | None = None,
    nonce: str = NONCE,
    secret: str = SECRET,
) -> WebhookRequest:
    stamp = now_t() if t is None else t
    value = sig_header(stamp, nonce, hmac_hex(secret, stamp, nonce, body))
    return req(body, {"x-mw-signature": value})


# --- signature -----------------------------------------------------------------------------


def test_signature_matches_an_independent_hmac() -> None:
    assert signature(SECRET, "1660338149", NONCE, BODY) == hmac_hex(
        SECRET, "1660338149", NONCE, BODY
    )


def test_signature_of_a_non_ascii_body_is_over_its_utf8_bytes() -> None:
    body = body_of(payload(note="Pièce détachée ✓"))
    assert signature(SECRET, "1", "n", body) == hmac_hex(SECRET, "1", "n", body)


def test_signature_is_lower_case_hex_sha256() -> None:
    sig = signature(SECRET, "1660338149", NONCE, BODY)
    assert re.fullmatch(r"[0-9a-f]{64}", sig)


def test_signature_depends_on_order_of_its_parts() -> None:
    assert signature(SECRET, "1660338149", NONCE, BODY) != signature(
        SECRET, NONCE, "1660338149", BODY
    )


def test_parse_header() -> None:
    value = sig_header("1660338149", NONCE, "ab" * 32)
    assert parse_header(value) == ("1660338149", NONCE, "ab" * 32)
    assert parse_header(" t=1 , nonce=n ,signature= s ") == ("1", "n", "s")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        "t=1,nonce=n",
        "t=1,signature=s",
        "nonce=n,signature=s",
        "t=1;nonce=n;signature=s",
    ],
)
def test_parse_header_without_all_parts_is_rejected(value: str) -> None:
    with pytest.raises(WebhookRejected):
        parse_header(value)


# --- verify ------------------------------------------------------------------------------------


def test_verify_accepts_a_correct_signature_and_returns_the_nonce() -> None:
    assert verify(signed(), SIGNED) == NONCE


def test_verify_accepts_upper_case_hex() -> None:
    # Decided from the code: the given signature is lower-cased before the comparison.
    t = now_t()
    value = sig_header(t, NONCE, hmac_hex(SECRET, t, NONCE, BODY).upper())
    assert verify(req(headers={"x-mw-signature": value}), SIGNED) == NONCE


def test_verify_accepts_spaces_around_the_parts() -> None:
    t = now_t()
    value = f"t={t}, nonce={NONCE}, signature={hmac_hex(SECRET, t, NONCE, BODY)}"
    assert verify(req(headers={"x-mw-signature": value}), SIGNED) == NONCE


def _tampered(kind: str) -> WebhookRequest:
    t = now_t()
    good = hmac_hex(SECRET, t, NONCE, BODY)
    if kind == "wrong signature":
        return req(headers={"x-mw-signature": sig_header(t, NONCE, "0" * 64)})
    if kind == "other secret":
        return signed(secret="another-secret")
    if kind == "body changed":
        return req(
            BODY.replace(b'"quantity":3', b'"quantity":30'),
            {"x-mw-signature": sig_header(t, NONCE, good)},
        )
    if kind == "nonce changed":
        return req(headers={"x-mw-signature": sig_header(t, NONCE[:-1] + "0", good)})
    if kind == "t changed":
        return req(headers={"x-mw-signature": sig_header(str(int(t) - 1), NONCE, good)})
    if kind == "signature truncated":
        return req(headers={"x-mw-signature": sig_header(t, NONCE, good[:-2])})
    if kind == "not hex":
        return req(headers={"x-mw-signature": sig_header(t, NONCE, "zz" * 32)})
    if kind == "empty signature":
        return req(headers={"x-mw-signature": sig_header(t, NONCE, "")})
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "wrong signature",
        "other secret",
        "body changed",
        "nonce changed",
        "t changed",
        "signature truncated",
        "not hex",
        "empty signature",
    ],
)
def test_verify_rejects_a_tampered_request(kind: str) -> None:
    with pytest.raises(WebhookRejected):
        verify(_tampered(kind), SIGNED)


def test_verify_rejects_a_missing_header_when_a_secret_is_configured() -> None:
    with pytest.raises(WebhookRejected, match="missing"):
        verify(req(), SIGNED)
    with pytest.raises(WebhookRejected):
        verify(req(headers={"x-mw-signature": ""}), SIGNED)


def test_verify_rejects_the_value_under_the_documents_example_header_name() -> None:
    # The document's example shows the value under `Api-Key`; the text names X-MW-Signature.
    t = now_t()
    value = sig_header(t, NONCE, hmac_hex(SECRET, t, NONCE, BODY))
    with pytest.raises(WebhookRejected):
        verify(req(headers={"api-key": value}), SIGNED)


@pytest.mark.parametrize(
    "value",
    [
        "t=1,nonce=n",
        "nonce=n,signature=s",
        "garbage",
        f"t={int(time.time())};nonce=n;signature=s",
    ],
    # Ids that do not depend on the clock: pytest-xdist workers must collect the same ones.
    ids=["no-signature", "no-time", "garbage", "semicolons"],
)
def test_verify_rejects_a_header_without_all_parts(value: str) -> None:
    with pytest.raises(WebhookRejected):
        verify(req(headers={"x-mw-signature": value}), SIGNED)


@pytest.mark.parametrize("stamp", ["abc", "-5", "1.5", "", "1e9", " "])
def test_verify_rejects_a_non_digit_timestamp_even_when_correctly_signed(stamp: str) -> None:
    value = sig_header(stamp, NONCE, hmac_hex(SECRET, stamp, NONCE, BODY))
    with pytest.raises(WebhookRejected):
        verify(req(headers={"x-mw-signature": value}), SIGNED)


def test_verify_rejects_an_empty_nonce_even_when_correctly_signed() -> None:
    t = now_t()
    value = sig_header(t, "", hmac_hex(SECRET, t, "", BODY))
    with pytest.raises(WebhookRejected):
        verify(req(headers={"x-mw-signature": value}), SIGNED)


@pytest.mark.parametrize("offset", [-290, -60, 0, 60, 290])
def test_verify_accepts_timestamps_within_the_default_tolerance(offset: int) -> None:
    assert verify(signed(t=now_t(offset)), SIGNED) == NONCE


@pytest.mark.parametrize("offset", [-310, -3600, 310, 3600])
def test_verify_rejects_timestamps_outside_the_default_tolerance(offset: int) -> None:
    with pytest.raises(WebhookRejected, match="timestamp"):
        verify(signed(t=now_t(offset)), SIGNED)


def test_verify_rejects_the_documents_example_timestamp_as_stale() -> None:
    with pytest.raises(WebhookRejected):
        verify(signed(t="1660338149"), SIGNED)


def test_custom_tolerance() -> None:
    short = cfg(webhook_secret=SECRET, options={"signature_tolerance_s": 30})
    assert verify(signed(t=now_t(-20)), short) == NONCE
    assert verify(signed(t=now_t(20)), short) == NONCE
    for offset in (-40, 40, -290):
        with pytest.raises(WebhookRejected):
            verify(signed(t=now_t(offset)), short)
    long = cfg(webhook_secret=SECRET, options={"signature_tolerance_s": 3600})
    assert verify(signed(t=now_t(-1000)), long) == NONCE


def test_replay_window_covers_the_tolerance_both_ways() -> None:
    assert replay_window_s(SIGNED) == 600
    assert replay_window_s(cfg(webhook_secret=SECRET, options={"signature_tolerance_s": 30})) == 60


def test_no_secret_accepts_unsigned_calls_without_a_replay_key() -> None:
    assert verify(req(), UNSIGNED) is None
    assert verify(req(), cfg(webhook_secret="")) is None
    # Nothing to check against: a header (even a wrong one) is not verified.
    assert verify(req(headers={"x-mw-signature": sig_header("1", "n", "0" * 64)}), UNSIGNED) is None


def test_rejection_messages_hold_no_secret() -> None:
    for kind in ("wrong signature", "body changed", "t changed"):
        with pytest.raises(WebhookRejected) as info:
            verify(_tampered(kind), SIGNED)
        assert SECRET not in str(info.value)


# --- event types -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ("SparePartWasConsumed", ("spare_part", "consumed")),
        ("SparePartConsumptionWasCanceled", ("spare_part", "consumption_canceled")),
        ("SparePartConsumptionWasCancelled", ("spare_part", "consumption_canceled")),
        ("TaskWasCreated", ("task", "created")),
        ("TaskWasUpdated", ("task", "updated")),
        ("TaskWasCompleted", ("task", "completed")),
        ("MeterReadingWasRecorded", ("meter_reading", "recorded")),
        ("EquipmentWasCreated", ("equipment", "created")),
        ("SomethingOdd", ("event", "something_odd")),
        ("", ("event", "unknown")),
        # Names without "Was", for the resources Workbridge knows (task webhook names are
        # not documented).
        ("TaskCreated", ("task", "created")),
        ("TaskClosed", ("task", "closed")),
        ("TaskActivityReported", ("task", "activity_reported")),
        ("SparePartConsumed", ("spare_part", "consumed")),
        ("SparePartConsumptionCanceled", ("spare_part", "consumption_canceled")),
        ("EquipmentCreated", ("equipment", "created")),
        ("StorageLocationCreated", ("storage_location", "created")),
        # Only at a word boundary, and with a verb.
        ("Task", ("event", "task")),
        ("Taskforce", ("event", "taskforce")),
        ("Tasks", ("event", "tasks")),
        ("TaskforceAssembled", ("event", "taskforce_assembled")),
        ("NewTask", ("event", "new_task")),
    ],
)
def test_event_type(event: str, expected: tuple[str, str]) -> None:
    assert event_type(event) == expected


# --- to_events ---------------------------------------------------------------------------------


def one(request: WebhookRequest, instance: str = "mw") -> Any:
    drafts = to_events(request, instance)
    assert len(drafts) == 1
    return drafts[0]


def test_spare_part_consumed_example() -> None:
    draft = one(signed())
    assert draft.type == "workbridge.mobilitywork.spare_part.consumed"
    assert draft.subject == "spare_part/456"
    assert draft.time == datetime(2023, 2, 8, 23, 0, tzinfo=UTC)
    assert draft.source == f"/mobilitywork/{NETWORK}"
    assert draft.id == stable_id("mw", "webhook", event_digest(payload()))
    assert draft.data == BODY
    assert draft.type in webhooks.event_models()


def test_the_id_is_the_event_not_the_delivery() -> None:
    # A re-sent delivery gets the same id: with the same nonce, or signed anew, and whether
    # or not its _sentAt changed (the vendor's retries).
    resent = body_of(payload(_sentAt="2022-06-02T14:36:06+00:00"))
    assert one(signed()).id == one(signed(resent, t=now_t(-5))).id
    assert one(signed()).id == one(signed(nonce="another-nonce")).id
    assert one(signed()).id == one(signed(resent, nonce="another-nonce")).id
    # Another event (here: another quantity) is another id.
    other = payload()
    other["consumed"] = {**other["consumed"], "quantity": 4}
    assert one(signed()).id != one(signed(body_of(other))).id
    # The instance name is part of the id.
    assert one(signed(), "mw").id != one(signed(), "mw-other").id


def test_unsigned_id_is_a_digest_of_the_event() -> None:
    draft = one(req())
    assert draft.id == stable_id("mw", "webhook", event_digest(payload()))
    assert one(req()).id == draft.id
    resent = body_of(payload(_sentAt="2022-06-02T14:36:06+00:00"))
    assert one(req(resent)).id == draft.id


def test_spare_part_consumption_canceled() -> None:
    draft = one(signed(body_of(payload("SparePartConsumptionWasCanceled"))))
    assert draft.type == "workbridge.mobilitywork.spare_part.consumption_canceled"
    assert draft.subject == "spare_part/456"
    assert draft.type in webhooks.event_models()


@pytest.mark.parametrize("verb", ["Created", "Updated", "Completed"])
def test_task_webhooks(verb: str) -> None:
    data = payload(f"TaskWas{verb}")
    del data["sparePart"]
    draft = one(signed(body_of(data)))
    assert draft.type == f"workbridge.mobilitywork.task.{verb.lower()}"
    assert draft.subject == "task/987"
    assert draft.type in webhooks.event_models()


@pytest.mark.parametrize("verb", ["Created", "Updated", "Completed", "Closed"])
def test_task_webhooks_named_without_was_are_about_their_task(verb: str) -> None:
    data = payload(f"Task{verb}")
    del data["sparePart"]
    draft = one(signed(body_of(data)))
    assert draft.type == f"workbridge.mobilitywork.task.{verb.lower()}"
    assert draft.subject == "task/987"
    # The same event under the documented-style name is the same type and subject.
    named = payload(f"TaskWas{verb}")
    del named["sparePart"]
    other = one(signed(body_of(named)))
    assert (other.type, other.subject) == (draft.type, draft.subject)
    # The id rule is unchanged: the body without `_sentAt`.
    assert draft.id == stable_id("mw", "webhook", event_digest(data))
    resent = one(signed(body_of({**data, "_sentAt": "2022-06-02T14:36:06+00:00"})))
    assert resent.id == draft.id


def test_subject_from_uuid_when_there_is_no_id() -> None:
    data = payload(sparePart={"uuid": "0b6a7d1e-aaaa-bbbb-cccc-000000000001"})
    assert one(signed(body_of(data))).subject == "spare_part/0b6a7d1e-aaaa-bbbb-cccc-000000000001"


def test_unknown_event_with_a_was_name_is_still_published() -> None:
    data = payload("MeterReadingWasRecorded", meterReading={"id": 77})
    draft = one(signed(body_of(data)))
    assert draft.type == "workbridge.mobilitywork.meter_reading.recorded"
    assert draft.subject == "meter_reading/77"
    assert draft.type not in webhooks.event_models()


def test_unknown_event_without_its_object_falls_back_to_the_delivery() -> None:
    draft = one(signed(body_of(payload("MeterReadingWasRecorded"))))
    assert draft.type == "workbridge.mobilitywork.meter_reading.recorded"
    assert draft.subject == f"meter_reading/{event_digest(payload('MeterReadingWasRecorded'))[:16]}"


def test_any_other_event_name_is_still_published() -> None:
    draft = one(signed(body_of(payload("SomethingOdd"))))
    assert draft.type == "workbridge.mobilitywork.event.something_odd"
    assert draft.subject.startswith("event/")
    assert draft.id == stable_id("mw", "webhook", event_digest(payload("SomethingOdd")))


@pytest.mark.parametrize(
    "event",
    [
        "SparePartWasConsumed",
        "SparePartConsumptionWasCanceled",
        "TaskWasCreated",
        "MeterReadingWasRecorded",
        "SomethingOdd",
        "X",
    ],
)
def test_types_follow_the_contract_pattern(event: str) -> None:
    draft = one(signed(body_of(payload(event))))
    assert re.fullmatch(r"workbridge\.mobilitywork\.[a-z0-9_]+\.[a-z0-9_]+", draft.type)
    assert re.fullmatch(r"[a-z0-9_]+/.+", draft.subject)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{this is not json",
        b"",
        b"[]",
        b'"SparePartWasConsumed"',
        body_of({"_type": "X", "emittedAt": "2023-02-08T23:00:00+00:00"}),
        body_of({"_event": 123}),
        body_of({"_event": None}),
    ],
)
def test_bodies_without_an_event_are_unparseable(body: bytes) -> None:
    with pytest.raises(WebhookUnparseable):
        to_events(signed(body), "mw")


@pytest.mark.parametrize(
    ("emitted", "expected"),
    [
        ("2023-02-08T23:00:00+00:00", datetime(2023, 2, 8, 23, 0, tzinfo=UTC)),
        ("2023-02-08T23:00:00Z", datetime(2023, 2, 8, 23, 0, tzinfo=UTC)),
        ("2023-02-09T01:00:00+02:00", datetime(2023, 2, 8, 23, 0, tzinfo=UTC)),
        ("2023-02-08T23:00:00", None),
        ("2023-02-08", None),
        ("yesterday", None),
        (1675897200, None),
        (None, None),
    ],
)
def test_time_from_emitted_at(emitted: Any, expected: datetime | None) -> None:
    draft = one(signed(body_of(payload(emittedAt=emitted))))
    assert draft.time == expected
    if expected is not None:
        assert draft.time.tzinfo is not None


def test_time_without_emitted_at_is_none() -> None:
    data = payload()
    del data["emittedAt"]
    assert one(signed(body_of(data))).time is None


def test_source_without_network_id_is_left_to_the_core() -> None:
    data = payload()
    del data["networkId"]
    assert one(signed(body_of(data))).source is None


def test_unsigned_call_with_a_malformed_signature_header_is_still_mapped() -> None:
    request = req(headers={"x-mw-signature": "garbage"})
    assert verify(request, UNSIGNED) is None  # accepted: no secret configured
    draft = one(request)
    assert draft.id == stable_id("mw", "webhook", event_digest(payload()))


def test_envelope_decodes_the_example_and_keeps_its_fields() -> None:
    env = msgspec.json.decode(BODY, type=Envelope)
    assert env.type_ == "SparePartWasConsumedWebhook"
    assert env.event == "SparePartWasConsumed"
    assert env.sent_at == "2022-06-02T14:31:06+00:00"
    assert env.emittedAt == "2023-02-08T23:00:00+00:00"
    assert env.networkId == NETWORK


def test_event_models_are_the_known_types() -> None:
    assert set(webhooks.event_models()) == {
        "workbridge.mobilitywork.spare_part.consumed",
        "workbridge.mobilitywork.spare_part.consumption_canceled",
        "workbridge.mobilitywork.task.created",
        "workbridge.mobilitywork.task.updated",
        "workbridge.mobilitywork.task.completed",
    }
