"""The bridge as a real process: killed mid-command, and drained by SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from adapters.core.kafka import Topics
from adapters.moco.fake import FakeMoco
from tests.integration.conftest import (
    API_KEY,
    SECRET,
    BridgeFactory,
    ce,
    publish_command,
    read_records,
)

pytestmark = pytest.mark.integration

COMMANDS = {"enabled": True, "deadline_s": 30, "backoff_base_s": 0.2, "backoff_max_s": 2}


def write_config(path: Path, bootstrap: str, prefix: str, base_url: str, port: int) -> Path:
    raw: dict[str, Any] = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "topic_prefix": prefix,
            "topics": {"partitions": 2, "replication_factor": 1},
        },
        "server": {"host": "127.0.0.1", "port": port, "shutdown_grace_s": 10},
        "log_level": "INFO",
        "instances": [
            {
                "vendor": "moco",
                "name": "moco",
                "base_url": base_url,
                "api_key_file": str(path.parent / "api_key"),
                "webhook_secret": "${TEST_MOCO_SECRET}",
                "commands": COMMANDS,
            }
        ],
    }
    (path.parent / "api_key").write_text(API_KEY + "\n")
    path.write_text(yaml.safe_dump(raw))
    return path


def start_process(config: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TEST_MOCO_SECRET": SECRET}
    return subprocess.Popen(
        [sys.executable, "-m", "adapters.cli", "run", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


async def wait_ready(port: int, proc: subprocess.Popen[bytes], wait_s: float = 60) -> None:
    deadline = time.monotonic() + wait_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("bridge process did not become ready")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for(predicate: Any, wait_s: float, what: str) -> None:
    deadline = time.monotonic() + wait_s
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_killed_between_vendor_call_and_commit_gives_no_second_side_effect(
    tmp_path: Path,
    kafka_bootstrap: str,
    prefix: str,
    fake_moco: FakeMoco,
    start_bridge: BridgeFactory,
) -> None:
    project = fake_moco.create_record("projects", {"name": "P", "customer_id": 1})
    assert fake_moco.base_url is not None
    port = free_port()
    proc = start_process(
        write_config(tmp_path / "wb.yaml", kafka_bootstrap, prefix, fake_moco.base_url, port)
    )
    try:
        await wait_ready(port, proc)
        # The vendor acts on arrival but answers only after 3 s: the process dies meanwhile.
        fake_moco.delay_next(1, 3.0)
        cid = await publish_command(
            kafka_bootstrap,
            prefix,
            type="workbridge.moco.activity.create",
            data={
                "date": "2026-11-23",
                "project_id": project["id"],
                "hours": 1.0,
                "description": "x",
            },
            subject="project/1",
        )
        await wait_for(lambda: len(fake_moco.arrival_times) > 0, 30, "command never reached MOCO")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    await wait_for(lambda: len(fake_moco.calls) == 1, 10, "the vendor did not act")

    # Another replica takes the partition over: it sees the in-flight mark.
    await start_bridge(commands=COMMANDS, webhooks={"enabled": False})
    records = await read_records(
        kafka_bootstrap, Topics(prefix, "moco").results, count=1, settle=2.0
    )
    assert len(records) == 1
    event = ce(records[0])
    assert event.get_attributes()["commandid"] == cid
    assert event.get_data()["status"] == "ambiguous"
    await asyncio.sleep(1)
    assert len(fake_moco.calls) == 1  # never blindly repeated


async def test_sigterm_drains_in_flight_command_and_exits_cleanly(
    tmp_path: Path,
    kafka_bootstrap: str,
    prefix: str,
    fake_moco: FakeMoco,
) -> None:
    company = fake_moco.create_record("companies", {"name": "A", "type": "customer"})
    assert fake_moco.base_url is not None
    port = free_port()
    proc = start_process(
        write_config(tmp_path / "wb.yaml", kafka_bootstrap, prefix, fake_moco.base_url, port)
    )
    try:
        await wait_ready(port, proc)
        fake_moco.delay_next(1, 2.0)
        cid = await publish_command(
            kafka_bootstrap,
            prefix,
            type="workbridge.moco.company.update",
            data={"id": company["id"], "info": "drained"},
            subject=f"company/{company['id']}",
        )
        await wait_for(lambda: len(fake_moco.arrival_times) > 0, 30, "command never reached MOCO")
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 20)  # keep the fake MOCO answering
    finally:
        if proc.poll() is None:
            proc.kill()
    output = proc.stdout.read().decode() if proc.stdout else ""
    assert code == 0, output
    assert "draining" in output
    assert API_KEY not in output and SECRET not in output
    records = await read_records(
        kafka_bootstrap, Topics(prefix, "moco").results, count=1, settle=1.0
    )
    assert [ce(r).get_attributes()["commandid"] for r in records] == [cid], output
    assert ce(records[0]).get_data()["status"] == "succeeded"


async def test_poller_killed_between_transactions_resumes_without_gap_or_repeat(
    tmp_path: Path,
    kafka_bootstrap: str,
    prefix: str,
    fake_moco: FakeMoco,
    start_bridge: BridgeFactory,
) -> None:
    # Many changes in small transactions, so the kill lands between two of them.
    total = 600
    for i in range(total):
        fake_moco.create_record("companies", {"name": f"C{i}", "type": "customer"})
    assert fake_moco.base_url is not None
    port = free_port()
    config = write_config(tmp_path / "wb.yaml", kafka_bootstrap, prefix, fake_moco.base_url, port)
    raw = yaml.safe_load(config.read_text())
    raw["instances"][0]["commands"] = {"enabled": False}
    raw["instances"][0]["polling"] = {
        "enabled": True,
        "interval_s": 0.5,
        "resources": ["companies"],
        "max_batch": 5,
    }
    config.write_text(yaml.safe_dump(raw))
    proc = start_process(config)
    try:
        await wait_ready(port, proc)
        await wait_for(lambda: len(fake_moco.requests) > 0, 30, "the poller never asked MOCO")
        await asyncio.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 10)
    finally:
        if proc.poll() is None:
            proc.kill()
    topic = Topics(prefix, "moco").events
    before = await read_records(kafka_bootstrap, topic, count=total, wait_s=2)
    if len(before) == total:
        pytest.skip("this machine published all changes before the kill; nothing to resume")

    await start_bridge(
        polling={"enabled": True, "interval_s": 0.5, "resources": ["companies"]},
        webhooks={"enabled": False},
    )
    after = await read_records(kafka_bootstrap, topic, count=total, settle=2.0)
    subjects = [ce(r).get_attributes()["subject"] for r in after]
    assert len(subjects) == total and len(set(subjects)) == total  # no gap, no repeat
