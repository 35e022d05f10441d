"""Topic creation on the real broker: what is created, and what stops start-up."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from adapters.config import parse_config
from adapters.core.kafka import Topics, TopicsNotReady, ensure_topics

pytestmark = pytest.mark.integration


def kafka_config(bootstrap: str, prefix: str, **topics: object) -> object:
    return parse_config(
        {"kafka": {"bootstrap_servers": bootstrap, "topic_prefix": prefix, "topics": topics}}
    ).kafka


async def test_replication_above_the_broker_count_stops_start_up_with_the_reason(
    kafka_bootstrap: str, prefix: str
) -> None:
    cfg = kafka_config(kafka_bootstrap, prefix, replication_factor=3)
    with pytest.raises(TopicsNotReady, match="replication_factor against the number of brokers"):
        await ensure_topics(cfg, [Topics(prefix, "moco")])  # type: ignore[arg-type]


async def test_state_topics_are_compacted_and_the_ledger_expires(
    kafka_bootstrap: str, prefix: str
) -> None:
    cfg = kafka_config(kafka_bootstrap, prefix, replication_factor=1, ledger_retention_days=2)
    topics = Topics(prefix, "moco")
    await ensure_topics(cfg, [topics])  # type: ignore[arg-type]
    await ensure_topics(cfg, [topics])  # idempotent: a second replica starting finds them
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in (topics.cursors, topics.ledger)]
        )
        configs = {}
        for response in described:
            for resource in response.resources:
                configs[resource[3]] = {entry[0]: entry[1] for entry in resource[4]}
    finally:
        await admin.close()
    assert configs[topics.cursors]["cleanup.policy"] == "compact"
    assert configs[topics.ledger]["cleanup.policy"] == "compact,delete"
    assert configs[topics.ledger]["retention.ms"] == str(2 * 86_400_000)
