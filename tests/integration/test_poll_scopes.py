"""Poll tasks fanned out over discovered scopes, on the real broker.

A small vendor declared here is shaped like Click Maint: every request is scoped by
`X-Entity-Id`, the entities are listed at `GET /entities`, listings page by `page`/`per_page`
with `meta.pagination`. Each (entity, resource) is a task with one owner across replicas.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from aiohttp import web

from adapters.config import KafkaConfig
from adapters.core.change_source import PolledRecord, change_id
from adapters.core.errors import ErrorTable
from adapters.core.instance import build_instance
from adapters.core.kafka import Topics, ensure_topics
from adapters.core.list_source import ListByReplicationKey
from adapters.core.metrics import Metrics
from adapters.core.pagination import PageNumberPaginator
from adapters.core.poller import PollRunner
from adapters.core.scopes import ListedScopes
from adapters.core.vendor import EventDraft, PollResource, PollSpec, VendorSpec, static_auth
from adapters.settings import InstanceConfig, PollingConfig, TopicsConfig, WebhooksConfig
from tests.integration.conftest import ce, read_records

pytestmark = pytest.mark.integration

RESOURCES = ("assets", "parts")


class EntitiesVendor:
    """Entities, and per entity and resource a few records (ids unique across entities)."""

    def __init__(self) -> None:
        self.entities: list[int] = [1, 2]
        self.records: dict[tuple[int, str], list[dict[str, Any]]] = {}
        self.next_id = 100
        self.base_url = ""
        for entity in self.entities:
            self.seed(entity)

    def seed(self, entity: int) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for resource in RESOURCES:
            rows = []
            for _ in range(3):
                self.next_id += 1
                rows.append({"id": self.next_id, "created_at": stamp, "updated_at": stamp})
            self.records[(entity, resource)] = rows

    async def handle(self, request: web.Request) -> web.Response:
        page = int(request.query.get("page", "1"))
        per_page = int(request.query.get("per_page", "50"))
        if request.path == "/entities":
            rows: list[dict[str, Any]] = [{"id": e, "name": f"E{e}"} for e in self.entities]
        else:
            entity = request.headers.get("X-Entity-Id")
            if entity is None or not entity.isdigit():
                return web.json_response({"status": "error", "message": "X-Entity-Id"}, status=400)
            rows = self.records.get((int(entity), request.path.rsplit("/", 1)[1]), [])
        pages = max(1, -(-len(rows) // per_page))
        meta = {"pagination": {"total": len(rows), "page": page, "per_page": per_page}}
        meta["pagination"]["total_pages"] = pages
        chunk = rows[(page - 1) * per_page : page * per_page]
        return web.json_response({"status": "success", "data": chunk, "meta": meta})


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _mapper(singular: str) -> Any:
    def to_event(seen: PolledRecord) -> EventDraft:
        return EventDraft(
            type=f"workbridge.testvendor.{singular}.updated",
            subject=f"{singular}/{seen.id}",
            id=change_id(seen),
            time=seen.changed,
            data=msgspec.json.encode(seen.record),
            extensions={"entityid": seen.scope or ""},
        )

    return to_event


SPEC = VendorSpec(
    id="testvendor",
    auth=static_auth(lambda _inst: {}),
    errors=ErrorTable(),
    poll=PollSpec(
        resources={
            name: PollResource(
                name=name,
                scoped=True,
                source=ListByReplicationKey(
                    path=f"/api/v1/{name}",
                    paginator=PageNumberPaginator(),
                    replication_key="updated_at",
                    parse_time=_parse,
                    to_event=_mapper(name.rstrip("s")),
                    records_at=("data",),
                ),
            )
            for name in RESOURCES
        },
        scopes=ListedScopes(
            path="/entities",
            paginator=PageNumberPaginator(),
            header="X-Entity-Id",
            refresh_every_s=0.5,
        ),
    ),
)


@pytest.fixture
async def vendor() -> AsyncIterator[EntitiesVendor]:
    server = EntitiesVendor()
    app = web.Application()
    app.router.add_get("/{tail:.*}", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield server
    await runner.cleanup()


def _keys(runners: list[PollRunner]) -> list[set[str]]:
    return [set(r.tasks) for r in runners]


async def _until(what: str, check: Any, wait_s: float = 30.0) -> None:
    for _ in range(int(wait_s / 0.1)):
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(what)


async def test_each_scope_and_resource_is_a_task_with_one_owner(
    kafka_bootstrap: str, prefix: str, vendor: EntitiesVendor
) -> None:
    kafka = KafkaConfig(
        bootstrap_servers=kafka_bootstrap,
        topics=TopicsConfig(partitions=4, replication_factor=1),
    )
    cfg = InstanceConfig(
        vendor="testvendor",
        name="tv",
        base_url=vendor.base_url,
        webhooks=WebhooksConfig(enabled=False),
        polling=PollingConfig(enabled=True, resources=list(RESOURCES), interval_s=0.3),
    )
    await ensure_topics(kafka, [Topics(prefix, "tv")])
    runners = []
    for _ in range(2):  # two replicas
        runner = PollRunner(build_instance(cfg, SPEC, prefix), kafka, Metrics())
        await runner.start()
        runners.append(runner)
    try:
        wanted = {f"{r}/{e}" for r in RESOURCES for e in (1, 2)}
        await _until("tasks not shared out", lambda: set.union(*_keys(runners)) == wanted)
        one, two = _keys(runners)
        assert one.isdisjoint(two)

        events_topic = Topics(prefix, "tv").events
        records = await read_records(kafka_bootstrap, events_topic, count=12, settle=1.0)
        by_subject = {ce(r).get_attributes()["subject"]: ce(r) for r in records}
        assert len(records) == len(by_subject) == 12
        for (entity, resource), rows in vendor.records.items():
            for row in rows:
                event = by_subject[f"{resource.rstrip('s')}/{row['id']}"]
                assert event.get_attributes()["entityid"] == str(entity)

        # A new entity gets its tasks at the next discovery.
        vendor.entities.append(3)
        vendor.seed(3)
        wanted |= {f"{r}/3" for r in RESOURCES}
        await _until("new scope not polled", lambda: set.union(*_keys(runners)) == wanted)
        records = await read_records(kafka_bootstrap, events_topic, count=18, settle=1.0)
        assert len(records) == 18

        # One replica leaves: the other owns every task.
        await runners[0].stop()
        await _until("tasks not taken over", lambda: set(runners[1].tasks) == wanted)
        records = await read_records(kafka_bootstrap, events_topic, count=18, settle=1.5)
        assert len(records) == 18  # taken over from the committed states: nothing repeated
    finally:
        for runner in runners:
            await runner.stop()
        for runner in runners:
            await runner.inst.client.close()
