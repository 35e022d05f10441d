"""The outcome event of a command (CONTRACT.md: one per command, on `command-results`)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Status = Literal["succeeded", "failed", "rejected", "conflict", "ambiguous"]

# Header names vendors use for their request id; the first present wins.
REQUEST_ID_HEADERS = ("request-id", "x-request-id", "x-amzn-requestid", "x-correlation-id")


class CommandResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`data` of a `<command type>.result` event."""

    status: Status
    command_type: str
    idempotency_key: str
    attempts: int = 0
    http_status: int | None = None
    request_id: str | None = None
    # The vendor's answer on success (e.g. the new resource with its id).
    response: Any = None
    # What went wrong: the vendor's error as it gave it, or Workbridge's own message.
    error: Any = None
    reason: str | None = None
    # Set when this command repeated an earlier one's key: that command's id.
    duplicate_of: str | None = None
    # True when the vendor said it accepted the request for later processing (HTTP 202).
    accepted_async: bool | None = None


def request_id(headers: dict[str, str]) -> str | None:
    """The vendor's request id from its response headers, if it sends one."""
    for name in REQUEST_ID_HEADERS:
        if name in headers:
            return headers[name]
    return None
