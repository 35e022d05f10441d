"""Ledger benchmark: memory per key and restore time of one command partition's ledger.

    .venv/bin/python -m benchmarks.bench_ledger [--keys 1000000,5000000]
        [--baseline-keys 1000000] [--data-dir DIR] [--json FILE]

One real Kafka broker (a LocalKafka unless KAFKA_BOOTSTRAP_SERVERS is set; with `--data-dir`
its data is kept, so the next run reuses the ledgers it wrote). For each size N a topic of
one partition holds N ledger records with N distinct keys, as the worker writes them: 90 %
`done` entries of a MOCO activity create with the vendor's answer (~0.7 KB), 10 % answered
records (a rejected or repeated command). Every measurement runs in a fresh process, one
after the other, so that its memory is its own:

- `scan`: the ledger read to its end and thrown away: the ceiling of any restore here;
- `dict` (the baseline: the worker's restore before the index, `restore_partition` +
  `read_ledger`, every entry decoded and kept), only up to `--baseline-keys`;
- `index`: `ledger_store.Ledger` rebuilding its index from scratch; then look-ups of keys
  that are not there and of keys that are (read back from the topic); then a second
  `Ledger` on the same index resuming from its checkpoint.

Memory is the process's resident set (VmRSS) after the restore minus before it, with the
ledger still held, and the peak (VmHWM) minus the same start. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from adapters.config import KafkaConfig, parse_config
from adapters.core.ledger import answered_record, decode_entry, key_record, read_ledger
from adapters.core.ledger_store import KafkaLedgerLog, Ledger, LedgerIndex
from adapters.core.state_restore import restore_partition
from adapters.localkafka.launcher import LocalKafka

TOPIC_PREFIX = "benchledger"
_T0 = time.monotonic()


def say(message: str) -> None:
    """A progress line with the seconds since start."""
    print(f"[{time.monotonic() - _T0:6.1f}s] {message}", flush=True)


def memory_kib() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in KiB."""
    out = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(rest.split()[0])
    return out


def kafka_config(bootstrap: str) -> KafkaConfig:
    """The connection settings the worker would use."""
    return parse_config({"kafka": {"bootstrap_servers": bootstrap}, "instances": []}).kafka


# -- the ledgers ------------------------------------------------------------------------------

# A `done` entry as the worker writes it for a MOCO activity create (LedgerEntry JSON).
_DONE = (
    b'{"state":"done","command_id":"%s","command_type":"workbridge.moco.activity.create",'
    b'"payload_hash":"%s","at":"%s","result":{"status":"succeeded","command_type":'
    b'"workbridge.moco.activity.create","idempotency_key":"%s","attempts":1,"http_status":200,'
    b'"request_id":"req-%d","response":{"id":%d,"date":"2026-11-23","hours":1.5,'
    b'"description":"pump check","billed":false,"billable":true,"tag":"","remote_service":null,'
    b'"remote_id":null,"remote_url":null,"project":{"id":942342,"name":"Line 4","billable":true},'
    b'"task":{"id":2262,"name":"Maintenance","billable":true},"customer":{"id":1223,'
    b'"name":"Acme"},"user":{"id":933613686,"firstname":"Ada","lastname":"Lovelace"},'
    b'"hourly_rate":120.0,"timer_started_at":null,"created_at":"%s","updated_at":"%s"}}}'
)
_ANSWERED = (
    b'{"state":"done","command_id":"%s","command_type":"workbridge.moco.activity.create",'
    b'"payload_hash":"","at":"%s","result":{"status":"rejected","command_type":'
    b'"workbridge.moco.activity.create","idempotency_key":"%s","error":"data does not match",'
    b'"reason":"invalid command"}}'
)


def _ident(count: int, i: int, size: int) -> bytes:
    return hashlib.blake2b(b"%d/%d" % (count, i), digest_size=size).hexdigest().encode()


