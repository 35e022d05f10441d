"""A Click Maint API key the vendor refuses stops the process with the vendor's words."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from adapters.app import Bridge
from adapters.clickmaint.fake import FakeClickMaint
from adapters.config import parse_config

pytestmark = pytest.mark.integration


def config(bootstrap: str, prefix: str, base_url: str, api_key: str) -> object:
    return parse_config(
        {
            "kafka": {
                "bootstrap_servers": bootstrap,
                "topic_prefix": prefix,
                "topics": {"partitions": 1, "replication_factor": 1},
            },
            "server": {"host": "127.0.0.1", "port": 0, "shutdown_grace_s": 2},
            "instances": [
                {
                    "vendor": "clickmaint",
                    "name": "cm",
                    "base_url": base_url,
                    "api_key": api_key,
                    "polling": {"enabled": True, "resources": ["assets"], "interval_s": 60},
                    "commands": {"enabled": True},
                }
            ],
        }
    )


@pytest.mark.parametrize(("key", "stops"), [("wrong-key", True), ("right-key", False)])
async def test_a_refused_api_key_stops_the_process_at_start(
    kafka_bootstrap: str, prefix: str, key: str, stops: bool, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeClickMaint(api_key="right-key")
    await fake.start()
    assert fake.base_url is not None
    bridge = Bridge(config(kafka_bootstrap, prefix, fake.base_url, key))  # type: ignore[arg-type]
    try:
        with caplog.at_level(logging.CRITICAL):
            await bridge.start()
            # A refusal comes with the first answer; an accepted key gives nothing to wait for.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(bridge.failed.wait(), 10.0 if stops else 3.0)
    finally:
        await bridge.stop()
        await fake.stop()
    assert bridge.failed.is_set() is stops
    if stops:
        assert bridge.failure is not None
        assert "Click Maint refused the API key (Invalid API key)" in bridge.failure
        assert "wrong-key" not in caplog.text  # the key is never logged
