"""Prometheus metrics of one process. Labels carry instance names, never credentials."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """All metrics in a registry of their own (tests start several bridges in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.webhooks = Counter(
            "workbridge_webhooks_total",
            "Webhook requests by outcome",
            ["instance", "outcome"],
            registry=r,
        )
        self.webhook_latency = Histogram(
            "workbridge_webhook_seconds",
            "Time from request to answer",
            ["instance"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.events = Counter(
            "workbridge_events_published_total",
            "Events acknowledged by Kafka",
            ["instance", "origin"],
            registry=r,
        )
        self.dlq = Counter(
            "workbridge_dlq_total", "Records sent to the DLQ", ["instance", "reason"], registry=r
        )
        self.polls = Counter(
            "workbridge_polls_total",
            "Poll cycles by outcome",
            ["instance", "resource", "outcome"],
            registry=r,
        )
        self.poll_staleness = Gauge(
            "workbridge_poll_staleness_seconds",
            "Seconds since the poll task last completed a cycle, for the tasks this process owns",
            ["instance", "resource"],
            registry=r,
        )
        self.commands = Counter(
            "workbridge_command_results_total",
            "Command results by status",
            ["instance", "status"],
            registry=r,
        )
        self.vendor_calls = Counter(
            "workbridge_vendor_requests_total",
            "Vendor API requests by HTTP status",
            ["instance", "status"],
            registry=r,
        )
        self.in_flight = Gauge(
            "workbridge_webhook_sends_in_flight", "Webhook sends awaiting a Kafka ack", registry=r
        )

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
