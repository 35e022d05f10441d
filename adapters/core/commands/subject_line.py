"""The order of one subject's commands, as the code that sends their calls sees it.

The scheduler runs a subject's commands one after the other. A vendor with a sequential
batch endpoint can do better: a subject's next command may join the batch its predecessor
waits in, behind it, since the vendor runs a batch's operations in order. The scheduler
then starts the next command as soon as the current one's call is queued (`handed_off`),
and the batcher keeps the order: a call is sent only together with, and after, every
earlier command of its subject that is not finished, or alone once they all are.

Each command being processed holds a `Ticket` of its subject's `SubjectLine`, found by
the code below it through `current_ticket()` (a context variable the scheduler sets for
the command's task), so the executor and the client keep their signatures.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(eq=False)
class Ticket:
    """One command's place in its subject's line."""

    line: SubjectLine
    seq: int
    # Set by the batcher when the command's call is queued behind the budget: the subject's
    # next command may start and queue behind it.
    handed_off: asyncio.Event = field(default_factory=asyncio.Event)
    # Resolved when the command is finished (result decided, or given up or handed back).
    done: asyncio.Future[None] = field(default_factory=asyncio.Future)
    # Whether the command's call may be sent again after a lost answer (set by the executor).
    repeat_safe: bool = True
    # Told when the call is handed off (the scheduler wakes the subject's runner).
    on_hand_off: Callable[[], None] = lambda: None

    def hand_off(self) -> None:
        """The call is queued in a batch: the subject's next command may start."""
        if not self.handed_off.is_set():
            self.handed_off.set()
            self.on_hand_off()

    def earlier(self) -> list[Ticket]:
        """The subject's earlier commands that are not finished, in order."""
        return [t for t in self.line.live if t.seq < self.seq]

    async def wait_turn(self) -> None:
        """Until every earlier command of the subject is finished."""
        for ticket in self.earlier():
            await asyncio.shield(ticket.done)

    def finish(self) -> None:
        """The command is finished: later ones no longer wait for it."""
        if not self.done.done():
            self.done.set_result(None)
        if self in self.line.live:
            self.line.live.remove(self)


@dataclass
class SubjectLine:
    """The live tickets of one subject, in the order its commands were read."""

    subject: str
    live: list[Ticket] = field(default_factory=list)
    _next: int = 0

    def issue(self) -> Ticket:
        """A ticket behind every live one."""
        ticket = Ticket(self, self._next)
        self._next += 1
        self.live.append(ticket)
        return ticket


_CURRENT: contextvars.ContextVar[Ticket | None] = contextvars.ContextVar(
    "workbridge_subject_ticket", default=None
)


def current_ticket() -> Ticket | None:
    """The ticket of the command this task processes (None outside the scheduler)."""
    return _CURRENT.get()


def set_ticket(ticket: Ticket | None) -> None:
    """Set the current task's ticket (the scheduler, in the command's own task)."""
    _CURRENT.set(ticket)
