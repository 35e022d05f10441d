"""Workbridge benchmark: webhooks vs a bare aiohttp server, completeness, and commands.

    .venv/bin/python -m benchmarks.bench_bridge [--seconds N] [--concurrency C]
        [--commands M] [--rounds R] [--json out.json] [--profile prof.html]

One run, one real Kafka broker (a LocalKafka unless KAFKA_BOOTSTRAP_SERVERS is set), one
fresh topic prefix:

1. Webhooks. Signed MOCO webhooks (Activity/create, distinct ids, 400-600 byte bodies) are
   POSTed by an aiohttp client with C concurrent senders for N seconds, alternately to a bare
   aiohttp server (reads the body, answers 200) and to a running Bridge (webhooks role only),
   R rounds. The client runs in its own process (see benchmarks/loadgen.py); the servers run
   in this one. Reported: 2xx/s, p50/p99 latency, errors, CPU of server, client and broker,
   and the bridge/bare throughput ratio.
2. Completeness. The events topic is read from the beginning (read_committed): every webhook
   answered 2xx must be there, once, with the id MOCO's webhook mapper gives it.
3. Commands. M `workbridge.moco.activity.create` commands (distinct subjects) are published,
   then a Bridge (commands role only) works them against a FakeMoco without rate limit;
   measured until all M results are on the command-results topic. Then the same M commands
   go through a naive baseline (aiokafka consumer -> aiohttp POST -> plain producer, no
   transactions, no ledger, at-least-once) with the same concurrency.

See benchmarks/README.md for what the figures mean.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import platform
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from adapters.app import Bridge
from adapters.config import Config, RateLimitConfig, parse_config
from adapters.core.cloudevents_codec import make_event, to_kafka
from adapters.core.kafka import Topics, ensure_topics
from adapters.core.vendor import WebhookRequest
from adapters.localkafka.launcher import LocalKafka
from adapters.moco.fake import FakeMoco
from adapters.registry import VENDORS
from benchmarks.loadgen import activity_body, client_process, webhook_headers

API_KEY = "bench-api-key"
SECRET = "1d608b9d72219b90ff2393a1d3ee0ac0"  # the MOCO webhook secret of the integration tests
INSTANCE = "moco"
GOAL_RATIO = 0.5
COMMAND_TYPE = "workbridge.moco.activity.create"

_T0 = time.monotonic()


def say(message: str) -> None:
    """A progress line with the seconds since start."""
    print(f"[{time.monotonic() - _T0:6.1f}s] {message}", flush=True)


def pct(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def _cpu_s(pid: int | None) -> float | None:
    """User+system CPU seconds of another process (Linux /proc), None if unknown."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_cpu_s() -> float | None:
    """CPU seconds used by the whole machine so far (all cores; Linux /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class LogCounter(logging.Handler):
    """Counts warnings by a short key; prints the first of each kind, the rest only counted."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        key = f"{record.name}: {message}"
        if "Error: <class '" in message:  # aiokafka's produce retries: count by error type
            error = message.rsplit("Error: <class '", 1)[1].rstrip("'>")
            topic = message.split("topic='", 1)[1].split("'", 1)[0] if "topic='" in message else ""
            key = f"{record.name}: produce retried after {error} ({topic.split('.', 1)[-1]})"
        if key not in self.counts:
            print(f"    [log, further ones only counted] {key[:300]}", flush=True)
        self.counts[key] += 1


LOGS = LogCounter()


# -- configurations ------------------------------------------------------------------------


def _instance(base_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "vendor": "moco",
        "name": INSTANCE,
        "base_url": base_url,
        "api_key": API_KEY,
        "webhook_secret": SECRET,
        **extra,
    }


def _kafka(bootstrap: str, prefix: str, replication: int) -> dict[str, Any]:
    return {
        "bootstrap_servers": bootstrap,
        "topic_prefix": prefix,
        "topics": {"replication_factor": replication},
    }


def webhook_config(
    bootstrap: str,
    prefix: str,
    base_url: str,
    *,
    replication: int = 1,
    linger_ms: int | None = None,
) -> Config:
    """Defaults everywhere (but the replication factor: the benchmark broker is one node),
    webhooks role only (no pollers, no command workers)."""
    kafka = _kafka(bootstrap, prefix, replication)
    if linger_ms is not None:
        kafka["linger_ms"] = linger_ms
    return parse_config(
        {
            "kafka": kafka,
            "server": {"host": "127.0.0.1", "port": 0},
            "roles": {"webhooks": True, "pollers": False, "commands": False},
            "instances": [_instance(base_url)],
        }
    )


