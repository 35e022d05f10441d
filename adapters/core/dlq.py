"""Dead-letter records: the original bytes and headers, plus headers that say what went wrong."""

from __future__ import annotations

from collections.abc import Mapping

from adapters.core.cloudevents_codec import Headers


def webhook_dlq_headers(
    request_headers: Mapping[str, str],
    *,
    instance: str,
    error: str,
    secret_headers: frozenset[str],
) -> Headers:
    """DLQ headers for an authentic webhook body that could not be parsed.

    Request headers are kept (as `http_<name>`) but for those that carry credentials.
    """
    headers: Headers = [
        ("workbridge_origin", b"webhook"),
        ("workbridge_instance", instance.encode()),
        ("workbridge_error", error.encode("utf-8", "replace")[:4000]),
    ]
    for name, value in request_headers.items():
        if name.lower() not in secret_headers:
            headers.append((f"http_{name.lower()}", value.encode("utf-8", "replace")))
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
