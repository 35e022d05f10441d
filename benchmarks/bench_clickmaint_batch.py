"""Workbridge benchmark: Click Maint commands coalesced into its batch endpoint.

    .venv/bin/python -m benchmarks.bench_clickmaint_batch [--commands 1000]
        [--max-ops 20 100] [--concurrency N] [--json out.json]

One real Kafka broker (a LocalKafka unless KAFKA_BOOTSTRAP_SERVERS is set), the fake Click
Maint with the documented limit (300 requests in any 5 minutes, answered 429 beyond, with
`X-RateLimit-Remaining`/`Reset`) and three entities, and one `workbridge run` process with
no `rate_limit` in its config (the documented budget). A backlog of mixed commands (creates
and updates of work orders, assets and parts, part restocks and adjustments, spread over the
entities) is on the commands topic before the process starts; polling of two resources per
entity runs beside it.

At 300 requests per 5 minutes, 1,000 commands sent one request each take over 15 minutes;
in batches of up to `max_ops` they need 1,000 / max_ops requests and drain in seconds. Each
`--max-ops` setting is one run (`options.batch.max_ops`, a fresh fake and topic prefix).
`--concurrency` sets `commands.concurrency` (default: not set, as an operator gets it): a
batch holds only calls in flight at once, and only those of one entity. A baseline run
(left out with `--no-baseline`) repeats the largest `max_ops` with `batch.chain_subjects`
off (one command per record per batch), side by side in the same run.

Reported per run: commands per API call (the commands' ops over the requests they went in:
batch requests and calls sent alone), the time to drain (first vendor request to the last
result on the results topic), the 429 answers, and each command's single result by status.
Goals: at least 50 commands per API call at `max_ops` 100 (the largest setting), no 429, one
result for every command and none other, every record as its last command left it (a
subject's commands applied in order, each once), all drained in under a minute. The exit code is 1
when a goal is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from adapters.clickmaint.fake import FakeClickMaint
from adapters.config import parse_config
from adapters.core.cloudevents_codec import from_record
from adapters.core.kafka import Topics, ensure_topics
from adapters.core.record_limits import max_record_bytes
from adapters.localkafka.launcher import LocalKafka
from adapters.settings import CommandsConfig
from tests.integration.conftest import publish_commands
from tests.process_cluster import Cluster

API_KEY = "bench-api-key"
NAME = "cm"
P = "workbridge.clickmaint"
LIMIT, WINDOW_S = 300, 300.0  # Click Maint's public page (FIELD-NOTES), the fake's default
ENTITIES: list[dict[str, Any]] = [
    {"id": 1, "name": "Main Facility"},
    {"id": 2, "name": "North Plant"},
    {"id": 3, "name": "South Depot"},
]
PARTITIONS = 3
CONCURRENCY_DEFAULT = CommandsConfig().concurrency
GOAL_PER_CALL = 50.0
GOAL_DRAIN_S = 60.0
# The mix of 1,000 commands (scaled to --commands).
MIX = {
    "work_order.create": 150,
    "work_order.update": 150,
    "asset.create": 100,
    "asset.update": 100,
    "part.create": 100,
    "part.update": 100,
    "part.restock": 150,
    "part.adjust": 150,
}


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def seed(fake: FakeClickMaint) -> dict[int, dict[str, list[int]]]:
    """Records to update in every entity: work orders, assets, parts (well stocked)."""
    made: dict[int, dict[str, list[int]]] = {}
    for entity in ENTITIES:
        eid = entity["id"]
        made[eid] = {
            "work_orders": [
                fake.create_record(eid, "work_orders", {"title": f"WO {eid}-{i}"})["id"]
                for i in range(60)
            ],
            "assets": [
                fake.create_record(eid, "assets", {"name": f"Asset {eid}-{i}"})["id"]
                for i in range(40)
            ],
            "parts": [
                fake.create_record(
                    eid, "parts", {"name": f"Part {eid}-{i}", "on_hand_qty": 10_000}
                )["id"]
                for i in range(40)
            ],
        }
    return made


def backlog(n: int, made: dict[int, dict[str, list[int]]]) -> list[tuple[str, Any, str]]:
    """`n` commands in the mix, shuffled: (type, data, subject)."""
    rng = random.Random(7)
    scale = n / sum(MIX.values())
    counts = {kind: round(count * scale) for kind, count in MIX.items()}
    counts["part.adjust"] += n - sum(counts.values())
    out: list[tuple[str, Any, str]] = []
    serial = 0
    for kind, count in counts.items():
        resource, action = kind.split(".")
        for _ in range(count):
            serial += 1
            entity = rng.choice(ENTITIES)["id"]
            pool = made[entity][f"{resource}s"]
            data: dict[str, Any] = {"entity_id": entity}
            if action == "create":
                data["title" if resource == "work_order" else "name"] = f"new {serial}"
                subject = f"{resource}/new-{serial}"
            else:
                target = rng.choice(pool)
                subject = f"{resource}/{target}"
                data["id"] = target
                if action == "update" and resource == "work_order":
                    data |= {"title": f"WO changed {serial}", "priority": "high"}
                elif action == "update":
                    data |= {"description": f"changed {serial}"}
                elif action == "restock":
                    data |= {"quantity": 5, "cost": 26.15, "note": f"PO-{serial}"}
                else:
                    data |= {"quantity": -2, "note": f"count {serial}"}
            out.append((f"{P}.{kind}", data, subject))
    rng.shuffle(out)
    return out


def instance(
    base_url: str, workdir: Path, max_ops: int, concurrency: int | None, chain: bool = True
) -> dict[str, Any]:
    (workdir / "api_key").write_text(API_KEY + "\n")
    commands: dict[str, Any] = {"enabled": True, "deadline_s": 900}
    if concurrency is not None:
        commands["concurrency"] = concurrency
    return {
        "vendor": "clickmaint",
        "name": NAME,
        "base_url": base_url,
        "api_key_file": str(workdir / "api_key"),
        "webhooks": {"enabled": False},
        "polling": {"enabled": True, "resources": ["assets", "parts"], "interval_s": 60},
        "commands": commands,
        "options": {
            "entities": [e["id"] for e in ENTITIES],
            "batch": {"max_ops": max_ops, "chain_subjects": chain},
        },
    }


async def collect_results(
    bootstrap: str, topic: str, want: set[str], deadline_s: float
) -> tuple[dict[str, list[dict[str, Any]]], float | None]:
    """Results by command id, and the (wall clock) time the last one was written."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: dict[str, list[dict[str, Any]]] = {}
    last: float | None = None
    try:
        deadline = time.monotonic() + deadline_s
        settle_until: float | None = None
        while time.monotonic() < (settle_until or deadline):
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    event = from_record(record.key, record.value, list(record.headers))
                    cid = event.get_attributes()["commandid"]
                    data = event.get_data()
                    assert isinstance(data, dict), data
                    found.setdefault(cid, []).append(data)
                    written = record.timestamp / 1000  # set by the bridge's producer
                    last = written if last is None else max(last, written)
            if settle_until is None and want <= set(found):
                settle_until = time.monotonic() + 3.0  # a second result would show here
    finally:
        await consumer.stop()
    return found, last


