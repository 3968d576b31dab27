"""Crowd scenarios of `benchmarks/serving_faults.py` against `seminar serve` (a subprocess):

- slow: `--slow` REST clients each send a request's headers and then one body byte every
  2 s (reconnecting when cut), beside 2 gRPC + 2 REST normal clients, for `--crowd-seconds`;
  reported: the normal clients' failures and p99 against their unloaded p99 (same run), when
  the slow clients were cut, the server's peak RSS;
- limit: twice the server's connection limit of slow clients: how many were refused with
  503 and how fast, the gRPC clients' failures and p99 meanwhile;
- huge: `--huge` concurrent REST requests of `--huge-mb` MB each (valid JSON of base64
  Examples): how many were served, refused (503 / 413) or failed, the server alive after,
  its peak RSS.
"""
import base64
import collections
import json
import select
import socket
import threading
import time
import urllib.request

import numpy as np

HEAD = ("POST /v1/models/seminar:predict HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/json\r\nContent-Length: {n}\r\n\r\n")


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


class SlowClient(threading.Thread):
    """Headers, then a body byte every `every` s; records (connected, cut, status line)."""

    def __init__(self, port, stop, every=2.0, reconnect=True):
        super().__init__(daemon=True)
        self.port, self.stop, self.every, self.reconnect = port, stop, every, reconnect
        self.cuts = []

    def run(self):
        while not self.stop.is_set():
            t0 = time.time()
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            except OSError as e:
                self.cuts.append((t0, time.time(), f"connect: {e}"))
                time.sleep(0.5)
                continue
            status = ""
            try:
                s.sendall(HEAD.format(n=100_000).encode())
                s.settimeout(self.every)
                while not self.stop.is_set():
                    try:
                        got = s.recv(4096)  # an answer (408 / 503) or the close
                        status = got.split(b"\r\n", 1)[0].decode(errors="replace") or "closed"
                        break
                    except socket.timeout:
                        s.sendall(b" ")
            except OSError as e:
                status = f"closed: {type(e).__name__}"
            finally:
                s.close()
            if status:
                self.cuts.append((t0, time.time(), status))
            if not self.reconnect:
                return


class Normal(threading.Thread):
    """A gRPC or REST client calling back to back; records (time, seconds, ok)."""

    def __init__(self, kind, gport, rport, examples, stop):
        super().__init__(daemon=True)
        self.kind, self.stop, self.calls = kind, stop, []
        self.errors = collections.Counter()
        if kind == "grpc":
            from serving.client import GrpcClient
            c = GrpcClient(f"127.0.0.1:{gport}", "seminar", timeout=30)
            req = c.predict_request(examples)
            self.call = lambda: c.predict_stub.Predict(req, timeout=30)
        else:
            from serving.client import RestClient
            c = RestClient(f"http://127.0.0.1:{rport}", "seminar", timeout=30)
            self.call = lambda: c.predict_examples(examples)

    def run(self):
        while not self.stop.is_set():
            t = time.time()
            try:
                self.call()
                ok = True
            except Exception as e:  # counted as a failure of a normal client, never hidden
                ok = False
                self.errors[f"{self.kind}: {type(e).__name__}: {str(e)[:80]}"] += 1
                time.sleep(0.05)
            self.calls.append((t, time.time() - t, ok))


def _normal_stats(clients, t0, t1):
    calls = [c for n in clients for c in n.calls if t0 <= c[0] < t1]
    lat = np.array([c[1] for c in calls if c[2]]) * 1000
    return {"calls": len(calls), "failed": sum(not c[2] for c in calls),
            "p50_ms": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 2) if len(lat) else None}


def slow_clients(proc, gport, rport, examples, slow=200, seconds=60.0, warm=10.0):
    """Normal clients alone for `warm` s (their unloaded p99), then beside `slow` slow ones."""
    stop = threading.Event()
    normal = [Normal(k, gport, rport, examples, stop) for k in ("grpc", "grpc", "rest", "rest")]
    for n in normal:
        n.start()
    t0 = time.time()
    time.sleep(warm)
    t1 = time.time()
    crowd_stop = threading.Event()
    crowd = [SlowClient(rport, crowd_stop) for _ in range(slow)]
    for c in crowd:
        c.start()
    time.sleep(seconds)
    t2 = time.time()
    crowd_stop.set()
    stop.set()
    for t in normal + crowd:
        t.join(timeout=30)
    unloaded, loaded = _normal_stats(normal, t0, t1), _normal_stats(normal, t1, t2)
    cut = [c for s in crowd for c in s.cuts]
    held = np.array([c[1] - c[0] for c in cut]) if cut else np.zeros(1)
    statuses = {}
    for c in cut:
        key = c[2][:40]
        statuses[key] = statuses.get(key, 0) + 1
    return {"scenario": f"{slow} slow REST clients + 2 gRPC + 2 REST, {seconds:.0f} s",
            "normal_failed": loaded["failed"], "normal_calls": loaded["calls"],
            "normal_errors": dict(sum((n.errors for n in normal), collections.Counter())),
            "unloaded_p99_ms": unloaded["p99_ms"], "loaded_p99_ms": loaded["p99_ms"],
            "p99_ratio": round(loaded["p99_ms"] / unloaded["p99_ms"], 2)
            if loaded["p99_ms"] and unloaded["p99_ms"] else None,
            "slow_cuts": len(cut), "slow_held_s_median": round(float(np.median(held)), 2),
            "slow_held_s_max": round(float(held.max()), 2), "slow_answers": statuses,
            "peak_rss_mb": peak_rss_mb(proc.pid)}


