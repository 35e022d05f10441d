"""The batcher keeps each subject's order while a subject's commands share batches.

Calls carry tickets of their subject's line (as the scheduler gives them); the vendor is
the scripted client of test_batching, with per-operation answers taken in order.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
from collections.abc import Coroutine
from typing import Any

import msgspec
import pytest

from adapters.core.batching import Batcher
from adapters.core.commands.subject_line import SubjectLine, Ticket, set_ticket
from adapters.core.errors import ErrorTable
from adapters.core.vendor_http import TransportError, Unrepeatable, VendorResponse
from tests.unit.core.test_batching import SPEC, Vendor

ERRORS = ErrorTable()


class ScriptedVendor(Vendor):
    """Batch operations answered from `op_answers` in turn (then 200)."""

    def __init__(self, budget: int = 1, batch_status: int = 200) -> None:
        super().__init__(budget, batch_status)
        self.op_answers: list[int] = []

    async def _answer(
        self, method: str, path: str, json: Any, headers: dict[str, str]
    ) -> VendorResponse:
        if path != SPEC.path or self.batch_status != 200:
            return await super()._answer(method, path, json, headers)
        await self.gate.wait()
        self.sent.append((method, path, json, headers))
        results = [
            {
                "status": self.op_answers.pop(0) if self.op_answers else 200,
                "body": {"url": op["url"], "n": op["params"]["n"]},
            }
            for op in json["ops"]
        ]
        return VendorResponse(200, {}, msgspec.json.encode({"results": results}), {})


def in_line(coro: Coroutine[Any, Any, VendorResponse], ticket: Ticket) -> asyncio.Task[Any]:
    """Run a call as the command holding `ticket` (the scheduler sets it in the task)."""
    context = contextvars.copy_context()
    context.run(set_ticket, ticket)
    return asyncio.create_task(coro, context=context)


def patch(b: Batcher, record: int, n: int, ticket: Ticket) -> asyncio.Task[Any]:
    return in_line(
        b.request(
            "PATCH",
            f"/api/v1/work_orders/{record}",
            json={"n": n},
            headers={"X-Entity-Id": "e1"},
        ),
        ticket,
    )


def batches(vendor: Vendor) -> list[list[int]]:
    """The `n` of each batch's operations, batch by batch."""
    return [[op["params"]["n"] for op in s[2]["ops"]] for s in vendor.sent if s[1] == SPEC.path]


async def busy(vendor: Vendor, b: Batcher) -> asyncio.Task[Any]:
    """A call of another subject that holds the only slot until the gate opens."""
    vendor.gate.clear()
    first = patch(b, 999, 0, SubjectLine("other").issue())
    await asyncio.sleep(0.01)
    return first


async def test_a_subjects_calls_share_a_batch_in_their_order() -> None:
    vendor = ScriptedVendor()
    b = Batcher(vendor, SPEC, ERRORS)  # type: ignore[arg-type]
    first = await busy(vendor, b)
    line = SubjectLine("work_order/5")
    tickets = [line.issue() for _ in range(3)]
    calls = [patch(b, 5, n, t) for n, t in zip((1, 2, 3), tickets, strict=True)]
    await asyncio.sleep(0.01)
    assert all(t.handed_off.is_set() for t in tickets)  # the scheduler may start the next
    vendor.gate.set()
    answers = await asyncio.gather(first, *calls)
    assert batches(vendor) == [[1, 2, 3]]
    assert [a.json()["n"] for a in answers[1:]] == [1, 2, 3]
    await b.close()


