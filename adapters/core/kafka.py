"""Kafka plumbing: client settings (TLS, SASL), topic names, topic creation, producers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from adapters.core.kafka_errors import KafkaAccessError, classify_connect_error, tls_context
from adapters.core.record_limits import RecordLimitTooLow, check_topics_allow
from adapters.logging_setup import install_aiokafka_filters
from adapters.settings import KafkaConfig

log = logging.getLogger(__name__)


def client_kwargs(cfg: KafkaConfig) -> dict[str, Any]:
    """Connection settings shared by producers, consumers and the admin client.

    Raises :class:`KafkaAccessError` (naming the key) when a TLS file cannot be used.
    """
    # aiokafka logs SASL payloads at DEBUG: wherever credentials are handed over, its loggers
    # must already redact them.
    install_aiokafka_filters()
    kwargs: dict[str, Any] = {
        "bootstrap_servers": cfg.bootstrap_servers,
        "security_protocol": cfg.security_protocol,
        "request_timeout_ms": cfg.request_timeout_ms,
    }
    if cfg.security_protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = tls_context(cfg.tls)
    if cfg.sasl is not None:
        kwargs["sasl_mechanism"] = cfg.sasl.mechanism
        kwargs["sasl_plain_username"] = cfg.sasl.username
        kwargs["sasl_plain_password"] = cfg.sasl.password.reveal()
    return kwargs


async def diagnose_connection(
    cfg: KafkaConfig, *, timeout_s: float = 10.0
) -> KafkaAccessError | None:
    """Connect once to each bootstrap server as the clients do, and return the first refusal
    that waiting cannot cure (wrong password, untrusted CA, ...), or ``None``.

    aiokafka's clients only say "Unable to bootstrap"; a single connection shows the cause.
    """
    kwargs = client_kwargs(cfg)
    settings = {
        name: kwargs[name]
        for name in (
            "security_protocol",
            "ssl_context",
            "sasl_mechanism",
            "sasl_plain_username",
            "sasl_plain_password",
        )
        if name in kwargs
    }
    for host, port, _family in collect_hosts(cfg.bootstrap_servers, randomize=False):
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host,
                    port,
                    client_id=f"{cfg.client_id}-diagnosis",
                    request_timeout_ms=min(cfg.request_timeout_ms, int(timeout_s * 1000)),
                    **settings,
                ),
                timeout_s,
            )
        except (OSError, KafkaError, TimeoutError) as exc:
            refusal = classify_connect_error(exc, cfg, f"{host}:{port}")
            if refusal is not None:
                return refusal
            continue
        conn.close()
    return None


@dataclass(frozen=True)
class Topics:
    """The topic names of one instance (CONTRACT.md: `<prefix>.<name>.<kind>`)."""

    prefix: str
    name: str

    @property
    def events(self) -> str:
        """Every change seen, from webhooks and polling."""
        return f"{self.prefix}.{self.name}.events"

    @property
    def commands(self) -> str:
        """Command CloudEvents written by other services."""
        return f"{self.prefix}.{self.name}.commands"

    @property
    def results(self) -> str:
        """Exactly one outcome per command."""
        return f"{self.prefix}.{self.name}.command-results"

    @property
    def dlq(self) -> str:
        """What could not be handled, with its original bytes and error headers."""
        return f"{self.prefix}.{self.name}.dlq"

    @property
    def cursors(self) -> str:
        """Internal, compacted: poll cursors; its partitions decide poll-task ownership."""
        return f"{self.prefix}.{self.name}.state.cursors"

    @property
    def ledger(self) -> str:
        """Internal, compacted: the idempotency ledger, co-partitioned with `commands`."""
        return f"{self.prefix}.{self.name}.state.ledger"

    @property
    def tracked(self) -> str:
        """Internal, compacted: the ids a watch follows, as commands decide (tracking.py)."""
        return f"{self.prefix}.{self.name}.state.tracked"

    @property
    def budget(self) -> str:
        """Internal, compacted: the vendor budget's shares, one unit per partition (budget.py)."""
        return f"{self.prefix}.{self.name}.state.budget"

    def group(self, role: str) -> str:
        """Consumer group id of a role for this instance."""
        return f"{self.prefix}.{self.name}.{role}"


def _topic_configs(cfg: KafkaConfig, max_record_bytes: int | None) -> dict[str, dict[str, str]]:
    topics = cfg.topics
    min_isr = topics.min_insync_replicas or max(1, topics.replication_factor - 1)
    base = {"min.insync.replicas": str(min_isr)}
    # Events and DLQ take whole webhook bodies: they must hold the largest one (record_limits).
    webhook = {**base, "max.message.bytes": str(max_record_bytes)} if max_record_bytes else base
    return {
        "plain": base,
        "webhook": webhook,
        # Cursors must never expire: a lost cursor re-publishes everything.
        "cursors": {**base, "cleanup.policy": "compact", "min.compaction.lag.ms": "60000"},
        # The ledger is compacted and expires after the idempotency window.
        "ledger": {
            **base,
            "cleanup.policy": "compact,delete",
            "retention.ms": str(int(topics.ledger_retention_days * 86_400_000)),
            "min.compaction.lag.ms": "60000",
        },
    }


