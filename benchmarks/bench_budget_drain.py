"""Workbridge benchmark: how much of MOCO's rate budget a deployment uses on a backlog.

    .venv/bin/python -m benchmarks.bench_budget_drain [--minutes 15] [--processes 2]
        [--restart kill|term|none] [--json out.json]

One real Kafka broker (a LocalKafka unless KAFKA_BOOTSTRAP_SERVERS is set), the fake MOCO
with its documented limit (15 requests in any 15 s, answered 429 beyond), and `--processes`
`workbridge run` processes with the defaults an operator gets: no `rate_limit` in the config
(the documented budget), nothing set per replica. A backlog of `company.create` commands
larger than the budget can serve is published first, and polling of two resources runs
alongside. Halfway through, one process is restarted (SIGKILL or SIGTERM, then started
again), as in a crash or a rolling update.

Reported, for the measured span (from the first vendor request, `--minutes` long):
- budget used: vendor requests / (15 x span / 15 s), the baseline being the documented
  budget itself (goal: at least 0.95);
- 429 answers (goal: 0), and the most requests the vendor saw in any 15 s window;
- commands answered, by status, and each command's single result.
The exit code is 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from adapters.core.kafka import Topics
from adapters.localkafka.launcher import LocalKafka
from adapters.moco.fake import FakeMoco
from tests.integration.conftest import Outgoing, ce, publish_commands, read_records
from tests.process_cluster import Cluster

API_KEY = "bench-api-key"
SECRET = "1d608b9d72219b90ff2393a1d3ee0ac0"
LIMIT, WINDOW_S = 15, 15.0  # MOCO's documented budget


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def backlog_commands(n: int) -> list[Outgoing]:
    return [
        (
            "workbridge.moco.company.create",
            {"name": f"Bench {i}", "type": "customer"},
            f"company/bench-{i}",
        )
        for i in range(n)
    ]


def instance(base_url: str, workdir: Path) -> dict[str, Any]:
    (workdir / "api_key").write_text(API_KEY + "\n")
    return {
        "vendor": "moco",
        "name": "moco",
        "base_url": base_url,
        "api_key_file": str(workdir / "api_key"),
        "webhook_secret": SECRET,
        "webhooks": {"enabled": False},
        "polling": {"enabled": True, "resources": ["projects", "users"], "interval_s": 60},
        "commands": {"enabled": True, "deadline_s": 3600},
    }


async def run(args: argparse.Namespace, bootstrap: str) -> dict[str, Any]:
    span = args.minutes * 60.0
    backlog = int(LIMIT * span / WINDOW_S * 1.3) + 50
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    fake = FakeMoco(api_key=API_KEY, webhook_secret=SECRET, rate_limit=(LIMIT, WINDOW_S))
    await fake.start()
    assert fake.base_url is not None
    workdir = Path(tempfile.mkdtemp(prefix="wb-drain-"))
    cluster = Cluster(
        workdir,
        bootstrap,
        prefix,
        [instance(fake.base_url, workdir)],
        size=args.processes,
        partitions=max(3, args.processes),
    )
    restart_at: float | None = None
    try:
        say(f"starting {args.processes} processes (logs in {workdir})")
        await cluster.start_all()
        say(f"publishing a backlog of {backlog} commands")
        await publish_commands(
            bootstrap,
            prefix,
            backlog_commands(backlog),
            source="/benchmarks/budget-drain",
            idempotency_keys=[f"drain-{i}" for i in range(backlog)],
        )
        while not fake.arrival_times:  # noqa: ASYNC110 (the fake has no event for it)
            await asyncio.sleep(0.1)
        began = fake.arrival_times[0]
        restarted = args.restart == "none"
        while time.monotonic() - began < span:
            await asyncio.sleep(5)
            elapsed = time.monotonic() - began
            n = sum(1 for t in fake.arrival_times if t - began < span)
            say(
                f"{elapsed:5.0f}s: {n} vendor requests "
                f"({n / max(1.0, LIMIT * elapsed / WINDOW_S):.1%} of the budget so far), "
                f"{fake.rejected_429} x 429"
            )
            if not restarted and elapsed >= span / 2:
                restarted = True
                restart_at = elapsed
                if args.restart == "kill":
                    say("SIGKILL p0, then start it again")
                    cluster.kill(0)
                else:
                    say("SIGTERM p0, then start it again")
                    await cluster.terminate(0)
                cluster.start(0)
                await cluster.wait_ready(0)
        results = await read_records(
            bootstrap, Topics(prefix, "moco").results, count=10**7, wait_s=5, settle=1
        )
    finally:
        await cluster.stop_all()
        await fake.stop()
    used = [t for t in fake.arrival_times if began <= t < began + span]
    possible = LIMIT * span / WINDOW_S
    statuses = Counter(ce(r).get_data().get("status") for r in results)
    return {
        "minutes": args.minutes,
        "processes": args.processes,
        "restart": args.restart,
        "restart_at_s": restart_at,
        "vendor_requests": len(used),
        "budget_requests": possible,
        "budget_used": len(used) / possible,
        "rejected_429": fake.rejected_429,
        "max_in_any_window": fake.max_requests_in_any_window(WINDOW_S),
        "results": len(results),
        "result_statuses": dict(statuses),
        "backlog": backlog,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--restart", choices=["kill", "term", "none"], default="kill")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        import os

        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            kafka = stack.enter_context(LocalKafka(progress=lambda m: say(f"kafka: {m}")))
            bootstrap = kafka.bootstrap_servers
        report = asyncio.run(run(args, bootstrap))
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    ok = (
        report["budget_used"] >= 0.95
        and report["rejected_429"] == 0
        and report["max_in_any_window"] <= LIMIT
    )
    print(
        f"budget used {report['budget_used']:.1%} (goal >= 95%), "
        f"{report['rejected_429']} x 429 (goal 0), most in a 15 s window "
        f"{report['max_in_any_window']}/{LIMIT}: {'ok' if ok else 'GOAL MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
