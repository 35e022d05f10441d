"""Which records a watch follows, as commands decide it: the tracking topic.

A vendor without a list endpoint (CMO) is watched through the records Workbridge knows
(watch_source.py). Its commands say which those are: a create's new id, an id added or
dropped by a track/untrack command, and, for echo marking, the command that last changed a
record. The command worker writes each such change to the compacted topic
`<prefix>.<name>.state.tracked` in the same transaction as the command's result, so no
tracked id is lost or invented by a crash; the watch reads the topic (read committed) before
each cycle.

A record per id, keyed by the id: the latest says whether the id is tracked and which command
touched it last (`caused_by`). "Not tracked" is a value, not a tombstone: compaction may drop
a tombstone before a watch has read it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition

from adapters.core.kafka import committed_reader, topic_partitions
from adapters.core.track_change import TrackChange, decode_change
from adapters.settings import KafkaConfig

log = logging.getLogger(__name__)


class TrackingView:
    """The tracking topic as a map of id -> latest change, brought up to date on `refresh`.

    One per watch task; it reads every partition from the start once, then only what was
    committed since.
    """

    def __init__(self, kafka: KafkaConfig, topic: str, *, client_id: str) -> None:
        self.kafka = kafka
        self.topic = topic
        self.client_id = client_id
        self.changes: dict[str, TrackChange] = {}
        self._reader: AIOKafkaConsumer | None = None
        self._parts: list[TopicPartition] = []

    async def refresh(self, timeout_ms: int = 500) -> Mapping[str, TrackChange]:
        """Read what was committed since the last refresh; the changes by id."""
        reader = await self._started()
        ends = await reader.end_offsets(self._parts)
        for tp in self._parts:
            while await reader.position(tp) < ends[tp]:
                batch = await reader.getmany(tp, timeout_ms=timeout_ms)
                records = batch.get(tp, [])
                if not records:
                    break  # not fetched in time: the rest comes at the next refresh
                for record in records:
                    if record.key is None or record.value is None:
                        continue
                    change = decode_change(record.value)
                    if change is not None:
                        self.changes[change.id] = change
        return self.changes

    async def _started(self) -> AIOKafkaConsumer:
        if self._reader is not None:
            return self._reader
        count = await topic_partitions(self.kafka, self.topic, client_id=self.client_id)
        reader = committed_reader(self.kafka, client_id=self.client_id)
        await reader.start()
        partitions = range(count)
        self._parts = [TopicPartition(self.topic, p) for p in partitions]
        reader.assign(self._parts)
        await reader.seek_to_beginning(*self._parts)
        self._reader = reader
        return reader

    async def close(self) -> None:
        """Stop reading."""
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await reader.stop()
