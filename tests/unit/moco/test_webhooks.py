"""MOCO webhooks: the document's signature vector, verification and event mapping."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from adapters.config import InstanceConfig
from adapters.core.cloudevents_codec import stable_id
from adapters.core.secret import Secret
from adapters.core.vendor import WebhookRejected, WebhookRequest, WebhookUnparseable
from adapters.moco.webhooks import past_tense, signature, snake, to_events, verify

# The vendor document's example (MOCO API README, "Calculating the signature").
DOC_BODY = b'{id: 111, description: "a description"}'
DOC_KEY = "1d608b9d72219b90ff2393a1d3ee0ac0"
DOC_SIG = "09f9ebc0adeb597cb7cb37fd72b20be0caeca6bd9fb67416b663606bd7f89183"

BODY = b'{"id":111,"description":"a description"}'
RECEIVED = datetime(2024, 1, 1, tzinfo=UTC)


def req(body: bytes = BODY, **headers: str) -> WebhookRequest:
    base = {
        "x-moco-target": "Activity",
        "x-moco-event": "create",
        "x-moco-timestamp": "1527170410463",
        "x-moco-user-id": "933613686",
    }
    base.update({k.replace("_", "-"): v for k, v in headers.items()})
    return WebhookRequest({k: v for k, v in base.items() if v is not None}, body, RECEIVED)


def test_document_test_vector() -> None:
    assert signature(DOC_KEY, DOC_BODY) == DOC_SIG


def inst(secret: Secret | None) -> InstanceConfig:
    return InstanceConfig(vendor="moco", base_url="http://m", webhook_secret=secret)


def test_verify_accepts_the_document_vector() -> None:
    verify(req(DOC_BODY, x_moco_signature=DOC_SIG), inst(Secret(DOC_KEY)))


def test_verify_accepts_upper_case_hex_and_surrounding_space() -> None:
    # verify() lower-cases and strips the header before the constant-time compare.
    verify(req(DOC_BODY, x_moco_signature=DOC_SIG.upper()), inst(Secret(DOC_KEY)))
    verify(req(DOC_BODY, x_moco_signature=f"  {DOC_SIG} "), inst(Secret(DOC_KEY)))


@pytest.mark.parametrize(
    "given",
    [
        DOC_SIG[:-1] + "0",
        DOC_SIG[:-1],
        "sha256=" + DOC_SIG,
        signature("ffffffffffffffffffffffffffffffff", DOC_BODY),
        "zz",
    ],
)
def test_verify_rejects_wrong_signatures(given: str) -> None:
    with pytest.raises(WebhookRejected, match="does not match"):
        verify(req(DOC_BODY, x_moco_signature=given), inst(Secret(DOC_KEY)))


def test_verify_rejects_a_changed_body() -> None:
    with pytest.raises(WebhookRejected):
        verify(req(DOC_BODY + b" ", x_moco_signature=DOC_SIG), inst(Secret(DOC_KEY)))


def test_verify_rejects_missing_signature() -> None:
    with pytest.raises(WebhookRejected, match="missing"):
        verify(req(DOC_BODY), inst(Secret(DOC_KEY)))
    with pytest.raises(WebhookRejected, match="missing"):
        verify(req(DOC_BODY, x_moco_signature=""), inst(Secret(DOC_KEY)))


def test_verify_rejects_without_a_secret() -> None:
    with pytest.raises(WebhookRejected, match="no webhook_secret"):
        verify(req(DOC_BODY, x_moco_signature=DOC_SIG), inst(None))


def test_verify_rejects_an_empty_secret() -> None:
    forged = signature("", BODY)
    with pytest.raises(WebhookRejected):
        verify(req(BODY, x_moco_signature=forged), inst(Secret("")))


@pytest.mark.parametrize(
    ("target", "event", "type_", "subject"),
    [
        ("Activity", "create", "workbridge.moco.activity.created", "activity/111"),
        ("Customer", "update", "workbridge.moco.company.updated", "company/111"),
        ("Project", "archive", "workbridge.moco.project.archived", "project/111"),
        ("Project", "delete", "workbridge.moco.project.deleted", "project/111"),
        ("Offer", "update", "workbridge.moco.offer.updated", "offer/111"),
        ("PurchaseDraft", "create", "workbridge.moco.purchase_draft.created", "purchase_draft/111"),
    ],
)
def test_type_and_subject(target: str, event: str, type_: str, subject: str) -> None:
    [draft] = to_events(req(x_moco_target=target, x_moco_event=event), "acme")
    assert draft.type == type_
    assert draft.subject == subject


def test_draft_fields() -> None:
    [draft] = to_events(req(), "acme")
    assert draft.time == datetime(2018, 5, 24, 14, 0, 10, 463000, tzinfo=UTC)
    assert draft.data == BODY
    assert draft.extensions == {"vendoruserid": "933613686"}
    assert draft.source is None  # the core fills in /moco/<instance>
    assert draft.id == stable_id(
        "acme", "webhook", "activity", "create", hashlib.sha256(BODY).digest()
    )


def test_same_delivery_same_id() -> None:
    assert to_events(req(), "acme")[0].id == to_events(req(), "acme")[0].id


def test_unsigned_timestamp_does_not_change_the_id() -> None:
    # Only the body is signed: a replay with another X-Moco-Timestamp is the same event.
    replay = req(x_moco_timestamp="1527170410999")
    assert to_events(replay, "acme")[0].id == to_events(req(), "acme")[0].id


def test_absurd_timestamp_is_ignored_not_fatal() -> None:
    [draft] = to_events(req(x_moco_timestamp="99999999999999999999"), "acme")
    assert draft.time is None


@pytest.mark.parametrize(
    "other",
    [
        req(b'{"id":111,"description":"changed"}'),
        req(x_moco_event="update"),
        req(x_moco_target="Project"),
    ],
)
def test_different_delivery_different_id(other: WebhookRequest) -> None:
    assert to_events(other, "acme")[0].id != to_events(req(), "acme")[0].id


def test_other_instance_different_id() -> None:
    assert to_events(req(), "acme")[0].id != to_events(req(), "other")[0].id


def test_no_timestamp_no_time_and_no_user_no_extension() -> None:
    headers = {"x-moco-target": "Activity", "x-moco-event": "create"}
    [draft] = to_events(WebhookRequest(headers, BODY, RECEIVED), "acme")
    assert draft.time is None
    assert draft.extensions == {}
    [draft] = to_events(req(x_moco_timestamp="yesterday"), "acme")
    assert draft.time is None


@pytest.mark.parametrize(
    ("body", "headers", "match"),
    [
        (BODY, {"x_moco_target": ""}, "X-Moco-Target"),
        (BODY, {"x_moco_event": "  "}, "X-Moco-Event"),
        (b"{id: 111}", {}, "not JSON"),
        (b"", {}, "not JSON"),
        (b"[1,2]", {}, "with an id"),
        (b'{"name":"x"}', {}, "with an id"),
    ],
)
def test_unparseable(body: bytes, headers: dict[str, str], match: str) -> None:
    with pytest.raises(WebhookUnparseable, match=match):
        to_events(req(body, **headers), "acme")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("PurchaseDraft", "purchase_draft"),
        ("Activity", "activity"),
        ("UserPresence", "user_presence"),
        ("user presence", "user_presence"),
        ("User Presence", "user_presence"),
    ],
)
def test_snake(name: str, expected: str) -> None:
    assert snake(name) == expected


@pytest.mark.parametrize(
    ("verb", "expected"),
    [
        ("create", "created"),
        ("update", "updated"),
        ("delete", "deleted"),
        ("archive", "archived"),
        ("unarchive", "unarchived"),
        ("start", "started"),
    ],
)
def test_past_tense(verb: str, expected: str) -> None:
    assert past_tense(verb) == expected