# A budget far above the benchmark's needs. Newer configurations refuse a budget above the
# vendor's documented one unless it is marked as meant for a test server.
NO_RATE_LIMIT: dict[str, Any] = {"requests": 1_000_000, "per_seconds": 1}
if "above_documented" in RateLimitConfig.__struct_fields__:
    NO_RATE_LIMIT["above_documented"] = True


def commands_config(bootstrap: str, prefix: str, base_url: str, *, replication: int = 1) -> Config:
    """Commands role only; the instance's rate limit lifted (MOCO's documented 15/15 s is
    otherwise applied by the bridge itself)."""
    return parse_config(
        {
            "kafka": _kafka(bootstrap, prefix, replication),
            "server": {"host": "127.0.0.1", "port": 0},
            "roles": {"webhooks": False, "pollers": False, "commands": True},
            "instances": [
                _instance(
                    base_url,
                    webhooks={"enabled": False},
                    commands={"enabled": True},
                    rate_limit=NO_RATE_LIMIT,
                )
            ],
        }
    )


# -- the load generator (a separate process) -----------------------------------------------


class LoadClient:
    """The client process; jobs go over a pipe, results come back the same way."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=client_process, args=(child,), name="bench-loadgen", daemon=True
        )
        self._proc.start()
        child.close()

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    async def run(self, job: dict[str, Any], on_measuring: Callable[[], None]) -> dict[str, Any]:
        self._conn.send(job)
        while True:
            kind, payload = await asyncio.to_thread(self._conn.recv)
            if kind == "measuring":
                on_measuring()
            else:
                return payload  # type: ignore[no-any-return]

    def close(self) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self._conn.send(None)
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)


class BareServer:
    """The baseline: an aiohttp server whose handler reads the body and answers 200."""

    def __init__(self) -> None:
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=1_048_576)

        async def handler(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(body=b'{"message":"ok"}', content_type="application/json")

        app.router.add_post("/webhooks/{name}", handler)
        # aiohttp's plain runner: what the bridge's bounded listener (header deadline,
        # drain) costs counts against the bridge.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def webhook_phase(
    client: LoadClient,
    *,
    label: str,
    kind: str,
    port: int,
    args: argparse.Namespace,
    id_base: int,
    broker_pid: int | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One measured phase against one server: (summary, raw client result)."""
    seconds = args.seconds / args.rounds
    say(f"{label}: {args.concurrency} senders for {args.warmup:g}+{seconds:g} s -> :{port}")
    job = {
        "label": label,
        "url": f"http://127.0.0.1:{port}/webhooks/{INSTANCE}",
        "secret": SECRET,
        "concurrency": args.concurrency,
        "seconds": seconds,
        "warmup_s": args.warmup,
        "id_base": id_base,
        "timeout_s": 15.0,
        "progress_every_s": 2.0,
    }
    marks: dict[str, Any] = {}

    def on_measuring() -> None:
        marks.update(
            t=time.monotonic(),
            cpu=time.process_time(),
            broker=_cpu_s(broker_pid),
            machine=_machine_cpu_s(),
        )

    raw = await client.run(job, on_measuring)
    wall = time.monotonic() - marks["t"]
    server_cpu = time.process_time() - marks["cpu"]
    broker_after = _cpu_s(broker_pid)
    machine_after = _machine_cpu_s()
    machine_cpu = (
        machine_after - marks["machine"]
        if machine_after is not None and marks["machine"] is not None
        else None
    )
    broker_cpu = (
        broker_after - marks["broker"]
        if broker_after is not None and marks["broker"] is not None
        else None
    )
    lat = sorted(raw["latencies"])
    summary = {
        "phase": label,
        "server": kind,
        "seconds": raw["seconds"],
        "requests": raw["requests"],
        "ok": raw["ok"],
        "errors": raw["errors"],
        "statuses": raw["statuses"],
        "rps": raw["ok"] / raw["seconds"],
        "p50_ms": None if not lat else pct(lat, 50) * 1000,  # type: ignore[operator]
        "p99_ms": None if not lat else pct(lat, 99) * 1000,  # type: ignore[operator]
        "max_ms": None if not lat else lat[-1] * 1000,
        "server_cpu_pct": 100 * server_cpu / wall,
        "client_cpu_pct": 100 * raw["client_cpu_s"] / raw["wall_s"],
        "broker_cpu_pct": None if broker_cpu is None else 100 * broker_cpu / wall,
        "machine_cpu_pct": None if machine_cpu is None else 100 * machine_cpu / wall,
        "_latencies": lat,
    }
    summary["other_cpu_pct"] = _other_cpu(summary)
    say(
        f"{label}: {summary['rps']:.0f} req/s, p50 {ms(pct(lat, 50))} ms, "
        f"p99 {ms(pct(lat, 99))} ms, {raw['errors']} errors {raw['statuses']}"
    )
    return summary, raw


