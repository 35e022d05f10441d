"""`workbridge`: run the bridge, check a config, run a local stack, send commands, watch topics."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any

import msgspec

from adapters.config import Config, ConfigError, load_config

EXIT_CONFIG = 2


def _load(path: str) -> Config:
    """The configuration file, checked against the vendors of this build."""
    # Imported on use: the registry loads every vendor, which `kafka-local` does not need.
    from adapters.registry import VENDORS

    return load_config(path, vendors=VENDORS)


def _setup_logging(level: str) -> None:
    from adapters.logging_setup import setup

    setup(level)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the bridge until SIGTERM."""
    from adapters.app import Bridge, BridgeFailed, StartupError
    from adapters.core.kafka import TopicsNotReady

    config = _load(args.config)
    _setup_logging(config.log_level)
    try:
        asyncio.run(Bridge(config).run_until_signal())
    except (BridgeFailed, TopicsNotReady, StartupError) as exc:
        print(f"workbridge stopped: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    """Decode a configuration file and report what it would run."""
    config = _load(args.config)
    for inst in config.instances:
        roles = [
            role
            for role, on in (
                ("webhooks", inst.webhooks.enabled),
                ("polling", inst.polling.enabled),
                ("commands", inst.commands.enabled),
            )
            if on
        ]
        print(f"{inst.instance_name}: vendor {inst.vendor}, {', '.join(roles) or 'nothing on'}")
    print(f"configuration OK: {len(config.instances)} instance(s)")
    return 0


def cmd_kafka_local(args: argparse.Namespace) -> int:
    """Start a single-node Kafka broker on this machine."""
    from adapters.localkafka.launcher import main as kafka_main

    argv = ["--port", str(args.port)] if args.port else []
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    return kafka_main(argv)


def cmd_schemas(args: argparse.Namespace) -> int:
    """Write schemas/ and the chart's vendor facts from the code, or check that they match."""
    from adapters.schemas_gen import diff, diff_chart, write, write_chart

    root = Path(args.dir)
    # The chart is optional: an installed package has schemas/ to check but no chart.
    chart = Path(args.chart) if args.chart and Path(args.chart).is_dir() else None
    if args.check:
        problems = diff(root) + (diff_chart(chart) if chart else [])
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print(
                "schemas/ or the chart is out of date: run `workbridge schemas` and commit",
                file=sys.stderr,
            )
            return 1
        print("schemas/ matches the code" + (f", and so does {chart}" if chart else ""))
        return 0
    written = write(root)
    print(f"wrote {len(written)} schema files to {root}")
    if chart:
        changed = write_chart(chart)
        print(f"updated the vendor facts in {chart}: {', '.join(changed) or 'no change'}")
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    """Publish one command and (by default) wait for its result."""
    from adapters.devtools import send_command

    config = _load(args.config)
    try:
        data: Any = msgspec.json.decode(args.data)
    except msgspec.DecodeError as exc:
        print(f"--data is not JSON: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    result = asyncio.run(
        send_command(
            config,
            instance=args.instance,
            type=args.type,
            data=data,
            subject=args.subject,
            command_id=args.id or str(uuid.uuid4()),
            idempotency_key=args.idempotency_key,
            wait_s=0 if args.no_wait else args.timeout,
        )
    )
    if result is None:
        return 0 if args.no_wait else 1
    print(msgspec.json.format(msgspec.json.encode(result), indent=2).decode())
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    """Print the events, results or DLQ records of an instance as they arrive."""
    from adapters.devtools import tail

    config = _load(args.config)
    asyncio.run(
        tail(config, instance=args.instance, kinds=args.topic, from_beginning=args.from_beginning)
    )
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    """One missed-webhook recovery pass of an instance from a time."""
    from adapters.backfill import BackfillError, backfill, parse_since

    config = _load(args.config)
    _setup_logging(config.log_level)
    try:
        since = parse_since(args.since)
        count = asyncio.run(backfill(config, instance=args.instance, since=since))
    except BackfillError as exc:
        print(f"backfill: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"{count} events published")
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    """Local broker + fake vendors + bridge, with a live view."""
    from adapters.devtools import run_dev

    return asyncio.run(run_dev(port=args.port, kafka=args.kafka, seconds=args.seconds))


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="workbridge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the bridge (webhooks, pollers, command workers)")
    p.add_argument("--config", required=True, help="YAML configuration file")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-config", help="validate a configuration file and exit")
    p.add_argument("--config", required=True)
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser(
        "kafka-local",
        help="run a single-node Kafka broker (KRaft) on loopback",
        description="Run a single-node Kafka broker (KRaft) on 127.0.0.1 until Ctrl-C; it "
        "prints KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:<port>.",
    )
    p.add_argument(
        "--port",
        type=int,
        default=0,
        metavar="PORT",
        help="client port (default: a free port, or the last run's with --data-dir)",
    )
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="keep the broker's config, log and data in DIR: a later start with the same DIR "
        "has the same topics and records (default: a temporary folder, removed on exit)",
    )
    p.set_defaults(func=cmd_kafka_local)

    p = sub.add_parser(
        "schemas", help="generate schemas/ and the Helm chart's vendor facts from the code"
    )
    p.add_argument("--dir", default="schemas")
    p.add_argument(
        "--chart",
        default="helm/workbridge",
        help="the Helm chart whose vendor facts are generated too (skipped if not there)",
    )
    p.add_argument(
        "--check", action="store_true", help="fail if schemas/ or the chart differs from the code"
    )
    p.set_defaults(func=cmd_schemas)

    p = sub.add_parser("send", help="publish a command and print its result")
    p.add_argument("--config", required=True)
    p.add_argument("--instance", required=True, help="instance name, e.g. moco")
    p.add_argument("--type", required=True, help="e.g. workbridge.moco.activity.create")
    p.add_argument("--data", required=True, help="the command's data as JSON")
    p.add_argument("--subject", help="e.g. project/42 (commands of one subject run in order)")
    p.add_argument("--id", help="command id (default: a new UUID)")
    p.add_argument("--idempotency-key", help="default: the command id")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the result")
    p.add_argument("--no-wait", action="store_true", help="publish and exit")
    p.set_defaults(func=cmd_send)

    p = sub.add_parser(
        "backfill",
        help="recover missed webhooks of an instance from a time (CLOUDWORK|PRO), on demand",
    )
    p.add_argument("--config", required=True)
    p.add_argument("--instance", required=True, help="instance name, e.g. cloudworkpro")
    p.add_argument(
        "--since",
        required=True,
        help="an ISO time (2026-11-30T08:00:00Z) or a duration back (90m, 6h, 3d)",
    )
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser("tail", help="print an instance's events, results and DLQ records live")
    p.add_argument("--config", required=True)
    p.add_argument("--instance", required=True)
    p.add_argument(
        "--topic",
        action="append",
        choices=["events", "results", "dlq"],
        help="which topics (repeatable; default: all three)",
    )
    p.add_argument("--from-beginning", action="store_true")
    p.set_defaults(func=cmd_tail)

    p = sub.add_parser("dev", help="local Kafka + the vendors' fakes + bridge, with a live view")
    p.add_argument("--port", type=int, default=8080, help="bridge HTTP port")
    p.add_argument("--kafka", help="use this bootstrap server instead of starting a broker")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (0: Ctrl-C)")
    p.set_defaults(func=cmd_dev)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `workbridge` console script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
