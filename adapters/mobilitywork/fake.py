"""A fake Mobility Work server on aiohttp, for tests, demos and `workbridge dev`.

It follows Mobility Work's public API document (vendor-docs/000_52ac9c202e3e1849.txt):
`Api-Key` header auth with the documented 401 body, a `Request-Id` header on every response,
minified JSON, `POST /partners/v1/tasks` answering 201 without a body (or 202 when switched)
and the documented 400 body that lists every invalid property at once, and webhooks in the
documented envelope (`_type`, `_event`, `_sentAt`, `emittedAt`, `_metadata`, …, `networkId`)
that count as delivered only on HTTP 200 and are otherwise retried, signed with
`X-MW-Signature: t=…,nonce=…,signature=…` when the subscription has a secret key.

Wherever the document is silent the fake has to guess. Every guess lives in ONE place,
`FakeMobilityWorkBehaviour` just below, each marked `# not in the vendor document`, so a
reader sees what is documented and what is assumed, and a test can flip an assumption via
the constructor.

The shared parts come from the fake kit: `MobilityWorkErrors` (adapters/fakekit_errors.py)
is the documented error body, `KeyHeader` (adapters/fakekit_auth.py) reads the `Api-Key`, and
`PipelineServer` (adapters/fakekit_pipeline.py) runs every request through faults, the key
check and the delay.

Besides the API the fake offers test handles: `fail_next`/`delay_next` fault injection,
`calls`/`requests`/`deliveries`/`webhooks` logs, `tasks` (what the API created), seeded
equipments and users (`add_equipment`, `add_user`), webhook emission (`emit` and one method
per known event) with `redeliver`/`resend_last` replays, and a small unauthenticated control
API under `/_fake/` (the kit's `fail_next`, `delay_next`, `requests`, `calls`, and Mobility
Work's own webhooks, subscriptions, tasks, equipments and users).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from adapters.fakekit import (
    Attempt,
    DeliveryRecord,
    RetryPolicy,
    json_response,
    read_json_object,
    retry_after_headers,
)
from adapters.fakekit_auth import KeyHeader
from adapters.fakekit_control import mount_control_routes
from adapters.fakekit_errors import ErrorItem, MobilityWorkErrors, error_item
from adapters.fakekit_logs import CallLogEntry
from adapters.fakekit_logs import RequestLogEntry as BaseRequestLogEntry
from adapters.fakekit_pipeline import Arrival, PipelineServer

Json = dict[str, Any]
"""A JSON object as sent or received."""

DEFAULT_NETWORK_ID = "3f8e2a61-5c4b-4d7e-9a10-6b2c8d4e1f07"
"""The fake network's uuid (`networkId` in webhooks) unless the constructor names another."""


BareStringEquipment = Literal["native", "externalReference"] | None
"""How a bare string `equipment` is looked up (None: refused as a wrong type)."""


