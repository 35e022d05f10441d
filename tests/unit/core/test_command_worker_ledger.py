"""The worker and its ledger, driven without a broker: a new owner answers from the topic,
and a command whose ledger cannot answer waits instead of being taken for new."""

from __future__ import annotations

import asyncio

from adapters.core.commands.model import Checked, decode_command
from adapters.core.commands.validation import check
from adapters.core.ledger_store import LedgerUnavailable, LogRecord
from tests.unit.core.command_harness import ScriptedVendor, activity, harness
from tests.unit.core.memory_log import MemoryLog


async def test_a_new_owner_answers_repeats_from_what_the_last_one_wrote() -> None:
    first = await harness(ScriptedVendor([200]))
    first.dispatch(
        first.record(subject="s/1", data=activity(), key="k1", command_id="c1"),
        first.record(subject="s/2", data={"date": "nope"}, command_id="bad"),
    )
    await first.settle()
    assert len(first.vendor.sent) == 1

    # The partition moves: the next owner restores from the topic and holds nothing else.
    second = await harness(ScriptedVendor([200]), ledger_log=first.ledger_log, recent_bytes=0)
    second.dispatch(
        second.record(subject="s/1", data=activity(), key="k1", command_id="c1"),  # again
        second.record(subject="s/2", data={"date": "nope"}, command_id="bad"),  # again
        second.record(subject="s/3", data=activity(), key="k1", command_id="c2"),
        second.record(subject="s/4", data=activity(hours=9), key="k1", command_id="c3"),
    )
    await second.settle()
    assert second.vendor.sent == []
    by_id = {r["_commandid"]: r for r in second.results()}
    assert set(by_id) == {"c2", "c3"}  # c1 and bad have their one result already
    assert by_id["c2"]["status"] == "succeeded" and by_id["c2"]["duplicate_of"] == "c1"
    assert by_id["c3"]["status"] == "conflict"
    assert second.work.schedule.pending == set()
    assert second.ledger_log.reads > 0  # the entries came from the topic


async def test_a_mark_left_by_a_dead_owner_is_not_called_again_blindly() -> None:
    log = MemoryLog("workbridge.acme.state.ledger")
    first = await harness(ScriptedVendor([200]), ledger_log=log)
    command = first.record(subject="s/1", data=activity(), key="k1", command_id="c1")
    # The owner wrote its mark, the request left, and the process died before the result.
    decoded = decode_command(command)
    checked = check(first.worker.inst, decoded)
    assert isinstance(checked, Checked)
    await first.work.writer.mark_inflight(decoded, checked.digest)

    second = await harness(ScriptedVendor([200]), ledger_log=log, recent_bytes=0)
    second.dispatch(command)
    await second.settle()
    [result] = second.results()
    assert result["status"] == "ambiguous"  # a create with no look-up: reported, not repeated
    assert second.vendor.sent == []
    entry = await second.entry("k1")
    assert entry is not None and entry.state == "done"


async def test_a_command_waits_while_its_ledger_cannot_answer() -> None:
    class Flaky(MemoryLog):
        failures = 2

        async def read(self, offset: int) -> LogRecord | None:
            if self.failures:
                self.failures -= 1
                raise LedgerUnavailable("broker unreachable")
            return await super().read(offset)

    log = Flaky("workbridge.acme.state.ledger")
    first = await harness(ScriptedVendor([200]), ledger_log=log)
    first.dispatch(first.record(subject="s/1", data=activity(), key="k1", command_id="c1"))
    await first.settle()

    second = await harness(ScriptedVendor([200]), ledger_log=log, recent_bytes=0)
    second.work.schedule.retry_s = 0.01
    committed = asyncio.Event()
    second.committer.hooks.append(lambda _records: committed.set())
    second.dispatch(second.record(subject="s/2", data=activity(), key="k1", command_id="c2"))
    await asyncio.wait_for(committed.wait(), 5)
    await second.settle()
    [result] = second.results()
    assert result["duplicate_of"] == "c1"  # answered from the ledger once it could be read
    assert second.vendor.sent == [] and log.failures == 0


async def test_a_partition_takes_no_command_until_its_ledger_is_restored() -> None:
    h = await harness(ScriptedVendor([200]))
    restoring = h.worker.assemble(h.work.tp, None, h.work.ledger, h.committer)
    assert not restoring.accepting and restoring.restoring
    h.worker.parts[h.work.tp] = restoring
    assert h.worker.restoring  # the process is not ready
    restoring.mark_ready()
    assert restoring.accepting and not h.worker.restoring
    await asyncio.wait_for(restoring.wait_ready(), 1)
