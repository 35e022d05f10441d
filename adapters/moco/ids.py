"""One event id per MOCO change, whichever path brought it.

A MOCO webhook carries the record as it is after the change, with its `updated_at`, and a
listing shows the same record with the same `updated_at`. So the id of both events is the
instance, the resource, the record's id and that time: a consumer that deduplicates by id
sees a change once, from the webhook or from the next poll, whichever came first. A
delete leaves nothing to list; its id rests on the signed body (see webhooks.py).
"""

from __future__ import annotations

from datetime import UTC, datetime

from adapters.core.cloudevents_codec import stable_id


def parse_time(value: str) -> datetime:
    """MOCO timestamps: ISO 8601 in UTC."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def change_event_id(instance: str, resource: str, record_id: object, updated_at: datetime) -> str:
    """The id of the event for `resource/record_id` as it was at `updated_at`."""
    when = updated_at.astimezone(UTC).isoformat()
    return stable_id(instance, "change", resource, str(record_id), when)
