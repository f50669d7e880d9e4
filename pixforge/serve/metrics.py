"""Prometheus metrics of one app (``GET /metrics``): requests, latency, batch sizes, errors, queue depth and
requests in flight, requests dropped before their forward pass (queue full, deadline, client gone).

Each app has its own registry (prometheus_client's ``CollectorRegistry``), so several apps in one process
(tests, the studio) count separately.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    """The counters and histograms the server keeps."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pixforge_requests", "HTTP requests answered", ["path", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "pixforge_request_seconds",
            "HTTP request latency",
            ["path"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "pixforge_batch_size",
            "Samples per forward pass",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.forward = Histogram(
            "pixforge_forward_seconds",
            "Time of one batched forward pass",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "pixforge_errors", "Requests answered with an error", ["status"], registry=self.registry
        )

        self.queue_depth = Gauge(
            "pixforge_queue_depth", "Requests waiting for a forward pass", ["model"], registry=self.registry
        )
        self.in_forward = Gauge(
            "pixforge_in_forward",
            "Requests in the forward pass running now",
            ["model"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "pixforge_in_flight_requests", "HTTP requests being answered", registry=self.registry
        )
        self.dropped = Counter(
            "pixforge_dropped",
            "Requests dropped before their forward pass (queue_full, deadline, disconnected)",
            ["model", "reason"],
            registry=self.registry,
        )

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        self.requests.labels(path, str(status)).inc()
        self.latency.labels(path).observe(seconds)
        if status >= 400:
            self.errors.labels(str(status)).inc()

    def text(self) -> bytes:
        return generate_latest(self.registry)
