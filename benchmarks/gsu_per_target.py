"""Per-target GSU scoring: a retriever's own `call` against `call_many` with N = 1.

The forward core uses a GSU's per-target `call` for one target per row only where the GSU
overrides it; this measures whether that is cheaper (PQ: one lookup table per target, against
decoding every behaviour's key). Random weights and codes; B targets, each with its own
distinct history of L behaviours.

    python benchmarks/gsu_per_target.py [--batch 64] [--lengths 1000 10000]

Prints a table and writes benchmarks/results/gsu_per_target.json and .md.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import seminar_tf  # noqa: E402,F401  (Keras 2 before TensorFlow)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.common import machine, median_seconds, write_results  # noqa: E402
from seminar_tf.config import SeminarConfig  # noqa: E402
from seminar_tf.models.registry import build_model, model_config  # noqa: E402


def median_ms(fn):
    return round(1000 * median_seconds(fn, repeats=7, warmup=1), 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lengths", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args()
    rows = []
    for L in args.lengths:
        cfg = model_config("seminar", SeminarConfig().replace(
            data=dict(max_seq_len=L, item_vocab_size=50_000, query_vocab_size=5_000),
            model=dict(embedding_dim=64, num_heads=4, top_k=100)))
        cfg = cfg.replace(model={"gsu": "pq"}, pq=dict(num_subspaces=16, num_codewords=256))
        model = build_model(cfg)
        rng = np.random.default_rng(0)
        gsu = model.gsu
        gsu.set_codebooks(rng.normal(size=gsu.codebooks.shape).astype(np.float32),
                          rng.integers(0, 256, size=gsu.item_codes.shape))
        B, Q = args.batch, cfg.data.max_query_tokens
        inputs = {"target": tf.constant(rng.normal(size=(B, 64)).astype(np.float32)),
                  "hist_items": tf.constant(rng.integers(2, 50_000, size=(B, L))),
                  "hist_query": tf.constant(rng.integers(0, 5_000, size=(B, L, Q))
                                            * (rng.random((B, L, 1)) < 0.3)),
                  "mask": tf.ones([B, L], tf.bool)}
        many = dict(inputs, target=inputs["target"][:, None])
        per_target = tf.function(lambda: gsu(inputs)["indices"])
        via_many = tf.function(lambda: gsu.call_many(many)["indices"])
        row = {"L": L, "batch": B, "bytes_per_behaviour": 16,
               "per_target_call_ms": median_ms(lambda: per_target().numpy()),
               "call_many_n1_ms": median_ms(lambda: via_many().numpy())}
        row["speedup"] = round(row["call_many_n1_ms"] / row["per_target_call_ms"], 2)
        rows.append(row)
        print(f"L={L:>6} B={B}: per-target call {row['per_target_call_ms']:8.2f} ms   "
              f"call_many(N=1) {row['call_many_n1_ms']:8.2f} ms   x{row['speedup']}")
    table = "\n".join(["| L | batch | per-target call ms | call_many(N=1) ms | ratio |",
                       "|---|---|---|---|---|"] + [
        f"| {r['L']} | {r['batch']} | {r['per_target_call_ms']} | {r['call_many_n1_ms']} | "
        f"{r['speedup']} |" for r in rows])
    write_results("gsu_per_target", {"machine": machine(), "tf": tf.__version__,
                                     "rows": rows}, table, args.out)


if __name__ == "__main__":
    main()
