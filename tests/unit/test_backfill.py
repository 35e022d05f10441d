"""`workbridge backfill`'s arguments, and reading an event id back from a record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adapters.backfill import BackfillError, parse_since
from adapters.core.cloudevents_codec import make_event, to_kafka
from adapters.core.recent_events import event_id


def test_since_is_an_iso_time_or_a_duration_back() -> None:
    assert parse_since("2026-11-30T08:00:00Z") == datetime(2026, 11, 30, 8, tzinfo=UTC)
    assert parse_since("2026-11-30T08:00:00") == datetime(2026, 11, 30, 8, tzinfo=UTC)
    before = datetime.now(UTC)
    since = parse_since("6h")
    assert timedelta(hours=6) <= datetime.now(UTC) - since
    assert before - since <= timedelta(hours=6)
    three_days = parse_since("3d")
    assert datetime.now(UTC) - three_days >= timedelta(days=3)
    with pytest.raises(BackfillError, match="duration back"):
        parse_since("yesterday")


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_an_event_id_is_read_back_in_either_content_mode(mode: str) -> None:
    event = make_event(
        id="evt-1", source="/workbridge/cwp", type="workbridge.cloudworkpro.site.created",
        subject="site/1", partitionkey="cwp/site/1", data=b'{"_id": "1"}',
    )  # fmt: skip
    key, value, headers = to_kafka(event, "binary" if mode == "binary" else "structured")
    assert event_id(key, value, headers) == "evt-1"
    assert event_id(None, b"not an event", []) is None


def test_only_declared_recoveries_are_backfilled() -> None:
    from adapters.backfill import recovery_resources
    from adapters.config import parse_config
    from adapters.registry import VENDORS

    config = parse_config(
        {
            "kafka": {"bootstrap_servers": "localhost:9092"},
            "instances": [
                {
                    "vendor": "moco",
                    "base_url": "https://a.mocoapp.com/api/v1",
                    "api_key": "k",
                    "webhook_secret": "s",
                },
                {"vendor": "cloudworkpro", "name": "cwp", "base_url": "https://cwp.example"},
            ],
        },
        vendors=VENDORS,
    )
    # MOCO's listings skip what is published, but none of them recovers missed webhooks.
    assert recovery_resources(config, "moco") == []
    assert recovery_resources(config, "cwp") == ["webhook_notifications"]
