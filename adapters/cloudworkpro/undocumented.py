"""Everything about CLOUDWORK|PRO that its document does not give: one place, each configurable.

The document (a Postman collection's description) gives the rules: `POST /auth/token` for a
bearer token with the Public API credentials; errors as HTTP statuses (401 no or expired
token, 403, 404, 422 wrong Content-Type, 429 "use an exponential backoff", 500/502/503/504)
except most bad requests, which are HTTP 200 with `"code": 400` and an `error` object
(`code`, `message`, `detail`, e.g. `WO_0005`); `{"code": 200, "reason", "data", "success"}`
for success; cursor pagination for every list endpoint (`cursor`, `limit` (default 100),
`sortBy` (`field:asc|desc`), `filterBy`, `filterOperator`, `in`, `between`; answers
`pagination.hasNext/nextCursor/totalResults`); `summary=full` on `GET /workorders/:id`;
webhooks from 44.193.241.109 and 184.169.231.134, optionally with Basic auth, retried every
n x 10 minutes up to 5 times, unordered (`created_date` orders them), events
`WORKORDER.CREATE` and `SITE.CREATE`; notifications kept for 3 months and fetchable through
"the CWP API webhooks endpoints" (older: 404); some endpoints take `form-data` (documents).

It gives almost no path, field or body. Each guess below is marked `# not in the vendor
document`; an instance overrides it under `options` (`CloudworkProOptions`, at the end).
Paths are relative to the instance's `base_url` (e.g. `https://staging-cwp-api.cloudworkpro.com`).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from adapters.settings import PolledVendorOptions

# --- authentication ---------------------------------------------------------------------------

TOKEN_PATH = "/auth/token"  # documented
# The token request's JSON body: body field -> the instance credential it is taken from
# (`credentials.<name>_file`). The Postman environment names API_KEY, CLIENT_ID,
# CLIENT_SECRET and SECRET_ID; which of them the token request sends, and under which names,
# is not given.
TOKEN_REQUEST_FIELDS: dict[str, str] = {  # not in the vendor document
    "client_id": "client_id",
    "client_secret": "client_secret",
}
# Where the token is in the answer: tried in order (a bare JSON string is also taken).
TOKEN_AT: tuple[tuple[str, ...], ...] = (  # not in the vendor document
    ("data", "token"),
    ("data", "access_token"),
    ("data", "accessToken"),
    ("data", "jwt"),
    ("token",),
    ("access_token",),
    ("accessToken",),
    ("jwt",),
    # The envelope's own `data` (elsewhere a sentence) as the token itself.
    ("data",),
)
# Its lifetime in seconds, where the answer says it (a JWT's `exp` wins).
EXPIRES_IN_AT: tuple[tuple[str, ...], ...] = (  # not in the vendor document
    ("data", "expires_in"),
    ("data", "expiresIn"),
    ("expires_in",),
    ("expiresIn",),
)
# A token whose lifetime nothing tells: renewed after this long (and on a 401).
TOKEN_DEFAULT_TTL_S = 3600.0  # not in the vendor document (a choice)
TOKEN_REFRESH_BEFORE_S = 60.0  # not in the vendor document (a choice)

# --- rate limit -------------------------------------------------------------------------------

# The document names 429 and recommends exponential backoff; it gives no number.
RATE_LIMIT_REQUESTS = 10  # not in the vendor document (a choice)
RATE_LIMIT_PER_SECONDS = 1.0  # not in the vendor document (a choice)

# --- polling ----------------------------------------------------------------------------------

# Collection paths of the polled resources. `GET /workorders/:id` is the document's one path.
RESOURCE_PATHS = {
    "work_orders": "/workorders",  # not in the vendor document (its `/workorders/:id`, less the id)
    "sites": "/sites",  # not in the vendor document
}
WORK_ORDER_PATH = "/workorders/{id}"  # documented (`GET /workorders/:id`, `summary=full`)
# The records' id field (the document's example `_id` in expanded work types) and their
# change and creation time fields (`created_date` is the webhook notification's).
ID_FIELD = "_id"  # not in the vendor document (the `_id` of its expanded work types)
UPDATED_FIELD = "updated_date"  # not in the vendor document
CREATED_FIELD = "created_date"  # not in the vendor document for records (it is for webhooks)
# The incremental listing: `sortBy=<updated field>:desc` (newest first: the order in which a
# change during paging cannot hide a record, see adapters/core/listing_guard.py) and
# `between=<updated field>![<since>,<until>]` (the document's shapes, with the guessed field).

# --- webhooks ---------------------------------------------------------------------------------

# "All webhook notifications are delivered by CWP from two possible IPs".
WEBHOOK_SOURCES = ("44.193.241.109/32", "184.169.231.134/32")  # documented
# A notification's fields: its event name ("WORKORDER.CREATE"), its time ("make use of the
# `created_date` timestamp"), its own id, and the record it is about.
NOTIFICATION_EVENT_FIELD = "event"  # not in the vendor document
NOTIFICATION_TIME_FIELD = "created_date"  # documented ("the `created_date` timestamp")
NOTIFICATION_ID_FIELD = "_id"  # not in the vendor document
NOTIFICATION_DATA_FIELD = "data"  # not in the vendor document
# The webhook event's thing -> the resource name in event types ("WORKORDER" -> work_order).
THINGS = {"WORKORDER": "work_order", "SITE": "site"}  # the names are documented, the map is ours

# --- missed-webhook recovery ------------------------------------------------------------------

# "You can make use of the CWP API webhooks endpoints to get missing webhooks", kept 3 months.
NOTIFICATIONS_PATH = "/webhooks/notifications"  # not in the vendor document
# How far back a first recovery reaches, and the overlap of later ones (a notification stored
# late is found again; its event id makes the second copy harmless).
RECOVERY_LOOKBACK_S = 24 * 3600.0  # not in the vendor document (a choice; the API keeps 3 months)
RECOVERY_MAX_AGE_S = 90 * 24 * 3600.0  # documented ("up to 3 months"): older answers 404

# --- commands ---------------------------------------------------------------------------------

WORK_ORDERS_PATH = "/workorders"  # not in the vendor document
WORK_ORDER_UPDATE_METHOD = "PUT"  # not in the vendor document
# The document's success example: "Status updated successfully to: 'draft' for work order ...".
WORK_ORDER_STATUS_PATH = "/workorders/{id}/status"  # not in the vendor document
WORK_ORDER_STATUS_METHOD = "PUT"  # not in the vendor document
WORK_ORDER_DOCUMENTS_PATH = "/workorders/{id}/documents"  # not in the vendor document
# The form-data field the file goes in ("some of the endpoints that require sending documents
# work with `form-data` payloads").
DOCUMENT_FORM_FIELD = "file"  # not in the vendor document
SITES_PATH = "/sites"  # not in the vendor document


class CloudworkProOptions(PolledVendorOptions, kw_only=True, forbid_unknown_fields=True):
    """CLOUDWORK|PRO's `options`: the guesses above, and the webhook's allowed sources."""

    webhook_sources: Annotated[
        list[str],
        msgspec.Meta(
            description="addresses (CIDRs) webhooks are accepted from; default: the two the "
            "document gives"
        ),
    ] = msgspec.field(default_factory=lambda: list(WEBHOOK_SOURCES))
    token_request_fields: Annotated[
        dict[str, str],
        msgspec.Meta(
            description="the /auth/token request body: field -> the credential it is taken "
            "from (not in the vendor document)"
        ),
    ] = msgspec.field(default_factory=lambda: dict(TOKEN_REQUEST_FIELDS))
    token_path: Annotated[str, msgspec.Meta(description="the token endpoint (documented)")] = (
        TOKEN_PATH
    )
    expand_work_orders: Annotated[
        bool,
        msgspec.Meta(
            description="read each changed work order once more with summary=full (its "
            "expanded work types and the like): one request per change"
        ),
    ] = False
    notifications_path: Annotated[
        str,
        msgspec.Meta(
            description="where stored webhook notifications are listed, for missed-webhook "
            "recovery (not in the vendor document)"
        ),
    ] = NOTIFICATIONS_PATH
    recovery_lookback_s: Annotated[
        float,
        msgspec.Meta(
            gt=0,
            le=RECOVERY_MAX_AGE_S,
            description="how far back the first missed-webhook recovery reaches (at most the "
            "3 months CLOUDWORK|PRO keeps notifications)",
        ),
    ] = RECOVERY_LOOKBACK_S
