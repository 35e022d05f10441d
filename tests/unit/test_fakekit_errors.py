"""The fake kit's error envelopes, against the examples in the vendor documents."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from adapters.fakekit_errors import (
    ClickMaintErrors,
    CloudworkProErrors,
    CmoErrors,
    MessageErrors,
    MobilityWorkErrors,
    error_item,
    reason_phrase,
)


def _json(response: web.Response) -> Any:
    assert response.content_type == "application/json"
    assert isinstance(response.body, bytes)
    return msgspec.json.decode(response.body)


def test_moco_errors_are_a_status_and_a_message() -> None:
    response = MessageErrors().response(422, "name is missing")
    assert response.status == 422 and _json(response) == {"message": "name is missing"}
    limited = MessageErrors().response(429, "Too Many Requests", {"Retry-After": "3"})
    assert limited.headers["Retry-After"] == "3"


def test_mobility_work_401_is_the_documents_example() -> None:
    response = MobilityWorkErrors().unauthorized()
    assert response.status == 401
    assert _json(response) == {
        "http_status_code": 401,
        "code": "401001",
        "message": "Authentication error",
        "extended_message": {
            "global_errors": [{"messageKey": "Invalid Api Key.", "parameters": {}}],
            "property_errors": {},
        },
        "more_info_url": None,
    }


def test_mobility_work_400_is_the_documents_example() -> None:
    property_errors = {
        "/description": [error_item("error.payload.min_length", min=3, length=1)],
        "/equipment": [error_item("error.payload.equipment.unknown", type="native", value=99999)],
    }
    response = MobilityWorkErrors().invalid_payload(property_errors)
    body = _json(response)
    assert response.status == 400 and body["code"] == "400044"
    assert body["message"] == "The request payload is not valid."
    assert body["extended_message"]["property_errors"]["/description"] == [
        {"messageKey": "error.payload.min_length", "parameters": {"min": 3, "length": 1}}
    ]
    assert list(body) == [
        "http_status_code",
        "code",
        "message",
        "extended_message",
        "more_info_url",
    ]


def test_mobility_work_errors_without_an_example_use_the_code_suffix() -> None:
    body = _json(MobilityWorkErrors().response(404))
    assert body["code"] == "404000" and body["message"] == "Not Found"
    assert _json(MobilityWorkErrors(code_suffix="999").response(503))["code"] == "503999"
    assert reason_phrase(599) == "Error"


def test_click_maint_errors_are_status_error_and_a_message() -> None:
    response = ClickMaintErrors().invalid_api_key()
    assert response.status == 401
    assert _json(response) == {"status": "error", "message": "Invalid API key"}
    assert ClickMaintErrors(invalid_api_key_status=403).invalid_api_key().status == 403
    limited = ClickMaintErrors().response(429, "Too many requests", {"retry-after": "300"})
    assert limited.status == 429 and limited.headers["retry-after"] == "300"


def test_cmo_validation_is_the_documents_400() -> None:
    response = CmoErrors().validation(
        {
            "OrgUnitName": [
                "System is unable to find object based on the provided name(s). (Values: Albama)"
            ]
        }
    )
    assert response.status == 400
    assert _json(response) == {
        "message": "Model can't be processed due to following errors",
        "errors": [
            {
                "field": "OrgUnitName",
                "messages": [
                    "System is unable to find object based on the provided name(s). "
                    "(Values: Albama)"
                ],
            }
        ],
    }


def test_cmo_refused_delete_forbidden_and_unauthorized() -> None:
    refused = CmoErrors().refused("You cannot delete Actions created by Event Workflow")
    assert refused.status == 400
    assert _json(refused) == {"message": "You cannot delete Actions created by Event Workflow"}
    forbidden = CmoErrors().forbidden()
    assert forbidden.status == 403 and forbidden.body is None
    worded = CmoErrors(forbidden_message="no permission").forbidden()
    assert _json(worded) == {"message": "no permission"}
    assert CmoErrors().unauthorized().status == 401


def test_cloudworkpro_bad_request_is_the_documents_200_example() -> None:
    message = "The work types provided were not found in CWP platform"
    detail = "This error happens when you send work type IDs that do not exists in CWP platform"
    response = CloudworkProErrors().bad_request("WO_0005", message, detail)
    assert response.status == 200
    assert _json(response) == {
        "error": {"code": "WO_0005", "message": message, "detail": detail},
        "code": 400,
        "reason": message,
        "data": {},
        "success": True,
    }
    # "most" bad requests: a fake may answer one with a real 400.
    assert CloudworkProErrors().bad_request("X", "m", "d", http_status=400).status == 400


def test_cloudworkpro_other_errors_are_http_statuses() -> None:
    for status in (401, 403, 404, 422, 429, 500, 502, 503, 504):
        response = CloudworkProErrors().status(status)
        assert response.status == status
        body = _json(response)
        assert body["code"] == status and body["success"] is False
    expired = CloudworkProErrors().status(401, "token expired")
    assert _json(expired)["reason"] == "token expired"
    empty = CloudworkProErrors(status_body="empty").status(429, headers={"Retry-After": "1"})
    assert empty.status == 429 and empty.body is None and empty.headers["Retry-After"] == "1"
