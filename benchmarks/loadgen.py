"""The load generator of bench_bridge: signed MOCO webhooks, POSTed by an aiohttp client.

It runs in a process of its own (`client_process`), so that the client never competes with
the server under test for one event loop. The parent sends it jobs (dicts) over a pipe; for
each job it sends back `("measuring", None)` when the measured window starts and then
`("result", dict)`.

Every webhook gets a distinct MOCO id `n`; its body is a pure function of `n`
(`activity_body`), so the parent can rebuild a body, and from it the event id the bridge must
have published, from `(n, X-Moco-Timestamp)` alone.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
import msgspec

from adapters.moco.fake import sign_webhook

_WORDS = (
    "pump check on line 4, replaced gasket and tested pressure; "
    "calibrated the flow meter, cleaned filters, documented readings in the log book; "
    "customer asked for a follow-up visit next week to look at the spare compressor. "
    "Travel time included. Parts from stock: 2x seal kit, 1x hose clamp, 1l hydraulic oil."
)
_FIRST = ("Anna", "Jonas", "Mia", "Lukas", "Lea", "Paul", "Emma", "Ben")
_LAST = ("Muster", "Schmidt", "Weber", "Fischer", "Wagner", "Becker")


def activity_body(n: int) -> bytes:
    """A MOCO Activity as a webhook body (about 300-600 bytes), distinct for every `n`."""
    desc_len = 10 + (n * 37) % 190
    record = {
        "id": n,
        "date": f"2026-{1 + n % 12:02d}-{1 + n % 28:02d}",
        "hours": round(0.25 * (1 + n % 16), 2),
        "seconds": 900 * (1 + n % 16),
        "description": _WORDS[(n * 13) % 60 :][:desc_len],
        "billable": n % 3 != 0,
        "tag": "" if n % 4 else "onsite",
        "project": {"id": 944000000 + n % 50, "name": f"Line {n % 50}"},
        "task": {"id": 2260000 + n % 7, "name": "Maintenance"},
        "customer": {"id": 1000 + n % 20, "name": "Acme GmbH"},
        "user": {"id": 933613686 + n % 8, "firstname": _FIRST[n % 8], "lastname": _LAST[n % 6]},
        "hourly_rate": 120.0,
        "created_at": "2026-11-23T08:15:00Z",
        "updated_at": "2026-11-23T08:15:00Z",
    }
    return msgspec.json.encode(record)


def webhook_headers(body: bytes, stamp: str, secret: str) -> dict[str, str]:
    """The headers MOCO sends with an Activity/create webhook, signed with `secret`."""
    return {
        "Content-Type": "application/json",
        "X-Moco-Target": "Activity",
        "X-Moco-Event": "create",
        "X-Moco-Timestamp": stamp,
        "X-Moco-User-Id": "933613686",
        "X-Moco-Signature": sign_webhook(body, secret),
    }


async def run_job(job: dict[str, Any], conn: Connection) -> dict[str, Any]:
    """Send webhooks with `concurrency` senders for `warmup_s` + `seconds`; return the stats."""
    url: str = job["url"]
    secret: str = job["secret"]
    concurrency: int = job["concurrency"]
    label: str = job["label"]
    counter = itertools.count(job["id_base"])
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    accepted: list[tuple[int, str]] = []  # (n, timestamp) of every 2xx, warm-up included
    failed: list[tuple[int, str]] = []  # sent but not answered 2xx: may or may not be on Kafka
    sent_measured = 0
    errors_measured = 0

    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    timeout = aiohttp.ClientTimeout(total=job["timeout_s"])
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        measure_from = start + job["warmup_s"]
        end = measure_from + job["seconds"]

        async def sender() -> None:
            nonlocal sent_measured, errors_measured
            while True:
                t0 = time.perf_counter()
                if t0 >= end:
                    return
                n = next(counter)
                body = activity_body(n)
                stamp = str(int(time.time() * 1000))
                headers = webhook_headers(body, stamp, secret)
                status: int | None = None
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        status = resp.status
                    outcome = str(status)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    outcome = type(exc).__name__
                t1 = time.perf_counter()
                ok = status is not None and 200 <= status < 300
                (accepted if ok else failed).append((n, stamp))
                if t0 >= measure_from:
                    sent_measured += 1
                    statuses[outcome] += 1
                    if ok:
                        latencies.append(t1 - t0)
                    else:
                        errors_measured += 1

        async def progress() -> None:
            await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
            conn.send(("measuring", None))
            last_t, last_n = time.perf_counter(), 0
            while True:
                await asyncio.sleep(job["progress_every_s"])
                now = time.perf_counter()
                if now >= end:
                    return
                done = sent_measured
                print(
                    f"    [{label}] {now - measure_from:4.1f}s  {done:7d} requests  "
                    f"{(done - last_n) / (now - last_t):8.0f} req/s  {errors_measured} errors",
                    flush=True,
                )
                last_t, last_n = now, done

        cpu0 = time.process_time()
        reporter = asyncio.create_task(progress())
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        finished = time.perf_counter()
        cpu = time.process_time() - cpu0
        reporter.cancel()
    measured_s = job["seconds"]
    return {
        "label": label,
        "seconds": measured_s,
        "wall_s": finished - start,
        "requests": sent_measured,
        "ok": len(latencies),
        "errors": errors_measured,
        "statuses": dict(statuses),
        "latencies": latencies,
        "accepted": accepted,
        "failed": failed,
        "client_cpu_s": cpu,
    }


def client_process(conn: Connection) -> None:
    """Entry point of the client process: run jobs until `None` arrives."""
    while True:
        job = conn.recv()
        if job is None:
            return
        result = asyncio.run(run_job(job, conn))
        conn.send(("result", result))
