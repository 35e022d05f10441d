"""Fake vendors' error answers: each vendor's envelope, built as an aiohttp `web.Response`.

- `MessageErrors` (MOCO): the HTTP status says what went wrong, the body `{"message": …}`.
- `MobilityWorkErrors`: the HTTP status and the document's body (`http_status_code`, `code`,
  `message`, `extended_message.global_errors/property_errors`, `more_info_url`).
- `ClickMaintErrors`: `{"status": "error", "message": …}`.
- `CmoErrors` (Mitratech CMO): 400 `{"message", "errors": [{"field", "messages": […]}]}`,
  a 400 with only `message` for a refused delete, 403 for a missing permission.
- `CloudworkProErrors`: most bad requests answer HTTP 200 with `"code": 400` and an `error`
  object `{"code", "message", "detail"}`; 401/403/404/422/429/5xx are HTTP statuses.

The envelopes hold no vendor logic (which check failed is the fake's to decide); where a
document shows no body for a status the guess is a field marked `# not in the vendor document`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal

from aiohttp import web

from adapters.fakekit import json_response

ErrorItem = dict[str, Any]
"""Mobility Work's `{"messageKey": …, "parameters": {…}}`."""


def reason_phrase(status: int) -> str:
    """The HTTP reason phrase of `status` ("Not Found"), or "Error" for an unknown code."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


@dataclass(frozen=True, kw_only=True)
class MessageErrors:
    """MOCO's errors: "mostly conformant with the general HTTP status codes" (401, 403, 404,
    422, 429), and for 401 and 422 "Check the error message in the response body"."""

    # The body's one key; the document names an "error message" but shows no body.
    message_key: str = "message"  # not in the vendor document

    def response(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        """`status` with `{"message": message}`."""
        return json_response({self.message_key: message}, status, headers)


@dataclass(frozen=True, kw_only=True)
class MobilityWorkErrors:
    """Mobility Work's 4xx body, keys in the document's order.

    The document shows two: 400 `"code": "400044"`, `"message": "The request payload is not
    valid."` with `property_errors` by JSON pointer, and 401 `"code": "401001"`, `"message":
    "Authentication error"` with the global error `"messageKey": "Invalid Api Key."`.
    """

    # Codes of errors the document shows no example of: f"{status}{suffix}", with the HTTP
    # reason phrase as message.
    code_suffix: str = "000"  # not in the vendor document

    def response(
        self,
        status: int,
        *,
        code: str | None = None,
        message: str | None = None,
        global_errors: Sequence[ErrorItem] = (),
        property_errors: Mapping[str, Sequence[ErrorItem]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        """`status` in the document's shape; code and message default as `code_suffix` says."""
        body = {
            "http_status_code": status,
            "code": code if code is not None else f"{status}{self.code_suffix}",
            "message": message if message is not None else reason_phrase(status),
            "extended_message": {
                "global_errors": list(global_errors),
                "property_errors": {k: list(v) for k, v in (property_errors or {}).items()},
            },
            "more_info_url": None,
        }
        return json_response(body, status, headers)

    def invalid_payload(
        self,
        property_errors: Mapping[str, Sequence[ErrorItem]],
        global_errors: Sequence[ErrorItem] = (),
    ) -> web.Response:
        """The document's 400: `"code": "400044"`, every invalid property by JSON pointer."""
        return self.response(
            400,
            code="400044",
            message="The request payload is not valid.",
            global_errors=global_errors,
            property_errors=property_errors,
        )

    def unauthorized(self, headers: Mapping[str, str] | None = None) -> web.Response:
        """The document's 401 for an invalid API key (`"code": "401001"`)."""
        return self.response(
            401,
            code="401001",
            message="Authentication error",
            global_errors=[error_item("Invalid Api Key.")],
            headers=headers,
        )


def error_item(message_key: str, **parameters: Any) -> ErrorItem:
    """One Mobility Work error: `{"messageKey": message_key, "parameters": {…}}`."""
    return {"messageKey": message_key, "parameters": parameters}