async def test_a_call_does_not_overtake_an_earlier_one_that_is_not_queued() -> None:
    vendor = ScriptedVendor()
    b = Batcher(vendor, SPEC, ERRORS)  # type: ignore[arg-type]
    first = await busy(vendor, b)
    line = SubjectLine("work_order/5")
    earlier, later = line.issue(), line.issue()
    # `earlier` is between attempts (not queued); `later`, and another subject, are queued.
    late = patch(b, 5, 2, later)
    other = patch(b, 6, 7, SubjectLine("work_order/6").issue())
    await asyncio.sleep(0.01)
    vendor.gate.set()
    await asyncio.gather(first, other)
    await asyncio.sleep(0.05)
    assert not late.done()
    assert batches(vendor) == []  # `other` went alone in the slot; `late` waits
    again = patch(b, 5, 1, earlier)
    await asyncio.wait_for(again, 1)
    earlier.finish()
    await asyncio.wait_for(late, 1)
    assert batches(vendor) == [[1, 2]]  # the earlier one came back: both left, in order
    await b.close()


async def test_a_call_waits_for_an_earlier_one_that_is_in_flight() -> None:
    vendor = ScriptedVendor(budget=2)
    vendor.gate.clear()
    b = Batcher(vendor, SPEC, ERRORS)  # type: ignore[arg-type]
    line = SubjectLine("work_order/5")
    earlier, later = line.issue(), line.issue()
    first = patch(b, 5, 1, earlier)  # alone, in flight (the vendor holds its answer)
    await asyncio.sleep(0.01)
    second = patch(b, 5, 2, later)
    await asyncio.sleep(0.05)
    assert [s[2]["n"] for s in vendor.sent] == []  # the gate holds even the first
    vendor.gate.set()
    await first
    await asyncio.sleep(0.05)
    assert not second.done()  # a free slot, but its subject's earlier command is not done
    earlier.finish()
    await asyncio.wait_for(second, 1)
    assert [s[2]["n"] for s in vendor.sent] == [1, 2]
    await b.close()


async def test_after_a_lost_batch_answer_updates_are_all_sent_again_in_order() -> None:
    vendor = ScriptedVendor(batch_status=500)
    b = Batcher(vendor, SPEC, ERRORS)  # type: ignore[arg-type]
    first = await busy(vendor, b)
    line = SubjectLine("work_order/5")
    p, f = line.issue(), line.issue()
    calls = [patch(b, 5, 1, p), patch(b, 5, 2, f)]
    await asyncio.sleep(0.01)
    vendor.gate.set()
    await first
    for task in calls:
        with pytest.raises(TransportError) as exc:
            await task
        # Both are retried (updates may be repeated): nothing makes either final.
        assert not isinstance(exc.value, Unrepeatable)
        assert exc.value.may_have_acted
    # The later one comes back first (a shorter backoff): it still goes behind the earlier.
    vendor.batch_status = 200
    vendor.gate.clear()
    blocker = patch(b, 999, 0, SubjectLine("other").issue())
    await asyncio.sleep(0.01)
    retry_f = patch(b, 5, 2, f)
    await asyncio.sleep(0.01)
    retry_p = patch(b, 5, 1, p)
    await asyncio.sleep(0.01)
    vendor.gate.set()
    await asyncio.gather(blocker, retry_p, retry_f)
    assert [n for n in batches(vendor)[-1] if n] == [1, 2]  # (0: the other subject's)
    await b.close()


async def test_a_lost_answer_makes_an_update_final_when_a_later_call_is_not_repeated() -> None:
    vendor = ScriptedVendor(batch_status=502)
    b = Batcher(vendor, SPEC, ERRORS)  # type: ignore[arg-type]
    first = await busy(vendor, b)
    line = SubjectLine("part/5")
    update, restock = line.issue(), line.issue()
    restock.repeat_safe = False  # a stock movement: its lost answer ends it (ambiguous)
    calls = [patch(b, 5, 1, update), patch(b, 5, 2, restock)]
    await asyncio.sleep(0.01)
    vendor.gate.set()
    await first
    with pytest.raises(Unrepeatable) as stopped:
        await calls[0]
    assert stopped.value.may_have_acted and stopped.value.response is None
    assert "part/5" in str(stopped.value)
    with pytest.raises(TransportError) as lost:
        await calls[1]
    assert not isinstance(lost.value, Unrepeatable)
    await b.close()


