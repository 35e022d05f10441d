"""One size limit from the HTTP body to the Kafka topic, so a webhook that fits never bounces.

A webhook body of up to `server.max_body_bytes` must always reach Kafka: as an event, or
(when its event would not fit) as a DLQ record made of the body and bounded headers. The
producer's `max_request_size` and the `max.message.bytes` of the events and DLQ topics are
therefore set from the body limit plus a fixed headroom, and an existing topic that allows
less stops start-up with a message that says which setting to change.
"""

from __future__ import annotations

from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from adapters.core.cloudevents_codec import Headers

# Room beside the body for CloudEvent headers, or the DLQ's copy of the request headers
# (capped at DLQ_REQUEST_HEADERS_BYTES) and its error text.
RECORD_HEADROOM_BYTES = 64 * 1024
DLQ_REQUEST_HEADERS_BYTES = 16 * 1024


def max_record_bytes(max_body_bytes: int) -> int:
    """The largest record a webhook may produce: what the producer and topics must allow."""
    return max_body_bytes + RECORD_HEADROOM_BYTES


def record_size(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    """The size Kafka's producer counts for one record (aiokafka's own upper bound)."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers))


class RecordLimitTooLow(Exception):
    """An existing topic cannot hold the largest webhook record; the message says what to do."""


async def check_topics_allow(admin: AIOKafkaAdminClient, topics: list[str], needed: int) -> None:
    """Raise `RecordLimitTooLow` if any topic's `max.message.bytes` is below `needed`."""
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in topics]
    responses = await admin.describe_configs(resources)
    allowed = _max_message_bytes(responses)
    short = {name: size for name, size in allowed.items() if size < needed}
    if short:
        listed = ", ".join(f"{name} allows {size}" for name, size in sorted(short.items()))
        raise RecordLimitTooLow(
            f"webhook records can be {needed} bytes (server.max_body_bytes plus "
            f"{RECORD_HEADROOM_BYTES} bytes of headers) but {listed}: raise the topics' "
            f"max.message.bytes to at least {needed}, or lower server.max_body_bytes"
        )


def _max_message_bytes(responses: list[Any]) -> dict[str, int]:
    # DescribeConfigs v0: resources = [(error_code, error_message, type, name, entries)],
    # entries = [(name, value, read_only, is_default, is_sensitive), ...].
    found: dict[str, int] = {}
    for response in responses:
        for error_code, error_message, _type, name, entries in response.resources:
            if error_code:
                raise RecordLimitTooLow(
                    f"cannot read the configuration of topic {name}: error {error_code} "
                    f"({error_message}); grant DescribeConfigs on it"
                )
            for entry in entries:
                if entry[0] == "max.message.bytes" and entry[1] is not None:
                    found[name] = int(entry[1])
    return found