class FakeMobilityWorkBehaviour(msgspec.Struct, frozen=True, kw_only=True):
    """Every assumption the fake makes where Mobility Work's API document is silent.

    The defaults are the fake's best guesses; pass another instance to `FakeMobilityWork` to
    test a client against a different reading. Fields marked "vendor document" are documented
    values kept here only so that tests can change them.

    The documented parts of the 400 body are fixed in the code, not here: the code "400044",
    the message "The request payload is not valid.", the messageKeys
    `error.payload.min_length` {min, length}, `error.payload.equipment.unknown` {type, value}
    and `error.payload.assignees.unknown` {type, value}, and JSON-pointer property keys.
    """

    # --- POST /partners/v1/tasks -------------------------------------------------------------
    # Fields that must be present. The document's curl example sends all six; which of them
    # the real endpoint requires is unknown. A "scheduled" task is read as needing its dates.
    task_required_fields: tuple[str, ...] = (  # not in the vendor document
        "equipment",
        "description",
        "startDateTime",
        "endDateTime",
    )
    # Minimum description length: vendor document (the 400 example names "min length of 3").
    description_min_length: int = 3
    # Maximum description length; None = no bound.
    description_max_length: int | None = None  # not in the vendor document
    # Status of an accepted task: 201 is documented for POST; 202 ("accepted and will be
    # processed asynchronously") is documented as possible in general. Either is allowed.
    task_create_status: Literal[201, 202] = 201
    # Date-time form: the example's `2022-01-11T09:00:00+00:00` (PHP's DATE_ATOM). That an
    # offset is required, that `Z` is also taken and that fractions are refused is a guess.
    date_time_pattern: str = (  # not in the vendor document
        r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[+-]\d{2}:\d{2}|Z)$"
    )
    # The `format` parameter of a date-time error (PHP's DATE_ATOM format string).
    date_time_format_label: str = "Y-m-d\\TH:i:sP"  # not in the vendor document
    # endDateTime before startDateTime is refused (on /endDateTime); equal times are fine.
    reject_end_before_start: bool = True  # not in the vendor document
    # A bare string `equipment` is looked up as this type ("externalReference" = item code);
    # None refuses it as a wrong type. The document only shows a bare native id and the
    # `{"type": …, "value": …}` object.
    bare_string_equipment: BareStringEquipment = "externalReference"  # not in the vendor document
    # `type` values accepted in the equipment object; the document shows "externalReference".
    equipment_reference_types: tuple[str, ...] = (  # not in the vendor document
        "native",
        "externalReference",
    )
    # Item codes match case-sensitively.
    item_code_case_sensitive: bool = True  # not in the vendor document
    # Assignee e-mails match case-insensitively (e-mail local parts rarely differ by case).
    email_case_insensitive: bool = True  # not in the vendor document
    # Properties the endpoint does not know are refused (True) or ignored (False).
    reject_unknown_properties: bool = False  # not in the vendor document
    # messageKeys for the errors the document shows no example of; parameters are:
    #   required {}, type {expected, actual}, date_time {format, value},
    #   date_range {startDateTime, endDateTime}, max_length {max, length},
    #   choice {choices, value}, unknown_property {}, invalid_json {} (a global error, for
    #   a body that is not a JSON object; same code 400044 and message as the documented 400).
    message_keys: dict[str, str] = msgspec.field(  # not in the vendor document
        default_factory=lambda: {
            "required": "error.payload.required",
            "type": "error.payload.type",
            "date_time": "error.payload.date_time",
            "date_range": "error.payload.date_range",
            "max_length": "error.payload.max_length",
            "choice": "error.payload.choice",
            "unknown_property": "error.payload.unknown_property",
            "invalid_json": "error.payload.invalid_json",
        }
    )
    # A Content-Type other than application/json: None = parsed anyway; else this status.
    wrong_content_type_status: int | None = None  # not in the vendor document
    # First id given to a created task (ids are never returned: 201 has no body).
    first_task_id: int = 1  # not in the vendor document

    # --- Errors the document shows no example of -------------------------------------------
    # They use the documented error shape with code = f"{status}{suffix}" and the HTTP reason
    # phrase as message (the documented codes are "400044" and "401001").
    error_code_suffix: str = "000"  # not in the vendor document
    # Request-Id values: a uuid4 string ("uuid") or 32 hex characters ("hex").
    request_id_format: Literal["uuid", "hex"] = "uuid"  # not in the vendor document

    # --- Webhooks ----------------------------------------------------------------------------
    # `_type` = `_event` + this suffix, generalised from the one example
    # ("SparePartWasConsumed" -> "SparePartWasConsumedWebhook").
    webhook_type_suffix: str = "Webhook"  # not in the vendor document
    # `_event` of the "spare parts canceled consumption" webhook (changelog 2024-03-08); its
    # name and payload are not documented. The payload is guessed as the consumed one with
    # the cancelled quantity under `canceled_consumption_field` and, per the 2024-04-09
    # changelog entry ("cost center and location"), a `costCenter` object.
    canceled_consumption_event: str = (
        "SparePartConsumptionWasCanceled"  # not in the vendor document
    )
    canceled_consumption_field: str = "canceled"  # not in the vendor document
    canceled_consumption_type: str = (
        "SparePartConsumptionCancellation"  # not in the vendor document
    )
    cost_center_field: str = "costCenter"  # not in the vendor document
    # Task webhook `_event` names ("Tasks webhooks" exist per the changelog, unnamed);
    # `task_event` refuses other names so that a typo fails loudly.
    task_events: tuple[str, ...] = (  # not in the vendor document
        "TaskWasCreated",
        "TaskWasUpdated",
        "TaskWasCompleted",
        "TaskWasDeleted",
    )
    # A task created through the API fires this task webhook (None = none). The web app
    # surely does; that API writes do too is a guess (it is what makes echo loops possible).
    api_task_created_event: str | None = "TaskWasCreated"  # not in the vendor document
    # Fields every `task` object in a webhook carries when the caller gave none (the
    # changelog adds tags and requiredSpareParts to task webhooks; that they sit inside
    # `task` is a guess).
    task_default_fields: dict[str, Any] = msgspec.field(  # not in the vendor document
        default_factory=lambda: {"tags": [], "requiredSpareParts": []}
    )
    # Headers of a webhook call besides X-MW-Signature.
    webhook_content_type: str = "application/json"  # not in the vendor document
    webhook_user_agent: str = "MobilityWork-Webhooks/1.0"  # not in the vendor document
    # Whether a retry re-sends the same t/nonce/signature (False) or signs anew with a fresh
    # t and nonce (True). The document only says failed calls are "retried afterwards".
    retry_resigns: bool = False  # not in the vendor document
    # With retry_resigns, whether the body's `_sentAt` is also refreshed (changing the body).
    retry_refreshes_sent_at: bool = False  # not in the vendor document
    # Retry schedule after a failed attempt: initial * factor**(attempt-1), capped. The real
    # schedule is unknown; the defaults are fast so tests finish.
    webhook_retry_initial_s: float = 0.2  # not in the vendor document
    webhook_retry_factor: float = 2.0  # not in the vendor document
    webhook_retry_max_s: float = 5.0  # not in the vendor document
    # Attempts per webhook (first try included) before the fake gives up.
    webhook_max_attempts: int = 6  # not in the vendor document
    # How long one attempt may take before it counts as failed.
    webhook_timeout_s: float = 10.0  # not in the vendor document

    def __post_init__(self) -> None:
        if self.task_create_status not in (201, 202):
            raise ValueError("task_create_status must be 201 or 202")
        if self.webhook_max_attempts < 1:
            raise ValueError("webhook_max_attempts must be >= 1")
        missing = {
            "required",
            "type",
            "date_time",
            "date_range",
            "max_length",
            "choice",
            "unknown_property",
            "invalid_json",
        } - self.message_keys.keys()
        if missing:
            raise ValueError(f"message_keys lacks {sorted(missing)}")


# --------------------------------------------------------------------------- signing

SIGNATURE_HEADER = "X-MW-Signature"
"""The documented signature header. (The document's example shows the value under `Api-Key`
by mistake; its text and security scheme both name `X-MW-Signature`.)"""


