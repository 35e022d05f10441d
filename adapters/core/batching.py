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
executor retries updates and reports creates `ambiguous`, as for a single call. Commands of
one subject run one after the other (the scheduler), so a batch never reorders them.
Calls batch together only when they share the headers that scope them (`group_key`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.core.vendor_http import TransportError, VendorClient, VendorResponse

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


@dataclass
class _Queued:
    op: BatchOp
    group: str
    before_send: Callable[[], Awaitable[None]] | None
    # The task that waits for this call (its command's runner).
    caller: asyncio.Task[object] | None = None
    answer: asyncio.Future[VendorResponse] = field(default_factory=asyncio.Future)


class Batcher:
    """The executor's client for an instance with a batch endpoint (see the module doc).

    `request` has `VendorClient.request`'s signature, so the retry loop and the executor do
    not know whether a call went alone or in a batch.
    """

    def __init__(self, client: VendorClient, spec: BatchSpec) -> None:
        self.client = client
        self.spec = spec
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
        if group is None:
            return await self.client.request(
                method, path_or_url, params=params, json=json, headers=headers,
                before_send=before_send,
            )  # fmt: skip
        queued = _Queued(op, group, before_send, caller=asyncio.current_task())
        self._queue.append(queued)
        self._ensure_loop()
        self._wake.set()
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
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            # A slot of the budget first: whatever queued meanwhile leaves in it together.
            async with self.client.limiter.slot():
                if self.spec.linger_s > 0 and 1 < self._queued_in_first_group() < self.spec.max_ops:
                    await asyncio.sleep(self.spec.linger_s)
                taken = self._take()
                if taken:
                    await self._send(taken)

    def _queued_in_first_group(self) -> int:
        live = [q for q in self._queue if not q.answer.done()]
        return sum(1 for q in live if q.group == live[0].group) if live else 0

    def _take(self) -> list[_Queued]:
        # Calls abandoned while they waited (their command was handed back) are dropped.
        self._queue = [q for q in self._queue if not q.answer.done()]
        if not self._queue:
            return []
        group = self._queue[0].group
        taken = [q for q in self._queue if q.group == group][: self.spec.max_ops]
        chosen = set(map(id, taken))
        self._queue = [q for q in self._queue if id(q) not in chosen]
        return taken

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
            for q in taken:
                _fail(q, TransportError(f"batch: {exc}", may_have_acted=exc.may_have_acted))
            return
        if answer.status in (404, 405):
            # Either the batch path is wrong (a guess: Click Maint's copy lost it) or the
            # vendor refused what the batch is about (Click Maint: an unknown X-Entity-Id is
            # 404 too). Nothing ran either way: each call goes alone, in a slot of its own
            # once this one is given back, and their answers tell which it was.
            self._suspect = True
            for q in taken:
                task = asyncio.create_task(self._send_alone(q, in_slot=False, probe=True))
                self._alone.add(task)
                task.add_done_callback(self._alone.discard)
            return
        if not 200 <= answer.status < 300:
            # 429: nothing ran (the client already paused the budget). 5xx: some ops may have
            # run. Another 4xx (401, a refused body): the batch reached no op, and each call
            # hears that answer as its own.
            for q in taken:
                if answer.status == 429 or answer.status >= 500:
                    acted = answer.status >= 500
                    _fail(
                        q, TransportError(f"batch answered {answer.status}", may_have_acted=acted)
                    )
                else:
                    _answer(q, answer)
            return
        answers = self.spec.decode(answer, len(ops))
        if answers is None or len(answers) != len(ops):
            for q in taken:
                _fail(q, TransportError("batch answer unreadable", may_have_acted=True))
            return
        for q, op_answer in zip(taken, answers, strict=True):
            _answer(q, op_answer)

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


def _answer(q: _Queued, answer: VendorResponse) -> None:
    if not q.answer.done():
        q.answer.set_result(answer)


def _fail(q: _Queued, exc: TransportError) -> None:
    if not q.answer.done():
        q.answer.set_exception(exc)
