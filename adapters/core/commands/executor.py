"""Execution: one command's vendor call, with the reads it needs and the look-ups that
reconcile a call cut off by a crash."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec

from adapters.core.command_result import CommandResult
from adapters.core.commands.decision import base, judge, reconciled
from adapters.core.commands.model import Checked, Command
from adapters.core.commands.subject_line import current_ticket
from adapters.core.errors import Action
from adapters.core.instance import Instance
from adapters.core.metrics import Metrics
from adapters.core.vendor import CommandSpec, PrepareFailed
from adapters.core.vendor_call import CallOutcome, RetryPolicy, call_with_retry
from adapters.core.vendor_http import VendorResponse

log = logging.getLogger(__name__)


def retry_policy(inst: Instance) -> RetryPolicy:
    """The instance's retry policy for commands: its settings, else the vendor's advice."""
    cfg = inst.cfg.commands
    return RetryPolicy(
        deadline_s=cfg.deadline_s or inst.spec.retry_deadline_s or 300.0,
        max_attempts=cfg.max_attempts,
        base_s=cfg.backoff_base_s or inst.spec.retry_base_s or 1.0,
        cap_s=cfg.backoff_max_s or inst.spec.retry_cap_s or 60.0,
    )


class _Reader:
    """Vendor reads for `prepare` and `lookup`, with the command's retry policy."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    async def get(self, path: str, headers: Mapping[str, str]) -> VendorResponse:
        inst = self.executor.inst
        outcome = await call_with_retry(
            inst.client,
            "GET",
            path,
            errors=inst.spec.errors,
            policy=self.executor.policy,
            headers=headers,
        )
        if outcome.action is not Action.SUCCESS or outcome.response is None:
            raise PrepareFailed(outcome)
        return outcome.response


class Executor:
    """Calls the vendor for the commands of one instance."""

    def __init__(self, inst: Instance, metrics: Metrics) -> None:
        self.inst = inst
        self.metrics = metrics
        self.policy = retry_policy(inst)
        self.reader = _Reader(self)

    async def run(
        self,
        command: Command,
        checked: Checked,
        *,
        replay: bool,
        before_send: Callable[[], Awaitable[None]],
        after_attempt: Callable[[bool], None],
    ) -> CommandResult:
        """The command's result. `before_send` runs right before each request leaves (the
        in-flight mark); `after_attempt` hears whether the vendor may have acted on it."""
        spec, data, call = checked.spec, checked.data, checked.call
        fields = base(command)
        if spec.local:
            # Nothing to send: the command only tells Workbridge something (its tracking).
            shown = spec.answer(msgspec.to_builtins(data)) if spec.answer else None
            return CommandResult(status="succeeded", **fields, attempts=0, response=shown)
        if replay:
            result = await self.reconcile(spec, data, fields)
            if result is not None:
                return result
        try:
            if spec.prepare is not None:
                call = await spec.prepare(self.reader, data, call)
        except PrepareFailed as exc:
            return self.judge(exc.outcome, fields, spec, replay=False, reading=True)
        ticket = current_ticket()
        if ticket is not None:
            # The batcher keeps the subject's order and needs to know what will be repeated.
            ticket.repeat_safe = spec.repeat_safe
        outcome = await call_with_retry(
            self.inst.command_client,
            call.method,
            call.path,
            errors=self.inst.spec.errors,
            policy=self.policy,
            repeat_safe=spec.repeat_safe,
            json=call.json,
            headers=call.headers,
            before_send=before_send,
            after_attempt=after_attempt,
        )
        result = self.judge(outcome, fields, spec, replay=replay)
        if result.status == "ambiguous" and spec.lookup is not None:
            return await self.reconcile(spec, data, fields) or result
        return result

    async def reconcile(
        self, spec: CommandSpec, data: Any, fields: Mapping[str, Any]
    ) -> CommandResult | None:
        """After a crash mid-call: what the vendor did, if it can tell; None to call it."""
        found: VendorResponse | Exception | None = None
        if spec.lookup is not None:
            try:
                found = await spec.lookup(self.reader, data)
            except PrepareFailed as exc:
                found = exc
        return reconciled(fields, spec, found)

    def judge(
        self,
        outcome: CallOutcome,
        fields: Mapping[str, Any],
        spec: CommandSpec,
        *,
        replay: bool,
        reading: bool = False,
    ) -> CommandResult:
        """`decision.judge`, counted in the metrics, with the vendor's alerts logged."""
        resp = outcome.response
        status_code = resp.status if resp else None
        self.metrics.vendor_calls.labels(self.inst.name, str(status_code or "none")).inc()
        result = judge(outcome, fields, spec, replay=replay, reading=reading)
        if result.status != "succeeded" and outcome.rule is not None and outcome.rule.alert:
            log.error("%s: %s (HTTP %s)", self.inst.name, outcome.rule.reason, status_code)
        return result
