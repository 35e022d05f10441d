"""Run the fake Mobility Work server standalone, for `workbridge dev` and demos.

    python -m adapters.mobilitywork.fake_main --port 8082 --api-key K \
        [--webhook-secret S] [--subscribe EVENT:URL ...]

It prints the base URL (the API is under `/partners/v1`) and serves until SIGINT/SIGTERM.
Webhooks are emitted and subscriptions added through the control API under `/_fake/`
(see `adapters.mobilitywork.fake`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from adapters.fakekit_main import serve
from adapters.mobilitywork.fake import DEFAULT_NETWORK_ID, FakeMobilityWork


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description="Fake Mobility Work API server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--api-key", required=True)
    parser.add_argument(
        "--webhook-secret",
        default=None,
        help="secret key of the webhooks; without it webhooks are sent unsigned",
    )
    parser.add_argument("--network-id", default=DEFAULT_NETWORK_ID)
    parser.add_argument("--network-name", default="Factory Inc.")
    parser.add_argument(
        "--subscribe",
        action="append",
        default=[],
        metavar="EVENT:URL",
        help="webhook subscription, e.g. '*:http://127.0.0.1:8080/webhooks/mobilitywork'",
    )
    return parser.parse_args(argv)


def build_fake(args: argparse.Namespace) -> FakeMobilityWork:
    """The fake described by parsed arguments, with its subscriptions (not started)."""
    fake = FakeMobilityWork(
        api_key=args.api_key,
        webhook_secret=args.webhook_secret,
        network_id=args.network_id,
        network_name=args.network_name,
    )
    for spec in args.subscribe:
        # Split at the first colon only: event names have none, URLs do.
        event, sep, url = spec.partition(":")
        if not sep or not event or not url:
            raise SystemExit(f"--subscribe wants EVENT:URL, got {spec!r}")
        fake.subscribe(event, url)
    return fake


async def _serve(args: argparse.Namespace) -> None:
    fake = build_fake(args)
    await serve(fake, args.host, args.port, "Mobility Work", api_url=lambda: fake.api_url)


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse arguments and serve until interrupted."""
    asyncio.run(_serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
