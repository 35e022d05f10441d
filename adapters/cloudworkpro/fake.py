"""A fake CLOUDWORK|PRO server on aiohttp, for tests, demos and `workbridge dev`.

It follows CLOUDWORK|PRO's API document (vendor-docs/004_12534c0536ec6df0.txt, a Postman
collection whose description holds the rules):

- "use the …/auth/token endpoint and request a token": `POST /auth/token` with the Public API
  credentials answers a bearer token; a request without one, or with an expired one, is 401
  ("You're not sending the bearer token or the token is expired"), a token without the
  permission for a request is 403.
- Errors are HTTP statuses (401, 403, 404 "The resource you requested doesn't exist", 422
  "the request's Content-Type header was not set correctly", 429, 500/502/503/504), except
  "most `400 Bad Request Errors`": HTTP 200 with `"code": 400` and an `error` object, as the
  document's `WO_0005` "The work types provided were not found in CWP platform".
- Success is `{"code": 200, "reason": "", "data": …, "success": true}`; the document's status
  example `"data": "Status updated successfully to: 'draft' for work order with ID: …"`.
- `summary=full` on `GET /workorders/:id` adds `work_types: [{_id, name, description}]` next
  to `work_type_ids` (the document's `636953eebf54aa00087e75ee` "WiFi Heat Mapping" is seeded).
- Every listing uses cursor pagination: `cursor`, `limit` (default 100), `sortBy`
  (`column:asc|desc`, one column), `filterBy` (a URL-encoded JSON object), `filterOperator`
  (`and`/`or`), `in=column![v1, v2]` and `between=column![start, end]` (as many as wanted),
  answering `pagination` (`hasNext`, `hasPrev`, `nextCursor`, `prevCursor`, `pageResults`,
  `totalResults`) and `options` (`limit`, `sortBy?`, `filterBy?`).
- Documents are sent as `form-data`.
- Webhooks: POSTed to the listener URLs, with Basic auth where configured, from "two possible
  IPs" (the fake binds its client sockets to configured local addresses, e.g. 127.0.0.2);
  anything but `200 OK` is retried "every n * 10 minutes … A maximum of 5 retries"; order is
  not guaranteed ("make use of the `created_date` timestamp"); the events `WORKORDER.CREATE`
  and `SITE.CREATE`. Notifications are kept "up to 3 months" and can be fetched through the
  API; an older one is 404.

The document gives almost no path, field or body. The fake follows the connector's guesses
(adapters/cloudworkpro/undocumented.py) by default, and every guess a client could tell apart
is a field of `FakeCloudworkProBehaviour` just below, marked `# not in the vendor document`, so
that a test can flip it. The behaviour is read on every request: a test may swap
`fake.behaviour` on a running fake.

Guesses that are not knobs (no client should depend on them): ids are 24 hex digits like
MongoDB ObjectIds (seconds of the fake's clock, then a per-fake random part and a counter),
so that sorting by id is creation order; a request is judged in the order injected fault ->
authentication (401) -> rate limit (429) -> route (404) -> permission (403) -> Content-Type
(422) -> body (code 400) -> record id (404) -> fields (code 400); a method a path does not
take is 404 (as an Express server answers "Cannot PUT"); API bodies may carry any other field,
stored as sent; a status change and a document upload are changes of the work order
(`WORKORDER.UPDATE`, where that event is switched on); the error codes other than `WO_0005`
(`ERROR_CODES`) are made up.

The shared parts come from the fake kit: `CursorPages` (adapters/fakekit_pages.py) cuts
listings, `FakeRateLimit` (adapters/fakekit_limits.py) is the sliding window,
`CloudworkProErrors` (adapters/fakekit_errors.py) the error envelope, `FakeTokenIssuer` and
`TokenHandles` (adapters/fakekit_auth.py) issue and expire tokens, and `PipelineServer`
(adapters/fakekit_pipeline.py) runs every request through faults, the token and rate-limit
checks on arrival, the delay and the log.

Test handles: `fail_next`/`delay_next` (from `FakeServer`; an injected answer comes before
authentication), the logs `requests` (every API request, its status, whether its token was
good), `calls` (accepted writes), `uploads` (documents as received), `deliveries` (every
webhook attempt with its source address), `lost` (notifications dropped on purpose);
credentials (`add_client`, `set_permissions`, `tokens_issued`, `tokens`, `expire_tokens`,
`revoke_token`); records by hand (`create_record`, `update_record`, `delete_record`,
`records`, `get_record`, `add_work_type`) with `after_list_page` to change them while a listing
is being paged; webhooks (`add_listener`, `remove_listener`, `notify`, `notifications`,
`redeliver`, `webhooks_down`, `lose_next`); and an unauthenticated control API under `/_fake/`
(the kit's `fail_next`, `delay_next`, `requests`, `calls`, `expire_tokens`, and CLOUDWORK|PRO's
own records, listeners and notifications; see `_build_app`).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import aiohttp
import msgspec
from aiohttp import web
from multidict import MultiDictProxy, MultiMapping

from adapters.cloudworkpro.undocumented import (
    CREATED_FIELD,
    DOCUMENT_FORM_FIELD,
    ID_FIELD,
    NOTIFICATION_DATA_FIELD,
    NOTIFICATION_EVENT_FIELD,
    NOTIFICATION_ID_FIELD,
    NOTIFICATION_TIME_FIELD,
    NOTIFICATIONS_PATH,
    RATE_LIMIT_PER_SECONDS,
    RATE_LIMIT_REQUESTS,
    RECOVERY_MAX_AGE_S,
    SITES_PATH,
    TOKEN_DEFAULT_TTL_S,
    TOKEN_PATH,
    TOKEN_REQUEST_FIELDS,
    UPDATED_FIELD,
    WORK_ORDER_DOCUMENTS_PATH,
    WORK_ORDER_PATH,
    WORK_ORDER_STATUS_METHOD,
    WORK_ORDER_STATUS_PATH,
    WORK_ORDER_UPDATE_METHOD,
    WORK_ORDERS_PATH,
)
from adapters.fakekit import (
    Attempt,
    DeliveryRecord,
    RetryPolicy,
    json_response,
    read_json_object,
    retry_after_headers,
)
from adapters.fakekit_auth import FakeTokenIssuer, TokenHandles
from adapters.fakekit_control import mount_control_routes
from adapters.fakekit_errors import CloudworkProErrors
from adapters.fakekit_limits import FakeRateLimit
from adapters.fakekit_logs import CallLogEntry
from adapters.fakekit_logs import RequestLogEntry as BaseRequestLogEntry
from adapters.fakekit_pages import CursorPages, PageQueryError
from adapters.fakekit_pipeline import Arrival, PipelineServer, injected_reason

_Post = str | bytes | bytearray | web.FileField
"""One field of a form-data body as aiohttp reads it."""

Record = dict[str, Any]
"""A record as the API shows it: `_id`, its fields, `created_date`, `updated_date`."""

Resource = Literal["work_orders", "sites"]
"""The fake's record kinds (the names of the connector's polled resources)."""

RESOURCES: tuple[Resource, ...] = ("work_orders", "sites")

# The webhook event's thing per resource (the document's `WORKORDER.CREATE`, `SITE.CREATE`).
THINGS: dict[str, str] = {"work_orders": "WORKORDER", "sites": "SITE"}

# Documented: the events the document lists.
DOCUMENTED_EVENTS = ("WORKORDER.CREATE", "SITE.CREATE")

# Documented: the one work type the document shows (its `summary=full` example). The others
# are the fake's own, so that a work order can have several.
DOCUMENT_WORK_TYPE_ID = "636953eebf54aa00087e75ee"
DEFAULT_WORK_TYPES: dict[str, dict[str, str]] = {
    DOCUMENT_WORK_TYPE_ID: {"name": "WiFi Heat Mapping", "description": "WiFi Heat Mapping"},
    "636953eebf54aa00087e75ef": {  # not in the vendor document
        "name": "Network Installation",
        "description": "Cabling and access point installation",
    },
    "636953eebf54aa00087e75f0": {  # not in the vendor document
        "name": "Site Survey",
        "description": "On-site survey before an installation",
    },
}

# Documented: `WO_0005` with its message and detail. The other codes are made up (the
# document shows one error); a client should read `code: 400` and the message, not these.
ERROR_CODES: dict[str, tuple[str, str, str]] = {
    "work_types": (
        "WO_0005",
        "The work types provided were not found in CWP platform",
        "This error happens when you send work type IDs that do not exists in CWP platform",
    ),
    "credentials": (  # not in the vendor document
        "AUTH_0001",
        "Invalid credentials",
        "This error happens when the client id or the client secret is wrong",
    ),
    "body": (  # not in the vendor document
        "GEN_0001",
        "The request body is not valid",
        "This error happens when the body is not a JSON object",
    ),
    "id": (  # not in the vendor document
        "GEN_0002",
        "The id provided is not valid",
        "This error happens when an id is not a 24 character hexadecimal string",
    ),
    "query": (  # not in the vendor document
        "PAG_0001",
        "The pagination parameters are not valid",
        "This error happens when cursor, limit, sortBy, filterBy, filterOperator, in or "
        "between cannot be read",
    ),
    "required": (  # not in the vendor document
        "WO_0001",
        "Required fields are missing",
        "This error happens when a required field is missing or empty",
    ),
    "site": (  # not in the vendor document
        "WO_0006",
        "The site provided was not found in CWP platform",
        "This error happens when you send a site ID that does not exist in CWP platform",
    ),
    "status": (  # not in the vendor document
        "WO_0007",
        "The status provided is not valid",
        "This error happens when you send a status that CWP platform does not know",
    ),
    "file": (  # not in the vendor document
        "DOC_0001",
        "The file is missing",
        "This error happens when the form-data has no file in the document field",
    ),
}

# Permissions a client's token may carry (the document names 403 "Your token doesn't have the
# permissions to perform the request", not the permissions): the fake's own.
PERMISSIONS: frozenset[str] = frozenset(
    {
        "work_orders:read",
        "work_orders:write",
        "sites:read",
        "sites:write",
        "notifications:read",
    }
)


class FakeCloudworkProBehaviour(msgspec.Struct, frozen=True, kw_only=True):
    """Every assumption the fake makes where CLOUDWORK|PRO's API document is silent.

    The defaults are the connector's guesses (adapters/cloudworkpro/undocumented.py) where it
    has one, else the fake's; pass another instance to `FakeCloudworkPro` (or assign
    `fake.behaviour`) to test a client against a different reading. Fields not marked are
    documented values kept here only so that tests can change them.
    """

    # --- Paths (relative to the API root) --------------------------------------------------
    token_path: str = TOKEN_PATH
    work_orders_path: str = WORK_ORDERS_PATH  # not in the vendor document
    # Documented: `GET /workorders/:id` (the fake's `{id}`).
    work_order_path: str = WORK_ORDER_PATH
    work_order_status_path: str = WORK_ORDER_STATUS_PATH  # not in the vendor document
    work_order_documents_path: str = WORK_ORDER_DOCUMENTS_PATH  # not in the vendor document
    sites_path: str = SITES_PATH  # not in the vendor document
    # The "CWP API webhooks endpoints" that give missed notifications; one by its id below.
    notifications_path: str = NOTIFICATIONS_PATH  # not in the vendor document
    notification_path: str = NOTIFICATIONS_PATH + "/{id}"  # not in the vendor document
    update_method: str = WORK_ORDER_UPDATE_METHOD  # not in the vendor document
    status_method: str = WORK_ORDER_STATUS_METHOD  # not in the vendor document
    # The form-data field the document's file goes in.
    document_field: str = DOCUMENT_FORM_FIELD  # not in the vendor document
    # A text field that references the document by URL instead of its bytes (the
    # connector's guess); None: only a file is taken.
    document_url_field: str | None = "url"  # not in the vendor document

    # --- Authentication --------------------------------------------------------------------
    # The token request's JSON body: body field -> "client_id" or "client_secret" (which of
    # the Postman environment's API_KEY, CLIENT_ID, CLIENT_SECRET, SECRET_ID it takes is not
    # given).
    token_request_fields: dict[str, str] = msgspec.field(  # not in the vendor document
        default_factory=lambda: dict(TOKEN_REQUEST_FIELDS)
    )
    # "jwt" (with `exp`), "jwt_without_exp", or "opaque" (a random string): what a client can
    # read of its lifetime from the token itself.
    token_format: Literal["jwt", "jwt_without_exp", "opaque"] = "jwt"  # not in the vendor document
    token_lifetime_s: float = TOKEN_DEFAULT_TTL_S  # not in the vendor document
    # Where the answer carries the token: in the envelope's `data` (`{"code": 200, "reason":
    # "", "data": {"token": …}, "success": true}`) or as a bare `{"token": …}`.
    token_answer: Literal["envelope", "bare"] = "envelope"  # not in the vendor document
    # The token's key in the answer ("token" or e.g. "access_token").
    token_key: str = "token"  # not in the vendor document
    # Whether the answer says `expires_in` (seconds) next to the token.
    token_expires_in: bool = True  # not in the vendor document
    # Wrong or missing credentials: "unauthorized" (HTTP 401) or "bad_request" (the
    # document's 200 with code 400, `AUTH_0001`).
    token_refused: Literal["unauthorized", "bad_request"] = (  # not in the vendor document
        "unauthorized"
    )

    # --- Errors ----------------------------------------------------------------------------
    # HTTP status of a bad request: the document's 200 ("most" of them); e.g. 400.
    bad_request_http_status: int = 200
    # Body of a 401/403/404/422/429/5xx: "envelope" (`{"code": <status>, "reason", "data": {},
    # "success": false}`) or "empty".
    status_body: Literal["envelope", "empty"] = "envelope"  # not in the vendor document
    # An id that is not 24 hex digits: "not_found" (404) or "bad_request" (code 400).
    malformed_id: Literal["not_found", "bad_request"] = "not_found"  # not in the vendor document
    # Where Content-Type is checked (422): "bodies" (requests with a body: JSON, or form-data
    # for documents) or "all" (a GET must say `application/json` too, as Postman sends it).
    content_type_checked_on: Literal["bodies", "all"] = "bodies"  # not in the vendor document

    # --- Rate limit (the document names 429 and exponential backoff, no number) -------------
    # Requests per window and client; None = no limit.
    rate_limit_requests: int | None = RATE_LIMIT_REQUESTS  # not in the vendor document
    rate_limit_window_s: float = RATE_LIMIT_PER_SECONDS  # not in the vendor document
    # A 429 says `Retry-After` (the document only advises backing off exponentially).
    rate_limit_retry_after: bool = False  # not in the vendor document

    # --- Records ---------------------------------------------------------------------------
    # The records' id and time fields (the `_id` of the document's expanded work types).
    id_field: str = ID_FIELD  # not in the vendor document
    created_field: str = CREATED_FIELD  # not in the vendor document
    updated_field: str = UPDATED_FIELD  # not in the vendor document
    # Timestamps `2023-10-04T12:00:00.000Z` ("ms") or `2023-10-04T12:00:00Z` ("s").
    timestamp_precision: Literal["ms", "s"] = "ms"  # not in the vendor document
    # Fields a create must carry (non-empty); an update may not empty them.
    work_order_required: tuple[str, ...] = ("name",)  # not in the vendor document
    site_required: tuple[str, ...] = ("name",)  # not in the vendor document
    # Work order statuses: the document's example is "draft"; the others are guesses.
    work_order_statuses: tuple[str, ...] = (  # not in the vendor document
        "draft",
        "scheduled",
        "in_progress",
        "completed",
        "cancelled",
    )
    default_status: str = "draft"  # not in the vendor document
    # A work order's `site_id` must name an existing site (else code 400 `WO_0006`).
    check_site_id: bool = True  # not in the vendor document
    # What `PUT /workorders/{id}` does: "merge" the sent fields, or "replace" all but the id,
    # the status and the times.
    update_mode: Literal["merge", "replace"] = "merge"  # not in the vendor document
    # `data` of a create's answer: the new "record", or its "id" (a string).
    create_answer: Literal["record", "id"] = "record"  # not in the vendor document
    # `summary=full` also expands listings (the document names `GET /workorders/:id` only).
    summary_full_on_lists: bool = False  # not in the vendor document

    # --- Listings --------------------------------------------------------------------------
    # Documented: "Default: 100".
    default_limit: int = 100
    # Upper bound for limit (a larger one is cut down); None = no bound.
    max_limit: int | None = None  # not in the vendor document
    # Order without sortBy, as a sortBy value; None = by id ascending (creation order).
    default_sort: str | None = None  # not in the vendor document
    # A cursor remembers the sort key at the page's edge ("keyset", as the document's cursor
    # `_id|<id>|-1` reads) or the position ("offset").
    cursor_format: Literal["keyset", "offset"] = "keyset"  # not in the vendor document
    # A cursor the fake cannot read: "reject" (code 400) or "first_page".
    invalid_cursor: Literal["reject", "first_page"] = "reject"  # not in the vendor document
    # A limit that is not an integer >= 1: "reject" (code 400) or "default".
    invalid_paging: Literal["reject", "default"] = "reject"  # not in the vendor document
    # nextCursor/prevCursor when there is no such page (the document types them as string).
    no_cursor: str | None = None  # not in the vendor document
    # How a filterBy value matches: "exact" (equal; an array field contains it) or
    # "contains" (a case-insensitive substring of a string field).
    filter_by_match: Literal["exact", "contains"] = "exact"  # not in the vendor document
    # What filterOperator joins: the filterBy attributes only ("filter_by"; `in` and
    # `between` always narrow further) or every condition ("all").
    filter_operator_scope: Literal["filter_by", "all"] = "filter_by"  # not in the vendor document
    # Whether `between`'s end value is "inclusive" or "exclusive" (its start always is).
    between_end: Literal["inclusive", "exclusive"] = "inclusive"  # not in the vendor document

    # --- Webhooks --------------------------------------------------------------------------
    # The events the fake sends: the document's two by default; others such as
    # "WORKORDER.UPDATE", "SITE.UPDATE", "WORKORDER.DELETE" are guesses.
    events: tuple[str, ...] = DOCUMENTED_EVENTS
    # A notification's fields by role: its own id, its event, its time (documented:
    # "created_date") and the record it is about.
    notification_fields: dict[str, str] = msgspec.field(  # not in the vendor document
        default_factory=lambda: {
            "id": NOTIFICATION_ID_FIELD,
            "event": NOTIFICATION_EVENT_FIELD,
            "time": NOTIFICATION_TIME_FIELD,
            "data": NOTIFICATION_DATA_FIELD,
        }
    )
    # Local addresses deliveries go out from, in turn (the document's two IPs stand for
    # these; on Linux every 127/8 address is loopback, e.g. ("127.0.0.2",)). Empty: the
    # system picks.
    webhook_source_addresses: tuple[str, ...] = ()
    # Documented: retry n waits n * 10 minutes, at most 5 retries; tests shrink the unit.
    webhook_retry_unit_s: float = 600.0
    webhook_max_retries: int = 5
    # What counts as delivered: the document's "200" exactly, or any "2xx".
    webhook_success: Literal["200", "2xx"] = "200"  # not in the vendor document
    webhook_timeout_s: float = 10.0  # not in the vendor document
    # Documented: order is not guaranteed. Each first attempt waits a random 0..jitter s,
    # so that later notifications may overtake earlier ones.
    webhook_jitter_s: float = 0.0
    # Documented: "up to 3 months"; older notifications answer 404 and are not listed.
    notification_retention_s: float = RECOVERY_MAX_AGE_S


@dataclass(frozen=True)
class _Schedule:
    """The `RetryPolicy` the kit asks for; only the timeout is used (`_retry_delay` is
    CLOUDWORK|PRO's own n x unit schedule)."""

    webhook_retry_initial_s: float
    webhook_retry_factor: float
    webhook_retry_max_s: float
    webhook_timeout_s: float


def format_timestamp(moment: datetime, precision: Literal["ms", "s"] = "ms") -> str:
    """`2023-10-04T12:00:00.000Z` (UTC; "s": without the milliseconds)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if precision == "s":
        return base + "Z"
    return f"{base}.{moment.microsecond // 1000:03d}Z"


def parse_timestamp(value: str) -> datetime | None:
    """An ISO 8601 time or date (no offset = UTC), or None when `value` is not one."""
    if len(value) < 10 or value[4:5] != "-":
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def is_object_id(value: str) -> bool:
    """Whether `value` looks like an id of the platform: 24 hexadecimal digits."""
    return len(value) == 24 and all(c in "0123456789abcdefABCDEF" for c in value)


class RequestLogEntry(BaseRequestLogEntry, kw_only=True):
    """One API request: its status, the envelope's `code` when the answer has one (400 for
    a bad request answered HTTP 200), whether a good token came with it, whose it was and
    whether `fail_next` answered it."""

    query: str
    code: int | None
    auth_ok: bool
    client_id: str | None
    injected: bool = False


class RecordedCall(CallLogEntry, kw_only=True):
    """One accepted write through the API (`json` is the body; None for form-data)."""

    resource: str
    action: str
    record_id: str
    client_id: str


class Upload(msgspec.Struct, kw_only=True):
    """A document as `POST /workorders/{id}/documents` received it: a file (`data`, with
    its filename and content type as sent) or a reference (`url`, with empty `data`)."""

    id: str
    work_order_id: str
    field: str
    filename: str | None
    content_type: str | None
    data: bytes
    url: str | None
    # The form's other (text) fields.
    fields: dict[str, str]
    created: datetime


class Listener(msgspec.Struct, kw_only=True):
    """A webhook listener URL of the company's settings, with its optional Basic auth.

    `events`: the events it gets (None = every event the fake sends).
    """

    id: int
    url: str
    username: str | None = None
    password: str | None = None
    events: tuple[str, ...] | None = None
    enabled: bool = True

    def wants(self, event: str) -> bool:
        """Whether a notification of `event` goes to this listener."""
        return self.enabled and (self.events is None or event in self.events)


class Notification(msgspec.Struct, kw_only=True):
    """One stored notification: `body` is the JSON sent (and re-sent) byte for byte."""

    id: str
    event: str
    created: datetime
    body: bytes
    seq: int


class WebhookMessage(msgspec.Struct, kw_only=True):
    """One notification on its way to one listener; body and headers never change."""

    notification_id: str
    listener_id: int
    url: str
    event: str
    body: bytes
    headers: dict[str, str]
    seq: int


class Delivery(DeliveryRecord, kw_only=True):
    """One webhook attempt: the notification, the local address it went out from (None:
    the system's choice) and whether it counted as delivered."""

    notification_id: str
    source: str | None
    ok: bool


class _Refused(Exception):
    """Ends a handler with a finished answer (an error)."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


@dataclass(frozen=True)
class _Client:
    secret: str
    permissions: frozenset[str]


@dataclass
class _Call:
    """One API request as the handlers see it (body read before any delay)."""

    method: str
    path: str
    query: MultiMapping[str]
    query_string: str
    content_type: str | None
    raw: bytes
    form: MultiDictProxy[_Post] | None
    client_id: str | None
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Route:
    name: str
    method: str
    template: str
    permission: str | None
    body: Literal["json", "multipart", "none"]


@dataclass
class _Arrived:
    """A request as judged on arrival: its route, its good token's client, its body."""

    matched: tuple[_Route, dict[str, str]] | None
    client_id: str | None
    content_type: str | None = None
    form: MultiDictProxy[_Post] | None = None


@dataclass(frozen=True)
class _Condition:
    kind: Literal["eq", "in", "between"]
    field: str
    values: tuple[Any, ...]


_MISSING = object()


def _rank(value: Any) -> list[Any]:
    # Rank by type first so mixed values (or missing ones) never make sorting raise; JSON
    # values only, as the key travels inside keyset cursors.
    if value is None or value is _MISSING:
        return [0, 0]
    if isinstance(value, bool | int | float):
        return [1, value]
    if isinstance(value, str):
        return [2, value]
    return [3, msgspec.json.encode(value).decode()]


def _text(value: Any) -> str:
    """A filter value as the query would have spelled it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return msgspec.json.encode(value).decode()


def _operands(value: Any, wanted: Any) -> tuple[Any, Any] | None:
    """(record value, filter value) made comparable, or None when they cannot be."""
    if value is None or value is _MISSING:
        return (None, None) if wanted is None or _text(wanted) == "null" else None
    raw = _text(wanted).strip()
    if isinstance(value, bool):
        if raw.lower() in ("true", "false"):
            return value, raw.lower() == "true"
        return None
    if isinstance(value, int | float):
        try:
            return float(value), float(raw)
        except ValueError:
            return None
    if isinstance(value, str):
        left, right = parse_timestamp(value), parse_timestamp(raw)
        if left is not None and right is not None:
            return left, right
        return value, raw
    return None


def _equal(value: Any, wanted: Any) -> bool:
    if isinstance(value, list):
        return any(_equal(item, wanted) for item in value)
    pair = _operands(value, wanted)
    return pair is not None and bool(pair[0] == pair[1])


def _between(value: Any, start: Any, end: Any, inclusive_end: bool) -> bool:
    low, high = _operands(value, start), _operands(value, end)
    if low is None or high is None or low[0] is None:
        return False
    try:
        if not low[0] >= low[1]:
            return False
        return bool(high[0] <= high[1] if inclusive_end else high[0] < high[1])
    except TypeError:
        return False


def _bracketed(raw: str) -> tuple[str, list[Any]]:
    """`column![v1, v2]` -> ("column", ["v1", "v2"]); ValueError when it is not that."""
    column, bang, rest = raw.partition("!")
    rest = rest.strip()
    if not bang or not column.strip() or not (rest.startswith("[") and rest.endswith("]")):
        raise ValueError(raw)
    try:
        values = msgspec.json.decode(rest)
    except msgspec.DecodeError:
        # The document's `[value1, value2]` is not JSON: bare words, maybe quoted.
        inner = rest[1:-1]
        values = [part.strip().strip("\"'") for part in inner.split(",")] if inner.strip() else []
    if not isinstance(values, list):
        raise ValueError(raw)
    return column.strip(), values


def _match_template(template: str, path: str) -> dict[str, str] | None:
    """Match `path` against `/a/{id}/b`; the placeholders' values, or None."""
    parts = [p for p in template.split("/") if p]
    segments = [s for s in path.split("/") if s]
    if len(parts) != len(segments):
        return None
    values: dict[str, str] = {}
    for part, segment in zip(parts, segments, strict=True):
        if part.startswith("{") and part.endswith("}"):
            values[part[1:-1]] = segment
        elif part != segment:
            return None
    return values


def _mimetype(content_type: str | None) -> str | None:
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower()


def _envelope_code(response: web.Response) -> int | None:
    body = response.body
    if not isinstance(body, bytes) or not body.startswith(b"{"):
        return None
    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    code = decoded.get("code") if isinstance(decoded, dict) else None
    return code if isinstance(code, int) else None


class FakeCloudworkPro(TokenHandles, PipelineServer[WebhookMessage, _Arrived]):
    """A fake CLOUDWORK|PRO API server; see the module docstring and
    `FakeCloudworkProBehaviour`.

    `base_url` (after `start`) is the API root `http://host:port`, like the document's
    `https://staging-cwp-api.cloudworkpro.com`; the control API is at `control_url`
    (`…/_fake`). HTTPS: set `ssl_context` before `start` (see `FakeServer`).

    `fail_next` answers `{"code": <status>, "reason": "injected failure (<status>)", "data": {},
    "success": false}` (with `Retry-After` when given) before authentication and the rate
    limit. With `delay_next` the rate limit and the token are judged on arrival and the
    handling (any write) happens after the delay.
    """

    _server_name = "FakeCloudworkPro"
    _base_path = ""

    def __init__(
        self,
        *,
        client_id: str = "workbridge",
        client_secret: str,
        behaviour: FakeCloudworkProBehaviour | None = None,
        clock: Callable[[], datetime] | None = None,
        work_types: Mapping[str, Mapping[str, str]] | None = None,
        seed: int = 0,
    ) -> None:
        """Create the fake (not yet listening; call `start` or use `async with`).

        `client_id`/`client_secret` are the Public API credentials of a client with every
        permission (`add_client` adds more). `clock` supplies record and notification times,
        token expiry and the age of notifications; the rate limit runs on the monotonic clock.
        `work_types` (id -> `{"name", "description"}`) default to `DEFAULT_WORK_TYPES`.
        `seed` makes ids and the delivery jitter reproducible.
        """
        super().__init__()
        self.behaviour = behaviour or FakeCloudworkProBehaviour()
        self._clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self._random = random.Random(seed)
        self._machine = f"{self._random.getrandbits(40):010x}"
        self._counter = self._random.getrandbits(24)
        self._issuer = FakeTokenIssuer(clock=lambda: self._aware_now().timestamp())
        self._clients: dict[str, _Client] = {}
        self.add_client(client_id, client_secret)
        self.work_types: dict[str, dict[str, str]] = {
            key: dict(value) for key, value in (work_types or DEFAULT_WORK_TYPES).items()
        }
        self._store: dict[str, dict[str, Record]] = {name: {} for name in RESOURCES}
        # Budget and switches are set from `behaviour` on every request (see `_rate_limit`).
        self._limiter = FakeRateLimit(limit=0, window_s=0.0, clock=time.monotonic)
        self._pages_served: dict[str, int] = {}
        self._notifications: dict[str, Notification] = {}
        self._listeners: dict[int, Listener] = {}
        self._source_sessions: dict[str, aiohttp.ClientSession] = {}
        self._down = False
        self._lose = 0
        self.requests: list[RequestLogEntry] = []
        self.calls: list[RecordedCall] = []
        self.uploads: list[Upload] = []
        self.deliveries: list[Delivery] = []
        # Ids of notifications stored but not delivered on purpose (`webhooks_down`,
        # `lose_next`) or because the fake was not running.
        self.lost: list[str] = []
        self.rejected_429 = 0
        # Called with (resource, n) right after the n-th listing page of `resource`
        # ("work_orders", "sites", "notifications") is cut, so a test can change records
        # "while the listing is being paged".
        self.after_list_page: Callable[[str, int], None] | None = None

    # ------------------------------------------------------------------ lifecycle

    def _build_app(self) -> web.Application:
        # Documents may be large; aiohttp's default body limit is 1 MiB.
        app = web.Application(client_max_size=64 * 1024 * 1024)
        # Before /_fake/{resource}, which would catch these paths (aiohttp matches in
        # registration order).
        mount_control_routes(app, self, tokens=self._issuer)
        app.router.add_get("/_fake/uploads", self._ctl_uploads)
        app.router.add_get("/_fake/deliveries", self._ctl_deliveries)
        app.router.add_get("/_fake/notifications", self._ctl_notifications)
        app.router.add_post("/_fake/listeners", self._ctl_add_listener)
        app.router.add_post("/_fake/webhooks_down", self._ctl_webhooks_down)
        app.router.add_post("/_fake/redeliver/{id}", self._ctl_redeliver)
        app.router.add_get("/_fake/work_types", self._ctl_work_types)
        app.router.add_get("/_fake/{resource}", self._ctl_records)
        app.router.add_post("/_fake/{resource}", self._ctl_create)
        app.router.add_get("/_fake/{resource}/{id}", self._ctl_get)
        app.router.add_route("PATCH", "/_fake/{resource}/{id}", self._ctl_update)
        app.router.add_put("/_fake/{resource}/{id}", self._ctl_update)
        app.router.add_delete("/_fake/{resource}/{id}", self._ctl_delete)
        app.router.add_route("*", "/{tail:(?!_fake/).*}", self._api)
        return app

    async def stop(self) -> None:
        """Cancel pending deliveries, close every client session, stop listening."""
        await super().stop()
        sessions = list(self._source_sessions.values())
        self._source_sessions.clear()
        for session in sessions:
            await session.close()

    # ------------------------------------------------------------------ test handles: auth

    def add_client(
        self, client_id: str, client_secret: str, permissions: Iterable[str] = PERMISSIONS
    ) -> None:
        """Accept Public API credentials whose tokens carry `permissions` (see
        `PERMISSIONS`); a missing permission answers 403."""
        self._clients[client_id] = _Client(client_secret, frozenset(permissions))

    def set_permissions(self, client_id: str, permissions: Iterable[str]) -> None:
        """Change what a client's tokens may do, its tokens issued so far included."""
        self._clients[client_id] = _Client(self._clients[client_id].secret, frozenset(permissions))

    @property
    def tokens(self) -> list[str]:
        """The tokens handed out, oldest first."""
        return list(self._issuer.issued)

    # ------------------------------------------------------------------ test handles: records

    def records(self, resource: str) -> list[Record]:
        """Copies of the records of `resource` ("work_orders", "sites") as the API shows them,
        by id."""
        store = self._table(resource)
        return [self._render(resource, store[key]) for key in sorted(store)]

    def get_record(self, resource: str, record_id: str, *, full: bool = False) -> Record | None:
        """A copy of one record as the API shows it (with `full`: as `summary=full`), or
        None."""
        record = self._table(resource).get(record_id)
        return self._render(resource, record, full=full) if record is not None else None

    def create_record(
        self, resource: str, fields: Mapping[str, Any], *, notify: bool = True
    ) -> Record:
        """Create a record as a person in CLOUDWORK|PRO would: no validation, so a test can
        build any state. `fields` may carry an id (the behaviour's `id_field`) and times
        (ISO strings). Sends `<THING>.CREATE` unless `notify` is off; a notification is as
        old as its change (here: the record's `updated_date`, so a backdated record makes a
        backdated notification)."""
        record = self._insert(resource, fields, explicit=True)
        if notify:
            self._changed(resource, record, "CREATE")
        return self._render(resource, record)

    def update_record(
        self, resource: str, record_id: str, fields: Mapping[str, Any], *, notify: bool = True
    ) -> Record:
        """Change fields as a person would and bump `updated_date`; sends `<THING>.UPDATE`
        where that event is on. KeyError if missing."""
        record = self._table(resource)[record_id]
        for key, value in self._incoming(fields).items():
            record[key] = copy.deepcopy(value)
        self._touch(record)
        if notify:
            self._changed(resource, record, "UPDATE")
        return self._render(resource, record)

    def delete_record(self, resource: str, record_id: str, *, notify: bool = True) -> None:
        """Delete as a person would (the API documents no delete); sends `<THING>.DELETE`
        where that event is on. KeyError if missing."""
        record = self._table(resource).pop(record_id)
        if notify:
            self._changed(resource, record, "DELETE")

    def add_work_type(self, work_type_id: str, name: str, description: str = "") -> None:
        """Add a work type that work orders may name in `work_type_ids`."""
        self.work_types[work_type_id] = {"name": name, "description": description}

    # ------------------------------------------------------------------ test handles: webhooks

    def add_listener(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        events: Sequence[str] | None = None,
    ) -> Listener:
        """Add a webhook listener URL; with `username`/`password` every delivery carries
        `Authorization: Basic …`. `events` limits what it gets (default: every event the fake
        sends, `behaviour.events`)."""
        listener = Listener(
            id=len(self._listeners) + 1,
            url=url,
            username=username,
            password=password,
            events=tuple(events) if events is not None else None,
        )
        self._listeners[listener.id] = listener
        return listener

    def remove_listener(self, listener_id: int) -> None:
        """Stop delivering to a listener (pending retries to it stop too)."""
        self._listeners[listener_id].enabled = False

    @property
    def listeners(self) -> list[Listener]:
        """The listeners, as added."""
        return list(self._listeners.values())

    def webhooks_down(self, down: bool = True) -> None:
        """While down, notifications are stored (and listed) but not delivered: what the
        missed-webhook recovery is for. Their ids go to `lost`."""
        self._down = down

    def lose_next(self, n: int = 1) -> None:
        """Store the next `n` notifications without delivering them (ids to `lost`)."""
        self._lose += n

    def notify(self, event: str, data: Any, *, created: datetime | None = None) -> dict[str, Any]:
        """Store and deliver one notification of `event` about `data` (any JSON value), as
        a change in CLOUDWORK|PRO would; whether the event is on is not checked. `created`
        backdates it (default: now). The notification as sent."""
        return self._notify(event, data, created or self._aware_now())

    def notifications(self) -> list[dict[str, Any]]:
        """Every notification stored, oldest first, also those past the retention."""
        return [msgspec.json.decode(n.body) for n in self._notifications.values()]

    def redeliver(self, notification_id: str) -> int:
        """Send a stored notification again, byte for byte, to every listener that wants it
        (a duplicate, as a receiver must expect), with retries; how many listeners."""
        note = self._notifications[notification_id]
        return self._fan_out(note, redelivery=True)

    # ------------------------------------------------------------------ store

    def _table(self, resource: str) -> dict[str, Record]:
        if resource not in self._store:
            raise KeyError(f"unknown resource {resource!r}")
        return self._store[resource]

    def _aware_now(self) -> datetime:
        moment = self._clock()
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment

    def _new_id(self) -> str:
        # ObjectId-like: 4 bytes of seconds, 5 random bytes, a 3-byte counter.
        self._counter = (self._counter + 1) % (1 << 24)
        seconds = int(self._aware_now().timestamp()) & 0xFFFFFFFF
        return f"{seconds:08x}{self._machine}{self._counter:06x}"

    def _stamp(self, moment: datetime) -> str:
        return format_timestamp(moment, self.behaviour.timestamp_precision)

    def _incoming(self, fields: Mapping[str, Any]) -> Record:
        """Sent fields less the ones no one sets: the id, the times, expansions."""
        behaviour = self.behaviour
        read_only = {behaviour.id_field, behaviour.created_field, behaviour.updated_field}
        read_only |= {ID_FIELD, CREATED_FIELD, UPDATED_FIELD, "work_types"}
        return {k: copy.deepcopy(v) for k, v in fields.items() if k not in read_only}

    def _insert(self, resource: str, fields: Mapping[str, Any], *, explicit: bool) -> Record:
        behaviour = self.behaviour
        table = self._table(resource)
        now = self._aware_now()
        record_id = self._new_id()
        created = updated = now
        if explicit:
            given = fields.get(behaviour.id_field, fields.get(ID_FIELD))
            if isinstance(given, str) and given:
                record_id = given
            created = self._given_time(fields, behaviour.created_field, CREATED_FIELD, now)
            updated = self._given_time(fields, behaviour.updated_field, UPDATED_FIELD, created)
        body = self._incoming(fields)
        if resource == "work_orders":
            body.setdefault("status", behaviour.default_status)
            body.setdefault("work_type_ids", [])
        # Stored with the canonical names; `_render` shows the behaviour's.
        record: Record = {ID_FIELD: record_id, **body, CREATED_FIELD: created}
        record[UPDATED_FIELD] = updated
        table[record_id] = record
        return record

    @staticmethod
    def _given_time(
        fields: Mapping[str, Any], name: str, canonical: str, default: datetime
    ) -> datetime:
        value = fields.get(name, fields.get(canonical))
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, str):
            parsed = parse_timestamp(value)
            if parsed is None:
                raise ValueError(f"{name} is not an ISO time: {value!r}")
            return parsed
        return default

    def _touch(self, record: Record) -> None:
        # Every accepted write is a change: the incremental listing sorts by this time.
        record[UPDATED_FIELD] = self._aware_now()

    def _render(self, resource: str, record: Record, *, full: bool = False) -> Record:
        behaviour = self.behaviour
        # The id first and the times last, whatever order the fields were written in.
        shown: Record = {behaviour.id_field: record[ID_FIELD]}
        for key, value in record.items():
            if key not in (ID_FIELD, CREATED_FIELD, UPDATED_FIELD):
                shown[key] = copy.deepcopy(value)
        shown[behaviour.created_field] = self._stamp(record[CREATED_FIELD])
        shown[behaviour.updated_field] = self._stamp(record[UPDATED_FIELD])
        if full and resource == "work_orders":
            ids = record.get("work_type_ids")
            shown["work_types"] = [
                {behaviour.id_field: wt, **self.work_types[wt]}
                for wt in (ids if isinstance(ids, list) else [])
                if isinstance(wt, str) and wt in self.work_types
            ]
        return shown

    # ------------------------------------------------------------------ webhooks

    def _changed(self, resource: str, record: Record, verb: str) -> None:
        event = f"{THINGS[resource]}.{verb}"
        if event in self.behaviour.events:
            # The notification is as old as the change it tells of (a delete: now).
            when = self._aware_now() if verb == "DELETE" else record[UPDATED_FIELD]
            self._notify(event, self._render(resource, record), when)

    def _notify(self, event: str, data: Any, created: datetime) -> dict[str, Any]:
        names = {
            "id": NOTIFICATION_ID_FIELD,
            "event": NOTIFICATION_EVENT_FIELD,
            "time": NOTIFICATION_TIME_FIELD,
            "data": NOTIFICATION_DATA_FIELD,
            **self.behaviour.notification_fields,
        }
        notification_id = self._new_id()
        message = {
            names["id"]: notification_id,
            names["event"]: event,
            names["time"]: self._stamp(created),
            names["data"]: copy.deepcopy(data),
        }
        note = Notification(
            id=notification_id,
            event=event,
            created=created,
            body=msgspec.json.encode(message),
            seq=len(self._notifications),
        )
        self._notifications[notification_id] = note
        if self._down or self._session is None:
            self.lost.append(notification_id)
        elif self._lose > 0:
            self._lose -= 1
            self.lost.append(notification_id)
        else:
            self._fan_out(note, redelivery=False)
        return message

    def _fan_out(self, note: Notification, *, redelivery: bool) -> int:
        sent = 0
        for listener in self._listeners.values():
            if not listener.wants(note.event):
                continue
            headers = {"Content-Type": "application/json"}
            if listener.username is not None or listener.password is not None:
                pair = f"{listener.username or ''}:{listener.password or ''}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
            message = WebhookMessage(
                notification_id=note.id,
                listener_id=listener.id,
                url=listener.url,
                event=note.event,
                body=note.body,
                headers=headers,
                seq=note.seq,
            )
            if not redelivery:
                self.webhooks.append(message)
            self._spawn(message, redelivery=redelivery)
            sent += 1
        return sent

    def _source_for(self, message: WebhookMessage, attempt: int) -> str | None:
        sources = self.behaviour.webhook_source_addresses
        if not sources:
            return None
        # In turn over notifications and attempts: a receiver sees every address.
        return sources[(message.seq + attempt - 1) % len(sources)]

    def _webhook_session(self, message: WebhookMessage, attempt: int) -> aiohttp.ClientSession:
        source = self._source_for(message, attempt)
        if source is None:
            return super()._webhook_session(message, attempt)
        session = self._source_sessions.get(source)
        if session is None:
            # Bound to the source address: the receiver sees it as the peer.
            connector = aiohttp.TCPConnector(local_addr=(source, 0))
            session = aiohttp.ClientSession(connector=connector)
            self._source_sessions[source] = session
        return session

    def _retry_policy(self) -> RetryPolicy:
        behaviour = self.behaviour
        return _Schedule(
            webhook_retry_initial_s=behaviour.webhook_retry_unit_s,
            webhook_retry_factor=1.0,
            webhook_retry_max_s=behaviour.webhook_retry_unit_s * behaviour.webhook_max_retries,
            webhook_timeout_s=behaviour.webhook_timeout_s,
        )

    def _retry_delay(self, message: WebhookMessage, attempt: int) -> float:
        # Documented: retry n is attempted n * 10 minutes after the attempt before it.
        return attempt * self.behaviour.webhook_retry_unit_s

    def _may_attempt(self, message: WebhookMessage, attempt: int) -> bool:
        listener = self._listeners.get(message.listener_id)
        return (
            listener is not None
            and listener.enabled
            and attempt <= 1 + self.behaviour.webhook_max_retries
        )

    def _attempt_request(
        self, message: WebhookMessage, attempt: int
    ) -> tuple[str, bytes, dict[str, str]]:
        # Fixed when the notification was made: every retry is byte-identical.
        return message.url, message.body, message.headers

    def _after_attempt(self, message: WebhookMessage, attempt: Attempt) -> bool:
        status = attempt.status
        if self.behaviour.webhook_success == "200":
            ok = status == 200
        else:
            ok = status is not None and 200 <= status < 300
        self.deliveries.append(
            Delivery(
                subscription_id=message.listener_id,
                url=message.url,
                event=message.event,
                attempt=attempt.number,
                body=attempt.body,
                headers=attempt.headers,
                status=status,
                error=attempt.error,
                redelivery=attempt.redelivery,
                notification_id=message.notification_id,
                source=self._source_for(message, attempt.number),
                ok=ok,
            )
        )
        return ok

    async def _deliver(self, message: WebhookMessage, redelivery: bool) -> None:
        jitter = self.behaviour.webhook_jitter_s
        if jitter > 0 and not redelivery:
            # Documented: no order is guaranteed; a random hold lets notifications overtake.
            await asyncio.sleep(self._random.uniform(0.0, jitter))
        await super()._deliver(message, redelivery)

    # ------------------------------------------------------------------ API: transport

    def _errors(self) -> CloudworkProErrors:
        behaviour = self.behaviour
        return CloudworkProErrors(
            bad_request_http_status=behaviour.bad_request_http_status,
            status_body=behaviour.status_body,
        )

    def _bad(self, kind: str) -> _Refused:
        code, message, detail = ERROR_CODES[kind]
        return _Refused(self._errors().bad_request(code, message, detail))

    def _status(self, status: int, headers: Mapping[str, str] | None = None) -> _Refused:
        return _Refused(self._errors().status(status, headers=headers))

    @staticmethod
    def _ok(data: Any) -> web.Response:
        return json_response({"code": 200, "reason": "", "data": data, "success": True})

    def _routes(self) -> list[_Route]:
        b = self.behaviour
        return [
            _Route("token", "POST", b.token_path, None, "json"),
            _Route("list_work_orders", "GET", b.work_orders_path, "work_orders:read", "none"),
            _Route("create_work_order", "POST", b.work_orders_path, "work_orders:write", "json"),
            _Route("get_work_order", "GET", b.work_order_path, "work_orders:read", "none"),
            _Route(
                "update_work_order", b.update_method, b.work_order_path, "work_orders:write", "json"
            ),
            _Route(
                "set_status",
                b.status_method,
                b.work_order_status_path,
                "work_orders:write",
                "json",
            ),
            _Route("upload", "POST", b.work_order_documents_path, "work_orders:write", "multipart"),
            _Route("list_sites", "GET", b.sites_path, "sites:read", "none"),
            _Route("create_site", "POST", b.sites_path, "sites:write", "json"),
            _Route("get_site", "GET", b.sites_path.rstrip("/") + "/{id}", "sites:read", "none"),
            _Route("list_notifications", "GET", b.notifications_path, "notifications:read", "none"),
            _Route("get_notification", "GET", b.notification_path, "notifications:read", "none"),
        ]

    def _match(self, method: str, path: str) -> tuple[_Route, dict[str, str]] | None:
        for route in self._routes():
            if route.method.upper() != method:
                continue
            params = _match_template(route.template, path)
            if params is not None:
                return route, params
        return None

    def _rate_limit(self, client_id: str, now: float) -> web.Response | None:
        behaviour = self.behaviour
        if behaviour.rate_limit_requests is None:
            return None
        limiter = self._limiter
        limiter.limit = behaviour.rate_limit_requests
        limiter.window_s = behaviour.rate_limit_window_s
        limiter.send_retry_after = behaviour.rate_limit_retry_after
        verdict = limiter.check(client_id, now)
        if verdict.admitted:
            return None
        self.rejected_429 += 1
        return self._errors().status(429, headers=verdict.headers)

    def _arrive(self, request: web.Request, at: float) -> _Arrived:
        matched = self._match(request.method, request.path)
        client_id = self._issuer.subject_of_bearer(request.headers.get("Authorization"))
        if client_id is not None and client_id not in self._clients:
            client_id = None
        return _Arrived(matched, client_id)

    def _injected(self, status: int, retry_after: float | None) -> web.Response:
        return self._errors().status(
            status, injected_reason(status), retry_after_headers(retry_after)
        )

    def _admit(self, request: web.Request, state: _Arrived, at: float) -> web.Response | None:
        if state.matched is not None and state.matched[0].name == "token":
            return None  # the token endpoint needs no token and is not rate-limited
        if state.client_id is None:
            return self._errors().status(401)
        return self._rate_limit(state.client_id, at)

    async def _receive(self, request: web.Request, arrival: Arrival[_Arrived]) -> None:
        state = arrival.state
        state.content_type = request.headers.get("Content-Type")
        if _mimetype(state.content_type) == "multipart/form-data":
            try:
                state.form = await request.post()
            except ValueError:
                state.form = None
        else:
            arrival.body = await request.read()

    async def _dispatch(self, request: web.Request, arrival: Arrival[_Arrived]) -> web.Response:
        state = arrival.state
        call = _Call(
            method=request.method,
            path=request.path,
            query=request.query,
            query_string=request.query_string,
            content_type=state.content_type,
            raw=arrival.body,
            form=state.form,
            client_id=state.client_id,
        )
        if state.matched is None:
            return self._errors().status(404)
        try:
            return self._handle(call, *state.matched)
        except _Refused as refused:
            return refused.response

    def _log_request(
        self, request: web.Request, arrival: Arrival[_Arrived], response: web.Response
    ) -> None:
        client_id = arrival.state.client_id
        self.requests.append(
            RequestLogEntry(
                method=request.method,
                path=request.path,
                query=request.query_string,
                status=response.status,
                code=_envelope_code(response),
                auth_ok=client_id is not None,
                client_id=client_id,
                at=arrival.at,
                injected=arrival.injected is not None,
            )
        )

    def _handle(self, call: _Call, route: _Route, params: dict[str, str]) -> web.Response:
        call.params = params
        if route.permission is not None:
            assert call.client_id is not None  # a request without a good token got its 401
            if route.permission not in self._clients[call.client_id].permissions:
                raise self._status(403)
        self._check_content_type(call, route)
        handler: Callable[[_Call], web.Response] = getattr(self, f"_api_{route.name}")
        return handler(call)

    def _check_content_type(self, call: _Call, route: _Route) -> None:
        mimetype = _mimetype(call.content_type)
        if route.body == "multipart":
            if mimetype != "multipart/form-data" or call.form is None:
                raise self._status(422)
        elif route.body == "json":
            if mimetype != "application/json":
                raise self._status(422)
        elif self.behaviour.content_type_checked_on == "all" and mimetype != "application/json":
            raise self._status(422)

    def _json_object(self, call: _Call) -> dict[str, Any]:
        try:
            body = msgspec.json.decode(call.raw) if call.raw.strip() else None
        except msgspec.DecodeError:
            body = None
        if not isinstance(body, dict):
            raise self._bad("body")
        return body

    def _lookup(self, resource: str, record_id: str) -> Record:
        if not is_object_id(record_id) and record_id not in self._store[resource]:
            if self.behaviour.malformed_id == "bad_request":
                raise self._bad("id")
            raise self._status(404)
        record = self._store[resource].get(record_id)
        if record is None:
            raise self._status(404)
        return record

    def _record_call(self, call: _Call, resource: str, action: str, record_id: str) -> None:
        assert call.client_id is not None
        body: Any = None
        if call.raw.strip():
            try:
                body = msgspec.json.decode(call.raw)
            except msgspec.DecodeError:
                body = None
        self.calls.append(
            RecordedCall(
                method=call.method,
                path=call.path,
                resource=resource,
                action=action,
                record_id=record_id,
                client_id=call.client_id,
                json=body,
            )
        )

    # ------------------------------------------------------------------ API: token

    def _api_token(self, call: _Call) -> web.Response:
        behaviour = self.behaviour
        body = self._json_object(call)
        given = {
            credential: body.get(body_field)
            for body_field, credential in behaviour.token_request_fields.items()
        }
        client_id, secret = given.get("client_id"), given.get("client_secret")
        client = self._clients.get(client_id) if isinstance(client_id, str) else None
        if client is None or not isinstance(secret, str) or client.secret != secret:
            if behaviour.token_refused == "bad_request":
                raise self._bad("credentials")
            raise self._status(401)
        assert isinstance(client_id, str)
        # Read per issue, so that a test can change them on a running fake.
        self._issuer.lifetime_s = behaviour.token_lifetime_s
        self._issuer.with_exp = behaviour.token_format == "jwt"
        self._issuer.opaque = behaviour.token_format == "opaque"
        token = self._issuer.issue(client_id)
        answer: dict[str, Any] = {behaviour.token_key: token}
        if behaviour.token_expires_in:
            lifetime = behaviour.token_lifetime_s
            answer["expires_in"] = int(lifetime) if float(lifetime).is_integer() else lifetime
        if behaviour.token_answer == "bare":
            return json_response(answer)
        return self._ok(answer)

    # ------------------------------------------------------------------ API: work orders

    def _api_list_work_orders(self, call: _Call) -> web.Response:
        full = self.behaviour.summary_full_on_lists and call.query.get("summary") == "full"
        return self._list(call, "work_orders", full=full)

    def _api_get_work_order(self, call: _Call) -> web.Response:
        record = self._lookup("work_orders", call.params["id"])
        full = call.query.get("summary") == "full"
        return self._ok(self._render("work_orders", record, full=full))

    def _check_work_order(self, fields: Mapping[str, Any], *, required: bool) -> None:
        behaviour = self.behaviour
        if required:
            for name in behaviour.work_order_required:
                if fields.get(name) in (None, "", []):
                    raise self._bad("required")
        else:
            for name in behaviour.work_order_required:
                if name in fields and fields[name] in (None, "", []):
                    raise self._bad("required")
        if "work_type_ids" in fields:
            ids = fields["work_type_ids"]
            if not isinstance(ids, list) or not all(
                isinstance(i, str) and i in self.work_types for i in ids
            ):
                raise self._bad("work_types")
        site_id = fields.get("site_id")
        if (
            behaviour.check_site_id
            and site_id is not None
            and (not isinstance(site_id, str) or site_id not in self._store["sites"])
        ):
            raise self._bad("site")
        if "status" in fields and fields["status"] not in behaviour.work_order_statuses:
            raise self._bad("status")

    def _created(self, call: _Call, resource: str, record: Record) -> web.Response:
        self._record_call(call, resource, "create", record[ID_FIELD])
        self._changed(resource, record, "CREATE")
        if self.behaviour.create_answer == "id":
            return self._ok(record[ID_FIELD])
        return self._ok(self._render(resource, record))

    def _api_create_work_order(self, call: _Call) -> web.Response:
        body = self._incoming(self._json_object(call))
        self._check_work_order(body, required=True)
        record = self._insert("work_orders", body, explicit=False)
        return self._created(call, "work_orders", record)

    def _api_update_work_order(self, call: _Call) -> web.Response:
        record = self._lookup("work_orders", call.params["id"])
        body = self._incoming(self._json_object(call))
        replace = self.behaviour.update_mode == "replace"
        self._check_work_order(body, required=replace)
        if replace:
            kept = {k: record[k] for k in (ID_FIELD, "status", CREATED_FIELD) if k in record}
            record.clear()
            record.update(kept)
            record.setdefault("work_type_ids", [])
        for key, value in body.items():
            record[key] = value
        self._touch(record)
        self._record_call(call, "work_orders", "update", record[ID_FIELD])
        self._changed("work_orders", record, "UPDATE")
        return self._ok(self._render("work_orders", record))

    def _api_set_status(self, call: _Call) -> web.Response:
        record = self._lookup("work_orders", call.params["id"])
        body = self._json_object(call)
        status = body.get("status")
        if not isinstance(status, str) or status not in self.behaviour.work_order_statuses:
            raise self._bad("status")
        record["status"] = status
        self._touch(record)
        self._record_call(call, "work_orders", "set_status", record[ID_FIELD])
        self._changed("work_orders", record, "UPDATE")
        # Documented, to the letter.
        return self._ok(
            f"Status updated successfully to: '{status}' for work order with ID: {record[ID_FIELD]}"
        )

    def _api_upload(self, call: _Call) -> web.Response:
        behaviour = self.behaviour
        record = self._lookup("work_orders", call.params["id"])
        assert call.form is not None  # checked with the Content-Type
        part = call.form.get(behaviour.document_field)
        url_field = behaviour.document_url_field
        url = call.form.get(url_field) if url_field is not None else None
        if isinstance(part, web.FileField):
            filename, content_type, data = part.filename, part.content_type, part.file.read()
            field_name = behaviour.document_field
        elif isinstance(part, bytes | bytearray):
            # A file part without a filename: its bytes all the same.
            filename, content_type, data = None, None, bytes(part)
            field_name = behaviour.document_field
        elif isinstance(url, str) and url and url_field is not None:
            filename, content_type, data = None, None, b""
            field_name = url_field
        else:
            raise self._bad("file")
        url = url if field_name == url_field and isinstance(url, str) else None
        now = self._aware_now()
        upload = Upload(
            id=self._new_id(),
            work_order_id=record[ID_FIELD],
            field=field_name,
            filename=filename,
            content_type=content_type,
            data=data,
            url=url,
            fields={k: v for k, v in call.form.items() if isinstance(v, str) and k != field_name},
            created=now,
        )
        self.uploads.append(upload)
        self._touch(record)
        self._record_call(call, "work_orders", "upload", record[ID_FIELD])
        self._changed("work_orders", record, "UPDATE")
        return self._ok(
            {
                behaviour.id_field: upload.id,
                "work_order_id": upload.work_order_id,
                "name": upload.filename,
                "content_type": upload.content_type,
                "size": len(data),
                "url": upload.url,
                behaviour.created_field: self._stamp(now),
            }
        )

    # ------------------------------------------------------------------ API: sites

    def _api_list_sites(self, call: _Call) -> web.Response:
        return self._list(call, "sites")

    def _api_get_site(self, call: _Call) -> web.Response:
        return self._ok(self._render("sites", self._lookup("sites", call.params["id"])))

    def _api_create_site(self, call: _Call) -> web.Response:
        body = self._incoming(self._json_object(call))
        for name in self.behaviour.site_required:
            if body.get(name) in (None, "", []):
                raise self._bad("required")
        record = self._insert("sites", body, explicit=False)
        return self._created(call, "sites", record)

    # ------------------------------------------------------------------ API: notifications

    def _kept(self) -> list[Notification]:
        oldest = self._aware_now() - timedelta(seconds=self.behaviour.notification_retention_s)
        return [n for n in self._notifications.values() if n.created >= oldest]

    def _api_list_notifications(self, call: _Call) -> web.Response:
        items = [msgspec.json.decode(n.body) for n in self._kept()]
        id_name = self.behaviour.notification_fields.get("id", NOTIFICATION_ID_FIELD)
        return self._paged(call, "notifications", items, id_name)

    def _api_get_notification(self, call: _Call) -> web.Response:
        wanted = call.params["id"]
        note = next((n for n in self._kept() if n.id == wanted), None)
        if note is None:
            # Documented: older than 3 months (or unknown) is 404.
            raise self._status(404)
        return self._ok(msgspec.json.decode(note.body))

    # ------------------------------------------------------------------ API: listings

    def _list(self, call: _Call, resource: str, *, full: bool = False) -> web.Response:
        store = self._store[resource]
        items = [self._render(resource, store[key], full=full) for key in store]
        return self._paged(call, resource, items, self.behaviour.id_field)

    def _paged(self, call: _Call, resource: str, items: list[Record], id_name: str) -> web.Response:
        behaviour = self.behaviour
        query = call.query
        try:
            sort_field, descending, sort_option = self._sort_of(query, id_name)
            conditions, operator, filter_option = self._conditions_of(query)

            def key(item: Record) -> list[Any]:
                # Unique along the listing (the id breaks ties), as a keyset cursor needs.
                return [*_rank(item.get(sort_field, _MISSING)), *_rank(item.get(id_name))]

            pages = CursorPages(
                default_limit=behaviour.default_limit,
                max_limit=behaviour.max_limit,
                cursor_format=behaviour.cursor_format,
                key=key,
                invalid_cursor=behaviour.invalid_cursor,
                on_invalid=behaviour.invalid_paging,
                no_cursor=behaviour.no_cursor,
            )
            kept = [item for item in items if self._passes(item, conditions, operator)]
            kept.sort(key=key, reverse=descending)
            page = pages.paginate(kept, query, descending=descending)
        except PageQueryError:
            raise self._bad("query") from None
        options: dict[str, Any] = {}
        if sort_option is not None:
            options["sortBy"] = sort_option
        if filter_option is not None:
            options["filterBy"] = filter_option
        served = self._pages_served.get(resource, 0) + 1
        self._pages_served[resource] = served
        response = json_response(page.body(options))
        if self.after_list_page is not None:
            self.after_list_page(resource, served)
        return response

    def _sort_of(
        self, query: Mapping[str, str], id_name: str
    ) -> tuple[str, bool, dict[str, str] | None]:
        """(field, descending, the `options.sortBy` echo) of the request."""
        raw = query.get("sortBy")
        shown = raw is not None
        if raw is None:
            raw = self.behaviour.default_sort or f"{id_name}:asc"
        column, colon, direction = raw.partition(":")
        column, direction = column.strip(), direction.strip().lower()
        if not colon or not column or direction not in ("asc", "desc"):
            raise PageQueryError("sortBy", "sortBy must be column:asc or column:desc")
        option = {"field": column, "value": direction} if shown else None
        return column, direction == "desc", option

    def _conditions_of(
        self, query: MultiMapping[str]
    ) -> tuple[list[_Condition], str, list[dict[str, Any]] | None]:
        """The filters of the request: its conditions, the operator, the filterBy echo."""
        conditions: list[_Condition] = []
        option: list[dict[str, Any]] | None = None
        raw = query.get("filterBy")
        if raw is not None:
            try:
                decoded = msgspec.json.decode(raw)
            except msgspec.DecodeError:
                raise PageQueryError("filterBy", "filterBy must be a JSON object") from None
            if not isinstance(decoded, dict):
                raise PageQueryError("filterBy", "filterBy must be a JSON object")
            conditions += [_Condition("eq", k, (v,)) for k, v in decoded.items()]
            option = [{"field": k, "value": v} for k, v in decoded.items()]
        operator = (query.get("filterOperator") or "and").strip().lower()
        if operator not in ("and", "or"):
            raise PageQueryError("filterOperator", "filterOperator must be and or or")
        for kind in ("in", "between"):
            # Documented: "You can send as many `in` operators as you want" (and `between`).
            for text in query.getall(kind, []):
                if not text:
                    continue
                try:
                    column, parts = _bracketed(text)
                except ValueError:
                    raise PageQueryError(kind, f"{kind} must be column![...]") from None
                if kind == "between":
                    # Documented: "only the first two array elements".
                    if len(parts) < 2:
                        raise PageQueryError(kind, "between needs a start and an end")
                    conditions.append(_Condition("between", column, tuple(parts[:2])))
                else:
                    conditions.append(_Condition("in", column, tuple(parts)))
        return conditions, operator, option

    def _passes(self, item: Record, conditions: Sequence[_Condition], operator: str) -> bool:
        if not conditions:
            return True
        verdicts = [(c.kind, self._holds(item, c)) for c in conditions]
        if self.behaviour.filter_operator_scope == "all":
            results = [v for _, v in verdicts]
            return any(results) if operator == "or" else all(results)
        by = [v for kind, v in verdicts if kind == "eq"]
        rest = [v for kind, v in verdicts if kind != "eq"]
        group = (any(by) if operator == "or" else all(by)) if by else True
        return group and all(rest)

    def _holds(self, item: Record, condition: _Condition) -> bool:
        value = item.get(condition.field, _MISSING)
        if condition.kind == "eq":
            wanted = condition.values[0]
            if self.behaviour.filter_by_match == "contains" and isinstance(value, str):
                return _text(wanted).lower() in value.lower()
            return _equal(value, wanted)
        if condition.kind == "in":
            return any(_equal(value, wanted) for wanted in condition.values)
        start, end = condition.values
        inclusive = self.behaviour.between_end == "inclusive"
        if isinstance(value, list):
            return any(_between(v, start, end, inclusive) for v in value)
        return _between(value, start, end, inclusive)

    # ------------------------------------------------------------------ control API (/_fake)

    @staticmethod
    def _ctl_resource(request: web.Request) -> str:
        resource = request.match_info["resource"]
        if resource not in RESOURCES:
            raise web.HTTPNotFound(text=f"no resource {resource}; try one of {RESOURCES}")
        return resource

    async def _ctl_records(self, request: web.Request) -> web.Response:
        """GET /_fake/<resource>: every record, unpaged."""
        return json_response(self.records(self._ctl_resource(request)))

    async def _ctl_get(self, request: web.Request) -> web.Response:
        """GET /_fake/<resource>/<id>: one record (expanded)."""
        found = self.get_record(self._ctl_resource(request), request.match_info["id"], full=True)
        if found is None:
            raise web.HTTPNotFound(text="no such record")
        return json_response(found)

    async def _ctl_create(self, request: web.Request) -> web.Response:
        """POST /_fake/<resource> {fields}: create as a person would (sends the webhook)."""
        resource = self._ctl_resource(request)
        fields = await read_json_object(request)
        try:
            return json_response(self.create_record(resource, fields))
        except ValueError as error:
            raise web.HTTPBadRequest(text=str(error)) from None

    async def _ctl_update(self, request: web.Request) -> web.Response:
        """PATCH|PUT /_fake/<resource>/<id> {fields}: change as a person would."""
        resource = self._ctl_resource(request)
        fields = await read_json_object(request)
        try:
            return json_response(self.update_record(resource, request.match_info["id"], fields))
        except KeyError:
            raise web.HTTPNotFound(text="no such record") from None

    async def _ctl_delete(self, request: web.Request) -> web.Response:
        """DELETE /_fake/<resource>/<id>: delete as a person would."""
        resource = self._ctl_resource(request)
        try:
            self.delete_record(resource, request.match_info["id"])
        except KeyError:
            raise web.HTTPNotFound(text="no such record") from None
        return web.Response(status=204)

    async def _ctl_work_types(self, request: web.Request) -> web.Response:
        """GET /_fake/work_types: the work types work orders may name."""
        return json_response(self.work_types)

    async def _ctl_uploads(self, request: web.Request) -> web.Response:
        """GET /_fake/uploads: the documents received (their bytes as base64)."""
        return json_response(self.uploads)

    async def _ctl_deliveries(self, request: web.Request) -> web.Response:
        """GET /_fake/deliveries: every webhook attempt."""
        return json_response(self.deliveries)

    async def _ctl_notifications(self, request: web.Request) -> web.Response:
        """GET /_fake/notifications: every notification stored (also past the retention)."""
        return json_response(self.notifications())

    async def _ctl_add_listener(self, request: web.Request) -> web.Response:
        """POST /_fake/listeners {"url", "username"?, "password"?, "events"?}."""
        body = await read_json_object(request)
        url = body.get("url")
        events = body.get("events")
        if not isinstance(url, str) or (events is not None and not isinstance(events, list)):
            raise web.HTTPBadRequest(text="need url, and events as a list if given")
        listener = self.add_listener(
            url,
            username=body.get("username"),
            password=body.get("password"),
            events=[str(e) for e in events] if events is not None else None,
        )
        return json_response(listener)

    async def _ctl_webhooks_down(self, request: web.Request) -> web.Response:
        """POST /_fake/webhooks_down {"down": true|false}."""
        body = await read_json_object(request)
        self.webhooks_down(bool(body.get("down", True)))
        return web.Response(status=204)

    async def _ctl_redeliver(self, request: web.Request) -> web.Response:
        """POST /_fake/redeliver/<notification id>: send it again, byte for byte."""
        try:
            sent = self.redeliver(request.match_info["id"])
        except KeyError:
            raise web.HTTPNotFound(text="no such notification") from None
        return json_response({"listeners": sent})
