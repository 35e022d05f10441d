"""Sends that a caller waits on: bounded in time and in number (load shedding)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

from adapters.core.cloudevents_codec import Headers


class Overloaded(Exception):
    """Too many sends await an ack; the caller should answer 503 with Retry-After."""


class NotAcknowledged(Exception):
    """Kafka did not acknowledge in time (broker down, partition without leader)."""


class Publisher:
    """Publishes records and waits for acks=all, within a deadline and an in-flight cap.

    aiokafka's idempotent producer never expires a batch and has no buffer cap, so both
    bounds are kept here.
    """

    def __init__(self, producer: AIOKafkaProducer, *, max_in_flight: int) -> None:
        self.producer = producer
        self._max = max_in_flight
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def publish(
        self,
        records: list[tuple[str, bytes | None, bytes, Headers]],
        *,
        timeout_s: float,
    ) -> None:
        """Send (topic, key, value, headers) records and return once all are acknowledged."""
        if self.in_flight + len(records) > self._max:
            raise Overloaded(f"{self.in_flight} sends await Kafka")
        count = len(records)
        self.in_flight += count
        self._idle.clear()
        # Shielded: a client that hangs up must not cancel a send half-way; the record may
        # still land, and its stable id lets consumers drop the vendor's retry. The slot is
        # freed only when the send really ends, so a dead broker cannot grow memory unbounded.
        task = asyncio.ensure_future(self._send_all(records))
        task.add_done_callback(lambda t: self._release(t, count))
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            raise NotAcknowledged(f"no ack from Kafka within {timeout_s:.1f}s") from None

    async def drained(self, timeout_s: float) -> bool:
        """Wait until no send awaits an ack (shutdown); False if some still did at the timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def _release(self, task: asyncio.Future[None], count: int) -> None:
        self.in_flight -= count
        if self.in_flight == 0:
            self._idle.set()
        if not task.cancelled():
            task.exception()  # a late failure after our timeout is expected; don't warn

    async def _send_all(self, records: list[tuple[str, bytes | None, bytes, Headers]]) -> None:
        futures = [
            await self.producer.send(topic, value=value, key=key, headers=headers)
            for topic, key, value, headers in records
        ]
        await asyncio.gather(*futures)
