"""Run the fake Mitratech CMO server standalone, for `workbridge dev` and demos.

    python -m adapters.cmo.fake_main --port 8084 [--static-token TOKEN[=USER_ID] ...] \
        [--login LOGIN:PASSWORD ...] [--jwt-lifetime 1200] [--no-jwt] [--no-mutual] \
        [--static-token-mode when_others_off|always|never] [--company-time-zone Asia/Kolkata] \
        [--tls-cert server.pem --tls-key server.key [--client-ca ca.pem]] [--seed]

It prints the cmo-base-url (`http://host:port`, `https://…` with `--tls-cert`) and serves
until SIGINT/SIGTERM. `--client-ca` makes it a mutual-TLS server (a client certificate from
that CA is required; it acts as user 20518 unless mapped). Actions are added and changed
through the control API under `/_fake/` (see `adapters.cmo.fake`); `--seed` adds the
document's example actions. Credentials given here are never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from adapters.cmo.dev import seed
from adapters.cmo.fake import DOCUMENT_USER_ID, FakeCmo, FakeCmoBehaviour, server_ssl_context
from adapters.fakekit_main import serve


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description="Fake Mitratech CMO API server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8084)
    parser.add_argument(
        "--static-token",
        action="append",
        default=[],
        metavar="TOKEN[=USER_ID]",
        help=f"a static user token (repeatable); its user defaults to {DOCUMENT_USER_ID}",
    )
    parser.add_argument(
        "--login",
        action="append",
        default=[],
        metavar="LOGIN:PASSWORD",
        help="a password for /api/token of a user by login name (repeatable), e.g. superadmin:pw",
    )
    parser.add_argument("--jwt-lifetime", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--no-jwt", action="store_true", help="turn JWT authentication off")
    parser.add_argument("--no-mutual", action="store_true", help="turn mutual TLS off")
    parser.add_argument(
        "--static-token-mode",
        choices=("when_others_off", "always", "never"),
        default="when_others_off",
        help="when static tokens are accepted (the document: only with JWT and mTLS off)",
    )
    parser.add_argument("--company-time-zone", default=None, metavar="IANA_NAME")
    parser.add_argument("--tls-cert", default=None, help="serve HTTPS with this certificate")
    parser.add_argument("--tls-key", default=None, help="the certificate's key")
    parser.add_argument(
        "--client-ca", default=None, help="require client certificates from this CA (mTLS)"
    )
    parser.add_argument("--seed", action="store_true", help="add the document's example actions")
    args = parser.parse_args(argv)
    if args.client_ca and not args.tls_cert:
        parser.error("--client-ca needs --tls-cert")
    return args


def static_tokens(specs: list[str]) -> dict[str, int]:
    """`["tok", "other=20519"]` -> `{"tok": 20518, "other": 20519}`."""
    found: dict[str, int] = {}
    for spec in specs:
        token, sep, user = spec.rpartition("=")
        if not sep or not user.isdigit():
            token, user = spec, str(DOCUMENT_USER_ID)
        found[token] = int(user)
    return found


def logins(specs: list[str]) -> dict[str, str]:
    """`["superadmin:pw"]` -> `{"superadmin": "pw"}`."""
    found: dict[str, str] = {}
    for spec in specs:
        login, sep, password = spec.partition(":")
        if not sep or not login:
            raise SystemExit("--login takes LOGIN:PASSWORD")
        found[login] = password
    return found


def behaviour(args: argparse.Namespace) -> FakeCmoBehaviour:
    """The behaviour the command line asks for."""
    base = FakeCmoBehaviour()
    return FakeCmoBehaviour(
        jwt_enabled=not args.no_jwt,
        mutual_enabled=not args.no_mutual,
        static_token=args.static_token_mode,
        jwt_lifetime_s=base.jwt_lifetime_s if args.jwt_lifetime is None else args.jwt_lifetime,
        company_time_zone=args.company_time_zone or base.company_time_zone,
    )


def build(args: argparse.Namespace) -> FakeCmo:
    """The fake the command line asks for (not started)."""
    context = (
        server_ssl_context(args.tls_cert, args.tls_key, client_ca_file=args.client_ca)
        if args.tls_cert
        else None
    )
    fake = FakeCmo(
        behaviour=behaviour(args),
        static_tokens=static_tokens(args.static_token),
        logins=logins(args.login),
        ssl_context=context,
    )
    if args.seed:
        seed(fake)
    return fake


async def _serve(args: argparse.Namespace) -> None:
    await serve(build(args), args.host, args.port, "CMO")


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse arguments and serve until interrupted."""
    asyncio.run(_serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
