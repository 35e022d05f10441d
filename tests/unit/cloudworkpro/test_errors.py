"""CLOUDWORK|PRO's answers: the document's 200-with-code-400, its HTTP statuses, and words."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from adapters.cloudworkpro.commands import COMMANDS, WORK_ORDER_CREATE, WORK_ORDER_UPDATE
from adapters.cloudworkpro.errors import (
    ERRORS,
    REFUSED,
    WRONG_CONTENT_TYPE,
    envelope_code,
    error_message,
)
from adapters.core.commands.decision import judge
from adapters.core.errors import Action
from adapters.core.vendor_call import CallOutcome, RetryPolicy, call_with_retry
from adapters.core.vendor_http import VendorResponse

# The document's "OK Example - 200 - OK" and "Error Example - 200 - OK".
OK: dict[str, Any] = {
    "code": 200,
    "reason": "",
    "data": (
        "Status updated successfully to: 'draft' for work order with ID: 633cf3e1bb4e2453a0497b65"
    ),
    "success": True,
}
REFUSAL: dict[str, Any] = {
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


def answer(status: int, body: Any = None, **headers: str) -> VendorResponse:
    raw = msgspec.json.encode(body) if body is not None else b""
    return VendorResponse(status, {k.lower(): v for k, v in headers.items()}, raw)


def envelope(status: int, reason: str = "") -> dict[str, Any]:
    """An error envelope as the fake answers HTTP errors (the document shows none)."""
    return {"code": status, "reason": reason, "data": {}, "success": False}


# --- the document's examples -------------------------------------------------------------------


def test_the_documents_error_example_is_a_permanent_failure_with_the_vendors_words() -> None:
    refused = answer(200, REFUSAL)
    rule = ERRORS.classify(refused)
    assert rule.action is Action.FAIL
    assert rule.may_have_acted is False
    assert ERRORS.message(refused) == (
        "WO_0005: The work types provided were not found in CWP platform (This error happens "
        "when you send work type IDs that do not exists in CWP platform)"
    )


def test_the_documents_ok_example_is_a_success() -> None:
    assert ERRORS.classify(answer(200, OK)).action is Action.SUCCESS


# --- HTTP 200 envelopes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "action", "may_have_acted"),
    [
        ({**REFUSAL, "code": "400"}, Action.FAIL, False),  # the code as a string
        ({**REFUSAL, "code": " 400 "}, Action.FAIL, False),
        ({**REFUSAL, "code": 409}, Action.FAIL, False),  # another 4xx
        ({"code": 404, "reason": "Work order not found", "data": {}}, Action.FAIL, False),
        ({**REFUSAL, "code": 418, "success": False}, Action.FAIL, False),
        ({"code": 429, "reason": "slow down", "success": False}, Action.RETRY, False),
        ({"code": 503, "success": False}, Action.RETRY, True),
        ({"code": 500, "success": False}, Action.RETRY, True),
        # success false: never a success, whatever the code says.
        ({"code": 200, "data": {}, "success": False}, Action.FAIL, False),
        ({"data": {}, "success": "false", "error": {"code": "X"}}, Action.FAIL, False),
        ({"error": {"code": "WO_0001", "message": "m"}}, Action.FAIL, False),  # no code at all
        # Successes: a record, a sentence, a list page, no envelope at all.
        ({"code": 200, "reason": "", "data": {"_id": "a"}, "success": True}, Action.SUCCESS, False),
        ({"code": "200", "data": [], "success": True}, Action.SUCCESS, False),
        ({"code": 201, "data": {}}, Action.SUCCESS, False),
        ({"code": True, "data": {}}, Action.SUCCESS, False),  # true is no status code
        ({"_id": "a", "name": "x"}, Action.SUCCESS, False),
        ("done", Action.SUCCESS, False),
        ([1, 2], Action.SUCCESS, False),
    ],
)
def test_a_200_is_judged_by_its_envelope(body: Any, action: Action, may_have_acted: bool) -> None:
    rule = ERRORS.classify(answer(200, body))
    assert rule.action is action
    assert rule.may_have_acted is may_have_acted


def test_a_200_that_is_not_json_is_a_success() -> None:
    assert ERRORS.classify(VendorResponse(200, {}, b"<html>ok</html>")).action is Action.SUCCESS
    assert ERRORS.classify(answer(200)).action is Action.SUCCESS


def test_each_answer_is_judged_on_its_own_body() -> None:
    # The matchers share the last body's rule: a different answer must not reuse it.
    assert ERRORS.classify(answer(200, REFUSAL)).action is Action.FAIL
    assert ERRORS.classify(answer(200, OK)).action is Action.SUCCESS
    assert ERRORS.classify(answer(200, REFUSAL)).action is Action.FAIL


def test_envelope_code() -> None:
    assert envelope_code({"code": 400}) == 400
    assert envelope_code({"code": "400"}) == 400
    assert envelope_code({"code": "WO_0005"}) is None
    assert envelope_code({"code": False}) is None
    assert envelope_code({}) is None
    assert envelope_code("400") is None


# --- HTTP statuses -----------------------------------------------------------------------------


@pytest.mark.parametrize("empty", [True, False])
@pytest.mark.parametrize(
    ("status", "action", "may_have_acted", "alert", "words"),
    [
        (401, Action.FAIL, False, True, "token missing or expired: check the API credentials"),
        (403, Action.FAIL, False, True, "the token lacks the permission"),
        (404, Action.FAIL, False, False, "not found"),
        (422, Action.FAIL, False, True, "Content-Type"),
        (400, Action.FAIL, False, False, "refused"),
        (409, Action.FAIL, False, False, ""),
        (429, Action.RETRY, False, False, "rate limited"),
        (500, Action.RETRY, True, False, "CLOUDWORK|PRO's end"),
        (502, Action.RETRY, True, False, "CLOUDWORK|PRO's end"),
        (503, Action.RETRY, True, False, "unavailable"),
        (504, Action.RETRY, True, False, "CLOUDWORK|PRO's end"),
        (599, Action.RETRY, True, False, ""),
    ],
)
def test_http_statuses(
    status: int, action: Action, may_have_acted: bool, alert: bool, words: str, empty: bool
) -> None:
    # With an empty body and with the envelope a fake sends beside the status: the matchers
    # look at 2xx answers only, so a 429 or 503 envelope does not become permanent.
    rule = ERRORS.classify(answer(status, None if empty else envelope(status)))
    assert rule.action is action
    assert rule.may_have_acted is may_have_acted
    assert rule.alert is alert
    assert words in rule.reason


def test_a_422_says_it_is_a_defect_of_workbridge() -> None:
    rule = ERRORS.classify(answer(422))
    assert rule is WRONG_CONTENT_TYPE
    assert "defect on Workbridge's side" in rule.reason


def test_a_real_400_carrying_the_envelope_is_refused_with_the_vendors_words() -> None:
    # "most" bad requests are a 200: the others a real 400, with the same envelope.
    refused = answer(400, REFUSAL)
    assert ERRORS.classify(refused) is REFUSED
    assert (ERRORS.message(refused) or "").startswith("WO_0005: The work types provided")


# --- words -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"error": {"code": "WO_0005", "message": "m", "detail": "m"}}, "WO_0005: m"),
        ({"error": {"code": "WO_0005"}, "reason": "the reason"}, "WO_0005: the reason"),
        ({"error": {"message": "m"}}, "m"),
        ({"error": {"code": "WO_0005"}}, "WO_0005"),
        ({"error": {"detail": "d"}}, "d"),
        ({"error": "bad things"}, "bad things"),
        (envelope(401, "token expired"), "401: token expired"),
        ({"code": 200, "reason": "fine"}, "fine"),
        ("Too many requests", "Too many requests"),
        (OK, None),
        ({"error": {}}, None),
        ({}, None),
        (None, None),
        ([1], None),
    ],
)
def test_error_message(body: Any, words: str | None) -> None:
    assert error_message(answer(200, body)) == words


def test_a_html_error_page_says_nothing() -> None:
    assert error_message(VendorResponse(502, {}, b"<html>Bad Gateway</html>")) is None


# --- through the retry loop and into a result --------------------------------------------------


class ScriptedClient:
    """The vendor client, answering (status, body) in order."""

    def __init__(self, *answers: tuple[int, Any]) -> None:
        self.answers = list(answers)
        self.sent = 0

    async def request(self, method: str, path: str, **_: Any) -> VendorResponse:
        self.sent += 1
        return answer(*self.answers.pop(0))


async def outcome(repeat_safe: bool, *answers: tuple[int, Any]) -> tuple[CallOutcome, int]:
    client = ScriptedClient(*answers)
    got = await call_with_retry(
        client,  # type: ignore[arg-type]
        "POST",
        "/workorders",
        errors=ERRORS,
        repeat_safe=repeat_safe,
        policy=RetryPolicy(deadline_s=5, max_attempts=5, base_s=0.001, cap_s=0.001),
    )
    return got, client.sent


FIELDS = {"command_type": WORK_ORDER_CREATE, "idempotency_key": "k"}


async def test_the_200_with_code_400_fails_at_once_and_the_result_carries_the_error() -> None:
    got, sent = await outcome(True, (200, REFUSAL), (200, OK))
    assert (got.action, got.attempts, sent) == (Action.FAIL, 1, 1)
    assert got.error is not None and "WO_0005" in got.error
    result = judge(got, FIELDS, COMMANDS[WORK_ORDER_CREATE], replay=False)
    assert result.status == "failed"
    assert result.http_status == 200
    assert result.error == REFUSAL  # the vendor's error as it gave it
    assert result.reason is not None and "WO_0005: The work types provided" in result.reason


async def test_a_429_is_retried_also_for_a_create_but_a_503_is_not() -> None:
    got, sent = await outcome(False, (429, None), (429, None), (200, OK))
    assert (got.action, sent) == (Action.SUCCESS, 3)
    got, sent = await outcome(False, (503, None), (200, OK))
    assert (got.action, got.may_have_acted, sent) == (Action.RETRY, True, 1)


async def test_a_500_after_a_create_is_ambiguous_but_an_update_is_retried() -> None:
    got, sent = await outcome(False, (500, None), (200, OK))
    assert (got.action, got.may_have_acted, sent) == (Action.RETRY, True, 1)
    result = judge(got, FIELDS, COMMANDS[WORK_ORDER_CREATE], replay=False)
    assert result.status == "ambiguous"
    got, sent = await outcome(True, (502, None), (504, None), (200, OK))
    assert (got.action, sent) == (Action.SUCCESS, 3)
    update = judge(
        got,
        {**FIELDS, "command_type": WORK_ORDER_UPDATE},
        COMMANDS[WORK_ORDER_UPDATE],
        replay=False,
    )
    assert update.status == "succeeded"
    assert update.response == OK["data"]


async def test_a_401_fails_with_the_credentials_hint() -> None:
    got, sent = await outcome(True, (401, envelope(401, "Unauthorized")), (200, OK))
    assert (got.action, sent) == (Action.FAIL, 1)
    assert got.error is not None and "check the API credentials" in got.error
    assert got.rule is not None and got.rule.alert
