"""A CommandWorker without a broker: a recording committer and a scripted vendor client.

The worker's own code decides and orders everything; only the transaction (the committer),
the ledger topic (a list of the committed records) and the HTTP client are replaced, so
interleavings can be driven step by step.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from adapters.config import parse_config
from adapters.core.cloudevents_codec import from_record, make_event, to_kafka
from adapters.core.command_worker import CommandWorker, PartitionWork
from adapters.core.group_commit import Committed, Record
from adapters.core.instance import build_instance
from adapters.core.ledger import LedgerEntry
from adapters.core.ledger_store import Ledger, LedgerIndex
from adapters.core.metrics import Metrics
from adapters.core.ratelimit import Unlimited
from adapters.core.vendor_http import VendorResponse
from adapters.registry import VENDORS
from tests.unit.core.memory_log import MemoryLog

TP = TopicPartition("workbridge.acme.commands", 0)
CREATE = "workbridge.moco.activity.create"


def activity(**extra: Any) -> dict[str, Any]:
    """Valid data of a MOCO activity create."""
    return {"date": "2026-11-23", "project_id": 42, "hours": 1.5, "description": "pump", **extra}


class FakeCommitter:
    """Commits each write as its own transaction, after one turn of the loop."""

    def __init__(
        self,
        hooks: list[Callable[[list[Committed]], None]] | None = None,
        *,
        start: dict[tuple[str, int | None], int] | None = None,
    ) -> None:
        self.transactions: list[list[Record]] = []
        # Told of every committed record with its offset, as GroupCommitter's on_committed.
        self.hooks = hooks or []
        # The next offset per (topic, partition): where an earlier owner left the topic.
        self._offsets: dict[tuple[str, int | None], int] = dict(start or {})

    async def write(
        self, records: list[Record], *, finished_offset: int | None = None, **_: Any
    ) -> None:
        await asyncio.sleep(0)  # a commit is a round trip: other commands run meanwhile
        self.transactions.append(list(records))
        committed: list[Committed] = []
        for record in records:
            where = (record[0], record[4])
            offset = self._offsets.get(where, 0)
            self._offsets[where] = offset + 1
            committed.append((record, offset))
        for hook in self.hooks:
            hook(committed)

    async def close(self, timeout_s: float) -> None:
        return None

    def records(self, topic: str) -> list[Record]:
        return [r for txn in self.transactions for r in txn if r[0] == topic]


@dataclass
class ScriptedVendor:
    """Answers in order (the last one repeats): an HTTP status, or an exception to raise
    before the request goes out."""

    answers: list[int | Exception]
    sent: list[tuple[str, str, Any]] = field(default_factory=list)
    delay_s: float = 0.01
    limiter: Unlimited = field(default_factory=Unlimited)

    async def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Any = None,
        json: Any = None,
        headers: Any = None,
        before_send: Any = None,
    ) -> VendorResponse:
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if before_send is not None:
            await before_send()
        self.sent.append((method, path_or_url, json))
        await asyncio.sleep(self.delay_s)
        headers_out = {"retry-after": "0"} if answer == 429 else {}
        return VendorResponse(answer, headers_out, b'{"id": 7}')

    async def close(self) -> None:
        return None


@dataclass
class Harness:
    worker: CommandWorker
    work: PartitionWork
    committer: FakeCommitter
    vendor: ScriptedVendor
    fatal: list[str]
    ledger_log: MemoryLog
    offset: int = 0

    def record(
        self,
        *,
        subject: str,
        data: Any,
        command_id: str | None = None,
        key: str | None = None,
        type: str = CREATE,
    ) -> ConsumerRecord[bytes, bytes]:
        event = make_event(
            id=command_id or str(uuid.uuid4()),
            source="/tests",
            type=type,
            subject=subject,
            partitionkey=subject,
            data=msgspec.json.encode(data),
            extensions={"idempotencykey": key} if key else {},
        )
        k, v, h = to_kafka(event)
        self.offset += 1
        return ConsumerRecord(
            TP.topic, TP.partition, self.offset, 0, 0, k, v, None, len(k or b""), len(v), h
        )

    def dispatch(self, *records: ConsumerRecord[bytes, bytes]) -> None:
        for record in records:
            self.work.dispatch(record)

    async def settle(self, timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while self.work.schedule.runners:
                await asyncio.wait(list(self.work.schedule.runners.values()))
        assert not self.work.schedule.queues

    def results(self) -> list[dict[str, Any]]:
        out = []
        for _topic, key, value, headers, _p in self.committer.records(
            self.worker.inst.topics.results
        ):
            assert value is not None
            event = from_record(key, value, headers)
            out.append({**event.get_data(), "_commandid": event.get_attributes()["commandid"]})
        return out

    def on_committed(self, records: list[Committed]) -> None:
        """What a committer tells the ledger (and its topic) after each commit."""
        self.ledger_log.committed(records)
        self.work.ledger.committed(records)

    async def entry(self, key: str) -> LedgerEntry | None:
        """The ledger's entry of an idempotency key."""
        return await self.work.ledger.entry(key)


async def harness(
    vendor: ScriptedVendor,
    *,
    concurrency: int = 16,
    bootstrap: str = "127.0.0.1:1",
    prefix: str = "workbridge",
    ledger_log: MemoryLog | None = None,
    recent_bytes: int = 1 << 20,
) -> Harness:
    """A worker owning partition 0 of instance `acme`'s commands, with a FakeCommitter and
    a restored ledger whose topic is a MemoryLog: a new one, or `ledger_log` as an earlier
    owner left it (`recent_bytes=0`: every known key is read back from it)."""
    cfg = parse_config(
        {
            "kafka": {
                "bootstrap_servers": bootstrap,
                "topic_prefix": prefix,
                "topics": {"partitions": 1, "replication_factor": 1},
            },
            "instances": [
                {
                    "vendor": "moco",
                    "name": "acme",
                    "base_url": "http://127.0.0.1:1/api/v1",
                    "api_key": "k",
                    "webhooks": {"enabled": False},
                    "commands": {
                        "enabled": True,
                        "concurrency": concurrency,
                        "deadline_s": 5,
                        "backoff_base_s": 0.001,
                        "backoff_max_s": 0.002,
                    },
                }
            ],
        },
        env={},
    )
    inst = build_instance(cfg.instances[0], VENDORS["moco"], prefix)
    inst.client = vendor  # type: ignore[assignment]
    fatal: list[str] = []
    worker = CommandWorker(inst, cfg.kafka, Metrics(), on_fatal=fatal.append)
    ledger_log = ledger_log or MemoryLog(inst.topics.ledger)
    ledger = Ledger(
        LedgerIndex.in_memory(),
        ledger_log,
        topic=inst.topics.ledger,
        partition=0,
        recent_bytes=recent_bytes,
    )
    await ledger.restore()
    committer = FakeCommitter(start={(inst.topics.ledger, 0): ledger_log.end})
    work = worker.assemble(TP, None, ledger, committer)
    work.mark_ready()
    worker.parts[TP] = work
    h = Harness(worker, work, committer, vendor, fatal, ledger_log)
    committer.hooks.append(h.on_committed)
    return h
