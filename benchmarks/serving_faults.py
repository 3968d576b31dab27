"""Faults under load: version swap, server kill / restart, and crowds of slow or huge
requests (`benchmarks/crowds.py`) against `seminar serve`.

A SEMINAR ranker (random weights, L=--L, PQ GSU) is exported as version 1 of model "seminar";
the server (`seminar serve`, a subprocess on loopback) serves it while `--clients` threads
send Predict requests of `--candidates` Examples. Then:
1. swap: version 2 is copied in file by file (not an atomic rename: the server must wait for
   the copy to settle), clients must move to it, and version 1 is deleted; expected: 0 failed
   calls, and no response from a half-copied version;
2. kill: the server process gets SIGKILL and is restarted on the same ports; clients see
   UNAVAILABLE in the gap and succeed after; reported: the gap (kill -> first success) and
   the failures by status;
3. slow / limit / huge: the crowd scenarios of `benchmarks/crowds.py`, each on a fresh
   server (its own peak RSS): 200 slow REST clients beside 2 gRPC + 2 REST normal ones for
   60 s; twice the connection limit of slow connections; 50 concurrent 60 MB requests.
Loopback only; bounded in time. Writes benchmarks/results/serving_faults.{json,md}.

    python benchmarks/serving_faults.py [--L 1000] [--clients 4] [--phase-seconds 8]
        [--scenarios swap,slow,limit,huge]
"""
import argparse
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import seminar_tf  # noqa: E402,F401
import grpc  # noqa: E402

from benchmarks.common import machine, markdown_table, write_results  # noqa: E402
from benchmarks.serving_load import free_port, make_exports, user_requests  # noqa: E402


def request_examples(L, N):
    """One user's N per-candidate Examples with a distinct history of L behaviours."""
    return user_requests(L, N, 1)[0][2]


def start_server(base, grpc_port, rest_port, poll, stderr=subprocess.DEVNULL,
                 name="seminar", extra=()):
    proc = subprocess.Popen([sys.executable, "-m", "seminar_tf.cli", "serve", "--model-base",
                             base, "--name", name, "--grpc-port", str(grpc_port),
                             "--rest-port", str(rest_port), "--poll-seconds", str(poll),
                             *extra],
                            stdout=subprocess.PIPE, stderr=stderr, text=True)
    line = ""
    while '"ready"' not in line:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise RuntimeError("server exited before it was ready")
    return proc


class Load:
    """Client threads that record (time, status, version) of every call until stopped."""

    def __init__(self, port, examples, clients):
        from serving.client import GrpcClient
        self.calls, self.lock, self.stop = [], threading.Lock(), threading.Event()
        self.clients = [GrpcClient(f"127.0.0.1:{port}", "seminar") for _ in range(clients)]
        self.request = self.clients[0].predict_request(examples)
        self.threads = [threading.Thread(target=self._run, args=(c,)) for c in self.clients]

    def _run(self, client):
        while not self.stop.is_set():
            t = time.time()
            try:
                resp = client.predict_stub.Predict(self.request, timeout=10)
                rec = (t, "OK", resp.model_spec.version.value)
            except grpc.RpcError as e:  # counted by status, never hidden
                rec = (t, e.code().name, None)
                time.sleep(0.05)  # a down server answers at once: do not spin
            with self.lock:
                self.calls.append(rec)

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()

    def window(self, t0, t1):
        with self.lock:
            return [c for c in self.calls if t0 <= c[0] < t1]


