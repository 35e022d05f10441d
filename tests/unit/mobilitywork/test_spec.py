"""Mobility Work's VendorSpec: auth, User-Agent, instance checks, error table, configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.config import ConfigError, InstanceConfig, parse_config
from adapters.core.dlq import webhook_dlq_headers
from adapters.core.errors import Action
from adapters.core.instance import build_instance
from adapters.mobilitywork import (
    DEFAULT_BASE_URL,
    ERRORS,
    SPEC,
    auth_headers,
    check_instance,
    startup_warnings,
    user_agent,
    webhooks,
)
from adapters.mobilitywork.undocumented import DEFAULT_SIGNATURE_TOLERANCE_S, RETRY_BASE_S
from adapters.registry import VENDORS

API_KEY = "913a8f7cef6ff084f1635511b9c7d07c3bab2816"
SECRET = "mw-webhook-secret-0123456789abcdef"


def raw(**over: Any) -> dict[str, Any]:
    return {"vendor": "mobilitywork", "base_url": DEFAULT_BASE_URL, "api_key": API_KEY, **over}


def config(*instances: dict[str, Any]) -> Any:
    return parse_config(
        {"kafka": {"bootstrap_servers": "127.0.0.1:1"}, "instances": list(instances)},
        env={},
        vendors=VENDORS,
    )


def cfg(**over: Any) -> InstanceConfig:
    return config(raw(**over)).instances[0]


def unchecked(**over: Any) -> InstanceConfig:
    """An InstanceConfig that did not go through the vendor check (to call it directly)."""
    import msgspec

    from adapters.config import _decode_hook

    return msgspec.convert(raw(**over), InstanceConfig, dec_hook=_decode_hook)


# --- registry and wiring -------------------------------------------------------------------


def test_registered() -> None:
    assert VENDORS["mobilitywork"] is SPEC
    assert SPEC.id == "mobilitywork"
    assert DEFAULT_BASE_URL == "https://api.mobility-work.com"


def test_webhook_wiring() -> None:
    assert SPEC.webhook is not None
    assert SPEC.webhook.verify is webhooks.verify
    assert SPEC.webhook.to_events is webhooks.to_events
    assert SPEC.webhook.deadline_s == 10.0
    assert SPEC.webhook.replay_window_s(cfg()) == 2 * DEFAULT_SIGNATURE_TOLERANCE_S
    assert DEFAULT_SIGNATURE_TOLERANCE_S == 300.0
    assert SPEC.poll is None
    assert SPEC.rate_limit is None
    assert SPEC.retry_base_s == RETRY_BASE_S == 60.0
    assert set(SPEC.event_models) == set(webhooks.event_models())


# --- auth and User-Agent -------------------------------------------------------------------


def test_auth_header_is_api_key() -> None:
    assert auth_headers(cfg()) == {"Api-Key": API_KEY}
    assert SPEC.auth(cfg()).static_headers == {"Api-Key": API_KEY}


def test_user_agent_includes_the_network_name() -> None:
    ua = user_agent(cfg(options={"network_name": "Factory Inc."}))
    assert ua.startswith("workbridge/")
    assert ua.endswith(" Factory Inc.")
    assert SPEC.user_agent is user_agent


def test_user_agent_falls_back_to_the_instance_name() -> None:
    assert "plant-7" in user_agent(cfg(name="plant-7"))
    assert "mobilitywork" in user_agent(cfg())


def test_instance_client_sends_the_spec_headers() -> None:
    inst = build_instance(cfg(options={"network_name": "Factory Inc."}), SPEC, "workbridge")
    assert inst.client.auth.static_headers == {"Api-Key": API_KEY}
    assert "Factory Inc." in inst.client._user_agent
    assert inst.source == "/mobilitywork/mobilitywork"


def test_webhook_only_instance_without_api_key_can_be_built() -> None:
    inst_cfg = config(
        {"vendor": "mobilitywork", "base_url": DEFAULT_BASE_URL, "webhook_secret": SECRET}
    ).instances[0]
    assert inst_cfg.api_key is None  # accepted by parse_config
    inst = build_instance(inst_cfg, SPEC, "workbridge")
    assert "Api-Key" not in inst.client.auth.static_headers


# --- check_instance ------------------------------------------------------------------------


def test_a_full_instance_passes() -> None:
    assert (
        check_instance(
            cfg(
                webhook_secret=SECRET,
                commands={"enabled": True},
                options={"network_name": "Factory Inc."},
            )
        )
        is None
    )
    assert check_instance(unchecked(api_key=None)) is None  # webhooks only


@pytest.mark.parametrize("api_key", [None, ""])
def test_commands_need_an_api_key(api_key: str | None) -> None:
    problem = check_instance(unchecked(api_key=api_key, commands={"enabled": True}))
    assert problem is not None
    key, text = problem
    assert key == "api_key"
    assert "API key" in text


def test_commands_need_the_network_name_for_the_user_agent() -> None:
    problem = check_instance(unchecked(commands={"enabled": True}))
    assert problem is not None and problem[0] == "options.network_name"


def test_parse_config_names_the_api_key() -> None:
    with pytest.raises(ConfigError, match=r"^instances\[0\]\.api_key: "):
        config(
            {"vendor": "mobilitywork", "base_url": DEFAULT_BASE_URL, "commands": {"enabled": True}}
        )


def test_polling_is_refused() -> None:
    problem = check_instance(unchecked(polling={"enabled": True, "resources": ["tasks"]}))
    assert problem is not None
    assert problem[0] == "polling.enabled"
    assert "webhooks" in problem[1]
    with pytest.raises(ConfigError, match=r"instances\[0\]\.polling\.enabled"):
        cfg(polling={"enabled": True, "resources": ["tasks"]})


@pytest.mark.parametrize("tolerance", [0, -1, -0.5, "300", None, [300]])
def test_bad_tolerance_is_refused(tolerance: Any) -> None:
    problem = check_instance(unchecked(options={"signature_tolerance_s": tolerance}))
    assert problem is not None
    assert problem[0] == "options.signature_tolerance_s"
    with pytest.raises(ConfigError, match=r"options\.signature_tolerance_s"):
        cfg(options={"signature_tolerance_s": tolerance})


@pytest.mark.parametrize("tolerance", [1, 30, 300.5, 3600])
def test_good_tolerance_is_taken(tolerance: float) -> None:
    inst = cfg(webhook_secret=SECRET, options={"signature_tolerance_s": tolerance})
    assert webhooks.tolerance_s(inst) == float(tolerance)


# --- start-up warnings ---------------------------------------------------------------------


def test_startup_warnings() -> None:
    assert startup_warnings(cfg(webhook_secret=SECRET)) == []
    [warning] = startup_warnings(cfg(name="plant-7"))
    assert "/webhooks/plant-7" in warning
    assert "UNSIGNED" in warning
    assert len(startup_warnings(cfg(webhook_secret=""))) == 1
    assert startup_warnings(cfg(webhooks={"enabled": False})) == []
    assert SPEC.startup_warnings is startup_warnings


# --- errors --------------------------------------------------------------------------------


def test_401_fails_with_an_alert() -> None:
    rule = ERRORS.rule(401)
    assert rule.action is Action.FAIL
    assert rule.alert
    assert "API key" in rule.reason or "api_key" in rule.reason
    assert SPEC.errors is ERRORS


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_is_retried_as_not_acted(status: int) -> None:
    # The document: "re-try the exact same call a few minutes later".
    rule = ERRORS.rule(status)
    assert rule.action is Action.RETRY
    assert rule.may_have_acted is False


@pytest.mark.parametrize("status", [502, 504])
def test_gateway_errors_may_have_acted(status: int) -> None:
    # A gateway's 502/504 can come after the server created the task: not repeated for creates.
    rule = ERRORS.rule(status)
    assert rule.action is Action.RETRY
    assert rule.may_have_acted is True


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422])
def test_4xx_fails(status: int) -> None:
    assert ERRORS.rule(status).action is Action.FAIL


def test_success_and_rate_limit() -> None:
    for status in (200, 201, 202):
        assert ERRORS.rule(status).action is Action.SUCCESS
    assert ERRORS.rule(429).action is Action.RETRY


# --- configuration -------------------------------------------------------------------------


def test_full_instance_from_yaml(tmp_path: Path) -> None:
    (tmp_path / "mw-key").write_text(API_KEY + "\n")
    (tmp_path / "mw-hook").write_text(SECRET + "\n")
    text = """
