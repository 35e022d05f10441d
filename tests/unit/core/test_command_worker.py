"""CommandWorker decisions, driven without a broker (see command_harness)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import msgspec
import pytest
from aiokafka.structs import ConsumerRecord

from adapters.core.command_worker import Invalid, _fill_path
from adapters.core.commands.scheduler import KeyLocks
from adapters.core.ratelimit import SlidingWindowLimiter
from adapters.core.rest_command import rest_command
from adapters.core.vendor_http import VendorResponse
from tests.unit.core.command_harness import TP, ScriptedVendor, activity, harness

# -- one idempotency key, one side effect ----------------------------------------------------


async def test_key_lock_holds_a_third_comer_while_a_woken_waiter_has_not_run_yet() -> None:
    # A releases while B waits: B is woken but has not run when C arrives. C must queue
    # behind B, not get a lock of its own.
    locks = KeyLocks()
    inside: list[str] = []
    log: list[str] = []
    a_may_leave = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def hold(name: str) -> None:
        async with locks.hold("k"):
            inside.append(name)
            log.append(f"{name} in, with {sorted(inside)}")
            if name == "a":
                await a_may_leave.wait()
            else:
                await asyncio.sleep(0.01)
            inside.remove(name)
        if name == "a":
            # Right after A's release: B is woken, not yet running.
            tasks.append(asyncio.create_task(hold("c")))

    tasks.append(asyncio.create_task(hold("a")))
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(hold("b")))
    await asyncio.sleep(0)
    a_may_leave.set()
    async with asyncio.timeout(2):
        await tasks[0]  # A starts C as it ends
        await asyncio.gather(*tasks)
    assert log == ["a in, with ['a']", "b in, with ['b']", "c in, with ['c']"]
    assert len(locks) == 0  # nothing left behind once nobody holds or waits


async def test_three_commands_of_one_key_on_three_subjects_call_the_vendor_once() -> None:
    # The first is rejected (no ledger entry for the key); the other two carry the same
    # key and data. With two slots the third waits for a slot, not for the key: it got a
    # fresh key lock and called the vendor beside the second.
    h = await harness(ScriptedVendor([200]), concurrency=2)
    h.dispatch(
        h.record(subject="s/1", data={"date": "nope"}, key="k1", command_id="c1"),
        h.record(subject="s/2", data=activity(), key="k1", command_id="c2"),
        h.record(subject="s/3", data=activity(), key="k1", command_id="c3"),
    )
    await h.settle()
    assert len(h.vendor.sent) == 1
    by_id = {r["_commandid"]: r for r in h.results()}
    assert by_id["c1"]["status"] == "rejected"
    assert by_id["c2"]["status"] == "succeeded"
    assert by_id["c3"]["status"] == "succeeded" and by_id["c3"]["duplicate_of"] == "c2"
    assert len(h.work.schedule.key_locks) == 0


# -- the ledger's own records never collide with user keys ----------------------------------


async def test_a_user_key_shaped_like_an_answered_record_does_not_silence_that_command() -> None:
    h = await harness(ScriptedVendor([200]))
    h.dispatch(h.record(subject="s/1", data=activity(), key="answered/c2", command_id="c1"))
    await h.settle()
    h.dispatch(h.record(subject="s/2", data={"date": "nope"}, command_id="c2"))
    await h.settle()
    by_id = {r["_commandid"]: r for r in h.results()}
    assert by_id["c1"]["status"] == "succeeded"
    assert by_id["c2"]["status"] == "rejected"  # it has its result


async def test_a_rejected_command_id_does_not_answer_a_user_key_of_that_shape() -> None:
    # The other way round: command `x` is rejected, then key `answered/x` is used.
    h = await harness(ScriptedVendor([200]))
    h.dispatch(h.record(subject="s/1", data={"date": "nope"}, command_id="x"))
    await h.settle()
    h.dispatch(h.record(subject="s/2", data=activity(), key="answered/x", command_id="c2"))
    await h.settle()
    by_id = {r["_commandid"]: r for r in h.results()}
    assert by_id["x"]["status"] == "rejected"
    assert by_id["c2"]["status"] == "succeeded" and by_id["c2"].get("duplicate_of") is None
    assert len(h.vendor.sent) == 1


# -- a crash leaves the key's ledger entry agreeing with the answer --------------------------


async def test_a_crash_before_the_request_left_answers_failed_and_the_key_says_so() -> None:
    # Attempt 1 is a 429 (the vendor did not act), attempt 2 crashes before it is sent.
    h = await harness(ScriptedVendor([429, RuntimeError("boom"), 200]))
    h.dispatch(h.record(subject="s/1", data=activity(), key="k1", command_id="c1"))
    await h.settle()
    h.dispatch(h.record(subject="s/2", data=activity(), key="k1", command_id="c2"))
    await h.settle()
    by_id = {r["_commandid"]: r for r in h.results()}
    assert by_id["c1"]["status"] == "failed" and "internal error" in by_id["c1"]["reason"]
    # Not `ambiguous`: the key's entry holds c1's final answer, not a stale in-flight mark.
    assert by_id["c2"]["status"] == "failed" and by_id["c2"]["duplicate_of"] == "c1"
    assert (entry := await h.entry("k1")) is not None and entry.state == "done"
    assert len(h.vendor.sent) == 1


async def test_a_crash_after_the_request_left_is_ambiguous_and_so_is_the_key() -> None:
    class Boom(ScriptedVendor):
        async def request(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
            await super().request(*args, **kwargs)  # type: ignore[arg-type]
            raise RuntimeError("crash while reading the answer")

    h = await harness(Boom([200]))
    h.dispatch(h.record(subject="s/1", data=activity(), key="k1", command_id="c1"))
    await h.settle()
    h.dispatch(h.record(subject="s/2", data=activity(), key="k1", command_id="c2"))
    await h.settle()
    by_id = {r["_commandid"]: r for r in h.results()}
    assert by_id["c1"]["status"] == "ambiguous"
    assert by_id["c2"]["status"] == "ambiguous" and by_id["c2"]["duplicate_of"] == "c1"
    assert (entry := await h.entry("k1")) is not None and entry.state == "done"
    assert len(h.vendor.sent) == 1


# -- path fields stay inside their segment -------------------------------------------------


def test_a_configured_path_refuses_a_dot_segment_and_quotes_the_rest() -> None:
    template = "/partners/v1/tasks/{task}/complete"
    assert _fill_path(template, {"task": "../x"}) == "/partners/v1/tasks/..%2Fx/complete"
    for value in ("..", ".", ""):
        with pytest.raises(Invalid, match="task"):
            _fill_path(template, {"task": value})


async def test_a_command_whose_path_field_names_another_resource_is_rejected_unsent() -> None:
    class Ref(msgspec.Struct, kw_only=True):
        id: str

    h = await harness(ScriptedVendor([200]))
    spec = rest_command(
        "workbridge.moco.thing.delete", Ref, "DELETE", "/things/{id}", kind="delete"
    )
    inst = h.worker.inst
    inst.spec = dataclasses.replace(inst.spec, commands={spec.type: spec})
    inst.commands = inst.spec.commands
    h.dispatch(
        h.record(subject="t/1", data={"id": ".."}, type=spec.type, command_id="dots"),
        h.record(subject="t/2", data={"id": "a/b"}, type=spec.type, command_id="slash"),
    )
    await h.settle()
    by_id = {r["_commandid"]: r for r in h.results()}
    assert by_id["dots"]["status"] == "rejected" and "id" in by_id["dots"]["error"]
    assert by_id["slash"]["status"] == "succeeded"
    assert [path for _m, path, _j in h.vendor.sent] == ["/things/a%2Fb"]


# -- every command gets its one result ---------------------------------------------------------


async def test_a_command_whose_key_is_not_unicode_text_is_rejected_not_retried_forever() -> None:
    # Structured mode is JSON, and JSON can escape a lone surrogate, which cannot be
    # written back into a Kafka key or header: the result could never be committed.
    h = await harness(ScriptedVendor([200]))
    event = {
        "specversion": "1.0",
        "id": "c1",
        "source": "/tests",
        "type": "workbridge.moco.activity.create",
        "subject": "s/1",
        "idempotencykey": "KEY",
        "datacontenttype": "application/json",
        "data": activity(),
    }
    value = msgspec.json.encode(event).replace(b'"KEY"', b'"k\\ud800"')
    headers = [("content-type", b"application/cloudevents+json")]
    h.dispatch(ConsumerRecord(TP.topic, 0, 1, 0, 0, b"s/1", value, None, 3, len(value), headers))
    await h.settle()
    [result] = h.results()
    assert result["status"] == "rejected" and "Unicode" in result["error"]
    assert h.work.schedule.pending == set()  # the offset can move past it
    assert h.vendor.sent == []


# -- handing partitions back ----------------------------------------------------------------


class OneRequestBudget:
    """A vendor whose rate budget lets one request out; the others wait for it, unsent."""

    def __init__(self) -> None:
        self.limiter = SlidingWindowLimiter(1, 3600.0)
        self.sent: list[str] = []
        self.sent_one = asyncio.Event()
        self.answer = asyncio.Event()

    async def request(self, method: str, path: str, *, before_send: Any = None, **_: Any) -> Any:
        async with self.limiter.slot():  # the others wait here for budget: nothing has left
            if before_send is not None:
                await before_send()
            self.sent.append(path)
            self.sent_one.set()
            await self.answer.wait()
            return VendorResponse(200, {}, b'{"id": 7}')

    async def close(self) -> None:
        return None


async def test_a_hand_back_finishes_the_call_at_the_vendor_and_leaves_the_unsent_to_the_next_owner() -> (  # noqa: E501
    None
):
    vendor = OneRequestBudget()
    h = await harness(vendor)  # type: ignore[arg-type]
    h.dispatch(*(h.record(subject=f"s/{i}", data=activity(), key=f"k{i}") for i in range(6)))
    await asyncio.wait_for(vendor.sent_one.wait(), 5)
    closing = asyncio.create_task(h.worker._close([h.work]))
    await asyncio.sleep(0.1)
    assert not closing.done()  # the request at the vendor is waited for ...
    vendor.answer.set()
    await asyncio.wait_for(closing, 2.0)  # ... and nothing else is: the rest never left
    assert [r["status"] for r in h.results()] == ["succeeded"]
    assert len(vendor.sent) == 1
    # Nothing of the unsent commands stays: no mark in the ledger, and the group's offset
    # stops before the first of them, so the next owner reads them again.
    assert h.work.marks == {}
    assert h.work.schedule.commit_offset(set()) == 2
