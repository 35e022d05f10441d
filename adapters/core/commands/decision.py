"""What to do with a command, and what its answer is: pure functions over plain values.

No Kafka, no I/O, no clock but an `at` that defaults to now: the worker gathers the facts
(the ledger's answers, the validation), calls these, and carries out the result.

The rules, in order:
1. a command id that has its answer already (rejected, conflict, a repeat) gets nothing more;
2. an invalid command is `rejected`, never sent;
3. its key's entry decides the rest: none → call the vendor; the same command done → nothing
   more (a redelivery); another digest → `conflict`; done → the earlier result again
   (`duplicate_of`); in flight (its owner stopped mid-call) → call again as a replay, which
   reconciles or reports `ambiguous` rather than repeat a create.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from adapters.core.command_result import CommandResult, request_id
from adapters.core.commands.model import Checked, Command, Rejected
from adapters.core.errors import Action
from adapters.core.ledger import LedgerEntry
from adapters.core.track_change import TrackChange
from adapters.core.vendor import CommandSpec
from adapters.core.vendor_call import CallOutcome
from adapters.core.vendor_http import VendorResponse

# A result carries the vendor's answer; one far larger than any record would not fit in a
# Kafka message (and could stop the partition's commits), so it is cut to a summary.
MAX_ANSWER_BYTES = 256 * 1024


@dataclass(frozen=True)
class Facts:
    """What the ledger knows about a command."""

    # The command id has its result though it used no key (rejected, conflict, a repeat).
    answered: bool = False
    # The entry of the command's idempotency key.
    entry: LedgerEntry | None = None


@dataclass(frozen=True)
class Skip:
    """The command has its one result already: nothing is written but its offset."""


@dataclass(frozen=True)
class Answer:
    """Answered without a vendor call, recorded under the command id (not its key)."""

    result: CommandResult
    dlq_error: str | None


@dataclass(frozen=True)
class Execute:
    """Call the vendor; `replay` when the key's last owner stopped during its call."""

    replay: bool = False


Verdict = Skip | Answer | Execute


@dataclass
class Decision:
    """What to commit for one command: its result (None: it has one already) and ledger."""

    result: CommandResult | None
    # The command's idempotency key now holds this entry (the key's final result).
    key_entry: LedgerEntry | None = None
    # A result that used no key (rejected, conflict, a repeat): kept under the command id.
    answer_entry: LedgerEntry | None = None
    dlq_error: str | None = None
    # What the command says about the ids a watch follows (tracking.py), written with it.
    tracking: tuple[TrackChange, ...] = ()


def base(command: Command) -> dict[str, Any]:
    """The fields every result of the command has."""
    return {"command_type": command.command_type, "idempotency_key": command.idem_key}


def decide(command: Command, facts: Facts, checked: Checked | Rejected) -> Verdict:
    """The rules of the module docstring."""
    if facts.answered:
        return Skip()
    if isinstance(checked, Rejected):
        result = CommandResult(
            status="rejected", **base(command), error=checked.problem, reason="invalid command"
        )
        return Answer(result, dlq_error=checked.problem)
    entry = facts.entry
    if entry is None:
        return Execute()
    if entry.command_id == command.command_id and entry.state == "done":
        return Skip()
    if entry.payload_hash != checked.digest:
        result = CommandResult(
            status="conflict",
            **base(command),
            duplicate_of=entry.command_id,
            reason="this idempotency key was used before with a different payload",
        )
        return Answer(result, dlq_error="idempotency key reused with a different payload")
    if entry.state == "done":
        previous = msgspec.convert(entry.result or {}, CommandResult)
        previous.duplicate_of = entry.command_id
        previous.attempts = 0
        return Answer(previous, dlq_error=None)
    return Execute(replay=True)


def answer_only(
    command: Command, result: CommandResult, *, dlq_error: str | None, at: datetime | None = None
) -> Decision:
    """A result with no vendor call: recorded under the command id, so a redelivery of
    the same command does not get a second result."""
    entry = LedgerEntry(
        state="done",
        command_id=command.command_id,
        command_type=command.command_type,
        payload_hash="",
        at=at or datetime.now(UTC),
        result=msgspec.to_builtins(result),
    )
    return Decision(result, answer_entry=entry, dlq_error=dlq_error)


