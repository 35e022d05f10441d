"""The error table over whole answers, with the three new vendors' documented envelopes.

The declarations here are what the vendors' folders will hold; the examples are the
documents' own (CLOUDWORK|PRO's 200-with-code-400, Click Maint's `status: error`, CMO's
400 with `errors[{field, messages}]`).
"""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import Any

import msgspec

from adapters.core.errors import Action, Answer, ErrorTable, Matcher, Rule, json_body
from adapters.core.ratelimit import SlidingWindowLimiter, Unlimited
from adapters.core.rest_command import rest_command
from adapters.core.vendor_http import RateLimitHeaders, VendorClient, VendorResponse

CWP_OK = {
    "code": 200,
    "reason": "",
    "data": (
        "Status updated successfully to: 'draft' for work order with ID: 633cf3e1bb4e2453a0497b65"
    ),
    "success": True,
}
CWP_ERROR = {
    "error": {
        "code": "WO_0005",
        "message": "The work types provided were not found in CWP platform",
        "detail": (
            "This error happens when you send work type IDs that do not exists in CWP platform"
        ),
    },
    "code": 400,
    "reason": "The work types provided were not found in CWP platform",
    "data": {},
    "success": True,
}
CMO_400 = {
    "message": "Model can't be processed due to following errors",
    "errors": [{"field": "DueDate", "messages": ["The DueDate field is required."]}],
}


def answer(status: int, body: Any, **headers: str) -> VendorResponse:
    return VendorResponse(
        status, {k.lower(): v for k, v in headers.items()}, msgspec.json.encode(body)
    )


def _cwp_code_400(a: Answer) -> bool:
    body = json_body(a)
    return (
        isinstance(body, dict) and body.get("code") == 400 and isinstance(body.get("error"), dict)
    )


def _cwp_describe(a: Answer) -> str | None:
    error = (json_body(a) or {}).get("error") or {}
    return f"{error.get('code')}: {error.get('message')}" if error else None


CWP = ErrorTable(
    matchers=(Matcher(_cwp_code_400, Rule(Action.FAIL, "request refused by the vendor")),),
    describe=_cwp_describe,
)


def test_cwp_200_with_code_400_is_a_permanent_failure_with_the_vendors_words() -> None:
    refused = answer(200, CWP_ERROR)
    rule = CWP.classify(refused)
    assert rule.action is Action.FAIL and rule.may_have_acted is False
    assert CWP.message(refused) == (
        "WO_0005: The work types provided were not found in CWP platform"
    )
    assert CWP.classify(answer(200, CWP_OK)).action is Action.SUCCESS


def test_matchers_do_not_hide_statuses_they_do_not_recognise() -> None:
    assert CWP.classify(answer(429, {})).action is Action.RETRY
    assert CWP.classify(answer(503, "down")).action is Action.RETRY
    # A body that is not JSON, or not an object: no match, no crash.
    assert CWP.classify(VendorResponse(200, {}, b"<html>")).action is Action.SUCCESS
    assert CWP.classify(answer(200, [1, 2])).action is Action.SUCCESS


def test_a_matcher_that_raises_is_no_match() -> None:
    def broken(_: Answer) -> bool:
        raise KeyError("x")

    table = ErrorTable(matchers=(Matcher(broken, Rule(Action.FAIL)),))
    assert table.classify(answer(200, {})).action is Action.SUCCESS


def test_click_maint_and_cmo_envelopes_are_described() -> None:
    clickmaint = ErrorTable(describe=lambda a: (json_body(a) or {}).get("message"))
    refused = answer(422, {"status": "error", "message": "Name can't be blank"})
    assert clickmaint.classify(refused).action is Action.FAIL
    assert clickmaint.message(refused) == "Name can't be blank"

    def cmo_describe(a: Answer) -> str | None:
        body = json_body(a) or {}
        fields = "; ".join(f"{e['field']}: {' '.join(e['messages'])}" for e in body["errors"])
        return f"{body['message']}: {fields}"

    cmo = ErrorTable(describe=cmo_describe)
    assert cmo.message(answer(400, CMO_400)) == (
        "Model can't be processed due to following errors: DueDate: The DueDate field is required."
    )
    # An envelope the describer does not understand gives no words rather than an error.
    assert cmo.message(answer(400, {"unexpected": True})) is None


# --- explicit null ------------------------------------------------------------------------


class Action_(msgspec.Struct, kw_only=True):
    id: int
    title: str | None = None  # None: leave out
    risk: dict[str, Any] | msgspec.UnsetType | None = msgspec.UNSET  # None: send null


def test_an_explicit_null_is_sent_and_unset_is_left_out() -> None:
    spec = rest_command("x.action.update", Action_, "PUT", "/api/actions/{id}", kind="update")
    assert spec.build(Action_(id=1, risk=None)).json == {"risk": None}
    assert spec.build(Action_(id=1)).json == {}
    assert spec.build(Action_(id=1, title=None, risk={"level": 2})).json == {"risk": {"level": 2}}


# --- rate limits learned from the answers -------------------------------------------------


def test_an_epoch_reset_is_read_against_the_vendors_clock() -> None:
    limiter = Unlimited()
    client = VendorClient(
        base_url="http://127.0.0.1:9",
        limiter=limiter,
        timeout_s=1,
        user_agent="t",
        rate_limit_headers=RateLimitHeaders(
            remaining="x-ratelimit-remaining", reset="x-ratelimit-reset", reset_is_epoch=True
        ),
    )
    vendor_now = time.time() - 3600  # the vendor's clock is an hour behind ours
    exhausted = answer(
        200,
        {},
        **{
            "X-RateLimit-Limit": "300",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(vendor_now + 40)),
            "Date": formatdate(vendor_now, usegmt=True),
        },
    )
    client._adapt(exhausted)
    paused_for = limiter._paused_until - time.monotonic()
    assert 35 < paused_for <= 41


def test_a_429_without_retry_after_pauses_even_without_a_configured_limit() -> None:
    for limiter in (Unlimited(), SlidingWindowLimiter(10, 5.0)):
        client = VendorClient(base_url="http://x", limiter=limiter, timeout_s=1, user_agent="t")
        client._adapt(answer(429, {}))
        assert limiter._paused_until > time.monotonic()