def connection_limit(proc, gport, rport, examples, limit, seconds=15.0):
    """2 x `limit` slow connections opened at once while 2 gRPC clients call."""
    stop = threading.Event()
    normal = [Normal("grpc", gport, rport, examples, stop) for _ in range(2)]
    for n in normal:
        n.start()
    time.sleep(3)
    t0 = time.time()
    socks, answers = [], []
    for _ in range(2 * limit):
        try:
            s = socket.create_connection(("127.0.0.1", rport), timeout=5)
            s.sendall(HEAD.format(n=100_000).encode())
            socks.append(s)
        except OSError as e:
            answers.append((f"connect: {type(e).__name__}", 0.0))
    opened = time.time()
    pending, first = set(socks), {}
    while pending and time.time() - opened < 2.0:  # an admitted one stays silent
        ready, _, _ = select.select(list(pending), [], [], 0.1)
        for s in ready:
            try:
                got = s.recv(4096)
            except OSError as e:
                got = f"reset: {type(e).__name__}".encode()
            first[s] = (got.split(b"\r\n", 1)[0].decode(errors="replace") or "closed",
                        time.time() - opened)
            pending.discard(s)
    answers += list(first.values())
    time.sleep(seconds)
    t1 = time.time()
    stop.set()
    for n in normal:
        n.join(timeout=30)
    for s in socks:
        s.close()
    refused = [a for a in answers if " 503 " in a[0]]
    grpc = _normal_stats(normal, t0, t1)
    return {"scenario": f"{2 * limit} slow connections, limit {limit}",
            "refused_503": len(refused), "admitted": 2 * limit - len(answers),
            "refused_within_ms": round(1000 * max((a[1] for a in refused), default=0), 1),
            "other_answers": dict(collections.Counter(a[0] for a in answers
                                                      if " 503 " not in a[0])),
            "grpc_failed": grpc["failed"], "grpc_calls": grpc["calls"],
            "grpc_p99_ms": grpc["p99_ms"], "peak_rss_mb": peak_rss_mb(proc.pid)}


def _server_codes(rport):
    """REST requests by status code from the server's own Prometheus counters."""
    url = f"http://127.0.0.1:{rport}/monitoring/prometheus/metrics"
    with urllib.request.urlopen(url, timeout=30) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("seminar_serving_requests_total{") and 'api="rest"' in line:
            code = line.split('code="', 1)[1].split('"', 1)[0]
            out[code] = out.get(code, 0) + int(float(line.rsplit(" ", 1)[1]))
    return out


def huge_requests(proc, rport, examples, n=50, mb=60):
    """`n` concurrent REST requests of ~`mb` MB: served, refused or failed; alive after."""
    import urllib.error
    import urllib.request
    b64 = [base64.b64encode(e).decode() for e in examples]
    per = len(json.dumps({"b64": b64[0]})) + 1
    rows = max(1, int(mb * 2**20 / per))
    body = json.dumps({"instances": [{"b64": b64[i % len(b64)]} for i in range(rows)]}).encode()
    results = []

    def one():
        t = time.time()
        req = urllib.request.Request(f"http://127.0.0.1:{rport}/v1/models/seminar:predict",
                                     data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                r.read()
                results.append((r.status, time.time() - t))
        except urllib.error.HTTPError as e:
            results.append((e.code, time.time() - t))
        except OSError as e:  # the client saw the refusal as a reset while still uploading
            reason = getattr(e, "reason", e)
            results.append((f"{type(e).__name__}: {type(reason).__name__}", time.time() - t))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    alive = proc.poll() is None
    server_says = _server_codes(rport) if alive else {}
    codes = {}
    for code, _ in results:
        codes[str(code)] = codes.get(str(code), 0) + 1
    return {"scenario": f"{n} concurrent {len(body) / 2**20:.0f} MB REST requests "
            f"({rows} Examples each)", "client_saw": codes,
            "server_answered": server_says, "server_alive": alive,
            "slowest_s": round(max(r[1] for r in results), 2),
            "peak_rss_mb": peak_rss_mb(proc.pid) if alive else None}
