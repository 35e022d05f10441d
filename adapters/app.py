"""The bridge process: wires configuration, Kafka, the HTTP server and the roles together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from adapters.config import Config
from adapters.core.budget import BudgetShare, budget_partitions
from adapters.core.command_worker import CommandWorker
from adapters.core.http_server import BoundedAppRunner
from adapters.core.instance import Instance, build_instance
from adapters.core.kafka import client_kwargs, diagnose_connection, ensure_topics, event_producer
from adapters.core.kafka_errors import KafkaAccessError
from adapters.core.metrics import Metrics
from adapters.core.poller import PollRunner
from adapters.core.publisher import Publisher
from adapters.core.record_limits import max_record_bytes
from adapters.core.vendor_http import TransportError
from adapters.core.webhook_server import WebhookServer
from adapters.registry import VENDORS
from adapters.validation import check_config

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The bridge could not start; the message says what to check."""


class BridgeFailed(Exception):
    """A part of the bridge failed for good; the process should exit non-zero."""


class Bridge:
    """One Workbridge process running the roles its configuration switches on."""

    def __init__(self, config: Config, *, startup_timeout_s: float = 120.0) -> None:
        # Idempotent: the CLI has checked already; a Bridge built in code is checked here.
        check_config(config, VENDORS)
        self.config = config
        self.metrics = Metrics()
        self.startup_timeout_s = startup_timeout_s
        prefix = config.kafka.topic_prefix
        self.instances: dict[str, Instance] = {
            inst.instance_name: build_instance(inst, VENDORS[inst.vendor], prefix)
            for inst in config.instances
        }
        self.producer: AIOKafkaProducer | None = None
        self.publisher: Publisher | None = None
        self.server: WebhookServer | None = None
        self.pollers: list[PollRunner] = []
        self.workers: list[CommandWorker] = []
        self.budgets: dict[str, BudgetShare] = {}
        self._checks: list[asyncio.Task[None]] = []
        self._runner: BoundedAppRunner | None = None
        self._site: web.TCPSite | None = None
        self._kafka_ok = False
        self._health_task: asyncio.Task[None] | None = None
        self.port: int = config.server.port
        # Producer, topics and the webhook server all agree on this (record_limits).
        self.max_record_bytes = max_record_bytes(config.server.max_body_bytes)
        # Set when a part of the process failed for good: the process exits non-zero so
        # that Kubernetes restarts it, rather than living on half-working.
        self.failed = asyncio.Event()
        self.failure: str | None = None

    def fail(self, message: str) -> None:
        """A part of the process cannot go on: report, turn unready, stop."""
        log.critical("%s; stopping so the process is restarted", message)
        self.failure = self.failure or message
        self._kafka_ok = False
        self.failed.set()

    async def start(self, *, on_progress: Callable[[str], None] | None = None) -> None:
        """Create topics, connect, then start the HTTP server, pollers and workers."""
        say = on_progress or log.info
        roles = self.config.roles
        for inst in self.instances.values():
            for warning in inst.spec.startup_warnings(inst.cfg):
                log.warning("%s: %s", inst.name, warning)
            if inst.cfg.rate_limit is not None and inst.cfg.rate_limit.processes is not None:
                log.warning(
                    "%s: rate_limit.processes is ignored: the processes that call the vendor "
                    "share its budget through Kafka (README: how the rate budget is shared); "
                    "remove the key",
                    inst.name,
                )
        # Health endpoints answer from the first moment, so Kubernetes sees a live process.
        await self._start_http()
        await self._wait_for_kafka(say)
        if roles.webhooks:
            self.producer = event_producer(
                self.config.kafka,
                client_id=f"{self.config.kafka.client_id}-webhooks",
                max_record_bytes=self.max_record_bytes,
            )
            await self.producer.start()
            self.publisher = Publisher(
                self.producer, max_in_flight=self.config.server.max_in_flight
            )
            publisher = self.publisher
            self.metrics.in_flight.set_function(lambda: publisher.in_flight)
            assert self.server is not None
            self.server.publisher = self.publisher
        self._kafka_ok = True
        self._health_task = asyncio.create_task(self._watch_kafka())
        for inst in self._budgeted():
            self._share_budget(inst)
        ledger_dir = self.config.ledger.index_dir(os.environ)
        for inst in self.instances.values():
            if roles.pollers and inst.cfg.polling.enabled and inst.spec.poll is not None:
                runner = PollRunner(inst, self.config.kafka, self.metrics, on_fatal=self.fail)
                self.pollers.append(runner)
            if roles.commands and inst.cfg.commands.enabled and inst.spec.commands:
                worker = CommandWorker(
                    inst,
                    self.config.kafka,
                    self.metrics,
                    grace_s=self.config.server.shutdown_grace_s,
                    on_fatal=self.fail,
                    state_dir=None if ledger_dir is None else Path(ledger_dir),
                    restore_stall_s=self.config.ledger.restore_stall_s,
                )
                self.workers.append(worker)
        # Each joins its consumer group; joined one after the other, a process with several
        # parts would take a group join (seconds) per part to start. The limiters use their
        # share from the moment it is set, before any part calls the vendor.
        await asyncio.gather(
            *(b.start() for b in self.budgets.values()),
            *(p.start() for p in self.pollers),
            *(w.start() for w in self.workers),
        )
        # In the background: a check waits for the budget like every call, and the
        # process is ready meanwhile (what it finds stops the process).
        self._checks = [
            asyncio.create_task(self._startup_check(inst), name=f"startup-check-{inst.name}")
            for inst in self.instances.values()
            if inst.spec.startup_check is not None and self._calls_vendor(inst)
        ]
        say(
            f"workbridge ready on port {self.port}: {len(self.instances)} instance(s), "
            f"{len(self.pollers)} poller(s), {len(self.workers)} command worker(s)"
        )

    async def _startup_check(self, inst: Instance) -> None:
        check = inst.spec.startup_check
        assert check is not None
        try:
            problem = await check(inst.client, inst.cfg)
        except (TransportError, TimeoutError) as exc:
            log.warning("%s: the start-up check could not reach the vendor: %s", inst.name, exc)
            return
        if problem is not None:
            self.fail(f"instance {inst.name}: {problem}")

    def _calls_vendor(self, inst: Instance) -> bool:
        roles = self.config.roles
        polls = roles.pollers and inst.cfg.polling.enabled and inst.spec.poll is not None
        commands = roles.commands and inst.cfg.commands.enabled and bool(inst.spec.commands)
        return polls or commands

    def _budgeted(self) -> list[Instance]:
        """Instances this process calls with a budget of known size: shared through Kafka."""
        return [
            inst
            for inst in self.instances.values()
            if self._calls_vendor(inst) and inst.client.limiter.requests > 0
        ]

    def _share_budget(self, inst: Instance) -> None:
        limiter = inst.client.limiter
        share = BudgetShare(
            self.config.kafka,
            topic=inst.topics.budget,
            group_id=inst.topics.group("budget"),
            partitions=budget_partitions(limiter.requests),
            requests=limiter.requests,
            window_s=limiter.window,
            quiesce=limiter.quiesce,
            name=inst.name,
        )
        limiter.share(share.capacity)
        self.budgets[inst.name] = share

    async def _start_http(self) -> None:
        self.server = WebhookServer(
            instances=self.instances,
            publisher=None,
            metrics=self.metrics,
            max_body_bytes=self.config.server.max_body_bytes,
            send_timeout_s=self.config.kafka.send_timeout_s,
            # A worker still restoring a partition's ledger cannot answer its commands yet.
            ready=lambda: self._kafka_ok,
            restoring=lambda: any(w.restoring for w in self.workers),
            trusted_proxies=self.config.server.trusted_proxies,
        )
        server = self.config.server
        self._runner = BoundedAppRunner(
            self.server.app,
            header_timeout_s=server.header_timeout_s,
            keepalive_timeout_s=server.keepalive_timeout_s,
            max_line_bytes=server.max_header_bytes,
            max_headers=server.max_headers,
        )
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.config.server.host, self.config.server.port)
        await self._site.start()
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])

    async def _wait_for_kafka(self, say: Callable[[str], None]) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        topics = [inst.topics for inst in self.instances.values()]
        while True:
            try:
                await ensure_topics(
                    self.config.kafka,
                    topics,
                    max_record_bytes=self.max_record_bytes,
                    # Only a webhook receiver writes records that large.
                    check_record_bytes=self.config.roles.webhooks,
                    budgets={
                        inst.topics.budget: budget_partitions(inst.client.limiter.requests)
                        for inst in self._budgeted()
                    },
                    tracking=[
                        inst.topics.tracked
                        for inst in self.instances.values()
                        if inst.spec.tracking
                    ],
                )
                return
            except KafkaAccessError as exc:
                raise StartupError(str(exc)) from None
            except (KafkaError, OSError) as exc:
                # A refused password or an untrusted certificate will not heal: stop now.
                refusal = await diagnose_connection(self.config.kafka)
                if refusal is not None:
                    raise StartupError(str(refusal)) from None
                if time.monotonic() > deadline:
                    raise StartupError(
                        f"Kafka at {self.config.kafka.bootstrap_servers} not reachable for "
                        f"{self.startup_timeout_s:.0f}s ({exc}); check kafka.bootstrap_servers, "
                        "TLS and SASL settings"
                    ) from None
                say(f"waiting for Kafka at {self.config.kafka.bootstrap_servers}: {exc}")
                await asyncio.sleep(2)

    async def _watch_kafka(self) -> None:
        # Readiness follows whether the brokers answer metadata requests, for every role
        # (a worker-only pod has no producer of its own to ask).
        client = AIOKafkaClient(
            **client_kwargs(self.config.kafka), client_id=f"{self.config.kafka.client_id}-health"
        )
        bootstrapped = False
        try:
            while True:
                await asyncio.sleep(5)
                try:
                    if not bootstrapped:
                        await asyncio.wait_for(client.bootstrap(), 4)
                        bootstrapped = True
                    ok = await asyncio.wait_for(client.fetch_all_metadata(), 4)
                    self._kafka_ok = bool(ok.brokers()) and self.failure is None
                except (KafkaError, TimeoutError, OSError):
                    self._kafka_ok = False
        finally:
            await client.close()

    async def _drain_http(self) -> None:
        # Kubernetes keeps routing for a moment after SIGTERM: unready at once, accepting
        # for `shutdown_delay_s`, then every request already received is answered.
        server = self.config.server
        if self._runner is not None:
            started = time.monotonic()
            finished = await self._runner.drain(
                delay_s=server.shutdown_delay_s, grace_s=server.shutdown_grace_s
            )
            if not finished:
                log.warning(
                    "webhook requests still open after shutdown_grace_s (%.0fs); cutting them",
                    time.monotonic() - started,
                )
        if self.publisher is not None:
            await self.publisher.drained(1.0)

    async def stop(self) -> None:
        """Drain: turn unready, answer what was received, finish in-flight work, commit."""
        if self.server is not None:
            self.server.stopping = True
        if self._health_task is not None:
            self._health_task.cancel()
        for check in self._checks:
            check.cancel()
        # All parts drain at once, so the stop takes one grace period, not one per part.
        await asyncio.gather(
            self._drain_http(),
            *(worker.stop() for worker in self.workers),
            *(poller.stop() for poller in self.pollers),
            return_exceptions=True,
        )
        # Released once the calls are done, so that the next owner of a share can use it.
        await asyncio.gather(*(b.stop() for b in self.budgets.values()), return_exceptions=True)
        if self.server is not None:
            self.server.draining = True
        if self._runner is not None:
            await self._runner.cleanup()
        if self.producer is not None:
            await self.producer.stop()
        for inst in self.instances.values():
            if inst.batcher is not None:
                await inst.batcher.close()
            await inst.client.close()

    async def run_until_signal(self) -> None:
        """Run until SIGTERM or SIGINT, then drain and stop."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await self.start()
        stopped = asyncio.ensure_future(stop.wait())
        failed = asyncio.ensure_future(self.failed.wait())
        await asyncio.wait([stopped, failed], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        failed.cancel()
        log.info("%s: draining", "failure" if self.failed.is_set() else "signal received")
        await self.stop()
        if self.failure is not None:
            raise BridgeFailed(self.failure)
