"""Shared by the webhook-server tests: a recording publisher and a served WebhookServer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from adapters.core.instance import Instance
from adapters.core.metrics import Metrics
from adapters.core.webhook_server import WebhookServer


@dataclass
class FakePublisher:
    """Records (records, timeout) per publish; can fail, or hold every publish on a gate."""

    raises: Exception | None = None
    gate: asyncio.Event | None = None
    entered: int = 0
    calls: list[tuple[list[Any], float]] = field(default_factory=list)

    async def publish(self, records: list[Any], *, timeout_s: float) -> None:
        self.entered += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.raises is not None:
            raise self.raises
        self.calls.append((records, timeout_s))

    @property
    def records(self) -> list[tuple[str, bytes | None, bytes, Any]]:
        """Every record published, in order."""
        return [r for recs, _ in self.calls for r in recs]


@contextlib.asynccontextmanager
async def served(
    insts: dict[str, Instance],
    publisher: FakePublisher,
    *,
    max_body_bytes: int,
    ready: Callable[[], bool] = lambda: True,
) -> AsyncIterator[tuple[TestClient, WebhookServer]]:
    """A WebhookServer over `insts` on loopback, with a test client."""
    server = WebhookServer(
        instances=insts,
        publisher=publisher,  # type: ignore[arg-type]
        metrics=Metrics(),
        max_body_bytes=max_body_bytes,
        send_timeout_s=1.0,
        ready=ready,
    )
    client = TestClient(TestServer(server.app, host="127.0.0.1", port=0))
    await client.start_server()
    try:
        yield client, server
    finally:
        await client.close()
        for inst in insts.values():
            await inst.client.close()
