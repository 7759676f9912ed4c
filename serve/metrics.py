"""Prometheus metrics of the server (own registry: vLLM registers its own metrics in the default one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("vtg_requests", "HTTP requests by route and status", ["route", "status"], registry=r)
        self.latency = Histogram(
            "vtg_request_latency_seconds",
            "request latency by route",
            ["route"],
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
        )
        self.in_flight = Gauge("vtg_requests_in_flight", "requests holding an engine slot", registry=r)
        self.waiting = Gauge("vtg_requests_waiting", "requests waiting for an engine slot", registry=r)
        self.rejected = Counter("vtg_requests_rejected", "requests refused because the queue was full", registry=r)
        self.prompt_tokens = Counter("vtg_prompt_tokens", "prompt tokens processed", registry=r)
        self.completion_tokens = Counter("vtg_completion_tokens", "completion tokens generated", registry=r)
        self.video_decode = Histogram(
            "vtg_video_decode_seconds",
            "video probe + decode time",
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
        )
        self.internal_errors = Counter("vtg_internal_errors", "requests that failed with a 5xx", registry=r)
        self.failures = Counter(
            "vtg_request_failures",
            "failed requests by route and kind: client_error (4xx), "
            "server_error (5xx), stream_error (a stream that failed after its 200)",
            ["route", "kind"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
