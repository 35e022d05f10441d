"""A command record decoded, and what validation makes of it."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from aiokafka.structs import ConsumerRecord
from cloudevents.core.v1.event import CloudEvent

from adapters.core.cloudevents_codec import NotACloudEvent, from_record, stable_id
from adapters.core.vendor import CommandSpec, PreparedCall


@dataclass
class Command:
    """A command record, decoded as far as it could be."""

    record: ConsumerRecord[bytes, bytes]
    event: CloudEvent | None
    command_id: str
    command_type: str
    subject: str
    idem_key: str
    # Why a record that decoded is still no command (with `event` None).
    problem: str | None = None

    @property
    def offset(self) -> int:
        """The record's offset in its commands partition."""
        return int(self.record.offset)


@dataclass(frozen=True)
class Checked:
    """A command that can be sent: its spec, its data, the call it becomes, and the digest
    of what it asks for (the same key with another digest is a conflict)."""

    spec: CommandSpec
    data: msgspec.Struct
    call: PreparedCall
    digest: str


@dataclass(frozen=True)
class Rejected:
    """A command that can never be sent, and why."""

    problem: str


def decode_command(record: ConsumerRecord[bytes, bytes]) -> Command:
    """The command in a record; a record that is none still gets ids, so it can be answered."""
    fallback_id = stable_id(record.topic, str(record.partition), str(record.offset))
    key_subject = record.key.decode("utf-8", "replace") if record.key else f"offset/{record.offset}"
    try:
        event = from_record(record.key, record.value, list(record.headers))
    except NotACloudEvent:
        return Command(record, None, fallback_id, "unknown", key_subject, fallback_id)
    attrs = event.get_attributes()
    command_id = str(attrs.get("id") or fallback_id)
    idem = str(attrs.get("idempotencykey") or command_id)
    subject = str(attrs.get("subject") or key_subject)
    command_type = str(attrs.get("type", "unknown"))
    if not _utf8(command_id, idem, subject, command_type):
        # JSON (structured mode) can carry lone surrogates, which no Kafka key or header
        # can: such a command could never be answered and would hold its offset forever.
        problem = "id, idempotencykey, subject and type must be valid Unicode text"
        return Command(record, None, fallback_id, "unknown", key_subject, fallback_id, problem)
    return Command(record, event, command_id, command_type, subject, idem)


def _utf8(*texts: str) -> bool:
    try:
        for text in texts:
            text.encode()
    except UnicodeEncodeError:
        return False
    return True
