"""The command worker: commands from Kafka become vendor calls, at most once per key.

Per owned partition of `<name>.commands`:
1. the partition's transactional producer starts (fencing any previous owner), then its
   ledger partition is restored;
2. a command is validated (invalid: `rejected`, DLQ, never sent);
3. an `inflight` ledger entry is committed right before the request goes out, so a crash
   mid-call is seen by whoever owns the partition next;
4. the result event, the `done` ledger entry, a DLQ copy for failures and the consumer
   offset are committed in one transaction. The offset never passes a command whose
   result is not committed.
Commands of one subject run in order; different subjects run concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import string
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.structs import ConsumerRecord
from cloudevents.core.v1.event import CloudEvent

from adapters.config import KafkaConfig
from adapters.core.cloudevents_codec import NotACloudEvent, from_record, make_event, stable_id
from adapters.core.command_result import CommandResult, request_id
from adapters.core.dlq import command_dlq_headers
from adapters.core.errors import Action
from adapters.core.group_commit import CommitterClosed, GroupCommitter, Record
from adapters.core.instance import SCHEMA_BASE, Instance
from adapters.core.kafka import client_kwargs, transactional_producer
from adapters.core.ledger import (
    LedgerEntry,
    answered_record,
    decode_entry,
    encode_entry,
    key_record,
    payload_hash,
    read_ledger,
)
from adapters.core.metrics import Metrics
from adapters.core.rest_command import PathFieldInvalid, path_segment
from adapters.core.state_restore import restore_partition
from adapters.core.vendor import CommandSpec, PreparedCall, PrepareFailed
from adapters.core.vendor_call import CallOutcome, RetryPolicy, call_with_retry
from adapters.core.vendor_http import VendorResponse

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
    # Why a record that decoded is still no command (with `event` None).
    problem: str | None = None


@dataclass
class Decision:
    """What to commit for one command: its result (None: it has one already) and ledger."""

    result: CommandResult | None
    # The command's idempotency key now holds this entry (the key's final result).
    key_entry: LedgerEntry | None = None
    # A result that used no key (rejected, conflict, a repeat): kept under the command id.
    answer_entry: LedgerEntry | None = None
    dlq_error: str | None = None


@dataclass
class _KeyLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Holder and waiters: a released lock may have a woken waiter that has not run yet.
    users: int = 0


@dataclass
class PartitionWork:
    """State of one owned command partition."""

    tp: TopicPartition
    producer: AIOKafkaProducer
    # Entries by idempotency key.
    ledger: dict[str, LedgerEntry]
    # Ids of commands answered without using their key.
    answered: set[str] = field(default_factory=set)
    committer: GroupCommitter | None = None
    pending: set[int] = field(default_factory=set)
    highest: int = -1
    queues: dict[str, deque[Command]] = field(default_factory=dict)
    runners: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    # In-flight marks written by this process: idempotency key → the vendor may have acted.
    marks: dict[str, bool] = field(default_factory=dict)
    # Commands of one idempotency key on different subjects must not run side by side.
    key_locks: dict[str, _KeyLock] = field(default_factory=dict)
    closing: bool = False
    paused: bool = False

    def commit_offset(self, finishing: set[int]) -> int:
        """The group's next offset once `finishing` have their results: never past a command
        that is still without one."""
        others = self.pending - finishing
        return min(others) if others else self.highest + 1

    @contextlib.asynccontextmanager
    async def key_lock(self, key: str) -> AsyncIterator[None]:
        """Serialise the commands of one idempotency key (the ledger check and the call)."""
        entry = self.key_locks.setdefault(key, _KeyLock())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            # Dropped only when nobody holds or waits: `locked()` is already False while a
            # woken waiter has yet to run, and a newcomer must queue behind that waiter.
            entry.users -= 1
            if entry.users == 0:
                del self.key_locks[key]

    @property
    def commits(self) -> GroupCommitter:
        """The partition's group committer (set on assignment)."""
        assert self.committer is not None
        return self.committer


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: CommandWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.worker.release(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        try:
            await self.worker.acquire(assigned)
        except Exception as exc:
            # aiokafka would swallow this and leave the partitions unowned and paused.
            self.worker.on_fatal(f"cannot take over command partitions {assigned}: {exc}")
            raise


class _Reader:
    """Vendor reads for `prepare` and `lookup`, with the command's retry policy."""

    def __init__(self, worker: CommandWorker) -> None:
        self.worker = worker

    async def get(self, path: str, headers: Mapping[str, str]) -> VendorResponse:
        inst = self.worker.inst
        outcome = await call_with_retry(
            inst.client,
            "GET",
            path,
            errors=inst.spec.errors,
            policy=self.worker.policy,
            headers=headers,
        )
        if outcome.action is not Action.SUCCESS or outcome.response is None:
            raise PrepareFailed(outcome)
        return outcome.response


class CommandWorker:
    """Consumes one instance's command topic in the instance's consumer group."""

    def __init__(
        self,
        inst: Instance,
        kafka: KafkaConfig,
        metrics: Metrics,
        *,
        grace_s: float = 20.0,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        self.inst, self.kafka, self.metrics = inst, kafka, metrics
        self.grace_s = grace_s
        cfg = inst.cfg.commands
        self.policy = RetryPolicy(
            deadline_s=cfg.deadline_s or inst.spec.retry_deadline_s or 300.0,
            max_attempts=cfg.max_attempts,
            base_s=cfg.backoff_base_s or inst.spec.retry_base_s or 1.0,
            cap_s=cfg.backoff_max_s or inst.spec.retry_cap_s or 60.0,
        )
        # Per process: the vendor budget is shared anyway; this bounds open requests.
        self.semaphore = asyncio.Semaphore(cfg.concurrency)
        self.parts: dict[TopicPartition, PartitionWork] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self._loop: asyncio.Task[None] | None = None
        self.group_id = inst.topics.group("commands")
        self.reader = _Reader(self)
        self.on_fatal = on_fatal or (lambda message: log.critical("%s", message))

    # -- lifecycle -------------------------------------------------------------------------

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
        self._loop.add_done_callback(self._loop_ended)

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.on_fatal(f"command fetch loop of {self.inst.name} died: {task.exception()!r}")

    async def stop(self) -> None:
        """Stop fetching, let in-flight commands finish (up to the grace), commit, leave."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
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
                self.consumer.resume(tp)
                continue
            # Starting the producer first also waits for the previous owner's last commit,
            # so the committed offset read after this callback is current.
            producer = transactional_producer(
                self.kafka, transactional_id=f"{self.group_id}.{tp.partition}"
            )
            await producer.start()
            try:
                restored = await restore_partition(
                    self.kafka, self.inst.topics.ledger, tp.partition, decode_entry
                )
            except BaseException:
                await producer.stop()  # leave nothing open when cancelled mid-rebalance
                raise
            state = read_ledger(restored)
            work = PartitionWork(
                tp=tp, producer=producer, ledger=state.keys, answered=state.answered
            )
            work.committer = GroupCommitter(
                producer,
                tp,
                self.group_id,
                commit_offset=work.commit_offset,
                name=f"commands {self.inst.name}",
                on_fatal=functools.partial(self._partition_lost, work),
            )
            self.parts[tp] = work
            self.consumer.resume(tp)
            log.info(
                "commands %s: own partition %d (%d ledger keys)",
                self.inst.name,
                tp.partition,
                len(work.ledger),
            )

    def _partition_lost(self, work: PartitionWork, message: str) -> None:
        # Fenced or broken: nothing more may be written for this partition from here, and
        # the process leaves so that the group gives the partition to a healthy member.
        work.closing = True
        self.on_fatal(f"cannot write for command partition {work.tp.partition}: {message}")

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
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for work in works:
            await self._clear_unused_marks(work)
            await work.commits.close(timeout_s=5.0)
            # Stopping flushes; during an outage that would wait for the broker. The next
            # owner fences this producer anyway.
            with contextlib.suppress(TimeoutError, KafkaError):
                await asyncio.wait_for(work.producer.stop(), 5.0)

    async def _clear_unused_marks(self, work: PartitionWork) -> None:
        # A command stopped between attempts that all provably failed (429, no connection):
        # the vendor did not act, so its in-flight mark must not make the next owner answer
        # `ambiguous`. Marks of calls that may have reached the vendor stay.
        unused = [key for key, acted in work.marks.items() if not acted]
        if not unused:
            return
        tombstones: list[Record] = [
            (self.inst.topics.ledger, key_record(key).encode(), None, [], work.tp.partition)
            for key in unused
        ]
        with contextlib.suppress(CommitterClosed, TimeoutError):
            await asyncio.wait_for(work.commits.write(tombstones), 5.0)

    # -- fetching and dispatch -------------------------------------------------------------

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
        work.queues.setdefault(command.subject, deque()).append(command)
        self._ensure_runner(work, command.subject)

    def _ensure_runner(self, work: PartitionWork, subject: str) -> None:
        if subject not in work.runners and not work.closing:
            work.runners[subject] = asyncio.create_task(self._run_subject(work, subject))

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
        command_type = str(attrs.get("type", "unknown"))
        if not _utf8(command_id, idem, subject, command_type):
            # JSON (structured mode) can carry lone surrogates, which no Kafka key or header
            # can: such a command could never be answered and would hold its offset forever.
            problem = "id, idempotencykey, subject and type must be valid Unicode text"
            return Command(record, None, fallback_id, "unknown", key_subject, fallback_id, problem)
        return Command(record, event, command_id, command_type, subject, idem)

    async def _run_subject(self, work: PartitionWork, subject: str) -> None:
        queue = work.queues[subject]
        try:
            while queue and not work.closing:
                command = queue[0]
                async with self.semaphore, work.key_lock(command.idem_key):
                    if work.closing:
                        break
                    decision = await self._decide_safely(work, command)
                    await self._commit(work, command, decision)
                queue.popleft()
                if work.paused and len(work.pending) < MAX_PENDING_PER_PARTITION // 2:
                    assert self.consumer is not None
                    self.consumer.resume(work.tp)
                    work.paused = False
        except (asyncio.CancelledError, ProducerFenced, KafkaError, CommitterClosed):
            raise  # handed back or fenced: the next owner carries on
        except Exception:
            log.exception("commands %s: subject %s stopped", self.inst.name, subject)
        finally:
            work.runners.pop(subject, None)
            if not queue:
                work.queues.pop(subject, None)
            elif not work.closing:
                # Ended by an error it did not recover from: the subject's work goes on.
                asyncio.get_running_loop().call_later(1.0, self._ensure_runner, work, subject)

    # -- deciding one command ----------------------------------------------------------------

    async def _decide_safely(self, work: PartitionWork, command: Command) -> Decision:
        try:
            return await self._decide(work, command)
        except (asyncio.CancelledError, ProducerFenced, CommitterClosed):
            raise
        except Exception as exc:
            # Before the key was taken over (a crash after it is answered in `_decide`):
            # no request left and the key's entry is not this command's to change.
            log.exception("commands %s: command %s crashed", self.inst.name, command.command_id)
            return self._answer_only(
                command, self._crashed(work, command, exc), dlq_error=f"internal error: {exc}"
            )

    def _crashed(self, work: PartitionWork, command: Command, exc: Exception) -> CommandResult:
        # Once its request may have left, nobody can say whether the vendor acted.
        acted = work.marks.pop(command.idem_key, False)
        return CommandResult(
            status="ambiguous" if acted else "failed",
            command_type=command.command_type,
            idempotency_key=command.idem_key,
            reason=f"internal error: {type(exc).__name__}"
            + (" after the request was sent: check at the vendor" if acted else ""),
        )

    def _answer_only(
        self, command: Command, result: CommandResult, *, dlq_error: str | None
    ) -> Decision:
        """A result with no vendor call: recorded under the command id, so a redelivery of
        the same command does not get a second result."""
        entry = LedgerEntry(
            state="done",
            command_id=command.command_id,
            command_type=command.command_type,
            payload_hash="",
            at=datetime.now(UTC),
            result=msgspec.to_builtins(result),
        )
        return Decision(result, answer_entry=entry, dlq_error=dlq_error)

    async def _decide(self, work: PartitionWork, command: Command) -> Decision:
        if command.command_id in work.answered:
            return Decision(None)  # the same command again: it has its one result
        base: dict[str, Any] = {
            "command_type": command.command_type,
            "idempotency_key": command.idem_key,
        }
        try:
            spec, data, call = self._validate(command)
        except Invalid as exc:
            result = CommandResult(
                status="rejected", **base, error=str(exc), reason="invalid command"
            )
            return self._answer_only(command, result, dlq_error=str(exc))
        digest = payload_hash(command.command_type, msgspec.to_builtins(data))
        entry = work.ledger.get(command.idem_key)
        replay = False
        if entry is not None:
            if entry.command_id == command.command_id and entry.state == "done":
                return Decision(None)
            if entry.payload_hash != digest:
                result = CommandResult(
                    status="conflict",
                    **base,
                    duplicate_of=entry.command_id,
                    reason="this idempotency key was used before with a different payload",
                )
                return self._answer_only(
                    command, result, dlq_error="idempotency key reused with a different payload"
                )
            if entry.state == "done":
                previous = msgspec.convert(entry.result or {}, CommandResult)
                previous.duplicate_of = entry.command_id
                previous.attempts = 0
                return self._answer_only(command, previous, dlq_error=None)
            replay = True  # in flight when its last owner stopped: the vendor may have acted
            # Until a look-up or this process's own attempts say otherwise.
            work.marks[command.idem_key] = True
        log.debug("command %s (%s): calling the vendor", command.command_id, command.command_type)
        dlq: str | None
        try:
            result = await self._execute(work, command, spec, data, call, replay, digest)
            dlq = None if result.status == "succeeded" else str(result.error or result.reason)
        except (asyncio.CancelledError, ProducerFenced, CommitterClosed):
            raise
        except Exception as exc:
            # The key is this command's now (it may hold its in-flight mark): its entry
            # must carry the answer given, or later commands of the key would contradict it.
            log.exception("commands %s: command %s crashed", self.inst.name, command.command_id)
            result, dlq = self._crashed(work, command, exc), f"internal error: {exc}"
        work.marks.pop(command.idem_key, None)
        done = LedgerEntry(
            state="done",
            command_id=command.command_id,
            command_type=command.command_type,
            payload_hash=digest,
            at=datetime.now(UTC),
            result=msgspec.to_builtins(result),
        )
        return Decision(result, key_entry=done, dlq_error=dlq)

    def _validate(self, command: Command) -> tuple[CommandSpec, msgspec.Struct, PreparedCall]:
        if command.event is None:
            raise Invalid(
                command.problem
                or "not a CloudEvent: send a CloudEvents 1.0 record (binary or structured)"
            )
        spec = self.inst.spec.commands.get(command.command_type)
        if spec is None:
            known = ", ".join(sorted(self.inst.spec.commands))
            raise Invalid(f"unknown command type {command.command_type!r}; known: {known}")
        paths: dict[str, str] = self.inst.cfg.options.get("command_paths", {})
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
        try:
            call = spec.build(data)
        except PathFieldInvalid as exc:
            raise Invalid(f"{command.command_type}: {exc}") from None
        if command.command_type in paths:
            call = msgspec.structs.replace(call, path=_fill_path(paths[command.command_type], raw))
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
            reconciled = await self._reconcile(spec, data, base)
            if reconciled is not None:
                return reconciled
        try:
            if spec.prepare is not None:
                call = await spec.prepare(self.reader, data, call)
        except PrepareFailed as exc:
            return self._judge(exc.outcome, base, spec, replay=False, reading=True)

        async def mark() -> None:
            # Once per command, right before the first request leaves: from here on a
            # crash means the vendor may have acted.
            if command.idem_key not in work.marks and not replay:
                await self._mark_inflight(work, command, digest)
            work.marks[command.idem_key] = True

        def attempt_done(acted: bool) -> None:
            if command.idem_key in work.marks:
                work.marks[command.idem_key] = acted

        outcome = await call_with_retry(
            self.inst.client,
            call.method,
            call.path,
            errors=self.inst.spec.errors,
            policy=self.policy,
            repeat_safe=spec.repeat_safe,
            json=call.json,
            headers=call.headers,
            before_send=mark,
            after_attempt=attempt_done,
        )
        result = self._judge(outcome, base, spec, replay=replay)
        if result.status == "ambiguous" and spec.lookup is not None:
            return await self._reconcile(spec, data, base) or result
        return result

    async def _reconcile(
        self, spec: CommandSpec, data: msgspec.Struct, base: dict[str, Any]
    ) -> CommandResult | None:
        """After a crash mid-call: what the vendor did, if it can tell; None to call it."""
        if spec.lookup is not None:
            try:
                found = await spec.lookup(self.reader, data)
            except PrepareFailed as exc:
                return CommandResult(
                    status="ambiguous",
                    **base,
                    reason=f"the vendor look-up failed ({exc}): check at the vendor",
                )
            if found is not None:
                return CommandResult(
                    status="succeeded",
                    **base,
                    http_status=found.status,
                    response=found.json_or_text(),
                    reason="reconciled through a vendor look-up",
                )
            return None  # the vendor did not act: calling it is safe
        if spec.repeat_safe:
            return None
        return CommandResult(
            status="ambiguous",
            **base,
            reason="the process stopped during the vendor call and the vendor offers no "
            "look-up: check at the vendor before sending a new command",
        )

    def _judge(
        self,
        outcome: CallOutcome,
        base: dict[str, Any],
        spec: CommandSpec,
        *,
        replay: bool,
        reading: bool = False,
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
        if outcome.action is Action.SUCCESS and resp is not None and not reading:
            return CommandResult(
                status="succeeded",
                **common,
                response=_bounded(resp),
                accepted_async=True if resp.status == 202 else None,
            )
        if replay and spec.kind == "delete" and status_code == 404:
            return CommandResult(
                status="succeeded", **common, reason="already deleted (replayed after a restart)"
            )
        if outcome.rule is not None and outcome.rule.alert:
            log.error("%s: %s (HTTP %s)", self.inst.name, outcome.rule.reason, status_code)
        error = _bounded(resp) if resp is not None else outcome.error
        unsafe = not spec.repeat_safe and not reading
        if outcome.action is Action.RETRY and outcome.may_have_acted and unsafe:
            return CommandResult(
                status="ambiguous",
                **common,
                error=error,
                reason=f"{outcome.error}: the vendor may have acted; check at the vendor "
                "before sending a new command",
            )
        what = "reading current values: " if reading else ""
        reason = outcome.error if outcome.action is Action.FAIL else f"gave up: {outcome.error}"
        return CommandResult(status="failed", **common, error=error, reason=what + (reason or ""))

    # -- transactions ------------------------------------------------------------------------

    async def _mark_inflight(self, work: PartitionWork, command: Command, digest: str) -> None:
        entry = LedgerEntry(
            state="inflight",
            command_id=command.command_id,
            command_type=command.command_type,
            payload_hash=digest,
            at=datetime.now(UTC),
        )
        record_key = key_record(command.idem_key).encode()
        ledger, partition = self.inst.topics.ledger, work.tp.partition
        # Committed (Kafka errors are retried by the committer) before the request leaves.
        # Given up on (a hand-back cancels us), it must not stay: the next owner would take
        # it for a call that may have reached the vendor. Its undo is a tombstone: no entry
        # existed for the key, and none can be written for it while the partition closes.
        await work.commits.write(
            [(ledger, record_key, encode_entry(entry), [], partition)],
            undo=[(ledger, record_key, None, [], partition)],
        )
        work.ledger[command.idem_key] = entry
        work.marks[command.idem_key] = False

    async def _commit(self, work: PartitionWork, command: Command, decision: Decision) -> None:
        """Result, ledger, DLQ copy and offset in one transaction (shared with others).

        The command's offset stays pending until the commit succeeded, so no other
        command's commit can move the group's offset past it before its result exists.
        """
        offset = command.record.offset
        await work.commits.write(self._records(work, command, decision), finished_offset=offset)
        work.pending.discard(offset)
        if decision.key_entry is not None:
            work.ledger[command.idem_key] = decision.key_entry
        if decision.answer_entry is not None:
            work.answered.add(command.command_id)
        if decision.result is not None:
            self.metrics.commands.labels(self.inst.name, decision.result.status).inc()
            log.debug("command %s: %s", command.command_id, decision.result.status)
        if decision.dlq_error is not None and decision.result is not None:
            self.metrics.dlq.labels(self.inst.name, f"command_{decision.result.status}").inc()

    def _records(self, work: PartitionWork, command: Command, decision: Decision) -> list[Record]:
        topics = self.inst.topics
        records: list[Record] = []
        if decision.result is not None:
            key, value, headers = self.inst.encode(self._result_event(command, decision.result))
            records.append((topics.results, key, value, headers, None))
        own: list[tuple[str, LedgerEntry | None]] = [
            (key_record(command.idem_key), decision.key_entry),
            (answered_record(command.command_id), decision.answer_entry),
        ]
        for ledger_key, entry in own:
            if entry is not None:
                records.append(
                    (topics.ledger, ledger_key.encode(), encode_entry(entry), [], work.tp.partition)
                )
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

    def _result_event(self, command: Command, result: CommandResult) -> CloudEvent:
        return make_event(
            id=stable_id(self.inst.name, "result", command.command_id),
            source=f"/workbridge/{self.inst.name}",
            type=f"{command.command_type}.result",
            subject=command.subject,
            partitionkey=self.inst.partition_key(command.subject),
            data=msgspec.json.encode(result),
            dataschema=f"{SCHEMA_BASE}/results/command-result.json",
            extensions={"commandid": command.command_id},
        )


# A result carries the vendor's answer; one far larger than any record would not fit in a
# Kafka message (and could stop the partition's commits), so it is cut to a summary.
MAX_ANSWER_BYTES = 256 * 1024


def _bounded(resp: VendorResponse) -> Any:
    if len(resp.body) > MAX_ANSWER_BYTES:
        return {
            "truncated": True,
            "bytes": len(resp.body),
            "start": resp.body[:2000].decode("utf-8", "replace"),
        }
    return resp.json_or_text()


def _utf8(*texts: str) -> bool:
    try:
        for text in texts:
            text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _fill_path(template: str, data: dict[str, Any]) -> str:
    """A configured path with `{field}`s from the command data, URL-quoted."""
    values = {}
    for _, name, _, _ in string.Formatter().parse(template):
        if not name:
            continue
        if name not in data or isinstance(data[name], (dict, list)):
            raise Invalid(f"the configured path {template!r} needs a scalar `{name}` in data")
        try:
            values[name] = path_segment(data[name], name)
        except PathFieldInvalid as exc:
            raise Invalid(f"the configured path {template!r}: {exc}") from None
    return template.format(**values)
