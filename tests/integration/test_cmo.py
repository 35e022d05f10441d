"""Mitratech CMO on the real broker: commands through each kind of authorization, the watch
over the actions Workbridge knows (created, tracked, changed in CMO, deleted), restarts, the
document's error answers, and no secret anywhere.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from adapters.app import Bridge
from adapters.cmo.fake import FakeCmo, FakeCmoBehaviour
from adapters.config import Config, parse_config
from adapters.core.kafka import Topics
from tests.integration.conftest import (
    Outgoing,
    publish_commands,
    read_events,
    read_records,
    results_by_command,
)
from tests.integration.conftest import wait_until as shared_wait_until
from tests.tls_certs import TlsFiles, make_tls_files

pytestmark = pytest.mark.integration

NAME = "cmo"
P = "workbridge.cmo.action"
LOGIN, PASSWORD = "superadmin", "cmo-test-password-7f3a"
STATIC = "S" * 64 + "-static-token-of-the-cmo-user"
COMMANDS = {"enabled": True, "deadline_s": 30, "backoff_base_s": 0.1, "backoff_max_s": 0.5}
WATCH = {"enabled": True, "interval_s": 0.3, "resources": ["actions"]}
# A create the fake takes (its required fields: org unit, category, text, user, due date).
ACTION = {
    "orgUnitName": "North America Operations",
    "entityName": "Head Office",
    "actionCategoryName": "Emergency Response",
    "actionText": "Fix the pipes",
    "responsibleUserName": "Dan Johnson",
    "actionPriorityName": "High",
    "dueOn": "2021-07-22",
    "progress": 33,
    "residualRisk": None,
}


def cmo_config(bootstrap: str, prefix: str, base_url: str, **instance: Any) -> Config:
    raw: dict[str, Any] = {
        "vendor": "cmo",
        "name": NAME,
        "base_url": base_url,
        "webhooks": {"enabled": False},
        "credentials": {"login": LOGIN, "password": PASSWORD},
        "options": {"company_time_zone": "Asia/Kolkata"},
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


@pytest.fixture
async def fake() -> AsyncIterator[FakeCmo]:
    server = FakeCmo(logins={LOGIN: PASSWORD})
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def start(kafka_bootstrap: str, prefix: str) -> AsyncIterator[StartBridge]:
    bridges: list[Bridge] = []

    async def run(server: FakeCmo, **instance: Any) -> Bridge:
        assert server.base_url is not None
        bridge = Bridge(cmo_config(kafka_bootstrap, prefix, server.base_url, **instance))
        await bridge.start()
        bridges.append(bridge)
        return bridge

    yield run
    for bridge in bridges:
        if bridge.server is not None and not bridge.server.draining:
            await bridge.stop()


async def publish(bootstrap: str, prefix: str, commands: list[Outgoing]) -> list[str]:
    return await publish_commands(bootstrap, prefix, commands, instance=NAME)


async def results(
    bootstrap: str, prefix: str, count: int, *, settle: float = 0.5, wait_s: float = 60.0
) -> dict[str, dict[str, Any]]:
    topic = Topics(prefix, NAME).results
    return await results_by_command(bootstrap, topic, count, settle=settle, wait_s=wait_s)


@dataclasses.dataclass(frozen=True)
class Event:
    id: str
    type: str
    subject: str
    caused_by: str | None
    data: Any


async def events(
    bootstrap: str, prefix: str, count: int, *, settle: float = 1.5, wait_s: float = 30.0
) -> list[Event]:
    topic = Topics(prefix, NAME).events
    out = []
    for event in await read_events(bootstrap, topic, count, settle=settle, wait_s=wait_s):
        attrs = event.get_attributes()
        out.append(
            Event(attrs["id"], attrs["type"], attrs["subject"], attrs.get("causedby"),
                  event.get_data())
        )  # fmt: skip
    return out


wait_until = shared_wait_until


def kinds(found: list[Event]) -> list[tuple[str, str]]:
    return [(e.type.removeprefix(P + "."), e.subject) for e in found]


# --- commands and the watch ---------------------------------------------------------------------


async def test_a_created_action_is_watched_its_changes_published_once_and_its_deletion(
    kafka_bootstrap: str, prefix: str, fake: FakeCmo, start: StartBridge
) -> None:
    await start(fake, polling=WATCH, commands=COMMANDS)
    [create] = await publish(kafka_bootstrap, prefix, [(f"{P}.create", ACTION, "action/new-1")])
    [made] = (await results(kafka_bootstrap, prefix, 1)).values()
    assert made["status"] == "succeeded", made
    action_id = made["response"]["id"]
    stored = fake.get_action(action_id)
    assert stored is not None and stored["dueDate"] == "2021-07-22T18:29:59.997Z"
    assert stored["residualRisk"] is None

    # The create's own record, then a change made in CMO by someone: one event each.
    [first] = await events(kafka_bootstrap, prefix, 1)
    assert kinds([first]) == [("updated", f"action/{action_id}")]
    assert first.caused_by == create  # the create's echo
    fake.update_action(action_id, {"progress": 90})
    found = await events(kafka_bootstrap, prefix, 2)
    assert kinds(found) == [("updated", f"action/{action_id}")] * 2
    assert found[1].data["progress"] == 90 and found[1].caused_by is None

    # A status change is also `.status_changed`.
    fake.update_action(action_id, {"status": {"code": 2, "name": "Completed"}})
    found = await events(kafka_bootstrap, prefix, 4)
    assert kinds(found[2:]) == [
        ("updated", f"action/{action_id}"),
        ("status_changed", f"action/{action_id}"),
    ]
    assert found[3].data["from"] == {"code": 1} and found[3].data["to"]["code"] == 2

    # Deleted in CMO: `.deleted` once, and the action is no longer read.
    fake.delete_action(action_id)
    found = await events(kafka_bootstrap, prefix, 5, settle=1.5)
    assert kinds(found[4:]) == [("deleted", f"action/{action_id}")]
    reads = sum(1 for r in fake.requests if r.method == "GET")
    await asyncio.sleep(1.2)
    assert sum(1 for r in fake.requests if r.method == "GET") == reads
    assert len(await events(kafka_bootstrap, prefix, 5, settle=0.5)) == 5


async def test_an_update_through_workbridge_is_named_in_its_echo(
    kafka_bootstrap: str, prefix: str, fake: FakeCmo, start: StartBridge
) -> None:
    action_id = fake.create_action(ACTION | {"dueDate": "2021-07-22T18:29:59.997Z", "dueOn": None})
    await start(fake, polling=WATCH, commands=COMMANDS, options={"tracked_ids": [action_id]})
    [first] = await events(kafka_bootstrap, prefix, 1)
    assert first.caused_by is None  # tracked from the options: nobody's echo
    [update] = await publish(
        kafka_bootstrap,
        prefix,
        [(f"{P}.update", {"id": action_id, "progress": 75}, f"action/{action_id}")],
    )
    [done] = (await results(kafka_bootstrap, prefix, 1)).values()
    assert done["status"] == "succeeded" and done.get("response") in (None, "")
    found = await events(kafka_bootstrap, prefix, 2)
    assert found[1].data["progress"] == 75 and found[1].caused_by == update


async def test_track_and_untrack(
    kafka_bootstrap: str, prefix: str, fake: FakeCmo, start: StartBridge
) -> None:
    action_id = fake.create_action(ACTION | {"dueDate": "2021-07-22T18:29:59.997Z", "dueOn": None})
    await start(fake, polling=WATCH, commands=COMMANDS)
    ids = await publish(
        kafka_bootstrap,
        prefix,
        [
            (f"{P}.track", {"id": action_id}, f"action/{action_id}"),
            (f"{P}.track", {"id": "no-such-action"}, "action/no-such-action"),
        ],
    )
    done = await results(kafka_bootstrap, prefix, 2)
    assert done[ids[0]]["status"] == "succeeded"
    assert done[ids[0]]["response"]["id"] == action_id  # the action as read
    assert done[ids[1]]["status"] == "failed" and done[ids[1]]["http_status"] == 404
    [seen] = await events(kafka_bootstrap, prefix, 1)
    assert seen.subject == f"action/{action_id}"

    [untrack] = await publish(
        kafka_bootstrap, prefix, [(f"{P}.untrack", {"id": action_id}, f"action/{action_id}")]
    )
    answered = await results(kafka_bootstrap, prefix, 3)
    assert answered[untrack]["status"] == "succeeded"
    before = len(fake.requests)
    await asyncio.sleep(1.0)  # several cycles
    reads = [r for r in fake.requests[before:] if r.path.endswith(action_id)]
    assert reads == []
    fake.update_action(action_id, {"progress": 5})
    await asyncio.sleep(1.0)
    assert len(await events(kafka_bootstrap, prefix, 1, settle=0.3)) == 1


async def test_a_restart_mid_watch_loses_and_repeats_nothing(
    kafka_bootstrap: str, prefix: str, fake: FakeCmo, start: StartBridge
) -> None:
    made = [
        fake.create_action(ACTION | {"dueDate": "2021-07-22T18:29:59.997Z", "dueOn": None})
        for _ in range(6)
    ]
    options = {"tracked_ids": made[:3], "watch_per_cycle": 2}
    bridge = await start(fake, polling=WATCH, commands=COMMANDS, options=options)
    tracks = await publish(
        kafka_bootstrap, prefix, [(f"{P}.track", {"id": a}, f"action/{a}") for a in made[3:]]
    )
    await results(kafka_bootstrap, prefix, 3)
    first = await events(kafka_bootstrap, prefix, 6)
    assert sorted(e.subject for e in first) == sorted(f"action/{a}" for a in made)
    await bridge.stop()

    # Changed while no process watched: seen once by the next one, and nothing else repeats.
    fake.update_action(made[0], {"progress": 1})
    fake.update_action(made[4], {"progress": 2})
    await start(fake, polling=WATCH, commands=COMMANDS, options=options)
    found = await events(kafka_bootstrap, prefix, 8, settle=2.0)
    # (Actions are keyed apart, so the topic's order across partitions says nothing: the
    # events are told apart by what they show.)
    assert len(found) == 8 and len({e.id for e in found}) == 8
    changed = sorted((e.subject, e.data["progress"]) for e in found if e.data["progress"] != 33)
    assert changed == sorted([(f"action/{made[0]}", 1), (f"action/{made[4]}", 2)])
    assert sorted(e.subject for e in found if e.data["progress"] == 33) == sorted(
        f"action/{a}" for a in made
    )
    assert tracks  # (the tracked ones came from commands: the topic kept them)


# --- authorization ------------------------------------------------------------------------------


async def test_a_short_jwt_is_renewed_before_its_expiry(
    kafka_bootstrap: str, prefix: str, start: StartBridge
) -> None:
    # Tokens live 3 s; Workbridge renews one halfway through a life shorter than its minute
    # of margin: after 2 s the next call gets a new token first and never meets a 401.
    server = FakeCmo(logins={LOGIN: PASSWORD}, behaviour=FakeCmoBehaviour(jwt_lifetime_s=3))
    await server.start()
    try:
        await start(server, commands=COMMANDS, polling={"enabled": False})
        ids = await publish(
            kafka_bootstrap, prefix, [(f"{P}.create", ACTION | {"actionText": "a"}, "action/a")]
        )
        await results(kafka_bootstrap, prefix, 1)
        assert server.tokens_issued == 1
        await asyncio.sleep(2.0)
        ids += await publish(
            kafka_bootstrap, prefix, [(f"{P}.create", ACTION | {"actionText": "a2"}, "action/a2")]
        )
        done = await results(kafka_bootstrap, prefix, 2)
        assert {done[i]["status"] for i in ids} == {"succeeded"}, done
        assert server.tokens_issued == 2
        assert [r.status for r in server.requests if r.path == "/api/actions"] == [200, 200]
    finally:
        await server.stop()


async def test_a_401_renews_the_jwt_once_and_repeats_the_call(
    kafka_bootstrap: str, prefix: str, fake: FakeCmo, start: StartBridge
) -> None:
    await start(fake, commands=COMMANDS, polling={"enabled": False})
    [first] = await publish(
        kafka_bootstrap, prefix, [(f"{P}.create", ACTION | {"actionText": "a"}, "action/a")]
    )
    assert (await results(kafka_bootstrap, prefix, 1))[first]["status"] == "succeeded"
    # Tokens revoked behind our back (their `exp` still ahead): the next call gets 401, one
    # renewal, one repeat, and the create is made once.
    fake.expire_tokens()
    issued, before = fake.tokens_issued, len(fake.requests)
    [again] = await publish(
        kafka_bootstrap, prefix, [(f"{P}.create", ACTION | {"actionText": "b"}, "action/b")]
    )
    final = await results(kafka_bootstrap, prefix, 2)
    assert final[again]["status"] == "succeeded", final[again]
    posts = [r for r in fake.requests[before:] if r.path == "/api/actions"]
    assert [r.status for r in posts] == [401, 200]
    assert fake.tokens_issued == issued + 1
    assert len([a for a in fake.actions() if a["actionText"] == "b"]) == 1


async def test_concurrent_calls_share_one_token_request(
    kafka_bootstrap: str, prefix: str, fake: FakeCmo, start: StartBridge
) -> None:
    await start(fake, commands=COMMANDS | {"concurrency": 8}, polling={"enabled": False})
    ids = await publish(
        kafka_bootstrap,
        prefix,
        [(f"{P}.create", ACTION | {"actionText": f"c{i}"}, f"action/c{i}") for i in range(8)],
    )
    done = await results(kafka_bootstrap, prefix, 8)
    assert {done[i]["status"] for i in ids} == {"succeeded"}
    assert fake.tokens_issued == 1


async def test_a_static_token(kafka_bootstrap: str, prefix: str, start: StartBridge) -> None:
    server = FakeCmo(
        static_tokens={STATIC: 20518},
        behaviour=FakeCmoBehaviour(static_token="always"),
    )
    await server.start()
    try:
        await start(
            server,
            credentials={"token": STATIC},
            commands=COMMANDS,
            polling={"enabled": False},
        )
        [cid] = await publish(kafka_bootstrap, prefix, [(f"{P}.create", ACTION, "action/s")])
        [done] = (await results(kafka_bootstrap, prefix, 1)).values()
        assert done["status"] == "succeeded", done
        assert server.tokens_issued == 0 and cid
    finally:
        await server.stop()


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path, client_key_password="key-pass-9c1e")


async def test_mutual_tls_with_the_right_certificate_and_refused_without(
    kafka_bootstrap: str, prefix: str, start: StartBridge, tls: TlsFiles, tmp_path: Path
) -> None:
    server = FakeCmo(behaviour=FakeCmoBehaviour(jwt_enabled=False))
    await server.start(ssl_context=tls.server_context())
    try:
        assert server.base_url is not None and server.base_url.startswith("https://")
        good = {
            "cert_file": str(tls.client_cert_file),
            "key_file": str(tls.client_key_file),
            "key_password": "key-pass-9c1e",
            "ca_file": str(tls.ca_file),
        }
        first = await start(
            server, credentials={}, tls=good, commands=COMMANDS, polling={"enabled": False}
        )
        [cid] = await publish(kafka_bootstrap, prefix, [(f"{P}.create", ACTION, "action/m")])
        [done] = (await results(kafka_bootstrap, prefix, 1)).values()
        assert done["status"] == "succeeded", done
        assert [r.auth for r in server.requests] == [("mtls",)]
        await first.stop()

        # Another CA's certificate: the handshake fails; the command is retried, then fails.
        other = good | {
            "cert_file": str(tls.other_client_cert_file),
            "key_file": str(tls.other_client_key_file),
        }
        other.pop("key_password")
        await start(
            server,
            credentials={},
            tls=other,
            commands=COMMANDS | {"deadline_s": 2},
            polling={"enabled": False},
        )
        [refused] = await publish(kafka_bootstrap, prefix, [(f"{P}.delete", {"id": "x"}, "a/x")])
        answered = await results(kafka_bootstrap, prefix, 2, wait_s=30)
        assert answered[refused]["status"] == "failed", answered[refused]
        assert len(server.requests) == 1  # nothing got through
        assert cid
    finally:
        await server.stop()


# --- the document's error answers, and secrets ---------------------------------------------


async def test_400_403_and_404_are_failed_with_what_cmo_said(
    kafka_bootstrap: str, prefix: str, fake: FakeCmo, start: StartBridge
) -> None:
    del fake.org_units[12480]  # "Albama": the document's 400
    await start(fake, commands=COMMANDS, polling={"enabled": False})
    ids = await publish(
        kafka_bootstrap,
        prefix,
        [
            (f"{P}.create", ACTION | {"orgUnitName": "Albama"}, "action/bad"),
            (f"{P}.update", {"id": "gone-1", "progress": 1}, "action/gone-1"),
            (f"{P}.create", ACTION | {"orgUnitName": "x", "orgUnitId": 12481}, "action/both"),
        ],
    )
    done = await results(kafka_bootstrap, prefix, 3)
    bad, gone, both = (done[i] for i in ids)
    assert bad["status"] == "failed" and bad["http_status"] == 400 and bad["attempts"] == 1
    assert "OrgUnitName" in bad["reason"] and "Albama" in bad["reason"]
    assert gone["status"] == "failed" and gone["http_status"] == 404
    assert both["status"] == "rejected"
    assert "orgUnitName" in str(both) and "orgUnitId" in str(both)

    fake.set_permissions(20518, create=False)
    [denied] = await publish(kafka_bootstrap, prefix, [(f"{P}.create", ACTION, "action/403")])
    answered = await results(kafka_bootstrap, prefix, 4)
    assert answered[denied]["status"] == "failed" and answered[denied]["http_status"] == 403
    assert "Allow Create via API" in answered[denied]["reason"]


async def test_a_create_whose_answer_is_lost_is_ambiguous_and_an_update_is_retried(
    kafka_bootstrap: str, prefix: str, fake: FakeCmo, start: StartBridge
) -> None:
    action_id = fake.create_action(ACTION | {"dueDate": "2021-07-22T18:29:59.997Z", "dueOn": None})
    await start(fake, commands=COMMANDS, polling={"enabled": False})
    # A first command gets the token, so the fault below meets the create itself.
    [warm] = await publish(kafka_bootstrap, prefix, [(f"{P}.get", {"id": action_id}, "a/g")])
    assert (await results(kafka_bootstrap, prefix, 1))[warm]["status"] == "succeeded"
    fake.fail_next(1, 500)
    [lost] = await publish(kafka_bootstrap, prefix, [(f"{P}.create", ACTION, "action/lost")])
    first = await results(kafka_bootstrap, prefix, 2)
    assert first[lost]["status"] == "ambiguous", first[lost]
    assert "check" in first[lost]["reason"]
    fake.fail_next(1, 502)
    [update] = await publish(
        kafka_bootstrap, prefix, [(f"{P}.update", {"id": action_id, "progress": 3}, "a/u")]
    )
    second = await results(kafka_bootstrap, prefix, 3)
    assert second[update]["status"] == "succeeded" and second[update]["attempts"] == 2
    stored = fake.get_action(action_id)
    assert stored is not None and stored["progress"] == 3


async def test_no_secret_reaches_logs_events_or_results(
    kafka_bootstrap: str,
    prefix: str,
    fake: FakeCmo,
    start: StartBridge,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    await start(fake, polling=WATCH, commands=COMMANDS)
    await publish(kafka_bootstrap, prefix, [(f"{P}.create", ACTION, "action/s1")])
    [made] = (await results(kafka_bootstrap, prefix, 1)).values()
    assert made["status"] == "succeeded"
    fake.expire_tokens()  # a 401 and a renewal on the way
    await events(kafka_bootstrap, prefix, 1)
    topics = Topics(prefix, NAME)
    raw = b""
    for topic in (topics.events, topics.results, topics.tracked):
        for r in await read_records(kafka_bootstrap, topic, count=1, wait_s=10, settle=0.5):
            raw += (r.value or b"") + b"".join(v for _k, v in r.headers)
    tokens = list(fake._issuer.issued)  # the fake's own record of them
    for secret in [PASSWORD, *tokens]:
        assert secret not in caplog.text
        assert secret.encode() not in raw
    assert msgspec.json.encode(made).find(PASSWORD.encode()) == -1


async def test_the_watch_moves_to_another_replica_without_losing_or_repeating(
    kafka_bootstrap: str, prefix: str, fake: FakeCmo, start: StartBridge
) -> None:
    made = [
        fake.create_action(ACTION | {"dueDate": "2021-07-22T18:29:59.997Z", "dueOn": None})
        for _ in range(3)
    ]
    replicas = [await start(fake, polling=WATCH, commands=COMMANDS) for _ in range(2)]
    ids = await publish(
        kafka_bootstrap, prefix, [(f"{P}.track", {"id": a}, f"action/{a}") for a in made]
    )
    assert {r["status"] for r in (await results(kafka_bootstrap, prefix, 3)).values()} == {
        "succeeded"
    }
    assert len(await events(kafka_bootstrap, prefix, 3)) == 3

    def owner() -> Bridge | None:
        held = [b for b in replicas if any("actions" in p.tasks for p in b.pollers)]
        return held[0] if len(held) == 1 else None

    await wait_until(lambda: owner() is not None, 20, "one replica owning the watch")
    first = owner()
    assert first is not None
    fake.update_action(made[0], {"progress": 10})
    await events(kafka_bootstrap, prefix, 4, settle=0.5)
    await first.stop()  # the other replica takes the watch over
    fake.update_action(made[1], {"progress": 20})
    fake.update_action(made[2], {"progress": 30})
    found = await events(kafka_bootstrap, prefix, 6, settle=2.5)
    assert len(found) == 6 and len({e.id for e in found}) == 6
    # The first reads show the action as created (progress 33); the topic's order across
    # partitions says nothing, so the changes are found by what they show.
    progress = sorted((e.subject, e.data["progress"]) for e in found if e.data["progress"] != 33)
    assert progress == sorted(
        [(f"action/{made[0]}", 10), (f"action/{made[1]}", 20), (f"action/{made[2]}", 30)]
    )
    assert ids