def ledger_record(count: int, i: int, at: bytes) -> tuple[bytes, bytes]:
    """Record `i` of the benchmark ledger of `count`: a distinct key, a realistic value."""
    ident = _ident(count, i, 16)
    key = b"%s-%s-%s-%s-%s" % (ident[:8], ident[8:12], ident[12:16], ident[16:20], ident[20:])
    if i % 10 == 9:
        return answered_record(key.decode()).encode(), _ANSWERED % (key, at, key)
    value = _DONE % (key, _ident(count, i, 32), at, key, i, 100_000_000 + i, at, at)
    return key_record(key.decode()).encode(), value


def sample(count: int, wanted: int) -> list[tuple[str, str]]:
    """(kind, name) of `wanted` records spread over the ledger of `count`: an idempotency
    key (`key`) or the id of a command answered without one (`answered`)."""
    out = []
    for i in random.Random(7).sample(range(count), min(wanted, count)):
        key = ledger_record(count, i, b"")[0].decode()
        out.append(("answered", key.split("/", 1)[1]) if i % 10 == 9 else ("key", key))
    return out


async def ensure_ledger(bootstrap: str, count: int) -> str:
    """A one-partition topic holding `count` ledger records (written unless already there)."""
    topic = f"{TOPIC_PREFIX}.n{count}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic in await admin.list_topics():
            end = await _end_offset(bootstrap, topic)
            if end == count:
                say(f"{topic}: {count} records already there; reused")
                return topic
            say(f"{topic}: {end} records, not {count}; written again")
            await admin.delete_topics([topic])
            await asyncio.sleep(2)
        configs = {"cleanup.policy": "compact,delete", "retention.ms": str(14 * 86_400_000)}
        await admin.create_topics([NewTopic(topic, 1, 1, topic_configs=configs)])
    finally:
        await admin.close()
    await _write(bootstrap, topic, count)
    return topic


async def _end_offset(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


async def _write(bootstrap: str, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=1, linger_ms=20, max_batch_size=1 << 20
    )
    await producer.start()
    at = datetime.now(UTC).isoformat().encode()
    started = last = time.monotonic()
    try:
        pending: list[asyncio.Future[Any]] = []
        batch = producer.create_batch()
        ts = int(time.time() * 1000)
        for i in range(count):
            key, value = ledger_record(count, i, at)
            if batch.append(key=key, value=value, timestamp=ts) is None:
                pending.append(await producer.send_batch(batch, topic, partition=0))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=ts)
                if len(pending) >= 16:
                    await asyncio.gather(*pending)
                    pending.clear()
            if time.monotonic() - last > 5:
                last = time.monotonic()
                rate = i / (last - started)
                say(
                    f"{topic}: written {i:,}/{count:,} ({rate:,.0f}/s, "
                    f"{(count - i) / rate:.0f} s to go)"
                )
        pending.append(await producer.send_batch(batch, topic, partition=0))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    say(f"{topic}: {count:,} records written in {time.monotonic() - started:.0f} s")


# -- one measurement (in a process of its own) ---------------------------------------------------


async def measure(method: str, bootstrap: str, topic: str, count: int) -> dict[str, Any]:
    """Run one method and return its figures."""
    kafka = kafka_config(bootstrap)
    gc.collect()
    before = memory_kib()
    started = time.monotonic()
    out: dict[str, Any] = {"method": method, "keys": count}
    held: Any = None
    state_dir = Path(tempfile.mkdtemp(prefix="bench-ledger-"))
    watch = _Watch(state_dir)
    watching = asyncio.create_task(watch.run())
    try:
        if method == "scan":
            source = KafkaLedgerLog(kafka, topic, 0, client_id="bench-scan")
            seen = 0

            async def drop(records: list[Any], _position: int) -> None:
                nonlocal seen
                seen += len(records)

            _first, end = await source.bounds()
            await source.scan(0, end, drop, stall_s=120)
            await source.close()
            out["records"] = seen
        elif method == "dict":
            restored = await restore_partition(kafka, topic, 0, decode_entry, timeout_s=7200)
            held = read_ledger(restored)
            del restored
            out["records"] = len(held.keys) + len(held.answered)
        elif method == "index":
            held = _ledger(kafka, topic, state_dir)
            out["records"] = (await held.restore()).records
        else:
            raise SystemExit(f"unknown method {method}")
        out["seconds"] = time.monotonic() - started
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        out["loop_stall_max_ms"] = round(watch.worst_stall * 1000, 1)
        out["disk_peak_bytes"] = watch.disk_peak
        gc.collect()
        after = memory_kib()  # with the restored ledger still held
        out["retained_kib"] = after["VmRSS"] - before["VmRSS"]
        out["peak_kib"] = after["VmHWM"] - before["VmRSS"]
        if method == "index":
            out.update(await _after_index_restore(held, kafka, topic, state_dir, count))
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    return out


