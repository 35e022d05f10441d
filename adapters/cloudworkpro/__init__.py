"""CLOUDWORK|PRO (work orders and sites): token auth, 200-with-code-400 errors, cursor polling,
allow-listed webhooks with optional Basic auth, and missed-webhook recovery.

The document gives the rules but few paths; every guess is in undocumented.py.
"""

from __future__ import annotations

from adapters.cloudworkpro import webhooks
from adapters.cloudworkpro.auth import auth, missing_credentials
from adapters.cloudworkpro.commands import COMMANDS
from adapters.cloudworkpro.dev import start_dev
from adapters.cloudworkpro.errors import ERRORS
from adapters.cloudworkpro.resources import event_models, poll_spec
from adapters.cloudworkpro.undocumented import (
    RATE_LIMIT_PER_SECONDS,
    RATE_LIMIT_REQUESTS,
    CloudworkProOptions,
)
from adapters.core.peer import parse_networks
from adapters.core.vendor import RateLimit, VendorSpec, WebhookSpec
from adapters.settings import InstanceConfig, OptionsError

POLL = poll_spec(webhooks.to_events)


def allowed_sources(inst: InstanceConfig) -> list[str]:
    """The addresses webhooks are accepted from (the document's two, unless configured)."""
    return list(CloudworkProOptions.of(inst).webhook_sources)


def check_instance(inst: InstanceConfig) -> tuple[str, str] | None:
    """The token request's credentials, the webhook sources and Basic pair, the resources."""
    try:
        options = CloudworkProOptions.of(inst)
    except OptionsError as exc:
        return exc.key, exc.problem
    try:
        parse_networks(options.webhook_sources)
    except ValueError as exc:
        return "options.webhook_sources", str(exc)
    if inst.polling.enabled or inst.commands.enabled:
        missing = missing_credentials(inst)
        if missing:
            files = ", ".join(f"credentials.{name}_file" for name in missing)
            return (
                f"credentials.{missing[0]}",
                f"CLOUDWORK|PRO's /auth/token needs the Public API credentials: set {files} "
                "(options.token_request_fields says which body field each one fills)",
            )
    unknown = [r for r in inst.polling.resources if r not in POLL.resources]
    if unknown:
        return (
            "polling.resources",
            f"unknown CLOUDWORK|PRO resources {unknown}; known: {sorted(POLL.resources)}",
        )
    return webhooks.check_instance(inst)


def startup_warnings(inst: InstanceConfig) -> list[str]:
    """Webhooks taken without Basic authentication."""
    return webhooks.startup_warnings(inst) if inst.webhooks.enabled else []


SPEC = VendorSpec(
    id="cloudworkpro",
    auth=auth,
    errors=ERRORS,
    # A default, not the vendor's number (it gives none): an instance may set a higher one.
    rate_limit=RateLimit(
        requests=RATE_LIMIT_REQUESTS, per_seconds=RATE_LIMIT_PER_SECONDS, documented=False
    ),
    webhook=WebhookSpec(
        verify=webhooks.verify,
        to_events=webhooks.to_events,
        signature_headers=frozenset({webhooks.AUTHORIZATION}),
        allowed_sources=allowed_sources,
    ),
    poll=POLL,
    commands=COMMANDS,
    check_instance=check_instance,
    options=CloudworkProOptions,
    startup_warnings=startup_warnings,
    event_models=event_models(),
    user_agent=lambda inst: f"workbridge/0.1 (cloudworkpro; {inst.instance_name})",
    # "We recommend to use an exponential backoff": the core's retries are exponential with
    # full jitter; these are its first step and cap for this vendor.
    retry_base_s=1.0,
    retry_cap_s=60.0,
    dev=start_dev,
)
