"""The command worker: commands from Kafka become vendor calls, at most once per key.

Per owned partition of `<name>.commands`:
1. the partition's transactional producer starts (fencing any previous owner), then its
   ledger partition is restored;
2. a command is validated (invalid: `rejected`, DLQ, never sent);
3. an `inflight` ledger entry is committed before the vendor is called, so a crash
   mid-call is seen by whoever owns the partition next;
4. the result event, the `done` ledger entry, a DLQ copy for failures and the consumer
   offset are committed in one transaction.
Commands of one subject run in order; different subjects run concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.structs import ConsumerRecord
from cloudevents.core.v1.event import CloudEvent

from adapters.config import KafkaConfig
from adapters.core.cloudevents_codec import (
    NotACloudEvent,
    from_record,
    make_event,
    stable_id,
)
from adapters.core.command_result import CommandResult, request_id
from adapters.core.dlq import command_dlq_headers
from adapters.core.errors import Action
from adapters.core.instance import SCHEMA_BASE, Instance
from adapters.core.kafka import client_kwargs, transactional_producer
from adapters.core.ledger import LedgerEntry, decode_entry, encode_entry, payload_hash
from adapters.core.metrics import Metrics
from adapters.core.retry import next_delay
from adapters.core.state_restore import restore_partition
from adapters.core.vendor import CommandSpec, PreparedCall, Transient
from adapters.core.vendor_call import CallOutcome, RetryPolicy, call_with_retry
from adapters.core.vendor_http import TransportError

log = logging.getLogger(__name__)

# A partition stops being fetched while this many of its commands wait (backpressure).
MAX_PENDING_PER_PARTITION = 1000


class Invalid(Exception):
    """The command cannot be sent: it is answered `rejected` and copied to the DLQ."""


@dataclass
class Command:
    """A command record, decoded as far as it could be."""

    record: ConsumerRecord[bytes, bytes]
    event: CloudEvent | None
    command_id: str
    command_type: str
    subject: str
    idem_key: str


@dataclass
class PartitionWork:
    """State of one owned command partition."""

    tp: TopicPartition
    producer: AIOKafkaProducer
    ledger: dict[str, LedgerEntry]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pending: set[int] = field(default_factory=set)
    highest: int = -1
    queues: dict[str, deque[Command]] = field(default_factory=dict)
    runners: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    closing: bool = False
    paused: bool = False

    def commit_offset(self) -> int:
        """The next offset to consume: everything below it has its result committed."""
        return min(self.pending) if self.pending else self.highest + 1


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: CommandWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.worker.release(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.worker.acquire(assigned)


class CommandWorker:
    """Consumes one instance's command topic in the instance's consumer group."""

    def __init__(
        self,
        inst: Instance,
        kafka: KafkaConfig,
        metrics: Metrics,
        *,
        grace_s: float = 20.0,
        before_vendor_call: Callable[[Command], None] | None = None,
    ) -> None:
        self.inst, self.kafka, self.metrics = inst, kafka, metrics
        self.grace_s = grace_s
        cfg = inst.cfg.commands
        self.policy = RetryPolicy(
            deadline_s=cfg.deadline_s,
            max_attempts=cfg.max_attempts,
            base_s=cfg.backoff_base_s,
            cap_s=cfg.backoff_max_s,
        )
        self.semaphore = asyncio.Semaphore(cfg.concurrency)
        self.parts: dict[TopicPartition, PartitionWork] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self._loop: asyncio.Task[None] | None = None
        # Test hook: runs after the in-flight mark is committed, before the vendor is called.
        self.before_vendor_call = before_vendor_call
        self.group_id = inst.topics.group("commands")

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Join the group; partitions are restored and worked on as they are assigned."""
        self.consumer = AIOKafkaConsumer(
            **client_kwargs(self.kafka),
            group_id=self.group_id,
            client_id=f"{self.kafka.client_id}-{self.inst.name}-commands",
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            max_poll_interval_ms=300_000,
        )
        self.consumer.subscribe([self.inst.topics.commands], listener=_Rebalance(self))
        await self.consumer.start()
        self._loop = asyncio.create_task(self._fetch_loop(), name=f"commands-{self.inst.name}")

    async def stop(self) -> None:
        """Stop fetching, let in-flight commands finish (up to the grace), commit, leave."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        await self.release(list(self.parts))
        if self.consumer is not None:
            await self.consumer.stop()
        # A rebalance callback may have acquired a partition meanwhile.
        await self.release(list(self.parts))

    async def acquire(self, tps: list[TopicPartition]) -> None:
        """Fence the previous owner of each partition and restore its ledger."""
        # aiokafka may fetch a partition as soon as it is assigned, while this callback still
        # restores its ledger; paused, nothing of it is handed out before it is ready.
        assert self.consumer is not None
        self.consumer.pause(*tps)
        for tp in tps:
            if tp in self.parts:
                continue
            producer = transactional_producer(
                self.kafka, transactional_id=f"{self.group_id}.{tp.partition}"
            )
            await producer.start()
            try:
                ledger = await restore_partition(
                    self.kafka, self.inst.topics.ledger, tp.partition, decode_entry
                )
            except BaseException:
                await producer.stop()  # cancelled by a shutdown mid-rebalance: leave nothing open
                raise
            self.parts[tp] = PartitionWork(tp=tp, producer=producer, ledger=ledger)
            self.consumer.resume(tp)
            log.info(
                "commands %s: own partition %d (%d ledger keys)",
                self.inst.name,
                tp.partition,
                len(ledger),
            )

    async def release(self, tps: list[TopicPartition]) -> None:
        """Hand partitions back: finish what is in flight within the grace, drop the rest."""
        works = [w for tp in tps if (w := self.parts.pop(tp, None)) is not None]
        for work in works:
            work.closing = True
        runners = [t for w in works for t in w.runners.values()]
        if runners:
            log.info(
                "commands %s: handing back %d partition(s); finishing %d in-flight subject(s)",
                self.inst.name,
                len(works),
                len(runners),
            )
            _done, late = await asyncio.wait(runners, timeout=self.grace_s)
            for task in late:
                task.cancel()  # its in-flight mark tells the next owner to reconcile
            await asyncio.gather(*late, return_exceptions=True)
        for work in works:
            await work.producer.stop()

    # -- fetching and dispatch -----------------------------------------------------------

    async def _fetch_loop(self) -> None:
        assert self.consumer is not None
        while True:
            batches = await self.consumer.getmany(timeout_ms=500, max_records=500)
            for tp, records in batches.items():
                work = self.parts.get(tp)
                if work is None or work.closing:
                    # Not ours (any more): fetch these again if the partition comes back.
                    if records and tp in self.consumer.assignment():
                        self.consumer.seek(tp, records[0].offset)
                    continue
                for record in records:
                    self._dispatch(work, record)
                if len(work.pending) >= MAX_PENDING_PER_PARTITION and not work.paused:
                    self.consumer.pause(tp)
                    work.paused = True

    def _dispatch(self, work: PartitionWork, record: ConsumerRecord[bytes, bytes]) -> None:
        command = self._decode(record)
        work.pending.add(record.offset)
        work.highest = max(work.highest, record.offset)
        queue = work.queues.setdefault(command.subject, deque())
        queue.append(command)
        if command.subject not in work.runners:
            work.runners[command.subject] = asyncio.create_task(
                self._run_subject(work, command.subject)
            )

    def _decode(self, record: ConsumerRecord[bytes, bytes]) -> Command:
        fallback_id = stable_id(record.topic, str(record.partition), str(record.offset))
        key_subject = (
            record.key.decode("utf-8", "replace") if record.key else f"offset/{record.offset}"
        )
        try:
            event = from_record(record.key, record.value, list(record.headers))
        except NotACloudEvent:
            return Command(record, None, fallback_id, "unknown", key_subject, fallback_id)
        attrs = event.get_attributes()
        command_id = str(attrs.get("id") or fallback_id)
        idem = str(attrs.get("idempotencykey") or command_id)
        subject = str(attrs.get("subject") or key_subject)
        return Command(record, event, command_id, str(attrs.get("type", "unknown")), subject, idem)

    async def _run_subject(self, work: PartitionWork, subject: str) -> None:
        queue = work.queues[subject]
        try:
            while queue and not work.closing:
                command = queue[0]
                async with self.semaphore:
                    await self._process_safely(work, command)
                queue.popleft()
                work.pending.discard(command.record.offset)
                if work.paused and len(work.pending) < MAX_PENDING_PER_PARTITION // 2:
                    assert self.consumer is not None
                    self.consumer.resume(work.tp)
                    work.paused = False
        finally:
            if not queue or work.closing:
                work.queues.pop(subject, None)
                work.runners.pop(subject, None)

    # -- one command -----------------------------------------------------------------------

    async def _process_safely(self, work: PartitionWork, command: Command) -> None:
        # Kafka trouble (a transaction that failed to commit) is retried: the command stays
        # uncommitted and the ledger decides what a retry may do. A fenced producer means the
        # partition moved to another replica, which takes the command over.
        for attempt in range(1000):
            try:
                await self._process(work, command)
                return
            except (ProducerFenced, asyncio.CancelledError):
                raise
            except KafkaError as exc:
                if work.closing:
                    log.warning(
                        "commands %s: Kafka error while handing partition %d back (%s); "
                        "the next owner retries command %s",
                        self.inst.name,
                        work.tp.partition,
                        exc,
                        command.command_id,
                    )
                    raise
                delay = min(30.0, 0.5 * 2**attempt)
                log.warning(
                    "commands %s: Kafka error (%s); retrying in %.1fs", self.inst.name, exc, delay
                )
                await asyncio.sleep(delay)
            except Exception as exc:
                log.exception("commands %s: command %s crashed", self.inst.name, command.command_id)
                result = CommandResult(
                    status="failed",
                    command_type=command.command_type,
                    idempotency_key=command.idem_key,
                    reason=f"internal error: {type(exc).__name__}",
                )
                await self._finish(work, command, result, None, dlq_error=f"internal error: {exc}")
                return

    async def _process(self, work: PartitionWork, command: Command) -> None:
        try:
            spec, data, call = self._validate(command)
        except Invalid as exc:
            await self._finish(
                work,
                command,
                CommandResult(
                    status="rejected",
                    command_type=command.command_type,
                    idempotency_key=command.idem_key,
                    error=str(exc),
                    reason="invalid command",
                ),
                None,
                dlq_error=str(exc),
            )
            return
        digest = payload_hash(command.command_type, msgspec.to_builtins(data))
        entry = work.ledger.get(command.idem_key)
        replay = False
        if entry is not None:
            if entry.payload_hash != digest:
                await self._finish(
                    work,
                    command,
                    CommandResult(
                        status="conflict",
                        command_type=command.command_type,
                        idempotency_key=command.idem_key,
                        duplicate_of=entry.command_id,
                        reason="this idempotency key was used before with a different payload",
                    ),
                    None,
                    dlq_error="idempotency key reused with a different payload",
                )
                return
            if entry.state == "done":
                if entry.command_id == command.command_id:
                    # The same command delivered again: it has its one result already.
                    await self._commit_offsets_only(work, command)
                    return
                previous = msgspec.convert(entry.result or {}, CommandResult)
                previous.duplicate_of = entry.command_id
                previous.attempts = 0
                await self._finish(work, command, previous, None)
                return
            replay = True  # in flight when its last owner stopped: the vendor may have acted
        log.debug("command %s (%s): calling the vendor", command.command_id, command.command_type)
        result = await self._execute(work, command, spec, data, call, replay, digest)
        log.debug("command %s: %s, committing", command.command_id, result.status)
        dlq = None if result.status == "succeeded" else str(result.error or result.reason)
        await self._finish(work, command, result, digest, dlq_error=dlq)

    def _validate(self, command: Command) -> tuple[CommandSpec, msgspec.Struct, PreparedCall]:
        if command.event is None:
            raise Invalid("not a CloudEvent: send a CloudEvents 1.0 record (binary or structured)")
        spec = self.inst.spec.commands.get(command.command_type)
        if spec is None:
            known = ", ".join(sorted(self.inst.spec.commands))
            raise Invalid(f"unknown command type {command.command_type!r}; known: {known}")
        paths = self.inst.cfg.options.get("command_paths", {})
        if spec.path_not_documented and command.command_type not in paths:
            raise Invalid(
                f"{command.command_type}: the vendor document gives no path for this action; "
                f"set options.command_paths[{command.command_type!r}] to enable it"
            )
        raw = command.event.get_data()
        if not isinstance(raw, dict):
            raise Invalid("data must be a JSON object")
        try:
            data = msgspec.convert(raw, spec.model)
        except msgspec.ValidationError as exc:
            raise Invalid(f"data does not match {command.command_type}: {exc}") from None
        call = spec.build(data)
        if command.command_type in paths:
            call = msgspec.structs.replace(
                call, path=str(paths[command.command_type]).format(**raw)
            )
        return spec, data, call

    async def _execute(
        self,
        work: PartitionWork,
        command: Command,
        spec: CommandSpec,
        data: msgspec.Struct,
        call: PreparedCall,
        replay: bool,
        digest: str,
    ) -> CommandResult:
        base: dict[str, Any] = {
            "command_type": command.command_type,
            "idempotency_key": command.idem_key,
        }
        if replay:
            if spec.lookup is not None:
                found = await spec.lookup(self.inst.client, data)
                if found is not None:
                    return CommandResult(
                        status="succeeded",
                        **base,
                        http_status=found.status,
                        response=found.json_or_text(),
                        reason="reconciled after a restart",
                    )
            elif spec.kind not in ("update", "delete"):
                return CommandResult(
                    status="ambiguous",
                    **base,
                    reason="the process stopped during the vendor call and the vendor offers "
                    "no look-up: check at the vendor before sending a new command",
                )
        else:
            await self._mark_inflight(work, command, digest)
        if self.before_vendor_call is not None:
            self.before_vendor_call(command)
        if spec.prepare is not None:
            prepared = await self._prepare(spec, data, call, base)
            if isinstance(prepared, CommandResult):
                return prepared
            call = prepared
        outcome = await call_with_retry(
            self.inst.client,
            call.method,
            call.path,
            errors=self.inst.spec.errors,
            policy=self.policy,
            json=call.json,
            headers=call.headers,
        )
        return self._judge(outcome, base, spec, replay)

    async def _prepare(
        self, spec: CommandSpec, data: msgspec.Struct, call: PreparedCall, base: dict[str, Any]
    ) -> PreparedCall | CommandResult:
        assert spec.prepare is not None
        deadline = time.monotonic() + self.policy.deadline_s
        for attempt in range(self.policy.max_attempts):
            try:
                return await spec.prepare(self.inst.client, data, call)
            except Invalid as exc:
                return CommandResult(
                    status="rejected", **base, error=str(exc), reason="invalid command"
                )
            except (Transient, TransportError) as exc:
                headers = (
                    exc.response.headers if isinstance(exc, Transient) and exc.response else {}
                )
                delay = next_delay(
                    attempt, headers, base_s=self.policy.base_s, cap_s=self.policy.cap_s
                )
                if time.monotonic() + delay > deadline:
                    break
                await asyncio.sleep(delay)
        return CommandResult(
            status="failed",
            **base,
            attempts=self.policy.max_attempts,
            reason="gave up preparing the call: the vendor did not answer",
        )

    def _judge(
        self, outcome: CallOutcome, base: dict[str, Any], spec: CommandSpec, replay: bool
    ) -> CommandResult:
        resp = outcome.response
        status_code = resp.status if resp else None
        self.metrics.vendor_calls.labels(self.inst.name, str(status_code or "none")).inc()
        common: dict[str, Any] = {
            **base,
            "attempts": outcome.attempts,
            "http_status": status_code,
            "request_id": request_id(resp.headers) if resp else None,
        }
        if outcome.action is Action.SUCCESS and resp is not None:
            return CommandResult(
                status="succeeded",
                **common,
                response=resp.json_or_text(),
                accepted_async=True if resp.status == 202 else None,
            )
        if replay and spec.kind == "delete" and status_code == 404:
            return CommandResult(
                status="succeeded", **common, reason="already deleted (replayed after a restart)"
            )
        if outcome.rule is not None and outcome.rule.alert:
            log.error("%s: %s (HTTP %s)", self.inst.name, outcome.rule.reason, status_code)
        error = resp.json_or_text() if resp is not None else outcome.error
        reason = outcome.error if outcome.action is Action.FAIL else f"gave up: {outcome.error}"
        return CommandResult(status="failed", **common, error=error, reason=reason)

    # -- transactions ----------------------------------------------------------------------

    async def _mark_inflight(self, work: PartitionWork, command: Command, digest: str) -> None:
        entry = LedgerEntry(
            state="inflight",
            command_id=command.command_id,
            command_type=command.command_type,
            payload_hash=digest,
            at=datetime.now(UTC),
        )
        async with work.lock, work.producer.transaction():
            await work.producer.send(
                self.inst.topics.ledger,
                key=command.idem_key.encode(),
                value=encode_entry(entry),
                partition=work.tp.partition,
            )
        work.ledger[command.idem_key] = entry

    async def _finish(
        self,
        work: PartitionWork,
        command: Command,
        result: CommandResult,
        digest: str | None,
        *,
        dlq_error: str | None = None,
    ) -> None:
        topics = self.inst.topics
        event = self._result_event(command, result)
        key, value, headers = self.inst.encode(event)
        entry = None
        if digest is not None:
            entry = LedgerEntry(
                state="done",
                command_id=command.command_id,
                command_type=command.command_type,
                payload_hash=digest,
                at=datetime.now(UTC),
                result=msgspec.to_builtins(result),
            )
        async with work.lock:
            # The offset is computed inside the lock: it must cover this command.
            work.pending.discard(command.record.offset)
            async with work.producer.transaction():
                await work.producer.send(topics.results, key=key, value=value, headers=headers)
                if entry is not None:
                    await work.producer.send(
                        topics.ledger,
                        key=command.idem_key.encode(),
                        value=encode_entry(entry),
                        partition=work.tp.partition,
                    )
                if dlq_error is not None:
                    rec = command.record
                    dlq_headers = command_dlq_headers(
                        list(rec.headers),
                        instance=self.inst.name,
                        status=result.status,
                        error=dlq_error,
                    )
                    await work.producer.send(
                        topics.dlq, key=rec.key, value=rec.value, headers=dlq_headers
                    )
                await work.producer.send_offsets_to_transaction(
                    {work.tp: work.commit_offset()}, self.group_id
                )
        if entry is not None:
            work.ledger[command.idem_key] = entry
        log.debug("command %s: result %s committed", command.command_id, result.status)
        self.metrics.commands.labels(self.inst.name, result.status).inc()
        if dlq_error is not None:
            self.metrics.dlq.labels(self.inst.name, f"command_{result.status}").inc()

    async def _commit_offsets_only(self, work: PartitionWork, command: Command) -> None:
        async with work.lock:
            work.pending.discard(command.record.offset)
            async with work.producer.transaction():
                await work.producer.send_offsets_to_transaction(
                    {work.tp: work.commit_offset()}, self.group_id
                )

    def _result_event(self, command: Command, result: CommandResult) -> CloudEvent:
        result_type = f"{command.command_type}.result"
        return make_event(
            id=stable_id(self.inst.name, "result", command.command_id),
            source=f"/workbridge/{self.inst.name}",
            type=result_type,
            subject=command.subject,
            partitionkey=self.inst.partition_key(command.subject),
            data=msgspec.json.encode(result),
            dataschema=f"{SCHEMA_BASE}/results/command-result.json",
            extensions={"commandid": command.command_id},
        )
