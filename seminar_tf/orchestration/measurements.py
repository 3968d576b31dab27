"""Measurements the pipeline records beside its stages' outputs: the PQ recall sweep and the
GSU latency by history length (codebooks stage), and the served-model check (serve stage).
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from typing import Callable, Dict, List


def recall_sweep(model_dir: str, pq_cfg: Dict) -> List[Dict]:
    """recall@K of PQ vs exact for several sub-space counts (codebooks rebuilt each time,
    the configured ones restored at the end)."""
    from seminar_tf.workflows.codebook_build import build_for_model_dir, pq_recall
    rows = []
    base_s = pq_cfg.get("num_subspaces", 4)
    for s in sorted({1, 2, base_s, 8}):
        info = build_for_model_dir(model_dir, **{**pq_cfg, "num_subspaces": s})
        r = pq_recall(model_dir, with_metrics=False, max_batches=4)
        rows.append({"S": s, "bytes_per_behaviour": info["bytes_per_behaviour"],
                     "recall_at_k": r["recall_at_k"]})
    build_for_model_dir(model_dir, **pq_cfg)
    return rows


def gsu_latency_by_length(work: str, lengths=(100, 1000, 10000), batch: int = 32,
                          d: int = 64, S: int = 16) -> List[Dict]:
    """Median ms of exact (cached fused keys) vs PQ (fused codebook, XLA) scoring + top-100."""
    import numpy as np
    import tensorflow as tf
    from seminar_tf.layers.retrieval.pq import pq_item_scores
    rng = np.random.default_rng(0)
    rows = []
    for L in lengths:
        u = tf.constant(rng.normal(size=(batch, d)).astype(np.float32))
        keys = tf.constant(rng.normal(size=(batch, L, d)).astype(np.float32))
        books = tf.constant(rng.normal(size=(1, S, 256, d // S)).astype(np.float32))
        codes = tf.constant(rng.integers(0, 256, size=(batch, L, 1, S)).astype(np.uint8))
        k = min(100, L)
        exact = tf.function(lambda: tf.math.top_k(tf.einsum("bd,bld->bl", u, keys), k))
        pq = tf.function(lambda: tf.math.top_k(pq_item_scores(u, books, codes), k),
                         jit_compile=True)
        row = {"L": L, "batch": batch}
        for name, fn in (("exact_ms", exact), ("pq_ms", pq)):
            for _ in range(2):
                fn()[1].numpy()
            times = []
            for _ in range(7):
                t0 = time.perf_counter()
                fn()[1].numpy()
                times.append(time.perf_counter() - t0)
            row[name] = round(1000 * float(np.median(times)), 3)
        rows.append(row)
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_and_query(base: str, name: str, data_dir: str, model_dir: str, requests: int = 20,
                    candidates: int = 50, log: Callable[[str], None] = print) -> Dict:
    """Starts `seminar serve` in a subprocess, sends gRPC Predict requests of candidate
    Examples with the tensorflow-serving-api client, compares with the in-process model,
    measures latency, and stops the server."""
    import numpy as np
    import tensorflow as tf
    from seminar_tf import features as F
    from seminar_tf.workflows import training
    from seminar_tf.data.dataset import serialized_examples
    from serving.client import GrpcClient
    grpc_port, rest_port = _free_port(), _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "seminar_tf.cli", "serve", "--model-base",
                             base, "--name", name, "--grpc-port", str(grpc_port),
                             "--rest-port", str(rest_port)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        line = ""
        deadline = time.time() + 300
        while time.time() < deadline and '"ready"' not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                raise RuntimeError("the server exited before it was ready")
        log(f"[serve] server up: gRPC 127.0.0.1:{grpc_port}, REST 127.0.0.1:{rest_port}")
        records = list(serialized_examples(data_dir, "candidates", requests * candidates))
        client = GrpcClient(f"127.0.0.1:{grpc_port}", name)
        lat, scores = [], []
        for i in range(requests):
            batch = records[i * candidates:(i + 1) * candidates]
            if not batch:
                break
            t0 = time.perf_counter()
            out = client.predict_examples(batch)
            lat.append((time.perf_counter() - t0) * 1000)
            scores.append(out["score"])
        model = training.load_model(model_dir, gsu="pq")
        contract = F.FeatureContract.from_config(model.config.data)
        first = records[:candidates]
        local = model(contract.parse_examples(tf.constant(first)))["score"].numpy()
        max_diff = float(np.max(np.abs(local - scores[0])))
        client.close()
        sample = [round(float(x), 4) for x in scores[0][:5]]
        log(f"[serve] {len(lat)} gRPC Predict requests x {candidates} candidates; first "
            f"scores {sample}; p50 {np.percentile(lat, 50):.1f} ms, p99 "
            f"{np.percentile(lat, 99):.1f} ms; |served - in-process| <= {max_diff:.2e}")
        return {"requests": len(lat), "candidates_per_request": candidates,
                "latency_ms_p50": float(np.percentile(lat, 50)),
                "latency_ms_p99": float(np.percentile(lat, 99)),
                "first_scores": sample, "max_abs_diff_vs_in_process": max_diff,
                "grpc_port": grpc_port}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log("[serve] server stopped")
