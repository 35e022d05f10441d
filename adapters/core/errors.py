"""Classifying vendor answers: an error table, not if/else (retriable vs permanent)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

import msgspec


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


class Answer(Protocol):
    """What the table looks at: a vendor answer's status, lower-cased headers and body."""

    @property
    def status(self) -> int:
        """The HTTP status."""

    @property
    def headers(self) -> dict[str, str]:
        """Lower-cased response headers."""

    @property
    def body(self) -> bytes:
        """The raw body."""


@dataclass(frozen=True)
class Matcher:
    """A rule for answers that `when` recognises, whatever their status."""

    when: Callable[[Answer], bool]
    rule: Rule


def json_body(answer: Answer) -> Any:
    """The answer's body as JSON, or None when it is empty or not JSON."""
    if not answer.body:
        return None
    try:
        return msgspec.json.decode(answer.body)
    except msgspec.DecodeError:
        return None


@dataclass(frozen=True)
class ErrorTable:
    """Maps vendor answers to rules: predicates over the whole answer first, then statuses.

    A vendor overrides single statuses or classes, adds `matchers` for answers whose body
    decides (CLOUDWORK|PRO answers most bad requests with HTTP 200 and `"code": 400`), and
    `describe` reads its error envelope into words for results and logs.
    """

    overrides: Mapping[int | str, Rule] = field(default_factory=dict)
    matchers: tuple[Matcher, ...] = ()
    describe: Callable[[Answer], str | None] | None = None

    def classify(self, answer: Answer) -> Rule:
        """The rule for a whole answer: the first matcher that matches, else its status."""
        for matcher in self.matchers:
            try:
                matched = matcher.when(answer)
            except Exception:  # a body that is not what the predicate expects: no match
                matched = False
            if matched:
                return matcher.rule
        return self.rule(answer.status)

    def message(self, answer: Answer) -> str | None:
        """The vendor's own error text for an answer, where its envelope carries one."""
        if self.describe is None:
            return None
        try:
            text = self.describe(answer)
        except Exception:
            return None
        return text[:500] if text else None

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
