"""The request pipeline every fake vendor's API runs through, with a hook per vendor step.

`PipelineServer._api` is the aiohttp handler of a fake's API routes. For every request it:

1. takes the request's faults (`fail_next`, `delay_next`) and judges it on arrival,
   synchronously (`_arrive`: whose key, which route; then the injected failure's answer from
   `_injected`, or `_admit`'s 401 or 429), so that concurrent requests are judged in arrival
   order and a delay only slows the answer;
2. reads the body (`_receive`) before any delay: the request is whole once it arrived, so a
   client that hangs up meanwhile does not undo it, as at a real server that has the body;
3. waits out the delay and answers (`_dispatch`, unless an answer was decided on arrival), or
   with `_answer_before_delay` answers first and then waits (the write is done even sooner);
4. logs the request (`_log_request`).

A vendor fake implements the hooks with its own rules and envelopes; the order of the steps
is the kit's.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from aiohttp import web

from adapters.fakekit import FakeServer, Fault, MessageT

StateT = TypeVar("StateT")


def injected_reason(status: int) -> str:
    """The message of an answer `fail_next` injected: "injected failure (<status>)"."""
    return f"injected failure ({status})"


@dataclass
class Arrival(Generic[StateT]):
    """A request as judged the moment it arrived, before any delay."""

    # Arrival on the monotonic clock: what logs and rate limits count by.
    at: float
    # Seconds the answer is held (`delay_next`); 0 for none.
    delay: float
    # `fail_next`'s (status, Retry-After) for this request, or None.
    injected: Fault | None
    # What the vendor fake read on arrival (`_arrive`): whose key, which route, …
    state: StateT
    # An answer decided on arrival (injected failure, 401, 429), or None to dispatch.
    early: web.Response | None
    # The body as received (`_receive`'s default reads it whole).
    body: bytes = b""


class PipelineServer(FakeServer[MessageT], Generic[MessageT, StateT]):
    """A `FakeServer` whose API requests run through `_api`; see the module docstring."""

    # True: the request is fully handled before the delay (Mobility Work's fake), so even a
    # client that gives up at once leaves its write behind.
    _answer_before_delay: ClassVar[bool] = False

    async def _api(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp handler of the API: the steps of the module docstring, in order.

        A test may wrap it in a subclass to see every answer (tests/integration's Click Maint
        `RecordingFake` does).
        """
        at = time.monotonic()
        delay, injected = self._take_faults()
        state = self._arrive(request, at)
        if injected is not None:
            early: web.Response | None = self._injected(*injected)
        else:
            early = self._admit(request, state, at)
        arrival = Arrival(at=at, delay=delay, injected=injected, state=state, early=early)
        await self._receive(request, arrival)
        if self._answer_before_delay:
            response = await self._answer(request, arrival)
            await _hold(delay)
        else:
            await _hold(delay)
            response = await self._answer(request, arrival)
        self._log_request(request, arrival, response)
        return response

    async def _answer(self, request: web.Request, arrival: Arrival[StateT]) -> web.Response:
        if arrival.early is not None:
            return arrival.early
        return await self._dispatch(request, arrival)

    # ------------------------------------------------------------------ hooks

    def _arrive(self, request: web.Request, at: float) -> StateT:
        """What the vendor reads from a request the moment it arrives (called for each)."""
        raise NotImplementedError

    def _injected(self, status: int, retry_after: float | None) -> web.Response:
        """The answer to a request `fail_next` fails, in the vendor's error envelope."""
        raise NotImplementedError

    def _admit(self, request: web.Request, state: StateT, at: float) -> web.Response | None:
        """An answer decided on arrival (a wrong key's 401, a 429), or None to dispatch.

        Not called for a request `fail_next` fails: such a request takes no rate-limit slot.
        """
        return None

    async def _receive(self, request: web.Request, arrival: Arrival[StateT]) -> None:
        """Read the request's body before any delay (into `arrival.body` by default)."""
        arrival.body = await request.read()

    async def _dispatch(self, request: web.Request, arrival: Arrival[StateT]) -> web.Response:
        """The vendor's answer to a request admitted on arrival."""
        raise NotImplementedError

    def _log_request(
        self, request: web.Request, arrival: Arrival[StateT], response: web.Response
    ) -> None:
        """Log the request with its answer (in the fake's `requests`)."""
        raise NotImplementedError


async def _hold(delay: float) -> None:
    if delay > 0:
        await asyncio.sleep(delay)
