"""GSU scoring + top-K: PQ lookup attention against exact attention and FAISS.

Formulations (d=64, 4 modalities + the query part, top-K=100), per (L, batch):
  a1  exact over per-modality float keys: gather the 4 per-modality key parts of each
      behaviour's item and its query tokens' embeddings, sum, dot with u, top-K
      (the work the model's exact GSU does per request);
  a2  exact over cached fused float keys (TWIN-style cache: d floats per behaviour), one dot
      product each, top-K: the best exact a production engineer would build;
  b   PQ lookup attention from cached codes (uint8 per sub-quantizer per behaviour):
      b/mm: the multi-modal codebooks, one per part (4 modalities + query) x S sub-spaces,
            5*S lookups per behaviour;
      b/fused: one codebook over the fused key, S lookups per behaviour;
      each plain TF and under XLA (jit_compile=True);
  c   FAISS IndexPQ (inner product, S sub-quantizers x 8 bits) with the *same* codebook and
      codes as b/fused, one index scan per request.
Recall@100 of every PQ variant against the exact top-100 is measured on *trained* keys: the
item key parts and query parts of a SEMINAR model trained here on generated data, with real
histories concatenated to length L and targets from the test split.

Writes benchmarks/results/pq_attention.{json,md} and pq_recall_vs_bytes.png.

    python benchmarks/pq_attention.py [--model-dir DIR] [--Ls 1000 10000 100000] [--quick]
"""
import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import seminar_tf  # noqa: E402,F401
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.common import machine, markdown_table, median_seconds, write_results  # noqa
from seminar_tf import features as F  # noqa: E402
from seminar_tf.layers.retrieval.pq import pq_item_scores  # noqa: E402
from seminar_tf.pq.quantizer import ProductQuantizer  # noqa: E402

K = 100
MAX_INTERMEDIATE_BYTES = 2 * 2**30


def trained_model(work, args):
    """A SEMINAR ranker (d=64) trained on generated data: pretrain + 1 epoch finetune."""
    from beam_pipelines import pipeline
    from seminar_tf import training
    from seminar_tf.data import synthetic
    from seminar_tf.pretraining import pretrain
    model_dir = os.path.join(work, "model")
    data = os.path.join(work, "data")
    if not os.path.exists(os.path.join(model_dir, "train.json")):
        raw = os.path.join(work, "raw")
        synthetic.generate(raw, synthetic.SyntheticConfig(num_users=args.users,
                                                          num_items=args.items, seq_len=250))
        pipeline.run("kuaisar", raw, data, max_seq_len=200, num_candidates=10)
        cfg = training.config_for("seminar", data, model=dict(top_k=50),
                                  train=dict(batch_size=256, epochs=1))
        pretrain(data, os.path.join(work, "psu"), cfg, verbose=2, steps=args.pretrain_steps)
        training.train("seminar", data, model_dir, cfg, init_from=os.path.join(work, "psu"),
                       verbose=2)
    return training.load_model(model_dir), data


def trained_keys(model, data, L, B, seed=0):
    """Per-behaviour key material of real histories concatenated to length L.

    Returns dict: u (B, d); item ids (B, L); tokens (B, L, Q); mask; per-modality item part
    table (V, M, d); query parts (B, L, d); fused keys (B, L, d).
    """
    from seminar_tf.data.dataset import make_dataset, split_pattern
    from seminar_tf.pq.build import item_key_parts
    contract = F.FeatureContract.from_config(model.config.data)
    batches = list(make_dataset(split_pattern(data, "train"), contract, batch_size=512,
                                deterministic=True).take(40))
    items = np.concatenate([b[F.HIST_ITEMS].numpy() for b in batches])
    tokens = np.concatenate([b[F.HIST_QUERY].numpy() for b in batches])
    real = items != 0
    flat_items, flat_tokens = items[real], tokens[real]
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(flat_items) - L, size=B) if len(flat_items) > L else \
        np.zeros(B, int)
    idx = (starts[:, None] + np.arange(L)[None, :]) % len(flat_items)
    hist_items, hist_tokens = flat_items[idx], flat_tokens[idx]
    test = next(iter(make_dataset(split_pattern(data, "test"), contract, batch_size=B,
                                  deterministic=True)))
    target = model.encode_target(test)["pair"]
    u = model.esu.query_in_key_space(target).numpy()
    if len(u) < B:
        u = u[rng.integers(0, len(u), size=B)]
    table = training_item_attrs(data)
    parts = item_key_parts(model, table)  # (V, M, d)
    qe = model.pair_encoder.query_encoder
    a = float(model.pair_encoder.pair_fusion.weight_of_query())
    q_parts = []
    for b in range(B):
        vec, _ = qe(tf.constant(hist_tokens[b]))
        q_parts.append(a * vec.numpy())
    q_parts = np.stack(q_parts).astype(np.float32)
    fused = parts[hist_items].sum(2) + q_parts
    return {"u": u.astype(np.float32), "items": hist_items, "tokens": hist_tokens,
            "parts": parts.astype(np.float32), "query_parts": q_parts,
            "fused": fused.astype(np.float32), "a": a,
            "token_table": qe.token_embedding.embeddings.numpy(),
            "no_query": qe.no_query.numpy()}


