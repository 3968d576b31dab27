"""Closed-loop gRPC load against a running server and its stage metrics (used by
`serving_load.py`): C client threads send pre-built PredictRequests round-robin and time
each answer; the server's Prometheus stage histograms give mean decode / call / encode ms."""
import json
import re
import threading
import time
import urllib.request

import numpy as np


def loaded_event(log_path, timeout=120.0):
    """The server log's first `version_loaded` event (waits for it)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(log_path, encoding="utf-8") as f:
            for text in f:
                if '"version_loaded"' in text:
                    event = json.loads(text[text.index("{"):])
                    return {"load_seconds": event["seconds"],
                            "warmup_requests": event["warmup_requests"]}
        time.sleep(0.5)
    raise RuntimeError(f"no version_loaded event in {log_path}")


STAGE_RE = re.compile(r'^seminar_serving_stage_ms_(sum|count)\{[^}]*api="grpc"[^}]*'
                      r'stage="(\w+)"[^}]*\} ([0-9.e+-]+)$')


def stage_totals(rest_port):
    """{stage: [sum_ms, count]} of the server's gRPC stage histograms."""
    text = urllib.request.urlopen(
        f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics").read().decode()
    out = {}
    for line in text.splitlines():
        m = STAGE_RE.match(line)
        if m:
            out.setdefault(m.group(2), [0.0, 0.0])[m.group(1) == "count"] = float(m.group(3))
    return out


def stage_means(before, after):
    """Mean ms per request of each stage between two scrapes."""
    out = {}
    for stage in ("decode", "call", "encode"):
        s0, c0 = before.get(stage, [0.0, 0.0])
        s1, c1 = after.get(stage, [0.0, 0.0])
        out[f"{stage}_ms"] = (s1 - s0) / (c1 - c0) if c1 > c0 else None
    return out


def load(port, name, reqs, clients, requests, max_seconds):
    from serving.client import GrpcClient
    lat, errors = [], []
    lock = threading.Lock()
    counter = [0]
    deadline = time.time() + max_seconds

    def worker():
        c = GrpcClient(f"127.0.0.1:{port}", name)
        while time.time() < deadline:
            with lock:
                if counter[0] >= requests:
                    break
                req = reqs[counter[0] % len(reqs)]
                counter[0] += 1
            t0 = time.perf_counter()
            try:
                c.predict_stub.Predict(req, timeout=60)
                with lock:
                    lat.append(time.perf_counter() - t0)
            except Exception as e:  # counted and reported, never hidden
                with lock:
                    errors.append(repr(e)[:200])
        c.close()
    t0 = time.time()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - t0
    ms = np.array(lat) * 1000 if lat else np.zeros(1)
    return {"requests": len(lat) + len(errors), "errors": len(errors),
            "error_samples": errors[:3], "seconds": round(wall, 1),
            "throughput_rps": len(lat) / wall, "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)), "p99_ms": float(np.percentile(ms, 99)),
            "request_bytes": int(np.mean([r.ByteSize() for r in reqs]))}
