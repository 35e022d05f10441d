"""The batcher: calls that queue behind the budget leave together, each with its own answer.

Shaped after Click Maint's sequential batch: `{"ops": [{"method", "url", "params"}],
"sequential": true}` answered `{"results": [{"status", "body"}]}`, scoped by `X-Entity-Id`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import msgspec
import pytest

from adapters.core.batching import Batcher, BatchOp, BatchSpec
from adapters.core.ratelimit import SlidingWindowLimiter
from adapters.core.vendor_http import TransportError, VendorResponse


def encode(ops: list[BatchOp]) -> Any:
    return {
        "ops": [{"method": o.method, "url": o.path, "params": o.json} for o in ops],
        "sequential": True,
    }


def decode(answer: VendorResponse, n: int) -> list[VendorResponse] | None:
    try:
        results = answer.json()["results"]
    except (KeyError, TypeError, msgspec.DecodeError):
        return None
    return [
        VendorResponse(int(r["status"]), {}, msgspec.json.encode(r.get("body")), {})
        for r in results
    ]


SPEC = BatchSpec(
    path="/api/v1/batch",
    encode=encode,
    decode=decode,
    group_key=lambda op: op.headers.get("X-Entity-Id"),
    max_ops=3,
)


class Vendor:
    """A client: a budget of `budget` requests per window, and scripted batch answers."""

    def __init__(self, budget: int = 1, batch_status: int = 200) -> None:
        self.limiter = SlidingWindowLimiter(budget, 0.2, margin_s=0.0)
        self.sent: list[tuple[str, str, Any, dict[str, str]]] = []
        self.batch_status = batch_status
        self.op_status: dict[str, int] = {}
        self.gate = asyncio.Event()
        self.gate.set()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        before_send: Any = None,
        in_slot: bool = False,
    ) -> VendorResponse:
        if in_slot:
            return await self._answer(method, path, json, dict(headers or {}))
        async with self.limiter.slot():
            if before_send is not None:
                await before_send()
            return await self._answer(method, path, json, dict(headers or {}))

    async def _answer(
        self, method: str, path: str, json: Any, headers: dict[str, str]
    ) -> VendorResponse:
        await self.gate.wait()
        self.sent.append((method, path, json, headers))
        if path == SPEC.path:
            if self.batch_status != 200:
                return VendorResponse(self.batch_status, {}, b'{"status": "error"}', {})
            results = [
                {"status": self.op_status.get(op["url"], 200), "body": {"url": op["url"]}}
                for op in json["ops"]
            ]
            return VendorResponse(200, {}, msgspec.json.encode({"results": results}), {})
        return VendorResponse(201, {}, msgspec.json.encode({"alone": path}), {})

    async def close(self) -> None:
        return None


def call(b: Batcher, i: int, entity: str = "e1", **kw: Any) -> asyncio.Task[VendorResponse]:
    return asyncio.create_task(
        b.request(
            "POST",
            f"/api/v1/work_orders/{i}",
            json={"work_order": {"n": i}},
            headers={"X-Entity-Id": entity},
            **kw,
        )
    )


async def test_a_call_that_finds_the_budget_free_goes_alone() -> None:
    vendor = Vendor(budget=5)
    b = Batcher(vendor, SPEC)  # type: ignore[arg-type]
    answer = await call(b, 1)
    assert answer.status == 201
    assert [s[1] for s in vendor.sent] == ["/api/v1/work_orders/1"]
    await b.close()


async def test_calls_queued_behind_the_budget_leave_in_one_batch_each_with_its_answer() -> None:
    vendor = Vendor(budget=1)
    vendor.gate.clear()  # the first call holds the only slot
    vendor.op_status["/api/v1/work_orders/3"] = 422  # an op that fails, in the middle
    b = Batcher(vendor, SPEC)  # type: ignore[arg-type]
    first = call(b, 0)
    await asyncio.sleep(0.01)
    queued = [call(b, i) for i in range(1, 5)]
    await asyncio.sleep(0.01)
    vendor.gate.set()
    answers = await asyncio.gather(first, *queued)
    assert answers[0].status == 201  # alone
    # The next slot carried max_ops (3) calls, the one after the last.
    batches = [s for s in vendor.sent if s[1] == SPEC.path]
    assert [len(s[2]["ops"]) for s in batches] == [3]
    assert batches[0][2]["sequential"] is True
    assert batches[0][3] == {"X-Entity-Id": "e1"}
    assert [a.status for a in answers[1:4]] == [200, 200, 422]
    assert [a.json()["url"] for a in answers[1:4]] == [
        f"/api/v1/work_orders/{i}" for i in (1, 2, 3)
    ]
    assert answers[4].status == 201  # the fourth found the next slot alone
    assert (b.requests, b.calls) == (3, 5)
    await b.close()


async def test_calls_of_other_entities_are_never_in_one_batch() -> None:
    vendor = Vendor(budget=1)
    vendor.gate.clear()
    b = Batcher(vendor, SPEC)  # type: ignore[arg-type]
    first = call(b, 0)
    await asyncio.sleep(0.01)
    queued = [call(b, i, entity="e1" if i % 2 else "e2") for i in range(1, 5)]
    await asyncio.sleep(0.01)
    vendor.gate.set()
    await asyncio.gather(first, *queued)
    for _method, path, body, headers in vendor.sent:
        if path == SPEC.path:
            entity = headers["X-Entity-Id"]
            assert all(
                int(op["url"].rsplit("/", 1)[1]) % 2 == (entity == "e1") for op in body["ops"]
            )
    await b.close()


@pytest.mark.parametrize(("status", "acted"), [(500, True), (503, True), (429, False)])
async def test_a_batch_without_an_answer_is_a_lost_answer_for_each_call(
    status: int, acted: bool
) -> None:
    vendor = Vendor(budget=1, batch_status=status)
    vendor.gate.clear()
    b = Batcher(vendor, SPEC)  # type: ignore[arg-type]
    first = call(b, 0)
    await asyncio.sleep(0.01)
    queued = [call(b, i) for i in range(1, 3)]
    await asyncio.sleep(0.01)
    vendor.gate.set()
    await first
    for task in queued:
        with pytest.raises(TransportError) as exc:
            await task
        assert exc.value.may_have_acted is acted
    await b.close()


async def test_every_in_flight_mark_is_written_before_the_batch_leaves() -> None:
    vendor = Vendor(budget=1)
    vendor.gate.clear()
    b = Batcher(vendor, SPEC)  # type: ignore[arg-type]
    marked: list[int] = []
    sent_at_mark: list[int] = []

    def mark(i: int) -> Any:
        async def before_send() -> None:
            await asyncio.sleep(0.01)
            marked.append(i)
            sent_at_mark.append(len(vendor.sent))

        return before_send

    first = call(b, 0)
    await asyncio.sleep(0.01)
    queued = [call(b, i, before_send=mark(i)) for i in (1, 2)]
    await asyncio.sleep(0.01)
    vendor.gate.set()
    await asyncio.gather(first, *queued)
    assert sorted(marked) == [1, 2]
    assert sent_at_mark == [1, 1]  # only the lone first call had left


async def test_a_mark_that_cannot_be_written_sends_nothing_of_the_batch() -> None:
    vendor = Vendor(budget=1)
    vendor.gate.clear()
    b = Batcher(vendor, SPEC)  # type: ignore[arg-type]

    async def broken() -> None:
        raise RuntimeError("the ledger is gone")

    first = call(b, 0)
    await asyncio.sleep(0.01)
    queued = [call(b, 1, before_send=broken), call(b, 2)]
    await asyncio.sleep(0.01)
    vendor.gate.set()
    await first
    for task in queued:
        with pytest.raises(TransportError) as exc:
            await task
        assert exc.value.may_have_acted is False
    assert [s[1] for s in vendor.sent] == ["/api/v1/work_orders/0"]
    await b.close()


async def test_a_batch_path_that_does_not_exist_switches_batching_off() -> None:
    vendor = Vendor(budget=1, batch_status=404)
    vendor.gate.clear()
    b = Batcher(vendor, SPEC)  # type: ignore[arg-type]
    first = call(b, 0)
    await asyncio.sleep(0.01)
    queued = [call(b, i) for i in (1, 2)]
    await asyncio.sleep(0.01)
    vendor.gate.set()
    answers = await asyncio.gather(first, *queued)
    assert [a.status for a in answers] == [201, 201, 201]  # each went alone after the 404
    assert b.disabled
    later = await call(b, 9)
    assert later.status == 201
    await b.close()