def sign(secret: str, t: int, nonce: str, body: bytes) -> str:
    """Return the hex HMAC-SHA256 of `"<t>.<nonce>.<body>"` keyed with the webhook's secret.

    As the document's PHP example: `hash_hmac('sha256', "$t.$nonce.$payload", $secretKey)`.
    The payload is the raw body bytes exactly as sent; the secret is taken as UTF-8 bytes.
    """
    message = f"{t}.{nonce}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, t: int, nonce: str, body: bytes) -> str:
    """Return the `X-MW-Signature` value `t={t},nonce={nonce},signature={hex}`."""
    return f"t={t},nonce={nonce},signature={sign(secret, t, nonce, body)}"


def new_nonce() -> str:
    """A random nonce of 40 hex characters, like the document's example."""
    return secrets.token_hex(20)


def format_timestamp(moment: datetime) -> str:
    """The document's time form: UTC, second precision, `+00:00` (`2022-06-02T14:31:06+00:00`)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


# --------------------------------------------------------------------------- records


class Equipment(msgspec.Struct, kw_only=True):
    """An equipment of the network: native `id` and `item_code` (its external reference)."""

    id: int | str
    item_code: str
    name: str


class User(msgspec.Struct, kw_only=True):
    """A member of the network, assignable by `id` or `email`."""

    id: int
    email: str
    name: str


SEED_EQUIPMENTS: tuple[Equipment, ...] = (
    Equipment(id=1001, item_code="PUMP-001", name="Feed pump"),
    Equipment(id=1002, item_code="CONV-002", name="Conveyor belt"),
    Equipment(id=1003, item_code="PRESS-003", name="Hydraulic press"),
)
"""Equipments every fake starts with (test data, not vendor facts)."""

SEED_USERS: tuple[User, ...] = (
    User(id=3, email="jane.doe@factory.example", name="Jane Doe"),
    User(id=4, email="max.mustermann@factory.example", name="Max Mustermann"),
    User(id=5, email="ana.silva@factory.example", name="Ana Silva"),
)
"""Users every fake starts with; id 3 is the document's example assignee."""


class StoredTask(msgspec.Struct, kw_only=True):
    """A task the API accepted, with its references resolved; `payload` is the body as sent."""

    id: int
    equipment_id: int | str
    description: str
    start_date_time: str | None
    end_date_time: str | None
    all_day: bool
    assignee_ids: list[int]
    status: int
    request_id: str
    payload: Json


class RecordedCall(CallLogEntry, kw_only=True):
    """One accepted (2xx) mutating API call: what a test counts to see side effects."""

    status: int
    request_id: str
    headers: dict[str, str]
    task_id: int | None
    user_agent_names_network: bool

    def header(self, name: str) -> str | None:
        """A request header by case-insensitive name, or None."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


class RequestLogEntry(BaseRequestLogEntry, kw_only=True):
    """One API request (not /_fake) with its answer and the `Request-Id` it carried."""

    request_id: str


class _Default(enum.Enum):
    """Marks "use the fake's webhook_secret" for `subscribe` (None means unsigned)."""

    SECRET = 0


class Subscription(msgspec.Struct, kw_only=True):
    """A webhook subscription to `event` (`"*"` = every event); signed iff `secret`."""

    id: int
    event: str
    url: str
    secret: str | None

    def matches(self, event: str) -> bool:
        """Whether `event` goes to this subscription."""
        return self.event in ("*", event)


class WebhookMessage(msgspec.Struct, kw_only=True):
    """One webhook for one subscription as first sent: `body` and `headers` of attempt 1."""

    subscription_id: int
    url: str
    event: str
    envelope: Json
    body: bytes
    headers: dict[str, str]


class EmittedWebhook(msgspec.Struct, kw_only=True):
    """What `emit` produced: the envelope, its bytes, and one message per subscriber."""

    event: str
    envelope: Json
    body: bytes
    messages: list[WebhookMessage]


class Delivery(DeliveryRecord, kw_only=True):
    """One delivery attempt to a Mobility Work subscriber."""

    @property
    def ok(self) -> bool:
        """Whether the receiver answered 200: the only success the document names."""
        return self.status == 200


# --------------------------------------------------------------------------- responses

# Documented: "you need to send your API key using the Api-Key" header, the key alone.
_API_KEY = KeyHeader("Api-Key")
_API_PREFIX = "/partners/v1"
_TASK_PATHS = frozenset({f"{_API_PREFIX}/tasks", f"{_API_PREFIX}/tasks/"})
_REQUEST_ID = web.RequestKey("request_id", str)
_ENVELOPE_KEYS = frozenset({"_type", "_event", "_sentAt", "emittedAt", "_metadata", "networkId"})


def _json_type(value: Any) -> str:
    """The JSON type name of a decoded value (for `type` error parameters)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _pointer(name: str) -> str:
    """JSON pointer of a top-level property (RFC 6901 escaping)."""
    return "/" + name.replace("~", "~0").replace("/", "~1")


class _TaskErrors:
    """Collects property errors in check order, so the 400 lists every problem at once."""

    def __init__(self) -> None:
        self.by_pointer: dict[str, list[ErrorItem]] = {}

    def add(self, pointer: str, message_key: str, parameters: Mapping[str, Any]) -> None:
        self.by_pointer.setdefault(pointer, []).append(error_item(message_key, **parameters))


