"""Classifying vendor answers: an error table, not if/else (retriable vs permanent)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum


class Action(Enum):
    """What to do with a vendor answer."""

    SUCCESS = "success"
    RETRY = "retry"
    FAIL = "fail"


@dataclass(frozen=True)
class Rule:
    """How one status (or class of statuses) is handled, and what to tell the operator."""

    action: Action
    reason: str = ""
    # Logged at error level once, e.g. invalid credentials: nobody should wait for retries.
    alert: bool = False
    # Whether the vendor may have carried the request out although it failed. A request
    # that is not safe to repeat (a create) is only retried when this is False.
    may_have_acted: bool = False


DEFAULT_RULES: Mapping[int | str, Rule] = {
    "2xx": Rule(Action.SUCCESS),
    401: Rule(
        Action.FAIL, "credentials rejected by the vendor: check the instance's API key", True
    ),
    403: Rule(Action.FAIL, "forbidden: the vendor user lacks permission for this call", True),
    404: Rule(Action.FAIL, "not found at the vendor"),
    408: Rule(Action.RETRY, "vendor timed out waiting for the request"),
    409: Rule(Action.FAIL, "conflict at the vendor"),
    422: Rule(Action.FAIL, "validation failed at the vendor"),
    425: Rule(Action.RETRY, "too early"),
    429: Rule(Action.RETRY, "rate limited by the vendor"),
    "4xx": Rule(Action.FAIL, "request refused by the vendor"),
    # 503 says the server did not handle the request; other 5xx may come after it acted.
    503: Rule(Action.RETRY, "vendor unavailable"),
    "5xx": Rule(Action.RETRY, "vendor server error", may_have_acted=True),
}


@dataclass(frozen=True)
class ErrorTable:
    """Maps HTTP statuses to rules; a vendor overrides single entries."""

    overrides: Mapping[int | str, Rule] = field(default_factory=dict)

    def rule(self, status: int) -> Rule:
        """The rule for a status: its own rule first, then its class's, then fail.

        The vendor's override wins at each level, but a status's own rule (even a default
        one) beats any class rule: overriding "4xx" must not make a 429 permanent.
        """
        klass = f"{status // 100}xx"
        for name in (status, klass):
            for table in (self.overrides, DEFAULT_RULES):
                if name in table:
                    return table[name]
        return Rule(Action.FAIL, f"unexpected HTTP status {status}")
