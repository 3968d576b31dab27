"""Prometheus metrics of the local server through `prometheus_client`.

Exposed at `/monitoring/prometheus/metrics` (the path TF Serving's monitoring config uses):
- `seminar_serving_requests_total{model, api, method, code}`: requests by gRPC / REST method
  and status code;
- `seminar_serving_errors_total{model}`: requests answered with any code but OK;
- `seminar_serving_latency_ms`: histogram of request latency in milliseconds;
- `seminar_serving_stage_ms{model, api, stage}`: histogram of the server's own time per stage
  of a successful Predict: `decode` (request tensors to validated inputs), `call` (the
  signature, outputs to numpy) and `encode` (the response message / JSON body).
Each server has its own registry (no process-global state) and no `_created` series.
"""
from __future__ import annotations

import time
from typing import Dict

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST

prometheus_client.disable_created_metrics()


class Metrics:
    """Counts requests by (api, method, status code) and histograms their latency.

    Args:
        model: the served model's name (the `model` label).
    """

    def __init__(self, model: str = ""):
        self.model = model
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("seminar_serving_requests", "Requests by method and status",
                                ["model", "api", "method", "code"], registry=self.registry)
        self.errors = Counter("seminar_serving_errors", "Requests answered with an error",
                              ["model"], registry=self.registry)
        self.latency = Histogram("seminar_serving_latency_ms", "Request latency (ms)",
                                 buckets=LATENCY_BUCKETS_MS, registry=self.registry)
        self.stage = Histogram("seminar_serving_stage_ms", "Server time per request stage (ms)",
                               ["model", "api", "stage"], buckets=LATENCY_BUCKETS_MS,
                               registry=self.registry)
        self.errors.labels(model)  # exported as 0 before the first error

    def record_stages(self, api: str, stages: "Stages") -> None:
        """Observes the stage times of one successful request."""
        for name, seconds in stages.seconds.items():
            self.stage.labels(self.model, api, name).observe(seconds * 1000.0)

    def record(self, api: str, method: str, code: str, seconds: float) -> None:
        self.requests.labels(self.model, api, method, code).inc()
        if code != "OK":
            self.errors.labels(self.model).inc()
        self.latency.observe(seconds * 1000.0)

    def count(self, code: str) -> int:
        """Requests answered with `code` (e.g. "OK", "INVALID_ARGUMENT") over all APIs."""
        return int(sum(s.value for metric in self.requests.collect() for s in metric.samples
                       if s.name.endswith("_total") and s.labels["code"] == code))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class Stages:
    """Wall time of a request's stages, in order: `mark(name)` closes the stage that began
    at the previous mark (or at construction)."""

    def __init__(self):
        self.seconds: Dict[str, float] = {}
        self._t = time.perf_counter()

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._t
        self._t = now

    def skip(self) -> None:
        """Starts the next stage now: the time since the last mark counts for none."""
        self._t = time.perf_counter()
