"""A fake MOCO server on aiohttp, for tests, demos and `workbridge dev`.

It follows MOCO's API document (vendor-docs/002_61b9e854d9d14c8d.txt): `Token token=` auth,
15 requests per 15 s, `X-Page`/`X-Per-Page`/`X-Total`/`Link: rel="next"` pagination, `sort_by`,
`updated_after`, `custom_properties` that are replaced as a whole, and HMAC-SHA256-signed
webhooks that are retried until a 2xx and disabled after 500 consecutive failures. Listings
carry a `Date` from the fake's clock (the clock that stamps `updated_at`), as a server would.

Wherever the document is silent the fake has to guess. Every guess lives in ONE place,
`FakeMocoBehaviour` just below, each marked `# not in the vendor document`, so a reader sees
what is documented and what is assumed, and a test can flip an assumption via the constructor.

The shared parts come from the fake kit, set from `FakeMocoBehaviour` on every request:
`LinkHeaderPages` (adapters/fakekit_pages.py) cuts listings, `FakeRateLimit`
(adapters/fakekit_limits.py) is the sliding window, `MessageErrors`
(adapters/fakekit_errors.py) is the `{"message": …}` error body, `StaticKeys`
(adapters/fakekit_auth.py) checks the `Token token=` keys, and `PipelineServer`
(adapters/fakekit_pipeline.py) runs every request through faults, the arrival checks, the
delay and the log.

Besides the API the fake offers test handles: `fail_next`/`delay_next` fault injection,
`calls`/`requests`/`deliveries` logs, `max_requests_in_any_window`, simulated UI changes
(`create_record`, `update_record`, `delete_record`), `put_raw_record` for a record in a shape
MOCO should not list, `after_list_page` to change records while a listing is being paged, and
a small unauthenticated control API under `/_fake/` (the kit's `fail_next`, `delay_next`,
`requests`, `calls`, and MOCO's own records and subscriptions).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import re
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import Any, Literal

import msgspec
from aiohttp import web

from adapters.fakekit import (
    Attempt,
    DeliveryRecord,
    RetryPolicy,
    json_response,
    read_json_object,
    retry_after_headers,
)
from adapters.fakekit_auth import KeyHeader, StaticKeys
from adapters.fakekit_control import mount_control_routes
from adapters.fakekit_errors import MessageErrors
from adapters.fakekit_limits import FakeRateLimit, max_in_any_window
from adapters.fakekit_logs import CallLogEntry
from adapters.fakekit_logs import RequestLogEntry as BaseRequestLogEntry
from adapters.fakekit_pages import LinkHeaderPages, PageQueryError
from adapters.fakekit_pipeline import Arrival, PipelineServer, injected_reason

Record = dict[str, Any]
"""A MOCO entity as the API shows it: `id`, `created_at`, `updated_at`, `custom_properties`, …"""


class FakeMocoBehaviour(msgspec.Struct, frozen=True, kw_only=True):
    """Every assumption the fake makes where MOCO's API document is silent.

    The defaults are the fake's best guesses; pass another instance to `FakeMoco` to test a
    client against a different reading. Fields marked "vendor document" are documented values
    kept here only so that tests can shrink them (e.g. 500 failures).

    Validation rules (`validation_rules`) map resource -> field -> rule, where a rule is
    `"string"` (non-empty str), `"text"` (any str), `"number"` (int or float, not bool),
    `"date"` (`YYYY-MM-DD`), `"ref:<resource>"` (int id of an existing record) or
    `"enum:a|b|c"`. On POST every listed field is required; on PUT the given ones are checked.
    """

    # --- Resources and paths -------------------------------------------------------------
    # URL segment under /api/v1 -> resource name. The document shows /projects(.json),
    # /customers and /offers; that /customers is the companies resource, and the paths
    # /companies, /activities, /users, /deals, /invoices are guesses.
    resource_paths: dict[str, str] = msgspec.field(  # not in the vendor document
        default_factory=lambda: {
            "projects": "projects",
            "offers": "offers",
            "customers": "companies",
            "companies": "companies",
            "activities": "activities",
            "users": "users",
            "deals": "deals",
            "invoices": "invoices",
        }
    )
    # resource -> X-Moco-Target. The document names Activity, Customer and Project; that
    # every company (also suppliers) is "Customer" and the other names are guesses.
    webhook_targets: dict[str, str] = msgspec.field(  # not in the vendor document
        default_factory=lambda: {
            "activities": "Activity",
            "projects": "Project",
            "companies": "Customer",
            "users": "User",
            "deals": "Deal",
            "offers": "Offer",
            "invoices": "Invoice",
        }
    )
    # Resources that accept POST/PUT/DELETE through the API; the rest answer
    # `read_only_resource_status`.
    writable_resources: tuple[str, ...] = (  # not in the vendor document
        "activities",
        "projects",
        "companies",
    )
    read_only_resource_status: int = 405  # not in the vendor document
    # Required fields and their checks (see the class docstring for the rule syntax).
    validation_rules: dict[str, dict[str, str]] = msgspec.field(  # not in the vendor document
        default_factory=lambda: {
            "activities": {"date": "date", "project_id": "ref:projects"},
            "projects": {"name": "string", "customer_id": "ref:companies"},
            "companies": {"name": "string", "type": "enum:customer|supplier|organization"},
        }
    )
    # The document's warning ("all of them have to be provided") can also be read as: an
    # update that sends no custom_properties at all erases them. True makes the fake do so.
    update_without_custom_erases: bool = False  # not in the vendor document
    # Custom field values must be strings, or lists of strings for multiple choice (the
    # document says they are "encoded as strings"); rejecting anything else with 422 is a guess.
    strict_custom_property_types: bool = True  # not in the vendor document
    # Fields a client cannot set; they are silently ignored in POST/PUT bodies.
    read_only_fields: tuple[str, ...] = (  # not in the vendor document
        "id",
        "created_at",
        "updated_at",
    )
    # Fields the API accepts that no rule mentions are stored as sent.
    store_unknown_fields: bool = True  # not in the vendor document

    # --- Status codes ----------------------------------------------------------------------
    # The document's example responses are "usually the 200 OK response", also for POST.
    create_status: int = 200  # not in the vendor document
    update_status: int = 200  # not in the vendor document
    delete_status: int = 204  # not in the vendor document
    # Malformed query parameters (updated_after, page, per_page, sort_by).
    invalid_query_status: int = 422  # not in the vendor document
    # A body that is not a JSON object.
    invalid_json_status: int = 400  # not in the vendor document
    # An X-IMPERSONATE-USER-ID that is not an integer. Any integer is accepted (the fake has
    # no notion of the "Staff" permission the document requires).
    invalid_impersonation_status: int = 422  # not in the vendor document

    # --- Authentication and identity -------------------------------------------------------
    # User id behind the constructor's api_key (used for user_id and X-Moco-User-Id).
    api_key_user_id: int = 1  # not in the vendor document
    # First id handed out per resource (ids count up per resource).
    first_id: int = 1  # not in the vendor document

    # --- Rate limiting (the document: 15 requests per 15 s, then 429) --------------------------
    # The limit applies per API key (401 requests count for nobody); False = one global limit.
    rate_limit_per_key: bool = True  # not in the vendor document
    # A 429'd request does not take a slot of the sliding window (else a client that keeps
    # knocking would be locked out for good).
    rate_limit_counts_rejected: bool = False  # not in the vendor document
    # Send `Retry-After: <seconds until the oldest request leaves the window, rounded up>`.
    send_retry_after: bool = True  # not in the vendor document

    # --- Lists -----------------------------------------------------------------------------
    # Page size without per_page: vendor document ("a common default of 100 entries per
    # page"). "Common" leaves room for resources that page otherwise, hence a knob.
    per_page_default: int = 100
    # updated_after keeps records with updated_at > updated_after (strict); True keeps >=.
    updated_after_inclusive: bool = False  # not in the vendor document
    # The next-page Link repeats the request's other query parameters (the document's example
    # has no other parameters); False links with page=N+1 only.
    link_keeps_query_params: bool = True  # not in the vendor document
    # Upper bound for per_page; None = no bound.
    per_page_max: int | None = None  # not in the vendor document
    # Order when there is no sort_by (the document gives none); ties keep id-ascending order.
    default_sort_field: str = "id"  # not in the vendor document
    default_sort_descending: bool = False  # not in the vendor document
    # Fields that sort_by accepts; None = every field. The document shows `sort_by=title desc`
    # on offers only. A sort_by on another field is ignored: the listing keeps the default order.
    sortable_fields: tuple[str, ...] | None = None  # not in the vendor document

    # --- Updates ---------------------------------------------------------------------------
    # A PUT or UI update that changes nothing still bumps updated_at and fires a webhook.
    bump_on_noop_update: bool = True  # not in the vendor document
    # MOCO documents no Idempotency-Key: a repeated POST creates a second record. True makes
    # the fake replay the first answer for a repeated (key, method, path, Idempotency-Key).
    honour_idempotency_key: bool = False  # not in the vendor document

    # --- Webhooks (the document: 2xx = success, else retried; receiver has 10 s; disabled
    # after 500 consecutive failures) -------------------------------------------------------
    # API writes fire webhooks like UI changes, with X-Moco-User-Id = the acting user
    # (FIELD-NOTES say so, the vendor document does not).
    webhooks_for_api_changes: bool = True  # not in the vendor document
    # Body of a delete event: the record as it was before deletion ("record") or {"id": …}.
    delete_webhook_body: Literal["record", "id_only"] = "record"  # not in the vendor document
    # Retry schedule after a failed attempt: initial * factor**(attempt-1), capped. MOCO's
    # real schedule is unknown; the default is fast so tests finish.
    webhook_retry_initial_s: float = 0.2  # not in the vendor document
    webhook_retry_factor: float = 2.0  # not in the vendor document
    webhook_retry_max_s: float = 5.0  # not in the vendor document
    # Per-attempt timeout: vendor document ("within 10 seconds").
    webhook_timeout_s: float = 10.0
    # Consecutive failed attempts that disable a subscription: vendor document (500).
    webhook_max_consecutive_failures: int = 500

    def __post_init__(self) -> None:
        if self.per_page_default < 1:
            raise ValueError("per_page_default must be >= 1")


def sign_webhook(body: bytes, secret: str) -> str:
    """Return MOCO's `X-Moco-Signature`: hex HMAC-SHA256 of the raw body.

    The key is the 32-character hex string itself (its ASCII bytes, not the decoded 16 bytes),
    exactly as in the document's `openssl sha256 -hmac "<secret>"` example.
    """
    return hmac.new(secret.encode("ascii"), body, hashlib.sha256).hexdigest()


def format_timestamp(moment: datetime) -> str:
    """MOCO's `created_at`/`updated_at` form: UTC, second precision, `Z` suffix.

    Second precision is deliberate: several records then share one timestamp, which is what
    makes `updated_after` boundaries worth testing.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stamp(record: Record) -> datetime | None:
    value = record.get("updated_at")
    return _parse_timestamp(value) if isinstance(value, str) else None


