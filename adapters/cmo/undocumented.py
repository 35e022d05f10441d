"""Everything about Mitratech CMO that its API document does not give: one place, configurable.

The document ("Creating Standalone Actions via REST API") gives: `POST/PUT/GET/DELETE
[cmo-base-url]/api/actions[/{action-id}]`, the request body with its `…Name`/`…Id`
alternatives, the answers (create: the new id as a JSON string; update and delete: an empty
200; 400 `{"message", "errors": [{"field", "messages"}]}`; 403 for a missing role permission),
the due-date rule, and three kinds of authorization: a JWT from `POST [cmo-base-url]/api/token`
(`{"login", "password"}`, answered with the token as a JSON string, 20 minutes by default),
mutual TLS, and a static user token (`Authorization: Bearer`, up to 200 characters). It gives
no rate limit, no list endpoint and no webhooks. Each guess below is marked
`# not in the vendor document`; an instance overrides it under `options` (`CmoOptions`).
"""

from __future__ import annotations

import zoneinfo
from typing import Annotated, Literal

import msgspec

from adapters.settings import PolledVendorOptions

# --- where the API is (documented, relative to the instance's base_url, the cmo-base-url) -----

ACTIONS_PATH = "/api/actions"
ACTION_PATH = "/api/actions/{id}"
TOKEN_PATH = "/api/token"

# --- authorization ------------------------------------------------------------------------------

# "set the token's expiration time (default 20mins)": used when a token carries no `exp`.
JWT_DEFAULT_TTL_S = 20 * 60.0
# How long before its expiry a token is renewed.
JWT_REFRESH_BEFORE_S = 60.0  # not in the vendor document (a choice)
# "Static API Token can be any string up to 200 characters long."
STATIC_TOKEN_MAX_CHARS = 200

# --- rate limit ---------------------------------------------------------------------------------

# The document gives no limit. The watch reads one action per request; this keeps a deployment
# from hammering a customer's (often self-hosted) CMO. Configurable with `rate_limit`.
RATE_LIMIT_REQUESTS = 10  # not in the vendor document (a choice)
RATE_LIMIT_PER_SECONDS = 1.0  # not in the vendor document (a choice)

# --- the watch ----------------------------------------------------------------------------------

# Actions read per poll cycle (the round over the tracked set goes on at the next cycle).
WATCH_PER_CYCLE = 50  # not in the vendor document (a choice)
# Fields of a read action that change without the action changing: none known.
WATCH_IGNORE_FIELDS: tuple[str, ...] = ()  # not in the vendor document

ActionId = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class CmoOptions(PolledVendorOptions, kw_only=True, forbid_unknown_fields=True):
    """CMO's `options`: how to authenticate, the company's time zone, the tracked actions."""

    auth: Annotated[
        Literal["auto", "jwt", "token", "mtls"],
        msgspec.Meta(
            description="jwt: credentials.login and credentials.password exchanged at "
            "/api/token; token: a static user token (credentials.token); mtls: the instance's "
            "tls client certificate is the credential; auto: whichever of these is configured "
            "(exactly one)"
        ),
    ] = "auto"
    company_time_zone: Annotated[
        str | None,
        msgspec.Meta(
            description="the IANA time zone CMO's company is configured with (Admin / Business "
            "Rules), e.g. Asia/Kolkata: a command's dueOn date becomes the last millisecond of "
            "that day there, in UTC. Without it, only dueDate timestamps are accepted"
        ),
    ] = None
    tracked_ids: Annotated[
        list[ActionId],
        msgspec.Meta(
            description="action ids to watch from the start, beside those created or tracked "
            "through commands"
        ),
    ] = msgspec.field(default_factory=list)
    watch_per_cycle: Annotated[
        int,
        msgspec.Meta(ge=1, le=10_000, description="tracked actions read per poll cycle"),
    ] = WATCH_PER_CYCLE
    jwt_default_ttl_s: Annotated[
        float,
        msgspec.Meta(
            gt=0,
            description="a JWT's lifetime when the token carries no exp (the document's "
            "default: 20 minutes; the customer may set another)",
        ),
    ] = JWT_DEFAULT_TTL_S
    token_path: Annotated[
        str, msgspec.Meta(description="the JWT endpoint, relative to base_url (documented)")
    ] = TOKEN_PATH

    def __post_init__(self) -> None:
        if self.company_time_zone is not None:
            try:
                zoneinfo.ZoneInfo(self.company_time_zone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
                raise ValueError(
                    f"company_time_zone {self.company_time_zone!r} is not an IANA time zone "
                    "(e.g. Asia/Kolkata, Europe/Berlin)"
                ) from None
