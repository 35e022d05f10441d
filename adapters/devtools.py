"""Tools for people at a terminal: send a command, watch topics, run the whole stack locally."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console
from rich.live import Live
from rich.table import Table

from adapters.config import Config, parse_config
from adapters.core.cloudevents_codec import NotACloudEvent, from_record, make_event, to_kafka
from adapters.core.kafka import Topics, client_kwargs
from adapters.devkit import DEV_API_KEY, DevVendor

if TYPE_CHECKING:
    from adapters.core.vendor import VendorSpec

console = Console(stderr=True)


def _topics(config: Config, instance: str) -> Topics:
    names = {i.instance_name for i in config.instances}
    if instance not in names:
        raise SystemExit(f"no instance {instance!r} in the configuration (have: {sorted(names)})")
    return Topics(config.kafka.topic_prefix, instance)


async def send_command(
    config: Config,
    *,
    instance: str,
    type: str,
    data: Any,
    subject: str | None,
    command_id: str,
    idempotency_key: str | None,
    wait_s: float,
) -> dict[str, Any] | None:
    """Publish a command CloudEvent; wait up to `wait_s` for its result event's data."""
    topics = _topics(config, instance)
    key = subject or idempotency_key or command_id
    extensions = {"idempotencykey": idempotency_key} if idempotency_key else {}
    event = make_event(
        id=command_id,
        source="/workbridge/cli",
        type=type,
        subject=subject,
        partitionkey=key,
        data=msgspec.json.encode(data),
        extensions=extensions,
    )
    msg_key, value, headers = to_kafka(event)
    reader = None
    if wait_s > 0:
        reader = await _reader(config, [topics.results], from_beginning=False)
    producer = AIOKafkaProducer(**client_kwargs(config.kafka), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topics.commands, value=value, key=msg_key, headers=headers)
    finally:
        await producer.stop()
    console.print(f"sent command {command_id} ({type}) to {topics.commands}")
    if reader is None:
        return None
    try:
        console.print(f"waiting up to {wait_s:.0f}s for its result on {topics.results} ...")
        deadline = time.monotonic() + wait_s
        async for _topic, event_ in _records(reader, deadline):
            attrs = event_.get_attributes()
            if attrs.get("commandid") == command_id:
                result = event_.get_data()
                return result if isinstance(result, dict) else {"data": result}
        console.print("[red]no result yet[/red]: is a bridge with commands enabled running?")
        return None
    finally:
        await reader.stop()


async def _reader(config: Config, topics: list[str], *, from_beginning: bool) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        **client_kwargs(config.kafka),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    # The consumer knows no partitions until it asked the cluster; a fresh metadata snapshot
    # gives all of them (assigning only partition 0 would miss most records).
    cluster = await consumer._client.fetch_all_metadata()
    missing = [t for t in topics if not cluster.partitions_for_topic(t)]
    if missing:
        await consumer.stop()
        raise SystemExit(f"topics not found: {missing}; has a bridge with this config run yet?")
    tps = [TopicPartition(t, p) for t in topics for p in cluster.partitions_for_topic(t) or ()]
    consumer.assign(tps)
    if from_beginning:
        await consumer.seek_to_beginning(*tps)
    else:
        for tp, offset in (await consumer.end_offsets(tps)).items():
            consumer.seek(tp, offset)
    return consumer


async def _records(
    consumer: AIOKafkaConsumer, deadline: float | None
) -> AsyncIterator[tuple[str, Any]]:
    while deadline is None or time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=500)
        for tp, records in batches.items():
            for record in records:
                try:
                    yield tp.topic, from_record(record.key, record.value, list(record.headers))
                except NotACloudEvent:
                    yield tp.topic, None


async def tail(
    config: Config, *, instance: str, kinds: list[str] | None, from_beginning: bool
) -> None:
    """Print records of the chosen topics until interrupted."""
    topics = _topics(config, instance)
    names = {"events": topics.events, "results": topics.results, "dlq": topics.dlq}
    chosen = [names[k] for k in (kinds or ["events", "results", "dlq"])]
    consumer = await _reader(config, chosen, from_beginning=from_beginning)
    try:
        async for topic, event in _records(consumer, None):
            console.print(_line(topic, event))
    finally:
        await consumer.stop()


def _line(topic: str, event: Any) -> str:
    if event is None:
        return f"{topic}: (not a CloudEvent)"
    attrs = event.get_attributes()
    data = event.get_data()
    summary = data.get("status") if isinstance(data, dict) and "status" in data else ""
    return f"{topic}: {attrs.get('type')} {attrs.get('subject', '')} {summary}".strip()


# Fast enough to watch: a change "in the vendor" shows up within seconds.
DEV_POLL_INTERVAL_S = 5
DEV_COMMAND_DEADLINE_S = 60