kafka:
  bootstrap_servers: ${BOOTSTRAP}
instances:
  - vendor: mobilitywork
    name: factory
    base_url: https://api.mobility-work.com
    api_key_file: mw-key
    webhook_secret_file: mw-hook
    content_mode: structured
    webhooks: {enabled: true}
    commands:
      enabled: true
      deadline_s: 900
    options:
      network_name: Factory Inc.
      signature_tolerance_s: 120
      command_paths:
        workbridge.mobilitywork.task.complete: /partners/v1/tasks/{taskId}/complete
"""
    config_ = parse_config(yaml.safe_load(text), env={"BOOTSTRAP": "kafka:9092"}, base_dir=tmp_path)
    [inst] = config_.instances
    assert inst.instance_name == "factory"
    assert inst.api_key is not None and inst.api_key.reveal() == API_KEY
    assert inst.webhook_secret is not None and inst.webhook_secret.reveal() == SECRET
    assert inst.commands.enabled and inst.commands.deadline_s == 900
    assert webhooks.tolerance_s(inst) == 120
    assert webhooks.replay_window_s(inst) == 240
    assert user_agent(inst).endswith("Factory Inc.")
    assert startup_warnings(inst) == []
    assert API_KEY not in repr(inst) and SECRET not in repr(inst)
    built = build_instance(inst, SPEC, "workbridge")
    assert built.topics.events == "workbridge.factory.events"


def test_dlq_drops_the_api_key_header() -> None:
    assert "api-key" in SPEC.secret_headers
    assert {"authorization", "cookie", "proxy-authorization"} <= SPEC.secret_headers
    headers = webhook_dlq_headers(
        {"api-key": API_KEY, "x-mw-signature": "t=1,nonce=n,signature=s", "authorization": "x"},
        instance="mw",
        error="body has no `_event`",
        secret_headers=SPEC.secret_headers,
    )
    names = [name for name, _ in headers]
    assert "http_api-key" not in names
    assert "http_authorization" not in names
    assert "http_x-mw-signature" in names
    assert all(API_KEY.encode() not in value for _, value in headers)
