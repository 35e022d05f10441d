"""The poll runtime without a broker: task keys and ownership, event ids, the DLQ record,
and what a poll task does when its producer is fenced."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiokafka.errors import KafkaTimeoutError, ProducerFenced

from adapters.config import parse_config
from adapters.core.change_source import DeadLetter, PolledRecord, change_id
from adapters.core.cloudevents_codec import stable_id
from adapters.core.instance import build_instance
from adapters.core.metrics import Metrics
from adapters.core.poll_commit import dead_letter_record
from adapters.core.poller import PollTask, owner_partition, task_key
from adapters.moco.resources import POLL
from adapters.registry import VENDORS

T = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


def rec(rid: int, seconds: float, created: float | None = None) -> dict[str, Any]:
    stamp = at(seconds).strftime("%Y-%m-%dT%H:%M:%SZ")
    made = at(created).strftime("%Y-%m-%dT%H:%M:%SZ") if created is not None else stamp
    return {"id": rid, "updated_at": stamp, "created_at": made, "name": f"p{rid}"}


def polled(rid: int, seconds: float, created: float | None = None, **kw: Any) -> PolledRecord:
    return PolledRecord(
        instance="acme",
        resource=kw.get("resource", "projects"),
        scope=kw.get("scope"),
        id=str(rid),
        changed=at(seconds),
        record=rec(rid, seconds, created),
    )


def test_an_unscoped_task_keeps_the_key_cursors_were_written_under() -> None:
    assert task_key("projects") == "projects"
    assert task_key("assets", "12") == "assets/12"


def test_event_ids_are_those_of_the_previous_release() -> None:
    # So a change seen once before an upgrade and once after is one event to consumers.
    seen = polled(7, 5)
    assert change_id(seen) == stable_id("acme", "projects", "7", at(5).isoformat())
    scoped = polled(7, 5, scope="12")
    assert change_id(scoped) != change_id(seen)


def test_created_vs_updated_and_the_subject() -> None:
    to_event = POLL.resources["projects"].source.to_event
    created = to_event(polled(7, 5))
    assert created.type == "workbridge.moco.project.created"
    assert created.subject == "project/7"
    assert created.time == at(5)
    assert msgspec.json.decode(created.data) == rec(7, 5)
    assert to_event(polled(7, 5, created=1)).type == "workbridge.moco.project.updated"
    assert to_event(polled(7, 5)).id == created.id
    assert to_event(polled(7, 6)).id != created.id


def test_a_dead_letter_carries_the_record_and_why() -> None:
    dead = DeadLetter(record={"id": 5}, reason="the record has no updated_at", record_id="5")
    key, value, headers = dead_letter_record(dead, instance="acme", resource="projects", scope="12")
    assert key == b"acme/projects/5"
    assert msgspec.json.decode(value) == {"id": 5}
    assert dict(headers) == {
        "workbridge_origin": b"poll",
        "workbridge_instance": b"acme",
        "workbridge_resource": b"projects",
        "workbridge_error": b"the record has no updated_at",
        "workbridge_scope": b"12",
    }
    no_id = DeadLetter(record="x", reason="a listed record is not an object")
    assert dead_letter_record(no_id, instance="a", resource="r", scope=None)[0] is None


@pytest.mark.parametrize(
    ("resource", "partitions", "expected"),
    [
        ("projects", 3, 0),
        ("activities", 3, 1),
        ("companies", 12, 6),
        ("offers", 12, 7),
        ("users", 12, 9),
        ("invoices", 1, 0),
    ],
)
def test_owner_partition_is_pinned(resource: str, partitions: int, expected: int) -> None:
    assert owner_partition(resource, partitions) == expected


def test_owner_partition_same_in_another_process() -> None:
    # hash() would differ per process (PYTHONHASHSEED); ownership must not.
    code = (
        "import json; from adapters.core.poller import owner_partition as o; "
        "print(json.dumps([o(r, 7) for r in ('projects','activities','companies','deals')]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345"},
        cwd=Path(__file__).resolve().parents[3],
        timeout=30,
    )
    assert json.loads(out.stdout) == [
        owner_partition(r, 7) for r in ("projects", "activities", "companies", "deals")
    ]


def instance() -> Any:
    cfg = parse_config(
        {
            "kafka": {"bootstrap_servers": "127.0.0.1:1"},
            "instances": [
                {
                    "vendor": "moco",
                    "name": "acme",
                    "base_url": "http://127.0.0.1:1/api/v1",
                    "api_key": "k",
                    "webhooks": {"enabled": False},
                }
            ],
        },
        env={},
    )
    return build_instance(cfg.instances[0], VENDORS["moco"], "workbridge")


class _FailingTxn:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    async def __aenter__(self) -> None:
        raise self.exc

    async def __aexit__(self, *exc: object) -> None:
        return None


class _TxnState:
    def __init__(self, fatal: bool) -> None:
        self.fatal = fatal

    def is_fatal_error(self) -> bool:
        return self.fatal


class _Producer:
    """Every transaction fails with `exc`; `fatal` is aiokafka's transaction state."""

    def __init__(self, exc: BaseException, *, fatal: bool = False) -> None:
        self.exc = exc
        self._txn_manager = _TxnState(fatal)
        self.transactions = 0

    def transaction(self) -> _FailingTxn:
        self.transactions += 1
        return _FailingTxn(self.exc)


def _task(producer: _Producer, lost: list[str]) -> Any:
    inst = instance()
    inst.cfg.polling.start_from = "now"  # the first cycle is a transaction, no vendor call
    inst.cfg.polling.interval_s = 0.01
    res = inst.spec.poll.resources["companies"]
    state = res.source.initial()
    return PollTask(inst, res, producer, state, 0, Metrics(), asyncio.Lock(), on_lost=lost.append)


async def test_a_fenced_poll_task_reports_and_ends_instead_of_polling_on() -> None:
    lost: list[str] = []
    producer = _Producer(ProducerFenced())
    async with asyncio.timeout(2):
        await _task(producer, lost).run()  # returns: it does not loop
    assert producer.transactions == 1
    assert len(lost) == 1 and "ProducerFenced" in lost[0]


async def test_a_poll_task_whose_producer_broke_earlier_ends_too() -> None:
    # What the second task of a fenced partition sees: aiokafka's state machine refuses.
    lost: list[str] = []
    producer = _Producer(AssertionError("Invalid state transition"), fatal=True)
    async with asyncio.timeout(2):
        await _task(producer, lost).run()
    assert len(lost) == 1


async def test_a_transient_failure_keeps_the_poll_task_polling() -> None:
    lost: list[str] = []
    producer = _Producer(KafkaTimeoutError())
    task = asyncio.create_task(_task(producer, lost).run())
    await asyncio.sleep(0.2)
    assert not task.done() and producer.transactions > 1 and lost == []
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def test_unscoped_tasks_are_dealt_evenly_over_the_partitions_in_name_order() -> None:
    from adapters.core.poller import placed_partitions
    from adapters.registry import VENDORS

    moco = list(VENDORS["moco"].poll.resources)  # type: ignore[union-attr]
    for partitions in (1, 2, 3, 4, 7, 12):
        placed = placed_partitions(moco, partitions)
        counts = [list(placed.values()).count(p) for p in range(partitions)]
        assert max(counts) - min(counts) <= 1, (partitions, counts)  # the hash gave 3/4/0
    # Every process computes the same placement, whatever order it lists the resources in.
    assert placed_partitions(reversed(moco), 3) == placed_partitions(sorted(moco), 3)
    assert placed_partitions(["b", "a", "a"], 2) == {"a": 0, "b": 1}
