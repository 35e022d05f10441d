"""Runs a change source cycle by cycle without Kafka: each step "commits" by keeping its
state as the cursors topic would (through its JSON), so a test can crash between steps."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from adapters.core.change_source import ChangeSource, DeadLetter, PollContext, PollSettings
from adapters.core.pagination import PageRequest
from adapters.core.poll_state import encode_state
from adapters.core.ratelimit import Unlimited
from adapters.core.vendor import EventDraft
from adapters.core.vendor_http import VendorClient, VendorResponse
from adapters.settings import PolledVendorOptions, VendorOptions

Fetch = Callable[[PageRequest], Awaitable[VendorResponse]]


class Committed:
    """What one cycle committed."""

    def __init__(self) -> None:
        self.events: list[EventDraft] = []
        self.dead: list[DeadLetter] = []
        self.steps = 0

    @property
    def subjects(self) -> list[str]:
        return [e.subject for e in self.events]


class Runner:
    """One poll task of a source, its state kept between cycles."""

    def __init__(
        self,
        source: ChangeSource[Any],
        fetch: Fetch,
        *,
        resource: str = "companies",
        scope: str | None = None,
        page_size: int = 2,
        max_batch: int = 500,
        overlap_s: float = 2.0,
        start_from: Literal["beginning", "now"] = "beginning",
        options: VendorOptions | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.source = source
        self.state: Any = source.initial()
        self.ctx = PollContext(
            instance="acme",
            resource=resource,
            scope=scope,
            settings=PollSettings(
                overlap=timedelta(seconds=overlap_s),
                page_size=page_size,
                max_batch=max_batch,
                start_from=start_from,
            ),
            fetch=fetch,
            options=options or PolledVendorOptions(),
            now=now or (lambda: datetime.now(UTC)),
        )
        self.history: list[Committed] = []

    async def cycle(self, *, crash_after: int | None = None) -> Committed:
        """One cycle; with `crash_after`, the process dies before committing step n+1."""
        done = Committed()
        async for step in self.source.run(self.ctx, self.state):
            if crash_after is not None and done.steps == crash_after:
                break
            self.state = self.source.decode(encode_state(step.state))
            done.events.extend(step.events)
            done.dead.extend(step.dead)
            done.steps += 1
        self.history.append(done)
        return done

    @property
    def all_subjects(self) -> list[str]:
        return [s for c in self.history for s in c.subjects]


def client_fetch(
    base_url: str, headers: dict[str, str] | None = None
) -> tuple[VendorClient, Fetch]:
    """A vendor client on `base_url` and a fetch through it (no retries: a test sees all)."""
    client = VendorClient(
        base_url=base_url,
        limiter=Unlimited(),
        timeout_s=5,
        user_agent="tests",
        auth_headers=headers or {},
    )

    async def fetch(request: PageRequest) -> VendorResponse:
        return await client.request("GET", request.url, params=request.params)

    return client, fetch