async def test_an_operation_retried_behind_a_later_one_that_ran_is_final_instead() -> None:
    vendor = ScriptedVendor()
    vendor.op_answers = [500, 200, 503]
    b = Batcher(vendor, SPEC, ERRORS)  # type: ignore[arg-type]
    first = await busy(vendor, b)
    line = SubjectLine("work_order/5")
    tickets = [line.issue() for _ in range(2)]
    other_line = SubjectLine("work_order/6")
    calls = [
        patch(b, 5, 1, tickets[0]),
        patch(b, 5, 2, tickets[1]),
        patch(b, 6, 3, other_line.issue()),
    ]
    await asyncio.sleep(0.01)
    vendor.gate.set()
    await first
    with pytest.raises(Unrepeatable) as stopped:
        await calls[0]  # its 500 would be retried after the later op, which succeeded
    assert stopped.value.response is not None and stopped.value.response.status == 500
    assert (await calls[1]).status == 200
    # Alone in its subject: its 503 is an answer like any other, retried by its caller.
    assert (await calls[2]).status == 503
    await b.close()


async def test_a_429_for_the_batch_lets_every_call_be_sent_again() -> None:
    vendor = ScriptedVendor(batch_status=429)
    b = Batcher(vendor, SPEC, ERRORS)  # type: ignore[arg-type]
    first = await busy(vendor, b)
    line = SubjectLine("part/5")
    update, restock = line.issue(), line.issue()
    restock.repeat_safe = False
    calls = [patch(b, 5, 1, update), patch(b, 5, 2, restock)]
    await asyncio.sleep(0.01)
    vendor.gate.set()
    await first
    for task in calls:
        with pytest.raises(TransportError) as exc:
            await task
        assert not isinstance(exc.value, Unrepeatable) and not exc.value.may_have_acted
    await b.close()


async def test_a_refused_batch_probes_with_the_first_call_of_each_subject_only() -> None:
    vendor = ScriptedVendor(batch_status=404)
    b = Batcher(vendor, SPEC, ERRORS)  # type: ignore[arg-type]
    first = await busy(vendor, b)
    line = SubjectLine("work_order/5")
    p, f = line.issue(), line.issue()
    calls = [patch(b, 5, 1, p), patch(b, 5, 2, f)]
    await asyncio.sleep(0.01)
    vendor.gate.set()
    await first
    assert (await calls[0]).status == 201  # alone: the batch path is what was missing
    with pytest.raises(TransportError) as exc:
        await calls[1]
    assert not exc.value.may_have_acted  # not sent: its retry goes behind the first
    assert b.disabled
    p.finish()
    assert (await patch(b, 5, 2, f)).status == 201
    await b.close()


async def test_a_call_sent_alone_waits_for_its_subjects_earlier_commands() -> None:
    vendor = ScriptedVendor(budget=5)
    b = Batcher(vendor, SPEC, ERRORS)  # type: ignore[arg-type]
    line = SubjectLine("work_order/5")
    earlier, later = line.issue(), line.issue()
    # A read (not batchable) of the later command: it waits for the earlier one to finish.
    read = in_line(b.request("GET", "/api/v1/work_orders/5"), later)
    await asyncio.sleep(0.05)
    assert not read.done() and vendor.sent == []
    earlier.finish()
    assert (await asyncio.wait_for(read, 1)).status == 201
    await b.close()


async def test_without_chaining_no_call_is_handed_off() -> None:
    vendor = ScriptedVendor()
    b = Batcher(vendor, dataclasses.replace(SPEC, chain=False), ERRORS)  # type: ignore[arg-type]
    first = await busy(vendor, b)
    ticket = SubjectLine("work_order/5").issue()
    call = patch(b, 5, 1, ticket)
    await asyncio.sleep(0.01)
    assert not ticket.handed_off.is_set()  # its subject's next command waits for it
    vendor.gate.set()
    await asyncio.gather(first, call)
    await b.close()
