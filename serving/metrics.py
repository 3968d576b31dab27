"""Prometheus-style request counters and a latency histogram for the local server."""
from __future__ import annotations

import threading
from typing import Dict, Tuple

LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class Metrics:
    """Counts requests by (api, method, status code) and histograms their latency."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: Dict[Tuple[str, str, str], int] = {}
        self.latency_sum = 0.0
        self.latency_count = 0
        self.buckets = [0] * len(LATENCY_BUCKETS_MS)

    def record(self, api: str, method: str, code: str, seconds: float) -> None:
        with self._lock:
            key = (api, method, code)
            self.requests[key] = self.requests.get(key, 0) + 1
            ms = seconds * 1000.0
            self.latency_sum += ms
            self.latency_count += 1
            for i, b in enumerate(LATENCY_BUCKETS_MS):
                if ms <= b:
                    self.buckets[i] += 1

    def count(self, code: str) -> int:
        """Requests answered with `code` (e.g. "OK", "INVALID_ARGUMENT") over all APIs."""
        with self._lock:
            return sum(n for (_, _, c), n in self.requests.items() if c == code)

    def render(self, model: str) -> str:
        """The Prometheus text exposition of every counter."""
        with self._lock:
            lines = ["# TYPE seminar_serving_requests_total counter"]
            for (api, method, code), n in sorted(self.requests.items()):
                lines.append(f'seminar_serving_requests_total{{model="{model}",api="{api}",'
                             f'method="{method}",code="{code}"}} {n}')
            errors = sum(n for (_, _, c), n in self.requests.items() if c != "OK")
            lines += ["# TYPE seminar_serving_errors_total counter",
                      f'seminar_serving_errors_total{{model="{model}"}} {errors}',
                      "# TYPE seminar_serving_latency_ms histogram"]
            for b, n in zip(LATENCY_BUCKETS_MS, self.buckets):
                lines.append(f'seminar_serving_latency_ms_bucket{{le="{b}"}} {n}')
            lines += [f'seminar_serving_latency_ms_bucket{{le="+Inf"}} {self.latency_count}',
                      f"seminar_serving_latency_ms_sum {self.latency_sum:.3f}",
                      f"seminar_serving_latency_ms_count {self.latency_count}"]
        return "\n".join(lines) + "\n"