def training_item_attrs(data):
    from seminar_tf.training import load_item_table
    return load_item_table(data)["attrs"]


def exact_top(scores, k=K):
    return np.argsort(-scores, 1)[:, :k]


def recall(got, ref):
    return float(np.mean([len(set(g) & set(r)) / len(r) for g, r in zip(got, ref)]))


def quantizers(keys, S, C=256, sample=20000, seed=0):
    """b/mm: one PQ per part (4 item modality parts + the query part); b/fused: one PQ."""
    B, L, d = keys["fused"].shape
    rng = np.random.default_rng(seed)
    item_parts = keys["parts"][keys["items"]]  # (B, L, M, d)
    all_parts = np.concatenate([item_parts, keys["query_parts"][:, :, None]], 2)
    flat = all_parts.reshape(B * L, -1, d)
    pick = rng.choice(len(flat), min(sample, len(flat)), replace=False)
    mm = ProductQuantizer(S, C, iters=15, seed=seed).fit(flat[pick])
    fused_flat = keys["fused"].reshape(B * L, 1, d)
    fused = ProductQuantizer(S, C, iters=15, seed=seed).fit(fused_flat[pick])
    return {"mm": (mm, mm.encode(flat).reshape(B, L, -1, S)),
            "fused": (fused, fused.encode(fused_flat).reshape(B, L, 1, S))}


def rerank(approx, exact, factor):
    """PQ top-(factor*K) candidates, re-scored exactly (their K*factor float keys), top-K."""
    cand = exact_top(approx, factor * K)
    rescored = np.take_along_axis(exact, cand, 1)
    return np.take_along_axis(cand, np.argsort(-rescored, 1)[:, :K], 1)


def pq_recall_rows(keys, sizes=(4, 8, 16, 32)):
    """Recall@100 against exact top-100 for several S, both codebook layouts, plain and with
    an exact re-rank of the PQ top-200 / top-400 (only those behaviours' float keys read)."""
    exact = np.einsum("bd,bld->bl", keys["u"], keys["fused"])
    ref = exact_top(exact)
    rows = []
    for S in sizes:
        qs = quantizers(keys, S)
        for kind, (pq, codes) in qs.items():
            approx = pq_item_scores(tf.constant(keys["u"]), tf.constant(pq.codebooks),
                                    tf.constant(codes)).numpy()
            rows.append({"layout": kind, "S": S, "lookups_per_behaviour": int(
                codes.shape[2] * S), "bytes_per_behaviour": int(codes.shape[2] * S),
                "recall_at_100": recall(exact_top(approx), ref),
                "recall_at_100_rerank_top200": recall(rerank(approx, exact, 2), ref),
                "recall_at_100_rerank_top400": recall(rerank(approx, exact, 4), ref)})
    return rows


