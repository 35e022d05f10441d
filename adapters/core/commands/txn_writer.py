"""The transaction writer of one command partition.

Two kinds of writes, both through the partition's group committer:
- the `inflight` mark of a key, committed right before its command's first request leaves,
  so that a crash mid-call is seen by whoever owns the partition next;
- a command's outcome: the result event, the key's `done` entry or the command's answered
  record, a DLQ copy of anything but success, and the consumer offset, in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Protocol

import msgspec
from cloudevents.core.v1.event import CloudEvent

from adapters.core.cloudevents_codec import make_event, stable_id
from adapters.core.command_result import CommandResult
from adapters.core.commands.decision import Decision, inflight
from adapters.core.commands.model import Command
from adapters.core.dlq import command_dlq_headers
from adapters.core.group_commit import CommitterClosed, Record
from adapters.core.instance import SCHEMA_BASE, Instance
from adapters.core.ledger import LedgerEntry, answered_record, encode_entry, key_record
from adapters.core.metrics import Metrics
from adapters.core.track_change import TrackChange, tracking_record


class Committer(Protocol):
    """What the writer needs of a group committer."""

    async def write(
        self,
        records: list[Record],
        *,
        finished_offset: int | None = None,
        undo: list[Record] | None = None,
    ) -> None:
        """Return once `records` (and the offset past `finished_offset`) are committed."""
        ...

    async def close(self, timeout_s: float) -> None:
        """Commit what is queued, then stop."""
        ...


class TxnWriter:
    """Writes one partition's marks and outcomes; remembers the marks it wrote."""

    def __init__(self, inst: Instance, metrics: Metrics, partition: int) -> None:
        self.inst = inst
        self.metrics = metrics
        self.partition = partition
        self.committer: Committer | None = None
        # In-flight marks written by this process: idempotency key → the vendor may have acted.
        self.marks: dict[str, bool] = {}

    @property
    def commits(self) -> Committer:
        """The partition's committer (attached once the partition is owned)."""
        assert self.committer is not None
        return self.committer

    def hooks(
        self, command: Command, digest: str, *, replay: bool, echo: TrackChange | None = None
    ) -> tuple[Callable[[], Awaitable[None]], Callable[[bool], None]]:
        """`before_send` and `after_attempt` for the command's vendor call. `echo` is written
        with the in-flight mark: the watch knows the change's cause before it can see it."""
        key = command.idem_key
        if replay:
            # In flight when its last owner stopped: the vendor may have acted, until a
            # look-up or this process's own attempts say otherwise.
            self.marks[key] = True

        async def before_send() -> None:
            # Once per command, right before the first request leaves: from here on a
            # crash means the vendor may have acted.
            if key not in self.marks and not replay:
                await self.mark_inflight(command, digest, echo=echo)
            self.marks[key] = True

        def after_attempt(acted: bool) -> None:
            if key in self.marks:
                self.marks[key] = acted

        return before_send, after_attempt

    async def mark_inflight(
        self, command: Command, digest: str, *, echo: TrackChange | None = None
    ) -> None:
        """Commit the key's `inflight` entry (Kafka errors are retried by the committer)."""
        record_key = key_record(command.idem_key).encode()
        ledger, partition = self.inst.topics.ledger, self.partition
        value = encode_entry(inflight(command, digest))
        extra: list[Record] = []
        if echo is not None:
            echo_key, echo_value = tracking_record(echo)
            extra.append((self.inst.topics.tracked, echo_key, echo_value, [], None))
        # Given up on (a hand-back cancels us), it must not stay: the next owner would take
        # it for a call that may have reached the vendor. Its undo is a tombstone: no entry
        # existed for the key, and none can be written for it while the partition closes.
        await self.commits.write(
            [(ledger, record_key, value, [], partition), *extra],
            undo=[(ledger, record_key, None, [], partition)],
        )
        self.marks[command.idem_key] = False

    async def commit(self, command: Command, decision: Decision) -> None:
        """Result, ledger, DLQ copy and offset in one transaction (shared with others).

        The caller keeps the command's offset pending until this returned, so no other
        command's commit can move the group's offset past it before its result exists.
        """
        await self.commits.write(self.records(command, decision), finished_offset=command.offset)
        name = self.inst.name
        if decision.result is not None:
            self.metrics.commands.labels(name, decision.result.status).inc()
        if decision.dlq_error is not None and decision.result is not None:
            self.metrics.dlq.labels(name, f"command_{decision.result.status}").inc()

    def records(self, command: Command, decision: Decision) -> list[Record]:
        """The records of a command's outcome."""
        topics = self.inst.topics
        records: list[Record] = []
        if decision.result is not None:
            key, value, headers = self.inst.encode(self.result_event(command, decision.result))
            records.append((topics.results, key, value, headers, None))
        own: list[tuple[str, LedgerEntry | None]] = [
            (key_record(command.idem_key), decision.key_entry),
            (answered_record(command.command_id), decision.answer_entry),
        ]
        for ledger_key, entry in own:
            if entry is not None:
                records.append(
                    (topics.ledger, ledger_key.encode(), encode_entry(entry), [], self.partition)
                )
        for change in decision.tracking:
            key, value = tracking_record(change)
            records.append((topics.tracked, key, value, [], None))
        if decision.dlq_error is not None and decision.result is not None:
            rec = command.record
            dlq_headers = command_dlq_headers(
                list(rec.headers),
                instance=self.inst.name,
                status=decision.result.status,
                error=decision.dlq_error,
            )
            records.append((topics.dlq, rec.key, rec.value, dlq_headers, None))
        return records

    def result_event(self, command: Command, result: CommandResult) -> CloudEvent:
        """The `<command type>.result` event of a command."""
        name = self.inst.name
        return make_event(
            id=stable_id(name, "result", command.command_id),
            source=f"/workbridge/{name}",
            type=f"{command.command_type}.result",
            subject=command.subject,
            partitionkey=self.inst.partition_key(command.subject),
            data=msgspec.json.encode(result),
            dataschema=f"{SCHEMA_BASE}/results/command-result.json",
            extensions={"commandid": command.command_id},
        )

    async def clear_unused_marks(self) -> None:
        """At a hand-back: take back the marks of calls that provably never reached the
        vendor (stopped between attempts that all failed before acting: 429, no connection),
        so that the next owner does not answer them `ambiguous`. The others stay."""
        unused = [key for key, acted in self.marks.items() if not acted]
        if not unused:
            return
        ledger = self.inst.topics.ledger
        tombstones: list[Record] = [
            (ledger, key_record(key).encode(), None, [], self.partition) for key in unused
        ]
        with contextlib.suppress(CommitterClosed, TimeoutError):
            await asyncio.wait_for(self.commits.write(tombstones), 5.0)