def _other_cpu(p: dict[str, Any]) -> float | None:
    """CPU of everything else on the machine (other users, the OS), when all parts are known."""
    keys = ("machine_cpu_pct", "server_cpu_pct", "client_cpu_pct", "broker_cpu_pct")
    parts = [p[k] for k in keys]
    if any(v is None for v in parts):
        return None
    return max(0.0, float(parts[0] - parts[1] - parts[2] - parts[3]))


def combine(phases: list[dict[str, Any]], label: str) -> dict[str, Any]:
    """All rounds of one server as one figure."""
    lat = sorted(v for p in phases for v in p["_latencies"])
    seconds = sum(p["seconds"] for p in phases)
    ok = sum(p["ok"] for p in phases)

    def mean(key: str) -> float | None:
        values = [p[key] for p in phases if p[key] is not None]
        return sum(values) / len(values) if values else None

    return {
        "phase": label,
        "server": phases[0]["server"],
        "seconds": seconds,
        "requests": sum(p["requests"] for p in phases),
        "ok": ok,
        "errors": sum(p["errors"] for p in phases),
        "rps": ok / seconds,
        "p50_ms": None if not lat else pct(lat, 50) * 1000,  # type: ignore[operator]
        "p99_ms": None if not lat else pct(lat, 99) * 1000,  # type: ignore[operator]
        "max_ms": None if not lat else lat[-1] * 1000,
        "server_cpu_pct": mean("server_cpu_pct"),
        "client_cpu_pct": mean("client_cpu_pct"),
        "broker_cpu_pct": mean("broker_cpu_pct"),
        "machine_cpu_pct": mean("machine_cpu_pct"),
        "other_cpu_pct": mean("other_cpu_pct"),
    }


# -- reading topics ------------------------------------------------------------------------


