"""Dead-letter records: the original bytes and headers, plus headers that say what went wrong."""

from __future__ import annotations

from collections.abc import Mapping

from adapters.core.cloudevents_codec import Headers
from adapters.core.record_limits import DLQ_REQUEST_HEADERS_BYTES


def webhook_dlq_headers(
    request_headers: Mapping[str, str],
    *,
    instance: str,
    error: str,
    secret_headers: frozenset[str],
    max_request_header_bytes: int = DLQ_REQUEST_HEADERS_BYTES,
) -> Headers:
    """DLQ headers for an authentic webhook body that could not be parsed.

    Request headers are kept (as `http_<name>`) but for those that carry credentials, up to
    `max_request_header_bytes` in all, so the record always fits beside its body
    (record_limits); `workbridge_headers_truncated` says when some were left out.
    """
    headers: Headers = [
        ("workbridge_origin", b"webhook"),
        ("workbridge_instance", instance.encode()),
        ("workbridge_error", error.encode("utf-8", "replace")[:4000]),
    ]
    budget = max_request_header_bytes
    for name, value in request_headers.items():
        if name.lower() in secret_headers:
            continue
        key, raw = f"http_{name.lower()}", value.encode("utf-8", "replace")
        budget -= len(key) + len(raw)
        if budget < 0:
            headers.append(("workbridge_headers_truncated", b"true"))
            break
        headers.append((key, raw))
    return headers


def command_dlq_headers(original: Headers, *, instance: str, status: str, error: str) -> Headers:
    """DLQ headers for a command that was rejected or failed: its own headers plus the error."""
    return [
        *original,
        ("workbridge_origin", b"command"),
        ("workbridge_instance", instance.encode()),
        ("workbridge_status", status.encode()),
        ("workbridge_error", error.encode("utf-8", "replace")[:4000]),
    ]
