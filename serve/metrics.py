"""Prometheus metrics of the server (own registry: vLLM registers its own metrics in the default one)."""

from __future__ import annotations

import itertools
import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger("vtg.serve")

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

        self.grounding_calls = Counter(
            "vtg_grounding_calls", "model calls made by grounding strategies, by stage", ["stage"], registry=r
        )
        self.grounding_running = Gauge(
            "vtg_grounding_running", "grounding requests running now, by strategy stage", ["stage"], registry=r
        )
        self.grounding_progress = Gauge(
            "vtg_grounding_progress",
            "share of its current stage's windows a running grounding request has asked about",
            ["request", "stage"],
            registry=r,
        )

        self.streams_active = Gauge("vtg_streams_active", "stream sessions open now", registry=r)
        self.streams_rejected = Counter(
            "vtg_streams_rejected", "stream sessions refused because limits.max_streams were open", registry=r
        )
        self.stream_frames = Counter("vtg_stream_frames", "frames pushed into stream sessions", registry=r)
        self.stream_windows = Counter("vtg_stream_windows", "stream windows the model answered", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class GroundingProgress:
    """Where each running grounding request stands: a log line per round and gauges in /metrics, dropped when the
    request ends (labels are short request numbers, so their number stays that of running requests)."""

    def __init__(self, metrics: Metrics):
        self.metrics, self._ids = metrics, itertools.count(1)

    def tracker(self, video: str) -> _Tracker:
        return _Tracker(self.metrics, f"g{next(self._ids)}", video)


class _Tracker:
    def __init__(self, metrics: Metrics, rid: str, video: str):
        self.metrics, self.rid, self.video, self.stage = metrics, rid, video, None

    def ask(self, ask) -> None:
        m = self.metrics
        if ask.stage != self.stage:
            self._leave()
            self.stage = ask.stage
            m.grounding_running.labels(ask.stage).inc()
        m.grounding_calls.labels(ask.stage).inc(len(ask.calls))
        if ask.stage != "direct":
            done = ask.done + ask.windows
            m.grounding_progress.labels(self.rid, ask.stage).set(min(1.0, done / max(ask.total, 1)))
            log.info("grounding %s (%s): %s pass, windows %d-%d of %d", self.rid, self.video, ask.stage,
                     ask.done + 1, min(done, ask.total), ask.total)  # fmt: skip

    def _leave(self) -> None:
        if self.stage is None:
            return
        self.metrics.grounding_running.labels(self.stage).dec()
        if self.stage != "direct":
            try:
                self.metrics.grounding_progress.remove(self.rid, self.stage)
            except KeyError:
                pass

    def done(self) -> None:
        self._leave()
        self.stage = None