def _header(headers: Any, name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("utf-8", "replace") if value is not None else None
    return None


async def read_whole_topic(bootstrap: str, topic: str, *, limit_s: float = 90.0) -> list[Any]:
    """Every committed record of a topic, from the beginning to the current end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        deadline = time.monotonic() + 10
        while not parts and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts or [])]
        if not tps:
            say(f"topic {topic} does not exist")
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                break
            for batch in (await consumer.getmany(timeout_ms=500, max_records=20_000)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


class ResultsReader:
    """Tails a results topic from the beginning; notes when each distinct command id arrives."""

    def __init__(self, bootstrap: str, topic: str, expected: int) -> None:
        self.bootstrap, self.topic, self.expected = bootstrap, topic, expected
        self.records = 0
        self.first: dict[str, float] = {}  # commandid -> monotonic arrival
        self.statuses: Counter[str] = Counter()
        self.done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
        )
        await self._consumer.start()
        parts = self._consumer.partitions_for_topic(self.topic)
        deadline = time.monotonic() + 10
        while not parts and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            await self._consumer._client.force_metadata_update()
            parts = self._consumer.partitions_for_topic(self.topic)
        if not parts:
            raise RuntimeError(f"topic {self.topic} has no partitions")
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            now = time.monotonic()
            for batch in batches.values():
                for record in batch:
                    self.records += 1
                    cid = _header(record.headers, "ce_commandid") or f"?{record.offset}"
                    self.first.setdefault(cid, now)
                    try:
                        status = msgspec.json.decode(record.value).get("status", "?")
                    except (msgspec.DecodeError, AttributeError):
                        status = "undecodable"
                    self.statuses[str(status)] += 1
            if len(self.first) >= self.expected:
                self.done.set()

    async def wait(self, timeout_s: float, label: str) -> bool:
        """Wait for all expected command ids, with a progress line every 2 s."""
        deadline = time.monotonic() + timeout_s
        last_n, last_t = len(self.first), time.monotonic()
        while not self.done.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), 2.0)
            now, n = time.monotonic(), len(self.first)
            if not self.done.is_set():
                rate = (n - last_n) / (now - last_t)
                say(f"  [{label}] {n}/{self.expected} results, {rate:.0f}/s")
            last_n, last_t = n, now
        return self.done.is_set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()


async def require_topic(bootstrap: str, topic: str) -> None:
    """Stop with a clear message when the bridge said ready but its topic does not exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        exists = topic in set(await admin.list_topics())
    finally:
        await admin.close()
    if not exists:
        raise SystemExit(
            f"the bridge started, but topic {topic} does not exist: topic creation failed "
            "without an error (try --replication-factor to match the broker count)"
        )


# -- webhook completeness ------------------------------------------------------------------


def expected_id(n: int, stamp: str) -> str:
    """The event id that MOCO's webhook mapper gives webhook `n` (sent at `stamp`): the
    contract's stable id, which a redelivery of the same webhook must get again."""
    body = activity_body(n)
    headers = {k.lower(): v for k, v in webhook_headers(body, stamp, SECRET).items()}
    spec = VENDORS["moco"].webhook
    assert spec is not None
    return spec.to_events(WebhookRequest(headers, body, datetime.now(UTC)), INSTANCE)[0].id


async def verify_events(
    bootstrap: str, topic: str, accepted: list[tuple[int, str]], failed: list[tuple[int, str]]
) -> dict[str, Any]:
    """Is every 2xx-answered webhook on the events topic, once, under its stable id?"""
    say(f"completeness: reading {topic} from the beginning (read_committed)")
    started = time.monotonic()
    records = await read_whole_topic(bootstrap, topic)
    expected = {f"activity/{n}": expected_id(n, stamp) for n, stamp in accepted}
    not_accepted = {f"activity/{n}" for n, _ in failed}
    ids_by_subject: dict[str, set[str]] = {}
    all_ids: Counter[str] = Counter()
    for record in records:
        ce_id = _header(record.headers, "ce_id") or ""
        subject = _header(record.headers, "ce_subject") or ""
        all_ids[ce_id] += 1
        ids_by_subject.setdefault(subject, set()).add(ce_id)
    found = [s for s in expected if s in ids_by_subject]
    missing = sorted(set(expected) - set(found))
    accepted_ids = {i for s in found for i in ids_by_subject[s]}
    mismatched = [s for s in found if ids_by_subject[s] != {expected[s]}]
    extra_subjects = set(ids_by_subject) - set(expected)
    result = {
        "topic": topic,
        "accepted_2xx": len(expected),
        "records_on_topic": len(records),
        "distinct_ce_id_on_topic": len(all_ids),
        "distinct_ce_id_of_accepted": len(accepted_ids),
        "accepted_found": len(found),
        "missing": len(missing),
        "missing_subjects": missing[:50],
        "duplicate_records": sum(c - 1 for c in all_ids.values()),
        "id_mismatches": len(mismatched),
        "on_topic_not_accepted": len(extra_subjects),
        "on_topic_not_accepted_but_sent": len(extra_subjects & not_accepted),
        "sent_not_accepted": len(not_accepted),
        "read_s": time.monotonic() - started,
    }
    result["complete"] = not missing and len(accepted_ids) == len(expected)
    result["ids_stable"] = not mismatched
    return result


# -- commands --------------------------------------------------------------------------------


def command_subject(prefix: str, i: int) -> str:
    return f"bench/{prefix}/{i}"


async def publish_commands(bootstrap: str, topic: str, prefix: str, m: int, project: int) -> None:
    """M activity-create commands, binary mode, keyed by their (distinct) subjects."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        futures = []
        for i in range(m):
            subject = command_subject(prefix, i)
            data = {
                "date": "2026-11-23",
                "project_id": project,
                "hours": 0.25 * (1 + i % 8),
                "description": f"benchmark command {i}",
                "remote_id": f"bench-{i}",
            }
            event = make_event(
                id=str(uuid.uuid4()),
                source="/benchmarks",
                type=COMMAND_TYPE,
                subject=subject,
                partitionkey=subject,
                data=msgspec.json.encode(data),
            )
            key, value, headers = to_kafka(event)
            futures.append(await producer.send(topic, value=value, key=key, headers=headers))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def seed(fake: FakeMoco) -> int:
    company = fake.create_record("companies", {"name": "Acme", "type": "customer"})
    project = fake.create_record("projects", {"name": "Line 4", "customer_id": company["id"]})
    return int(project["id"])


def calls_summary(fake: FakeMoco, m: int) -> dict[str, Any]:
    remote_ids = {(c.json or {}).get("remote_id") for c in fake.calls}
    return {
        "vendor_calls": len(fake.calls),
        "distinct_commands_called": len(remote_ids - {None}),
        "vendor_calls_ok": len(fake.calls) == m and len(remote_ids - {None}) == m,
    }


def rates(m: int, started: float, reader: ResultsReader) -> dict[str, Any]:
    times = sorted(reader.first.values())
    if not times:
        return {"total_s": None, "cmds_per_s": None, "steady_cmds_per_s": None}
    total = times[-1] - started
    span = times[-1] - times[0]
    return {
        "total_s": total,
        "first_result_s": times[0] - started,
        "cmds_per_s": len(times) / total if total > 0 else None,
        "steady_cmds_per_s": (len(times) - 1) / span if span > 0 else None,
    }


async def bench_bridge_commands(
    bootstrap: str, prefix: str, m: int, timeout_s: float, fake: FakeMoco, replication: int
) -> dict[str, Any]:
    """Time for a commands-only Bridge to put all M results on the results topic."""
    assert fake.base_url is not None
    config = commands_config(bootstrap, prefix, fake.base_url, replication=replication)
    topics = Topics(prefix, INSTANCE)
    reader = ResultsReader(bootstrap, topics.results, m)
    await reader.start()
    bridge = Bridge(config)
    cpu0 = time.process_time()
    started = time.monotonic()
    await bridge.start(on_progress=lambda msg: say(f"  [workbridge] {msg}"))
    all_in = await reader.wait(timeout_s, "workbridge")
    wall = time.monotonic() - started
    cpu = time.process_time() - cpu0
    await asyncio.sleep(1.0)  # any duplicate result would show up meanwhile
    await bridge.stop()
    await reader.stop()
    out = {
        "name": "workbridge (transactions, idempotency ledger, exactly one result)",
        "commands": m,
        "all_results": all_in,
        "result_records": reader.records,
        "distinct_results": len(reader.first),
        "statuses": dict(reader.statuses),
        "concurrency": config.instances[0].commands.concurrency,
        "partitions": config.kafka.topics.partitions,
        "process_cpu_pct": 100 * cpu / wall,
        **rates(m, started, reader),
        **calls_summary(fake, m),
    }
    out["ok"] = (
        all_in
        and reader.records == m
        and out["vendor_calls_ok"]
        and reader.statuses.get("succeeded", 0) == m
    )
    return out


async def bench_naive_commands(
    bootstrap: str,
    prefix: str,
    m: int,
    concurrency: int,
    timeout_s: float,
    fake: FakeMoco,
    replication: int,
) -> dict[str, Any]:
    """Baseline: consume -> POST -> produce a result, no transactions, no ledger."""
    assert fake.base_url is not None
    commands_topic = Topics(prefix, INSTANCE).commands
    results_topic = f"{prefix}.naive.command-results"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics([NewTopic(results_topic, 3, replication)])
    finally:
        await admin.close()
    reader = ResultsReader(bootstrap, results_topic, m)
    await reader.start()
    url = f"{fake.base_url}/activities"
    auth = {"Authorization": f"Token token={API_KEY}", "Content-Type": "application/json"}

    consumer = AIOKafkaConsumer(
        commands_topic,
        bootstrap_servers=bootstrap,
        group_id=f"{prefix}.naive",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        isolation_level="read_committed",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    semaphore = asyncio.Semaphore(concurrency)
    tasks: set[asyncio.Task[None]] = set()
    cpu0 = time.process_time()
    started = time.monotonic()
    await consumer.start()
    await producer.start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def handle(record: Any) -> None:
        async with semaphore:
            command_id = _header(record.headers, "ce_id") or ""
            async with session.post(url, data=record.value, headers=auth) as resp:
                body = await resp.read()
                status = resp.status
            result = {
                "status": "succeeded" if 200 <= status < 300 else "failed",
                "http_status": status,
                "response": msgspec.json.decode(body) if body else None,
            }
            await producer.send_and_wait(
                results_topic,
                key=record.key,
                value=msgspec.json.encode(result),
                headers=[("ce_commandid", command_id.encode())],
            )

    async def fetch() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            for batch in batches.values():
                for record in batch:
                    task = asyncio.create_task(handle(record))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)

    fetcher = asyncio.create_task(fetch())
    all_in = await reader.wait(timeout_s, "naive")
    wall = time.monotonic() - started
    cpu = time.process_time() - cpu0
    await asyncio.sleep(1.0)
    fetcher.cancel()
    for task in list(tasks):
        task.cancel()
    await asyncio.gather(fetcher, *tasks, return_exceptions=True)
    await session.close()
    await producer.stop()
    await consumer.stop()
    await reader.stop()
    out = {
        "name": "naive baseline (aiokafka consume -> aiohttp POST -> produce; "
        "no transactions, no ledger, at-least-once)",
        "commands": m,
        "all_results": all_in,
        "result_records": reader.records,
        "distinct_results": len(reader.first),
        "statuses": dict(reader.statuses),
        "concurrency": concurrency,
        "partitions": None,
        "process_cpu_pct": 100 * cpu / wall,
        **rates(m, started, reader),
        **calls_summary(fake, m),
    }
    out["ok"] = all_in and reader.records == m and out["vendor_calls_ok"]
    return out


async def commands_section(bootstrap: str, prefix: str, args: argparse.Namespace) -> dict[str, Any]:
    m = args.commands
    topics = Topics(prefix, INSTANCE)
    fake = FakeMoco(api_key=API_KEY, webhook_secret=SECRET, rate_limit=None)
    naive_fake = FakeMoco(api_key=API_KEY, webhook_secret=SECRET, rate_limit=None)
    await fake.start()
    await naive_fake.start()
    try:
        project = seed(fake)
        naive_project = seed(naive_fake)
        assert project == naive_project  # the same command data works for both fakes
        assert fake.base_url is not None
        config = commands_config(
            bootstrap, prefix, fake.base_url, replication=args.replication_factor
        )
        await ensure_topics(config.kafka, [topics])
        await require_topic(bootstrap, topics.commands)
        say(f"commands: publishing {m} {COMMAND_TYPE} commands to {topics.commands}")
        await publish_commands(bootstrap, topics.commands, prefix, m, project)
        say("commands: starting a commands-only Bridge (FakeMoco and instance rate limit off)")
        bridge = await bench_bridge_commands(
            bootstrap, prefix, m, args.command_timeout, fake, args.replication_factor
        )
        say(
            f"commands: workbridge {_num(bridge['cmds_per_s'])} cmds/s "
            f"({bridge['distinct_results']}/{m} results, {bridge['vendor_calls']} vendor calls)"
        )
        say("commands: naive baseline on the same commands (own consumer group, own fake)")
        naive = await bench_naive_commands(
            bootstrap,
            prefix,
            m,
            bridge["concurrency"],
            args.command_timeout,
            naive_fake,
            args.replication_factor,
        )
        say(f"commands: naive baseline {_num(naive['cmds_per_s'])} cmds/s")
    finally:
        await fake.stop()
        await naive_fake.stop()
    ratio = None
    if bridge["cmds_per_s"] and naive["cmds_per_s"]:
        ratio = bridge["cmds_per_s"] / naive["cmds_per_s"]
    return {"workbridge": bridge, "naive_baseline": naive, "ratio": ratio}


def _num(value: float | None, fmt: str = ".0f") -> str:
    return "-" if value is None else format(value, fmt)


# -- the whole run ---------------------------------------------------------------------------


async def run(args: argparse.Namespace, bootstrap: str, broker_pid: int | None) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    topics = Topics(prefix, INSTANCE)
    say(f"topic prefix {prefix}; broker {bootstrap}")
    client = LoadClient()
    bare = BareServer()
    await bare.start()
    config = webhook_config(
        bootstrap,
        prefix,
        "http://127.0.0.1:9/api/v1",
        replication=args.replication_factor,
        linger_ms=args.linger_ms,
    )
    bridge = Bridge(config)
    phases: list[dict[str, Any]] = []
    accepted: list[tuple[int, str]] = []
    failed: list[tuple[int, str]] = []
    profile_info: dict[str, Any] | None = None
    id_block = 10_000_000
    try:
        await bridge.start(on_progress=lambda msg: say(f"bridge: {msg}"))
        await require_topic(bootstrap, topics.events)
        for r in range(1, args.rounds + 1):
            for kind, port in (("bare", bare.port), ("bridge", bridge.port)):
                summary, raw = await webhook_phase(
                    client,
                    label=f"{kind} #{r}",
                    kind=kind,
                    port=port,
                    args=args,
                    id_base=(len(phases) + 1) * id_block,
                    broker_pid=broker_pid,
                )
                phases.append(summary)
                if kind == "bridge":
                    accepted += raw["accepted"]
                    failed += raw["failed"]
        if args.profile:
            profile_info = await profiled_phase(client, bridge.port, args, broker_pid, id_block)
            accepted += profile_info.pop("_accepted")
            failed += profile_info.pop("_failed")
    finally:
        await bridge.stop()
        await bare.stop()
        client.close()
    completeness = await verify_events(bootstrap, topics.events, accepted, failed)
    say(
        f"completeness: {completeness['accepted_found']}/{completeness['accepted_2xx']} "
        f"accepted webhooks on the topic, {completeness['missing']} missing"
    )
    commands = None
    if args.commands > 0:
        commands = await commands_section(bootstrap, prefix, args)
    bare_all = combine([p for p in phases if p["server"] == "bare"], "bare (all rounds)")
    bridge_all = combine([p for p in phases if p["server"] == "bridge"], "bridge (all rounds)")
    for p in phases:
        p.pop("_latencies")
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "args": {
            "seconds": args.seconds,
            "warmup_s": args.warmup,
            "concurrency": args.concurrency,
            "rounds": args.rounds,
            "commands": args.commands,
            "linger_ms": config.kafka.linger_ms,
            "replication_factor": args.replication_factor,
        },
        "kafka": bootstrap,
        "topic_prefix": prefix,
        "webhooks": {
            "phases": phases,
            "bare": bare_all,
            "bridge": bridge_all,
            "ratio": bridge_all["rps"] / bare_all["rps"] if bare_all["rps"] else None,
            "goal_ratio": GOAL_RATIO,
        },
        "completeness": completeness,
        "commands": commands,
        "profile": profile_info,
        "warnings": dict(LOGS.counts),
    }


async def profiled_phase(
    client: LoadClient, port: int, args: argparse.Namespace, broker_pid: int | None, block: int
) -> dict[str, Any]:
    """An extra bridge phase under pyinstrument (not part of the throughput figures)."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        raise SystemExit(
            "--profile needs pyinstrument: .venv/bin/pip install pyinstrument"
        ) from None
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    summary, raw = await webhook_phase(
        client,
        label="bridge (profiled)",
        kind="bridge",
        port=port,
        args=args,
        id_base=99 * block,
        broker_pid=broker_pid,
    )
    profiler.stop()
    path = Path(args.profile)
    await asyncio.to_thread(write_profile, profiler, path)
    say(f"profile written to {path}")
    summary.pop("_latencies")
    return {**summary, "path": str(path), "_accepted": raw["accepted"], "_failed": raw["failed"]}