class _Watch:
    """While a restore runs: the longest the event loop was held (what a heartbeat or a
    webhook of the same process would have waited), and the most disk the state
    directory's filesystem lost meanwhile (sqlite's temporary files are unlinked, so only
    the free space shows them; other writers on the machine add noise)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.worst_stall = 0.0
        self._free_before = self._free()
        self.disk_peak = 0

    def _free(self) -> int:
        stat = os.statvfs(self.state_dir)
        return stat.f_bavail * stat.f_frsize

    async def run(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            self.worst_stall = max(self.worst_stall, time.perf_counter() - t - 0.01)
            self.disk_peak = max(self.disk_peak, self._free_before - self._free())


def _ledger(kafka: KafkaConfig, topic: str, state_dir: Path) -> Ledger:
    index = LedgerIndex.open(state_dir, identity=f"{topic}/0", name=f"{topic}.0")
    source = KafkaLedgerLog(kafka, topic, 0, client_id="bench-index")
    return Ledger(index, source, topic=topic, partition=0)


async def _after_index_restore(
    ledger: Ledger, kafka: KafkaConfig, topic: str, state_dir: Path, count: int
) -> dict[str, Any]:
    out: dict[str, Any] = {"index_bytes": ledger.index.size_bytes()}
    absent = []
    for i in range(2000):
        t = time.perf_counter()
        assert await ledger.entry(f"absent-{i}") is None
        absent.append(time.perf_counter() - t)
    present = []
    for kind, name in sample(count, 200):
        t = time.perf_counter()
        if kind == "answered":
            assert await ledger.answered(name)
        else:
            assert await ledger.entry(name) is not None
        present.append(time.perf_counter() - t)
    out["lookup_absent_us"] = _percentiles(absent)
    out["lookup_present_us"] = _percentiles(present)
    await ledger.close()
    # The next start on the same disk: the index is reused from its checkpoint.
    t = time.monotonic()
    again = _ledger(kafka, topic, state_dir)
    report = await again.restore()
    out["resume_seconds"] = time.monotonic() - t
    out["resumed"] = report.resumed
    await again.close()
    return out


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6, 1)

    return {"p50": at(0.5), "p99": at(0.99)}


def child(method: str, bootstrap: str, topic: str, count: int) -> None:
    """Entry of a measuring process: one JSON line on stdout."""
    print(json.dumps(asyncio.run(measure(method, bootstrap, topic, count))), flush=True)


def run_child(method: str, bootstrap: str, topic: str, count: int) -> dict[str, Any]:
    """One measurement in a fresh interpreter."""
    say(f"{method} restore of {count:,} keys ...")
    command = [sys.executable, "-m", "benchmarks.bench_ledger", "--measure", method]
    proc = subprocess.run(
        [*command, bootstrap, topic, str(count)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{method} at {count} failed:\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    rate = result["records"] / result["seconds"]
    say(
        f"{method} {count:,}: {result['seconds']:.1f} s ({rate:,.0f} keys/s), retained "
        f"{result['retained_kib'] / 1024:.0f} MiB, peak {result['peak_kib'] / 1024:.0f} MiB"
    )
    return result


# -- the report ---------------------------------------------------------------------------------


def print_report(rows: list[dict[str, Any]]) -> None:
    """The table and the ratios against the baseline."""
    print()
    print(
        "| keys | method | restore s | keys/s | retained MiB | B/key | peak MiB | "
        "peak B/key | index on disk B/key | disk peak B/key | resume s | longest loop stall ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        keys = r["keys"]
        disk = f"{r['index_bytes'] / keys:.1f}" if "index_bytes" in r else "-"
        disk_peak = f"{r['disk_peak_bytes'] / keys:.0f}" if "index_bytes" in r else "-"
        resume = f"{r['resume_seconds']:.2f}" if "resume_seconds" in r else "-"
        print(
            f"| {keys:,} | {r['method']} | {r['seconds']:.1f} | {keys / r['seconds']:,.0f} | "
            f"{r['retained_kib'] / 1024:.0f} | {r['retained_kib'] * 1024 / keys:.0f} | "
            f"{r['peak_kib'] / 1024:.0f} | {r['peak_kib'] * 1024 / keys:.0f} | {disk} | "
            f"{disk_peak} | {resume} | {r['loop_stall_max_ms']:.0f} |"
        )
    for r in rows:
        if "lookup_absent_us" in r:
            print(
                f"\nlook-ups at {r['keys']:,} keys: absent key p50/p99 "
                f"{r['lookup_absent_us']['p50']}/{r['lookup_absent_us']['p99']} µs (index only), "
                f"present key {r['lookup_present_us']['p50']}/{r['lookup_present_us']['p99']} µs "
                "(index + read back from the topic)"
            )
    by = {(r["method"], r["keys"]): r for r in rows}
    for (method, keys), base in sorted(by.items()):
        if method != "dict" or ("index", keys) not in by:
            continue
        new = by[("index", keys)]
        mem = (new["retained_kib"] / keys) / (base["retained_kib"] / keys)
        peak = new["peak_kib"] / base["peak_kib"]
        speed = base["seconds"] / new["seconds"]
        print(
            f"\nat {keys:,} keys, index against the dict baseline: retained memory x{mem:.3f}, "
            f"peak memory x{peak:.3f}, restore {speed:.1f}x as fast"
        )


async def prepare(bootstrap: str, sizes: list[int]) -> dict[int, str]:
    """The ledger topics, written where missing."""
    return {n: await ensure_ledger(bootstrap, n) for n in sizes}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_ledger", description=__doc__)
    p.add_argument("--keys", default="1000000,5000000", help="ledger sizes, comma-separated")
    p.add_argument(
        "--baseline-keys",
        type=int,
        default=1_000_000,
        help="run the dict baseline up to this size (it needs ~2.7 KB of memory per key)",
    )
    p.add_argument("--data-dir", help="keep the broker's data here (reused by the next run)")
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    p.add_argument("--measure", nargs=4, metavar=("METHOD", "BOOTSTRAP", "TOPIC", "KEYS"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.measure:
        method, bootstrap, topic, count = args.measure
        child(method, bootstrap, topic, int(count))
        return 0
    sizes = [int(n) for n in args.keys.split(",") if n]
    with contextlib.ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if bootstrap:
            say(f"using the broker at KAFKA_BOOTSTRAP_SERVERS={bootstrap}")
        else:
            say("starting a local Kafka broker (LocalKafka)")
            kafka = stack.enter_context(
                LocalKafka(data_dir=args.data_dir, progress=lambda m: say(f"kafka: {m}"))
            )
            bootstrap = kafka.bootstrap_servers
        topics = asyncio.run(prepare(bootstrap, sizes))
        rows = []
        for n in sizes:
            rows.append(run_child("scan", bootstrap, topics[n], n))
            if n <= args.baseline_keys:
                rows.append(run_child("dict", bootstrap, topics[n], n))
            rows.append(run_child("index", bootstrap, topics[n], n))
    print_report(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
        print(f"\nJSON written to {args.json}")
    print(f"\ntotal run time {time.monotonic() - _T0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