async def ensure_topics(
    cfg: KafkaConfig,
    topics: list[Topics],
    *,
    max_record_bytes: int | None = None,
    check_record_bytes: bool = True,
    budgets: Mapping[str, int] | None = None,
    tracking: Sequence[str] = (),
) -> None:
    """Create missing topics; check that each ledger has its commands topic's partitions.

    `budgets` names the budget topics to create (topic -> partitions); one that exists with
    another count is used as it is (see budget.py: shares are then rounded down).
    `tracking` names the tracking topics to create (tracking.py), compacted like cursors.

    With `max_record_bytes`, the events and DLQ topics are created to hold records of that
    size, and (with `check_record_bytes`) existing ones that allow less stop start-up.
    """
    admin = AIOKafkaAdminClient(**client_kwargs(cfg), client_id=f"{cfg.client_id}-admin")
    await admin.start()
    try:
        existing_names = set(await admin.list_topics())
        configs = _topic_configs(cfg, max_record_bytes)
        wanted: list[NewTopic] = []
        parts, repl = cfg.topics.partitions, cfg.topics.replication_factor
        for t in topics:
            for name in (t.events, t.dlq):
                wanted.append(NewTopic(name, parts, repl, topic_configs=configs["webhook"]))
            for name in (t.commands, t.results):
                wanted.append(NewTopic(name, parts, repl, topic_configs=configs["plain"]))
            wanted.append(NewTopic(t.cursors, parts, repl, topic_configs=configs["cursors"]))
            ledger_parts = parts
            if t.commands in existing_names:
                ledger_parts = await _partition_count(admin, t.commands)
            wanted.append(NewTopic(t.ledger, ledger_parts, repl, topic_configs=configs["ledger"]))
        for name, count in (budgets or {}).items():
            wanted.append(NewTopic(name, count, repl, topic_configs=configs["cursors"]))
        for name in tracking:
            wanted.append(NewTopic(name, parts, repl, topic_configs=configs["cursors"]))
        missing = [n for n in wanted if n.name not in existing_names]
        if missing:
            if not cfg.topics.create:
                names = ", ".join(n.name for n in missing)
                raise TopicsNotReady(
                    f"topics missing: {names}; create them or set kafka.topics.create: true"
                )
            response = await admin.create_topics(missing)
            # The broker answers per topic; 36 (already exists) means another replica was first.
            problems = [
                f"{name}: error {code}" + (f" ({message})" if message else "")
                for name, code, *rest in response.topic_errors
                for message in [rest[0] if rest else None]
                if code not in (0, TopicAlreadyExistsError.errno)
            ]
            if problems:
                raise TopicsNotReady(
                    "cannot create topics: " + "; ".join(problems) + ". Check "
                    "kafka.topics.replication_factor against the number of brokers, and ACLs."
                )
            log.info("created topics: %s", ", ".join(n.name for n in missing))
        await _wait_for_metadata(admin, [n.name for n in wanted])
        for t in topics:
            commands = await _partition_count(admin, t.commands)
            if commands != await _partition_count(admin, t.ledger):
                raise TopicsNotReady(
                    f"{t.ledger} has a different partition count than {t.commands}: the ledger "
                    "must be co-partitioned with the commands (recreate it with the same count)"
                )
        if max_record_bytes and check_record_bytes:
            webhook_topics = [name for t in topics for name in (t.events, t.dlq)]
            try:
                await check_topics_allow(admin, webhook_topics, max_record_bytes)
            except RecordLimitTooLow as exc:
                raise TopicsNotReady(str(exc)) from None
    finally:
        await admin.close()


class TopicsNotReady(Exception):
    """The topics cannot be used as they are; the message says what to do."""


async def topic_partitions(cfg: KafkaConfig, topic: str, *, client_id: str) -> int:
    """How many partitions `topic` has (KafkaError when it is not there)."""
    admin = AIOKafkaAdminClient(**client_kwargs(cfg), client_id=f"{client_id}-admin")
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described.get("error_code", 0) or not described.get("partitions"):
        raise KafkaError(f"{topic} has no partitions (is the topic there?)")
    return len(described["partitions"])


async def _partition_count(admin: AIOKafkaAdminClient, topic: str) -> int:
    described = await admin.describe_topics([topic])
    return len(described[0]["partitions"])


async def _wait_for_metadata(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    for _ in range(100):
        described = await admin.describe_topics(names)
        # A partition without a leader yet answers NotLeaderForPartition to the first fetch.
        if all(
            d.get("error_code", 0) == 0
            and d["partitions"]
            and all(
                p.get("error_code", 0) == 0 and p.get("leader", -1) >= 0 for p in d["partitions"]
            )
            for d in described
        ):
            return
        await asyncio.sleep(0.1)
    raise TopicsNotReady(
        f"topics or their partition leaders not in the cluster metadata after 10 s: {names}"
    )


def event_producer(
    cfg: KafkaConfig, *, client_id: str, max_record_bytes: int = 1_048_576
) -> AIOKafkaProducer:
    """Idempotent producer with acks=all for non-transactional paths (webhooks, DLQ)."""
    return AIOKafkaProducer(
        **client_kwargs(cfg),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=cfg.linger_ms,
        max_batch_size=256 * 1024,
        max_request_size=max_record_bytes,
    )


def transactional_producer(cfg: KafkaConfig, *, transactional_id: str) -> AIOKafkaProducer:
    """A producer whose id fences any earlier owner of the same work (zombie fencing)."""
    return AIOKafkaProducer(
        **client_kwargs(cfg),
        client_id=f"{cfg.client_id}-{transactional_id}",
        acks="all",
        enable_idempotence=True,
        transactional_id=transactional_id,
        linger_ms=0,
        # Kafka >= 3.6 answers a transaction's first write with a retriable error while the
        # previous commit completes (KAFKA-15459); aiokafka's 100 ms default backoff then
        # dominates a transaction's latency.
        retry_backoff_ms=20,
    )


def committed_reader(cfg: KafkaConfig, *, client_id: str) -> AIOKafkaConsumer:
    """A group-less consumer that sees committed transactions only (state restore)."""
    return AIOKafkaConsumer(
        **client_kwargs(cfg),
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
