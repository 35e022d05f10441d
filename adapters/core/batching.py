"""Commands coalesced into a vendor's batch endpoint while they wait for the rate budget.

A vendor with a batch endpoint (Click Maint: up to 100 operations in one request, run in
order) declares a `BatchSpec`. The command executor then sends its calls through a
`Batcher` instead of the client: a call that finds the budget free goes out alone, as it
would without batching; calls that queue up behind the budget leave together, as many as
one batch holds, when the next request slot frees. So batching costs nothing when the
budget is not the bottleneck, and with a backlog each request carries up to `max_ops`
commands.

Each call keeps its own life: its `before_send` (the in-flight mark) completes before the
batch leaves, its answer is its operation's status and body, and a batch whose answer is
lost (a timeout, a 5xx for the whole batch) is a lost answer for every call in it, so the
executor retries updates and reports creates `ambiguous`, as for a single call.
Calls batch together only when they share the headers that scope them (`group_key`).

Subjects keep their order (see commands/subject_line.py). With `chain`, a subject's next
command starts as soon as its predecessor's call is queued here, and joins the same batch
behind it: a backlog of many commands for few records then still fills batches. A call
leaves only together with, and after, every unfinished earlier command of its subject, or
alone once they are all finished. When an answer would make an earlier call of a batch be
sent again after a later one of its subject that will not be (a later op that succeeded, or
a create whose answer was lost), the earlier one is not retried: it is reported as the
vendor answered it, or `ambiguous` when its answer was lost, rather than reorder the subject.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.core.commands.subject_line import Ticket, current_ticket
from adapters.core.errors import Action, ErrorTable
from adapters.core.vendor_http import TransportError, Unrepeatable, VendorClient, VendorResponse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchOp:
    """One queued call, as the vendor's batch body needs it."""

    method: str
    path: str
    json: Any
    headers: Mapping[str, str]


@dataclass(frozen=True)
class BatchSpec:
    """A vendor's batch endpoint: where it is, how an operation is written, how answers map."""

    # The batch request (POST to `path`, with the headers the ops share).
    path: str
    # The body for a list of operations.
    encode: Callable[[list[BatchOp]], Any]
    # The operations' answers from the batch's answer, in order; None when the answer does
    # not say (then no call learns anything: each is a lost answer).
    decode: Callable[[VendorResponse, int], list[VendorResponse] | None]
    # Calls that may share a batch: the same key (Click Maint: the same X-Entity-Id); None
    # means the call cannot be batched.
    group_key: Callable[[BatchOp], str | None]
    # Most operations per batch (the vendor's maximum, or less: a lost answer costs that many
    # `ambiguous` creates).
    max_ops: int = 20
    # Whether `method` may go into a batch at all (e.g. not the batch endpoint itself).
    batchable: Callable[[BatchOp], bool] = lambda _op: True
    # With a backlog forming (two calls or more queued when a slot frees), how long the
    # batch waits for more before it leaves: a budget with room would otherwise be spent
    # on batches of a few calls each. A call that finds nothing queued never waits.
    linger_s: float = 0.05
    # Whether a subject's later commands may join its earlier ones' batch (see the module
    # doc). Only for a vendor whose commands' preparing reads do not depend on what an
    # earlier command of the subject changed.
    chain: bool = True


@dataclass(eq=False)
class _Queued:
    op: BatchOp
    group: str
    before_send: Callable[[], Awaitable[None]] | None
    # The task that waits for this call (its command's runner).
    caller: asyncio.Task[object] | None = None
    # Its command's place in its subject's order (None outside the scheduler).
    ticket: Ticket | None = None
    answer: asyncio.Future[VendorResponse] = field(default_factory=asyncio.Future)


