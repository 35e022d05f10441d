"""A CommandWorker without a broker: a recording committer and a scripted vendor client.

The worker's own code decides and orders everything; only the transaction (the committer)
and the HTTP client are replaced, so interleavings can be driven step by step.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from adapters.config import parse_config
from adapters.core.cloudevents_codec import from_record, make_event, to_kafka
from adapters.core.command_worker import CommandWorker, PartitionWork
from adapters.core.group_commit import Record
from adapters.core.instance import build_instance
from adapters.core.metrics import Metrics
from adapters.core.vendor_http import VendorResponse
from adapters.registry import VENDORS

TP = TopicPartition("workbridge.acme.commands", 0)
CREATE = "workbridge.moco.activity.create"


def activity(**extra: Any) -> dict[str, Any]:
    """Valid data of a MOCO activity create."""
    return {"date": "2026-11-23", "project_id": 42, "hours": 1.5, "description": "pump", **extra}


class FakeCommitter:
    """Commits each write as its own transaction, after one turn of the loop."""

    def __init__(self) -> None:
        self.transactions: list[list[Record]] = []

    async def write(
        self, records: list[Record], *, finished_offset: int | None = None, **_: Any
    ) -> None:
        await asyncio.sleep(0)  # a commit is a round trip: other commands run meanwhile
        self.transactions.append(list(records))

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
            self.worker._dispatch(self.work, record)

    async def settle(self, timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while self.work.runners:
                await asyncio.wait(list(self.work.runners.values()))
        assert not self.work.queues

    def results(self) -> list[dict[str, Any]]:
        out = []
        for _topic, key, value, headers, _p in self.committer.records(
            self.worker.inst.topics.results
        ):
            assert value is not None
            event = from_record(key, value, headers)
            out.append({**event.get_data(), "_commandid": event.get_attributes()["commandid"]})
        return out


def harness(
    vendor: ScriptedVendor,
    *,
    concurrency: int = 16,
    bootstrap: str = "127.0.0.1:1",
    prefix: str = "workbridge",
) -> Harness:
    """A worker owning partition 0 of instance `acme`'s commands, with a FakeCommitter."""
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
    work = PartitionWork(tp=TP, producer=None, ledger={})  # type: ignore[arg-type]
    committer = FakeCommitter()
    work.committer = committer  # type: ignore[assignment]
    worker.parts[TP] = work
    return Harness(worker, work, committer, vendor, fatal)
