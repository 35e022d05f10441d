"""Click Maint's VendorSpec: auth, limits, options, the checks of an instance's settings."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest

from adapters.clickmaint import SPEC, auth_headers, check_instance, startup_warnings
from adapters.clickmaint.undocumented import (
    BATCH_MAX_OPS,
    BATCH_PATH,
    BATCH_SIZE_DEFAULT,
    RESOURCE_PATHS,
    ClickMaintOptions,
)
from adapters.config import parse_config
from adapters.core.ratelimit import SlidingWindowLimiter, Unlimited
from adapters.core.secret import Secret
from adapters.core.vendor_http import VendorClient, VendorResponse
from adapters.registry import VENDORS
from adapters.settings import ConfigError, InstanceConfig


def config(**instance: Any) -> Any:
    base: dict[str, Any] = {
        "vendor": "clickmaint",
        "name": "acme",
        "base_url": "https://app.clickmaint.com/api/v1",
        "api_key": "k",
        "polling": {"enabled": True, "resources": ["assets", "work_orders"]},
        "commands": {"enabled": True},
    }
    raw = {"kafka": {"bootstrap_servers": "127.0.0.1:1"}, "instances": [{**base, **instance}]}
    return parse_config(raw, env={}, vendors=VENDORS)


def error(**instance: Any) -> str:
    with pytest.raises(ConfigError) as exc:
        config(**instance)
    return str(exc.value)


def test_registered() -> None:
    assert VENDORS["clickmaint"] is SPEC
    assert SPEC.id == "clickmaint"
    assert SPEC.webhook is None  # no webhooks: changes are polled
    assert SPEC.poll is not None and SPEC.commands
    assert SPEC.options is ClickMaintOptions
    assert SPEC.bind_commands is not None
    assert "authorization" in SPEC.secret_headers
    assert SPEC.dev is not None


def test_the_rate_limit_and_its_headers() -> None:
    assert SPEC.rate_limit is not None
    assert (SPEC.rate_limit.requests, SPEC.rate_limit.per_seconds) == (300, 300.0)
    headers = SPEC.rate_limit_headers
    assert headers is not None
    assert (headers.remaining, headers.reset) == ("x-ratelimit-remaining", "x-ratelimit-reset")
    # "X-RateLimit-Reset: Unix timestamp when the limit resets"
    assert headers.reset_is_epoch
    assert headers.limit == "x-ratelimit-limit"  # "Maximum requests allowed"


def test_a_lower_limit_in_the_answers_lowers_the_budget() -> None:
    limiter = SlidingWindowLimiter(300, 300.0)
    client = VendorClient(
        base_url="https://app.clickmaint.com/api/v1",
        limiter=limiter,
        timeout_s=5,
        user_agent="t",
        rate_limit_headers=SPEC.rate_limit_headers,
    )
    headers = {"x-ratelimit-limit": "120", "x-ratelimit-remaining": "119"}
    client._adapt(VendorResponse(200, headers | {"x-ratelimit-reset": "1"}, b"{}"))
    assert limiter.capacity == 120
    client._adapt(VendorResponse(200, {"x-ratelimit-limit": "not a number"}, b"{}"))
    assert limiter.capacity == 120


class Recording(Unlimited):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, float]] = []

    def observe_remaining(self, remaining: int, reset_in_s: float) -> None:
        self.seen.append((remaining, reset_in_s))
        super().observe_remaining(remaining, reset_in_s)


def test_none_remaining_pauses_until_the_reset_by_the_vendors_clock() -> None:
    limiter = Recording()
    client = VendorClient(
        base_url="https://app.clickmaint.com/api/v1",
        limiter=limiter,
        timeout_s=5,
        user_agent="t",
        rate_limit_headers=SPEC.rate_limit_headers,
    )
    now = datetime(2025, 9, 24, 14, 20, 25, tzinfo=UTC)
    headers = {
        "date": format_datetime(now, usegmt=True),
        "x-ratelimit-limit": "300",
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": str(int(now.timestamp()) + 42),
    }
    client._adapt(VendorResponse(200, headers, b"{}"))
    assert limiter.seen == [(0, 42.0)]


def test_auth_is_the_bearer_key() -> None:
    inst = InstanceConfig(vendor="clickmaint", base_url="https://x", api_key=Secret("s3cret"))
    assert auth_headers(inst) == {"Authorization": "Bearer s3cret"}
    assert auth_headers(InstanceConfig(vendor="clickmaint", base_url="https://x")) == {}
    assert SPEC.user_agent(inst) == "workbridge/0.1 (clickmaint; clickmaint)"


def test_a_good_configuration_passes() -> None:
    cfg = config(options={"entities": [1, 2], "region": "com"})
    options = cfg.instances[0].options
    assert isinstance(options, ClickMaintOptions)
    assert options.entities == [1, 2]
    assert options.resource_paths == RESOURCE_PATHS
    ca = config(base_url="https://app.clickmaint.ca/api/v1/", options={"region": "ca"})
    assert ca.instances[0].options.region == "ca"


def test_the_defaults() -> None:
    options = ClickMaintOptions()
    assert options.entities == "all"
    assert options.region is None
    assert options.updated_since_matcher == "updated_at_gteq"
    assert options.work_order_details
    assert options.update_method == "PATCH"
    assert options.part_transactions_margin_s == 3600.0
    assert options.polls_entity("17")
    assert ClickMaintOptions(entities=[1, 2]).polls_entity("2")
    assert not ClickMaintOptions(entities=[1, 2]).polls_entity("3")


def test_batching_constants_for_the_core() -> None:
    assert BATCH_PATH == "/batch"
    assert BATCH_MAX_OPS == 100
    assert 1 <= BATCH_SIZE_DEFAULT <= BATCH_MAX_OPS


@pytest.mark.parametrize(
    ("instance", "message"),
    [
        ({"api_key": None}, "instances[0].api_key: Click Maint polling and commands need"),
        (
            {"polling": {"enabled": True, "resources": ["assets", "widgets"]}},
            "instances[0].polling.resources: unknown Click Maint resources ['widgets']",
        ),
        (
            {"options": {"region": "ca"}},
            "instances[0].options.region: 'ca', but base_url https://app.clickmaint.com/api/v1 "
            "is in the 'com' region: set base_url: https://app.clickmaint.ca/api/v1",
        ),
        (
            {"base_url": "https://app.clickmaint.com"},
            "instances[0].base_url: Click Maint's API is at https://app.clickmaint.com/api/v1",
        ),
        ({"options": {"region": "us"}}, "instances[0].options.region: Invalid enum value 'us'"),
        ({"options": {"entities": []}}, "instances[0].options.entities: Expected array of length"),
        ({"options": {"entities": "some"}}, "instances[0].options.entities: Invalid enum value"),
        (
            {"options": {"entities": [1, 1]}},
            "instances[0].options.entities: an entity id is listed twice in [1, 1]",
        ),
        (
            {"options": {"updated_since_matcher": "updated_at gteq"}},
            "instances[0].options.updated_since_matcher: Expected str matching regex",
        ),
        (
            {"options": {"resource_paths": {"part_transactions": "/transactions"}}},
            "instances[0].options.resource_paths.part_transactions: '/transactions' must hold "
            "{part_id}",
        ),
        (
            {"options": {"resource_paths": {"widgets": "/w"}}},
            "instances[0].options.resource_paths: unknown resource 'widgets'",
        ),
        (
            {"options": {"command_paths": {"workbridge.clickmaint.asset.delete": "/a"}}},
            "instances[0].options.command_paths: unknown command type",
        ),
        ({"options": {"colour": "red"}}, "instances[0].options.colour: unknown key"),
        (
            {"rate_limit": {"requests": 600, "per_seconds": 300}},
            "exceeds clickmaint's documented 300 per 300s",
        ),
    ],
)
def test_bad_settings_name_the_key(instance: dict[str, Any], message: str) -> None:
    assert message in error(**instance)


def test_a_key_is_not_needed_where_nothing_calls_the_api() -> None:
    cfg = config(api_key=None, polling={"enabled": False}, commands={"enabled": False})
    assert check_instance(cfg.instances[0]) is None


def test_another_base_url_wins_over_the_region_and_says_so() -> None:
    cfg = config(base_url="http://127.0.0.1:8000/api/v1", options={"region": "ca"})
    inst = cfg.instances[0]
    assert check_instance(inst) is None
    (warning,) = startup_warnings(inst)
    assert "options.region 'ca' is not used" in warning
    assert startup_warnings(config().instances[0]) == []
