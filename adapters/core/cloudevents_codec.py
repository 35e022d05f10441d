"""CloudEvents on Kafka through the SDK's binding (binary by default, structured by option)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka, to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

ContentMode = Literal["binary", "structured"]
Headers = list[tuple[str, bytes]]

_FORMAT = JSONFormat()
JSON = "application/json"


def stable_id(*parts: str | bytes) -> str:
    """A deterministic event id from what identifies one vendor delivery or change."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else part.encode("utf-8"))
        digest.update(b"\x1f")  # separator: ("ab","c") and ("a","bc") differ
    return digest.hexdigest()[:32]


def make_event(
    *,
    id: str,
    source: str,
    type: str,
    subject: str | None,
    partitionkey: str,
    data: bytes,
    time: datetime | None = None,
    dataschema: str | None = None,
    extensions: dict[str, str] | None = None,
) -> CloudEvent:
    """A CloudEvent whose `data` is already-encoded JSON (never re-encoded by the SDK)."""
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": id,
        "source": source,
        "type": type,
        "datacontenttype": JSON,
        "time": (time or datetime.now(UTC)),
        "partitionkey": partitionkey,
    }
    if subject:
        attributes["subject"] = subject
    if dataschema:
        attributes["dataschema"] = dataschema
    attributes.update(extensions or {})
    return CloudEvent(attributes, data)


def to_kafka(
    event: CloudEvent, mode: ContentMode = "binary"
) -> tuple[bytes | None, bytes, Headers]:
    """Encode for aiokafka: (key, value, headers). The key is the event's partitionkey."""
    if mode == "binary":
        message = to_binary(event, _FORMAT)
    else:
        # Structured mode serialises the whole event as JSON; hand it decoded data, not bytes,
        # so it lands as `data` and not as `data_base64`.
        raw = event.get_data()
        data = msgspec.json.decode(raw) if isinstance(raw, bytes) and raw else raw
        attrs = dict(event.get_attributes())
        message = to_structured(CloudEvent(attrs, data), _FORMAT)
    key = message.key.encode("utf-8") if isinstance(message.key, str) else message.key
    return key, message.value, list(message.headers.items())


class NotACloudEvent(Exception):
    """A Kafka record that is not a readable CloudEvent."""


def from_record(key: bytes | None, value: bytes | None, headers: Headers) -> CloudEvent:
    """Decode a binary or structured CloudEvent from a Kafka record.

    Only `ce_*` and `content-type` headers are handed to the SDK: it decodes every header as
    UTF-8 and a foreign binary header (tracing, schema ids) would otherwise make it raise.
    """
    kept: dict[str, bytes] = {}
    for name, raw in headers:
        lower = name.lower()
        if lower.startswith("ce_") or lower == "content-type":
            kept[lower] = raw
    try:
        event = from_kafka(KafkaMessage(headers=kept, key=key, value=value or b""), _FORMAT)
    except Exception as exc:  # the SDK raises several unrelated types for malformed input
        raise NotACloudEvent(f"{type(exc).__name__}: {exc}") from None
    if not isinstance(event, CloudEvent):
        raise NotACloudEvent("only CloudEvents 1.0 is accepted")
    return event
