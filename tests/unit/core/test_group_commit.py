"""GroupCommitter with a scripted transactional producer: what lands when a caller gives up.

An in-flight mark whose caller was cancelled (a hand-back) must not stay in the ledger: the
next owner would take it for a call that may have reached the vendor (`ambiguous`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from aiokafka.errors import KafkaTimeoutError

from adapters.core.commands.model import decode_command
from adapters.core.group_commit import GroupCommitter
from tests.unit.core.command_harness import TP, Harness, ScriptedVendor, activity, harness

Sent = tuple[str, bytes | None, bytes | None]


class Meta:
    """The part of aiokafka's RecordMetadata the committer reads."""

    def __init__(self, offset: int) -> None:
        self.offset = offset


class TxnProducer:
    """aiokafka-like transactions; acks and the commit wait for gates the test opens."""

    def __init__(self) -> None:
        self.offsets: dict[str, int] = {}
        self.committed: list[list[Sent]] = []
        self.aborted = 0
        self.open: list[Sent] | None = None
        self.acks = asyncio.Event()
        self.acks.set()
        self.commit_gate = asyncio.Event()
        self.commit_gate.set()
        self.fail_commits = 0
        self.on_send: Callable[[Sent], None] | None = None
        self.commit_started = asyncio.Event()

    def transaction(self) -> _Txn:
        return _Txn(self)

    async def send(
        self,
        topic: str,
        *,
        key: bytes | None = None,
        value: bytes | None = None,
        headers: Any = None,
        partition: int | None = None,
    ) -> asyncio.Future[Meta]:
        assert self.open is not None, "send outside a transaction"
        sent = (topic, key, value)
        self.open.append(sent)
        if self.on_send is not None:
            self.on_send(sent)
        fut: asyncio.Future[Meta] = asyncio.get_running_loop().create_future()
        offset = self.offsets.get(topic, 0)
        self.offsets[topic] = offset + 1

        async def ack() -> None:
            await self.acks.wait()
            fut.set_result(Meta(offset))

        asyncio.get_running_loop().create_task(ack())
        return fut

    async def send_offsets_to_transaction(self, offsets: Any, group_id: str) -> None:
        assert self.open is not None
        self.open.append(("__offsets", None, repr(offsets).encode()))


class _Txn:
    def __init__(self, producer: TxnProducer) -> None:
        self.p = producer

    async def __aenter__(self) -> _Txn:
        self.p.open = []
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        records, self.p.open = self.p.open or [], None
        if exc_type is not None:
            self.p.aborted += 1
            return
        self.p.commit_started.set()
        await self.p.commit_gate.wait()
        if self.p.fail_commits:
            self.p.fail_commits -= 1
            self.p.aborted += 1
            raise KafkaTimeoutError()
        self.p.committed.append(records)


def with_committer(h: Harness) -> TxnProducer:
    producer = TxnProducer()
    h.work.writer.committer = GroupCommitter(
        producer,  # type: ignore[arg-type]
        TP,
        "g",
        commit_offset=h.work.schedule.commit_offset,
        name="test",
        on_fatal=h.fatal.append,
        on_committed=h.on_committed,
    )
    return producer


def ledger_after(h: Harness, producer: TxnProducer) -> dict[bytes, bytes]:
    """The ledger partition as a restore would read it from the committed transactions."""
    state: dict[bytes, bytes] = {}
    for txn in producer.committed:
        for topic, key, value in txn:
            if topic != h.worker.inst.topics.ledger or key is None:
                continue
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
    return state


async def start_mark(h: Harness) -> asyncio.Task[None]:
    command = decode_command(h.record(subject="s/1", data=activity(), key="k1"))
    return asyncio.create_task(h.work.writer.mark_inflight(command, "digest"))


async def settle(h: Harness) -> None:
    await h.work.commits.close(timeout_s=2.0)


async def test_a_mark_whose_caller_gave_up_before_its_batch_is_not_sent() -> None:
    h = await harness(ScriptedVendor([200]))
    producer = with_committer(h)
    producer.commit_gate.clear()
    blocker = asyncio.create_task(h.work.commits.write([("other", b"x", b"1", [], 0)]))
    await producer.commit_started.wait()  # the committer is busy: the mark queues
    mark = await start_mark(h)
    await asyncio.sleep(0.01)
    mark.cancel()
    producer.commit_gate.set()
    await blocker
    await settle(h)
    assert ledger_after(h, producer) == {}


