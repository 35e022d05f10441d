"""Run the fake CLOUDWORK|PRO server standalone, for `workbridge dev` and demos.

    python -m adapters.cloudworkpro.fake_main --port 8085 --client-secret S \
        [--client-id ID] [--rate-limit 10/1|off] [--token-lifetime 3600] \
        [--listener URL [--listener-user U --listener-password P]] \
        [--source-address 127.0.0.2 ...] [--retry-unit 600] [--seed]

It prints the API base URL (`http://host:port`) and serves until SIGINT/SIGTERM. Records are
added and changed through the control API under `/_fake/` (see `adapters.cloudworkpro.fake`);
`--seed` adds the dev records (adapters/cloudworkpro/dev.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import msgspec

from adapters.cloudworkpro.dev import seed
from adapters.cloudworkpro.fake import FakeCloudworkPro, FakeCloudworkProBehaviour
from adapters.fakekit_main import serve


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description="Fake CLOUDWORK|PRO API server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8085)
    parser.add_argument("--client-id", default="workbridge")
    parser.add_argument("--client-secret", required=True)
    parser.add_argument(
        "--rate-limit",
        default="10/1",
        help="REQUESTS/SECONDS per client (the connector's guess: 10 per second); 'off'",
    )
    parser.add_argument("--token-lifetime", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--listener", action="append", default=[], metavar="URL")
    parser.add_argument("--listener-user", default=None)
    parser.add_argument("--listener-password", default=None)
    parser.add_argument(
        "--source-address",
        action="append",
        default=[],
        metavar="ADDR",
        help="local address webhooks go out from (repeatable, used in turn)",
    )
    parser.add_argument(
        "--retry-unit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="retry n waits n times this (the document: 600)",
    )
    parser.add_argument("--seed", action="store_true", help="add the dev sites and work orders")
    return parser.parse_args(argv)


def behaviour(args: argparse.Namespace) -> FakeCloudworkProBehaviour:
    """The behaviour the command line asks for."""
    base = FakeCloudworkProBehaviour(webhook_source_addresses=tuple(args.source_address))
    if args.token_lifetime is not None:
        base = msgspec.structs.replace(base, token_lifetime_s=args.token_lifetime)
    if args.retry_unit is not None:
        base = msgspec.structs.replace(base, webhook_retry_unit_s=args.retry_unit)
    if args.rate_limit == "off":
        return msgspec.structs.replace(base, rate_limit_requests=None)
    requests, _, seconds = args.rate_limit.partition("/")
    return msgspec.structs.replace(
        base, rate_limit_requests=int(requests), rate_limit_window_s=float(seconds or 1)
    )


def build(args: argparse.Namespace) -> FakeCloudworkPro:
    """The fake the command line describes (not started)."""
    fake = FakeCloudworkPro(
        client_id=args.client_id, client_secret=args.client_secret, behaviour=behaviour(args)
    )
    for url in args.listener:
        fake.add_listener(url, username=args.listener_user, password=args.listener_password)
    if args.seed:
        seed(fake)
    return fake


async def _serve(args: argparse.Namespace) -> None:
    await serve(build(args), args.host, args.port, "CLOUDWORK|PRO")


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse arguments and serve until interrupted."""
    asyncio.run(_serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
