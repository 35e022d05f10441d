"""Run the fake MOCO server standalone, for `workbridge dev` and demos.

    python -m adapters.moco.fake_main --port 8081 --api-key X --webhook-secret <32 hex>

It prints the API base URL and serves until SIGINT/SIGTERM. Records and webhook subscriptions
are added through the control API under `/_fake/` (see `adapters.moco.fake`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from adapters.fakekit_main import serve
from adapters.moco.fake import FakeMoco


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Fake MOCO API server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--webhook-secret", required=True, help="32 hexadecimal characters")
    parser.add_argument(
        "--rate-limit",
        default="15/15",
        help="REQUESTS/SECONDS per API key (MOCO documents 15/15); 'off' disables it",
    )
    parser.add_argument(
        "--subscribe",
        action="append",
        default=[],
        metavar="TARGET:EVENT:URL",
        help="webhook subscription, e.g. 'Activity:*:http://127.0.0.1:8080/webhooks/moco'",
    )
    return parser.parse_args(argv)


def _rate_limit(value: str) -> tuple[int, float] | None:
    if value == "off":
        return None
    requests, _, seconds = value.partition("/")
    return int(requests), float(seconds)


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeMoco(
        api_key=args.api_key,
        webhook_secret=args.webhook_secret,
        rate_limit=_rate_limit(args.rate_limit),
    )
    for spec in args.subscribe:
        target, event, url = spec.split(":", 2)
        fake.subscribe(target, event, url)
    await serve(fake, args.host, args.port, "MOCO")


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse arguments and serve until interrupted."""
    asyncio.run(_serve(_parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
