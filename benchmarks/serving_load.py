"""Load test of the local TF-Serving-compatible server over gRPC: the `rank` format (one
user context + N candidates) against the per-candidate format (N full Examples), PQ and exact.

For each L in --Ls, a SEMINAR ranker (d=64, K=100, random weights: latency does not depend on
training) is exported twice (GSU "pq" with a fused S=16 codebook, and "exact"; `--xla` exports
with XLA), the server is started in a subprocess on loopback, and `--clients` concurrent gRPC
clients send requests drawn round-robin from `--users` distinct users (distinct histories)
until `--requests` requests or `--max-seconds` have passed. For each N in --Ns both formats
run in the same server session (the per-candidate format only where a request fits
`--max-request-mb`). Reports candidates scored per second, requests/s, p50/p95/p99 latency,
request bytes and errors; per (L, N) `rank_over_per_candidate` is the ratio of candidates
scored per second. Loopback only; bounded in count and time.

    python benchmarks/serving_load.py [--Ls 1000 10000] [--Ns 100 1000] [--requests 10000]
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import seminar_tf  # noqa: E402,F401
import numpy as np  # noqa: E402

from benchmarks.common import machine, markdown_table, write_results  # noqa: E402


def make_exports(work, L, items=20000, xla=False):
    from seminar_tf.workflows import export, training
    from seminar_tf.config import SeminarConfig
    from seminar_tf.models.registry import build_model, model_config
    from seminar_tf.pq.build import build_codebooks, save_codebooks
    base = os.path.join(work, f"models-L{L}{'-xla' if xla else ''}")
    if os.path.isdir(os.path.join(base, "seminar_pq")):
        return base
    cfg = model_config("seminar", SeminarConfig().replace(
        data=dict(max_seq_len=L, item_vocab_size=items, query_vocab_size=5000,
                  attr_vocab_size=2000, user_vocab_size=10000, text_dim=32, image_dim=32),
        model=dict(top_k=100), pq=dict(num_subspaces=16, combine_parts=True)))
    rng = np.random.default_rng(0)
    table = {"text": rng.normal(size=(items, 32)).astype(np.float32),
             "text_mask": np.ones(items, bool),
             "image": rng.normal(size=(items, 32)).astype(np.float32),
             "image_mask": np.ones(items, bool),
             "attrs": rng.integers(1, 2000, size=(items, 4)),
             "title": np.zeros((items, 8), np.int64)}
    model = build_model(cfg, item_table=table)
    model_dir = os.path.join(work, f"model-L{L}")
    if os.path.exists(model_dir):
        import shutil
        shutil.rmtree(model_dir)
    training.save_model_dir(model, model_dir, "seminar", work)
    pq, codes = build_codebooks(model, table["attrs"], cfg.pq, sample_size=20000)
    from seminar_tf.workflows.model_dir import model_manifest
    save_codebooks(model_dir, pq, codes, {"pq_config": cfg.pq.__dict__},
                   model_fingerprint=model_manifest(model_dir)["fingerprint"])
    for gsu in ("pq", "exact"):
        export.export_model(training.load_model(model_dir, gsu=gsu), base, f"seminar_{gsu}",
                            version=1, xla=xla)
    return base


def user_requests(L, N, users, items=20000, seed=0):
    """Per user: (rank PredictRequest inputs, per-candidate Examples) with a distinct history."""
    from seminar_tf.features import FeatureContract
    from serving.client import examples_from_events, rank_request_from_events
    c = FeatureContract(L, 6, 4, items, 5000, 2000, 10000)
    out = []
    for u in range(users):
        rng = np.random.default_rng(seed + u)
        history = [{"item": int(i), "attrs": [int(a) for a in rng.integers(1, 2000, 4)],
                    "query": [int(t) for t in rng.integers(2, 5000, int(rng.integers(0, 3)))],
                    "source": int(rng.integers(1, 3)), "age_seconds": float(g)}
                   for i, g in zip(rng.integers(2, items, L), np.sort(rng.random(L) * 1e7)[::-1])]
        cands = [{"item": int(i), "attrs": [int(a) for a in rng.integers(1, 2000, 4)],
                  "query": [7, 9], "source": 2} for i in rng.integers(2, items, N)]
        context, listed = rank_request_from_events(c, 3 + u, history, cands, query=[7, 9],
                                                   source=2)
        per = examples_from_events(c, 3 + u, history, cands) if L * N <= 10**6 else None
        out.append((context, listed, per))
    return out


def build_requests(name, users, fmt):
    """gRPC PredictRequests (one per user) of format "rank" or "per_candidate"."""
    from serving.client import GrpcClient
    c = GrpcClient("127.0.0.1:1", name)
    if fmt == "rank":
        return [c.rank_request([ctx], [listed]) for ctx, listed, _ in users]
    return [c.predict_request(per) for _, _, per in users]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(base, name):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "seminar_tf.cli", "serve", "--model-base",
                             base, "--name", name, "--grpc-port", str(port), "--rest-port",
                             str(free_port())], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    line = ""
    while '"ready"' not in line:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise RuntimeError("server exited")
    return proc, port


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


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--Ls", type=int, nargs="*", default=[1000, 10000])
    p.add_argument("--Ns", type=int, nargs="*", default=[100, 1000])
    p.add_argument("--requests", type=int, default=10000,
                   help="rank requests at the acceptance shape (largest L, N=100)")
    p.add_argument("--requests-other", type=int, default=2000,
                   help="rank requests at the other (L, N)")
    p.add_argument("--per-candidate-requests", type=int, default=300)
    p.add_argument("--max-seconds", type=float, default=240)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--users", type=int, default=16, help="distinct users (histories)")
    p.add_argument("--max-request-mb", type=float, default=32,
                   help="the per-candidate format only where a request fits")
    p.add_argument("--gsus", nargs="*", default=["pq", "exact"])
    p.add_argument("--xla", action="store_true", help="export with XLA")
    p.add_argument("--name", default="serving_load", help="results file name")
    p.add_argument("--work", default=os.path.join(ROOT, "runs", "serving_bench"))
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = p.parse_args()
    os.makedirs(args.work, exist_ok=True)
    rows, ratios = [], []
    for L in args.Ls:
        base = make_exports(args.work, L, xla=args.xla)
        for gsu in args.gsus:
            name = f"seminar_{gsu}"
            proc, port = start_server(base, name)
            try:
                for N in args.Ns:
                    users = user_requests(L, N, args.users)
                    per_fmt = {}
                    for fmt in ("rank", "per_candidate"):
                        if fmt == "per_candidate" and (users[0][2] is None or len(
                                users[0][2][0]) * N > args.max_request_mb * 2**20):
                            print(f"L={L} N={N}: per-candidate request over "
                                  f"{args.max_request_mb} MB, not run", flush=True)
                            continue
                        reqs = build_requests(name, users, fmt)
                        main_shape = L == max(args.Ls) and N == min(args.Ns)
                        n_req = ((args.requests if main_shape else args.requests_other)
                                 if fmt == "rank" else args.per_candidate_requests)
                        r = load(port, name, reqs, args.clients, n_req, args.max_seconds)
                        r.update({"L": L, "N": N, "format": fmt, "gsu": gsu, "xla": args.xla,
                                  "clients": args.clients, "users": args.users,
                                  "candidates_per_s": r["throughput_rps"] * N})
                        print(json.dumps(r), flush=True)
                        rows.append(r)
                        per_fmt[fmt] = r
                    if len(per_fmt) == 2:
                        ratios.append({"L": L, "N": N, "gsu": gsu, "rank_over_per_candidate":
                                       per_fmt["rank"]["candidates_per_s"]
                                       / per_fmt["per_candidate"]["candidates_per_s"]})
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    cols = ["L", "N", "format", "gsu", "requests", "errors", "candidates_per_s",
            "throughput_rps", "p50_ms", "p99_ms", "request_bytes", "seconds"]
    table = markdown_table(rows, cols) + "\n\n" + markdown_table(
        ratios, ["L", "N", "gsu", "rank_over_per_candidate"])
    write_results(args.name, {"machine": machine(), "rows": rows,
                                   "rank_over_per_candidate": ratios, "config": vars(args)},
                  table, args.out)


if __name__ == "__main__":
    main()
