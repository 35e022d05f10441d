"""The two logs every fake vendor keeps for its tests: API requests and accepted writes.

`RequestLogEntry` is one API request with the status it got, `CallLogEntry` one write the
fake accepted, with its body. A fake extends each with what its vendor adds (MOCO's query
string, Click Maint's entity and batch op, CMO's kinds of authentication, …) and keeps them in
its `requests` and `calls` lists, which the shared control routes serve as JSON
(`adapters.fakekit_control`).
"""

from __future__ import annotations

from typing import Any

import msgspec


class RequestLogEntry(msgspec.Struct, kw_only=True):
    """One API request (not `/_fake`) with the status it got; `at` is its arrival (monotonic)."""

    method: str
    path: str
    status: int
    at: float


class CallLogEntry(msgspec.Struct, kw_only=True):
    """One accepted write through the API; `json` is its body as sent (None without one)."""

    method: str
    path: str
    json: Any
