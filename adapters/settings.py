"""The configuration as plain data: the msgspec structs of the YAML file, and nothing else.

This module is a leaf: it imports no other module of the project but `adapters.core.secret`,
so that the loader (`adapters.config`), the vendor packages and the core can all use these
types without importing each other. Reading the file lives in `adapters.config`; checking an
instance against its vendor lives in `adapters.validation`, which is handed the registry.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

import msgspec

from adapters.core.secret import Secret

__all__ = [
    "CommandsConfig",
    "Config",
    "ConfigError",
    "InstanceConfig",
    "KafkaConfig",
    "LedgerConfig",
    "OptionsError",
    "PolledVendorOptions",
    "PollingConfig",
    "RateLimitConfig",
    "RolesConfig",
    "SaslConfig",
    "ServerConfig",
    "TlsConfig",
    "TopicsConfig",
    "VendorOptions",
    "VendorTlsConfig",
    "WebhooksConfig",
    "describe_validation_error",
]


Positive = Annotated[int, msgspec.Meta(ge=1)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and the problem."""


class OptionsError(ConfigError):
    """An instance's `options` do not fit its vendor's options struct.

    `key` is dotted from the instance (`options.signature_tolerance_s`), so that a vendor's
    `check_instance` can hand back (key, problem) and the loader can put `instances[i].` first.
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


_AT = re.compile(r" - at `\$(.*)`$")
_UNKNOWN = re.compile(r"Object contains unknown field (\S+)")


def describe_validation_error(exc: msgspec.ValidationError) -> tuple[str, str]:
    """(dotted key, problem) of a msgspec error, in the words configuration errors use.

    msgspec says `Expected `float`, got `str` - at `$.polling.interval_s``; users read
    `polling.interval_s: Expected float, got str`, and an unknown key is named as a key.
    """
    message = str(exc)
    match = _AT.search(message)
    where = match.group(1).lstrip(".") if match else ""
    what = _AT.sub("", message).replace("`", "")
    unknown = _UNKNOWN.match(what)
    if unknown:
        where = f"{where}.{unknown.group(1)}" if where else unknown.group(1)
        what = "unknown key (check its spelling against README.md)"
    return where, what


class _Base(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class TlsConfig(_Base):
    """TLS towards the brokers. Files are PEM; mount them from a Secret."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password: Secret | None = None
    check_hostname: bool = True


class VendorTlsConfig(_Base):
    """TLS towards a vendor: a client certificate for mutual TLS, a private CA. PEM files."""

    cert_file: str | None = None
    key_file: str | None = None
    key_password: Secret | None = None
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both cert_file and key_file for a client certificate")


class SaslConfig(_Base, kw_only=True):
    """SASL authentication towards the brokers."""

    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    username: str
    password: Secret


class TopicsConfig(_Base):
    """How topics that Workbridge creates are laid out."""

    create: bool = True
    partitions: Positive = 3
    # Production clusters: 3 brokers, so acks=all means two copies at least (min ISR 2).
    replication_factor: Positive = 3
    # Default: replication_factor - 1 (1 on a single broker).
    min_insync_replicas: Positive | None = None
    # The idempotency window: a command repeated later than this is no longer recognised.
    ledger_retention_days: Annotated[float, msgspec.Meta(gt=0)] = 14.0


class KafkaConfig(_Base):
    """Connection to the Kafka cluster."""

    bootstrap_servers: str
    client_id: str = "workbridge"
    topic_prefix: str = "workbridge"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    tls: TlsConfig | None = None
    sasl: SaslConfig | None = None
    topics: TopicsConfig = msgspec.field(default_factory=TopicsConfig)
    # The webhook answer waits for acks=all at most this long (kept below every vendor deadline).
    send_timeout_s: PositiveFloat = 5.0
    linger_ms: NonNegative = 5
    request_timeout_ms: Positive = 30000

    def __post_init__(self) -> None:
        if self.security_protocol.startswith("SASL") and self.sasl is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs a `sasl` section")


class ServerConfig(_Base):
    """The HTTP server for webhooks, health and metrics."""

    host: str = "0.0.0.0"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8080
    max_body_bytes: Positive = 1_048_576
    # Sends awaiting a Kafka ack at once; past it webhooks get 503 + Retry-After (load shedding).
    max_in_flight: Positive = 2000
    # Keep it below Kubernetes' terminationGracePeriodSeconds (30 s by default).
    shutdown_grace_s: Annotated[float, msgspec.Meta(ge=0, le=300)] = 20.0
    # SIGTERM: /readyz turns 503 at once, but the listener keeps accepting this long (part of
    # the grace), while the load balancer or Kubernetes stops routing here.
    shutdown_delay_s: Annotated[float, msgspec.Meta(ge=0, le=300)] = 2.0
    # A request's line and headers must arrive within this long from their first byte.
    header_timeout_s: PositiveFloat = 10.0
    # An idle connection is closed after this long. Above the common load balancers' 60 s, so
    # they close first and never send on a connection this side has just closed.
    keepalive_timeout_s: PositiveFloat = 75.0
    # The request line and each header: at most this many bytes; at most `max_headers` headers.
    max_header_bytes: Annotated[int, msgspec.Meta(ge=1024, le=65536)] = 8190
    max_headers: Annotated[int, msgspec.Meta(ge=16, le=1000)] = 100
    # Proxies in front of the server (the ingress), as addresses or CIDRs: only their
    # `X-Forwarded-For` is believed for a webhook sender's address (vendor allowlists).
    trusted_proxies: list[str] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        for entry in self.trusted_proxies:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(
                    f"trusted_proxies: {entry!r} is not an IP address or network"
                ) from None
        if self.shutdown_delay_s > self.shutdown_grace_s:
            raise ValueError(
                f"shutdown_delay_s ({self.shutdown_delay_s:g}) is part of shutdown_grace_s "
                f"({self.shutdown_grace_s:g}) and cannot exceed it"
            )


