"""MOCO (projects and time tracking): webhooks, polling and commands."""

from __future__ import annotations

from adapters.core.errors import ErrorTable
from adapters.core.vendor import RateLimit, VendorSpec, WebhookSpec, static_auth
from adapters.moco import webhooks
from adapters.moco.commands import COMMANDS
from adapters.moco.dev import start_dev
from adapters.moco.resources import POLL, event_models
from adapters.moco.undocumented import MocoOptions
from adapters.settings import InstanceConfig


def auth_headers(inst: InstanceConfig) -> dict[str, str]:
    """`Authorization: Token token=KEY` (the document's only scheme)."""
    # A webhooks-only process needs no API key (least privilege); check_instance demands it
    # wherever the API is called.
    if inst.api_key is None or not inst.api_key.reveal():
        return {}
    return {"Authorization": f"Token token={inst.api_key.reveal()}"}


def check_instance(inst: InstanceConfig) -> tuple[str, str] | None:
    """MOCO needs an API key, and signs every webhook, so a secret is required for them."""
    calls_api = inst.polling.enabled or inst.commands.enabled
    if calls_api and (inst.api_key is None or not inst.api_key.reveal()):
        return "api_key", "MOCO polling and commands need the user's API key (api_key_file)"
    if inst.webhooks.enabled and not (inst.webhook_secret and inst.webhook_secret.reveal()):
        return (
            "webhook_secret",
            "MOCO signs webhooks: set webhook_secret (or webhook_secret_file) to the key shown "
            "in MOCO's web hook overview, or set webhooks.enabled: false",
        )
    unknown = [r for r in inst.polling.resources if r not in POLL.resources]
    if unknown:
        return (
            "polling.resources",
            f"unknown MOCO resources {unknown}; known: {sorted(POLL.resources)}",
        )
    return None


SPEC = VendorSpec(
    id="moco",
    auth=static_auth(auth_headers),
    errors=ErrorTable(),
    rate_limit=RateLimit(requests=15, per_seconds=15.0),
    webhook=WebhookSpec(
        verify=webhooks.verify,
        to_events=webhooks.to_events,
        deadline_s=10.0,
        signature_headers=frozenset({webhooks.SIGNATURE_HEADER}),
    ),
    poll=POLL,
    commands=COMMANDS,
    check_instance=check_instance,
    options=MocoOptions,
    event_models=event_models(),
    user_agent=lambda inst: f"workbridge/0.1 (moco; {inst.instance_name})",
    dev=start_dev,
)