def summarize(phase, calls, **extra):
    by = collections.Counter(c[1] for c in calls)
    versions = collections.Counter(c[2] for c in calls if c[1] == "OK")
    return {"phase": phase, "calls": len(calls), "ok": by.get("OK", 0),
            "failed": len(calls) - by.get("OK", 0),
            "failures_by_status": {k: v for k, v in by.items() if k != "OK"},
            "versions_served": {str(k): v for k, v in sorted(versions.items())}, **extra}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--L", type=int, default=1000)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--candidates", type=int, default=4)
    p.add_argument("--phase-seconds", type=float, default=8.0)
    p.add_argument("--work", default=os.path.join(ROOT, "runs", "serving_faults"))
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    p.add_argument("--scenarios", default="swap,slow,limit,huge",
                   help="comma list of: swap (swap + kill), slow, limit, huge")
    p.add_argument("--slow", type=int, default=200, help="slow REST clients")
    p.add_argument("--crowd-seconds", type=float, default=60.0)
    p.add_argument("--limit", type=int, default=64, help="--max-connections of `limit`")
    p.add_argument("--huge", type=int, default=50, help="concurrent huge requests")
    p.add_argument("--huge-mb", type=float, default=60.0)
    args = p.parse_args()
    scenarios = args.scenarios.split(",")
    src = os.path.join(make_exports(args.work, args.L), "seminar_pq", "1")
    base = os.path.join(args.work, "base")
    shutil.rmtree(base, ignore_errors=True)
    shutil.copytree(src, os.path.join(base, "seminar", "1"))
    examples = request_examples(args.L, args.candidates)
    rows, crowd = [], []
    if "swap" in scenarios:
        rows = swap_and_kill(args, src, base, examples)
    for name in ("slow", "limit", "huge"):
        if name in scenarios:
            crowd.append(run_crowd(name, args, base, examples))
    for r in rows + crowd:
        print(json.dumps(r))
    cols = ["phase", "calls", "ok", "failed", "failures_by_status", "versions_served",
            "recovery_seconds", "served_v2_before_copy_finished"]
    md = markdown_table(rows, cols) if rows else ""
    for r in crowd:
        md += f"\n\n**{r['scenario']}**\n\n" + markdown_table(
            [{"figure": k, "value": json.dumps(v)} for k, v in r.items() if k != "scenario"],
            ["figure", "value"])
    write_results("serving_faults", {"machine": machine(), "rows": rows, "crowds": crowd,
                                     "config": vars(args)}, md, args.out)


def run_crowd(name, args, base, examples):
    """One crowd scenario on a fresh server (default bounds unless the scenario sets one)."""
    from benchmarks import crowds
    gport, rport = free_port(), free_port()
    extra = {"limit": ["--max-connections", str(args.limit)],
             "huge": ["--max-batch", "65536"]}.get(name, [])
    proc = start_server(base, gport, rport, poll=0.5, extra=extra)
    try:
        if name == "slow":
            return crowds.slow_clients(proc, gport, rport, examples, args.slow,
                                       args.crowd_seconds)
        if name == "limit":
            return crowds.connection_limit(proc, gport, rport, examples, args.limit)
        return crowds.huge_requests(proc, rport, examples, args.huge, args.huge_mb)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def swap_and_kill(args, src, base, examples):
    gport, rport = free_port(), free_port()
    proc = start_server(base, gport, rport, poll=0.5)
    load = Load(gport, examples, args.clients).start()
    rows = []
    try:
        time.sleep(args.phase_seconds / 2)
        # 1. swap: copy file by file into 2/, wait for clients on 2, delete 1
        t0 = time.time()
        dst = os.path.join(base, "seminar", "2")
        for root, _, files in os.walk(src):
            os.makedirs(os.path.join(dst, os.path.relpath(root, src)), exist_ok=True)
            for f in sorted(files):
                shutil.copy(os.path.join(root, f), os.path.join(dst, os.path.relpath(
                    root, src), f))
                time.sleep(0.2)  # a slow copy: the server sees it half done several times
        copied = time.time()
        while not any(c[2] == 2 for c in load.window(copied, time.time() + 1)):
            if time.time() - copied > 120:
                raise RuntimeError("clients never reached version 2")
            time.sleep(0.1)
        switched = time.time()
        shutil.rmtree(os.path.join(base, "seminar", "1"))
        time.sleep(args.phase_seconds / 2)
        t1 = time.time()
        rows.append(summarize("version swap", load.window(t0, t1),
                              copy_seconds=round(copied - t0, 2),
                              switch_after_copy_s=round(switched - copied, 2)))
        early = [c for c in load.window(t0, copied) if c[2] == 2]
        rows[-1]["served_v2_before_copy_finished"] = len(early)
        # 2. kill -9 and restart on the same ports
        kill_t = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc = start_server(base, gport, rport, poll=0.5)
        ready = time.time()
        while not any(c[1] == "OK" for c in load.window(ready - 1e-3, time.time() + 1)):
            time.sleep(0.05)
        recovered = min(c[0] for c in load.window(kill_t, time.time() + 1) if c[1] == "OK")
        time.sleep(args.phase_seconds / 2)
        rows.append(summarize("kill + restart", load.window(kill_t, time.time()),
                              restart_to_ready_s=round(ready - kill_t, 2),
                              recovery_seconds=round(recovered - kill_t, 2)))
    finally:
        load.finish()
        proc.terminate()
        proc.wait(timeout=30)
    # version 2 stays the served one for the crowd scenarios
    return rows


if __name__ == "__main__":
    main()
