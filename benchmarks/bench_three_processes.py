"""Workbridge benchmark: three `workbridge run` processes through a SIGKILL, a restart and a
SIGTERM, under load, against the same load undisturbed and on one process.

    .venv/bin/python -m benchmarks.bench_three_processes [--seconds 90] [--rate 6]
        [--limit 20 --window 2 | --documented] [--processes 3] [--no-baseline]
        [--json out.json]

The scenario of tests/integration/test_three_processes.py at a larger scale. One real
Kafka broker (a LocalKafka unless KAFKA_BOOTSTRAP_SERVERS is set), the fake MOCO with a
rate limit (`--limit` requests in any `--window` seconds, 429 beyond; default the test's
20 per 2 s, `--documented` for MOCO's 15 per 15 s), and `--processes` processes polling
seven resources (records change every 3 s) while `company.create` commands arrive at
`--rate` per second for `--seconds`: more than the budget serves, so that the deployment
runs at its limit. At 20 % of the span process p0 is SIGKILLed (with the next `--limit`
answers held 1 s, so that it dies with calls in flight), started again once its work
moved (at 40 % at the earliest), and at 65 % p1 is SIGTERMed.

The baselines, in the same run: the same load on as many processes, nothing killed, and on
one process.

Reported per run: the share of the budget used during the span (vendor requests / the
budget's requests in the span), 429 answers, the most requests in any window, the time
from each disruption to the first result of every command partition and to the first
listing of every resource, results per command (missing, duplicates), statuses, commands'
latency, and events (duplicate ids, ids that are not the change's, versions never
published). The exit code is 1 when a guarantee fails: a 429, a window over the limit, a
command without exactly one result or carried out twice, more `ambiguous` results than
the killed process could have had in flight, a duplicate or wrong event id, a version not
published, a takeover slower than its bound (tests/integration/three_proc.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import statistics
import tempfile
import time
import uuid
from collections import Counter
from math import inf
from pathlib import Path
from typing import Any

from adapters.core.kafka import Topics
from adapters.localkafka.launcher import LocalKafka
from adapters.moco.fake import FakeMoco
from benchmarks.bench_budget_drain import API_KEY, SECRET, say
from tests.integration.conftest import ce
from tests.integration.three_proc import (
    CommandSender,
    TopicTail,
    command_takeover_s,
    first_after,
    poll_takeover_s,
    record_wall,
    version_id,
)
from tests.process_cluster import Cluster, total

RESOURCES = ["projects", "companies", "activities", "users", "deals", "offers", "invoices"]
PARTITIONS = 4  # commands and cursors: each of three processes gets work of both
CONCURRENCY = 4  # commands.concurrency: what a SIGKILLed process can leave in flight
POLL_SHARE = 0.5  # polling.max_budget_share (the default)
CHANGE_EVERY_S = 3.0


def instance(args: argparse.Namespace, base_url: str, workdir: Path) -> dict[str, Any]:
    (workdir / "api_key").write_text(API_KEY + "\n")
    raw: dict[str, Any] = {
        "vendor": "moco",
        "name": "moco",
        "base_url": base_url,
        "api_key_file": str(workdir / "api_key"),
        "webhook_secret": SECRET,
        "webhooks": {"enabled": False},
        "polling": {
            "enabled": True,
            "resources": RESOURCES,
            "interval_s": 1,
            "max_budget_share": POLL_SHARE,
        },
        "commands": {"enabled": True, "deadline_s": 3600, "concurrency": CONCURRENCY},
    }
    if not args.documented:
        raw["rate_limit"] = {
            "requests": args.limit,
            "per_seconds": args.window,
            "above_documented": True,
        }
    return raw


def percentile(values: list[float], q: float) -> float:
    if not values:
        return inf
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def until_true(what: Any, wait_s: float, every_s: float = 0.3) -> bool:
    deadline = time.monotonic() + wait_s
    while not await what():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every_s)
    return True


async def sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


async def scenario(
    args: argparse.Namespace, bootstrap: str, processes: int, disrupt: bool
) -> dict[str, Any]:
    label = f"{processes} process{'es' if processes > 1 else ''}"
    if processes > 1 and not disrupt:
        label += ", undisturbed"
    limit, window = args.limit, args.window
    span = args.seconds
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    fake = FakeMoco(api_key=API_KEY, webhook_secret=SECRET, rate_limit=(limit, window))
    await fake.start()
    assert fake.base_url is not None
    versions: set[str] = set()
    for resource in RESOURCES:
        for i in range(4):
            versions.add(version_id(resource, fake.create_record(resource, {"name": f"r{i}"})))
    workdir = Path(tempfile.mkdtemp(prefix="wb-three-"))
    cluster = Cluster(
        workdir,
        bootstrap,
        prefix,
        [instance(args, fake.base_url, workdir)],
        size=processes,
        partitions=PARTITIONS,
    )
    topics = Topics(prefix, "moco")
    results_tail = TopicTail(bootstrap, topics.results)
    events_tail = TopicTail(bootstrap, topics.events)
    sender = CommandSender(bootstrap, prefix, 1.0 / args.rate, source="/benchmarks/three")
    moments: list[tuple[str, float, float]] = []
    sending: dict[str, bool] = {}
    code = 0
    began = time.monotonic()

    def listings(resource: str) -> list[float]:
        path = fake.behaviour.resource_paths[resource]
        return [e.at for e in fake.requests if e.method == "GET" and e.path.endswith(path)]

    def mark(what: str) -> None:
        sending[what] = sender.sending()
        moments.append((what, time.monotonic(), time.time()))
        say(f"{label}: {what} at {time.monotonic() - began:.0f}s")

    async def served_since_last() -> bool:
        records = await results_tail.read_to_end()
        times = [(ce(r).get_attributes()["commandid"], record_wall(r)) for r in records]
        served = first_after(times, sender.partition_of(), moments[-1][2])
        return set(served) == set(range(PARTITIONS))

    async def moved_on() -> bool:
        at = moments[-1][1]
        listed = all(any(t >= at for t in listings(r)) for r in RESOURCES)
        return listed and await served_since_last()

    async def progress() -> None:
        while True:
            await asyncio.sleep(args.progress_s)
            elapsed = time.monotonic() - began
            n = len(fake.arrival_times)
            say(
                f"{label} {elapsed:5.0f}s: {len(sender.sent)} commands sent, "
                f"{len(await results_tail.read_to_end())} results, {n} vendor requests "
                f"({n / max(1.0, limit * elapsed / window):.0%} of the budget so far), "
                f"{fake.rejected_429} x 429, up: "
                f"{''.join('+' if m.alive else '-' for m in cluster.members)}"
            )

    async def changes() -> None:
        index = 0
        while True:
            await asyncio.sleep(CHANGE_EVERY_S)
            index += 1
            for resource in RESOURCES:
                record = fake.records(resource)[index % 4]
                changed = fake.update_record(resource, record["id"], {"name": f"v{index}"})
                versions.add(version_id(resource, changed))

    background: list[asyncio.Task[None]] = []
    try:
        say(f"{label}: starting (logs in {workdir})")
        await cluster.start_all()
        await results_tail.start()
        await events_tail.start()
        began = time.monotonic()
        sender.start()
        background = [asyncio.create_task(progress()), asyncio.create_task(changes())]
        drain: asyncio.Task[int] | None = None
        if disrupt:
            await sleep_until(began + 0.2 * span)
            fake.delay_next(limit, 1.0)  # calls in flight at the kill
            await asyncio.sleep(0.5)
            mark("kill")
            cluster.kill(0)
            await until_true(moved_on, 120)
            await sleep_until(began + 0.4 * span)
            mark("restart")
            cluster.start(0)
            await cluster.wait_ready(0)

            async def restarted() -> bool:
                samples = await cluster.metrics(0)
                return total(samples.get("workbridge_vendor_requests_total", {})) > 0

            await until_true(restarted, 120)
            await until_true(moved_on, 120)
            await sleep_until(began + 0.65 * span)
            mark("term")
            drain = asyncio.create_task(cluster.terminate(1))
        await sleep_until(began + span)
        sent = await sender.stop()
        if drain is not None:
            code = await drain
        ids = {s.command_id for s in sent}
        say(f"{label}: load over, {len(sent)} commands sent; waiting for every result")
        await results_tail.until(
            lambda rs: ids <= {ce(r).get_attributes()["commandid"] for r in rs},
            wait_s=args.drain_wait_s,
            settle_s=0,
        )
        for task in background:
            task.cancel()
        drained_at = time.monotonic()
        versions.update(version_id("companies", r) for r in fake.records("companies"))

        def current() -> set[str]:
            return {version_id(res, r) for res in RESOURCES for r in fake.records(res)}

        say(f"{label}: every result in; waiting for every record's last version")
        await events_tail.until(
            lambda rs: current() <= {ce(r).get_attributes()["id"] for r in rs},
            wait_s=120,
            settle_s=2.0,
        )
        records = await results_tail.read_to_end()  # >= 2 s after the last result came
        event_records = list(events_tail.records)
        current_versions = current()
    finally:
        for task in background:
            task.cancel()
        await results_tail.stop()
        await events_tail.stop()
        await cluster.stop_all()
        await fake.stop()

    partition_of = sender.partition_of()
    results = [ce(r) for r in records]
    by_command = Counter(r.get_attributes()["commandid"] for r in results)
    statuses = Counter(r.get_data()["status"] for r in results)
    walls = {s.command_id: s.wall for s in sent}
    latency = [
        record_wall(rec) - walls[r.get_attributes()["commandid"]]
        for r, rec in zip(results, records, strict=True)
        if r.get_attributes()["commandid"] in walls
    ]
    names = Counter(r["name"] for r in fake.records("companies"))
    in_span = [t for t in fake.arrival_times if began <= t < began + span]
    # The budget used between the disruptions (whole windows' worth of each stretch).
    cuts = [("start", began), *((what, at) for what, at, _ in moments), ("end", began + span)]
    by_phase = {
        f"{a}-{b}": sum(1 for t in in_span if t0 <= t < t1) / (limit * (t1 - t0) / window)
        for (a, t0), (b, t1) in itertools.pairwise(cuts)
        if t1 > t0
    }
    event_ids = Counter(ce(r).get_attributes()["id"] for r in event_records)
    times = [
        (r.get_attributes()["commandid"], record_wall(rec))
        for r, rec in zip(results, records, strict=True)
    ]
    served = {what: first_after(times, partition_of, wall) for what, _, wall in moments}
    listed = {
        what: {r: min((t - at for t in listings(r) if t >= at), default=inf) for r in RESOURCES}
        for what, at, _ in moments
    }
    return {
        "label": label,
        "processes": processes,
        "seconds": span,
        "rate": args.rate,
        "limit": limit,
        "window_s": window,
        "commands": len(sent),
        "vendor_requests_in_span": len(in_span),
        "budget_used": len(in_span) / (limit * span / window),
        "budget_used_by_phase": {k: round(v, 3) for k, v in by_phase.items()},
        "rejected_429": fake.rejected_429,
        "max_in_any_window": fake.max_requests_in_any_window(window),
        "results": len(results),
        "missing": len(ids - set(by_command)),
        "duplicates": sum(n - 1 for n in by_command.values() if n > 1),
        "statuses": dict(statuses),
        "carried_out_twice": sum(1 for s in sent if names[sender.name(s.index)] > 1),
        "succeeded_not_carried_out": sum(
            1
            for r in results
            if r.get_data()["status"] == "succeeded"
            and names[r.get_data()["response"]["name"]] != 1
        ),
        "latency_p50_s": percentile(latency, 0.5),
        "latency_p99_s": percentile(latency, 0.99),
        "results_per_s": len(results) / (drained_at - began),
        "events": len(event_records),
        "duplicate_event_ids": sum(n - 1 for n in event_ids.values() if n > 1),
        "unknown_event_ids": len(set(event_ids) - versions),
        "versions_not_published": len(current_versions - set(event_ids)),
        "under_load": sending,
        "drain_exit_code": code,
        "first_result_s": {
            w: {str(p): round(s, 2) for p, s in sorted(f.items())} for w, f in served.items()
        },
        "first_listing_s": {
            w: {r: round(s, 2) for r, s in sorted(f.items())} for w, f in listed.items()
        },
        "command_takeover_bound_s": command_takeover_s(window),
        "poll_takeover_bound_s": poll_takeover_s(
            limit, window, len(RESOURCES), POLL_SHARE, max(1, processes)
        ),
        "mean_latency_s": statistics.fmean(latency) if latency else inf,
    }


def failures(report: dict[str, Any], kills: int) -> list[str]:
    """The guarantees this run broke (empty: none)."""
    out: list[str] = []
    checks = [
        (report["rejected_429"] == 0, f"{report['rejected_429']} x 429"),
        (
            report["max_in_any_window"] <= report["limit"],
            f"{report['max_in_any_window']} requests in a window (limit {report['limit']})",
        ),
        (report["missing"] == 0, f"{report['missing']} commands without a result"),
        (report["duplicates"] == 0, f"{report['duplicates']} duplicate results"),
        (report["carried_out_twice"] == 0, f"{report['carried_out_twice']} carried out twice"),
        (
            report["succeeded_not_carried_out"] == 0,
            f"{report['succeeded_not_carried_out']} succeeded but not at the vendor once",
        ),
        (
            report["statuses"].get("ambiguous", 0) <= kills * CONCURRENCY,
            f"{report['statuses'].get('ambiguous', 0)} ambiguous (at most {kills * CONCURRENCY})",
        ),
        (
            set(report["statuses"]) <= {"succeeded", "ambiguous"},
            f"statuses {report['statuses']}",
        ),
        (
            report["duplicate_event_ids"] == 0,
            f"{report['duplicate_event_ids']} duplicate event ids",
        ),
        (report["unknown_event_ids"] == 0, f"{report['unknown_event_ids']} events with a wrong id"),
        (
            report["versions_not_published"] == 0,
            f"{report['versions_not_published']} record versions never published",
        ),
        (all(report["under_load"].values()), f"not under load at {report['under_load']}"),
        (report["drain_exit_code"] == 0, f"drained process exited {report['drain_exit_code']}"),
    ]
    out += [message for ok, message in checks if not ok]
    for what, firsts in report["first_result_s"].items():
        late = {p: s for p, s in firsts.items() if s > report["command_takeover_bound_s"]}
        if len(firsts) < PARTITIONS or late:
            out.append(f"command partitions after {what}: {firsts}")
    for what, firsts in report["first_listing_s"].items():
        late = {r: s for r, s in firsts.items() if s > report["poll_takeover_bound_s"]}
        if late:
            out.append(f"listings after {what}: late {late}")
    return out


def show(report: dict[str, Any]) -> None:
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(report["statuses"].items()))
    print(
        f"\n{report['label']}: {report['commands']} commands at {report['rate']}/s for "
        f"{report['seconds']:.0f}s, budget {report['limit']} per {report['window_s']:g}s\n"
        f"  budget used {report['budget_used']:.1%} ({report['vendor_requests_in_span']} "
        f"requests), 429s {report['rejected_429']}, most in a window "
        f"{report['max_in_any_window']}/{report['limit']}; by phase "
        f"{ {k: f'{v:.0%}' for k, v in report['budget_used_by_phase'].items()} }\n"
        f"  results {report['results']} ({statuses}), missing {report['missing']}, "
        f"duplicates {report['duplicates']}, carried out twice {report['carried_out_twice']}; "
        f"latency p50 {report['latency_p50_s']:.1f}s p99 {report['latency_p99_s']:.1f}s; "
        f"{report['results_per_s']:.2f} results/s\n"
        f"  events {report['events']}: duplicate ids {report['duplicate_event_ids']}, wrong ids "
        f"{report['unknown_event_ids']}, versions not published "
        f"{report['versions_not_published']}"
    )
    for what, firsts in report["first_result_s"].items():
        listing = report["first_listing_s"][what]
        print(
            f"  after {what}: first result per command partition {firsts} "
            f"(bound {report['command_takeover_bound_s']:.0f}s); slowest first listing "
            f"{max(listing.values()):.1f}s ({max(listing, key=listing.__getitem__)}, bound "
            f"{report['poll_takeover_bound_s']:.0f}s)"
        )


async def run(args: argparse.Namespace, bootstrap: str) -> dict[str, Any]:
    reports = {"disrupted": await scenario(args, bootstrap, args.processes, disrupt=True)}
    if args.baseline:
        reports["undisturbed"] = await scenario(args, bootstrap, args.processes, disrupt=False)
        reports["one"] = await scenario(args, bootstrap, 1, disrupt=False)
    return reports


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=90.0, help="load span")
    parser.add_argument("--rate", type=float, default=6.0, help="commands per second")
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument(
        "--documented", action="store_true", help="MOCO's documented 15 per 15 s, no rate_limit"
    )
    parser.add_argument("--no-baseline", dest="baseline", action="store_false")
    parser.add_argument("--drain-wait-s", type=float, default=600.0)
    parser.add_argument("--progress-s", type=float, default=10.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.documented:
        args.limit, args.window = 15, 15.0
    if args.processes < 2:
        parser.error("--processes: at least 2 (one is killed, one drained)")
    with contextlib.ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            kafka = stack.enter_context(LocalKafka(progress=lambda m: say(f"kafka: {m}")))
            bootstrap = kafka.bootstrap_servers
        reports = asyncio.run(run(args, bootstrap))
    for report in reports.values():
        show(report)
    if args.baseline:
        print()
        for a, b in (("disrupted", "undisturbed"), ("disrupted", "one"), ("undisturbed", "one")):
            x, y = reports[a], reports[b]
            print(
                f"{x['label']} / {y['label']}: budget used "
                f"{x['budget_used'] / y['budget_used']:.2f}, results/s "
                f"{x['results_per_s'] / y['results_per_s']:.2f}, latency p50 "
                f"{x['latency_p50_s'] / y['latency_p50_s']:.2f}"
            )
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))
    broken = [
        f"{report['label']}: {message}"
        for name, report in reports.items()
        for message in failures(report, kills=1 if name == "disrupted" else 0)
    ]
    for message in broken:
        print(f"GUARANTEE FAILED: {message}")
    print("every guarantee held" if not broken else f"{len(broken)} guarantee(s) failed")
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
