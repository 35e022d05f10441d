"""What a vendor package declares. The core runs these declarations and knows no vendor.

A vendor folder exposes one `VendorSpec`: its auth, webhook verifier and event mapping,
pollable resources, command catalogue, error table, documented rate limit and fake server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

import msgspec

from adapters.core.errors import ErrorTable
from adapters.core.vendor_http import RateLimitHeaders

if TYPE_CHECKING:
    from adapters.config import InstanceConfig
    from adapters.core.vendor_call import CallOutcome
    from adapters.core.vendor_http import VendorResponse


class EventDraft(msgspec.Struct, frozen=True, kw_only=True):
    """A vendor change, ready to become a CloudEvent (the core adds source and the key)."""

    type: str
    subject: str
    id: str
    data: bytes
    time: datetime | None = None
    source: str | None = None
    extensions: dict[str, str] = msgspec.field(default_factory=dict)


class WebhookRejected(Exception):
    """Authentication failed: answer 401 and publish nothing. The text is safe to log."""


class WebhookUnparseable(Exception):
    """The request is authentic but its body cannot be turned into events: it goes to the DLQ."""


class WebhookRequest(msgspec.Struct, frozen=True):
    """What the webhook server hands to a vendor: lower-cased headers and the raw body."""

    headers: Mapping[str, str]
    body: bytes
    received_at: datetime


class WebhookVerifier(Protocol):
    """Checks a webhook's authenticity for an instance; raises `WebhookRejected`.

    Returns the delivery's replay key (e.g. a signed nonce) when the vendor gives one: the
    server refuses a second delivery with that key once the first one was published.
    """

    def __call__(self, request: WebhookRequest, instance: InstanceConfig) -> str | None: ...


class WebhookMapper(Protocol):
    """Turns an authentic webhook into event drafts; raises `WebhookUnparseable`."""

    def __call__(self, request: WebhookRequest, instance: str) -> list[EventDraft]: ...


@dataclass(frozen=True)
class WebhookSpec:
    """A vendor's webhook: how to verify it, how to map it, how long the vendor waits."""

    verify: WebhookVerifier
    to_events: WebhookMapper
    # The vendor's answer deadline; the Kafka ack wait is kept below it.
    deadline_s: float = 10.0
    # How long a replay key is remembered (the vendor's timestamp tolerance).
    replay_window_s: Callable[[InstanceConfig], float] = lambda _i: 0.0
    # Lower-case names of the headers that carry the signature: a request with two
    # different values of one is refused (which one would be checked is ambiguous).
    signature_headers: frozenset[str] = frozenset()
    # Bodies are JSON: their nesting is bounded before the mapper decodes them.
    json_body: bool = True


@dataclass(frozen=True)
class PollResource:
    """A collection that can be listed by change time (a stream, in Singer terms)."""

    name: str
    path: str
    event_resource: str
    replication_key: str
    since_param: str
    created_key: str | None = None
    primary_key: str = "id"
    params: Mapping[str, str] = field(default_factory=dict)


class Page(msgspec.Struct, frozen=True):
    """One page of a listing: its records, the next request (if any) and the vendor's total."""

    records: list[dict[str, Any]]
    next_url: str | None
    total: int | None


PageReader = Callable[["VendorResponse"], Page]


@dataclass(frozen=True)
class PollSpec:
    """How a vendor's listings are paged and how its timestamps read and write."""

    resources: Mapping[str, PollResource]
    read_page: PageReader
    parse_time: Callable[[str], datetime]
    format_since: Callable[[datetime], str]
    page_size_param: str


CommandKind = Literal["create", "update", "delete", "action"]


class PreparedCall(msgspec.Struct, frozen=True, kw_only=True):
    """A vendor request built from a command."""

    method: str
    path: str
    json: Any = None
    headers: dict[str, str] = msgspec.field(default_factory=dict)


class PrepareFailed(Exception):
    """A read needed to build the call failed; the outcome says how (the vendor's answer)."""

    def __init__(self, outcome: CallOutcome) -> None:
        super().__init__(outcome.error or "vendor read failed")
        self.outcome = outcome


class Reader(Protocol):
    """Reads from the vendor with the command's retry policy; raises `PrepareFailed`."""

    async def get(self, path: str, headers: Mapping[str, str]) -> VendorResponse: ...


Prepare = Callable[[Reader, msgspec.Struct, PreparedCall], Awaitable[PreparedCall]]
# Finds the record a create made (after a crash mid-call); None when there is none.
Lookup = Callable[[Reader, msgspec.Struct], Awaitable["VendorResponse | None"]]


@dataclass(frozen=True)
class CommandSpec:
    """One action of the catalogue: `workbridge.<vendor>.<resource>.<action>`."""

    type: str
    # A msgspec Struct (validated), or dict[str, Any] for a body the document does not give.
    model: Any
    method: str
    path: str
    kind: CommandKind
    build: Callable[[msgspec.Struct], PreparedCall]
    # Optional step that needs the vendor first (e.g. read current values to merge).
    prepare: Prepare | None = None
    # After a crash mid-call: find out whether the vendor acted. None → `ambiguous` for creates.
    lookup: Lookup | None = None
    # Whether sending the same request twice has the effect of sending it once.
    repeat_safe: bool = False
    # The document does not give the path: the action is off unless the user sets it.
    path_not_documented: bool = False
    # The path is a guess (the document is silent): on, overridable in options.command_paths.
    path_guessed: bool = False
    description: str = ""


@dataclass(frozen=True)
class RateLimit:
    """A fixed budget of requests per window."""

    requests: int
    per_seconds: float


@dataclass(frozen=True)
class VendorSpec:
    """Everything the core needs to run one vendor."""

    id: str
    auth_headers: Callable[[InstanceConfig], dict[str, str]]
    errors: ErrorTable
    rate_limit: RateLimit | None = None
    rate_limit_headers: RateLimitHeaders | None = None
    webhook: WebhookSpec | None = None
    poll: PollSpec | None = None
    commands: Mapping[str, CommandSpec] = field(default_factory=dict)
    # Return (key, problem) when an instance's settings cannot work for this vendor.
    check_instance: Callable[[InstanceConfig], tuple[str, str] | None] = lambda _i: None
    # Things an operator must hear at start-up (e.g. webhooks accepted unsigned).
    startup_warnings: Callable[[InstanceConfig], list[str]] = lambda _i: []
    user_agent: Callable[[InstanceConfig], str] = lambda _i: "workbridge/0.1"
    # Request headers that carry credentials: never copied into the DLQ.
    secret_headers: frozenset[str] = frozenset({"authorization", "proxy-authorization", "cookie"})
    # Data schemas of the vendor's event types, for schemas/ (type -> model).
    event_models: Mapping[str, type[msgspec.Struct]] = field(default_factory=dict)
    # Defaults of this vendor's command retries (e.g. "retry a few minutes later").
    retry_base_s: float | None = None
    retry_cap_s: float | None = None
    retry_deadline_s: float | None = None