@dataclass(frozen=True, kw_only=True)
class ClickMaintErrors:
    """Click Maint's errors: `{"status": "error", "message": …}` (the document's one example is
    `"message": "Invalid API key"`; it gives no HTTP status for it)."""

    invalid_api_key_status: int = 401  # not in the vendor document

    def response(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        """`status` with `{"status": "error", "message": message}`."""
        return json_response({"status": "error", "message": message}, status, headers)

    def invalid_api_key(self, headers: Mapping[str, str] | None = None) -> web.Response:
        """The document's example error, with `invalid_api_key_status`."""
        return self.response(self.invalid_api_key_status, "Invalid API key", headers)


@dataclass(frozen=True, kw_only=True)
class CmoErrors:
    """Mitratech CMO's errors for actions.

    The document: invalid data is "HTTP 400 Bad Request … and the error detail in JSON format"
    `{"message": "Model can't be processed due to following errors", "errors": [{"field":
    "OrgUnitName", "messages": ["System is unable to find object …"]}]}`; a delete refused
    "due to some restriction unrelated to user permissions" is 400 `{"message": "You cannot
    delete Actions created by Event Workflow"}`; a missing role permission is "HTTP 403
    Forbidden response code", with no body shown.
    """

    validation_message: str = "Model can't be processed due to following errors"
    # Body of a 403: None = empty, else `{"message": forbidden_message}`.
    forbidden_message: str | None = None  # not in the vendor document
    # A missing, expired or unknown token (the document names no status for it).
    unauthorized_status: int = 401  # not in the vendor document

    def validation(self, errors: Mapping[str, Sequence[str]]) -> web.Response:
        """400 listing, per field name (e.g. `OrgUnitName`), its messages."""
        body = {
            "message": self.validation_message,
            "errors": [
                {"field": field, "messages": list(messages)} for field, messages in errors.items()
            ],
        }
        return json_response(body, 400)

    def refused(self, message: str) -> web.Response:
        """400 with `{"message": message}` only (the document's refused delete)."""
        return json_response({"message": message}, 400)

    def forbidden(self) -> web.Response:
        """403 for a role permission the user lacks."""
        if self.forbidden_message is None:
            return web.Response(status=403)
        return json_response({"message": self.forbidden_message}, 403)

    def unauthorized(self) -> web.Response:
        """`unauthorized_status` with an empty body."""
        return web.Response(status=self.unauthorized_status)


@dataclass(frozen=True, kw_only=True)
class CloudworkProErrors:
    """CLOUDWORK|PRO's errors.

    The document: "most `400 Bad Request Errors` are handled in a different way. You will
    receive a 200 HTTP status code with an error code 400 in the response", its example
    `{"error": {"code": "WO_0005", "message": …, "detail": …}, "code": 400, "reason": <the
    message>, "data": {}, "success": true}` (`success` is true there). The other codes are
    plain HTTP statuses: 401 (no or expired token), 403, 404, 422 (a wrong Content-Type),
    429 (back off exponentially), 500/502/503/504.
    """

    # HTTP status of a bad request: the document's 200; "most", so a fake may answer some
    # with a real 400 (see `bad_request`'s http_status).
    bad_request_http_status: int = 200
    # Body of a 401/403/404/422/429/5xx, which the document does not show: "envelope" =
    # `{"code": <status>, "reason": <phrase>, "data": {}, "success": false}`, "empty" = none.
    status_body: Literal["envelope", "empty"] = "envelope"  # not in the vendor document

    def bad_request(
        self,
        code: str,
        message: str,
        detail: str,
        *,
        http_status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        """A bad request: `{"error": {"code", "message", "detail"}, "code": 400, …}`."""
        body = {
            "error": {"code": code, "message": message, "detail": detail},
            "code": 400,
            "reason": message,
            "data": {},
            "success": True,
        }
        status = self.bad_request_http_status if http_status is None else http_status
        return json_response(body, status, headers)

    def status(
        self, status: int, reason: str | None = None, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        """An error told by its HTTP status (401, 403, 404, 422, 429, 5xx)."""
        if self.status_body == "empty":
            return web.Response(status=status, headers=headers)
        body = {
            "code": status,
            "reason": reason if reason is not None else reason_phrase(status),
            "data": {},
            "success": False,
        }
        return json_response(body, status, headers)
