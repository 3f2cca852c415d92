"""The server's Prometheus metrics, in a registry of its own (one per `app`), served as text
at `/metrics`: requests and errors by route and status, sentences queued, requests in
progress, batch sizes, request latency, source tokens translated and the tokens/s of the
latest batch."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TOKEN_BUCKETS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


class Metrics:
    """Counters, gauges and histograms of one server."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "nmt_serve_requests", "HTTP requests answered", ["route", "status"], registry=r
        )
        self.errors = Counter(
            "nmt_serve_errors", "requests answered with an error", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "nmt_serve_request_seconds",
            "time to answer a translation request",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "nmt_serve_queue_sentences", "sentences queued, not yet in a batch", registry=r
        )
        self.in_progress = Gauge(
            "nmt_serve_requests_in_progress", "translation requests accepted", registry=r
        )
        self.batch_sentences = Histogram(
            "nmt_serve_batch_sentences", "sentences per batch", buckets=SIZE_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "nmt_serve_batch_tokens", "source tokens per batch", buckets=TOKEN_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "nmt_serve_batch_seconds",
            "translator time per batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter("nmt_serve_source_tokens", "source tokens translated", registry=r)
        self.tokens_per_second = Gauge(
            "nmt_serve_tokens_per_second", "source tokens/s of the latest batch", registry=r
        )

    def observe_batch(self, sentences: int, tokens: int, seconds: float) -> None:
        self.batch_sentences.observe(sentences)
        self.batch_tokens.observe(tokens)
        self.batch_seconds.observe(seconds)
        self.tokens.inc(tokens)
        if seconds > 0:
            self.tokens_per_second.set(tokens / seconds)

    def answered(self, route: str, status: int, seconds: float | None = None) -> None:
        self.requests.labels(route, str(status)).inc()
        if status >= 400:
            self.errors.labels(route, str(status)).inc()
        if seconds is not None:
            self.latency.labels(route).observe(seconds)

    def render(self, depth: Callable[[], int], in_progress: Callable[[], int]) -> bytes:
        self.queue_depth.set(depth())
        self.in_progress.set(in_progress())
        return generate_latest(self.registry)