async def test_a_mark_whose_caller_gave_up_while_it_was_being_sent_is_undone_in_the_same_txn() -> (
    None
):
    h = await harness(ScriptedVendor([200]))
    producer = with_committer(h)
    producer.acks.clear()
    mark = await start_mark(h)
    sent = asyncio.Event()
    producer.on_send = lambda rec: sent.set()
    await sent.wait()
    mark.cancel()  # the hand-back gives up on it: its records are already in the batch
    await asyncio.sleep(0.01)
    producer.acks.set()
    await settle(h)
    assert ledger_after(h, producer) == {}
    assert len(producer.committed) == 1  # undone in the same transaction
    assert await h.entry("k1") is None and "k1" not in h.work.marks


async def test_a_mark_whose_caller_gave_up_during_the_commit_is_cleared_right_after() -> None:
    h = await harness(ScriptedVendor([200]))
    producer = with_committer(h)
    producer.commit_gate.clear()
    mark = await start_mark(h)
    await producer.commit_started.wait()
    mark.cancel()  # too late to leave it out: it lands, so a tombstone must follow
    await asyncio.sleep(0.01)
    producer.commit_gate.set()
    await settle(h)
    assert ledger_after(h, producer) == {}
    assert h.fatal == []


async def test_a_retried_batch_leaves_out_the_mark_of_a_caller_that_gave_up() -> None:
    h = await harness(ScriptedVendor([200]))
    producer = with_committer(h)
    producer.fail_commits = 1
    producer.commit_gate.clear()
    mark = await start_mark(h)
    await producer.commit_started.wait()
    producer.commit_gate.set()
    await asyncio.sleep(0)  # the first commit fails; the retry waits 0.2 s
    mark.cancel()
    await asyncio.sleep(0.3)
    await settle(h)
    assert ledger_after(h, producer) == {}
    ledger = h.worker.inst.topics.ledger
    # Never the mark again, only its undo (the failed try might have committed after all).
    assert [v for txn in producer.committed for t, _k, v in txn if t == ledger] == [None]


async def test_a_mark_that_commits_lands_and_is_recorded() -> None:
    h = await harness(ScriptedVendor([200]))
    producer = with_committer(h)
    mark = await start_mark(h)
    await mark
    await settle(h)
    assert list(ledger_after(h, producer)) == [b"k1"]
    assert (entry := await h.entry("k1")) is not None and entry.state == "inflight"
    assert h.work.marks == {"k1": False}


async def test_a_mark_committed_just_as_its_caller_is_cancelled_is_cleared_after() -> None:
    # The commit completes the write, and before the caller runs again the hand-back
    # cancels it: the caller sees CancelledError and never records its mark.
    h = await harness(ScriptedVendor([200]))
    producer = with_committer(h)
    producer.commit_gate.clear()
    mark = await start_mark(h)
    await producer.commit_started.wait()
    committer = h.work.commits
    assert isinstance(committer, GroupCommitter)
    [write] = committer._in_batch
    write.future.set_result(None)  # what the committer does once the commit returns
    mark.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await mark
    producer.commit_gate.set()
    await settle(h)
    assert ledger_after(h, producer) == {}
    assert await h.entry("k1") is None and "k1" not in h.work.marks


async def test_committed_records_are_told_with_offsets_before_the_writer_and_aborted_never() -> (
    None
):
    h = await harness(ScriptedVendor([200]))
    producer = with_committer(h)
    committer = h.work.commits
    assert isinstance(committer, GroupCommitter)
    heard: list[tuple[list[tuple[str, int]], bool]] = []
    producer.fail_commits = 1  # the first try is aborted; the retry commits
    writing = asyncio.create_task(
        committer.write([("t.ledger", b"k", b"v", [], 0), ("t.results", b"r", b"x", [], None)])
    )
    committer.on_committed = lambda records: heard.append(
        ([(record[0], offset) for record, offset in records], writing.done())
    )
    await asyncio.wait_for(writing, 5)
    await settle(h)
    # Once, for the transaction that committed (the aborted one gave its records offsets 0).
    assert heard == [([("t.ledger", 1), ("t.results", 1)], False)]
