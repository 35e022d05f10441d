"""One event id per CLOUDWORK|PRO change, whichever path brought it.

A change can reach the events topic three ways: the webhook push (retried up to 5 times),
the missed-webhook recovery (the stored notification, mapped as if delivered), and the poll
of work orders and sites. The push and the recovery of one notification are the same
notification; the poll sees the record it is about. So the id rests on the record: the
instance, the resource, the record's `_id` and its change time (its `updated_date`, else its
`created_date`): the same version of a record is one id on every path. A notification
without a readable record falls back to its own id, then to its body.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from adapters.cloudworkpro.undocumented import CREATED_FIELD, ID_FIELD, UPDATED_FIELD
from adapters.core.cloudevents_codec import stable_id


def parse_time(value: str) -> datetime:
    """An ISO 8601 time (`Z` or an offset; a naive one is taken as UTC)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def record_version(record: Any) -> tuple[str, datetime] | None:
    """The record's id and change time, when it has both."""
    if not isinstance(record, dict):
        return None
    rid = record.get(ID_FIELD) or record.get("id")
    when = record.get(UPDATED_FIELD) or record.get(CREATED_FIELD)
    if rid is None or not isinstance(when, str):
        return None
    try:
        return str(rid), parse_time(when)
    except ValueError:
        return None


def change_event_id(instance: str, resource: str, record_id: str, changed: datetime) -> str:
    """The id of the event for `resource/record_id` as it was at `changed`."""
    when = changed.astimezone(UTC).isoformat()
    return stable_id(instance, "change", resource, record_id, when)
