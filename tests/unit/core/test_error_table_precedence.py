"""ErrorTable precedence: a status's own rule is more specific than any class rule."""

from __future__ import annotations

import pytest

from adapters.core.errors import Action, ErrorTable, Rule

REFUSED = Rule(Action.FAIL, "refused by this vendor")


@pytest.mark.parametrize("status", [408, 425, 429])
def test_a_4xx_override_does_not_shadow_the_default_retry_rules(status: int) -> None:
    table = ErrorTable(overrides={"4xx": REFUSED})
    assert table.rule(status).action is Action.RETRY


def test_a_4xx_override_applies_where_no_status_rule_exists() -> None:
    table = ErrorTable(overrides={"4xx": REFUSED})
    assert table.rule(400) is REFUSED
    assert table.rule(418) is REFUSED


def test_a_5xx_override_does_not_shadow_503() -> None:
    # 503 is the one 5xx that says the server did not act: a create may be repeated.
    acted = Rule(Action.RETRY, "vendor error", may_have_acted=True)
    table = ErrorTable(overrides={"5xx": acted})
    assert table.rule(503).may_have_acted is False
    assert table.rule(500) is acted


def test_an_exact_override_still_beats_the_default_exact_rule() -> None:
    busy = Rule(Action.FAIL, "429 means quota exhausted for the day here")
    table = ErrorTable(overrides={429: busy, "4xx": REFUSED})
    assert table.rule(429) is busy
