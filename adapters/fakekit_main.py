"""Serving a fake vendor standalone (`python -m adapters.<vendor>.fake_main`) until stopped.

Each vendor's `fake_main` parses its own command line and builds its fake; `serve` starts it,
prints where it listens and keeps it up until SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

from adapters.fakekit import FakeServer


async def serve(
    fake: FakeServer[Any],
    host: str,
    port: int,
    name: str,
    *,
    api_url: Callable[[], str] | None = None,
) -> None:
    """Start `fake` on host:port, print its API and control URLs, serve until a signal.

    `api_url` names the API URL to print when it is not the fake's `base_url` (Mobility
    Work's API lives below it, at `/partners/v1`).
    """
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    base_url = await fake.start(host, port)
    shown = api_url() if api_url is not None else base_url
    print(f"fake {name} API at {shown} (control API at {fake.control_url})", flush=True)
    try:
        await stopping.wait()
    finally:
        await fake.stop()
