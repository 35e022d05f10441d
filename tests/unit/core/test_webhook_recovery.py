"""Missed-webhook recovery: a stored notification becomes the event its delivery got.

Shaped after CLOUDWORK|PRO's document: notifications `<THING>.<VERB>` (`WORKORDER.CREATE`,
`SITE.CREATE`) with a `created_date`, kept for three months and listed with cursor pagination
(`pagination.hasNext/nextCursor/totalResults`). The document gives neither the listing's path
nor the notification's other fields: the ones here are a test's own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from adapters.core.cloudevents_codec import stable_id
from adapters.core.list_source import ListByReplicationKey
from adapters.core.pagination import CursorPaginator, PageRequest
from adapters.core.vendor import EventDraft, WebhookRequest, WebhookUnparseable
from adapters.core.vendor_http import VendorResponse
from adapters.core.webhook_recovery import as_delivered
from tests.unit.core.poll_harness import Runner


def cwp_style_webhook(request: WebhookRequest, instance: str) -> list[EventDraft]:
    """A webhook mapper as a CLOUDWORK|PRO connector has one: the id is the notification's."""
    try:
        body = msgspec.json.decode(request.body)
        thing, verb = body["event"].split(".")
        record = body["data"]
        created = body["created_date"]
    except (msgspec.DecodeError, KeyError, ValueError, AttributeError, TypeError) as exc:
        raise WebhookUnparseable(f"not a notification: {exc!r}") from None
    if thing == "BATCH":  # a test's own: one notification, several changes
        return [_draft(instance, "site", r, created, verb) for r in record]
    resource = {"WORKORDER": "work_order", "SITE": "site"}[thing]
    return [_draft(instance, resource, record, created, verb)]


def _draft(instance: str, resource: str, record: Any, created: str, verb: str) -> EventDraft:
    return EventDraft(
        type=f"workbridge.cloudworkpro.{resource}.{verb.lower()}d",
        subject=f"{resource}/{record['_id']}",
        id=stable_id(instance, resource, record["_id"], verb, created),
        time=datetime.fromisoformat(created),
        data=msgspec.json.encode(record),
    )


def notification(event: str, rid: str, created: str) -> dict[str, Any]:
    return {"event": event, "created_date": created, "data": {"_id": rid, "name": rid}}


class StoredNotifications:
    """Lists notifications a page at a time, with an opaque cursor."""

    def __init__(self, *stored: dict[str, Any]) -> None:
        self.stored = list(stored)
        self.sent: list[PageRequest] = []

    async def __call__(self, request: PageRequest) -> VendorResponse:
        self.sent.append(request)
        start = int(request.params.get("cursor", "next_0").removeprefix("next_"))
        size = int(request.params["limit"])
        rows = self.stored[start : start + size]
        more = start + size < len(self.stored)
        body = {
            "code": 200,
            "data": rows,
            "pagination": {
                "hasNext": more,
                "nextCursor": f"next_{start + size}" if more else "",
                "totalResults": len(self.stored),
            },
            "success": True,
        }
        return VendorResponse(200, {}, msgspec.json.encode(body), {})


def recovery() -> ListByReplicationKey:
    return ListByReplicationKey(
        path="/webhooks/notifications",  # a test's own: the document gives no path
        paginator=CursorPaginator(),
        replication_key="created_date",
        parse_time=datetime.fromisoformat,
        to_event=as_delivered(cwp_style_webhook),
        primary_key="_id",
        records_at=("data",),
        params={"sortBy": "created_date:asc"},
    )


def stored_with_ids(*stored: dict[str, Any]) -> list[dict[str, Any]]:
    # The listing's primary key: a notification's own id (here: its record's and its time).
    return [{**n, "_id": f"{n['data']['_id']}@{n['created_date']}"} for n in stored]


async def test_a_recovered_notification_is_the_event_its_delivery_got() -> None:
    missed = notification(
        "WORKORDER.CREATE", "633cf3e1bb4e2453a0497b65", "2026-11-30T10:00:00+00:00"
    )
    site = notification("SITE.CREATE", "s-1", "2026-11-30T10:05:00+00:00")
    delivered = cwp_style_webhook(
        WebhookRequest(headers={}, body=msgspec.json.encode(missed), received_at=datetime.now(UTC)),
        "acme",
    )
    vendor = StoredNotifications(*stored_with_ids(missed, site))
    run = Runner(recovery(), vendor, resource="notifications", page_size=1)
    done = await run.cycle()
    assert done.events[0] == delivered[0]
    assert [e.type for e in done.events] == [
        "workbridge.cloudworkpro.work_order.created",
        "workbridge.cloudworkpro.site.created",
    ]
    # Every page kept the first request's query.
    assert all(r.params["sortBy"] == "created_date:asc" for r in vendor.sent)
    assert vendor.sent[1].params["cursor"] == "next_1"


async def test_a_second_recovery_publishes_nothing_again() -> None:
    vendor = StoredNotifications(
        *stored_with_ids(notification("SITE.CREATE", "s-1", "2026-11-30T10:05:00+00:00"))
    )
    run = Runner(recovery(), vendor, resource="notifications")
    first = await run.cycle()
    again = await run.cycle()
    assert len(first.events) == 1 and again.events == []


async def test_a_notification_the_webhook_mapper_refuses_goes_to_the_dlq_and_the_rest_goes_on() -> (
    None
):
    broken = {"event": "NOT-A-THING", "created_date": "2026-11-30T09:00:00+00:00", "data": {}}
    batch = {
        "event": "BATCH.CREATE",
        "created_date": "2026-11-30T09:30:00+00:00",
        "data": [{"_id": "a"}, {"_id": "b"}],
    }
    good = notification("SITE.CREATE", "s-2", "2026-11-30T10:00:00+00:00")
    vendor = StoredNotifications(
        {**broken, "_id": "n-1"}, {**batch, "_id": "n-2"}, *stored_with_ids(good)
    )
    run = Runner(recovery(), vendor, resource="notifications")
    done = await run.cycle()
    assert [e.subject for e in done.events] == ["site/s-2"]
    reasons = {d.record_id: d.reason for d in done.dead}
    assert "webhook mapper refused" in reasons["n-1"]
    assert "mapped to 2 events" in reasons["n-2"]
    # Dead letters are not sent again by the next pass.
    assert (await run.cycle()).dead == []
