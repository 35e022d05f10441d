"""Mitratech CMO (compliance actions): commands, and a watch over the actions Workbridge knows.

CMO's API creates, updates, reads and deletes one action at a time; it has no list endpoint
and sends no webhooks. Commands become those calls; the watch (resources.py) reads the actions
that commands created or tracked and publishes their changes.
"""

from __future__ import annotations

from adapters.cmo.auth import auth, check_credentials
from adapters.cmo.commands import COMMANDS, bind_commands
from adapters.cmo.dev import start_dev
from adapters.cmo.errors import ERRORS
from adapters.cmo.resources import POLL, RESOURCE, event_models
from adapters.cmo.tracking_commands import with_tracking
from adapters.cmo.undocumented import RATE_LIMIT_PER_SECONDS, RATE_LIMIT_REQUESTS, CmoOptions
from adapters.core.vendor import RateLimit, VendorSpec
from adapters.settings import InstanceConfig, OptionsError


def check_instance(inst: InstanceConfig) -> tuple[str, str] | None:
    """Credentials for the chosen authorization, no webhooks, the one resource."""
    try:
        CmoOptions.of(inst)
    except OptionsError as exc:
        return exc.key, exc.problem
    if inst.webhooks.enabled:
        return (
            "webhooks.enabled",
            "CMO sends no webhooks: set webhooks.enabled: false (changes come from the watch "
            "over tracked actions, polling.enabled: true)",
        )
    unknown = [r for r in inst.polling.resources if r != RESOURCE]
    if unknown:
        return "polling.resources", f"unknown CMO resources {unknown}; known: [{RESOURCE!r}]"
    if inst.polling.enabled or inst.commands.enabled:
        return check_credentials(inst)
    return None


SPEC = VendorSpec(
    id="cmo",
    auth=auth,
    errors=ERRORS,
    rate_limit=RateLimit(requests=RATE_LIMIT_REQUESTS, per_seconds=RATE_LIMIT_PER_SECONDS),
    poll=POLL,
    commands=with_tracking(COMMANDS),
    bind_commands=bind_commands,
    check_instance=check_instance,
    options=CmoOptions,
    event_models=event_models(),
    user_agent=lambda inst: f"workbridge/0.1 (cmo; {inst.instance_name})",
    tracking=True,
    dev=start_dev,
)
