"""Several `workbridge run` processes on one broker: start, kill, stop, and read their metrics.

Used by the multi-process integration test and by the budget benchmark. Each process logs
to a file of its own (a pipe that nobody reads would fill up and stall it), answers on a
port of its own, and reads one shared config file; the fake vendors run in the caller's
process, so that they see every process's requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Member:
    """One `workbridge run` process of the cluster."""

    name: str
    port: int
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0

    @property
    def alive(self) -> bool:
        """Whether the process runs."""
        return self.popen is not None and self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        """The end of its log (for a failing assertion)."""
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Cluster:
    """`size` processes sharing one configuration (`instances`), each on its own port."""

    workdir: Path
    bootstrap: str
    prefix: str
    instances: list[dict[str, Any]]
    size: int = 3
    partitions: int = 3
    env: dict[str, str] = field(default_factory=dict)
    shutdown_grace_s: float = 10.0
    members: list[Member] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for i in range(self.size):
            self.members.append(
                Member(name=f"p{i}", port=free_port(), log=self.workdir / f"p{i}.log")
            )

    def _config(self, member: Member) -> Path:
        raw = {
            "kafka": {
                "bootstrap_servers": self.bootstrap,
                "topic_prefix": self.prefix,
                "client_id": f"workbridge-{member.name}",
                "topics": {"partitions": self.partitions, "replication_factor": 1},
            },
            "server": {
                "host": "127.0.0.1",
                "port": member.port,
                "shutdown_grace_s": self.shutdown_grace_s,
            },
            "log_level": "INFO",
            "instances": self.instances,
        }
        path = self.workdir / f"{member.name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    def start(self, index: int) -> Member:
        """Start member `index` (again, after a kill: a new process on the same port)."""
        member = self.members[index]
        config = self._config(member)
        log = member.log.open("ab")
        member.popen = subprocess.Popen(
            [sys.executable, "-m", "adapters.cli", "run", "--config", str(config)],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        member.started_at = time.monotonic()
        return member

    async def wait_ready(self, index: int, wait_s: float = 90.0) -> None:
        """Until member `index` answers /readyz with 200."""
        member = self.members[index]
        deadline = time.monotonic() + wait_s
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if not member.alive:
                    raise AssertionError(f"{member.name} exited:\n{member.tail()}")
                try:
                    url = f"http://127.0.0.1:{member.port}/readyz"
                    async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError(f"{member.name} not ready in {wait_s:.0f}s:\n{member.tail()}")

    async def start_all(self) -> None:
        """Start every member and wait until all are ready."""
        for i in range(self.size):
            self.start(i)
        for i in range(self.size):
            await self.wait_ready(i)

    def kill(self, index: int) -> None:
        """SIGKILL: no drain, no goodbye to the group."""
        member = self.members[index]
        assert member.popen is not None
        member.popen.send_signal(signal.SIGKILL)
        member.popen.wait(10)

    async def terminate(self, index: int, wait_s: float = 60.0) -> int:
        """SIGTERM, then wait for the drain to end; the exit code."""
        member = self.members[index]
        assert member.popen is not None
        member.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + wait_s
        while member.popen.poll() is None:
            if time.monotonic() > deadline:
                member.popen.kill()
                raise AssertionError(f"{member.name} did not stop in {wait_s:.0f}s")
            await asyncio.sleep(0.1)
        return member.popen.returncode

    async def stop_all(self) -> None:
        """Stop what still runs (SIGTERM, then SIGKILL)."""
        for i, member in enumerate(self.members):
            if member.alive:
                with contextlib.suppress(AssertionError):
                    await self.terminate(i, wait_s=30)

    async def metrics(self, index: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        """Member `index`'s /metrics as {metric: {labels: value}} ({} when it is down)."""
        member = self.members[index]
        if not member.alive:
            return {}
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(
                    f"http://127.0.0.1:{member.port}/metrics",
                    timeout=aiohttp.ClientTimeout(total=5),
                ) as r,
            ):
                text = await r.text()
        except (aiohttp.ClientError, TimeoutError):
            return {}
        return parse_metrics(text)


def parse_metrics(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Prometheus text format, samples only: {name: {((label, value), ...): value}}."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        labels: list[tuple[str, str]] = []
        for part in rest.rstrip("}").split(","):
            if "=" in part:
                key, _, val = part.partition("=")
                labels.append((key.strip(), val.strip().strip('"')))
        try:
            out[name][tuple(labels)] = float(value)
        except ValueError:
            continue
    return out


def total(samples: dict[tuple[tuple[str, str], ...], float], **match: str) -> float:
    """The sum of the samples whose labels include `match`."""
    return sum(v for labels, v in samples.items() if match.items() <= dict(labels).items())
