"""Per-subject scheduling of one partition's commands.

Commands of one subject run in order, different subjects side by side; commands that share
an idempotency key run one at a time whatever their subjects (the ledger check and the
vendor call are one step per key); the process-wide slots bound how many run at once. The
offset the group may commit never passes a command whose result is not committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aiokafka.errors import KafkaError

from adapters.core.commands.model import Command
from adapters.core.commands.subject_line import SubjectLine, Ticket, set_ticket
from adapters.core.group_commit import CommitterClosed

log = logging.getLogger(__name__)

# A partition stops being fetched while this many of its commands wait (backpressure).
MAX_PENDING_PER_PARTITION = 1000


class TryLater(Exception):
    """The command cannot be handled now (its ledger cannot answer): it stays first in its
    subject's line, and the line is tried again shortly."""


@dataclass
class _KeyLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Holder and waiters: a released lock may have a woken waiter that has not run yet.
    users: int = 0


class KeyLocks:
    """One lock per idempotency key, kept while anyone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, _KeyLock] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Serialise the holders of one key."""
        entry = self._locks.setdefault(key, _KeyLock())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            # Dropped only when nobody holds or waits: `locked()` is already False while a
            # woken waiter has yet to run, and a newcomer must queue behind that waiter.
            entry.users -= 1
            if entry.users == 0:
                del self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)


@dataclass
class _Line:
    """One subject's order, and its commands being processed (task, ticket, command)."""

    order: SubjectLine
    children: list[tuple[asyncio.Task[None], Ticket, Command]] = field(default_factory=list)
    # Set when the runner has something to look at: a command, a hand-off, a finish.
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class SubjectScheduler:
    """Runs one partition's commands through `process`, one line per subject.

    Each command is processed in a task of its own; a subject's next command starts when
    the current one is finished, or earlier when its call was handed off to a batch (see
    subject_line.py), where the batcher keeps the subject's order.
    """

    def __init__(
        self,
        process: Callable[[Command], Awaitable[None]],
        *,
        slots: asyncio.Semaphore,
        name: str,
        on_resume: Callable[[], None] = lambda: None,
        max_pending: int = MAX_PENDING_PER_PARTITION,
        retry_s: float = 1.0,
    ) -> None:
        # Handles one command: decides, calls, commits, and then calls `finished`.
        self.process = process
        self.slots = slots
        self.name = name
        # Called once the backlog that paused the partition has halved.
        self.on_resume = on_resume
        self.max_pending = max_pending
        self.retry_s = retry_s
        # Offsets dispatched whose result is not committed yet.
        self.pending: set[int] = set()
        self.highest = -1
        # Commands not started yet, per subject.
        self.queues: dict[str, deque[Command]] = {}
        self.runners: dict[str, asyncio.Task[None]] = {}
        self.lines: dict[str, _Line] = {}
        # The commands being processed, by the task that processes each.
        self.active: dict[asyncio.Task[None], Command] = {}
        self.key_locks = KeyLocks()
        self.closing = False
        self.paused = False

    def dispatch(self, command: Command) -> None:
        """Queue a fetched command behind the earlier ones of its subject."""
        self.pending.add(command.offset)
        self.highest = max(self.highest, command.offset)
        self.queues.setdefault(command.subject, deque()).append(command)
        self._line(command.subject).wake.set()
        self._ensure_runner(command.subject)

    def finished(self, offset: int) -> None:
        """The command at `offset` has its result committed."""
        self.pending.discard(offset)

    def commit_offset(self, finishing: set[int]) -> int:
        """The group's next offset once `finishing` have their results: never past a command
        that is still without one."""
        others = self.pending - finishing
        return min(others) if others else self.highest + 1

    def should_pause(self) -> bool:
        """Whether fetching must pause for the backlog (True once per pause)."""
        if len(self.pending) >= self.max_pending and not self.paused:
            self.paused = True
            return True
        return False

    def _line(self, subject: str) -> _Line:
        line = self.lines.get(subject)
        if line is None:
            line = self.lines[subject] = _Line(SubjectLine(subject))
        return line

    def _ensure_runner(self, subject: str) -> None:
        if subject not in self.runners and not self.closing:
            self.runners[subject] = asyncio.create_task(self._run(subject))

    async def _run(self, subject: str) -> None:
        queue = self.queues.setdefault(subject, deque())
        line = self._line(subject)
        try:
            while not self.closing:
                self._reap(line, queue)
                last = line.children[-1][1] if line.children else None
                if queue and (last is None or last.handed_off.is_set()):
                    await self.slots.acquire()
                    if self.closing:
                        self.slots.release()
                        break
                    self._start(line, queue.popleft())
                    continue
                if not queue and not line.children:
                    break
                line.wake.clear()
                await line.wake.wait()
        except (asyncio.CancelledError, KafkaError, CommitterClosed):
            raise  # handed back or fenced: the next owner carries on
        except TryLater as exc:
            log.warning("%s: subject %s waits: %s", self.name, subject, exc)
        except Exception:
            log.exception("%s: subject %s stopped", self.name, subject)
        finally:
            self.runners.pop(subject, None)
            if not queue and not line.children:
                self.queues.pop(subject, None)
                self.lines.pop(subject, None)
            elif not self.closing:
                # Ended by an error it did not recover from: the subject's work goes on.
                asyncio.get_running_loop().call_later(self.retry_s, self._ensure_runner, subject)

    def _start(self, line: _Line, command: Command) -> None:
        ticket = line.order.issue()
        ticket.on_hand_off = line.wake.set
        task = asyncio.create_task(self._one(command, ticket))
        line.children.append((task, ticket, command))
        self.active[task] = command

        def done(_task: asyncio.Task[None]) -> None:
            # A callback, not a `finally`: a task cancelled before it ran has none.
            ticket.finish()
            self.slots.release()
            self.active.pop(task, None)
            line.wake.set()
            if self.paused and len(self.pending) < self.max_pending // 2:
                self.paused = False
                self.on_resume()

        task.add_done_callback(done)

    async def _one(self, command: Command, ticket: Ticket) -> None:
        set_ticket(ticket)
        async with self.key_locks.hold(command.idem_key):
            if self.closing:
                return  # handed back before it started: the next owner reads it again
            await self.process(command)

    def _reap(self, line: _Line, queue: deque[Command]) -> None:
        """Drop finished commands; one that failed goes back first in its subject's line."""
        failed: list[tuple[Command, BaseException]] = []
        for child in [c for c in line.children if c[0].done()]:
            line.children.remove(child)
            task, _ticket, command = child
            if not task.cancelled() and (exc := task.exception()) is not None:
                failed.append((command, exc))
        queue.extendleft(command for command, _exc in reversed(failed))
        if failed:
            raise failed[0][1]
