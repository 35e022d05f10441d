"""The command worker: commands from Kafka become vendor calls, at most once per key.

Per owned partition of `<name>.commands`:
1. the partition's transactional producer starts (fencing any previous owner), then its
   ledger partition is restored into a local index; the partition is fetched only after;
2. a command is validated (invalid: `rejected`, DLQ, never sent);
3. an `inflight` ledger entry is committed right before the request goes out, so a crash
   mid-call is seen by whoever owns the partition next;
4. the result event, the `done` ledger entry, a DLQ copy for failures and the consumer
   offset are committed in one transaction. The offset never passes a command whose
   result is not committed.
Commands of one subject run in order; different subjects run concurrently.

This module puts the parts together (`adapters/core/commands/`): `partition_owner` (the
group and the fetch), `scheduler` (order, key locks, offsets), `ledger_store` (the ledger),
`decision` (the rules, pure), `executor` (the vendor call) and `txn_writer` (transactions).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.structs import ConsumerRecord

from adapters.core.batching import Batcher
from adapters.core.command_result import CommandResult
from adapters.core.commands.decision import (
    Answer,
    Decision,
    Facts,
    Skip,
    answer_only,
    crashed,
    decide,
    finished,
)
from adapters.core.commands.executor import Executor
from adapters.core.commands.model import Checked, Command, decode_command
from adapters.core.commands.partition_owner import PartitionOwner
from adapters.core.commands.scheduler import SubjectScheduler, TryLater
from adapters.core.commands.txn_writer import Committer, TxnWriter
from adapters.core.commands.validation import Invalid, check, fill_path, validate
from adapters.core.group_commit import CommitterClosed, GroupCommitter
from adapters.core.instance import Instance
from adapters.core.kafka import transactional_producer
from adapters.core.ledger_store import (
    KafkaLedgerLog,
    Ledger,
    LedgerIndex,
    LedgerUnavailable,
    ledger_metrics,
)
from adapters.core.metrics import Metrics
from adapters.core.track_change import TrackChange
from adapters.core.vendor import CommandSpec, PreparedCall
from adapters.core.vendor_call import CallOutcome, RetryPolicy
from adapters.settings import KafkaConfig

__all__ = ["Command", "CommandWorker", "Decision", "Invalid", "PartitionWork"]

log = logging.getLogger(__name__)

# Under its name from before the split: vendor tests import it from here.
_fill_path = fill_path


class PartitionWork:
    """One owned command partition: its ledger, its schedule and its transactions."""

    def __init__(
        self,
        tp: TopicPartition,
        producer: AIOKafkaProducer | None,
        ledger: Ledger,
        writer: TxnWriter,
        *,
        process: Callable[[PartitionWork, Command], Awaitable[None]],
        slots: asyncio.Semaphore,
        on_resume: Callable[[], None],
        name: str,
    ) -> None:
        self.tp = tp
        self.producer = producer
        self.ledger = ledger
        self.writer = writer
        self.schedule = SubjectScheduler(
            functools.partial(process, self), slots=slots, on_resume=on_resume, name=name
        )
        self.restore: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    @property
    def closing(self) -> bool:
        """Being handed back (or lost): nothing more is started."""
        return self.schedule.closing

    @property
    def accepting(self) -> bool:
        """Restored and not closing: fetched commands are taken."""
        return self._ready.is_set() and not self.closing

    @property
    def restoring(self) -> bool:
        """Owned, but its ledger is not restored yet (its commands wait)."""
        return not self._ready.is_set() and not self.closing

    @property
    def commits(self) -> Committer:
        """The partition's committer."""
        return self.writer.commits

    @property
    def marks(self) -> dict[str, bool]:
        """In-flight marks this process wrote: idempotency key → the vendor may have acted."""
        return self.writer.marks

    def mark_ready(self) -> None:
        """The ledger is restored: commands may be decided."""
        assert self.ledger.restored
        self._ready.set()

    async def wait_ready(self) -> None:
        """Return once the partition takes commands."""
        await self._ready.wait()

    def dispatch(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Queue a fetched command."""
        self.schedule.dispatch(decode_command(record))

    def should_pause(self) -> bool:
        """Whether fetching must pause for the backlog."""
        return self.schedule.should_pause()


def command_concurrency(inst: Instance) -> int:
    """Commands in progress at once: as configured, else 16, else (batching) enough calls to
    fill two batches, since a batch holds only calls in progress at the same time."""
    configured = inst.cfg.commands.concurrency
    if configured is not None:
        return configured
    if inst.batcher is not None:
        return max(16, 2 * inst.batcher.spec.max_ops)
    return 16


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
        state_dir: Path | None = None,
        restore_stall_s: float = 120.0,
    ) -> None:
        self.inst, self.kafka, self.metrics = inst, kafka, metrics
        self.grace_s = grace_s
        # The ledger index's directory (`ledger.dir`); None: a private index per partition.
        self.state_dir = state_dir
        # `ledger.restore_stall_s`: a restore that stops moving for this long gives the
        # partition up; a long one that moves is never cut short.
        self.restore_stall_s = restore_stall_s
        self.executor = Executor(inst, metrics)
        # Per process: the vendor budget is shared anyway; this bounds open requests.
        self.slots = asyncio.Semaphore(command_concurrency(inst))
        self.group_id = inst.topics.group("commands")
        self.on_fatal = on_fatal or (lambda message: log.critical("%s", message))
        self.owner: PartitionOwner[PartitionWork] = PartitionOwner(
            kafka,
            topic=inst.topics.commands,
            group_id=self.group_id,
            client_id=f"{kafka.client_id}-{inst.name}-commands",
            open_partition=self._open,
            close_partitions=self._close,
            on_fatal=self.on_fatal,
            name=inst.name,
        )

    @property
    def parts(self) -> dict[TopicPartition, PartitionWork]:
        """The partitions this process owns."""
        return self.owner.parts

    @property
    def policy(self) -> RetryPolicy:
        """The retry policy of vendor calls."""
        return self.executor.policy

    @property
    def restoring(self) -> bool:
        """Whether an owned partition still restores its ledger: its commands wait, so the
        process is not ready."""
        return any(work.restoring for work in self.parts.values())

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Join the group; partitions are restored and worked on as they are assigned."""
        await self.owner.start()

    async def stop(self) -> None:
        """Stop fetching, let in-flight commands finish (up to the grace), commit, leave."""
        await self.owner.stop()

    async def _open(self, tp: TopicPartition) -> PartitionWork:
        # Starting the producer first also waits for the previous owner's last commit, so
        # the committed offset read after the rebalance callback, and the ledger's end, are
        # current.
        producer = transactional_producer(
            self.kafka, transactional_id=f"{self.group_id}.{tp.partition}"
        )
        await producer.start()
        try:
            ledger = self._ledger(tp.partition)
        except BaseException:
            await producer.stop()  # leave nothing open when cancelled mid-rebalance
            raise
        work = self.assemble(tp, producer, ledger)
        work.restore = asyncio.create_task(
            self._restore(work), name=f"ledger-{self.inst.name}-{tp.partition}"
        )
        log.info(
            "commands %s: own partition %d; restoring its ledger", self.inst.name, tp.partition
        )
        return work

    def _ledger(self, partition: int) -> Ledger:
        topic = self.inst.topics.ledger
        index = LedgerIndex.open(
            self.state_dir, identity=f"{topic}/{partition}", name=f"{topic}.{partition}"
        )
        source = KafkaLedgerLog(
            self.kafka,
            topic,
            partition,
            client_id=f"{self.kafka.client_id}-{self.inst.name}-ledger",
        )
        return Ledger(
            index,
            source,
            topic=topic,
            partition=partition,
            instance=self.inst.name,
            metrics=ledger_metrics(self.metrics),
            stall_s=self.restore_stall_s,
        )

    def assemble(
        self,
        tp: TopicPartition,
        producer: AIOKafkaProducer | None,
        ledger: Ledger,
        committer: Committer | None = None,
    ) -> PartitionWork:
        """The work of one partition from its parts (a GroupCommitter on `producer` unless
        `committer` is given)."""
        writer = TxnWriter(self.inst, self.metrics, tp.partition)
        work = PartitionWork(
            tp,
            producer,
            ledger,
            writer,
            process=self._process,
            slots=self.slots,
            on_resume=functools.partial(self.owner.resume, tp),
            name=f"commands {self.inst.name}",
        )
        if committer is None:
            assert producer is not None
            committer = GroupCommitter(
                producer,
                tp,
                self.group_id,
                commit_offset=work.schedule.commit_offset,
                name=f"commands {self.inst.name}",
                on_fatal=functools.partial(self._partition_lost, work),
                on_committed=ledger.committed,
            )
        writer.committer = committer
        return work

    async def _restore(self, work: PartitionWork) -> None:
        partition = work.tp.partition
        try:
            report = await work.ledger.restore()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            work.schedule.closing = True
            self.on_fatal(f"cannot restore the ledger of command partition {partition}: {exc}")
            return
        log.info(
            "commands %s: partition %d ready: ledger read from offset %d to %d (%d records%s) "
            "in %.1fs",
            self.inst.name,
            partition,
            report.start,
            report.end,
            report.records,
            ", after the checkpoint" if report.resumed else "",
            report.seconds,
        )
        work.mark_ready()

    def _partition_lost(self, work: PartitionWork, message: str) -> None:
        # Fenced or broken: nothing more may be written for this partition from here, and
        # the process leaves so that the group gives the partition to a healthy member.
        work.schedule.closing = True
        self.on_fatal(f"cannot write for command partition {work.tp.partition}: {message}")

    async def _close(self, works: list[PartitionWork]) -> None:
        """Hand partitions back: finish what is in flight within the grace, drop the rest."""
        for work in works:
            work.schedule.closing = True
            if work.restore is not None:
                work.restore.cancel()
        # A command at the vendor (a request of it out, or between its attempts) is
        # finished: its answer decides its result. One still waiting for its turn or for the
        # rate budget has nothing out and is let go at once: the next owner reads it again
        # from the committed offset. Waiting for those would hold the rebalance for as long
        # as the budget needs to serve them (minutes at a tight vendor limit), and the
        # group would drop this member meanwhile.
        client = self.inst.command_client
        budget_waits = client.waiting if isinstance(client, Batcher) else client.limiter.waiting
        calling: list[asyncio.Task[None]] = []
        waiting: list[asyncio.Task[None]] = []
        # A subject's runner only waits (for a slot, or for its commands): it sends nothing.
        runners = [task for work in works for task in work.schedule.runners.values()]
        for work in works:
            for task, current in work.schedule.active.items():
                sent = current.idem_key in work.marks
                idle = task in budget_waits and not sent
                (waiting if idle else calling).append(task)
        for task in (*runners, *waiting):
            task.cancel()
        if calling or waiting:
            log.info(
                "commands %s: handing back %d partition(s); finishing %d command(s) at the "
                "vendor, %d not started are left to the next owner",
                self.inst.name,
                len(works),
                len(calling),
                len(waiting),
            )
            late: set[asyncio.Task[None]] = set()
            if calling:
                _done, late = await asyncio.wait(calling, timeout=self.grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, *waiting, return_exceptions=True)
        await asyncio.gather(*runners, return_exceptions=True)
        for work in works:
            if work.restore is not None:
                await asyncio.gather(work.restore, return_exceptions=True)
            await work.writer.clear_unused_marks()
            await work.commits.close(timeout_s=5.0)
            # Stopping flushes; during an outage that would wait for the broker. The next
            # owner fences this producer anyway.
            if work.producer is not None:
                with contextlib.suppress(TimeoutError, KafkaError):
                    await asyncio.wait_for(work.producer.stop(), 5.0)
            await work.ledger.close()

    # -- one command -------------------------------------------------------------------------

    async def _process(self, work: PartitionWork, command: Command) -> None:
        """Decide, call, commit: under the command's key lock, in its subject's order."""
        try:
            facts = Facts(
                answered=await work.ledger.answered(command.command_id),
                entry=await work.ledger.entry(command.idem_key),
            )
        except LedgerUnavailable as exc:
            # Never decided as if the key were new: the command waits for its ledger.
            raise TryLater(str(exc)) from exc
        decision = await self._decide_safely(work, command, facts)
        await work.writer.commit(command, decision)
        work.schedule.finished(command.offset)

    async def _decide_safely(self, work: PartitionWork, command: Command, facts: Facts) -> Decision:
        try:
            return await self._decide(work, command, facts)
        except (asyncio.CancelledError, ProducerFenced, CommitterClosed):
            raise
        except Exception as exc:
            # Before the key was taken over (a crash after it is answered in `_decide`):
            # no request left and the key's entry is not this command's to change.
            log.exception("commands %s: command %s crashed", self.inst.name, command.command_id)
            acted = work.marks.pop(command.idem_key, False)
            return answer_only(
                command, crashed(command, exc, acted=acted), dlq_error=f"internal error: {exc}"
            )

    async def _decide(self, work: PartitionWork, command: Command, facts: Facts) -> Decision:
        checked = check(self.inst, command)
        verdict = decide(command, facts, checked)
        if isinstance(verdict, Skip):
            return Decision(None)
        if isinstance(verdict, Answer):
            return answer_only(command, verdict.result, dlq_error=verdict.dlq_error)
        assert isinstance(checked, Checked)
        key = command.idem_key
        log.debug("command %s (%s): calling the vendor", command.command_id, command.command_type)
        dlq: str | None
        try:
            before_send, after_attempt = work.writer.hooks(
                command, checked.digest, replay=verdict.replay, echo=self._echo(checked, command)
            )
            result = await self.executor.run(
                command,
                checked,
                replay=verdict.replay,
                before_send=before_send,
                after_attempt=after_attempt,
            )
            dlq = None if result.status == "succeeded" else str(result.error or result.reason)
        except (asyncio.CancelledError, ProducerFenced, CommitterClosed):
            raise
        except Exception as exc:
            # The key is this command's now (it may hold its in-flight mark): its entry
            # must carry the answer given, or later commands of the key would contradict it.
            log.exception("commands %s: command %s crashed", self.inst.name, command.command_id)
            acted = work.marks.pop(key, False)
            result, dlq = crashed(command, exc, acted=acted), f"internal error: {exc}"
        work.marks.pop(key, None)
        tracking = self._tracking(checked, result, command)
        return finished(command, checked.digest, result, dlq_error=dlq, tracking=tracking)

    def _echo(self, checked: Checked, command: Command) -> TrackChange | None:
        """The unsettled cause of the change the command is about to make (tracking.py)."""
        if checked.spec.echo is None:
            return None
        try:
            rid = checked.spec.echo(checked.data)
        except Exception:
            log.exception("commands %s: echo of %s failed", self.inst.name, command.command_id)
            return None
        if rid is None:
            return None
        return TrackChange(id=rid, tracked=None, caused_by=command.command_id, settled=False)

    def _tracking(
        self, checked: Checked, result: CommandResult, command: Command
    ) -> tuple[TrackChange, ...]:
        """What the result tells the instance's watch (nothing when the spec has no hook)."""
        if checked.spec.track is None:
            return ()
        try:
            change = checked.spec.track(checked.data, result, command.command_id)
        except Exception:
            # The result stands; the watch misses this id (logged: a bug in the hook).
            log.exception("commands %s: tracking of %s failed", self.inst.name, command.command_id)
            return ()
        return () if change is None else (change,)

    # -- single steps, for callers that check one command ------------------------------------

    def _validate(self, command: Command) -> tuple[CommandSpec, msgspec.Struct, PreparedCall]:
        return validate(self.inst, command)

    def _judge(
        self,
        outcome: CallOutcome,
        base: dict[str, Any],
        spec: CommandSpec,
        *,
        replay: bool,
        reading: bool = False,
    ) -> CommandResult:
        return self.executor.judge(outcome, base, spec, replay=replay, reading=reading)
