"""Publisher: acks=all waits bounded in time (NotAcknowledged) and number (Overloaded)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from adapters.core.publisher import NotAcknowledged, Overloaded, Publisher


class FakeProducer:
    """aiokafka-like: `send` returns a future that the test resolves (the ack)."""

    def __init__(self, *, auto_ack: bool = False) -> None:
        self.auto_ack = auto_ack
        self.sent: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = []
        self.futures: list[asyncio.Future[Any]] = []

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None
    ) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.auto_ack:
            fut.set_result(("metadata", len(self.sent)))
        self.sent.append((topic, key, value, headers))
        self.futures.append(fut)
        return fut

    def ack_all(self) -> None:
        for fut in self.futures:
            if not fut.done():
                fut.set_result("ok")


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


REC = ("t.events", b"k", b"v", [("ce_id", b"1")])


async def test_publish_returns_after_ack() -> None:
    producer = FakeProducer(auto_ack=True)
    pub = Publisher(producer, max_in_flight=10)  # type: ignore[arg-type]
    await pub.publish([REC, ("t.dlq", None, b"w", [])], timeout_s=1.0)
    assert producer.sent == [REC, ("t.dlq", None, b"w", [])]
    await settle()
    assert pub.in_flight == 0
    assert await pub.drained(0.01) is True


async def test_overloaded_past_max_in_flight() -> None:
    producer = FakeProducer()
    pub = Publisher(producer, max_in_flight=2)  # type: ignore[arg-type]
    first = asyncio.create_task(pub.publish([REC, REC], timeout_s=5.0))
    await settle()
    assert pub.in_flight == 2
    with pytest.raises(Overloaded):
        await pub.publish([REC], timeout_s=5.0)
    assert pub.in_flight == 2
    assert len(producer.sent) == 2  # the refused record was never sent
    producer.ack_all()
    await first
    await settle()
    assert pub.in_flight == 0


async def test_exactly_max_in_flight_is_allowed() -> None:
    producer = FakeProducer(auto_ack=True)
    pub = Publisher(producer, max_in_flight=3)  # type: ignore[arg-type]
    await pub.publish([REC, REC, REC], timeout_s=1.0)
    with pytest.raises(Overloaded):
        await pub.publish([REC, REC, REC, REC], timeout_s=1.0)


async def test_not_acknowledged_after_timeout_and_slot_freed_when_send_ends() -> None:
    producer = FakeProducer()
    pub = Publisher(producer, max_in_flight=1)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(NotAcknowledged, match=r"within 0\.1s"):
        await pub.publish([REC], timeout_s=0.1)
    assert 0.09 <= loop.time() - started < 0.5
    # The send goes on (shielded): its slot is held until it really ends.
    assert pub.in_flight == 1
    assert await pub.drained(0.01) is False
    with pytest.raises(Overloaded):
        await pub.publish([REC], timeout_s=0.1)
    producer.ack_all()
    await settle()
    assert pub.in_flight == 0
    assert await pub.drained(0.01) is True


async def test_late_failure_after_timeout_is_swallowed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    producer = FakeProducer()
    pub = Publisher(producer, max_in_flight=5)  # type: ignore[arg-type]
    with pytest.raises(NotAcknowledged):
        await pub.publish([REC], timeout_s=0.05)
    producer.futures[0].set_exception(RuntimeError("broker gone"))
    await settle()
    assert pub.in_flight == 0
    assert "exception was never retrieved" not in caplog.text


async def test_failure_before_timeout_propagates() -> None:
    producer = FakeProducer()
    pub = Publisher(producer, max_in_flight=5)  # type: ignore[arg-type]
    task = asyncio.create_task(pub.publish([REC], timeout_s=1.0))
    await settle()
    producer.futures[0].set_exception(RuntimeError("record too large"))
    with pytest.raises(RuntimeError, match="record too large"):
        await task
    await settle()
    assert pub.in_flight == 0


async def test_caller_cancelled_does_not_cancel_the_send() -> None:
    producer = FakeProducer()
    pub = Publisher(producer, max_in_flight=5)  # type: ignore[arg-type]
    task = asyncio.create_task(pub.publish([REC], timeout_s=5.0))
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not producer.futures[0].cancelled()
    assert pub.in_flight == 1
    producer.ack_all()
    await settle()
    assert pub.in_flight == 0
