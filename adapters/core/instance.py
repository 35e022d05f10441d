"""A running connector instance: its config, vendor declarations, topics and API client."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cloudevents.core.v1.event import CloudEvent

from adapters.core.auth import Auth, ClientTls
from adapters.core.batching import Batcher
from adapters.core.cloudevents_codec import Headers, make_event, to_kafka
from adapters.core.kafka import Topics
from adapters.core.ratelimit import Limiter, SlidingWindowLimiter, Unlimited
from adapters.core.vendor import CommandSpec, EventDraft, VendorSpec
from adapters.core.vendor_http import VendorClient
from adapters.settings import InstanceConfig, VendorOptions

SCHEMA_BASE = "https://workbridge.dev/schemas"


@dataclass
class Instance:
    """Everything the roles need about one instance, built once at start-up."""

    cfg: InstanceConfig
    spec: VendorSpec
    topics: Topics
    client: VendorClient
    # Coalesces the command executor's calls into the vendor's batch endpoint (if any).
    batcher: Batcher | None = None
    # The instance's options as its vendor's struct (`spec.options`).
    options: VendorOptions = field(default_factory=VendorOptions)
    # The vendor's command catalogue, bound to this instance's settings.
    commands: Mapping[str, CommandSpec] = field(default_factory=dict)

    @property
    def command_client(self) -> VendorClient | Batcher:
        """What the command executor sends its calls through."""
        return self.batcher if self.batcher is not None else self.client

    @property
    def name(self) -> str:
        """The instance name used in topics, paths, keys and metrics."""
        return self.cfg.instance_name

    @property
    def source(self) -> str:
        """The default CloudEvents `source`: vendor and account."""
        return f"/{self.spec.id}/{self.name}"

    def partition_key(self, subject: str) -> str:
        """Kafka key = CloudEvents partitionkey = `<name>/<subject>` (CONTRACT.md)."""
        return f"{self.name}/{subject}"

    def event(self, draft: EventDraft) -> CloudEvent:
        """Turn a vendor's draft into the CloudEvent that goes on the events topic."""
        return make_event(
            id=draft.id,
            source=draft.source or self.source,
            type=draft.type,
            subject=draft.subject,
            partitionkey=self.partition_key(draft.subject),
            data=draft.data,
            time=draft.time,
            # Only types with a schema in schemas/ point to one (unknown vendor events don't).
            dataschema=(
                f"{SCHEMA_BASE}/events/{draft.type}.json"
                if draft.type in self.spec.event_models
                else None
            ),
            extensions=draft.extensions,
        )

    def encode(self, event: CloudEvent) -> tuple[bytes | None, bytes, Headers]:
        """Kafka key, value and headers in the instance's content mode."""
        return to_kafka(event, self.cfg.content_mode)


def build_limiter(inst: InstanceConfig, spec: VendorSpec) -> Limiter:
    """The instance's vendor budget (configured, else documented, else none). A process
    that runs with others shares it with them through the budget group (budget.py)."""
    limit = inst.rate_limit
    if limit is not None:
        return SlidingWindowLimiter(limit.requests, limit.per_seconds)
    if spec.rate_limit is not None:
        return SlidingWindowLimiter(spec.rate_limit.requests, spec.rate_limit.per_seconds)
    return Unlimited()


def _with_tls(auth: Auth, inst: InstanceConfig) -> Auth:
    """The vendor's auth, with the instance's client certificate / CA when it sets one."""
    tls = inst.tls
    if tls is not None and auth.tls is None:
        auth.tls = ClientTls(
            cert_file=tls.cert_file,
            key_file=tls.key_file,
            key_password=tls.key_password,
            ca_file=tls.ca_file,
        )
    return auth


def build_instance(inst: InstanceConfig, spec: VendorSpec, prefix: str) -> Instance:
    """Wire one configured instance to its vendor declarations."""
    client = VendorClient(
        base_url=inst.base_url,
        auth=_with_tls(spec.auth(inst), inst),
        limiter=build_limiter(inst, spec),
        timeout_s=inst.http_timeout_s,
        user_agent=spec.user_agent(inst),
        rate_limit_headers=spec.rate_limit_headers,
    )
    commands = spec.commands
    if spec.bind_commands is not None:
        commands = spec.bind_commands(inst, spec.commands)
        if set(commands) != set(spec.commands):
            raise ValueError(f"{spec.id}: bind_commands must keep the catalogue's command types")
    batch = spec.batch(inst) if spec.batch is not None else None
    return Instance(
        cfg=inst,
        spec=spec,
        batcher=Batcher(client, batch, spec.errors) if batch is not None else None,
        options=spec.options.of(inst),
        topics=Topics(prefix, inst.instance_name),
        client=client,
        commands=commands,
    )
