"""Run the fake Click Maint server standalone, for `workbridge dev` and demos.

    python -m adapters.clickmaint.fake_main --port 8083 --api-key K \
        [--entity 1:"Main Facility" ...] [--rate-limit 300/300|off] [--rate-limit-scope ip]

It prints the API base URL (`http://host:port/api/v1`) and serves until SIGINT/SIGTERM.
Records are added and changed through the control API under `/_fake/` (see
`adapters.clickmaint.fake`); `--seed` adds the document's example records.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import msgspec

from adapters.clickmaint.dev import seed
from adapters.clickmaint.fake import DEFAULT_ENTITY, FakeClickMaint, FakeClickMaintBehaviour
from adapters.fakekit_main import serve


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description="Fake Click Maint API server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8083)
    parser.add_argument("--api-key", required=True)
    parser.add_argument(
        "--entity",
        action="append",
        default=[],
        metavar="ID:NAME",
        help="an entity of the account (repeatable); default: 1:Main Facility",
    )
    parser.add_argument(
        "--rate-limit",
        default="300/300",
        help="REQUESTS/SECONDS (FIELD-NOTES: 300 per 5 minutes); 'off' disables it",
    )
    parser.add_argument("--rate-limit-scope", choices=("api_key", "ip"), default="api_key")
    parser.add_argument(
        "--seed", action="store_true", help="add the document's example records (entity 1)"
    )
    return parser.parse_args(argv)


def entities(specs: list[str]) -> list[dict[str, Any]]:
    """`["1:Main Facility", "2:North"]` -> entity records; the default entity for none."""
    if not specs:
        return [dict(DEFAULT_ENTITY)]
    found = []
    for spec in specs:
        raw_id, _, name = spec.partition(":")
        found.append({**DEFAULT_ENTITY, "id": int(raw_id), "name": name or f"Entity {raw_id}"})
    return found


def behaviour(args: argparse.Namespace) -> FakeClickMaintBehaviour:
    """The behaviour the command line asks for."""
    base = FakeClickMaintBehaviour(rate_limit_scope=args.rate_limit_scope)
    if args.rate_limit == "off":
        return msgspec.structs.replace(base, rate_limit_requests=None)
    requests, _, seconds = args.rate_limit.partition("/")
    return msgspec.structs.replace(
        base, rate_limit_requests=int(requests), rate_limit_window_s=float(seconds)
    )


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeClickMaint(
        api_key=args.api_key, entities=entities(args.entity), behaviour=behaviour(args)
    )
    if args.seed:
        seed(fake)
    await serve(fake, args.host, args.port, "Click Maint")


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse arguments and serve until interrupted."""
    asyncio.run(_serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
