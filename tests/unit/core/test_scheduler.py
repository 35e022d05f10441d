"""Per-subject scheduling without a worker: order, the committable offset, backpressure."""

from __future__ import annotations

import asyncio

from aiokafka.structs import ConsumerRecord

from adapters.core.commands.model import Command
from adapters.core.commands.scheduler import SubjectScheduler, TryLater
from adapters.core.commands.subject_line import current_ticket


def command(offset: int, subject: str, key: str | None = None) -> Command:
    record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        "t", 0, offset, 0, 0, None, b"", None, 0, 0, []
    )
    return Command(record, None, f"c{offset}", "t", subject, key or f"k{offset}")


async def settled(s: SubjectScheduler) -> None:
    """Until every dispatched command has its result (a retried one included)."""
    async with asyncio.timeout(2):
        while s.pending or s.runners:
            await asyncio.gather(*s.runners.values(), *s.active, return_exceptions=True)
            await asyncio.sleep(0.01)


def test_the_offset_never_passes_a_command_without_its_result() -> None:
    s = SubjectScheduler(lambda _c: asyncio.sleep(0), slots=asyncio.Semaphore(1), name="t")
    s.pending, s.highest = {5, 6, 7}, 7
    assert s.commit_offset({6, 7}) == 5  # 5 is still without a result
    assert s.commit_offset({5}) == 6
    s.finished(5)
    assert s.commit_offset({6, 7}) == 8


async def test_one_subject_in_order_and_a_command_that_must_wait_stays_first() -> None:
    done: list[int] = []
    waits = {2: 1}  # the command at offset 2 cannot be handled the first time

    async def process(c: Command) -> None:
        if waits.get(c.offset):
            waits[c.offset] -= 1
            raise TryLater("ledger unavailable")
        await asyncio.sleep(0)
        done.append(c.offset)
        s.finished(c.offset)

    s = SubjectScheduler(process, slots=asyncio.Semaphore(4), name="t", retry_s=0.01)
    for offset in (1, 2, 3):
        s.dispatch(command(offset, "a"))
    s.dispatch(command(4, "b"))
    async with asyncio.timeout(2):
        while s.runners or s.queues:
            await asyncio.gather(*s.runners.values(), return_exceptions=True)
            await asyncio.sleep(0.02)
    assert [o for o in done if o != 4] == [1, 2, 3]
    assert s.pending == set()


async def test_a_backlog_pauses_fetching_once_and_resumes_at_half() -> None:
    gate = asyncio.Event()
    resumed: list[bool] = []

    async def process(c: Command) -> None:
        await gate.wait()
        s.finished(c.offset)

    s = SubjectScheduler(
        process,
        slots=asyncio.Semaphore(1),
        name="t",
        on_resume=lambda: resumed.append(True),
        max_pending=4,
    )
    for offset in range(4):
        s.dispatch(command(offset, "a"))
    assert s.should_pause() is True
    assert s.should_pause() is False  # paused already
    gate.set()
    async with asyncio.timeout(2):
        await asyncio.gather(*s.runners.values())
    assert resumed == [True] and not s.paused


async def test_a_subjects_next_command_starts_when_the_current_one_hands_off_its_call() -> None:
    started: list[int] = []
    gates = {1: asyncio.Event(), 2: asyncio.Event()}

    async def process(c: Command) -> None:
        started.append(c.offset)
        ticket = current_ticket()
        assert ticket is not None
        if c.offset == 1:
            ticket.hand_off()  # its call waits in a batch: the next may queue behind it
        if c.offset in gates:
            await gates[c.offset].wait()
        s.finished(c.offset)

    s = SubjectScheduler(process, slots=asyncio.Semaphore(4), name="t")
    for offset in (1, 2, 3):
        s.dispatch(command(offset, "a"))
    await asyncio.sleep(0.02)
    # 2 started while 1 waits; 2 did not hand off, so 3 waits for it to finish.
    assert started == [1, 2]
    gates[2].set()
    await asyncio.sleep(0.02)
    assert started == [1, 2, 3]
    assert 1 in s.pending  # the offset waits for the first one's result
    gates[1].set()
    await settled(s)
    assert s.pending == set() and s.active == {} and s.lines == {}


async def test_tickets_follow_the_order_commands_were_read() -> None:
    seen: list[tuple[int, list[int]]] = []

    async def process(c: Command) -> None:
        ticket = current_ticket()
        assert ticket is not None
        seen.append((c.offset, [t.seq for t in ticket.earlier()]))
        ticket.hand_off()
        await asyncio.sleep(0.01)
        s.finished(c.offset)

    s = SubjectScheduler(process, slots=asyncio.Semaphore(8), name="t")
    for offset in (1, 2, 3):
        s.dispatch(command(offset, "a"))
    await settled(s)
    assert seen == [(1, []), (2, [0]), (3, [0, 1])]


async def test_a_command_that_crashes_is_tried_again_first_in_its_line() -> None:
    done: list[int] = []
    crashes = {2: 1}

    async def process(c: Command) -> None:
        if crashes.get(c.offset):
            crashes[c.offset] -= 1
            raise RuntimeError("a bug")
        done.append(c.offset)
        s.finished(c.offset)

    s = SubjectScheduler(process, slots=asyncio.Semaphore(2), name="t", retry_s=0.01)
    for offset in (1, 2, 3):
        s.dispatch(command(offset, "a"))
    await settled(s)
    assert done == [1, 2, 3]
    assert s.slots._value == 2  # every slot given back
