"""What a vendor folder declares for `workbridge dev`: how to start its fake and wire it up.

A leaf module (it imports nothing of the project), so that a vendor's `VendorSpec` can name
its dev fake without importing the dev tools, and `workbridge dev` takes the list of fakes
from the registry rather than from a list of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

# The credentials every dev fake is started with: known, so that the banner can print them.
DEV_API_KEY = "dev-api-key"


class DevFakeServer(Protocol):
    """What `workbridge dev` needs of a started fake vendor server."""

    async def stop(self) -> None:
        """Stop serving."""
        ...


@dataclass(frozen=True)
class ExampleCommand:
    """One command for the banner; `data` must pass the command's schema."""

    type: str
    subject: str
    data: str


@dataclass
class DevVendor:
    """One vendor as `workbridge dev` runs it: a started fake and how to wire the bridge to it.

    What the vendor can do (webhooks, polling, commands, its resources) comes from its
    VendorSpec; this holds only what is about the fake.
    """

    fake: DevFakeServer
    base_url: str
    # Instance settings beyond what the spec decides (credentials, options, backoff).
    settings: dict[str, Any]
    # Resources the fake changes on request: the ones worth polling here.
    changing_resources: frozenset[str]
    # Subscribe the bridge's webhook URL at the fake.
    subscribe: Callable[[str], None]
    # Lines for the banner: how to make something happen at this vendor.
    hints: str
    example_command: ExampleCommand | None = None


StartDevFake = Callable[[], Awaitable[DevVendor]]
"""Starts a vendor's fake for `workbridge dev` (imports the fake only when called)."""
