"""A ledger partition in memory, for the worker's harness and the ledger's own tests."""

from __future__ import annotations

import bisect
from collections.abc import Awaitable, Callable

from adapters.core.group_commit import Committed
from adapters.core.ledger_store import LogRecord


class MemoryLog:
    """A ledger partition in memory: the records committed to it, in offset order."""

    def __init__(self, topic: str, partition: int = 0) -> None:
        self.topic = topic
        self.partition = partition
        self.records: list[LogRecord] = []
        self.end = 0
        self.reads = 0  # point reads: a known key's entry read back

    def append(self, key: bytes | None, value: bytes | None, offset: int | None = None) -> int:
        """Add a record (at the next offset unless given) and return its offset."""
        offset = self.end if offset is None else offset
        self.records.append((offset, key, value))
        self.end = offset + 1
        return offset

    def committed(self, records: list[Committed]) -> None:
        """The committer's hook: keep what was written to this partition."""
        for (topic, key, value, _h, partition), offset in records:
            if topic == self.topic and partition == self.partition:
                self.append(key, value, offset)

    async def bounds(self) -> tuple[int, int]:
        return (self.records[0][0] if self.records else self.end), self.end

    async def scan(
        self,
        start: int,
        end: int,
        on_batch: Callable[[list[LogRecord], int], Awaitable[None]],
        *,
        stall_s: float,
    ) -> int:
        batch = [r for r in self.records if start <= r[0] < end]
        for i in range(0, len(batch), 3):  # in several batches, as a fetch would
            chunk = batch[i : i + 3]
            await on_batch(chunk, chunk[-1][0] + 1 if i + 3 < len(batch) else end)
        return end

    async def read(self, offset: int) -> LogRecord | None:
        self.reads += 1
        i = bisect.bisect_left([r[0] for r in self.records], offset)
        if i < len(self.records) and self.records[i][0] == offset:
            return self.records[i]
        return None

    async def close(self) -> None:
        return None
