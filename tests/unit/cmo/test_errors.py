"""CMO's answers: which fail, which are retried, and how its error bodies read."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from adapters.cmo.errors import ERRORS, error_message
from adapters.core.errors import Action
from adapters.core.vendor_call import RetryPolicy, call_with_retry
from adapters.core.vendor_http import VendorResponse

# The document's 400 answers.
FIELD_ERRORS: dict[str, Any] = {
    "message": "Model can't be processed due to following errors",
    "errors": [
        {
            "field": "OrgUnitName",
            "messages": [
                "System is unable to find object based on the provided name(s). (Values: Albama)"
            ],
        }
    ],
}
EVENT_WORKFLOW = {"message": "You cannot delete Actions created by Event Workflow"}


def answer(status: int, body: Any = None) -> VendorResponse:
    return VendorResponse(status, {}, msgspec.json.encode(body) if body is not None else b"")


@pytest.mark.parametrize(
    ("status", "body", "action", "may_have_acted"),
    [
        (200, "68579fa4-a2bd-4ae4-b041-76c08dc4699b", Action.SUCCESS, False),
        (200, None, Action.SUCCESS, False),
        (400, FIELD_ERRORS, Action.FAIL, False),
        (400, EVENT_WORKFLOW, Action.FAIL, False),
        (401, None, Action.FAIL, False),
        (403, None, Action.FAIL, False),
        (404, None, Action.FAIL, False),
        (409, None, Action.FAIL, False),  # the default table's other 4xx
        (429, None, Action.RETRY, False),
        (500, {"Message": "An error has occurred."}, Action.RETRY, True),
        (502, None, Action.RETRY, True),
        (503, None, Action.RETRY, True),  # the document does not say it was not handled
        (504, None, Action.RETRY, True),
    ],
)
def test_classification(status: int, body: Any, action: Action, may_have_acted: bool) -> None:
    rule = ERRORS.classify(answer(status, body))
    assert rule.action is action
    assert rule.may_have_acted is may_have_acted


def test_a_400_quotes_every_field_error() -> None:
    assert error_message(answer(400, FIELD_ERRORS)) == (
        "Model can't be processed due to following errors: OrgUnitName: System is unable to "
        "find object based on the provided name(s). (Values: Albama)"
    )
    several = {
        "message": "Model can't be processed due to following errors",
        "errors": [
            {"field": "OrgUnitName", "messages": ["not found", "ambiguous"]},
            {"field": "EntityName", "messages": ["not found"]},
            {"field": "", "messages": ["DueDate is in the past"]},
            {"field": "Progress", "messages": []},
        ],
    }
    assert error_message(answer(400, several)) == (
        "Model can't be processed due to following errors: OrgUnitName: not found; "
        "OrgUnitName: ambiguous; EntityName: not found; DueDate is in the past; "
        "Progress: invalid"
    )


def test_the_delete_refusal() -> None:
    assert ERRORS.message(answer(400, EVENT_WORKFLOW)) == (
        "You cannot delete Actions created by Event Workflow"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # ASP.NET's own envelopes (capitalised keys, a model state).
        (
            {"Message": "Authorization has been denied for this request."},
            "Authorization has been denied for this request.",
        ),
        (
            {"Message": "The request is invalid.", "ModelState": {"model.progress": ["big"]}},
            "The request is invalid. model.progress: big",
        ),
        ({"errors": [{"field": "ActionText", "messages": ["required"]}]}, "ActionText: required"),
        ("Forbidden", "Forbidden"),
        (None, None),
        ({}, None),
        ([1, 2], None),
    ],
)
def test_other_bodies(body: Any, message: str | None) -> None:
    assert ERRORS.message(answer(400, body)) == message


def test_a_html_body_says_nothing() -> None:
    page = VendorResponse(404, {"content-type": "text/html"}, b"<html>Not Found</html>")
    assert ERRORS.message(page) is None


def test_403_names_the_permission_of_each_command_type() -> None:
    rule = ERRORS.classify(answer(403))
    assert rule.alert
    assert "Admin > Roles > Action Permissions" in rule.reason
    for permission in ("Allow Create via API", "Allow Edit via API", "Allow Delete via API"):
        assert permission in rule.reason


def test_401_is_about_the_credentials() -> None:
    rule = ERRORS.classify(answer(401))
    assert rule.alert
    assert "credentials" in rule.reason


def test_404_suggests_the_action_is_gone() -> None:
    rule = ERRORS.classify(answer(404))
    assert not rule.alert
    assert "deleted in the meantime?" in rule.reason


class ScriptedClient:
    """The vendor client, answering (status, body) in order."""

    def __init__(self, *answers: tuple[int, Any]) -> None:
        self.answers = list(answers)
        self.sent = 0

    async def request(self, method: str, path: str, **_: Any) -> VendorResponse:
        self.sent += 1
        return answer(*self.answers.pop(0))


async def outcome(repeat_safe: bool, *answers: tuple[int, Any]) -> tuple[Any, int]:
    client = ScriptedClient(*answers)
    got = await call_with_retry(
        client,  # type: ignore[arg-type]
        "POST",
        "/api/actions",
        errors=ERRORS,
        repeat_safe=repeat_safe,
        policy=RetryPolicy(deadline_s=5, max_attempts=5, base_s=0.001, cap_s=0.001),
    )
    return got, client.sent


async def test_a_400_fails_at_once_with_the_field_errors_in_the_reason() -> None:
    got, sent = await outcome(False, (400, FIELD_ERRORS))
    assert (got.action, got.attempts, sent) == (Action.FAIL, 1, 1)
    assert got.error.startswith("CMO refused the request: Model can't be processed")
    assert "OrgUnitName: System is unable to find object" in got.error


async def test_a_403_fails_at_once() -> None:
    got, sent = await outcome(True, (403, None), (200, None))
    assert (got.action, sent) == (Action.FAIL, 1)
    assert "Allow Edit via API" in got.error


async def test_a_503_is_not_repeated_for_a_create_but_for_an_update() -> None:
    got, sent = await outcome(False, (503, None), (200, "new-id"))
    assert (got.action, got.may_have_acted, sent) == (Action.RETRY, True, 1)
    got, sent = await outcome(True, (503, None), (200, None))
    assert (got.action, sent) == (Action.SUCCESS, 2)


async def test_a_500_is_not_repeated_for_a_create_but_for_an_update() -> None:
    got, sent = await outcome(False, (500, None), (200, "new-id"))
    assert (got.action, got.may_have_acted, sent) == (Action.RETRY, True, 1)
    got, sent = await outcome(True, (500, None), (200, None))
    assert (got.action, sent) == (Action.SUCCESS, 2)
