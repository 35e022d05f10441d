"""The ledger index of one partition: same answers as a full restore, never a guess.

The topic is a MemoryLog (tests/unit/core/command_harness.py); the index is sqlite, in a
temporary directory where a test needs it to outlive its ledger.
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.core import ledger_store
from adapters.core.ledger import (
    LedgerEntry,
    answered_record,
    decode_entry,
    encode_entry,
    key_record,
    legacy_answered_record,
    read_ledger,
)
from adapters.core.ledger_store import Ledger, LedgerIndex, LedgerUnavailable, LogRecord
from tests.unit.core.memory_log import MemoryLog

AT = datetime(2026, 11, 23, tzinfo=UTC)
TOPIC = "t.ledger"


def value(command_id: str, payload_hash: str = "h", state: str = "done") -> bytes:
    return encode_entry(
        LedgerEntry(
            state=state,  # type: ignore[arg-type]
            command_id=command_id,
            command_type="t",
            payload_hash=payload_hash,
            at=AT,
            result={"status": "succeeded"},
        )
    )


def log_of(*records: tuple[str, bytes | None]) -> MemoryLog:
    log = MemoryLog(TOPIC)
    for key, val in records:
        log.append(key.encode(), val)
    return log


def ledger(log: MemoryLog, index: LedgerIndex | None = None, **kw: int) -> Ledger:
    return Ledger(index or LedgerIndex.in_memory(TOPIC), log, topic=TOPIC, partition=0, **kw)


def baseline(log: MemoryLog) -> tuple[dict[str, LedgerEntry], set[str]]:
    """What the dict-based restore (before the index) made of the same records."""
    latest: dict[str, LedgerEntry] = {}
    for _offset, key, val in log.records:
        assert key is not None
        if val is None:
            latest.pop(key.decode(), None)
        else:
            latest[key.decode()] = decode_entry(val)
    state = read_ledger(latest)
    return state.keys, state.answered


# Keys of every shape the ledger has held: plain, NUL-escaped, and the two answered forms.
USER_KEYS = ["k1", "k2", "answered/c1", "answered/c2", "\x00k", "\x00answered/c3", "ü"]
COMMAND_IDS = ["c1", "c2", "c3", "c4"]


def random_log(rng: random.Random, length: int) -> MemoryLog:
    log = MemoryLog(TOPIC)
    for i in range(length):
        roll = rng.random()
        if roll < 0.45:
            key, val = key_record(rng.choice(USER_KEYS)), value(f"c{i}", rng.choice("ab"))
        elif roll < 0.6:
            key, val = answered_record(rng.choice(COMMAND_IDS)), value("x", "")
        elif roll < 0.75:
            # Written before the namespaces: an answered record has no payload hash.
            key, val = legacy_answered_record(rng.choice(COMMAND_IDS)), value("x", "")
        else:
            key, val = key_record(rng.choice(USER_KEYS)), None  # a mark taken back
        log.append(key.encode(), val)
    return log


@pytest.mark.parametrize("seed", range(12))
async def test_answers_equal_a_full_restore_of_the_same_records(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Many stages and merges, as in a long restore.
    monkeypatch.setattr(ledger_store, "RESTORE_CHUNK", 3)
    monkeypatch.setattr(ledger_store, "MERGE_EVERY", 7)
    log = random_log(random.Random(seed), 60)
    keys, answered = baseline(log)
    led = ledger(log, recent_bytes=0)
    await led.restore()
    for key in USER_KEYS:
        assert await led.entry(key) == keys.get(key), key
    for command_id in COMMAND_IDS:
        assert await led.answered(command_id) == (command_id in answered), command_id


async def test_a_ledger_not_restored_answers_nothing_rather_than_new() -> None:
    led = ledger(log_of((key_record("k1"), value("c1"))))
    with pytest.raises(LedgerUnavailable):
        await led.entry("k1")
    with pytest.raises(LedgerUnavailable):
        await led.answered("c1")
    with pytest.raises(RuntimeError):
        led.committed([((TOPIC, b"k2", value("c2"), [], 0), 1)])


async def test_new_keys_need_no_read_and_a_known_key_is_read_back_once() -> None:
    log = log_of((key_record("k1"), value("c1")), (answered_record("c9"), value("c9", "")))
    led = ledger(log)
    await led.restore()
    assert await led.entry("new") is None
    assert await led.answered("new") is False
    assert log.reads == 0  # the index alone says so
    for _ in range(3):
        found = await led.entry("k1")
        assert found is not None and found.command_id == "c1"
    assert log.reads == 1  # then kept among the recent records


async def test_a_record_the_retention_removed_is_forgotten() -> None:
    log = log_of((key_record("old"), value("c1")), (key_record("young"), value("c2")))
    led = ledger(log, recent_bytes=0)
    await led.restore()
    log.records = log.records[1:]  # the broker deleted the oldest segment
    assert await led.entry("old") is None
    young = await led.entry("young")
    assert young is not None and young.command_id == "c2"


async def test_committed_records_answer_at_once_and_move_the_index_on() -> None:
    log = MemoryLog(TOPIC)
    led = ledger(log)
    await led.restore()
    mark = value("c1", state="inflight")
    led.committed(
        [
            ((TOPIC, key_record("k1").encode(), mark, [], 0), 0),
            (("t.results", b"x", b"r", [], None), 0),  # another topic: not the ledger's
            ((TOPIC, key_record("k2").encode(), value("c2"), [], 1), 0),  # another partition
        ]
    )
    found = await led.entry("k1")
    assert found is not None and found.state == "inflight"
    assert await led.entry("k2") is None
    led.committed([((TOPIC, key_record("k1").encode(), None, [], 0), 5)])  # taken back
    assert await led.entry("k1") is None
    assert led.index.next_offset == 6


async def test_a_checkpoint_is_resumed_and_only_the_rest_is_read(tmp_path: Path) -> None:
    log = log_of(*[(key_record(f"k{i}"), value(f"c{i}")) for i in range(10)])
    first = ledger(log, LedgerIndex.open(tmp_path, identity=TOPIC, name="p0"))
    report = await first.restore()
    assert (report.resumed, report.records) == (False, 10)
    await first.close()

    log.append(key_record("k10").encode(), value("c10"))
    log.append(key_record("k3").encode(), None)  # taken back after the checkpoint
    second = ledger(log, LedgerIndex.open(tmp_path, identity=TOPIC, name="p0"), recent_bytes=0)
    report = await second.restore()
    assert (report.resumed, report.start, report.records) == (True, 10, 2)
    assert second.index.path is not None
    assert (await second.entry("k10")) is not None
    assert await second.entry("k3") is None
    found = await second.entry("k4")
    assert found is not None and found.command_id == "c4"
    await second.close()


async def test_an_index_of_another_log_is_rebuilt(tmp_path: Path) -> None:
    one = log_of(*[(key_record(f"k{i}"), value(f"c{i}")) for i in range(5)])
    led = ledger(one, LedgerIndex.open(tmp_path, identity=TOPIC, name="p0"))
    await led.restore()
    await led.close()
    # The topic was recreated and holds other records, more of them than the index saw.
    other = log_of(*[(key_record(f"x{i}"), value(f"d{i}")) for i in range(8)])
    led = ledger(other, LedgerIndex.open(tmp_path, identity=TOPIC, name="p0"), recent_bytes=0)
    report = await led.restore()
    assert (report.resumed, report.start, report.records) == (False, 0, 8)
    assert await led.entry("k1") is None
    assert await led.entry("x1") is not None
    await led.close()


async def test_an_index_ahead_of_the_partition_is_rebuilt(tmp_path: Path) -> None:
    long = log_of(*[(key_record(f"k{i}"), value(f"c{i}")) for i in range(6)])
    led = ledger(long, LedgerIndex.open(tmp_path, identity=TOPIC, name="p0"))
    await led.restore()
    await led.close()
    short = log_of((key_record("k0"), value("c0")))
    led = ledger(short, LedgerIndex.open(tmp_path, identity=TOPIC, name="p0"), recent_bytes=0)
    report = await led.restore()
    assert (report.resumed, report.records) == (False, 1)
    assert await led.entry("k5") is None
    await led.close()


async def test_rows_the_retention_removed_are_purged_on_resume(tmp_path: Path) -> None:
    log = log_of(*[(key_record(f"k{i}"), value(f"c{i}")) for i in range(6)])
    led = ledger(log, LedgerIndex.open(tmp_path, identity=TOPIC, name="p0"))
    await led.restore()
    await led.close()
    log.records = log.records[3:]
    led = ledger(log, LedgerIndex.open(tmp_path, identity=TOPIC, name="p0"))
    assert (await led.restore()).resumed
    assert led.index.lookup(ledger_store.digest(b"k1")) is None
    assert led.index.lookup(ledger_store.digest(b"k4")) == 4
    await led.close()


def test_an_index_in_use_is_not_shared(tmp_path: Path) -> None:
    held = LedgerIndex.open(tmp_path, identity=TOPIC, name="p0")
    other = LedgerIndex.open(tmp_path, identity=TOPIC, name="p0")
    assert held.path is not None and other.path is None  # a temporary one of its own
    other.close()
    held.close()
    again = LedgerIndex.open(tmp_path, identity=TOPIC, name="p0")
    assert again.path is not None
    again.close()


def test_a_damaged_index_file_is_rebuilt(tmp_path: Path) -> None:
    (tmp_path / "p0.sqlite3").write_bytes(b"not a database, " * 100)
    index = LedgerIndex.open(tmp_path, identity=TOPIC, name="p0")
    assert index.next_offset == 0 and index.lookup(b"x" * 16) is None
    index.close()


def test_an_index_for_another_partition_is_not_reused(tmp_path: Path) -> None:
    index = LedgerIndex.open(tmp_path, identity=f"{TOPIC}/0", name="p")
    index.apply({b"d" * 16: 3}, next_offset=4, sample=None)
    index.close()
    index = LedgerIndex.open(tmp_path, identity=f"{TOPIC}/1", name="p")
    assert index.next_offset == 0 and index.lookup(b"d" * 16) is None
    index.close()


def test_a_temporary_index_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    index = LedgerIndex.open(None, identity=TOPIC, name="p0")
    index.apply({b"d" * 16: 1}, next_offset=2, sample=None)
    assert os.listdir(tmp_path) == []
    assert index.lookup(b"d" * 16) == 1
    index.close()


async def test_a_read_that_fails_is_an_error_not_an_absent_key() -> None:
    class Unreadable(MemoryLog):
        async def read(self, offset: int) -> LogRecord | None:
            raise LedgerUnavailable("broker down")

    log = Unreadable(TOPIC)
    log.append(key_record("k1").encode(), value("c1"))
    led = ledger(log, recent_bytes=0)
    await led.restore()
    with pytest.raises(LedgerUnavailable):
        await led.entry("k1")
    assert await led.entry("k2") is None  # still known to be absent from the index alone


async def test_a_restore_cut_off_midway_goes_on_from_its_last_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger_store, "RESTORE_CHUNK", 4)
    monkeypatch.setattr(ledger_store, "MERGE_EVERY", 8)
    log = random_log(random.Random(99), 40)
    keys, answered = baseline(log)

    class Crashing(MemoryLog):
        async def bounds(self) -> tuple[int, int]:
            return await log.bounds()

        async def scan(self, start: int, end: int, on_batch: Any, *, stall_s: float) -> int:
            async def cut(batch: list[LogRecord], position: int) -> None:
                if position > 25:
                    raise RuntimeError("killed")
                await on_batch(batch, position)

            return await log.scan(start, end, cut, stall_s=stall_s)

        async def read(self, offset: int) -> LogRecord | None:
            return await log.read(offset)

    first = ledger(Crashing(TOPIC), LedgerIndex.open(tmp_path, identity=TOPIC, name="p0"))
    with pytest.raises(RuntimeError):
        await first.restore()
    staged_to = first.index.next_offset
    assert 0 < staged_to <= 25
    await first.close()

    second = ledger(log, LedgerIndex.open(tmp_path, identity=TOPIC, name="p0"), recent_bytes=0)
    report = await second.restore()
    assert report.resumed and report.start == staged_to
    for key in USER_KEYS:
        assert await second.entry(key) == keys.get(key), key
    for command_id in COMMAND_IDS:
        assert await second.answered(command_id) == (command_id in answered), command_id
    await second.close()


async def test_a_restore_cancelled_at_a_hand_back_closes_cleanly_and_is_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger_store, "RESTORE_CHUNK", 2)
    monkeypatch.setattr(ledger_store, "MERGE_EVERY", 4)
    log = log_of(*[(key_record(f"k{i}"), value(f"c{i}")) for i in range(30)])
    reached = asyncio.Event()

    class Slow(MemoryLog):
        async def bounds(self) -> tuple[int, int]:
            return await log.bounds()

        async def scan(self, start: int, end: int, on_batch: Any, *, stall_s: float) -> int:
            async def slow(batch: list[LogRecord], position: int) -> None:
                await on_batch(batch, position)
                if position > 12:
                    reached.set()
                    await asyncio.Event().wait()  # the rest never comes: handed back

            return await log.scan(start, end, slow, stall_s=stall_s)

    first = ledger(Slow(TOPIC), LedgerIndex.open(tmp_path, identity=TOPIC, name="p0"))
    restoring = asyncio.create_task(first.restore())
    await asyncio.wait_for(reached.wait(), 2)
    restoring.cancel()
    await asyncio.gather(restoring, return_exceptions=True)
    await first.close()
    assert not first.restored

    second = ledger(log, LedgerIndex.open(tmp_path, identity=TOPIC, name="p0"), recent_bytes=0)
    report = await second.restore()
    assert report.resumed and 0 < report.start <= 15
    for i in range(30):
        found = await second.entry(f"k{i}")
        assert found is not None and found.command_id == f"c{i}"
    await second.close()
