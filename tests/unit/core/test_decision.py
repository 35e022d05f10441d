"""The decision rules as pure functions: no Kafka, no event loop, no vendor."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from adapters.core.command_result import CommandResult
from adapters.core.commands.decision import (
    MAX_ANSWER_BYTES,
    Answer,
    Execute,
    Facts,
    Skip,
    answer_only,
    crashed,
    decide,
    finished,
    judge,
    reconciled,
)
from adapters.core.commands.model import Checked, Command, Rejected
from adapters.core.errors import Action, Rule
from adapters.core.ledger import LedgerEntry
from adapters.core.rest_command import rest_command
from adapters.core.vendor import CommandSpec, PrepareFailed
from adapters.core.vendor_call import CallOutcome
from adapters.core.vendor_http import VendorResponse

AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
TYPE = "workbridge.moco.thing.create"


class Thing(msgspec.Struct, kw_only=True):
    id: str = "1"


def spec(kind: str = "create", **extra: Any) -> CommandSpec:
    method = {"create": "POST", "update": "PUT", "delete": "DELETE"}[kind]
    return rest_command(TYPE, Thing, method, "/things", kind=kind, **extra)  # type: ignore[arg-type]


def command(command_id: str = "c2", key: str = "k1") -> Command:
    return Command(
        record=None,  # type: ignore[arg-type]
        event=None,
        command_id=command_id,
        command_type=TYPE,
        subject="thing/1",
        idem_key=key,
    )


def checked(digest: str = "h1", kind: str = "create") -> Checked:
    the_spec = spec(kind)
    return Checked(spec=the_spec, data=Thing(), call=the_spec.build(Thing()), digest=digest)


def entry(
    state: str = "done", command_id: str = "c1", digest: str = "h1", **result: Any
) -> LedgerEntry:
    return LedgerEntry(
        state=state,  # type: ignore[arg-type]
        command_id=command_id,
        command_type=TYPE,
        payload_hash=digest,
        at=AT,
        result=result or None,
    )


def outcome(status: int | None, action: Action, **kw: Any) -> CallOutcome:
    resp = VendorResponse(status, {"x-request-id": "r-1"}, b'{"id": 7}') if status else None
    return CallOutcome(action=action, attempts=kw.pop("attempts", 1), response=resp, **kw)


FIELDS = {"command_type": TYPE, "idempotency_key": "k1"}

# -- decide: the ledger's facts and the validation --------------------------------------------


def test_a_new_key_is_executed() -> None:
    assert decide(command(), Facts(), checked()) == Execute(replay=False)


def test_a_command_id_with_its_answer_gets_nothing_more_even_if_now_invalid() -> None:
    assert decide(command(), Facts(answered=True), Rejected("bad")) == Skip()
    assert decide(command(), Facts(answered=True, entry=None), checked()) == Skip()


def test_an_invalid_command_is_rejected_whatever_its_key_holds() -> None:
    verdict = decide(command(), Facts(entry=entry()), Rejected("data does not match"))
    assert isinstance(verdict, Answer)
    assert verdict.result.status == "rejected"
    assert verdict.result.error == "data does not match"
    assert verdict.dlq_error == "data does not match"


def test_the_same_command_done_is_a_redelivery_and_gets_no_second_result() -> None:
    assert decide(command("c1"), Facts(entry=entry(command_id="c1")), checked()) == Skip()


def test_the_same_key_with_other_data_is_a_conflict_naming_the_first_command() -> None:
    for state in ("done", "inflight"):
        verdict = decide(command(), Facts(entry=entry(state, digest="h1")), checked("h2"))
        assert isinstance(verdict, Answer)
        assert verdict.result.status == "conflict"
        assert verdict.result.duplicate_of == "c1"
        assert verdict.dlq_error is not None


def test_a_repeat_of_a_done_key_gets_the_earlier_result_without_a_call() -> None:
    earlier = entry(status="succeeded", command_type=TYPE, idempotency_key="k1", attempts=3)
    verdict = decide(command("c2"), Facts(entry=earlier), checked("h1"))
    assert isinstance(verdict, Answer)
    assert verdict.result.status == "succeeded"
    assert verdict.result.duplicate_of == "c1"
    assert verdict.result.attempts == 0  # this command made none
    assert verdict.dlq_error is None


def test_a_failed_earlier_result_is_repeated_as_it_was() -> None:
    earlier = entry(status="failed", command_type=TYPE, idempotency_key="k1", reason="422")
    verdict = decide(command("c2"), Facts(entry=earlier), checked("h1"))
    assert isinstance(verdict, Answer)
    assert (verdict.result.status, verdict.result.reason) == ("failed", "422")


def test_a_key_left_in_flight_is_executed_as_a_replay() -> None:
    # Also for the command that left the mark itself (redelivered after its owner died).
    for command_id in ("c1", "c2"):
        verdict = decide(command(command_id), Facts(entry=entry("inflight")), checked("h1"))
        assert verdict == Execute(replay=True)


# -- judge: the vendor's answer -----------------------------------------------------------------


def test_success_carries_the_answer_and_202_is_asynchronous() -> None:
    result = judge(outcome(201, Action.SUCCESS), FIELDS, spec(), replay=False)
    assert (result.status, result.http_status, result.request_id) == ("succeeded", 201, "r-1")
    assert result.response == {"id": 7} and result.accepted_async is None
    result = judge(outcome(202, Action.SUCCESS), FIELDS, spec(), replay=False)
    assert result.accepted_async is True


def test_a_create_that_may_have_reached_the_vendor_is_ambiguous_an_update_failed() -> None:
    cut = outcome(504, Action.RETRY, may_have_acted=True, error="HTTP 504", attempts=2)
    assert judge(cut, FIELDS, spec("create"), replay=False).status == "ambiguous"
    result = judge(cut, FIELDS, spec("update"), replay=False)
    assert result.status == "failed" and result.reason == "gave up: HTTP 504"


def test_a_permanent_failure_keeps_the_vendors_words() -> None:
    result = judge(outcome(422, Action.FAIL, error="invalid"), FIELDS, spec(), replay=False)
    assert (result.status, result.reason, result.error) == ("failed", "invalid", {"id": 7})


def test_a_failed_read_before_the_call_is_never_ambiguous() -> None:
    cut = outcome(None, Action.RETRY, may_have_acted=True, error="timeout")
    result = judge(cut, FIELDS, spec("create"), replay=False, reading=True)
    assert result.status == "failed" and result.reason.startswith("reading current values")


def test_a_replayed_delete_that_finds_nothing_succeeded() -> None:
    gone = outcome(404, Action.FAIL, error="not found", rule=Rule(Action.FAIL))
    assert judge(gone, FIELDS, spec("delete"), replay=True).status == "succeeded"
    assert judge(gone, FIELDS, spec("delete"), replay=False).status == "failed"


def test_a_huge_answer_is_cut_to_a_summary() -> None:
    body = b'"' + b"x" * (MAX_ANSWER_BYTES + 10) + b'"'
    huge = CallOutcome(action=Action.SUCCESS, attempts=1, response=VendorResponse(200, {}, body))
    response = judge(huge, FIELDS, spec(), replay=False).response
    assert response["truncated"] is True and response["bytes"] == len(body)


# -- after a crash: reconcile, or report -------------------------------------------------------


def lookup_spec() -> CommandSpec:
    async def lookup(_reader: Any, _data: Any) -> VendorResponse | None:
        return None

    return spec("create", lookup=lookup)


def test_a_lookup_that_finds_the_record_reconciles_to_succeeded() -> None:
    found = VendorResponse(200, {}, b'{"id": 9}')
    result = reconciled(FIELDS, lookup_spec(), found)
    assert result is not None and result.status == "succeeded" and result.response == {"id": 9}


def test_a_lookup_that_finds_nothing_allows_the_call_and_a_failed_one_is_ambiguous() -> None:
    assert reconciled(FIELDS, lookup_spec(), None) is None
    failed = PrepareFailed(CallOutcome(action=Action.RETRY, attempts=1, error="503"))
    result = reconciled(FIELDS, lookup_spec(), failed)
    assert result is not None and result.status == "ambiguous"


def test_without_a_lookup_a_create_is_ambiguous_and_an_update_repeated() -> None:
    result = reconciled(FIELDS, spec("create"), None)
    assert result is not None and result.status == "ambiguous"
    assert reconciled(FIELDS, spec("update"), None) is None


@pytest.mark.parametrize(("acted", "status"), [(False, "failed"), (True, "ambiguous")])
def test_a_crash_is_ambiguous_only_once_the_request_may_have_left(acted: bool, status: str) -> None:
    assert crashed(command(), RuntimeError("boom"), acted=acted).status == status


# -- what is written -----------------------------------------------------------------------------


def test_an_answer_is_kept_under_the_command_id_and_a_result_under_the_key() -> None:
    result = CommandResult(status="conflict", **FIELDS)
    only = answer_only(command(), result, dlq_error="x", at=AT)
    assert only.key_entry is None and only.answer_entry is not None
    assert only.answer_entry.payload_hash == ""  # what old ledgers used to tell them apart
    done = finished(command(), "h1", CommandResult(status="succeeded", **FIELDS), dlq_error=None)
    assert done.answer_entry is None and done.key_entry is not None
    assert done.key_entry.state == "done" and done.key_entry.payload_hash == "h1"
    assert msgspec.convert(done.key_entry.result, CommandResult).status == "succeeded"


def test_an_update_stopped_for_its_subjects_order_after_a_lost_answer_is_ambiguous() -> None:
    why = "not retried: a later command of subject thing/1 ran after it in the same batch"
    lost = outcome(None, Action.RETRY, may_have_acted=True, error=why, stopped=why)
    result = judge(lost, FIELDS, spec("update"), replay=False)
    assert result.status == "ambiguous"
    assert result.reason is not None and "thing/1" in result.reason
    # Stopped where nothing ran: failed, with the reason as it is (not "gave up").
    unsent = outcome(None, Action.RETRY, error=why, stopped=why)
    failed = judge(unsent, FIELDS, spec("update"), replay=False)
    assert failed.status == "failed" and failed.reason == why