class FakeMobilityWork(PipelineServer[WebhookMessage, None]):
    """A fake Mobility Work API server; see the module docstring and the behaviour struct.

    Public state for tests: `tasks` (created through the API), `equipments`, `users`,
    `calls` (accepted mutating API calls), `requests` (every API request with its status),
    `subscriptions`, `webhooks` (every message first sent), `deliveries` (every attempt).

    Lifecycle, `control_url`, `fail_next`/`delay_next`, `resend_last`,
    `wait_deliveries_idle` and the request pipeline come from the kit
    (`adapters.fakekit_pipeline.PipelineServer`). Here `fail_next` answers
    in the document's error shape before authentication, and nothing is processed (no task
    stored); the document names no `Retry-After`. With `delay_next` the request body is read
    and the request fully processed BEFORE the delay. Answers are minified JSON, as the
    document says the API always answers.
    """

    _server_name = "FakeMobilityWork"
    # No redirects: the document's webhook success is exactly 200, so a 3xx is a failure.
    _webhook_allow_redirects = False
    # The whole request is handled before a delay: a client that gives up leaves its task.
    _answer_before_delay = True

    def __init__(
        self,
        *,
        api_key: str,
        webhook_secret: str | None,
        network_id: str = DEFAULT_NETWORK_ID,
        network_name: str = "Factory Inc.",
        behaviour: FakeMobilityWorkBehaviour | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """Create the fake (not yet listening; call `start` or use `async with`).

        `webhook_secret` is the default secret key of subscriptions (None: unsigned, as when
        no secret key was set in Mobility Work). `clock` supplies `emittedAt`, `_sentAt` and
        the signature timestamp; the request log always uses the monotonic clock.
        """
        super().__init__()
        self.behaviour = behaviour or FakeMobilityWorkBehaviour()
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.network_id = network_id
        self.network_name = network_name
        self._clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))

        self.equipments: dict[int | str, Equipment] = {}
        self.users: dict[int, User] = {}
        for equipment in SEED_EQUIPMENTS:
            self.add_equipment(equipment.id, equipment.item_code, equipment.name)
        for user in SEED_USERS:
            self.add_user(user.id, user.email, user.name)
        self.tasks: list[StoredTask] = []
        self._next_task_id = self.behaviour.first_task_id

        self.calls: list[RecordedCall] = []
        self.requests: list[RequestLogEntry] = []
        self.subscriptions: list[Subscription] = []
        self.deliveries: list[Delivery] = []

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (0 = any free port) and return the base URL.

        The API lives under `<base URL>/partners/v1/…`, as under https://api.mobility-work.com.
        """
        return await super().start(host, port)

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._request_id_middleware])
        mount_control_routes(app, self)
        app.router.add_post("/_fake/webhooks/{event}", self._ctl_emit)
        app.router.add_post("/_fake/subscriptions", self._ctl_subscribe)
        app.router.add_get("/_fake/tasks", self._ctl_tasks)
        app.router.add_post("/_fake/equipments", self._ctl_add_equipment)
        app.router.add_post("/_fake/users", self._ctl_add_user)
        app.router.add_route("*", "/partners/{tail:.*}", self._api)
        return app

    @property
    def api_url(self) -> str:
        """`<base URL>/partners/v1`."""
        return self._require_base() + _API_PREFIX

    # ------------------------------------------------------------------ test handles

    def add_equipment(
        self, equipment_id: int | str, item_code: str, name: str = "Equipment"
    ) -> Equipment:
        """Add (or replace) an equipment; its item code must be unused by another one."""
        for other in self.equipments.values():
            if other.id != equipment_id and self._same_item_code(other.item_code, item_code):
                raise ValueError(f"item code {item_code!r} belongs to equipment {other.id}")
        equipment = Equipment(id=equipment_id, item_code=item_code, name=name)
        self.equipments[equipment_id] = equipment
        return equipment

    def add_user(self, user_id: int, email: str, name: str = "User") -> User:
        """Add (or replace) a network member; the e-mail must be unused by another one."""
        for other in self.users.values():
            if other.id != user_id and self._same_email(other.email, email):
                raise ValueError(f"e-mail {email!r} belongs to user {other.id}")
        user = User(id=user_id, email=email, name=name)
        self.users[user_id] = user
        return user

    # ------------------------------------------------------------------ webhooks

    def subscribe(
        self, event: str, url: str, secret: str | _Default | None = _Default.SECRET
    ) -> Subscription:
        """Subscribe `url` to `event` (`"*"` for all). `secret` defaults to the fake's
        `webhook_secret`; None makes this subscription unsigned."""
        key = self.webhook_secret if isinstance(secret, _Default) else secret
        subscription = Subscription(
            id=len(self.subscriptions) + 1, event=event, url=url, secret=key
        )
        self.subscriptions.append(subscription)
        return subscription

    def emit(
        self,
        event: str,
        payload_fields: Mapping[str, Any],
        *,
        emitted_at: datetime | None = None,
    ) -> EmittedWebhook:
        """Send webhook `event` to every matching subscription, retried until a 200.

        The body is the documented envelope: `_type`, `_event`, `_sentAt`, `emittedAt`,
        `_metadata` "", then `payload_fields` in their order, then `networkId`. The envelope
        keys cannot be overridden (ValueError); `emitted_at` defaults to now. Needs a
        running event loop when anyone is subscribed.
        """
        clash = _ENVELOPE_KEYS & payload_fields.keys()
        if clash:
            raise ValueError(f"payload fields may not set envelope keys {sorted(clash)}")
        now = self._clock()
        envelope: Json = {
            "_type": event + self.behaviour.webhook_type_suffix,
            "_event": event,
            "_sentAt": format_timestamp(now),
            "emittedAt": format_timestamp(emitted_at or now),
            "_metadata": "",
            **payload_fields,
            "networkId": self.network_id,
        }
        body = msgspec.json.encode(envelope)
        messages: list[WebhookMessage] = []
        for subscription in self.subscriptions:
            if not subscription.matches(event):
                continue
            message = WebhookMessage(
                subscription_id=subscription.id,
                url=subscription.url,
                event=event,
                envelope=envelope,
                body=body,
                headers=self._webhook_headers(subscription.secret, body),
            )
            self.webhooks.append(message)
            messages.append(message)
            self._spawn(message, redelivery=False)
        return EmittedWebhook(event=event, envelope=envelope, body=body, messages=messages)

    def spare_part_consumed(
        self,
        *,
        quantity: float,
        previous_stock: float,
        task: Mapping[str, Any] | int | None = None,
        spare_part: Mapping[str, Any] | int | str = 1,
        location: Mapping[str, Any] | int | str | None = None,
        initiator: Mapping[str, Any] | int | None = None,
        emitted_at: datetime | None = None,
    ) -> EmittedWebhook:
        """Emit the documented `SparePartWasConsumed` webhook.

        Resources may be given as objects (sent as given) or as ids, which become
        `{"id": …}` (a task id of a task created through the API becomes that task's
        webhook shape, see `task_resource`). Defaults: the last created task (else
        `{"id": 1}`), spare part 1, a fixed location uuid, the first user.
        """
        return self.emit(
            "SparePartWasConsumed",
            {
                **self._spare_part_context(task, spare_part, location, initiator),
                "consumed": {
                    "_type": "SparePartConsumption",
                    "quantity": quantity,
                    "previousStock": previous_stock,
                },
            },
            emitted_at=emitted_at,
        )

    def spare_part_consumption_canceled(
        self,
        *,
        quantity: float,
        previous_stock: float,
        task: Mapping[str, Any] | int | None = None,
        spare_part: Mapping[str, Any] | int | str = 1,
        location: Mapping[str, Any] | int | str | None = None,
        initiator: Mapping[str, Any] | int | None = None,
        cost_center: Mapping[str, Any] | int | str | None = None,
        emitted_at: datetime | None = None,
    ) -> EmittedWebhook:
        """Emit the changelog's "spare parts canceled consumption" webhook.

        Its `_event` name and payload are guesses (see the behaviour's
        `canceled_consumption_*` and `cost_center_field`); arguments as `spare_part_consumed`.
        """
        behaviour = self.behaviour
        fields = self._spare_part_context(task, spare_part, location, initiator)
        fields[behaviour.canceled_consumption_field] = {
            "_type": behaviour.canceled_consumption_type,
            "quantity": quantity,
            "previousStock": previous_stock,
        }
        fields[behaviour.cost_center_field] = (
            None if cost_center is None else self._resource(cost_center)
        )
        return self.emit(behaviour.canceled_consumption_event, fields, emitted_at=emitted_at)

    def task_event(
        self, name: str, task: Mapping[str, Any] | int, *, emitted_at: datetime | None = None
    ) -> EmittedWebhook:
        """Emit task webhook `name` (one of the behaviour's `task_events`) with `task`.

        `task` is an object or an id (see `spare_part_consumed`); the behaviour's
        `task_default_fields` are added where missing.
        """
        if name not in self.behaviour.task_events:
            raise ValueError(f"unknown task event {name!r}; known: {self.behaviour.task_events}")
        return self.emit(name, {"task": self._task_object(task)}, emitted_at=emitted_at)

    def task_resource(self, task_id: int) -> Json:
        """The webhook `task` object of a task created through the API (KeyError if none).

        Its shape beyond `id` is a guess: description, equipment {id, itemCode}, the two
        date-times, allDay, assignees [{id, email}] and the behaviour's default fields.
        """
        stored = next((t for t in self.tasks if t.id == task_id), None)
        if stored is None:
            raise KeyError(task_id)
        equipment = self.equipments.get(stored.equipment_id)
        assignees = [
            {"id": user.id, "email": user.email}
            for user in (self.users.get(i) for i in stored.assignee_ids)
            if user is not None
        ]
        resource: Json = {
            "id": stored.id,
            "description": stored.description,
            "equipment": {
                "id": stored.equipment_id,
                "itemCode": equipment.item_code if equipment is not None else None,
            },
            "startDateTime": stored.start_date_time,
            "endDateTime": stored.end_date_time,
            "allDay": stored.all_day,
            "assignees": assignees,
        }
        # The default fields only fill in: a default named like one of the task's own fields
        # (say `assignees`) must not replace what the task holds.
        defaults = msgspec.json.decode(msgspec.json.encode(self.behaviour.task_default_fields))
        for key, value in defaults.items():
            resource.setdefault(key, value)
        return resource

    def redeliver(self, delivery_index: int) -> None:
        """Send the request of `deliveries[delivery_index]` again, byte for byte, headers
        included (same t, nonce and signature): the replay of a past request that the
        document's nonce advice is about. Retried like any delivery."""
        delivery = self.deliveries[delivery_index]
        replay = WebhookMessage(
            subscription_id=delivery.subscription_id,
            url=delivery.url,
            event=delivery.event,
            envelope=msgspec.json.decode(delivery.body),
            body=delivery.body,
            headers=dict(delivery.headers),
        )
        self._spawn(replay, redelivery=True)

    def _webhook_headers(self, secret: str | None, body: bytes) -> dict[str, str]:
        headers = {
            "Content-Type": self.behaviour.webhook_content_type,
            "User-Agent": self.behaviour.webhook_user_agent,
        }
        if secret:
            # Documented: a signature only "as long as you have enabled the feature by
            # setting a secret key".
            t = int(self._aware_now().timestamp())
            headers[SIGNATURE_HEADER] = signature_header(secret, t, new_nonce(), body)
        return headers

    def _retry_policy(self) -> RetryPolicy:
        return self.behaviour

    def _may_attempt(self, message: WebhookMessage, attempt: int) -> bool:
        return attempt <= self.behaviour.webhook_max_attempts

    def _attempt_request(
        self, message: WebhookMessage, attempt: int
    ) -> tuple[str, bytes, dict[str, str]]:
        behaviour = self.behaviour
        if attempt == 1 or not behaviour.retry_resigns:
            return message.url, message.body, message.headers
        body = message.body
        if behaviour.retry_refreshes_sent_at:
            envelope = {**message.envelope, "_sentAt": format_timestamp(self._clock())}
            body = msgspec.json.encode(envelope)
        subscription = next(s for s in self.subscriptions if s.id == message.subscription_id)
        return message.url, body, self._webhook_headers(subscription.secret, body)

    def _after_attempt(self, message: WebhookMessage, attempt: Attempt) -> bool:
        delivery = Delivery(
            subscription_id=message.subscription_id,
            url=message.url,
            event=message.event,
            attempt=attempt.number,
            body=attempt.body,
            headers=dict(attempt.headers),
            status=attempt.status,
            error=attempt.error,
            redelivery=attempt.redelivery,
        )
        self.deliveries.append(delivery)
        return delivery.ok or attempt.number == self.behaviour.webhook_max_attempts

    def _resource(self, value: Mapping[str, Any] | int | str) -> Json:
        if isinstance(value, Mapping):
            return dict(value)
        return {"id": value}

    def _task_object(self, task: Mapping[str, Any] | int | None) -> Json:
        if task is None:
            task = self.tasks[-1].id if self.tasks else 1
        if isinstance(task, int) and any(t.id == task for t in self.tasks):
            return self.task_resource(task)
        obj = self._resource(task)
        for key, default in self.behaviour.task_default_fields.items():
            obj.setdefault(key, msgspec.json.decode(msgspec.json.encode(default)))
        return obj

    def _spare_part_context(
        self,
        task: Mapping[str, Any] | int | None,
        spare_part: Mapping[str, Any] | int | str,
        location: Mapping[str, Any] | int | str | None,
        initiator: Mapping[str, Any] | int | None,
    ) -> Json:
        if location is None:
            location = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.network_id}/location/1"))
        if initiator is None:
            first = next(iter(self.users.values()), None)
            initiator = {"id": first.id, "email": first.email} if first else {"id": 1}
        elif isinstance(initiator, int) and initiator in self.users:
            initiator = {"id": initiator, "email": self.users[initiator].email}
        return {
            "task": self._task_object(task),
            "sparePart": self._resource(spare_part),
            "location": self._resource(location),
            "initiator": self._resource(initiator),
        }

    # ------------------------------------------------------------------ API

    def _new_request_id(self) -> str:
        if self.behaviour.request_id_format == "hex":
            return uuid.uuid4().hex
        return str(uuid.uuid4())

    @web.middleware
    async def _request_id_middleware(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        """Give every response a unique `Request-Id` and log API requests.

        The document tells users to quote the `Request-Id` "returned in the response HTTP
        headers" to support, so every answer has one, errors and unknown paths included.
        """
        arrived = time.monotonic()
        request_id = self._new_request_id()
        request[_REQUEST_ID] = request_id
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            # Router misses (unknown path, wrong method) in the document's error shape.
            response = self._generic_error(exc.status)
        response.headers["Request-Id"] = request_id
        if not request.path.startswith("/_fake/"):
            self.requests.append(
                RequestLogEntry(
                    method=request.method,
                    path=request.path,
                    status=response.status,
                    request_id=request_id,
                    at=arrived,
                )
            )
        return response

    def _errors(self) -> MobilityWorkErrors:
        return MobilityWorkErrors(code_suffix=self.behaviour.error_code_suffix)

    def _generic_error(self, status: int, headers: Mapping[str, str] | None = None) -> web.Response:
        return self._errors().response(status, headers=headers)

    def _arrive(self, request: web.Request, at: float) -> None:
        return None

    def _injected(self, status: int, retry_after: float | None) -> web.Response:
        return self._generic_error(status, retry_after_headers(retry_after))

    def _admit(self, request: web.Request, state: None, at: float) -> web.Response | None:
        if _API_KEY.read(request.headers) != self.api_key:
            return self._errors().unauthorized()
        return None

    async def _dispatch(self, request: web.Request, arrival: Arrival[None]) -> web.Response:
        return self._route(request, arrival.body)

    def _log_request(
        self, request: web.Request, arrival: Arrival[None], response: web.Response
    ) -> None:
        # Logged by `_request_id_middleware`, which also sees the router's misses.
        return None

    def _route(self, request: web.Request, body: bytes) -> web.Response:
        """Handle an authenticated API request synchronously (so a delay cannot split it)."""
        if request.path not in _TASK_PATHS:
            return self._generic_error(404)
        if request.method != "POST":
            return self._generic_error(405, {"Allow": "POST"})
        wrong_type_status = self.behaviour.wrong_content_type_status
        if wrong_type_status is not None and request.content_type != "application/json":
            return self._generic_error(wrong_type_status)
        return self._create_task(request, body)

    def _create_task(self, request: web.Request, raw: bytes) -> web.Response:
        behaviour = self.behaviour
        try:
            payload = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            payload = None
        if not isinstance(payload, dict):
            global_error = error_item(behaviour.message_keys["invalid_json"])
            return self._errors().invalid_payload({}, [global_error])
        errors = _TaskErrors()
        description = self._check_description(payload, errors)
        equipment = self._check_equipment(payload, errors)
        start = self._check_date_time(payload, "startDateTime", errors)
        end = self._check_date_time(payload, "endDateTime", errors)
        if (
            behaviour.reject_end_before_start
            and start is not None
            and end is not None
            and datetime.fromisoformat(end) < datetime.fromisoformat(start)
        ):
            errors.add(
                "/endDateTime",
                behaviour.message_keys["date_range"],
                {"startDateTime": start, "endDateTime": end},
            )
        all_day = self._check_all_day(payload, errors)
        assignee_ids = self._check_assignees(payload, errors)
        if behaviour.reject_unknown_properties:
            known = {"equipment", "description", "startDateTime", "endDateTime", "allDay"}
            for name in payload:
                if name not in known and name != "assignees":
                    errors.add(_pointer(name), behaviour.message_keys["unknown_property"], {})
        if errors.by_pointer:
            return self._errors().invalid_payload(errors.by_pointer)
        assert description is not None and equipment is not None  # no errors: both checked
        status = behaviour.task_create_status
        task = StoredTask(
            id=self._next_task_id,
            equipment_id=equipment.id,
            description=description,
            start_date_time=start,
            end_date_time=end,
            all_day=all_day,
            assignee_ids=assignee_ids,
            status=status,
            request_id=request[_REQUEST_ID],
            payload=payload,
        )
        self._next_task_id += 1
        self.tasks.append(task)
        user_agent = request.headers.get("User-Agent", "")
        self.calls.append(
            RecordedCall(
                method=request.method,
                path=request.path,
                status=status,
                request_id=request[_REQUEST_ID],
                headers=dict(request.headers),
                json=payload,
                task_id=task.id,
                user_agent_names_network=self.network_name in user_agent,
            )
        )
        if behaviour.api_task_created_event is not None:
            self.emit(behaviour.api_task_created_event, {"task": self.task_resource(task.id)})
        # Documented: "a simple 201 http code response, with no payload" (202 likewise).
        return web.Response(status=status)

    def _present(self, payload: Json, name: str, errors: _TaskErrors) -> bool:
        """Whether `name` was sent; records a `required` error when it must be and is not."""
        if name in payload:
            return True
        if name in self.behaviour.task_required_fields:
            errors.add(_pointer(name), self.behaviour.message_keys["required"], {})
        return False

    def _type_error(self, errors: _TaskErrors, pointer: str, expected: str, value: Any) -> None:
        errors.add(
            pointer,
            self.behaviour.message_keys["type"],
            {"expected": expected, "actual": _json_type(value)},
        )

    def _check_description(self, payload: Json, errors: _TaskErrors) -> str | None:
        if not self._present(payload, "description", errors):
            return None
        value = payload["description"]
        if not isinstance(value, str):
            self._type_error(errors, "/description", "string", value)
            return None
        minimum = self.behaviour.description_min_length
        maximum = self.behaviour.description_max_length
        if len(value) < minimum:
            errors.add(
                "/description", "error.payload.min_length", {"min": minimum, "length": len(value)}
            )
            return None
        if maximum is not None and len(value) > maximum:
            errors.add(
                "/description",
                self.behaviour.message_keys["max_length"],
                {"max": maximum, "length": len(value)},
            )
            return None
        return value

    def _check_equipment(self, payload: Json, errors: _TaskErrors) -> Equipment | None:
        behaviour = self.behaviour
        if not self._present(payload, "equipment", errors):
            return None
        value = payload["equipment"]
        kind: str | None
        reference: Any
        if isinstance(value, int) and not isinstance(value, bool):
            kind, reference = "native", value
        elif isinstance(value, str):
            kind, reference = behaviour.bare_string_equipment, value
        elif isinstance(value, dict):
            kind, reference = self._equipment_object(value, errors)
            if kind is None:
                return None
        else:
            kind, reference = None, value
        if kind is None:
            self._type_error(errors, "/equipment", "integer|object", value)
            return None
        found = self._find_equipment(kind, reference)
        if found is None:
            errors.add(
                "/equipment",
                "error.payload.equipment.unknown",
                {"type": kind, "value": reference},
            )
        return found

    def _equipment_object(self, value: Json, errors: _TaskErrors) -> tuple[str | None, Any]:
        """(type, value) of `{"type": …, "value": …}`; (None, …) after recording errors."""
        keys = self.behaviour.message_keys
        kind = value.get("type")
        ok = True
        if "type" not in value:
            errors.add("/equipment/type", keys["required"], {})
            ok = False
        elif kind not in self.behaviour.equipment_reference_types:
            errors.add(
                "/equipment/type",
                keys["choice"],
                {"choices": list(self.behaviour.equipment_reference_types), "value": kind},
            )
            ok = False
        if "value" not in value:
            errors.add("/equipment/value", keys["required"], {})
            return None, None
        reference = value["value"]
        if kind == "externalReference" and not isinstance(reference, str):
            self._type_error(errors, "/equipment/value", "string", reference)
            ok = False
        if kind == "native" and (
            isinstance(reference, bool) or not isinstance(reference, int | str)
        ):
            self._type_error(errors, "/equipment/value", "integer|string", reference)
            ok = False
        return (str(kind), reference) if ok else (None, None)

    def _find_equipment(self, kind: str, reference: Any) -> Equipment | None:
        if kind == "native":
            return self.equipments.get(reference)
        return next(
            (e for e in self.equipments.values() if self._same_item_code(e.item_code, reference)),
            None,
        )

    def _same_item_code(self, a: str, b: str) -> bool:
        return a == b if self.behaviour.item_code_case_sensitive else a.lower() == b.lower()

    def _same_email(self, a: str, b: str) -> bool:
        return a.lower() == b.lower() if self.behaviour.email_case_insensitive else a == b

    def _check_date_time(self, payload: Json, name: str, errors: _TaskErrors) -> str | None:
        if not self._present(payload, name, errors):
            return None
        value = payload[name]
        if not isinstance(value, str):
            self._type_error(errors, _pointer(name), "string", value)
            return None
        # Read from the behaviour at each check (re caches the compiled pattern), so that a
        # test that swaps `behaviour` on a running fake gets the pattern it set.
        valid = bool(re.match(self.behaviour.date_time_pattern, value))
        if valid:
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                valid = False
            else:
                valid = parsed.tzinfo is not None
        if not valid:
            errors.add(
                _pointer(name),
                self.behaviour.message_keys["date_time"],
                {"format": self.behaviour.date_time_format_label, "value": value},
            )
            return None
        return value

    def _check_all_day(self, payload: Json, errors: _TaskErrors) -> bool:
        if not self._present(payload, "allDay", errors):
            return False
        value = payload["allDay"]
        if not isinstance(value, bool):
            self._type_error(errors, "/allDay", "boolean", value)
            return False
        return value

    def _check_assignees(self, payload: Json, errors: _TaskErrors) -> list[int]:
        if not self._present(payload, "assignees", errors):
            return []
        value = payload["assignees"]
        if not isinstance(value, list):
            self._type_error(errors, "/assignees", "array", value)
            return []
        ids: list[int] = []
        for index, item in enumerate(value):
            pointer = f"/assignees/{index}"
            if isinstance(item, int) and not isinstance(item, bool):
                if item in self.users:
                    ids.append(item)
                else:
                    errors.add(
                        pointer, "error.payload.assignees.unknown", {"type": "id", "value": item}
                    )
            elif isinstance(item, str):
                user = next(
                    (u for u in self.users.values() if self._same_email(u.email, item)), None
                )
                if user is not None:
                    ids.append(user.id)
                else:
                    errors.add(
                        pointer, "error.payload.assignees.unknown", {"type": "email", "value": item}
                    )
            else:
                self._type_error(errors, pointer, "integer|string", item)
        return ids

    def _aware_now(self) -> datetime:
        moment = self._clock()
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

    # ------------------------------------------------------------------ control API (/_fake)

    async def _ctl_emit(self, request: web.Request) -> web.Response:
        """POST /_fake/webhooks/{event} with the payload fields as a JSON object."""
        fields = await read_json_object(request)
        try:
            emitted = self.emit(request.match_info["event"], fields)
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response(
            {
                "event": emitted.event,
                "subscribers": len(emitted.messages),
                "envelope": emitted.envelope,
            }
        )

    async def _ctl_subscribe(self, request: web.Request) -> web.Response:
        """POST /_fake/subscriptions {event, url[, secret]} (secret null = unsigned)."""
        body = await read_json_object(request)
        if not isinstance(body.get("event"), str) or not isinstance(body.get("url"), str):
            return json_response({"error": "event and url must be strings"}, 400)
        secret: str | _Default | None = _Default.SECRET
        if "secret" in body:
            secret = None if body["secret"] is None else str(body["secret"])
        subscription = self.subscribe(body["event"], body["url"], secret)
        return json_response(
            {"id": subscription.id, "event": subscription.event, "url": subscription.url}
        )

    async def _ctl_tasks(self, request: web.Request) -> web.Response:
        """GET /_fake/tasks: the tasks created through the API."""
        return json_response(self.tasks)

    async def _ctl_add_equipment(self, request: web.Request) -> web.Response:
        """POST /_fake/equipments {id, itemCode[, name]}."""
        body = await read_json_object(request)
        equipment_id, item_code = body.get("id"), body.get("itemCode")
        if not isinstance(equipment_id, int | str) or isinstance(equipment_id, bool):
            return json_response({"error": "id must be an integer or a string"}, 400)
        if not isinstance(item_code, str):
            return json_response({"error": "itemCode must be a string"}, 400)
        try:
            equipment = self.add_equipment(
                equipment_id, item_code, str(body.get("name", "Equipment"))
            )
        except ValueError as exc:
            return json_response({"error": str(exc)}, 409)
        return json_response(equipment)

    async def _ctl_add_user(self, request: web.Request) -> web.Response:
        """POST /_fake/users {id, email[, name]}."""
        body = await read_json_object(request)
        user_id, email = body.get("id"), body.get("email")
        if not isinstance(user_id, int) or isinstance(user_id, bool) or not isinstance(email, str):
            return json_response({"error": "id must be an integer and email a string"}, 400)
        try:
            user = self.add_user(user_id, email, str(body.get("name", "User")))
        except ValueError as exc:
            return json_response({"error": str(exc)}, 409)
        return json_response(user)
