"""The event ids already on an instance's events topic since a time: what a missed-webhook
recovery must not publish again.

A recovery lists the notifications the vendor kept and maps each as if it had been delivered
(webhook_recovery.py), so a notification that was pushed has its event on the topic already,
under the same id. Reading the topic back from the recovery window's start (Kafka finds the
offset for a time: records are stamped when produced, and a push is produced after its
notification was made) tells which ids are there; the recovery publishes only the others.
"""

from __future__ import annotations

import logging
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from adapters.core.cloudevents_codec import NotACloudEvent, from_record
from adapters.core.kafka import committed_reader, topic_partitions
from adapters.settings import KafkaConfig

log = logging.getLogger(__name__)


def event_id(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
) -> str | None:
    """A record's CloudEvent id: the `ce_id` header (binary mode) or the body's (structured)."""
    for name, raw in headers:
        if name.lower() == "ce_id":
            return raw.decode("utf-8", "replace")
    try:
        event = from_record(key, value, headers)
    except NotACloudEvent:
        return None
    found = event.get_attributes().get("id")
    return str(found) if found is not None else None


class RecentEvents:
    """Reads an events topic from a time to its end, for the ids on it. One per task."""

    def __init__(self, kafka: KafkaConfig, topic: str, *, client_id: str) -> None:
        self.kafka = kafka
        self.topic = topic
        self.client_id = client_id
        self._reader: AIOKafkaConsumer | None = None
        self._parts: list[TopicPartition] = []

    async def ids_since(self, since: datetime, *, timeout_ms: int = 200) -> set[str]:
        """The ids of the events produced at or after `since`."""
        reader = await self._started()
        stamp = int(since.timestamp() * 1000)
        starts = await reader.offsets_for_times({tp: stamp for tp in self._parts})
        ends = await reader.end_offsets(self._parts)
        ids: set[str] = set()
        for tp in self._parts:
            found = starts.get(tp)
            if found is None:
                continue  # nothing produced since then
            reader.seek(tp, found.offset)
            while await reader.position(tp) < ends[tp]:
                batch = await reader.getmany(tp, timeout_ms=timeout_ms)
                records = batch.get(tp, [])
                if not records:
                    break  # the rest (a transaction marker, or slow) is not an event
                for record in records:
                    rid = event_id(record.key, record.value, list(record.headers))
                    if rid is not None:
                        ids.add(rid)
        return ids

    async def _started(self) -> AIOKafkaConsumer:
        if self._reader is not None:
            return self._reader
        count = await topic_partitions(self.kafka, self.topic, client_id=self.client_id)
        reader = committed_reader(self.kafka, client_id=self.client_id)
        await reader.start()
        self._parts = [TopicPartition(self.topic, p) for p in range(count)]
        reader.assign(self._parts)
        self._reader = reader
        return reader

    async def close(self) -> None:
        """Stop reading."""
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await reader.stop()
