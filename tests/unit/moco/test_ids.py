"""One id per MOCO change: the webhook of a change and the poll of the same version agree."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from adapters.core.change_source import PolledRecord
from adapters.core.vendor import WebhookRequest
from adapters.moco import webhooks
from adapters.moco.ids import parse_time
from adapters.moco.resources import POLL

RECORD = {
    "id": 760253573,
    "name": "Beispiel AG",
    "created_at": "2026-11-30T10:00:00Z",
    "updated_at": "2026-11-30T10:05:00Z",
}


def hook(record: dict[str, object], action: str, target: str = "Customer") -> str:
    request = WebhookRequest(
        headers={"x-moco-target": target, "x-moco-event": action},
        body=msgspec.json.encode(record),
        received_at=datetime.now(UTC),
    )
    [event] = webhooks.to_events(request, "acme")
    return event.id


def polled(record: dict[str, object], resource: str = "companies") -> str:
    source = POLL.resources[resource].source
    seen = PolledRecord(
        instance="acme",
        resource=resource,
        scope=None,
        id=str(record["id"]),
        changed=parse_time(str(record["updated_at"])),
        record=dict(record),
    )
    return source.to_event(seen).id  # type: ignore[attr-defined,no-any-return]


def test_a_webhook_and_the_poll_of_the_same_version_have_one_id() -> None:
    assert hook(RECORD, "update") == polled(RECORD)
    assert hook(RECORD, "create") == polled(RECORD)
    # Other key order and spacing in the body: the same change.
    assert hook(dict(reversed(RECORD.items())), "update") == polled(RECORD)
    # The same instant written another way.
    assert hook({**RECORD, "updated_at": "2026-11-30T10:05:00+00:00"}, "update") == polled(RECORD)


def test_another_version_is_another_change() -> None:
    later = {**RECORD, "updated_at": "2026-11-30T10:06:00Z"}
    assert hook(later, "update") != polled(RECORD)
    assert hook(later, "update") == polled(later)


def test_the_same_id_in_another_resource_or_instance_is_another_change() -> None:
    project = {**RECORD}
    assert hook(project, "update", target="Project") != hook(RECORD, "update")
    assert hook(project, "update", target="Project") == polled(project, "projects")


def test_a_delete_is_not_the_last_update() -> None:
    assert hook(RECORD, "delete") != hook(RECORD, "update")
    assert hook(RECORD, "delete") == hook(RECORD, "delete")  # a redelivery


def test_a_body_without_a_readable_update_time_keeps_an_id_of_its_own() -> None:
    bare = {"id": 1, "name": "x"}
    assert hook(bare, "update") == hook(bare, "update")
    assert hook({**bare, "updated_at": "yesterday"}, "update") != polled(RECORD)
