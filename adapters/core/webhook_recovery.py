"""Recovery of missed webhooks through the vendor's API, as one event per change.

A vendor that keeps its notifications (CLOUDWORK|PRO: three months) lets a poll task list them
like any other resource: a `ListByReplicationKey` over the stored notifications, ordered by
their creation time. What makes it a recovery rather than a second copy is the mapper built
here: it hands each stored notification to the vendor's own webhook mapper, as if it had just
been delivered, so the event has the type, subject and id the delivery got (or would have
got). A consumer that deduplicates by id sees each change once, whichever path brought it,
and a redelivery, a recovery and a delivery that arrived late are one event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from adapters.core.change_source import PolledRecord, RecordMapper, UnmappableRecord
from adapters.core.vendor import EventDraft, WebhookMapper, WebhookRequest, WebhookUnparseable


def as_delivered(
    to_events: WebhookMapper,
    *,
    delivery: Callable[[dict[str, Any]], Any] = lambda record: record,
) -> RecordMapper:
    """A `RecordMapper` that maps a stored notification with the webhook path's `to_events`.

    `delivery` takes the notification as the API lists it to the body the vendor delivers
    (default: the same object). A notification that maps to no event, or to several, or that
    the webhook mapper cannot read, goes to the DLQ with the reason.
    """

    def to_event(seen: PolledRecord) -> EventDraft:
        request = WebhookRequest(
            headers={"content-type": "application/json"},
            body=msgspec.json.encode(delivery(seen.record)),
            received_at=seen.changed,
        )
        try:
            drafts = to_events(request, seen.instance)
        except WebhookUnparseable as exc:
            raise UnmappableRecord(
                f"a stored notification the webhook mapper refused: {exc}"
            ) from None
        if len(drafts) != 1:
            raise UnmappableRecord(
                f"a stored notification mapped to {len(drafts)} events; a recovery publishes "
                "one event per notification"
            )
        return drafts[0]

    return to_event
