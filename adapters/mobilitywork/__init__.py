"""Mobility Work (CMMS): signed webhooks and task commands."""

from __future__ import annotations

from adapters.core.errors import Action, ErrorTable, Rule
from adapters.core.vendor import VendorSpec, WebhookSpec, static_auth
from adapters.mobilitywork import webhooks
from adapters.mobilitywork.commands import COMMANDS
from adapters.mobilitywork.dev import start_dev
from adapters.mobilitywork.undocumented import (
    RETRY_BASE_S,
    RETRY_CAP_S,
    RETRY_DEADLINE_S,
    MobilityWorkOptions,
)
from adapters.settings import InstanceConfig, OptionsError

DEFAULT_BASE_URL = "https://api.mobility-work.com"


def auth_headers(inst: InstanceConfig) -> dict[str, str]:
    """The network's API key in `Api-Key`."""
    # A webhooks-only instance needs no key; check_instance demands one for commands.
    if inst.api_key is None or not inst.api_key.reveal():
        return {}
    return {"Api-Key": inst.api_key.reveal()}


def user_agent(inst: InstanceConfig) -> str:
    """The document recommends a User-Agent that includes the network name."""
    network = MobilityWorkOptions.of(inst).network_name.strip() or inst.instance_name
    return f"workbridge/0.1 {network}"


def check_instance(inst: InstanceConfig) -> tuple[str, str] | None:
    """An API key is needed for commands, and so is a network name for the User-Agent."""
    if inst.commands.enabled and not (inst.api_key and inst.api_key.reveal()):
        return "api_key", "Mobility Work commands need the network's API key (api_key_file)"
    try:
        options = MobilityWorkOptions.of(inst)
    except OptionsError as exc:
        return exc.key, exc.problem
    if inst.commands.enabled and not options.network_name.strip():
        return (
            "options.network_name",
            "Mobility Work asks for a User-Agent with the network name: set it for commands",
        )
    if inst.polling.enabled:
        return "polling.enabled", "Mobility Work has no documented listing: use its webhooks"
    return None


def startup_warnings(inst: InstanceConfig) -> list[str]:
    """Unsigned webhooks are allowed by Mobility Work, but anyone could post events then."""
    if inst.webhooks.enabled and not (inst.webhook_secret and inst.webhook_secret.reveal()):
        return [
            f"NO webhook_secret: /webhooks/{inst.instance_name} accepts UNSIGNED calls from "
            "anyone. Set a secret key on the Mobility Work webhook and the same value as "
            "webhook_secret_file."
        ]
    return []


ERRORS = ErrorTable(
    overrides={
        401: Rule(Action.FAIL, "Mobility Work rejected the API key: check api_key", alert=True),
        # "the error is on the Mobility Server side ... re-try the exact same call a few
        # minutes later": the document says its own 5xx did not take effect. A gateway's
        # 502/504 may come after the server acted, so those stay "may have acted".
        500: Rule(Action.RETRY, "Mobility Work server error; retrying as it advises"),
        503: Rule(Action.RETRY, "Mobility Work unavailable; retrying as it advises"),
    }
)

SPEC = VendorSpec(
    id="mobilitywork",
    auth=static_auth(auth_headers),
    errors=ERRORS,
    webhook=WebhookSpec(
        verify=webhooks.verify,
        to_events=webhooks.to_events,
        # Not in the document: Mobility Work's answer deadline; kept like MOCO's 10 s.
        deadline_s=10.0,
        replay_window_s=webhooks.replay_window_s,
        signature_headers=frozenset({webhooks.HEADER}),
    ),
    commands=COMMANDS,
    check_instance=check_instance,
    options=MobilityWorkOptions,
    startup_warnings=startup_warnings,
    user_agent=user_agent,
    secret_headers=frozenset({"api-key", "authorization", "cookie", "proxy-authorization"}),
    retry_base_s=RETRY_BASE_S,
    retry_cap_s=RETRY_CAP_S,
    retry_deadline_s=RETRY_DEADLINE_S,
    event_models=webhooks.event_models(),
    dev=start_dev,
)