async def run_one(
    bootstrap: str, n: int, max_ops: int, concurrency: int | None, root: Path, chain: bool = True
) -> dict[str, Any]:
    prefix = f"benchcm{uuid.uuid4().hex[:8]}"
    fake = FakeClickMaint(api_key=API_KEY, entities=ENTITIES)
    assert (fake.behaviour.rate_limit_requests, fake.behaviour.rate_limit_window_s) == (
        LIMIT,
        WINDOW_S,
    )
    made = seed(fake)
    await fake.start()
    assert fake.base_url is not None
    workdir = root / f"max-ops-{max_ops}{'' if chain else '-unchained'}"
    workdir.mkdir(parents=True, exist_ok=True)
    inst = instance(fake.base_url, workdir, max_ops, concurrency, chain)
    cluster = Cluster(workdir, bootstrap, prefix, [inst], size=1, partitions=PARTITIONS)
    topics = Topics(prefix, NAME)
    try:
        # The topics first, then the backlog, then the process: it starts on a full topic.
        config = parse_config(
            {
                "kafka": {
                    "bootstrap_servers": bootstrap,
                    "topic_prefix": prefix,
                    "topics": {"partitions": PARTITIONS, "replication_factor": 1},
                },
                "instances": [inst],
            }
        )
        await ensure_topics(
            config.kafka, [topics], max_record_bytes=max_record_bytes(config.server.max_body_bytes)
        )
        commands = backlog(n, made)
        ids = await publish_commands(
            bootstrap, prefix, commands, instance=NAME, source="/benchmarks/clickmaint-batch"
        )
        say(f"max_ops {max_ops}: {len(ids)} commands on {topics.commands}; starting the process")
        cluster.start(0)
        await cluster.wait_ready(0)
        found, last = await collect_results(bootstrap, topics.results, set(ids), deadline_s=900)
    finally:
        await cluster.stop_all()
        await fake.stop()
    kinds = Counter(type_.removeprefix(f"{P}.") for type_, _, _ in commands)
    order_broken = out_of_order(fake, commands)
    requests = [r for r in fake.requests if r.batch_op is None]
    ops = [r for r in fake.requests if r.batch_op is not None]
    batch_path = fake.behaviour.batch_path
    batch_requests = [r for r in requests if r.path == batch_path]
    alone = [r for r in requests if r.method != "GET" and r.path != batch_path]
    command_calls = len(batch_requests) + len(alone)
    command_ops = len(ops) + len(alone)
    # The fake logs monotonic times; results carry the wall clock of this machine.
    to_wall = time.time() - time.monotonic()
    first = min(r.at for r in requests) + to_wall if requests else None
    sizes = sorted(len(batch) for batch in batches(fake.requests, batch_path))
    single = [cid for cid in ids if len(found.get(cid, [])) == 1]
    statuses = Counter(found[cid][0]["status"] for cid in single)
    return {
        "max_ops": max_ops,
        "chain_subjects": chain,
        "concurrency": concurrency or CONCURRENCY_DEFAULT,
        "commands": len(ids),
        "mix": dict(kinds),
        "vendor_requests": len(requests),
        "poll_requests": len([r for r in requests if r.method == "GET"]),
        "command_requests": command_calls,
        "batch_requests": len(batch_requests),
        "sent_alone": len(alone),
        "command_ops": command_ops,
        "commands_per_call": command_ops / command_calls if command_calls else 0.0,
        "budget_used": len(requests) / LIMIT,
        "batch_sizes": [len(batch) for batch in batches(fake.requests, batch_path)],
        "largest_batch": sizes[-1] if sizes else 0,
        "median_batch": sizes[len(sizes) // 2] if sizes else 0,
        "drain_s": (last - first) if last is not None and first is not None else None,
        "rejected_429": fake.rejected_429,
        "max_in_any_window": fake.max_requests_in_any_window(WINDOW_S),
        "results": sum(len(v) for v in found.values()),
        "one_result_each": len(single) == len(ids) and set(found) == set(ids),
        "result_statuses": dict(statuses),
        "writes_at_vendor": len(fake.calls),
        "order_broken": order_broken,
    }


def out_of_order(fake: FakeClickMaint, commands: list[tuple[str, Any, str]]) -> list[str]:
    """Records whose final state is not their last command's (a subject's order broken).

    Work orders and assets keep the field their last update set; a part's stock is the sum
    of its restocks and adjustments (order-free, but each applied exactly once)."""
    last: dict[tuple[int, str, int], tuple[str, Any]] = {}
    stock: Counter[tuple[int, int]] = Counter()
    for type_, data, _subject in commands:
        kind = type_.removeprefix(f"{P}.")
        entity, target = data["entity_id"], data.get("id")
        if kind == "work_order.update":
            last[(entity, "work_orders", target)] = ("title", data["title"])
        elif kind in ("asset.update", "part.update"):
            last[(entity, f"{kind.split('.')[0]}s", target)] = ("description", data["description"])
        elif kind in ("part.restock", "part.adjust"):
            stock[(entity, target)] += data["quantity"]
    broken = [
        f"{resource}/{rid}@{entity}: {field} {got!r}, last command set {want!r}"
        for (entity, resource, rid), (field, want) in last.items()
        for got in [(fake.get_record(entity, resource, rid) or {}).get(field)]
        if got != want
    ]
    for (entity, rid), change in stock.items():
        got = (fake.get_record(entity, "parts", rid) or {}).get("on_hand_qty")
        if got != 10_000 + change:
            broken.append(f"part/{rid}@{entity}: on_hand_qty {got!r}, want {10_000 + change}")
    return broken


def batches(log: list[Any], path: str) -> list[list[Any]]:
    """The ops of each batch request, as the fake logs them (its ops, then the batch)."""
    out: list[list[Any]] = []
    ops: list[Any] = []
    for entry in log:
        if entry.batch_op is not None:
            ops.append(entry)
        elif entry.path == path:
            out.append(ops)
            ops = []
    return out


def goals(report: dict[str, Any], largest: int) -> list[str]:
    """The goals a run missed (none: all met)."""
    missed = []
    goal_run = report["max_ops"] == largest and report["chain_subjects"]
    if goal_run and report["commands_per_call"] < GOAL_PER_CALL:
        missed.append(f"commands per API call {report['commands_per_call']:.1f} < 50")
    if report["rejected_429"]:
        missed.append(f"{report['rejected_429']} x 429")
    if report["order_broken"]:
        missed.append(f"{len(report['order_broken'])} records not as their last command left them")
    if not report["one_result_each"]:
        missed.append("not exactly one result per command")
    if report["drain_s"] is None or report["drain_s"] >= GOAL_DRAIN_S:
        missed.append(f"drain {report['drain_s']} s (goal < {GOAL_DRAIN_S:.0f} s)")
    return missed


async def run(args: argparse.Namespace, bootstrap: str) -> list[dict[str, Any]]:
    root = Path(tempfile.mkdtemp(prefix="wb-cm-batch-"))
    say(f"process logs in {root}")
    reports = []
    runs = [(max_ops, True) for max_ops in args.max_ops]
    if args.baseline:
        runs.append((max(args.max_ops), False))
    for max_ops, chain in runs:
        report = await run_one(bootstrap, args.commands, max_ops, args.concurrency, root, chain)
        say(
            f"max_ops {max_ops}{'' if chain else ' unchained'}: "
            f"{report['commands_per_call']:.1f} commands per API call "
            f"({report['command_ops']} in {report['command_requests']}), drained in "
            f"{report['drain_s'] or float('nan'):.1f} s, {report['rejected_429']} x 429"
        )
        reports.append(report)
    return reports


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=1000)
    parser.add_argument("--max-ops", type=int, nargs="+", default=[20, 100])
    parser.add_argument(
        "--concurrency",
        type=int,
        help="commands.concurrency (default: not set: twice max_ops for a batching vendor)",
    )
    parser.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="leave out the baseline run (the largest max_ops with batch.chain_subjects off)",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            kafka = stack.enter_context(LocalKafka(progress=lambda m: say(f"kafka: {m}")))
            bootstrap = kafka.bootstrap_servers
        reports = asyncio.run(run(args, bootstrap))
    print(json.dumps(reports, indent=2))
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))
    largest = max(args.max_ops)
    failed = False
    chained = {r["max_ops"]: r for r in reports if r["chain_subjects"]}
    for report in reports:
        missed = goals(report, largest)
        failed = failed or bool(missed)
        ratio = ""
        if not report["chain_subjects"] and report["commands_per_call"]:
            with_chain = chained[report["max_ops"]]["commands_per_call"]
            ratio = f" (chained / unchained: {with_chain / report['commands_per_call']:.2f})"
        print(
            f"max_ops {report['max_ops']}{'' if report['chain_subjects'] else ' unchained'}"
            f"{ratio}: {report['commands_per_call']:.1f} commands per API "
            f"call, drain {report['drain_s'] or float('nan'):.1f} s, "
            f"{report['rejected_429']} x 429, results {report['result_statuses']}: "
            + ("ok" if not missed else "GOAL MISSED: " + "; ".join(missed))
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
