"""One logical vendor call: attempts, backoff with full jitter, Retry-After, a deadline."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from adapters.core.errors import Action, ErrorTable, Rule
from adapters.core.retry import next_delay
from adapters.core.vendor_http import (
    BeforeSend,
    CredentialsUnavailable,
    TransportError,
    Unrepeatable,
    VendorClient,
    VendorResponse,
)

if TYPE_CHECKING:
    from adapters.core.batching import Batcher

log = logging.getLogger(__name__)


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How long and how often to retry transient failures."""

    deadline_s: float = 300.0
    max_attempts: int = 10
    base_s: float = 1.0
    cap_s: float = 60.0


class CallOutcome(msgspec.Struct, kw_only=True):
    """The last answer (if any), how many attempts it took and how it was judged."""

    action: Action
    attempts: int
    response: VendorResponse | None = None
    error: str | None = None
    rule: Rule | None = None
    # True when a failed attempt may still have been carried out by the vendor.
    may_have_acted: bool = False
    # Why a failure that is retried was not (a batch's subject order, see batching.py).
    stopped: str | None = None


async def call_with_retry(
    client: VendorClient | Batcher,
    method: str,
    path: str,
    *,
    errors: ErrorTable,
    policy: RetryPolicy,
    repeat_safe: bool = True,
    params: Mapping[str, str] | None = None,
    json: Any = None,
    headers: Mapping[str, str] | None = None,
    before_send: BeforeSend | None = None,
    after_attempt: Callable[[bool], None] | None = None,
) -> CallOutcome:
    """Call until success, a permanent failure, the attempt limit or the deadline.

    A request that is not `repeat_safe` (a create without a vendor idempotency key) is
    retried only after failures that prove the vendor did not act (429, 503, no connection);
    after any other failure it stops, with `may_have_acted` set. `after_attempt` hears,
    after each attempt, whether any attempt so far may have reached the vendor.
    """
    deadline = time.monotonic() + policy.deadline_s
    attempt = 0
    acted = False
    while True:
        attempt += 1
        response: VendorResponse | None = None
        try:
            response = await client.request(
                method, path, params=params, json=json, headers=headers, before_send=before_send
            )
        except CredentialsUnavailable as exc:
            # The call never left; refused credentials will not get better by waiting.
            outcome = CallOutcome(
                action=Action.FAIL if exc.permanent else Action.RETRY,
                attempts=attempt,
                error=str(exc),
                may_have_acted=acted,
            )
        except Unrepeatable as exc:
            # Final whatever the answer: retrying would reorder the subject's commands.
            acted = acted or exc.may_have_acted
            outcome = _unrepeated(exc, errors, attempt, acted)
            if after_attempt is not None:
                after_attempt(True)
            return outcome
        except TransportError as exc:
            acted = acted or exc.may_have_acted
            outcome = CallOutcome(
                action=Action.RETRY, attempts=attempt, error=str(exc), may_have_acted=acted
            )
        else:
            rule = errors.classify(response)
            acted = acted or (rule.action is Action.RETRY and rule.may_have_acted)
            error = None
            if rule.action is not Action.SUCCESS:
                said = errors.message(response)
                error = f"{rule.reason}: {said}" if said else rule.reason
            outcome = CallOutcome(
                action=rule.action,
                attempts=attempt,
                response=response,
                rule=rule,
                error=error,
                may_have_acted=acted,
            )
        if after_attempt is not None:
            after_attempt(acted or outcome.action is not Action.RETRY)
        if outcome.action is not Action.RETRY:
            return outcome
        if acted and not repeat_safe:
            return outcome
        delay = next_delay(
            attempt - 1,
            response.headers if response else {},
            base_s=policy.base_s,
            cap_s=policy.cap_s,
        )
        if attempt >= policy.max_attempts or time.monotonic() + delay > deadline:
            return outcome
        log.info("%s %s: %s; retry %d in %.1fs", method, path, outcome.error, attempt, delay)
        await asyncio.sleep(delay)


def _unrepeated(exc: Unrepeatable, errors: ErrorTable, attempt: int, acted: bool) -> CallOutcome:
    if exc.response is None:
        return CallOutcome(
            action=Action.RETRY,
            attempts=attempt,
            error=str(exc),
            may_have_acted=acted,
            stopped=str(exc),
        )
    rule = errors.classify(exc.response)
    said = errors.message(exc.response)
    error = f"{rule.reason}: {said}" if said else rule.reason
    return CallOutcome(
        action=rule.action,
        attempts=attempt,
        response=exc.response,
        rule=rule,
        error=f"{error}; {exc}",
        may_have_acted=acted,
        stopped=str(exc),
    )