def dev_instance(spec: VendorSpec, dev: DevVendor) -> dict[str, Any]:
    """The config of one dev instance: every part the vendor has, switched on."""
    resources = sorted(set(spec.poll.resources) & dev.changing_resources) if spec.poll else []
    instance: dict[str, Any] = {
        "vendor": spec.id,
        "name": spec.id,
        "base_url": dev.base_url,
        "webhooks": {"enabled": spec.webhook is not None},
        "polling": {
            "enabled": bool(resources),
            "interval_s": DEV_POLL_INTERVAL_S,
            "resources": resources,
        },
        "commands": {"enabled": bool(spec.commands), "deadline_s": DEV_COMMAND_DEADLINE_S},
    }
    for key, value in dev.settings.items():
        if isinstance(value, dict) and isinstance(instance.get(key), dict):
            instance[key] = {**instance[key], **value}
        else:
            instance[key] = value
    return instance


def _command_hints(
    config_file: Path, vendors: Mapping[str, VendorSpec], devs: Mapping[str, DevVendor]
) -> str:
    lines = ["Send a command and wait for its result:"]
    for name, dev in devs.items():
        example = dev.example_command
        if example is not None and example.type in vendors[name].commands:
            lines.append(
                f"  workbridge send --config {config_file} --instance {name} \\\n"
                f"    --type {example.type} --subject {example.subject} \\\n"
                f"    --data '{example.data}'"
            )
    return "\n".join(lines) if len(lines) > 1 else ""


async def run_dev(
    *,
    port: int,
    kafka: str | None,
    seconds: float,
    vendors: Mapping[str, VendorSpec] | None = None,
) -> int:
    """Start a broker (unless given one), the fake vendors and the bridge; show it live."""
    from adapters.app import Bridge
    from adapters.localkafka.launcher import LocalKafka
    from adapters.registry import VENDORS

    vendors = VENDORS if vendors is None else vendors
    broker = None
    if kafka is None:
        console.print("starting a local Kafka broker (first run downloads its jars) ...")
        broker = LocalKafka(progress=console.print)
        await broker.__aenter__()
        kafka = broker.bootstrap_servers
    devs: dict[str, DevVendor] = {}
    for vendor_id in sorted(vendors):
        start_fake = vendors[vendor_id].dev
        if start_fake is None:
            console.print(f"no fake server for vendor {vendor_id!r} yet: it is left out")
            continue
        devs[vendor_id] = await start_fake()
    raw = {
        "kafka": {"bootstrap_servers": kafka, "topics": {"partitions": 3, "replication_factor": 1}},
        "server": {"port": port, "host": "127.0.0.1"},
        "instances": [dev_instance(vendors[vendor_id], dev) for vendor_id, dev in devs.items()],
    }
    config = parse_config(raw, vendors=vendors)
    config_file = Path(tempfile.gettempdir()) / f"workbridge-dev-{os.getpid()}.yaml"
    config_file.write_text(yaml.safe_dump(raw), encoding="utf-8")
    bridge = Bridge(config)
    await bridge.start(on_progress=console.print)
    for vendor_id, dev in devs.items():
        if vendors[vendor_id].webhook is not None:
            dev.subscribe(f"http://127.0.0.1:{bridge.port}/webhooks/{vendor_id}")
    fakes = "\n".join(
        f"  fake {vendor_id + ':':<13} {dev.base_url}" for vendor_id, dev in devs.items()
    )
    hints = "\n".join(dev.hints for dev in devs.values())
    console.print(f"""
[bold]workbridge dev[/bold] is running.
  bridge:             http://127.0.0.1:{bridge.port}  (/healthz /readyz /metrics /webhooks/...)
{fakes}
  API key of the fakes: {DEV_API_KEY}
  Kafka:              {kafka}
  config:             {config_file}

{hints}
{_command_hints(config_file, vendors, devs)}
""")
    watched = []
    for inst in config.instances:
        topics = Topics(config.kafka.topic_prefix, inst.instance_name)
        watched += [topics.events, topics.results, topics.dlq]
    reader = await _reader(config, watched, from_beginning=True)
    table = Table("time", "topic", "type", "subject", "status")
    rows: list[tuple[str, ...]] = []
    deadline = time.monotonic() + seconds if seconds else None
    try:
        with Live(table, console=console, refresh_per_second=4) as live:
            async for topic, event in _records(reader, deadline):
                rows.append(_row(topic, event))
                table = Table("time", "topic", "type", "subject", "status")
                for row in rows[-25:]:
                    table.add_row(*row)
                live.update(table)
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    finally:
        await reader.stop()
        await bridge.stop()
        for dev in devs.values():
            await dev.fake.stop()
        if broker is not None:
            await broker.__aexit__(None, None, None)
        with contextlib.suppress(OSError):
            config_file.unlink()
    return 0


def _row(topic: str, event: Any) -> tuple[str, ...]:
    now = datetime.now(UTC).strftime("%H:%M:%S")
    short = ".".join(topic.split(".")[-2:])  # <name>.<kind>
    if event is None:
        return (now, short, "(not a CloudEvent)", "", "")
    attrs = event.get_attributes()
    data = event.get_data()
    status = str(data.get("status", "")) if isinstance(data, dict) else ""
    return (now, short, str(attrs.get("type")), str(attrs.get("subject", "")), status)
