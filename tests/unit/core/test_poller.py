"""Poller pure functions: which records are new, how the cursor moves, who owns a task."""

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
from adapters.core.instance import build_instance
from adapters.core.metrics import Metrics
from adapters.core.poller import (
    Cursor,
    PollTask,
    advance,
    owner_partition,
    poll_draft,
    select_new,
)
from adapters.moco.resources import POLL
from adapters.registry import VENDORS

RES = POLL.resources["projects"]
OVERLAP = timedelta(seconds=2)
T = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


def rec(rid: int, seconds: float, created: float | None = None) -> dict[str, Any]:
    stamp = at(seconds).strftime("%Y-%m-%dT%H:%M:%SZ")
    made = at(created).strftime("%Y-%m-%dT%H:%M:%SZ") if created is not None else stamp
    return {"id": rid, "updated_at": stamp, "created_at": made, "name": f"p{rid}"}


def ids(selected: list[tuple[datetime, str, dict[str, Any]]]) -> list[str]:
    return [rid for _, rid, _ in selected]


def test_first_poll_takes_everything_ordered_by_time_then_id() -> None:
    records = [rec(7, 5), rec(3, 1), rec(5, 5), rec(4, 0)]
    out = select_new(records, Cursor(), RES, POLL, OVERLAP)
    assert [(ts, rid) for ts, rid, _ in out] == [
        (at(0), "4"),
        (at(1), "3"),
        (at(5), "5"),
        (at(5), "7"),
    ]
    assert out[0][2] is records[3]


def test_equal_timestamps_seen_ids_skipped_new_ids_kept() -> None:
    cursor = Cursor(mark=at(10), seen={"1": at(10), "2": at(10)})
    records = [rec(1, 10), rec(2, 10), rec(3, 10)]
    assert ids(select_new(records, cursor, RES, POLL, OVERLAP)) == ["3"]


def test_a_seen_record_changed_again_is_kept() -> None:
    cursor = Cursor(mark=at(10), seen={"1": at(9)})
    assert ids(select_new([rec(1, 10)], cursor, RES, POLL, OVERLAP)) == ["1"]


def test_records_older_than_mark_minus_overlap_skipped() -> None:
    cursor = Cursor(mark=at(10), seen={"9": at(9)})
    records = [rec(1, 7), rec(2, 7.999), rec(3, 8), rec(4, 9), rec(9, 9), rec(5, 11)]
    # at(7.999) is formatted to whole seconds (07), so it is below the floor at(8).
    assert ids(select_new(records, cursor, RES, POLL, OVERLAP)) == ["3", "4", "5"]


def test_duplicate_rows_while_paging_are_published_once() -> None:
    out = select_new([rec(1, 1), rec(2, 2), rec(1, 1)], Cursor(), RES, POLL, OVERLAP)
    assert ids(out) == ["1", "2"]


def test_advance_moves_the_mark_and_prunes_seen() -> None:
    cursor = Cursor(mark=at(10), seen={"old": at(7), "edge": at(9), "a": at(10)})
    chunk = [(at(11), "b", {}), (at(12), "c", {})]
    new = advance(cursor, chunk, OVERLAP)
    assert new.mark == at(12)
    # floor = 12 - 2 = 10: entries at 10 stay, older ones go.
    assert new.seen == {"a": at(10), "b": at(11), "c": at(12)}
    assert cursor.seen == {"old": at(7), "edge": at(9), "a": at(10)}  # not mutated


def test_advance_from_an_empty_cursor() -> None:
    new = advance(Cursor(), [(at(1), "1", {}), (at(5), "2", {})], OVERLAP)
    assert new == Cursor(mark=at(5), seen={"2": at(5)})


def test_advance_never_moves_the_mark_back() -> None:
    new = advance(Cursor(mark=at(10), seen={"a": at(10)}), [(at(9), "b", {})], OVERLAP)
    assert new.mark == at(10)
    assert new.seen == {"a": at(10), "b": at(9)}


def test_select_then_advance_then_select_again() -> None:
    records = [rec(1, 10), rec(2, 10), rec(3, 9)]
    first = select_new(records, Cursor(), RES, POLL, OVERLAP)
    cursor = advance(Cursor(), first, OVERLAP)
    # The next poll re-reads the overlap: nothing repeats ...
    assert select_new(records, cursor, RES, POLL, OVERLAP) == []
    # ... and a record changed in the same second as the mark is not lost.
    later = [*records, rec(4, 10), rec(1, 11)]
    assert ids(select_new(later, cursor, RES, POLL, OVERLAP)) == ["4", "1"]


def test_cursor_survives_json() -> None:
    cursor = Cursor(mark=at(10), seen={"1": at(10)})
    assert msgspec.json.decode(msgspec.json.encode(cursor), type=Cursor) == cursor


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


def test_poll_draft_created_vs_updated() -> None:
    inst = instance()
    created = poll_draft(inst, RES, at(5), "7", rec(7, 5))
    assert created.type == "workbridge.moco.project.created"
    assert created.subject == "project/7"
    assert created.time == at(5)
    assert msgspec.json.decode(created.data) == rec(7, 5)
    updated = poll_draft(inst, RES, at(5), "7", rec(7, 5, created=1))
    assert updated.type == "workbridge.moco.project.updated"


def test_poll_draft_id_is_stable_per_change() -> None:
    inst = instance()
    a = poll_draft(inst, RES, at(5), "7", rec(7, 5))
    assert a.id == poll_draft(inst, RES, at(5), "7", rec(7, 5)).id
    assert a.id != poll_draft(inst, RES, at(6), "7", rec(7, 6)).id
    assert a.id != poll_draft(inst, RES, at(5), "8", rec(8, 5)).id


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
    return PollTask(
        inst, res, producer, Cursor(), 0, Metrics(), asyncio.Lock(), on_lost=lost.append
    )


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
