"""ErrorTable: which vendor answers succeed, are retried or fail."""

from __future__ import annotations

import pytest

from adapters.core.errors import Action, ErrorTable, Rule


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_succeeds(status: int) -> None:
    assert ErrorTable().rule(status).action is Action.SUCCESS


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(status: int) -> None:
    assert ErrorTable().rule(status).action is Action.RETRY


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 422])
def test_permanent_statuses_fail(status: int) -> None:
    assert ErrorTable().rule(status).action is Action.FAIL


def test_credential_problems_alert_the_operator() -> None:
    table = ErrorTable()
    assert table.rule(401).alert is True
    assert table.rule(403).alert is True
    assert table.rule(404).alert is False
    assert table.rule(422).reason == "validation failed at the vendor"


def test_unknown_class_fails_with_its_status_in_the_reason() -> None:
    rule = ErrorTable().rule(302)
    assert rule.action is Action.FAIL
    assert rule.reason == "unexpected HTTP status 302"


def test_override_of_one_status_leaves_the_others() -> None:
    table = ErrorTable(overrides={409: Rule(Action.RETRY, "busy")})
    assert table.rule(409) == Rule(Action.RETRY, "busy")
    assert table.rule(422).action is Action.FAIL
    assert table.rule(503).action is Action.RETRY
    assert ErrorTable().rule(409).action is Action.FAIL  # the default table is untouched


def test_override_of_a_class() -> None:
    table = ErrorTable(overrides={"2xx": Rule(Action.FAIL, "vendor says 200 but means error")})
    assert table.rule(200).action is Action.FAIL
    assert table.rule(200).reason == "vendor says 200 but means error"
    assert table.rule(500).action is Action.RETRY