def write_profile(profiler: Any, path: Path) -> None:
    """The profile as text, or as HTML plus a text copy next to it; and the raw session
    (`.pyisession`, open it with `pyinstrument --load FILE`)."""
    text = profiler.output_text(unicode=True, color=False, show_all=False)
    profiler.last_session.save(str(path.with_suffix(".pyisession")))
    if path.suffix == ".html":
        path.write_text(profiler.output_html())
        path.with_suffix(".txt").write_text(text)
    else:
        path.write_text(text)


# -- report ----------------------------------------------------------------------------------


def print_report(report: dict[str, Any]) -> bool:
    """The tables; returns False when a correctness check failed."""
    web_ = report["webhooks"]
    args = report["args"]
    print()
    print(
        f"WEBHOOKS  C={args['concurrency']} senders, {args['seconds']:g} s per server in "
        f"{args['rounds']} alternating phases of {args['seconds'] / args['rounds']:g} s "
        f"(+{args['warmup_s']:g} s warm-up each),\n  loopback, client in its own process; "
        f"bridge kafka.linger_ms={args['linger_ms']}"
    )
    head = (
        f"{'phase':<20}{'2xx':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'errors':>8}{'server':>8}{'client':>8}{'broker':>8}{'machine':>8}{'other':>7}"
    )
    print(head)
    print(f"{'':<70}{'CPU %':>8}{'CPU %':>8}{'CPU %':>8}{'CPU %':>8}{'CPU %':>7}")
    print("-" * len(head))

    def row(p: dict[str, Any]) -> None:
        print(
            f"{p['phase']:<20}{p['ok']:>8}{p['rps']:>9.0f}"
            f"{_num(p['p50_ms'], '.1f'):>9}{_num(p['p99_ms'], '.1f'):>9}"
            f"{_num(p['max_ms'], '.1f'):>9}{p['errors']:>8}"
            f"{_num(p['server_cpu_pct']):>8}{_num(p['client_cpu_pct']):>8}"
            f"{_num(p['broker_cpu_pct']):>8}{_num(p['machine_cpu_pct']):>8}"
            f"{_num(p['other_cpu_pct']):>7}"
        )

    for p in web_["phases"]:
        row(p)
    print("-" * len(head))
    row(web_["bare"])
    row(web_["bridge"])
    if report.get("profile"):
        row(report["profile"])
        print("  (the profiled phase runs under pyinstrument and is not in the figures above)")
    ratio = web_["ratio"]
    verdict = "goal met" if ratio is not None and ratio >= GOAL_RATIO else "BELOW GOAL"
    print(f"bridge/bare throughput: {_num(ratio, '.2f')} (goal >= {GOAL_RATIO:.2f}: {verdict})")

    c = report["completeness"]
    print()
    print(f"COMPLETENESS  {c['topic']} read from the beginning, read_committed")
    print(f"  webhooks answered 2xx (warm-up included):  {c['accepted_2xx']}")
    print(f"  records on the topic:                      {c['records_on_topic']}")
    print(f"  distinct ce_id of accepted webhooks:       {c['distinct_ce_id_of_accepted']}")
    print(f"  accepted webhooks found / missing:         {c['accepted_found']} / {c['missing']}")
    print(f"  ce_id differing from the mapper's id:      {c['id_mismatches']}")
    print(f"  duplicate records (same ce_id):            {c['duplicate_records']}")
    print(
        f"  on the topic without a 2xx (sent: {c['sent_not_accepted']}):   "
        f"{c['on_topic_not_accepted']}"
    )
    if c["missing_subjects"]:
        print(f"  MISSING: {', '.join(c['missing_subjects'])}")
    print(
        f"  => {'COMPLETE' if c['complete'] else 'INCOMPLETE'}; event ids "
        f"{'stable' if c['ids_stable'] else 'NOT the ones the mapper gives (see above)'}"
    )
    ok = bool(c["complete"] and c["ids_stable"])

    cmd = report["commands"]
    if cmd is not None:
        print()
        print(f"COMMANDS  M={args['commands']} {COMMAND_TYPE}, distinct subjects, FakeMoco")
        head = (
            f"{'':<12}{'total s':>9}{'cmds/s':>9}{'steady/s':>10}{'results':>9}"
            f"{'distinct':>10}{'vendor calls':>14}{'CPU %':>7}  statuses"
        )
        print(head)
        print("-" * (len(head) + 12))
        for key, label in (("workbridge", "workbridge"), ("naive_baseline", "naive")):
            r = cmd[key]
            print(
                f"{label:<12}{_num(r['total_s'], '.1f'):>9}{_num(r['cmds_per_s']):>9}"
                f"{_num(r['steady_cmds_per_s']):>10}{r['result_records']:>9}"
                f"{r['distinct_results']:>10}{r['vendor_calls']:>14}"
                f"{_num(r['process_cpu_pct']):>7}  {r['statuses']}"
            )
        print(f"  workbridge: {cmd['workbridge']['name']}")
        print(f"  naive:      {cmd['naive_baseline']['name']}")
        print(
            "  total = from start (Bridge.start() / consumer start) to the last result; "
            "steady = first to last result"
        )
        print(f"workbridge/naive commands/s: {_num(cmd['ratio'], '.2f')}")
        w = cmd["workbridge"]
        check = "OK" if w["ok"] else "FAILED"
        print(
            f"  exactly {args['commands']} results and {args['commands']} vendor calls, "
            f"all succeeded: {check}"
        )
        ok = ok and bool(w["ok"])
    if report["warnings"]:
        print()
        print("WARNINGS logged during the run (count, kind)")
        for key, count in sorted(report["warnings"].items(), key=lambda kv: -kv[1]):
            print(f"  {count:6d}  {key[:160]}")
    return ok


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_bridge",
        description="Workbridge webhook and command throughput on a real Kafka broker.",
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=10.0,
        help="measured seconds per server, split over the rounds (default 10)",
    )
    p.add_argument("--concurrency", type=int, default=64, help="concurrent webhook senders")
    p.add_argument("--commands", type=int, default=2000, help="commands to run (0: skip)")
    p.add_argument("--rounds", type=int, default=2, help="bare+bridge rounds (alternating)")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds per phase")
    p.add_argument(
        "--command-timeout", type=float, default=180.0, help="max wait for all results (s)"
    )
    p.add_argument(
        "--linger-ms",
        type=int,
        default=None,
        help="kafka.linger_ms for the webhook bridge (default: the configuration default)",
    )
    p.add_argument(
        "--replication-factor",
        type=int,
        default=1,
        help="kafka.topics.replication_factor of the bridges (default 1: a one-node broker)",
    )
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    p.add_argument(
        "--profile",
        metavar="FILE",
        help="add a pyinstrument-profiled bridge phase; .html also writes a .txt next to it",
    )
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.concurrency < 1 or args.rounds < 1 or args.commands < 0:
        p.error("--seconds, --concurrency and --rounds must be positive, --commands >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, handlers=[LOGS])
    with contextlib.ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        broker_pid = None
        if bootstrap:
            say(f"using the broker at KAFKA_BOOTSTRAP_SERVERS={bootstrap}")
        else:
            say("starting a local Kafka broker (LocalKafka)")
            kafka = stack.enter_context(LocalKafka(progress=lambda m: say(f"kafka: {m}")))
            bootstrap = kafka.bootstrap_servers
            broker_pid = kafka.pid
        report = asyncio.run(run(args, bootstrap, broker_pid))
    ok = print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nJSON written to {args.json}")
    print(f"\ntotal run time {time.monotonic() - _T0:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
