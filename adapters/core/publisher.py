"""Sends that a caller waits on: bounded in time and in number (load shedding)."""

from __future__ import annotations

import asyncio
from typing import Any

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
        acked: asyncio.Future[Any] | None = None
        try:
            async with asyncio.timeout(timeout_s):
                futures = [
                    await self.producer.send(topic, value=value, key=key, headers=headers)
                    for topic, key, value, headers in records
                ]
                acked = futures[0] if count == 1 else asyncio.gather(*futures)
                # The slot is freed only when the send really ends, so a dead broker cannot
                # grow memory without bound.
                acked.add_done_callback(lambda f: self._release(f, count))
                # Shielded: a caller that goes away must not cancel a send half-way; the
                # record may still land, and its stable id lets consumers drop the retry.
                await asyncio.shield(acked)
        except TimeoutError:
            if acked is None:
                self._release(None, count)  # nothing was queued for good
            raise NotAcknowledged(f"no ack from Kafka within {timeout_s:.1f}s") from None
        except BaseException:
            if acked is None:
                self._release(None, count)
            raise

    async def drained(self, timeout_s: float) -> bool:
        """Wait until no send awaits an ack (shutdown); False if some still did at the timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def _release(self, done: asyncio.Future[Any] | None, count: int) -> None:
        self.in_flight -= count
        if self.in_flight == 0:
            self._idle.set()
        if done is not None and not done.cancelled():
            done.exception()  # a late failure after our timeout is expected; don't warn
