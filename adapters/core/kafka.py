"""Kafka plumbing: client settings (TLS, SASL), topic names, topic creation, producers."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from adapters.config import KafkaConfig

log = logging.getLogger(__name__)


def client_kwargs(cfg: KafkaConfig) -> dict[str, Any]:
    """Connection settings shared by producers, consumers and the admin client."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": cfg.bootstrap_servers,
        "security_protocol": cfg.security_protocol,
        "request_timeout_ms": cfg.request_timeout_ms,
    }
    if cfg.security_protocol in ("SSL", "SASL_SSL"):
        tls = cfg.tls
        kwargs["ssl_context"] = create_ssl_context(
            cafile=tls.ca_file if tls else None,
            certfile=tls.cert_file if tls else None,
            keyfile=tls.key_file if tls else None,
            password=tls.key_password.reveal() if tls and tls.key_password else None,
        )
        if tls is not None and not tls.check_hostname:
            kwargs["ssl_context"].check_hostname = False
    if cfg.sasl is not None:
        kwargs["sasl_mechanism"] = cfg.sasl.mechanism
        kwargs["sasl_plain_username"] = cfg.sasl.username
        kwargs["sasl_plain_password"] = cfg.sasl.password.reveal()
    return kwargs


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

    def group(self, role: str) -> str:
        """Consumer group id of a role for this instance."""
        return f"{self.prefix}.{self.name}.{role}"


def _topic_configs(cfg: KafkaConfig) -> dict[str, dict[str, str]]:
    topics = cfg.topics
    min_isr = topics.min_insync_replicas or max(1, topics.replication_factor - 1)
    base = {"min.insync.replicas": str(min_isr)}
    return {
        "plain": base,
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


async def ensure_topics(cfg: KafkaConfig, topics: list[Topics]) -> None:
    """Create missing topics; check that each ledger has its commands topic's partitions."""
    admin = AIOKafkaAdminClient(**client_kwargs(cfg), client_id=f"{cfg.client_id}-admin")
    await admin.start()
    try:
        existing_names = set(await admin.list_topics())
        configs = _topic_configs(cfg)
        wanted: list[NewTopic] = []
        parts, repl = cfg.topics.partitions, cfg.topics.replication_factor
        for t in topics:
            for name in (t.events, t.commands, t.results, t.dlq):
                wanted.append(NewTopic(name, parts, repl, topic_configs=configs["plain"]))
            wanted.append(NewTopic(t.cursors, parts, repl, topic_configs=configs["cursors"]))
            ledger_parts = parts
            if t.commands in existing_names:
                ledger_parts = await _partition_count(admin, t.commands)
            wanted.append(NewTopic(t.ledger, ledger_parts, repl, topic_configs=configs["ledger"]))
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
    finally:
        await admin.close()


class TopicsNotReady(Exception):
    """The topics cannot be used as they are; the message says what to do."""


async def _partition_count(admin: AIOKafkaAdminClient, topic: str) -> int:
    described = await admin.describe_topics([topic])
    return len(described[0]["partitions"])


async def _wait_for_metadata(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    for _ in range(100):
        described = await admin.describe_topics(names)
        if all(d.get("error_code", 0) == 0 and d["partitions"] for d in described):
            return
        await asyncio.sleep(0.1)
    raise TopicsNotReady(f"topics not visible in the cluster's metadata after 10 s: {names}")


def event_producer(cfg: KafkaConfig, *, client_id: str) -> AIOKafkaProducer:
    """Idempotent producer with acks=all for non-transactional paths (webhooks, DLQ)."""
    return AIOKafkaProducer(
        **client_kwargs(cfg),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=cfg.linger_ms,
        max_batch_size=256 * 1024,
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