def timed_formulations(keys_small, L, B, S, repeats, with_faiss=True, seed=0):
    """Times a1, a2, b/mm, b/fused (+XLA) and FAISS on random tensors of the right shapes.

    Speed does not depend on the values; recall is measured separately on trained keys.
    """
    d = keys_small["u"].shape[1]
    V, M = keys_small["parts"].shape[:2]
    Vq, Q = keys_small["token_table"].shape[0], keys_small["tokens"].shape[2]
    rng = np.random.default_rng(seed)
    u = tf.constant(rng.normal(size=(B, d)).astype(np.float32))
    mask = tf.ones([B, L], tf.bool)
    out = {}

    def topk(scores):
        return tf.math.top_k(tf.where(mask, scores, -np.inf), K)

    a1_bytes = B * L * (M + Q) * d * 4
    if a1_bytes <= MAX_INTERMEDIATE_BYTES:
        parts = tf.constant(keys_small["parts"])
        tok_table = tf.constant(keys_small["token_table"])
        items = tf.constant(rng.integers(2, V, size=(B, L)), tf.int32)
        tokens = tf.constant(rng.integers(0, Vq, size=(B, L, Q)), tf.int32)
        a = keys_small["a"]

        @tf.function
        def a1():
            item = tf.reduce_sum(tf.gather(parts, items), 2)  # (B, L, d) from M parts
            te = tf.gather(tok_table, tokens)
            m = tf.cast(tokens != 0, tf.float32)[..., None]
            q = tf.reduce_sum(te * m, 2) / tf.maximum(tf.reduce_sum(m, 2), 1.0)
            return topk(tf.einsum("bd,bld->bl", u, item + a * q))
        out["a1"] = median_seconds(lambda: a1()[1].numpy(), repeats)
    fused = tf.constant(rng.normal(size=(B, L, d)).astype(np.float32))

    @tf.function
    def a2():
        return topk(tf.einsum("bd,bld->bl", u, fused))
    out["a2"] = median_seconds(lambda: a2()[1].numpy(), repeats)

    for kind, parts_n in (("mm", M + 1), ("fused", 1)):
        books = tf.constant(rng.normal(size=(parts_n, S, 256, d // S)).astype(np.float32))
        codes = tf.constant(rng.integers(0, 256, size=(B, L, parts_n, S)).astype(np.uint8))
        for xla in (False, True):
            fn = tf.function(lambda: topk(pq_item_scores(u, books, codes)), jit_compile=xla)
            out[f"b_{kind}{'_xla' if xla else ''}"] = median_seconds(
                lambda: fn()[1].numpy(), repeats)
        if kind == "fused" and with_faiss:
            out["c_faiss"] = faiss_time(books.numpy()[0], codes.numpy()[:, :, 0], u.numpy(),
                                        repeats)
    return out


def faiss_time(books, codes, u, repeats):
    """FAISS IndexPQ per request over that request's L codes (same codebook and codes)."""
    import faiss
    S, C, w = books.shape
    d = S * w
    indexes = []
    for b in range(codes.shape[0]):
        index = faiss.IndexPQ(d, S, 8, faiss.METRIC_INNER_PRODUCT)
        faiss.copy_array_to_vector(np.ascontiguousarray(books.reshape(-1)), index.pq.centroids)
        index.is_trained = True
        faiss.copy_array_to_vector(np.ascontiguousarray(codes[b].reshape(-1)), index.codes)
        index.ntotal = codes.shape[1]
        indexes.append(index)

    def run():
        for b, index in enumerate(indexes):
            index.search(u[b:b + 1], K)
    return median_seconds(run, repeats)


def faiss_agrees(keys, S=16):
    """FAISS's scores with our codebook/codes equal the TF LUT scores (same codes)."""
    import faiss
    pq, codes = quantizers(keys, S)["fused"]
    u = keys["u"][:2]
    tf_scores = pq_item_scores(tf.constant(u), tf.constant(pq.codebooks),
                               tf.constant(codes[:2])).numpy()
    books = pq.codebooks[0]
    d = books.shape[0] * books.shape[2]
    worst = 0.0
    for b in range(2):
        index = faiss.IndexPQ(d, S, 8, faiss.METRIC_INNER_PRODUCT)
        faiss.copy_array_to_vector(np.ascontiguousarray(books.reshape(-1)), index.pq.centroids)
        index.is_trained = True
        faiss.copy_array_to_vector(np.ascontiguousarray(codes[b, :, 0].reshape(-1)),
                                   index.codes)
        index.ntotal = codes.shape[1]
        D, I = index.search(u[b:b + 1], 10)
        worst = max(worst, float(np.max(np.abs(D[0] - tf_scores[b][I[0]]))))
    return worst


def plot(recall_rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, label in (("fused", "one codebook over the fused key"),
                        ("mm", "multi-modal codebooks (4 modalities + query)")):
        rs = [r for r in recall_rows if r["layout"] == kind]
        ax.plot([r["bytes_per_behaviour"] for r in rs], [r["recall_at_100"] for r in rs],
                marker="o", label=label)
        for r in rs:
            ax.annotate(f"S={r['S']}", (r["bytes_per_behaviour"], r["recall_at_100"]),
                        fontsize=7)
    ax.axhline(0.95, color="grey", ls="--", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("bytes per behaviour (float keys: 256)")
    ax.set_ylabel("recall@100 vs exact top-100")
    ax.set_title("PQ recall on trained SEMINAR keys, L=10,000")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", default=os.path.join(ROOT, "runs", "pq_bench"))
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    p.add_argument("--Ls", type=int, nargs="*", default=[1000, 10000, 100000])
    p.add_argument("--batches", type=int, nargs="*", default=[1, 32])
    p.add_argument("--S", type=int, default=16)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--users", type=int, default=300)
    p.add_argument("--items", type=int, default=5000)
    p.add_argument("--pretrain-steps", type=int, default=60)
    p.add_argument("--recall-L", type=int, default=10000)
    p.add_argument("--recall-B", type=int, default=32)
    p.add_argument("--recall-only", action="store_true",
                   help="recompute the recall rows (with re-ranking) into existing results")
    args = p.parse_args()
    os.makedirs(args.work, exist_ok=True)
    model, data = trained_model(args.work, args)
    keys = trained_keys(model, data, args.recall_L, args.recall_B)
    if args.recall_only:
        rows = pq_recall_rows(keys, sizes=(args.S,))
        path = os.path.join(args.out, "pq_attention.json")
        with open(path) as f:
            payload = json.load(f)
        payload["recall_with_rerank"] = rows
        with open(path, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=True)
        table = markdown_table(rows, ["layout", "S", "bytes_per_behaviour", "recall_at_100",
                                      "recall_at_100_rerank_top200",
                                      "recall_at_100_rerank_top400"])
        with open(os.path.join(args.out, "pq_attention.md"), "a") as f:
            f.write("\nWith an exact re-rank of the PQ top-200 / top-400 (L="
                    f"{args.recall_L}, B={args.recall_B}):\n\n{table}\n")
        print(table)
        return
    recall_rows = pq_recall_rows(keys)
    for r in recall_rows:
        print(r, flush=True)
    recall_at = {(r["layout"], r["S"]): r["recall_at_100"] for r in recall_rows}
    faiss_diff = faiss_agrees(keys, args.S)
    rows = []
    S = args.S
    for L in args.Ls:
        for B in args.batches:
            reps = max(3, args.repeats // (10 if L * B >= 1_000_000 else 1))
            t = timed_formulations(keys, L, B, S, reps)
            best_pq = min(t["b_fused"], t["b_fused_xla"])
            row = {"L": L, "batch": B, "S": S, "C": 256,
                   "times_ms": {k: round(v * 1000, 3) for k, v in t.items()},
                   "bytes_per_behaviour": {"a1_per_modality_float": 4 * 64 * 4 + 4 * 6,
                                           "a2_fused_float": 4 * 64,
                                           "b_mm_codes": 5 * S, "b_fused_codes": S,
                                           "c_faiss_codes": S},
                   "recall_at_100": {"b_mm": recall_at[("mm", S)],
                                     "b_fused": recall_at[("fused", S)],
                                     "c_faiss": recall_at[("fused", S)]},
                   "ratios": {
                       "a1_over_best_pq": (t["a1"] / best_pq) if "a1" in t else None,
                       "a2_over_best_pq": t["a2"] / best_pq,
                       "best_pq_over_faiss": best_pq / t["c_faiss"],
                       "b_mm_xla_over_b_fused_xla": t["b_mm_xla"] / t["b_fused_xla"]}}
            print(json.dumps(row), flush=True)
            rows.append(row)
    table = []
    for r in rows:
        tm = r["times_ms"]
        table.append({"L": r["L"], "batch": r["batch"], "a1 ms": tm.get("a1", "skipped"),
                      "a2 ms": tm["a2"], "PQ mm ms": tm["b_mm"], "PQ mm XLA ms": tm["b_mm_xla"],
                      "PQ fused ms": tm["b_fused"], "PQ fused XLA ms": tm["b_fused_xla"],
                      "FAISS ms": tm["c_faiss"],
                      "a1/PQ": r["ratios"]["a1_over_best_pq"] or "-",
                      "a2/PQ": r["ratios"]["a2_over_best_pq"],
                      "PQ/FAISS": r["ratios"]["best_pq_over_faiss"]})
    cols = list(table[0])
    recall_table = markdown_table(recall_rows, ["layout", "S", "lookups_per_behaviour",
                                                "bytes_per_behaviour", "recall_at_100",
                                                "recall_at_100_rerank_top200"])
    text = (markdown_table(table, cols) + "\n\nBytes per behaviour: a1 1048 (4x64 floats + 6 "
            f"token ids), a2 256, PQ mm {5 * S}, PQ fused / FAISS {S}. "
            f"PQ = best of the fused-codebook variants. FAISS and TF LUT scores on the same "
            f"codes agree to {faiss_diff:.2e}.\n\nRecall@100 vs exact on trained keys "
            f"(L={args.recall_L}, B={args.recall_B}):\n\n" + recall_table)
    os.makedirs(args.out, exist_ok=True)
    plot(recall_rows, os.path.join(args.out, "pq_recall_vs_bytes.png"))
    write_results("pq_attention", {"machine": machine(), "K": K, "rows": rows,
                                   "recall_vs_bytes": recall_rows,
                                   "faiss_vs_tf_max_abs_diff": faiss_diff,
                                   "config": vars(args)}, text, args.out)


if __name__ == "__main__":
    main()