class RolesConfig(_Base):
    """Which parts run in this process (the Helm chart runs them as separate Deployments)."""

    webhooks: bool = True
    pollers: bool = True
    commands: bool = True


class RateLimitConfig(_Base):
    """Requests allowed per window for one instance, across the whole deployment."""

    requests: Positive
    per_seconds: PositiveFloat
    # Deprecated and ignored: the processes that call the vendor share the budget through
    # Kafka (adapters/core/budget.py). Accepted so that old files still load (with a warning).
    processes: Positive | None = None
    # For fakes and load tests only: allow a budget above the vendor's documented limit.
    above_documented: bool = False


class PollingConfig(_Base):
    """Polling of a vendor's changed records."""

    enabled: bool = False
    resources: list[str] = msgspec.field(default_factory=list)
    interval_s: PositiveFloat = 60.0
    # Re-read this far behind the cursor: vendor timestamps have coarse precision and may lag.
    overlap_s: Annotated[float, msgspec.Meta(ge=0)] = 2.0
    # `beginning` publishes every existing record on the first poll; `now` only later changes.
    start_from: Literal["beginning", "now"] = "beginning"
    page_size: Positive = 100
    # Events and the cursor move in transactions of at most this many events.
    max_batch: Positive = 500
    # Pages one cycle of a listing reads before it yields to the next cycle (it goes on where
    # it stopped). Default: the vendor's declaration (50 for a listing).
    max_pages: Positive | None = None
    # Published record versions a task remembers, so that what the overlap re-reads is not
    # published again (~40 bytes each in the task's state record). Default: the vendor's
    # declaration (10,000 for a listing). Raise it for an account with more changes per
    # `overlap_s` than that.
    seen_limit: Positive | None = None
    # How far behind the vendor's `Date` the next pass starts: that header has whole
    # seconds. Default: the vendor's declaration (1 s for a listing).
    date_margin_s: Annotated[float, msgspec.Meta(ge=0)] | None = None
    # Leave out a polled version whose event a webhook already put on the topic (same id),
    # where the vendor's listing declares it can (MOCO; CLOUDWORK|PRO's missed-webhook
    # recovery). false: publish every version read (a consumer deduplicates by id).
    skip_published: bool = True
    # The most of this process's share of the vendor budget that polls may take in a window,
    # so that commands are never starved by many (entity, resource) tasks. 1: no reserve.
    max_budget_share: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.5
    # A task not visited for longer than this is reported (log and the staleness metric):
    # the budget's poll share cannot serve every task that often. Default: 10 x interval_s.
    max_staleness_s: PositiveFloat | None = None

    def __post_init__(self) -> None:
        if self.enabled and not self.resources:
            raise ValueError("polling is enabled but `resources` is empty")


class CommandsConfig(_Base):
    """Consumption of the instance's command topic."""

    enabled: bool = False
    # A command whose vendor call has not succeeded by then gets its final result.
    # Default: the vendor's advice (Mobility Work: an hour), else 300 s.
    deadline_s: PositiveFloat | None = None
    max_attempts: Positive = 10
    # Default: the vendor's advice (Mobility Work: minutes), else 1 s.
    backoff_base_s: PositiveFloat | None = None
    # Default: the vendor's advice (Mobility Work: 10 minutes), else 60 s.
    backoff_max_s: PositiveFloat | None = None
    # Commands worked on at once by this process; commands of one subject run in order.
    # Those that finish together share one Kafka transaction. Default: 16, or twice the
    # batch size for a vendor whose commands are batched (a batch holds only calls in
    # progress at once).
    concurrency: Positive | None = None


class WebhooksConfig(_Base):
    """The instance's webhook endpoint."""

    enabled: bool = True


class VendorOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The `options` every vendor takes. A vendor subclasses it and names it in its VendorSpec.

    Every field has a default (an instance may leave `options` out); those the vendor's
    document does not give come from its `undocumented.py`.
    Options are decoded strictly: a quoted "300" is not a number here. The vendors' own
    checks always refused it, and the rest of the file is lenient only so that `${PORT}` can
    fill a number, which no option needs yet.
    """

    command_paths: Annotated[
        dict[str, str],
        msgspec.Meta(
            description="command type -> path, with {field} placeholders filled from the "
            "command's data: replaces the catalogue's path, and switches on an action whose "
            "path the vendor document does not give"
        ),
    ] = msgspec.field(default_factory=dict)

    @classmethod
    def decode(cls, raw: Any) -> Self:
        """`raw` (an instance's `options` as written) as this struct; raises `OptionsError`."""
        try:
            return msgspec.convert(raw, cls, strict=True)
        except msgspec.ValidationError as exc:
            where, what = describe_validation_error(exc)
            raise OptionsError(f"options.{where}" if where else "options", what) from None

    @classmethod
    def of(cls, inst: InstanceConfig) -> Self:
        """The instance's options as this struct (raises `OptionsError` if they do not fit).

        A checked configuration holds the struct already; an InstanceConfig that did not go
        through `check_config` (built by a test or a tool) is converted here, with the same
        errors, so vendor code never reads an unchecked mapping.
        """
        return cls.cast(inst.options)

    @classmethod
    def cast(cls, options: object) -> Self:
        """`options` as this struct: itself when it is one; another options struct or a mapping
        converted with the same errors (`OptionsError`), never read by name or silently
        defaulted. For vendor code handed the base type (a poll context, a scope source)."""
        if isinstance(options, cls):
            return options
        if isinstance(options, VendorOptions):
            options = msgspec.to_builtins(options)
        return cls.decode(options)


class PolledVendorOptions(VendorOptions, kw_only=True, forbid_unknown_fields=True):
    """The options of a vendor that is polled: where each listing lives."""

    resource_paths: Annotated[
        dict[str, str],
        msgspec.Meta(
            description="polled resource -> its collection path (default: the vendor's "
            "paths, guessed where its document gives none)"
        ),
    ] = msgspec.field(default_factory=dict)
    poll_params: Annotated[
        dict[str, dict[str, str | None]],
        msgspec.Meta(
            description="polled resource -> query parameters of its listing over the "
            "vendor's defaults; null drops one"
        ),
    ] = msgspec.field(default_factory=dict)


class InstanceConfig(_Base, kw_only=True):
    """One connector instance: a vendor account."""

    vendor: str
    name: str = ""
    base_url: str
    api_key: Secret | None = None
    webhook_secret: Secret | None = None
    # Further vendor credentials (login, password, client secret, ...).
    credentials: dict[str, Secret] = msgspec.field(default_factory=dict)
    content_mode: Literal["binary", "structured"] = "binary"
    http_timeout_s: PositiveFloat = 30.0
    # Mutual TLS towards the vendor (CMO): client certificate, key, and the CA to trust.
    tls: VendorTlsConfig | None = None
    rate_limit: RateLimitConfig | None = None
    webhooks: WebhooksConfig = msgspec.field(default_factory=WebhooksConfig)
    polling: PollingConfig = msgspec.field(default_factory=PollingConfig)
    commands: CommandsConfig = msgspec.field(default_factory=CommandsConfig)
    # Vendor-specific settings, declared by each vendor as a `VendorOptions` struct. As
    # decoded here it is the mapping as written (this module knows no vendor);
    # `adapters.validation.check_config` replaces it by the vendor's struct. Read it with
    # `<Vendor>Options.of(inst)`, which works in both states.
    options: Any = msgspec.field(default_factory=dict)

    @property
    def instance_name(self) -> str:
        """The name used in topics and webhook paths (defaults to the vendor id)."""
        return self.name or self.vendor


LEDGER_DIR_ENV = "WORKBRIDGE_LEDGER_DIR"


class LedgerConfig(_Base):
    """Where a command worker keeps the index of its idempotency ledger (the ledger itself is
    the compacted `.state.ledger` topic; the index makes it cheap to look keys up)."""

    # A directory for the on-disk index, which is also a checkpoint: a restart that finds it
    # reads only the ledger records written since. Default: `$WORKBRIDGE_LEDGER_DIR` when
    # set, else a private temporary index that the next run rebuilds from the topic.
    dir: str | None = None
    # A restore that does not move for this long gives its partition up (the process stops
    # and is restarted); a long one that moves is never cut short.
    restore_stall_s: PositiveFloat = 120.0

    def index_dir(self, environ: Mapping[str, str]) -> str | None:
        """`dir`, else `$WORKBRIDGE_LEDGER_DIR` in `environ`, else None (a private index)."""
        return self.dir or environ.get(LEDGER_DIR_ENV) or None


class Config(_Base, kw_only=True):
    """The whole configuration file."""

    kafka: KafkaConfig
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    roles: RolesConfig = msgspec.field(default_factory=RolesConfig)
    instances: list[InstanceConfig] = msgspec.field(default_factory=list)
    ledger: LedgerConfig = msgspec.field(default_factory=LedgerConfig)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
