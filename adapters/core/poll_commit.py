"""The DLQ record for a polled record that cannot become an event."""

from __future__ import annotations

import msgspec

from adapters.core.change_source import DeadLetter
from adapters.core.cloudevents_codec import Headers


def dead_letter_record(
    dead: DeadLetter, *, instance: str, resource: str, scope: str | None
) -> tuple[bytes | None, bytes, Headers]:
    """Key, value and headers of the DLQ record: the record as the vendor listed it (JSON),
    and headers that say where it came from and why it is here."""
    headers: Headers = [
        ("workbridge_origin", b"poll"),
        ("workbridge_instance", instance.encode()),
        ("workbridge_resource", resource.encode()),
        ("workbridge_error", dead.reason.encode("utf-8", "replace")[:4000]),
    ]
    if scope is not None:
        headers.append(("workbridge_scope", scope.encode()))
    key = None
    if dead.record_id is not None:
        # The record's own events are keyed `<name>/<subject>`; a DLQ copy groups by resource.
        key = f"{instance}/{resource}/{dead.record_id}".encode()
    return key, msgspec.json.encode(dead.record), headers
