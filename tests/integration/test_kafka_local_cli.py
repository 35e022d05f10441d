"""`workbridge kafka-local --data-dir DIR`: a broker stopped and started again keeps its data."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.conftest import read_records

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def kafka_local(data_dir: Path) -> AsyncIterator[str]:
    """Run the CLI until the block ends (then SIGTERM, as Ctrl-C would); yield its servers."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "adapters.cli",
        "kafka-local",
        "--data-dir",
        str(data_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    output: list[str] = []
    try:
        async with asyncio.timeout(90):
            while True:
                line = (await proc.stdout.readline()).decode()
                assert line, f"kafka-local ended before it was ready:\n{''.join(output)}"
                output.append(line)
                if line.startswith("KAFKA_BOOTSTRAP_SERVERS="):
                    break
        yield line.split("=", 1)[1].strip()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.wait_for(proc.communicate(), 60)
        output.append(rest.decode())
    assert proc.returncode == 0, "".join(output)


async def test_second_start_with_the_same_data_dir_has_the_records_and_the_port(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "kafka"
    async with kafka_local(data_dir) as first:
        admin = AIOKafkaAdminClient(bootstrap_servers=first)
        await admin.start()
        try:
            await admin.create_topics([NewTopic("kept", 1, 1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=first, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait("kept", b"still here")
        finally:
            await producer.stop()
    meta = data_dir / "data" / "meta.properties"
    formatted = meta.read_text()

    async with kafka_local(data_dir) as second:
        # the same address, so clients configured for the first run still reach it
        assert second == first
        [record] = await read_records(second, "kept", count=1)
        assert record.value == b"still here"

    assert meta.read_text() == formatted  # the same cluster: not formatted again
    log = (data_dir / "broker.log").read_text()
    assert log.count("===== launcher: kafka.tools.StorageTool format =====") == 1
    assert log.count("===== launcher: starting broker") == 2