class Batcher:
    """The executor's client for an instance with a batch endpoint (see the module doc).

    `request` has `VendorClient.request`'s signature, so the retry loop and the executor do
    not know whether a call went alone or in a batch.
    """

    def __init__(
        self, client: VendorClient, spec: BatchSpec, errors: ErrorTable | None = None
    ) -> None:
        self.client = client
        self.spec = spec
        # The vendor's error table: which operation answers are retried (for the order of a
        # subject's calls); without it, every non-2xx answer counts as final.
        self.errors = errors
        # Tickets whose finish wakes the loop (a queued call waits for them).
        self._watched: set[int] = set()
        self._queue: list[_Queued] = []
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        # Set when the batch endpoint turned out not to exist: every call goes alone.
        self.disabled = False
        # A batch got 404/405: its calls, sent alone, tell a missing endpoint from a refusal.
        self._suspect = False
        self._alone: set[asyncio.Task[None]] = set()
        # Figures for the metrics and the benchmark.
        self.requests = 0
        self.calls = 0

    @property
    def limiter(self) -> Any:
        """The client's limiter (the budget is the client's)."""
        return self.client.limiter

    async def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        before_send: Callable[[], Awaitable[None]] | None = None,
    ) -> VendorResponse:
        """One call: alone when it can go now or cannot be batched, else in a batch."""
        op = BatchOp(method.upper(), path_or_url, json, dict(headers or {}))
        batchable = not self.disabled and self.spec.batchable(op) and not params
        group = self.spec.group_key(op) if batchable else None
        ticket = current_ticket()
        if group is None:
            if ticket is not None:
                # Not before the subject's earlier commands, which may wait in a batch.
                await ticket.wait_turn()
            return await self.client.request(
                method, path_or_url, params=params, json=json, headers=headers,
                before_send=before_send,
            )  # fmt: skip
        queued = _Queued(op, group, before_send, caller=asyncio.current_task(), ticket=ticket)
        self._queue.append(queued)
        self._ensure_loop()
        self._wake.set()
        if ticket is not None and self.spec.chain:
            ticket.hand_off()
        return await queued.answer

    @property
    def waiting(self) -> set[asyncio.Task[object]]:
        """Tasks whose calls are queued, not sent (with those waiting for the budget)."""
        queued = {q.caller for q in self._queue if q.caller is not None and not q.answer.done()}
        return queued | self.client.limiter.waiting

    async def close(self) -> None:
        """Stop sending; calls still queued fail as never sent."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        for queued in self._queue:
            if not queued.answer.done():
                queued.answer.set_exception(
                    TransportError("not sent: the batcher closed", may_have_acted=False)
                )
        self._queue.clear()
        await self.client.close()

    def _ensure_loop(self) -> None:
        if self._loop is None or self._loop.done():
            self._loop = asyncio.create_task(self._run(), name="batcher")

    async def _run(self) -> None:
        while True:
            while not self._select():
                self._wake.clear()
                await self._wake.wait()
            # A slot of the budget first: whatever queued meanwhile leaves in it together.
            async with self.client.limiter.slot():
                if self.spec.linger_s > 0 and 1 < len(self._select()) < self.spec.max_ops:
                    await asyncio.sleep(self.spec.linger_s)
                taken = self._select()
                chosen = set(map(id, taken))
                self._queue = [q for q in self._queue if id(q) not in chosen]
                if taken:
                    await self._send(taken)

    def _select(self) -> list[_Queued]:
        """The next batch: calls of the first group with one that may go, in an order that
        keeps each subject's (a call goes only behind its subject's unfinished ones)."""
        # Calls abandoned while they waited (their command was handed back) are dropped.
        self._queue = [q for q in self._queue if not q.answer.done()]
        taken: list[_Queued] = []
        in_batch: set[int] = set()
        group: str | None = None
        grew = True
        while grew and len(taken) < self.spec.max_ops:
            grew = False
            for q in self._queue:
                if len(taken) >= self.spec.max_ops:
                    break
                if id(q) in in_batch or (group is not None and q.group != group):
                    continue
                if q.ticket is not None:
                    blocking = [t for t in q.ticket.earlier() if id(t) not in in_batch]
                    if blocking:
                        self._watch(blocking[0])
                        continue
                    in_batch.add(id(q.ticket))
                group = q.group
                taken.append(q)
                in_batch.add(id(q))
                grew = True
        return taken

    def _watch(self, ticket: Ticket) -> None:
        if id(ticket) in self._watched:
            return
        self._watched.add(id(ticket))

        def finished(_done: object) -> None:
            self._watched.discard(id(ticket))
            self._wake.set()

        ticket.done.add_done_callback(finished)

    async def _send(self, taken: list[_Queued]) -> None:
        # Every call's in-flight mark is committed before anything of the batch leaves.
        marks = await asyncio.gather(
            *(q.before_send() for q in taken if q.before_send is not None),
            return_exceptions=True,
        )
        failed = [m for m in marks if isinstance(m, BaseException)]
        if failed:
            # A mark could not be written: nothing was sent; each call hears it and retries.
            for q in taken:
                if not q.answer.done():
                    q.answer.set_exception(
                        TransportError(f"not sent: {failed[0]!r}", may_have_acted=False)
                    )
            return
        self.requests += 1
        self.calls += len(taken)
        if len(taken) == 1:
            await self._send_alone(taken[0])
            return
        ops = [q.op for q in taken]
        try:
            answer = await self.client.request(
                "POST",
                self.spec.path,
                json=self.spec.encode(ops),
                headers=_shared_headers(ops),
                in_slot=True,
            )
        except TransportError as exc:
            lost = TransportError(f"batch: {exc}", may_have_acted=exc.may_have_acted)
            self._settle(taken, [lost] * len(taken))
            return
        if answer.status in (404, 405):
            # Either the batch path is wrong (a guess: Click Maint's copy lost it) or the
            # vendor refused what the batch is about (Click Maint: an unknown X-Entity-Id is
            # 404 too). Nothing ran either way: each call goes alone, in a slot of its own
            # once this one is given back, and their answers tell which it was. Of a
            # subject's calls only the first goes; the others are sent again behind it.
            self._suspect = True
            lines: set[int] = set()
            for q in taken:
                line = id(q.ticket.line) if q.ticket is not None else None
                if line is not None and line in lines:
                    _fail(q, TransportError("not sent: batch refused", may_have_acted=False))
                    continue
                if line is not None:
                    lines.add(line)
                task = asyncio.create_task(self._send_alone(q, in_slot=False, probe=True))
                self._alone.add(task)
                task.add_done_callback(self._alone.discard)
            return
        if not 200 <= answer.status < 300:
            # 429: nothing ran (the client already paused the budget). 5xx: some ops may have
            # run. Another 4xx (401, a refused body): the batch reached no op, and each call
            # hears that answer as its own.
            if answer.status == 429 or answer.status >= 500:
                acted = answer.status >= 500
                lost = TransportError(f"batch answered {answer.status}", may_have_acted=acted)
                self._settle(taken, [lost] * len(taken))
            else:
                self._settle(taken, [answer] * len(taken))
            return
        answers = self.spec.decode(answer, len(ops))
        if answers is None or len(answers) != len(ops):
            lost = TransportError("batch answer unreadable", may_have_acted=True)
            self._settle(taken, [lost] * len(taken))
            return
        self._settle(taken, list(answers))

    def _settle(
        self, taken: list[_Queued], outcomes: list[VendorResponse | TransportError]
    ) -> None:
        """Each call its outcome, in the batch's order; an earlier call of a subject that
        would be sent again behind a later one that will not be is made final instead."""
        settled: list[VendorResponse | TransportError] = list(outcomes)
        # Subjects (their lines) with a later call in this batch that is not sent again.
        final_later: set[int] = set()
        for i in reversed(range(len(taken))):
            q, outcome = taken[i], outcomes[i]
            line = id(q.ticket.line) if q.ticket is not None else None
            again = self._sent_again(q, outcome)
            if again and line is not None and line in final_later:
                assert q.ticket is not None
                settled[i] = _unrepeatable(outcome, q.ticket.line.subject, self.errors)
                again = False
            if not again and line is not None:
                final_later.add(line)
        for q, outcome in zip(taken, settled, strict=True):
            if isinstance(outcome, TransportError):
                _fail(q, outcome)
            else:
                _answer(q, outcome)

    def _sent_again(self, q: _Queued, outcome: VendorResponse | TransportError) -> bool:
        """Whether the call's retry loop will send it again after this outcome."""
        repeat_safe = q.ticket.repeat_safe if q.ticket is not None else True
        if isinstance(outcome, TransportError):
            return repeat_safe or not outcome.may_have_acted
        if self.errors is None:
            return False
        rule = self.errors.classify(outcome)
        if rule.action is not Action.RETRY:
            return False
        return repeat_safe or not rule.may_have_acted

    async def _send_alone(self, q: _Queued, *, in_slot: bool = True, probe: bool = False) -> None:
        try:
            answer = await self.client.request(
                q.op.method,
                q.op.path,
                json=q.op.json,
                headers=q.op.headers,
                in_slot=in_slot,
            )
        except TransportError as exc:
            _fail(q, exc)
            return
        if probe and self._suspect and answer.status not in (404, 405):
            # The call went through alone where its batch got 404/405: the batch endpoint
            # is not there. Every later call goes alone.
            self._suspect = False
            self.disabled = True
            log.error(
                "batch endpoint %s answered 404/405 while its calls alone did not: batching "
                "is off for this process; set the vendor's batch path in the instance "
                "options, or switch batching off",
                self.spec.path,
            )
        _answer(q, answer)


def _shared_headers(ops: list[BatchOp]) -> dict[str, str]:
    first = dict(ops[0].headers)
    return {k: v for k, v in first.items() if all(op.headers.get(k) == v for op in ops)}


def _unrepeatable(
    outcome: VendorResponse | TransportError, subject: str, errors: ErrorTable | None
) -> Unrepeatable:
    why = (
        f"not retried: a later command of subject {subject} ran after it in the same batch, "
        "and sending this one again would put it behind that one"
    )
    if isinstance(outcome, TransportError):
        return Unrepeatable(
            f"{outcome}; {why}", may_have_acted=outcome.may_have_acted, response=None
        )
    acted = errors.classify(outcome).may_have_acted if errors is not None else True
    return Unrepeatable(why, may_have_acted=acted, response=outcome)


def _answer(q: _Queued, answer: VendorResponse) -> None:
    if not q.answer.done():
        q.answer.set_result(answer)


def _fail(q: _Queued, exc: TransportError) -> None:
    if not q.answer.done():
        q.answer.set_exception(exc)
