"""Load test of the local TF-Serving-compatible server over gRPC, PQ vs exact GSU exports.

For each L in --Ls, a SEMINAR ranker (d=64, K=100, random weights: latency does not depend on
training) is exported twice (GSU "pq" with a fused S=16 codebook... and "exact"), the server is
started in a subprocess on loopback, and `--clients` concurrent gRPC clients send requests of
`--candidates` serialized Examples until `--requests` requests or `--max-seconds` have passed.
Reports throughput, p50/p95/p99 latency, errors, and the in-process SavedModel call latency for
the same inputs. Loopback only; bounded in count and time.

    python benchmarks/serving_load.py [--Ls 1000 10000] [--requests 10000] [--clients 4]
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
import tensorflow as tf  # noqa: E402

from benchmarks.common import machine, markdown_table, write_results  # noqa: E402


def make_exports(work, L, items=20000):
    from seminar_tf import export, training
    from seminar_tf.config import SeminarConfig
    from seminar_tf.models.registry import build_model, model_config
    from seminar_tf.pq.build import build_codebooks, save_codebooks
    base = os.path.join(work, f"models-L{L}")
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
    training.save_model_dir(model, model_dir, "seminar", work)
    pq, codes = build_codebooks(model, table["attrs"], cfg.pq, sample_size=20000)
    save_codebooks(model_dir, pq, codes, {"pq_config": cfg.pq.__dict__})
    for gsu in ("pq", "exact"):
        export.export_model(training.load_model(model_dir, gsu=gsu), base, f"seminar_{gsu}",
                            version=1)
    return base


def request_examples(L, n, items=20000, seed=0):
    from seminar_tf.features import FeatureContract
    c = FeatureContract(L, 6, 4, items, 5000, 2000, 10000)
    rng = np.random.default_rng(seed)
    hist = list(rng.integers(2, items, size=L))
    attrs = [list(rng.integers(1, 2000, size=4)) for _ in range(L)]
    gaps = list(np.sort(rng.random(L) * 1e7)[::-1])
    return [c.make_example(user_id=3, target_item=int(rng.integers(2, items)), label=0.0,
                           target_attrs=list(rng.integers(1, 2000, size=4)), hist_items=hist,
                           hist_attrs=attrs, hist_time_gaps=gaps).SerializeToString()
            for _ in range(n)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load(base, name, examples, clients, requests, max_seconds):
    from serving.client import GrpcClient
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "seminar_tf.cli", "serve", "--model-base",
                             base, "--name", name, "--grpc-port", str(port), "--rest-port",
                             str(free_port())], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        line = ""
        while '"ready"' not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                raise RuntimeError("server exited")
        lat, errors = [], []
        lock = threading.Lock()
        counter = [0]
        deadline = time.time() + max_seconds

        def worker():
            c = GrpcClient(f"127.0.0.1:{port}", name)
            req = c.predict_request(examples)
            while time.time() < deadline:
                with lock:
                    if counter[0] >= requests:
                        break
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
        ms = np.array(lat) * 1000
        return {"requests": len(lat) + len(errors), "errors": len(errors),
                "error_samples": errors[:3], "seconds": round(wall, 1),
                "throughput_rps": len(lat) / wall, "p50_ms": float(np.percentile(ms, 50)),
                "p95_ms": float(np.percentile(ms, 95)), "p99_ms": float(np.percentile(ms, 99))}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def in_process_ms(path, examples, repeats=30):
    loaded = tf.saved_model.load(path)
    fn = loaded.signatures["serving_default"]
    x = tf.constant(examples)
    for _ in range(3):
        fn(examples=x)
    t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(examples=x)["score"].numpy()
        t.append(time.perf_counter() - t0)
    return float(np.median(t) * 1000)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--Ls", type=int, nargs="*", default=[1000, 10000])
    p.add_argument("--requests", type=int, default=10000)
    p.add_argument("--max-seconds", type=float, default=300)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--candidates", type=int, default=4)
    p.add_argument("--work", default=os.path.join(ROOT, "runs", "serving_bench"))
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = p.parse_args()
    os.makedirs(args.work, exist_ok=True)
    rows = []
    for L in args.Ls:
        base = make_exports(args.work, L)
        examples = request_examples(L, args.candidates)
        for gsu in ("pq", "exact"):
            name = f"seminar_{gsu}"
            r = load(base, name, examples, args.clients, args.requests, args.max_seconds)
            r.update({"L": L, "gsu": gsu, "clients": args.clients,
                      "candidates_per_request": args.candidates,
                      "in_process_ms": in_process_ms(os.path.join(base, name, "1"),
                                                     examples)})
            print(json.dumps(r), flush=True)
            rows.append(r)
    cols = ["L", "gsu", "requests", "errors", "throughput_rps", "p50_ms", "p95_ms", "p99_ms",
            "in_process_ms", "seconds"]
    write_results("serving_load", {"machine": machine(), "rows": rows, "config": vars(args)},
                  markdown_table(rows, cols), args.out)


if __name__ == "__main__":
    main()