def _parse_timestamp(value: str) -> datetime:
    """Parse ISO 8601; a value without offset is taken as UTC (the document says "in UTC")."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


class RecordedCall(CallLogEntry, kw_only=True):
    """One accepted (2xx) mutating API call: what a test counts to see side effects."""

    resource: str
    record_id: int | None
    status: int
    headers: dict[str, str]
    impersonate_user_id: str | None
    idempotency_key: str | None

    @property
    def idempotency_key_sent(self) -> bool:
        """Whether the client sent an `Idempotency-Key` header (MOCO ignores it)."""
        return self.idempotency_key is not None


class RequestLogEntry(BaseRequestLogEntry, kw_only=True):
    """One request to /api/v1 with the status it got and its query string."""

    query: str


class Subscription(msgspec.Struct, kw_only=True):
    """A webhook subscription; `target`/`event` may be `"*"`."""

    id: int
    target: str
    event: str
    url: str
    enabled: bool = True
    consecutive_failures: int = 0

    def matches(self, target: str, event: str) -> bool:
        """Whether a change of `target` with `event` goes to this subscription."""
        return self.target in ("*", target) and self.event in ("*", event)


class WebhookMessage(msgspec.Struct, kw_only=True):
    """One webhook as fired: body and headers are fixed and re-sent unchanged on retries."""

    subscription_id: int
    url: str
    target: str
    event: str
    body: bytes
    headers: dict[str, str]


class Delivery(DeliveryRecord, kw_only=True):
    """One delivery attempt to a MOCO subscriber (with MOCO's X-Moco-Target)."""

    target: str

    @property
    def ok(self) -> bool:
        """Whether the receiver answered 2xx."""
        return self.status is not None and 200 <= self.status < 300


class _ApiError(Exception):
    """Ends a handler with `{"message": ...}` and a status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_ERRORS = MessageErrors()


def _message(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return _ERRORS.response(status, message, headers)


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Documented: `Authorization: Token token=YOUR_API_KEY`; the key as sent, spaces included.
_API_KEY = KeyHeader("Authorization", "Token token=")

Identity = tuple[str, int] | None
"""(api key, user id) of a request with a valid key, else None."""


def _sort_key(value: Any) -> tuple[int, Any]:
    # Records may hold mixed types or None under one field; rank by type first so sorting
    # never raises, then by value.
    if value is None:
        return (0, 0)
    if isinstance(value, bool | int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, str(value))


class FakeMoco(PipelineServer[WebhookMessage, Identity]):
    """A fake MOCO API server; see the module docstring and `FakeMocoBehaviour`.

    Public state for tests: `calls` (accepted mutating API calls), `requests` (every
    /api/v1 request with its status), `deliveries` (every webhook attempt), `webhooks`
    (every fired webhook), `subscriptions`, `rejected_429` (rate-limiter rejections, not
    injected ones), `request_times` (monotonic times of requests admitted by the limiter),
    `arrival_times` (monotonic times of every request carrying a valid key).

    Lifecycle, `control_url`, `fail_next`/`delay_next`, `resend_last`,
    `wait_deliveries_idle` and the request pipeline come from the kit
    (`adapters.fakekit_pipeline.PipelineServer`). Here `fail_next` answers
    `{"message": "injected failure (<status>)"}` even without a valid key; such requests take
    no rate-limit slot but do count in `arrival_times`. With `delay_next` everything is
    decided on arrival (rate limit, injected failure) and the handling and any write happen
    after the delay.
    """

    _server_name = "FakeMoco"
    _base_path = "/api/v1"

    def __init__(
        self,
        *,
        api_key: str,
        webhook_secret: str,
        rate_limit: tuple[int, float] | None = (15, 15.0),
        behaviour: FakeMocoBehaviour | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """Create the fake (not yet listening; call `start` or use `async with`).

        `webhook_secret` must be 32 hex characters, as MOCO shows it. `rate_limit` is
        (requests, window seconds), None for no limit. `clock` supplies `created_at`,
        `updated_at` and `X-Moco-Timestamp`; the rate limit always uses the monotonic clock.
        The page size of a listing without `per_page` is the behaviour's `per_page_default`.
        """
        if not re.fullmatch(r"[0-9a-fA-F]{32}", webhook_secret):
            raise ValueError("webhook_secret must be 32 hexadecimal characters")
        super().__init__()
        self.behaviour = behaviour or FakeMocoBehaviour()
        self.webhook_secret = webhook_secret
        self.rate_limit = rate_limit
        self._clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self._api_keys = StaticKeys(_API_KEY, {api_key: self.behaviour.api_key_user_id})

        resources = set(self.behaviour.resource_paths.values())
        self._store: dict[str, dict[int, Record]] = {name: {} for name in resources}
        self._next_id: dict[str, int] = dict.fromkeys(resources, self.behaviour.first_id)
        # Its budget and switches are set from `rate_limit` and `behaviour` on every request
        # (see `_rate_limit`); the fake passes each request's arrival time.
        self._limiter = FakeRateLimit(limit=0, window_s=0.0, clock=time.monotonic)
        self._idempotent: dict[tuple[str, str, str, str], tuple[int, bytes]] = {}

        self.calls: list[RecordedCall] = []
        self.requests: list[RequestLogEntry] = []
        self.request_times: list[float] = []
        self.arrival_times: list[float] = []
        self.rejected_429 = 0
        self.subscriptions: list[Subscription] = []
        self.deliveries: list[Delivery] = []
        # Called with (resource, page number) right after a listing page is cut, so a test
        # can change records "while the listing is being paged".
        self.after_list_page: Callable[[str, int], None] | None = None

    # ------------------------------------------------------------------ lifecycle

    def _build_app(self) -> web.Application:
        app = web.Application()
        # The fixed /_fake/ paths are registered before /_fake/{resource}: aiohttp matches in
        # registration order, and "fail_next" or "subscriptions" is not a resource.
        mount_control_routes(app, self)
        app.router.add_post("/_fake/subscriptions", self._ctl_subscribe)
        app.router.add_post("/_fake/{resource}", self._ctl_create)
        app.router.add_put("/_fake/{resource}/{id}", self._ctl_update)
        app.router.add_delete("/_fake/{resource}/{id}", self._ctl_delete)
        app.router.add_route("*", "/api/v1/{tail:.*}", self._api)
        return app

    # ------------------------------------------------------------------ test handles

    def add_api_key(self, api_key: str, user_id: int) -> None:
        """Accept another API key, belonging to `user_id` (each key has its own rate limit)."""
        self._api_keys.add(api_key, user_id)

    def max_requests_in_any_window(self, window_s: float) -> int:
        """Most requests with a valid key (whatever their answer) in any `[t, t+window_s)`."""
        return max_in_any_window(self.arrival_times, window_s)

    def records(self, resource: str) -> list[Record]:
        """Copies of all records of a resource, by id."""
        store = self._store[self._resource(resource)]
        return [copy.deepcopy(store[key]) for key in sorted(store)]

    def get_record(self, resource: str, record_id: int) -> Record | None:
        """A copy of one record, or None."""
        record = self._store[self._resource(resource)].get(record_id)
        return copy.deepcopy(record) if record is not None else None

    # ------------------------------------------------------------------ simulated UI changes

    def create_record(self, resource: str, fields: Mapping[str, Any], user_id: int = 1) -> Record:
        """Create a record as a human in MOCO would, and fire `create` webhooks.

        No validation, so tests can build any state; `fields` may carry an explicit `id`.
        """
        name = self._resource(resource)
        record = self._insert(name, copy.deepcopy(dict(fields)))
        self._fire(name, "create", record, user_id)
        return copy.deepcopy(record)

    def update_record(
        self, resource: str, record_id: int, fields: Mapping[str, Any], user_id: int = 1
    ) -> Record:
        """Change fields as a human in MOCO would, bump `updated_at`, fire `update` webhooks.

        Unlike an API PUT, `custom_properties` are merged key by key (a human edits one field
        and the others stay); a None value removes a key. Raises KeyError if missing.
        """
        name = self._resource(resource)
        record = self._store[name][record_id]
        for key, value in fields.items():
            if key in ("id", "created_at", "updated_at"):
                continue
            if key == "custom_properties":
                merged = dict(record.get("custom_properties") or {})
                for prop, prop_value in dict(value or {}).items():
                    if prop_value is None:
                        merged.pop(prop, None)
                    else:
                        merged[prop] = prop_value
                record["custom_properties"] = merged
            else:
                record[key] = copy.deepcopy(value)
        record["updated_at"] = self._now()
        self._fire(name, "update", record, user_id)
        return copy.deepcopy(record)

    def put_raw_record(self, resource: str, record: Mapping[str, Any]) -> None:
        """Store `record` exactly as given (it must carry an `id`): no timestamps are added and
        no webhook fires. For records a vendor lists in a shape it should not (no `updated_at`)."""
        name = self._resource(resource)
        stored = copy.deepcopy(dict(record))
        self._store[name][int(stored["id"])] = stored
        self._next_id[name] = max(self._next_id[name], int(stored["id"]) + 1)

    def delete_record(self, resource: str, record_id: int, user_id: int = 1) -> None:
        """Delete as a human in MOCO would and fire `delete` webhooks. KeyError if missing."""
        name = self._resource(resource)
        record = self._store[name].pop(record_id)
        self._fire(name, "delete", record, user_id)

    # ------------------------------------------------------------------ webhooks

    def subscribe(self, target: str, event: str, url: str) -> Subscription:
        """Subscribe `url` to `target` ("Activity", "Project", "Customer", …) and `event`
        ("create", "update", "delete"); either may be "*"."""
        subscription = Subscription(
            id=len(self.subscriptions) + 1, target=target, event=event, url=url
        )
        self.subscriptions.append(subscription)
        return subscription

    def send_webhook(self, target: str, event: str, record: Mapping[str, Any], user_id: int) -> int:
        """Fire one webhook to every enabled matching subscription; return how many.

        The body, `X-Moco-Timestamp` and signature are fixed here and re-sent unchanged on
        every retry and redelivery. Needs a running event loop.
        """
        body = msgspec.json.encode(dict(record))
        headers = {
            "Content-Type": "application/json",
            "X-Moco-Target": target,
            "X-Moco-Event": event,
            "X-Moco-Timestamp": str(self._epoch_ms()),
            "X-Moco-Signature": sign_webhook(body, self.webhook_secret),
            "X-Moco-User-Id": str(user_id),
        }
        sent = 0
        for subscription in self.subscriptions:
            if subscription.enabled and subscription.matches(target, event):
                message = WebhookMessage(
                    subscription_id=subscription.id,
                    url=subscription.url,
                    target=target,
                    event=event,
                    body=body,
                    headers=dict(headers),
                )
                self.webhooks.append(message)
                self._spawn(message, redelivery=False)
                sent += 1
        return sent

    def redeliver(self, delivery_index: int) -> None:
        """Send the webhook of `deliveries[delivery_index]` again, byte for byte (a duplicate,
        as a receiver must expect), with retries like any delivery; nothing is sent while the
        subscription is disabled."""
        delivery = self.deliveries[delivery_index]
        message = WebhookMessage(
            subscription_id=delivery.subscription_id,
            url=delivery.url,
            target=delivery.target,
            event=delivery.event,
            body=delivery.body,
            headers=dict(delivery.headers),
        )
        self._spawn(message, redelivery=True)

    def _retry_policy(self) -> RetryPolicy:
        return self.behaviour

    def _subscription(self, message: WebhookMessage) -> Subscription:
        return next(s for s in self.subscriptions if s.id == message.subscription_id)

    def _may_attempt(self, message: WebhookMessage, attempt: int) -> bool:
        return self._subscription(message).enabled

    def _attempt_request(
        self, message: WebhookMessage, attempt: int
    ) -> tuple[str, bytes, dict[str, str]]:
        # Body, timestamp and signature are fixed when fired: retries re-send them unchanged.
        return message.url, message.body, message.headers

    def _after_attempt(self, message: WebhookMessage, attempt: Attempt) -> bool:
        delivery = Delivery(
            subscription_id=message.subscription_id,
            url=message.url,
            attempt=attempt.number,
            target=message.target,
            event=message.event,
            body=attempt.body,
            headers=attempt.headers,
            status=attempt.status,
            error=attempt.error,
            redelivery=attempt.redelivery,
        )
        self.deliveries.append(delivery)
        subscription = self._subscription(message)
        if delivery.ok:
            subscription.consecutive_failures = 0
            return True
        subscription.consecutive_failures += 1
        if subscription.consecutive_failures >= self.behaviour.webhook_max_consecutive_failures:
            subscription.enabled = False
            return True
        return False

    def _fire(self, resource: str, event: str, record: Record, user_id: int) -> None:
        target = self.behaviour.webhook_targets.get(resource)
        if target is None:
            return
        body = record
        if event == "delete" and self.behaviour.delete_webhook_body == "id_only":
            body = {"id": record["id"]}
        self.send_webhook(target, event, body, user_id)

    # ------------------------------------------------------------------ store

    def _resource(self, name: str) -> str:
        resource = self.behaviour.resource_paths.get(name)
        if resource is None:
            raise KeyError(f"unknown resource {name!r}")
        return resource

    def _now(self) -> str:
        return format_timestamp(self._clock())

    def _epoch_ms(self) -> int:
        moment = self._clock()
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)

    def _insert(self, resource: str, fields: Record) -> Record:
        explicit_id = fields.pop("id", None)
        if isinstance(explicit_id, int) and not isinstance(explicit_id, bool):
            record_id = explicit_id
        else:
            record_id = self._next_id[resource]
        self._next_id[resource] = max(self._next_id[resource], record_id + 1)
        now = self._now()
        fields.pop("created_at", None)
        fields.pop("updated_at", None)
        record: Record = {"id": record_id, **fields}
        record["custom_properties"] = dict(fields.get("custom_properties") or {})
        record["created_at"] = now
        record["updated_at"] = now
        self._store[resource][record_id] = record
        return record

    def _validate(self, resource: str, body: Mapping[str, Any], *, partial: bool) -> None:
        rules = self.behaviour.validation_rules.get(resource, {})
        for field_name, rule in rules.items():
            if field_name not in body:
                if partial:
                    continue
                raise _ApiError(422, f"{field_name} is missing")
            problem = self._check(rule, body[field_name])
            if problem is not None:
                raise _ApiError(422, f"{field_name} {problem}")
        if "custom_properties" in body:
            self._check_custom_properties(body["custom_properties"])

    def _check(self, rule: str, value: Any) -> str | None:
        """Return why `value` breaks `rule`, or None."""
        if rule == "string":
            ok = isinstance(value, str) and bool(value.strip())
            return None if ok else "must be a non-empty string"
        if rule == "text":
            return None if isinstance(value, str) else "must be a string"
        if rule == "number":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            return None if ok else "must be a number"
        if rule == "date":
            if isinstance(value, str) and _DATE_RE.match(value):
                try:
                    date.fromisoformat(value)
                except ValueError:
                    pass
                else:
                    return None
            return "must be a date (YYYY-MM-DD)"
        if rule.startswith("ref:"):
            target = rule.removeprefix("ref:")
            ok = isinstance(value, int) and not isinstance(value, bool)
            if ok and value in self._store.get(target, {}):
                return None
            return f"must be the id of an existing {target} record"
        if rule.startswith("enum:"):
            allowed = rule.removeprefix("enum:").split("|")
            return None if value in allowed else f"must be one of {', '.join(allowed)}"
        raise ValueError(f"unknown validation rule {rule!r}")

    def _check_custom_properties(self, value: Any) -> None:
        if not isinstance(value, dict):
            raise _ApiError(422, "custom_properties must be an object")
        if not self.behaviour.strict_custom_property_types:
            return
        for name, prop in value.items():
            is_text = isinstance(prop, str)
            is_choices = isinstance(prop, list) and all(isinstance(item, str) for item in prop)
            if not (is_text or is_choices):
                raise _ApiError(
                    422, f"custom_properties.{name} must be a string or a list of strings"
                )

    # ------------------------------------------------------------------ API

    def _arrive(self, request: web.Request, at: float) -> Identity:
        identity = self._api_keys.check(request.headers)
        if identity is not None:
            # Every request with a valid key, injected failures included: what MOCO's limit
            # would see arrive (`max_requests_in_any_window`).
            self.arrival_times.append(at)
        return identity

    def _injected(self, status: int, retry_after: float | None) -> web.Response:
        return _message(status, injected_reason(status), retry_after_headers(retry_after))

    def _admit(self, request: web.Request, state: Identity, at: float) -> web.Response | None:
        if state is None:
            return _message(401, "Unauthorized: send 'Authorization: Token token=<api key>'")
        if self.rate_limit is not None:
            return self._rate_limit(state[0], at)
        return None

    async def _receive(self, request: web.Request, arrival: Arrival[Identity]) -> None:
        # Only a delayed request must be whole before its delay; otherwise a write reads its
        # body when handled, and an answer decided on arrival (401, 429) never needs it.
        if arrival.delay > 0:
            arrival.body = await request.read()

    async def _dispatch(self, request: web.Request, arrival: Arrival[Identity]) -> web.Response:
        identity = arrival.state
        assert identity is not None  # `_admit` answered 401 without one
        try:
            return await self._route(request, identity)
        except _ApiError as error:
            return _message(error.status, error.message)

    def _log_request(
        self, request: web.Request, arrival: Arrival[Identity], response: web.Response
    ) -> None:
        self.requests.append(
            RequestLogEntry(
                method=request.method,
                path=request.path,
                query=request.query_string,
                status=response.status,
                at=arrival.at,
            )
        )

    def _rate_limit(self, key: str, now: float) -> web.Response | None:
        assert self.rate_limit is not None
        limiter = self._limiter
        # Read on every request: tests swap `behaviour` (and may change `rate_limit`) on a
        # running fake, and the change applies from the next request on.
        limiter.limit, limiter.window_s = self.rate_limit
        limiter.per_key = self.behaviour.rate_limit_per_key
        limiter.counts_rejected = self.behaviour.rate_limit_counts_rejected
        limiter.send_retry_after = self.behaviour.send_retry_after
        verdict = limiter.check(key, now)
        if verdict.admitted:
            self.request_times.append(now)
            return None
        self.rejected_429 += 1
        return _message(429, "Too Many Requests", verdict.headers)

    async def _route(self, request: web.Request, identity: tuple[str, int]) -> web.Response:
        parts = [part for part in request.match_info["tail"].split("/") if part]
        if parts:
            parts[-1] = parts[-1].removesuffix(".json")
        if parts == ["session"] and request.method == "GET":
            # Documented: 200 with the key's user id and a uuid when the key is valid.
            user_id = identity[1]
            return json_response(
                {"id": user_id, "uuid": str(uuid.uuid5(uuid.NAMESPACE_OID, f"moco-{user_id}"))}
            )
        if not 1 <= len(parts) <= 2 or parts[0] not in self.behaviour.resource_paths:
            raise _ApiError(404, "Not found")
        resource = self.behaviour.resource_paths[parts[0]]
        record_id: int | None = None
        if len(parts) == 2:
            if not parts[1].isdigit():
                raise _ApiError(404, "Not found")
            record_id = int(parts[1])

        method = request.method
        if method == "GET":
            if record_id is None:
                return self._list(request, resource)
            record = self._store[resource].get(record_id)
            if record is None:
                raise _ApiError(404, f"{parts[0]} {record_id} not found")
            return json_response(record)
        if method not in _MUTATING or (method == "POST") != (record_id is None):
            raise _ApiError(405, "Method not allowed")
        if resource not in self.behaviour.writable_resources:
            raise _ApiError(self.behaviour.read_only_resource_status, "Method not allowed")
        return await self._mutate(request, identity, resource, record_id)

    def _list(self, request: web.Request, resource: str) -> web.Response:
        behaviour = self.behaviour
        query = request.query
        bad = behaviour.invalid_query_status
        records = list(self._store[resource].values())

        if "updated_after" in query:
            try:
                after = _parse_timestamp(query["updated_after"])
            except ValueError:
                raise _ApiError(bad, "updated_after must be an ISO 8601 time") from None
            # A record without updated_at (see put_raw_record) is after nothing.
            stamped = [(r, _stamp(r)) for r in records]
            if behaviour.updated_after_inclusive:
                records = [r for r, at in stamped if at is not None and at >= after]
            else:
                records = [r for r, at in stamped if at is not None and at > after]

        pages = LinkHeaderPages(
            default_per_page=behaviour.per_page_default,
            max_per_page=behaviour.per_page_max,
            link_keeps_query=behaviour.link_keeps_query_params,
        )
        # Checked before sort_by, so the first bad parameter is the one answered.
        try:
            window = pages.window(query)
        except PageQueryError as error:
            raise _ApiError(bad, error.message) from None

        # Stable sorts: first by id, then by the requested field, so ties stay id-ascending.
        records.sort(key=lambda r: _sort_key(r.get("id")))
        sort_field = behaviour.default_sort_field
        descending = behaviour.default_sort_descending
        if "sort_by" in query:
            words = query["sort_by"].split()
            if not 1 <= len(words) <= 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
                raise _ApiError(bad, "sort_by must be '<field>' or '<field> asc|desc'")
            if behaviour.sortable_fields is None or words[0] in behaviour.sortable_fields:
                sort_field = words[0]
                descending = len(words) == 2 and words[1] == "desc"
        records.sort(key=lambda r: _sort_key(r.get(sort_field)), reverse=descending)

        page = pages.cut(records, window, request.url)
        headers = {
            **page.headers,
            # The vendor's clock, as the listing was made: what a client bounds its cursor by.
            "Date": format_datetime(self._clock().astimezone(UTC), usegmt=True),
        }
        response = json_response(page.items, headers=headers)
        if self.after_list_page is not None:
            # The page is cut: a change made now is one "while the listing is being paged".
            self.after_list_page(resource, window.page)
        return response

    async def _mutate(
        self,
        request: web.Request,
        identity: tuple[str, int],
        resource: str,
        record_id: int | None,
    ) -> web.Response:
        behaviour = self.behaviour
        impersonate = request.headers.get("X-IMPERSONATE-USER-ID")
        acting_user = identity[1]
        if impersonate is not None:
            if not impersonate.strip().isdigit():
                raise _ApiError(
                    behaviour.invalid_impersonation_status,
                    "X-IMPERSONATE-USER-ID must be an integer user id",
                )
            acting_user = int(impersonate)

        idempotency_key = request.headers.get("Idempotency-Key")
        replay_key = (identity[0], request.method, request.path, idempotency_key or "")
        if behaviour.honour_idempotency_key and idempotency_key is not None:
            cached = self._idempotent.get(replay_key)
            if cached is not None:
                return web.Response(
                    body=cached[1] or None, status=cached[0], content_type="application/json"
                )

        body: Any = None
        if request.method != "DELETE":
            try:
                body = msgspec.json.decode(await request.read())
            except msgspec.DecodeError:
                raise _ApiError(behaviour.invalid_json_status, "body must be JSON") from None
            if not isinstance(body, dict):
                raise _ApiError(behaviour.invalid_json_status, "body must be a JSON object")

        store = self._store[resource]
        event: str
        changed = True
        if request.method == "POST":
            self._validate(resource, body, partial=False)
            fields = self._writable_fields(resource, body)
            if resource == "activities":
                # Documented: activities cannot be written on behalf of others except via
                # impersonation, so the owner is always the acting user.
                fields["user_id"] = acting_user
            record = self._insert(resource, fields)
            status, payload, event = behaviour.create_status, record, "create"
        else:
            assert record_id is not None
            existing = store.get(record_id)
            if existing is None:
                raise _ApiError(404, f"{resource} {record_id} not found")
            if request.method == "DELETE":
                record = store.pop(record_id)
                status, payload, event = behaviour.delete_status, None, "delete"
            else:
                self._validate(resource, body, partial=True)
                fields = self._writable_fields(resource, body)
                changed = any(existing.get(k) != v for k, v in fields.items())
                # Documented: custom_properties, when sent, replace the whole set: any custom
                # field not sent is removed. A plain dict assignment does exactly that.
                if "custom_properties" not in fields and behaviour.update_without_custom_erases:
                    fields["custom_properties"] = {}
                existing.update(fields)
                if changed or behaviour.bump_on_noop_update:
                    existing["updated_at"] = self._now()
                record = existing
                status, payload, event = behaviour.update_status, existing, "update"

        encoded = b"" if payload is None or status == 204 else msgspec.json.encode(payload)
        if behaviour.honour_idempotency_key and idempotency_key is not None:
            self._idempotent[replay_key] = (status, encoded)
        self.calls.append(
            RecordedCall(
                method=request.method,
                path=request.path,
                resource=resource,
                record_id=record["id"],
                status=status,
                headers=dict(request.headers),
                impersonate_user_id=impersonate,
                idempotency_key=idempotency_key,
                json=body,
            )
        )
        if behaviour.webhooks_for_api_changes and (changed or behaviour.bump_on_noop_update):
            self._fire(resource, event, record, acting_user)
        if not encoded:
            return web.Response(status=status)
        return web.Response(body=encoded, status=status, content_type="application/json")

    def _writable_fields(self, resource: str, body: Mapping[str, Any]) -> Record:
        rules = self.behaviour.validation_rules.get(resource, {})
        fields: Record = {}
        for key, value in body.items():
            if key in self.behaviour.read_only_fields:
                continue
            if resource == "activities" and key == "user_id":
                continue  # set from the acting user, see _mutate
            if key in rules or key == "custom_properties" or self.behaviour.store_unknown_fields:
                fields[key] = copy.deepcopy(value)
        return fields

    # ------------------------------------------------------------------ control API (/_fake)

    def _ctl_resource(self, request: web.Request) -> str:
        name = request.match_info["resource"]
        if name not in self.behaviour.resource_paths:
            raise web.HTTPNotFound(text=f"unknown resource {name}")
        return name

    @staticmethod
    def _ctl_user(request: web.Request) -> int:
        raw = request.query.get("user_id", "1")
        if not raw.isdigit():
            raise web.HTTPBadRequest(text="user_id must be an integer")
        return int(raw)

    @staticmethod
    def _ctl_id(request: web.Request) -> int:
        raw = request.match_info["id"]
        if not raw.isdigit():
            raise web.HTTPNotFound(text="id must be an integer")
        return int(raw)

    async def _ctl_create(self, request: web.Request) -> web.Response:
        """POST /_fake/<resource>[?user_id=N]: create as a UI change."""
        resource = self._ctl_resource(request)
        fields = await read_json_object(request)
        return json_response(self.create_record(resource, fields, self._ctl_user(request)))

    async def _ctl_update(self, request: web.Request) -> web.Response:
        """PUT /_fake/<resource>/<id>[?user_id=N]: update as a UI change."""
        resource = self._ctl_resource(request)
        fields = await read_json_object(request)
        try:
            record = self.update_record(
                resource, self._ctl_id(request), fields, self._ctl_user(request)
            )
        except KeyError:
            raise web.HTTPNotFound(text="no such record") from None
        return json_response(record)

    async def _ctl_delete(self, request: web.Request) -> web.Response:
        """DELETE /_fake/<resource>/<id>[?user_id=N]: delete as a UI change."""
        resource = self._ctl_resource(request)
        try:
            self.delete_record(resource, self._ctl_id(request), self._ctl_user(request))
        except KeyError:
            raise web.HTTPNotFound(text="no such record") from None
        return web.Response(status=204)

    async def _ctl_subscribe(self, request: web.Request) -> web.Response:
        """POST /_fake/subscriptions {target, event, url}."""
        body = await read_json_object(request)
        try:
            target, event, url = str(body["target"]), str(body["event"]), str(body["url"])
        except KeyError as missing:
            raise web.HTTPBadRequest(text=f"{missing} is missing") from None
        return json_response(self.subscribe(target, event, url))
