"""CLOUDWORK|PRO on the real broker: webhooks from allow-listed addresses with Basic auth, one
event id for a change pushed, polled and recovered, missed-webhook recovery across a restart,
cursor paging while records change, and commands: the 200-with-code-400 error, a 401 renewed
once, 429 backoff, a multipart upload.

The fake delivers from 127.0.0.2 (on Linux all of 127/8 is loopback), so the receiver checks
a real peer address, not a mocked one.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from adapters.app import Bridge
from adapters.backfill import BackfillError, backfill
from adapters.cloudworkpro.fake import FakeCloudworkPro, FakeCloudworkProBehaviour
from adapters.cloudworkpro.webhooks import to_events
from adapters.config import Config, parse_config
from adapters.core.kafka import Topics
from adapters.core.vendor import WebhookRequest
from tests.integration.conftest import (
    Outgoing,
    publish_commands,
    read_events,
    results_by_command,
)
from tests.integration.conftest import wait_until as shared_wait_until

pytestmark = pytest.mark.integration

NAME = "cwp"
P = "workbridge.cloudworkpro"
CLIENT_ID, CLIENT_SECRET = "workbridge", "cwp-client-secret-5e1b"
HOOK_USER, HOOK_PASSWORD = "cwp-hooks", "hook-password-88d2"
SOURCE = "127.0.0.2"
COMMANDS = {"enabled": True, "deadline_s": 30, "backoff_base_s": 0.1, "backoff_max_s": 0.5}
WORK_TYPE = "636953eebf54aa00087e75ee"  # the document's example work type


def cwp_config(bootstrap: str, prefix: str, base_url: str, **instance: Any) -> Config:
    raw: dict[str, Any] = {
        "vendor": "cloudworkpro",
        "name": NAME,
        "base_url": base_url,
        "credentials": {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "webhook_user": HOOK_USER,
            "webhook_password": HOOK_PASSWORD,
        },
        "webhooks": {"enabled": True},
        "polling": {"enabled": False},
        "options": {"webhook_sources": [f"{SOURCE}/32"]},
        **instance,
    }
    return parse_config(
        {
            "kafka": {
                "bootstrap_servers": bootstrap,
                "topic_prefix": prefix,
                "topics": {"partitions": 2, "replication_factor": 1},
                "send_timeout_s": 3.0,
            },
            "server": {"host": "127.0.0.1", "port": 0, "shutdown_grace_s": 5},
            "instances": [raw],
        }
    )


StartBridge = Callable[..., Awaitable[Bridge]]


def behaviour(**changes: Any) -> FakeCloudworkProBehaviour:
    fields: dict[str, Any] = {
        "webhook_source_addresses": (SOURCE,),
        "webhook_retry_unit_s": 0.05,
        "rate_limit_requests": 1000,
        **changes,
    }
    return FakeCloudworkProBehaviour(**fields)


@pytest.fixture
async def fake() -> AsyncIterator[FakeCloudworkPro]:
    server = FakeCloudworkPro(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, behaviour=behaviour()
    )
    server.add_work_type(WORK_TYPE, "WiFi Heat Mapping", "WiFi Heat Mapping")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def start(kafka_bootstrap: str, prefix: str) -> AsyncIterator[StartBridge]:
    bridges: list[Bridge] = []

    async def run(server: FakeCloudworkPro, **instance: Any) -> Bridge:
        assert server.base_url is not None
        bridge = Bridge(cwp_config(kafka_bootstrap, prefix, server.base_url, **instance))
        await bridge.start()
        bridges.append(bridge)
        return bridge

    yield run
    for bridge in bridges:
        if bridge.server is not None and not bridge.server.draining:
            await bridge.stop()


def hook_url(bridge: Bridge) -> str:
    return f"http://127.0.0.1:{bridge.port}/webhooks/{NAME}"


@dataclasses.dataclass(frozen=True)
class Event:
    id: str
    type: str
    subject: str
    data: Any


async def events(
    bootstrap: str, prefix: str, count: int, *, settle: float = 1.0, wait_s: float = 30.0
) -> list[Event]:
    topic = Topics(prefix, NAME).events
    out = []
    for event in await read_events(bootstrap, topic, count, settle=settle, wait_s=wait_s):
        attrs = event.get_attributes()
        out.append(Event(attrs["id"], attrs["type"], attrs["subject"], event.get_data()))
    return out


async def results(
    bootstrap: str, prefix: str, count: int, *, settle: float = 0.5, wait_s: float = 60.0
) -> dict[str, dict[str, Any]]:
    topic = Topics(prefix, NAME).results
    return await results_by_command(bootstrap, topic, count, settle=settle, wait_s=wait_s)


async def publish(bootstrap: str, prefix: str, commands: list[Outgoing]) -> list[str]:
    return await publish_commands(bootstrap, prefix, commands, instance=NAME)


wait_until = shared_wait_until


def pushed_id(notification: dict[str, Any]) -> str:
    """The event id a delivery of this stored notification gets (the webhook's mapper)."""
    request = WebhookRequest(
        headers={"content-type": "application/json"},
        body=msgspec.json.encode(notification),
        received_at=datetime.now(UTC),
    )
    [draft] = to_events(request, NAME)
    return draft.id


# --- webhooks -----------------------------------------------------------------------------------


async def test_a_webhook_from_the_allowed_source_with_basic_auth_is_one_event_with_its_poll(
    kafka_bootstrap: str, prefix: str, fake: FakeCloudworkPro, start: StartBridge
) -> None:
    polling = {"enabled": True, "interval_s": 0.5, "resources": ["work_orders"]}
    bridge = await start(fake, polling=polling)
    fake.add_listener(hook_url(bridge), username=HOOK_USER, password=HOOK_PASSWORD)
    made = fake.create_record("work_orders", {"name": "Heat map", "work_type_ids": [WORK_TYPE]})
    await fake.wait_deliveries_idle(10)
    assert [(d.status, d.source) for d in fake.deliveries] == [(200, SOURCE)]
    # The push and the next poll of the same version: two records, one event id.
    found = await events(kafka_bootstrap, prefix, 2, settle=1.5)
    assert {(e.type, e.subject) for e in found} == {
        (f"{P}.work_order.created", f"work_order/{made['_id']}")
    }
    assert len({e.id for e in found}) == 1
    # A redelivery (the vendor retries, byte for byte) is the same id again.
    [note] = fake.notifications()
    fake.redeliver(note["_id"])
    await fake.wait_deliveries_idle(10)
    again = await events(kafka_bootstrap, prefix, 3, settle=1.0)
    assert len({e.id for e in again}) == 1


async def test_wrong_basic_credentials_and_other_sources_are_refused_and_publish_nothing(
    kafka_bootstrap: str, prefix: str, fake: FakeCloudworkPro, start: StartBridge
) -> None:
    bridge = await start(fake)
    fake.add_listener(hook_url(bridge), username=HOOK_USER, password="not-the-password")
    fake.create_record("sites", {"name": "North"})
    await wait_until(lambda: len(fake.deliveries) >= 1, 10, "a delivery")
    assert fake.deliveries[0].status == 401
    for listener in fake.listeners:
        fake.remove_listener(listener.id)

    # The right credentials from an address outside the allowlist: 403.
    fake.behaviour = msgspec.structs.replace(
        fake.behaviour, webhook_source_addresses=("127.0.0.3",)
    )
    fake.add_listener(hook_url(bridge), username=HOOK_USER, password=HOOK_PASSWORD)
    fake.create_record("sites", {"name": "South"})
    await wait_until(lambda: any(d.source == "127.0.0.3" for d in fake.deliveries), 10, "it")
    assert next(d.status for d in fake.deliveries if d.source == "127.0.0.3") == 403
    assert await events(kafka_bootstrap, prefix, 1, settle=0.5, wait_s=2) == []


# --- missed-webhook recovery --------------------------------------------------------------------


async def test_recovery_publishes_exactly_the_missed_notifications_with_their_push_ids(
    kafka_bootstrap: str, prefix: str, fake: FakeCloudworkPro, start: StartBridge
) -> None:
    recovery = {"enabled": True, "interval_s": 0.5, "resources": ["webhook_notifications"]}
    bridge = await start(fake, polling=recovery | {"page_size": 2})
    fake.add_listener(hook_url(bridge), username=HOOK_USER, password=HOOK_PASSWORD)
    fake.create_record("work_orders", {"name": "delivered"})
    await fake.wait_deliveries_idle(10)
    fake.webhooks_down()  # stored, not delivered: what recovery is for
    missed = [fake.create_record("work_orders", {"name": f"missed {i}"}) for i in range(3)]
    missed.append(fake.create_record("sites", {"name": "missed site"}))
    fake.webhooks_down(False)
    notes = fake.notifications()
    assert len(notes) == 5 and len(fake.lost) == 4
    found = await events(kafka_bootstrap, prefix, 5, settle=2.5)
    # Each notification once: the delivered one (pushed, and not recovered again: its event
    # is on the topic) and the four missed ones, under the ids their pushes would have had.
    assert len(found) == 5
    assert {e.id for e in found} == {pushed_id(n) for n in notes}
    by_subject = {e.subject for e in found}
    assert {f"work_order/{r['_id']}" for r in missed[:3]} <= by_subject
    assert f"site/{missed[3]['_id']}" in by_subject


async def test_a_restart_mid_recovery_loses_and_repeats_nothing(
    kafka_bootstrap: str, prefix: str, fake: FakeCloudworkPro, start: StartBridge
) -> None:
    fake.webhooks_down()
    for i in range(7):
        fake.create_record("work_orders", {"name": f"missed {i}"})
    recovery = {
        "enabled": True,
        "interval_s": 0.3,
        "resources": ["webhook_notifications"],
        "page_size": 2,
        "max_pages": 1,
    }
    bridge = await start(fake, polling=recovery, webhooks={"enabled": False})
    await events(kafka_bootstrap, prefix, 2, settle=0.0)  # the first page committed
    await bridge.stop()
    await start(fake, polling=recovery, webhooks={"enabled": False})
    found = await events(kafka_bootstrap, prefix, 7, settle=2.0)
    assert len(found) == 7 and len({e.id for e in found}) == 7
    assert {e.id for e in found} == {pushed_id(n) for n in fake.notifications()}


# --- polling --------------------------------------------------------------------------------------


async def test_cursor_paging_while_records_change_publishes_every_version_once(
    kafka_bootstrap: str, prefix: str, fake: FakeCloudworkPro, start: StartBridge
) -> None:
    made = [fake.create_record("sites", {"name": f"site {i}"}, notify=False) for i in range(7)]
    changed: list[str] = []

    def during(resource: str, page: int) -> None:
        if resource == "sites" and page == 1 and not changed:
            # A record already listed changes while the listing goes on.
            changed.append(made[-1]["_id"])
            fake.update_record("sites", made[-1]["_id"], {"name": "renamed"}, notify=False)

    fake.after_list_page = during
    polling = {"enabled": True, "interval_s": 0.4, "resources": ["sites"], "page_size": 2}
    await start(fake, polling=polling, webhooks={"enabled": False})
    found = await events(kafka_bootstrap, prefix, 8, settle=2.0)
    assert len(found) == 8 and len({e.id for e in found}) == 8
    assert sorted(e.subject for e in found) == sorted(
        [f"site/{r['_id']}" for r in made] + [f"site/{changed[0]}"]
    )
    renamed = [e for e in found if e.data.get("name") == "renamed"]
    assert [e.type for e in renamed] == [f"{P}.site.updated"]
    assert any(r.path == "/sites" and "cursor=" in r.query for r in fake.requests)


# --- commands -------------------------------------------------------------------------------------


async def test_commands_with_the_documents_answers_errors_and_a_401_renewed_once(
    kafka_bootstrap: str, prefix: str, fake: FakeCloudworkPro, start: StartBridge
) -> None:
    await start(fake, commands=COMMANDS, webhooks={"enabled": False})
    ids = await publish(
        kafka_bootstrap,
        prefix,
        [
            (f"{P}.work_order.create", {"name": "Survey", "work_type_ids": [WORK_TYPE]}, "wo/1"),
            (
                f"{P}.work_order.create",
                {"name": "Bad", "work_type_ids": ["000000000000000000000000"]},
                "wo/2",
            ),
        ],
    )
    done = await results(kafka_bootstrap, prefix, 2)
    made, bad = done[ids[0]], done[ids[1]]
    assert made["status"] == "succeeded", made
    wo_id = made["response"]["id"]
    assert fake.get_record("work_orders", wo_id) is not None
    # HTTP 200 with "code": 400: failed with the vendor's code, not retried.
    assert bad["status"] == "failed" and bad["attempts"] == 1, bad
    assert "WO_0005" in str(bad)

    fake.expire_tokens()
    issued, before = fake.tokens_issued, len(fake.requests)
    [status] = await publish(
        kafka_bootstrap,
        prefix,
        [(f"{P}.work_order.set_status", {"id": wo_id, "status": "draft"}, f"wo/{wo_id}")],
    )
    answered = await results(kafka_bootstrap, prefix, 3)
    assert answered[status]["status"] == "succeeded", answered[status]
    assert "Status updated successfully to: 'draft'" in str(answered[status]["response"])
    sent = [r.status for r in fake.requests[before:] if r.path.endswith("/status")]
    assert sent == [401, 200] and fake.tokens_issued == issued + 1


async def test_429_is_backed_off_and_a_document_reaches_the_fake_as_form_data(
    kafka_bootstrap: str, prefix: str, fake: FakeCloudworkPro, start: StartBridge
) -> None:
    wo = fake.create_record("work_orders", {"name": "Pump"}, notify=False)
    await start(fake, commands=COMMANDS, webhooks={"enabled": False})
    fake.fail_next(2, 429)
    content = b"%PDF-1.4 pump datasheet"
    [upload] = await publish(
        kafka_bootstrap,
        prefix,
        [
            (
                f"{P}.work_order.attach_document",
                {
                    "id": wo["_id"],
                    "filename": "pump.pdf",
                    "content_type": "application/pdf",
                    "content_base64": base64.b64encode(content).decode(),
                },
                f"wo/{wo['_id']}",
            )
        ],
    )
    [done] = (await results(kafka_bootstrap, prefix, 1)).values()
    assert done["status"] == "succeeded", done
    assert done["attempts"] >= 3  # two 429s, backed off, then accepted
    [by_url] = await publish(
        kafka_bootstrap,
        prefix,
        [
            (
                f"{P}.work_order.attach_document",
                {"id": wo["_id"], "url": "https://docs.example.com/pump.pdf"},
                f"wo/{wo['_id']}",
            )
        ],
    )
    done_url = (await results(kafka_bootstrap, prefix, 2))[by_url]
    assert done_url["status"] == "succeeded", done_url  # multipart, also with no file
    assert fake.uploads[-1].url == "https://docs.example.com/pump.pdf"
    stored = fake.uploads[0]
    assert (stored.filename, stored.content_type, stored.data) == (
        "pump.pdf",
        "application/pdf",
        content,
    )
    assert upload


async def test_backfill_on_demand_publishes_only_what_is_not_on_the_topic(
    kafka_bootstrap: str, prefix: str, fake: FakeCloudworkPro, start: StartBridge
) -> None:
    bridge = await start(fake)  # webhooks only: no periodic recovery
    fake.add_listener(hook_url(bridge), username=HOOK_USER, password=HOOK_PASSWORD)
    fake.create_record("work_orders", {"name": "pushed"})
    await fake.wait_deliveries_idle(10)
    fake.webhooks_down()
    fake.create_record("work_orders", {"name": "missed"})
    fake.create_record("sites", {"name": "missed site"})
    fake.webhooks_down(False)
    assert len(await events(kafka_bootstrap, prefix, 1, settle=0.5)) == 1
    assert fake.base_url is not None
    config = cwp_config(kafka_bootstrap, prefix, fake.base_url)
    said: list[str] = []
    since = datetime.now(UTC) - timedelta(hours=1)
    assert await backfill(config, instance=NAME, since=since, say=said.append) == 2
    assert said and "done, 2 published" in said[-1]
    found = await events(kafka_bootstrap, prefix, 3, settle=1.0)
    assert len(found) == 3 and {e.id for e in found} == {pushed_id(n) for n in fake.notifications()}
    # Run again: everything is on the topic already.
    assert await backfill(config, instance=NAME, since=since, say=said.append) == 0
    assert len(await events(kafka_bootstrap, prefix, 3, settle=0.5)) == 3
    with pytest.raises(BackfillError, match="no instance"):
        await backfill(config, instance="nope", since=since)
