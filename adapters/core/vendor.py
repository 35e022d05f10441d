"""What a vendor package declares. The core runs these declarations and knows no vendor.

A vendor folder exposes one `VendorSpec`: its auth, webhook verifier and event mapping,
pollable resources, command catalogue, error table, documented rate limit and fake server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

import msgspec

from adapters.core.auth import Auth
from adapters.core.errors import ErrorTable
from adapters.core.vendor_http import RateLimitHeaders
from adapters.settings import VendorOptions

if TYPE_CHECKING:
    from adapters.core.batching import BatchSpec
    from adapters.core.change_source import ChangeSource, ScopeSource
    from adapters.core.command_result import CommandResult
    from adapters.core.track_change import TrackChange
    from adapters.core.vendor_call import CallOutcome
    from adapters.core.vendor_http import VendorClient, VendorResponse
    from adapters.devkit import StartDevFake
    from adapters.settings import InstanceConfig


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
    # The sender's address (through trusted proxies, see `peer.client_address`), for
    # vendors that deliver from fixed addresses (CLOUDWORK|PRO's allowlist).
    peer: str | None = None


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
    # Addresses (CIDRs) the vendor delivers from; others get 403. Empty: any sender.
    allowed_sources: Callable[[InstanceConfig], Sequence[str]] = lambda _i: ()


@dataclass(frozen=True)
class PollResource:
    """One pollable resource: the change source that finds its changes (a listing, a watch,
    a webhook recovery; see change_source.py), and whether it runs once per scope that
    `PollSpec.scopes` discovers (each (scope, resource) is then a task with one owner)."""

    name: str
    source: ChangeSource[Any]
    scoped: bool = False
    # Whether it recovers missed webhooks from the vendor's store: `workbridge backfill`
    # runs these (and only these) on demand.
    recovery: bool = False


@dataclass(frozen=True)
class PollSpec:
    """A vendor's pollable resources, and how the scopes of fanned-out ones are found."""

    resources: Mapping[str, PollResource]
    scopes: ScopeSource | None = None


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
    # The result's `response` from a successful answer's decoded body (CMO: the bare id
    # string of a create becomes `{"id": ...}`); None: the body as the vendor sent it.
    answer: Callable[[Any], Any] | None = None
    # What the command's result says about the ids a watch follows (tracking.py): called
    # with the command's data, its result and its id; written in the result's transaction.
    track: Callable[[msgspec.Struct, CommandResult, str], TrackChange | None] | None = None
    # No vendor call at all (CMO's track/untrack): the result is `succeeded` at once, with
    # `answer(data)` as its response when given.
    local: bool = False
    # The id of the watched record the command changes (its echo is announced with the
    # in-flight mark, before the request leaves: tracking.py).
    echo: Callable[[msgspec.Struct], str | None] | None = None


def static_auth(headers: Callable[[InstanceConfig], dict[str, str]]) -> Callable[[Any], Auth]:
    """An `auth` declaration for a vendor whose credentials are fixed headers."""
    return lambda inst: Auth(headers(inst))


@dataclass(frozen=True)
class RateLimit:
    """A fixed budget of requests per window: the vendor's documented limit, or (with
    `documented=False`) Workbridge's default for a vendor that documents none, which an
    instance may raise."""

    requests: int
    per_seconds: float
    documented: bool = True


@dataclass(frozen=True)
class VendorSpec:
    """Everything the core needs to run one vendor."""

    id: str
    # How the instance's calls are authenticated (`Auth`: static headers; `TokenAuth`: a
    # token exchange; either with a client certificate).
    auth: Callable[[InstanceConfig], Auth]
    errors: ErrorTable
    rate_limit: RateLimit | None = None
    rate_limit_headers: RateLimitHeaders | None = None
    webhook: WebhookSpec | None = None
    poll: PollSpec | None = None
    commands: Mapping[str, CommandSpec] = field(default_factory=dict)
    # The catalogue bound to one instance's settings at build time, for builds that need
    # them (CMO: a due date is the last millisecond of the day in the company's time zone).
    # None: `commands` as declared. It must keep the same command types.
    bind_commands: (
        Callable[[InstanceConfig, Mapping[str, CommandSpec]], Mapping[str, CommandSpec]] | None
    ) = None
    # Return (key, problem) when an instance's settings cannot work for this vendor.
    check_instance: Callable[[InstanceConfig], tuple[str, str] | None] = lambda _i: None
    # The struct of the instance's `options`, checked with the rest of the config (errors
    # name the key); vendor code reads it as `<its options class>.of(inst)`.
    options: type[VendorOptions] = VendorOptions
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
    # The vendor's batch endpoint, as one instance uses it (None: no batching for it); the
    # executor then coalesces queued commands into it (batching.py).
    batch: Callable[[InstanceConfig], BatchSpec | None] | None = None
    # Asked once a process has started its parts for the instance: a problem that no retry
    # will fix (Click Maint: the API key is refused) as text, and the process stops with it.
    # Its requests are within the budget like any other. None: nothing to check.
    startup_check: Callable[[VendorClient, InstanceConfig], Awaitable[str | None]] | None = None
    # Starts the vendor's fake for `workbridge dev` (None: the vendor is left out of it).
    dev: StartDevFake | None = None
    # Whether the vendor's commands feed a watch (tracking.py): its instances get the topic
    # `<prefix>.<name>.state.tracked`.
    tracking: bool = False