def finished(
    command: Command,
    digest: str,
    result: CommandResult,
    *,
    dlq_error: str | None,
    at: datetime | None = None,
    tracking: tuple[TrackChange, ...] = (),
) -> Decision:
    """The final result of a command that took its key: the key's entry holds it for good."""
    done = LedgerEntry(
        state="done",
        command_id=command.command_id,
        command_type=command.command_type,
        payload_hash=digest,
        at=at or datetime.now(UTC),
        result=msgspec.to_builtins(result),
    )
    return Decision(result, key_entry=done, dlq_error=dlq_error, tracking=tracking)


def inflight(command: Command, digest: str, *, at: datetime | None = None) -> LedgerEntry:
    """The mark committed right before a command's first request leaves."""
    return LedgerEntry(
        state="inflight",
        command_id=command.command_id,
        command_type=command.command_type,
        payload_hash=digest,
        at=at or datetime.now(UTC),
    )


def crashed(command: Command, exc: BaseException, *, acted: bool) -> CommandResult:
    """The answer to a command that crashed inside the worker."""
    # Once its request may have left, nobody can say whether the vendor acted.
    return CommandResult(
        status="ambiguous" if acted else "failed",
        **base(command),
        reason=f"internal error: {type(exc).__name__}"
        + (" after the request was sent: check at the vendor" if acted else ""),
    )


def judge(
    outcome: CallOutcome,
    fields: Mapping[str, Any],
    spec: CommandSpec,
    *,
    replay: bool,
    reading: bool = False,
) -> CommandResult:
    """The result of a vendor call (`reading`: a read the call needed first failed)."""
    resp = outcome.response
    status_code = resp.status if resp else None
    common: dict[str, Any] = {
        **fields,
        "attempts": outcome.attempts,
        "http_status": status_code,
        "request_id": request_id(resp.headers) if resp else None,
    }
    if outcome.action is Action.SUCCESS and resp is not None and not reading:
        return CommandResult(
            status="succeeded",
            **common,
            response=bounded(resp) if spec.answer is None else spec.answer(bounded(resp)),
            accepted_async=True if resp.status == 202 else None,
        )
    if spec.kind == "delete" and status_code == 404 and (replay or outcome.may_have_acted):
        # The first attempt (here, or before a restart) may have deleted it: the 404 is ours.
        why = "replayed after a restart" if replay else "an earlier attempt's answer was lost"
        return CommandResult(status="succeeded", **common, reason=f"already deleted ({why})")
    error = bounded(resp) if resp is not None else outcome.error
    unsafe = not spec.repeat_safe and not reading
    # A call stopped for its subject's order after a lost or retried answer may have acted
    # whatever its kind: a repeat would have settled it, and none follows.
    stopped = outcome.stopped is not None and not reading
    if outcome.action is Action.RETRY and outcome.may_have_acted and (unsafe or stopped):
        return CommandResult(
            status="ambiguous",
            **common,
            error=error,
            reason=f"{outcome.error}: the vendor may have acted; check at the vendor "
            "before sending a new command",
        )
    what = "reading current values: " if reading else ""
    reason = (
        outcome.error
        if outcome.action is Action.FAIL or outcome.stopped
        else f"gave up: {outcome.error}"
    )
    return CommandResult(status="failed", **common, error=error, reason=what + (reason or ""))


def reconciled(
    fields: Mapping[str, Any], spec: CommandSpec, found: VendorResponse | Exception | None
) -> CommandResult | None:
    """After a crash mid-call: the result a look-up gives (`found`: what the vendor has,
    None for nothing, the failure of the look-up; ignored without a look-up), or None when
    calling the vendor again is safe."""
    if spec.lookup is not None:
        if isinstance(found, Exception):
            return CommandResult(
                status="ambiguous",
                **fields,
                reason=f"the vendor look-up failed ({found}): check at the vendor",
            )
        if found is not None:
            return CommandResult(
                status="succeeded",
                **fields,
                http_status=found.status,
                response=found.json_or_text(),
                reason="reconciled through a vendor look-up",
            )
        return None  # the vendor did not act: calling it is safe
    if spec.repeat_safe:
        return None
    return CommandResult(
        status="ambiguous",
        **fields,
        reason="the process stopped during the vendor call and the vendor offers no "
        "look-up: check at the vendor before sending a new command",
    )


def bounded(resp: VendorResponse) -> Any:
    """The vendor's answer as it goes into a result: whole, or a summary when too large."""
    if len(resp.body) > MAX_ANSWER_BYTES:
        return {
            "truncated": True,
            "bytes": len(resp.body),
            "start": resp.body[:2000].decode("utf-8", "replace"),
        }
    return resp.json_or_text()
