"""Click Maint (CMMS): every resource polled per entity, and commands. No webhooks.

Auth is `Authorization: Bearer <api key>` on every call, and every call but `GET /entities`
carries the entity in `X-Entity-Id`. Errors come as `{"status": "error", "message": …}`
(the document's one example: `Invalid API key`), which the command result and the poll log
quote. Limits: the documented `X-RateLimit-Remaining`/`X-RateLimit-Reset` (a Unix timestamp)
pause every caller at 0 until the reset, a 429's `retry-after` likewise; the number, 300 per
5 minutes, is the vendor's public page's (not in the document).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from adapters.clickmaint.batch import batch_spec
from adapters.clickmaint.commands import COMMANDS, bind_commands
from adapters.clickmaint.dev import start_dev
from adapters.clickmaint.resources import POLL, event_models
from adapters.clickmaint.undocumented import (
    API_ROOT_PATH,
    ENTITIES_PATH,
    ERROR_ENVELOPE_IN_2XX_FAILS,
    RATE_LIMIT_PER_SECONDS,
    RATE_LIMIT_REQUESTS,
    REGION_BASE_URLS,
    ClickMaintOptions,
)
from adapters.core.errors import Action, Answer, ErrorTable, Matcher, Rule, json_body
from adapters.core.vendor import RateLimit, VendorSpec, static_auth
from adapters.core.vendor_http import RateLimitHeaders, VendorClient
from adapters.settings import InstanceConfig, OptionsError

# The hosts of the documented regions ("Replace the .com with .ca").
REGION_HOSTS = {urlsplit(url).hostname: region for region, url in REGION_BASE_URLS.items()}


def auth_headers(inst: InstanceConfig) -> dict[str, str]:
    """`Authorization: Bearer YOUR_API_KEY` (the document's only scheme)."""
    # check_instance demands the key wherever the API is called.
    if inst.api_key is None or not inst.api_key.reveal():
        return {}
    return {"Authorization": f"Bearer {inst.api_key.reveal()}"}


async def startup_check(client: VendorClient, inst: InstanceConfig) -> str | None:
    """`GET /entities` once: a refused API key stops the process with the vendor's words."""
    answer = await client.request("GET", ENTITIES_PATH)
    if answer.status in (401, 403):
        said = error_message(answer) or f"HTTP {answer.status}"
        return (
            f"Click Maint refused the API key ({said}): check api_key / api_key_file of this "
            "instance"
        )
    return None


def error_message(answer: Answer) -> str | None:
    """The `message` of Click Maint's error envelope `{"status": "error", "message": …}`."""
    body = json_body(answer)
    if not isinstance(body, dict) or body.get("status") != "error":
        return None
    message = body.get("message")
    return str(message) if message not in (None, "") else "error (no message given)"


def _error_in_success(answer: Answer) -> bool:
    return 200 <= answer.status < 300 and error_message(answer) is not None


ERRORS = ErrorTable(
    overrides={
        # The document's one error example: `{"status": "error", "message": "Invalid API
        # key"}`. Never retried; the result and the log quote the message.
        401: Rule(
            Action.FAIL, "Click Maint rejected the API key: check the instance's api_key", True
        ),
    },
    # Everything else is the default table: 422 and other 4xx fail at once, 429 and 5xx are
    # retried (a 5xx other than 503 may have acted: a create is then `ambiguous`).
    matchers=(
        (Matcher(_error_in_success, Rule(Action.FAIL, "Click Maint answered with an error")),)
        if ERROR_ENVELOPE_IN_2XX_FAILS
        else ()
    ),
    describe=error_message,
)

# Documented: "X-RateLimit-Limit", "X-RateLimit-Remaining: Requests remaining in current
# window", "X-RateLimit-Reset: Unix timestamp when the limit resets".
RATE_LIMIT_HEADERS = RateLimitHeaders(
    remaining="x-ratelimit-remaining",
    reset="x-ratelimit-reset",
    reset_is_epoch=True,
    limit="x-ratelimit-limit",
)


def check_instance(inst: InstanceConfig) -> tuple[str, str] | None:
    """The API key, the options, the resources, and the region against the base URL."""
    calls_api = inst.polling.enabled or inst.commands.enabled
    if calls_api and (inst.api_key is None or not inst.api_key.reveal()):
        return (
            "api_key",
            "Click Maint polling and commands need the API key (api_key_file); it is sent as "
            "Authorization: Bearer",
        )
    try:
        options = ClickMaintOptions.of(inst)
    except OptionsError as exc:
        return exc.key, exc.problem
    if isinstance(options.entities, list) and len(set(options.entities)) != len(options.entities):
        return "options.entities", f"an entity id is listed twice in {options.entities}"
    unknown = [r for r in inst.polling.resources if r not in POLL.resources]
    if unknown:
        return (
            "polling.resources",
            f"unknown Click Maint resources {unknown}; known: {sorted(POLL.resources)}",
        )
    transactions = options.resource_paths["part_transactions"]
    try:
        filled = transactions.format(part_id="1")
    except (KeyError, IndexError, ValueError):
        filled = transactions
    if filled == transactions:
        return (
            "options.resource_paths.part_transactions",
            f"{transactions!r} must hold {{part_id}} (and no other placeholder)",
        )
    return _check_base_url(inst, options)


def _check_base_url(inst: InstanceConfig, options: ClickMaintOptions) -> tuple[str, str] | None:
    url = urlsplit(inst.base_url)
    host_region = REGION_HOSTS.get((url.hostname or "").lower())
    if host_region is None:
        return None  # a proxy or a fake: base_url wins (startup_warnings says so)
    if options.region is not None and options.region != host_region:
        return (
            "options.region",
            f"{options.region!r}, but base_url {inst.base_url} is in the {host_region!r} "
            f"region: set base_url: {REGION_BASE_URLS[options.region]}",
        )
    if url.path.rstrip("/") != API_ROOT_PATH:
        return (
            "base_url",
            f"Click Maint's API is at {REGION_BASE_URLS[host_region]} (paths are relative to "
            f"{API_ROOT_PATH}), not {inst.base_url}",
        )
    return None


def startup_warnings(inst: InstanceConfig) -> list[str]:
    """A region that a non-Click Maint base URL (a proxy, a fake) overrides."""
    try:
        options = ClickMaintOptions.of(inst)
    except OptionsError:
        return []
    host = (urlsplit(inst.base_url).hostname or "").lower()
    if options.region is not None and host not in REGION_HOSTS:
        return [
            f"options.region {options.region!r} is not used: base_url {inst.base_url} is not "
            "a Click Maint region's URL, and base_url wins"
        ]
    return []


SPEC = VendorSpec(
    id="clickmaint",
    auth=static_auth(auth_headers),
    errors=ERRORS,
    rate_limit=RateLimit(requests=RATE_LIMIT_REQUESTS, per_seconds=RATE_LIMIT_PER_SECONDS),
    rate_limit_headers=RATE_LIMIT_HEADERS,
    poll=POLL,
    commands=COMMANDS,
    bind_commands=bind_commands,
    batch=batch_spec,
    startup_check=startup_check,
    check_instance=check_instance,
    options=ClickMaintOptions,
    startup_warnings=startup_warnings,
    event_models=event_models(),
    user_agent=lambda inst: f"workbridge/0.1 (clickmaint; {inst.instance_name})",
    dev=start_dev,
)
