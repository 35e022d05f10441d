"""One logical vendor call: attempts, backoff with full jitter, Retry-After, a deadline."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import msgspec

from adapters.core.errors import Action, ErrorTable, Rule
from adapters.core.retry import next_delay
from adapters.core.vendor_http import TransportError, VendorClient, VendorResponse

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


async def call_with_retry(
    client: VendorClient,
    method: str,
    path: str,
    *,
    errors: ErrorTable,
    policy: RetryPolicy,
    params: Mapping[str, str] | None = None,
    json: Any = None,
    headers: Mapping[str, str] | None = None,
) -> CallOutcome:
    """Call until success, a permanent failure, the attempt limit or the deadline."""
    deadline = time.monotonic() + policy.deadline_s
    attempt = 0
    while True:
        attempt += 1
        response: VendorResponse | None = None
        try:
            response = await client.request(method, path, params=params, json=json, headers=headers)
        except TransportError as exc:
            outcome = CallOutcome(action=Action.RETRY, attempts=attempt, error=str(exc))
        else:
            rule = errors.rule(response.status)
            outcome = CallOutcome(
                action=rule.action,
                attempts=attempt,
                response=response,
                rule=rule,
                error=None if rule.action is Action.SUCCESS else rule.reason,
            )
        if outcome.action is not Action.RETRY:
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
