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
from adapters.core.auth import AuthFailed
from adapters.core.vendor import RateLimit, VendorSpec
from adapters.core.vendor_http import VendorClient
from adapters.settings import InstanceConfig, OptionsError


def check_instance(inst: InstanceConfig) -> tuple[str, str] | None:
    """Credentials for the chosen authorization, the one resource. (CMO sends no webhooks:
    `webhooks.enabled` is left as it is, and the receiver answers 404 for the instance, as
    for Click Maint.)"""
    try:
        CmoOptions.of(inst)
    except OptionsError as exc:
        return exc.key, exc.problem
    unknown = [r for r in inst.polling.resources if r != RESOURCE]
    if unknown:
        return "polling.resources", f"unknown CMO resources {unknown}; known: [{RESOURCE!r}]"
    if inst.polling.enabled or inst.commands.enabled:
        return check_credentials(inst)
    return None


async def startup_check(client: VendorClient, inst: InstanceConfig) -> str | None:
    """A client certificate or key that cannot be loaded (a wrong key password) stops the
    process at start, naming the files, rather than failing every call."""
    tls = client.auth.tls
    if tls is None:
        return None
    try:
        tls.context()
    except AuthFailed as exc:
        return f"{exc} (tls.cert_file, tls.key_file, tls.key_password_file of this instance)"
    return None


SPEC = VendorSpec(
    id="cmo",
    auth=auth,
    errors=ERRORS,
    # A default, not the vendor's number (it gives none): an instance may set a higher one.
    rate_limit=RateLimit(
        requests=RATE_LIMIT_REQUESTS, per_seconds=RATE_LIMIT_PER_SECONDS, documented=False
    ),
    poll=POLL,
    commands=with_tracking(COMMANDS),
    bind_commands=bind_commands,
    check_instance=check_instance,
    options=CmoOptions,
    event_models=event_models(),
    user_agent=lambda inst: f"workbridge/0.1 (cmo; {inst.instance_name})",
    tracking=True,
    dev=start_dev,
    startup_check=startup_check,
)
