"""The HTTP side: `POST /webhooks/<name>`, `/healthz`, `/readyz`, `/metrics`.

A webhook is answered 2xx only once Kafka acknowledged (acks=all) every event it produced;
if that does not happen within the vendor's deadline the answer is 503 and the vendor
retries. Stable event ids make those retries harmless for consumers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from adapters.core.dlq import webhook_dlq_headers
from adapters.core.instance import Instance
from adapters.core.json_depth import MAX_JSON_DEPTH, nests_deeper_than
from adapters.core.metrics import Metrics
from adapters.core.peer import Network, client_address, in_networks, parse_networks
from adapters.core.publisher import NotAcknowledged, Overloaded, Publisher
from adapters.core.record_limits import max_record_bytes, record_size
from adapters.core.replay_guard import Claim, ReplayGuard
from adapters.core.vendor import WebhookRejected, WebhookRequest, WebhookUnparseable

log = logging.getLogger(__name__)

# Answer this much before the vendor's own deadline, so a 503 reaches it in time.
DEADLINE_MARGIN_S = 1.5


class WebhookServer:
    """Holds the routes; `app` is an aiohttp application for `web.AppRunner`."""

    def __init__(
        self,
        *,
        instances: dict[str, Instance],
        publisher: Publisher | None,
        metrics: Metrics,
        max_body_bytes: int,
        send_timeout_s: float,
        ready: Callable[[], bool],
        trusted_proxies: Sequence[str] = (),
        restoring: Callable[[], bool] = lambda: False,
    ) -> None:
        self.instances = instances
        self.publisher = publisher
        self.metrics = metrics
        self.send_timeout_s = send_timeout_s
        self.ready = ready
        # A command worker rebuilding its idempotency ledger takes no commands yet.
        self.restoring = restoring
        # Stopping: /readyz says 503 so traffic moves away, webhooks are still taken.
        self.stopping = False
        # Draining: the producer is going away; webhooks get 503 so the vendor retries.
        self.draining = False
        self.max_record_bytes = max_record_bytes(max_body_bytes)
        # Proxies (the ingress) whose X-Forwarded-For is believed for the sender's address.
        self.trusted = parse_networks(trusted_proxies)
        self._allowlists: dict[str, tuple[Network, ...]] = {}
        self.replays: defaultdict[str, ReplayGuard] = defaultdict(ReplayGuard)
        self.app = web.Application(client_max_size=max_body_bytes)
        self.app.router.add_post("/webhooks/{name}", self.webhook)
        self.app.router.add_get("/healthz", self.healthz)
        self.app.router.add_get("/readyz", self.readyz)
        self.app.router.add_get("/metrics", self.metrics_page)

    @functools.lru_cache(maxsize=1024)  # noqa: B019 (one server per process; bounded)
    def _counter(self, name: str, outcome: str) -> Any:
        return self.metrics.webhooks.labels(name, outcome)

    @functools.lru_cache(maxsize=256)  # noqa: B019
    def _latency(self, name: str) -> Any:
        return self.metrics.webhook_latency.labels(name)

    async def healthz(self, _request: web.Request) -> web.Response:
        """Alive: the event loop answers."""
        return web.json_response({"status": "ok"})

    async def readyz(self, _request: web.Request) -> web.Response:
        """Ready: connected to Kafka and not stopping."""
        if self.stopping or self.draining:
            return web.json_response({"status": "draining"}, status=503)
        if not self.ready():
            return web.json_response({"status": "kafka unavailable"}, status=503)
        if self.restoring():
            return web.json_response({"status": "restoring ledger"}, status=503)
        return web.json_response({"status": "ready"})

    async def metrics_page(self, _request: web.Request) -> web.Response:
        """Prometheus text format."""
        return web.Response(body=self.metrics.render(), content_type="text/plain")

    async def webhook(self, request: web.Request) -> web.Response:
        """Verify, map, publish, then answer."""
        started = time.perf_counter()
        name = request.match_info["name"]
        inst = self.instances.get(name)
        if inst is None or inst.spec.webhook is None or not inst.cfg.webhooks.enabled:
            return _answer(404, "no webhook endpoint for this instance")
        outcome, response = await self._handle(request, inst)
        self._counter(name, outcome).inc()
        self._latency(name).observe(time.perf_counter() - started)
        return response

    async def _handle(self, request: web.Request, inst: Instance) -> tuple[str, web.Response]:
        spec = inst.spec.webhook
        assert spec is not None
        if self.draining or self.publisher is None:
            return "draining", _answer(503, "shutting down; retry", retry_after=5)
        started = time.monotonic()
        budget = max(0.5, spec.deadline_s - DEADLINE_MARGIN_S)
        try:
            # A slow upload must not hold the vendor past its deadline either.
            async with asyncio.timeout(budget):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return "too_large", _answer(413, "body exceeds server.max_body_bytes")
        except RequestPayloadError:
            # A Content-Encoding that does not match the bytes: the sender's fault.
            return "bad_encoding", _answer(400, "body does not match its Content-Encoding")
        except TimeoutError:
            return "slow_body", _answer(408, "request body not received in time")
        for name in spec.signature_headers:
            if len(set(request.headers.getall(name, ()))) > 1:
                log.warning("webhook for %s refused: two different %s headers", inst.name, name)
                return "unauthorized", _answer(401, "signature or credentials rejected")
        wreq = WebhookRequest(
            {k.lower(): v for k, v in request.headers.items()},
            body,
            datetime.now(UTC),
            peer=client_address(
                request.remote, request.headers.getall("X-Forwarded-For", ()), self.trusted
            ),
        )
        allowed = self._allowed_sources(inst)
        if allowed and not in_networks(wreq.peer, allowed):
            log.warning("webhook for %s refused: sender %s not allowed", inst.name, wreq.peer)
            return "forbidden", _answer(403, "sender address not allowed")
        try:
            replay_key = spec.verify(wreq, inst.cfg)
        except WebhookRejected as exc:
            log.warning("webhook for %s refused: %s", inst.name, exc)
            return "unauthorized", _answer(401, "signature or credentials rejected")
        if replay_key is None:
            return await self._publish(inst, wreq, started, budget)
        window = spec.replay_window_s(inst.cfg)
        guard = self.replays[inst.name]
        claim = await _claim(guard, replay_key, window, started + budget)
        if claim is Claim.PUBLISHED:
            # Authentic, and already on Kafka: the vendor lost our 2xx. Answer it again.
            return "duplicate", _answer(200, "already published")
        if claim is None:
            return "kafka_unavailable", _answer(503, "Kafka unavailable; retry", retry_after=5)
        published = False
        try:
            outcome = await self._publish(inst, wreq, started, budget)
            published = outcome[0] in ("published", "dlq")
            return outcome
        finally:
            guard.end(replay_key, window, published=published)

    def _allowed_sources(self, inst: Instance) -> tuple[Network, ...]:
        # Parsed once per instance: the allowlist is configuration, not per-request data.
        allowed = self._allowlists.get(inst.name)
        if allowed is None:
            assert inst.spec.webhook is not None
            allowed = parse_networks(inst.spec.webhook.allowed_sources(inst.cfg))
            self._allowlists[inst.name] = allowed
        return allowed

    async def _publish(
        self, inst: Instance, wreq: WebhookRequest, started: float, budget: float
    ) -> tuple[str, web.Response]:
        spec = inst.spec.webhook
        assert spec is not None and self.publisher is not None
        timeout = max(0.5, min(self.send_timeout_s, budget - (time.monotonic() - started)))
        if spec.json_body and nests_deeper_than(wreq.body):
            return await self._dead_letter(
                inst, wreq, f"JSON nested deeper than {MAX_JSON_DEPTH} levels", timeout
            )
        try:
            drafts = spec.to_events(wreq, inst.name)
            records = []
            for draft in drafts:
                key, value, headers = inst.encode(inst.event(draft))
                records.append((inst.topics.events, key, value, headers))
        except RecursionError:
            return await self._dead_letter(inst, wreq, "body nested too deeply to map", timeout)
        except Exception as exc:
            # Authentic but not understood (or a mapping bug): kept in the DLQ, answered 2xx
            # so the vendor neither retries for ever nor disables the webhook.
            if not isinstance(exc, WebhookUnparseable):
                log.exception("webhook for %s could not be mapped", inst.name)
            return await self._dead_letter(inst, wreq, str(exc) or type(exc).__name__, timeout)
        largest = max((record_size(k, v, h) for _, k, v, h in records), default=0)
        if largest > self.max_record_bytes:
            # The body fits, its event does not (long subjects, structured mode's escaping):
            # the DLQ record is the body itself, which always fits.
            return await self._dead_letter(inst, wreq, self._too_large(largest), timeout)
        try:
            await self.publisher.publish(records, timeout_s=timeout)
        except Overloaded:
            return "overloaded", _answer(503, "too many webhooks in flight; retry", retry_after=1)
        except MessageSizeTooLargeError:
            # A topic allows less than it did at start-up: retrying cannot help.
            return await self._dead_letter(inst, wreq, self._too_large(largest), timeout)
        except (NotAcknowledged, KafkaError) as exc:
            log.error("webhook for %s not published: %s", inst.name, exc)
            return "kafka_unavailable", _answer(503, "Kafka unavailable; retry", retry_after=5)
        self.metrics.events.labels(inst.name, "webhook").inc(len(records))
        return "published", _answer(200, "published")

    def _too_large(self, size: int) -> str:
        return (
            f"event record of {size} bytes exceeds the Kafka record limit of "
            f"{self.max_record_bytes} bytes (server.max_body_bytes plus headroom)"
        )

    async def _dead_letter(
        self, inst: Instance, wreq: WebhookRequest, error: str, wait_s: float
    ) -> tuple[str, web.Response]:
        assert self.publisher is not None
        headers = webhook_dlq_headers(
            wreq.headers, instance=inst.name, error=error, secret_headers=inst.spec.secret_headers
        )
        try:
            await self.publisher.publish(
                [(inst.topics.dlq, None, wreq.body, headers)], timeout_s=wait_s
            )
        except MessageSizeTooLargeError:
            log.error(
                "webhook for %s fits server.max_body_bytes but not the DLQ topic: raise the "
                "topic's max.message.bytes to %d",
                inst.name,
                self.max_record_bytes,
            )
            return "too_large", _answer(413, "body too large for the Kafka topics")
        except (NotAcknowledged, Overloaded, KafkaError):
            return "kafka_unavailable", _answer(503, "Kafka unavailable; retry", retry_after=5)
        self.metrics.dlq.labels(inst.name, "unparseable_webhook").inc()
        log.warning("webhook for %s sent to the DLQ: %s", inst.name, error)
        # 200, not 202: some vendors (Mobility Work) retry anything but exactly 200.
        return "dlq", _answer(200, "accepted into the dead-letter topic")


async def _claim(guard: ReplayGuard, key: str, window_s: float, deadline: float) -> Claim | None:
    """Claim a delivery key, waiting for a copy in flight; None if that outlasts `deadline`."""
    while True:
        state = guard.begin(key, window_s)
        if isinstance(state, Claim):
            return state
        try:
            # Shielded: this copy giving up must not cancel the other's wait.
            await asyncio.wait_for(asyncio.shield(state), deadline - time.monotonic())
        except TimeoutError:
            return None


def _answer(status: int, message: str, *, retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return web.Response(
        body=_message_body(message), status=status, headers=headers, content_type="application/json"
    )


@functools.lru_cache(maxsize=64)
def _message_body(message: str) -> bytes:
    # The answers are a handful of fixed messages: encoded once.
    return msgspec.json.encode({"message": message})
