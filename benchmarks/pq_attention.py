"""GSU scoring as exported: PQ lookup attention vs the exact GSU on real, distinct histories.

Keys: a SEMINAR model (d=64) trained here on generated data (pretraining + 1 epoch), and
lifelong histories of `--long-users` users with `--long-events` generated events each (the
same catalogue), read into memory from the raw logs: each user's most recent L clicks,
distinct users, no concatenated prefixes (the share of repeated (item, query) pairs is
reported). Targets: catalogue items paired with the user's last query.

Timed (median ms, one compiled function each, XLA off and on), per L:
  shape "batch"  (B independent histories, one target each; the `serving_default` path;
                 with XLA the PQ query part uses its static-shape form, as the XLA export):
    exact  the model's exact GSU (`ExactTargetRetrieval`): encode all L behaviours, score;
    cached cached fused float item keys (d floats per item) + the exact query part, top-K
           (the exact baseline a production engineer would build: TWIN's key cache);
    pq     `PQLookupAttention.call` (uint8 codes, one LUT per target).
  shape "one_history" (one history x N candidates; the `rank` path):
    exact  `ExactTargetRetrieval.call_many` over the encoded history;
    cached the cached keys gathered once, one (N x d).(d x L) product;
    pq_decode / pq_lookup  `PQLookupAttention.call_many` with rank_scoring decode / lookup.
Recall@100 against the exact top-100 of the trained model's keys, for codebooks of several
byte budgets: set recall, tie-aware recall (share of the PQ top-100 whose exact score is >=
the exact 100th score), and both after an exact re-rank of the PQ top-200.
A last table times the PQ query part at query vocabularies of 10^4 and 10^6 tokens.

    python benchmarks/pq_attention.py [--Ls 1000 10000] [--quick]
"""
import argparse
import csv
import os
import sys
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import seminar_tf  # noqa: E402,F401
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.common import machine, markdown_table, median_seconds, write_results  # noqa
from seminar_tf import features as F  # noqa: E402
from benchmarks.trained import long_histories, trained_seminar  # noqa: E402

K = 100


def pq_model(model_dir, data, num_subspaces, combine, rank_scoring="decode"):
    """The trained model with the PQ GSU and 256-codeword codebooks of the given budget."""
    from seminar_tf.config import SeminarConfig
    from seminar_tf.workflows.model_dir import load_item_table, weights_path
    from seminar_tf.models.registry import build_model
    from seminar_tf.pq.build import build_codebooks
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        cfg = SeminarConfig.from_json(f.read())
    cfg = cfg.replace(model={"gsu": "pq"}, pq=dict(
        num_subspaces=num_subspaces, combine_parts=combine, num_codewords=256,
        rank_scoring=rank_scoring, sample_size=50_000, kmeans_iters=15))
    m = build_model(cfg)
    m.load_weights(weights_path(model_dir)).expect_partial()
    quant, codes = build_codebooks(m, load_item_table(data)["attrs"], cfg.pq)
    m.gsu.set_codebooks(quant.codebooks, codes)
    return m, int(np.prod(codes.shape[1:]))


def gsu_inputs(model, ctx, items, attrs_table):
    """(many-inputs dict for B histories x N candidates, context tensors)."""
    B, N = items.shape
    c = {k: tf.constant(v) for k, v in ctx.items()}
    enc = model.pair_encoder(tf.reshape(items, [-1]),
                             tf.constant(attrs_table[items.reshape(-1)]),
                             tf.repeat(c[F.TARGET_QUERY], N, axis=0))
    return {"target": tf.reshape(enc["pair"], [B, N, -1]),
            "target_query": tf.reshape(enc["query"], [B, N, -1]),
            "target_item": tf.constant(items),
            "target_attrs": tf.constant(attrs_table[items]),
            "mask": c[F.HIST_ITEMS] != 0, "hist_items": c[F.HIST_ITEMS],
            "hist_query": c[F.HIST_QUERY], "hist_attrs": c[F.HIST_ATTRS]}, c


def item_key_cache(model, data):
    """Cached fused float item keys (V, d): the item part of every item's pair key."""
    from seminar_tf.workflows.model_dir import load_item_table
    from seminar_tf.pq.build import item_key_parts
    return item_key_parts(model, load_item_table(data)["attrs"], combine=True)[:, 0]


def recall_rows(exact_scores, pq_scores, mask):
    """Set / tie-aware recall@100, raw and after an exact re-rank of the PQ top-200."""
    floor = np.finfo(np.float32).min
    ex = np.where(mask, exact_scores, floor)
    approx = np.where(mask, pq_scores, floor)
    out = defaultdict(list)
    for e, a in zip(ex.reshape(-1, ex.shape[-1]), approx.reshape(-1, ex.shape[-1])):
        ref = np.argsort(-e, kind="stable")[:K]
        kth = e[ref[-1]]
        top = np.argsort(-a, kind="stable")
        raw = top[:K]
        rerank = top[:2 * K][np.argsort(-e[top[:2 * K]], kind="stable")][:K]
        out["recall_at_100"].append(len(set(raw) & set(ref)) / K)
        out["tie_aware_recall_at_100"].append(float(np.mean(e[raw] >= kth)))
        out["recall_at_100_rerank_top200"].append(len(set(rerank) & set(ref)) / K)
        out["tie_aware_recall_at_100_rerank_top200"].append(float(np.mean(e[rerank] >= kth)))
        out["distinct_scores_in_exact_top100"].append(len(np.unique(e[ref])))
    return {k: float(np.mean(v)) for k, v in out.items()}


def timed(fn, args_, xla, repeats):
    f = tf.function(fn, jit_compile=xla or None)
    return 1000 * median_seconds(lambda: tf.nest.map_structure(
        lambda t: t.numpy(), f(*args_)), repeats)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--Ls", type=int, nargs="*", default=[1000, 10000])
    p.add_argument("--batch", type=int, default=8, help="B of the independent-history shape")
    p.add_argument("--Ns", type=int, nargs="*", default=[100, 1000])
    p.add_argument("--users", type=int, default=400)
    p.add_argument("--items", type=int, default=20000)
    p.add_argument("--long-users", type=int, default=8)
    p.add_argument("--long-events", type=int, default=16000)
    p.add_argument("--pretrain-steps", type=int, default=300)
    p.add_argument("--budgets", default="4:0,8:0,16:0,4:1,8:1,16:1,32:1,64:1",
                   help="S:combined codebook budgets for recall (bytes = parts x S)")
    p.add_argument("--timing-budget", default="32:1",
                   help="S:combined of the codebooks timed (the recall target's budget)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--work", default=os.path.join(ROOT, "runs", "bench_pq"))
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = p.parse_args()
    if args.quick:
        args.Ls, args.Ns, args.users, args.items = [1000], [100], 120, 3000
        args.long_events, args.pretrain_steps, args.repeats = 3000, 20, 3
        args.budgets, args.timing_budget = "8:0,16:1", "16:1"
        args.work += "_quick"
    from seminar_tf.workflows import training
    from seminar_tf.workflows.model_dir import load_item_table
    model_dir, data = trained_seminar(args.work, args.users, args.items, args.pretrain_steps)
    exact = training.load_model(model_dir, gsu="exact")
    attrs_table = load_item_table(data)["attrs"]
    cache_keys = tf.constant(item_key_cache(exact, data))
    budgets = [tuple(int(x) for x in b.split(":")) for b in args.budgets.split(",")]
    timing_budget = tuple(int(x) for x in args.timing_budget.split(":"))
    if timing_budget not in budgets:
        budgets.append(timing_budget)
    rows, recall_table = [], []
    for L in args.Ls:
        ctx, stats = long_histories(exact.config.data, data, args.work, args.long_users,
                                    args.long_events, args.items, L)
        print(stats, flush=True)
        B = min(args.batch, len(ctx[F.HIST_ITEMS]))
        # --- recall on trained keys: every history x 100 candidates
        inputs, c = gsu_inputs(exact, ctx, np.random.default_rng(L).integers(
            2, exact.config.data.item_vocab_size, (len(ctx[F.HIST_ITEMS]), 100)), attrs_table)
        history = exact.encode_behaviours(c)
        exact_scores = exact.gsu.scores_many(dict(inputs, keys=history["keys"])).numpy()
        mask = np.broadcast_to(ctx[F.HIST_ITEMS][:, None, :] != 0, exact_scores.shape)
        models = {}
        for S, combined in budgets:
            m, nbytes = pq_model(model_dir, data, S, bool(combined))
            models[(S, combined)] = m
            r = recall_rows(exact_scores, m.gsu.scores_many(inputs).numpy(), mask)
            recall_table.append({"L": L, "num_subspaces": S, "combined": bool(combined),
                                 "bytes_per_behaviour": nbytes, **r, **stats})
            print(recall_table[-1], flush=True)
        pqm = models[timing_budget]
        nbytes = int(np.prod(pqm.gsu.item_codes.shape[1:]))
        rec = next(r for r in recall_table if r["L"] == L and (
            r["num_subspaces"], int(r["combined"])) == timing_budget)
        # --- timing: shape "batch" (B histories, one target each)
        one, cb = gsu_inputs(exact, {k: v[:B] for k, v in ctx.items()},
                             np.random.default_rng(1).integers(2, exact.config.data.item_vocab_size,
                                                               (B, 1)), attrs_table)
        flat = {k: (v[:, 0] if k.startswith("target") else v) for k, v in one.items()}
        per_target = {
            "exact": lambda x, cc: exact.gsu(dict(x, keys=exact.encode_behaviours(cc)["keys"])),
            "cached": lambda x, cc: cached_gsu(pqm, cache_keys, x),
            "pq": lambda x, cc: pqm.gsu(x)}
        many_inputs = {}
        for N in args.Ns:
            many_inputs[N] = gsu_inputs(exact, {k: v[:1] for k, v in ctx.items()},
                                        np.random.default_rng(N).integers(
                                            2, exact.config.data.item_vocab_size, (1, N)),
                                        attrs_table)
        for xla in (False, True):
            pqm.gsu.use_static_shapes(xla)  # as `seminar export --xla` does
            times = {k: timed(fn, (flat, cb), xla, args.repeats) for k, fn in per_target.items()}
            rows.append({"L": L, "shape": "batch", "batch_or_n": B, "xla": xla,
                         **{f"{k}_ms": v for k, v in times.items()},
                         "pq_over_cached": times["pq"] / times["cached"],
                         "pq_over_exact": times["pq"] / times["exact"],
                         "bytes_per_behaviour": nbytes, "cached_bytes_per_item": 4 * cache_keys.shape[1],
                         **{k: rec[k] for k in ("recall_at_100", "tie_aware_recall_at_100",
                                                "tie_aware_recall_at_100_rerank_top200")}})
            print(rows[-1], flush=True)
            for N in args.Ns:
                x, cc = many_inputs[N]
                lookup = lambda x, cc: pq_lookup(pqm, x)  # noqa: E731
                fns = {"exact": lambda x, cc: exact.gsu.call_many(
                           dict(x, keys=exact.encode_behaviours(cc)["keys"])),
                       "cached": lambda x, cc: cached_gsu_many(pqm, cache_keys, x),
                       "pq_decode": lambda x, cc: pq_with(pqm, "decode", x),
                       "pq_lookup": lookup}
                times = {k: timed(fn, (x, cc), xla, args.repeats) for k, fn in fns.items()}
                best = min(times["pq_decode"], times["pq_lookup"])
                rows.append({"L": L, "shape": "one_history", "batch_or_n": N, "xla": xla,
                             **{f"{k}_ms": v for k, v in times.items()},
                             "pq_ms": best, "pq_over_cached": best / times["cached"],
                             "pq_over_exact": best / times["exact"],
                             "bytes_per_behaviour": nbytes,
                             "cached_bytes_per_item": 4 * cache_keys.shape[1],
                             **{k: rec[k] for k in ("recall_at_100", "tie_aware_recall_at_100",
                                                    "tie_aware_recall_at_100_rerank_top200")}})
                print(rows[-1], flush=True)
    vq_rows = query_vocab_rows(args)
    payload = {"machine": machine(), "K": K, "config": vars(args), "rows": rows,
               "recall": recall_table, "query_vocab": vq_rows,
               "timing_codebooks": {"num_subspaces": timing_budget[0],
                                    "combined": bool(timing_budget[1])}}
    cols = ["L", "shape", "batch_or_n", "xla", "exact_ms", "cached_ms", "pq_ms", "pq_decode_ms",
            "pq_lookup_ms", "pq_over_cached", "bytes_per_behaviour", "cached_bytes_per_item"]
    table = "## GSU time (ms, median)\n\n" + markdown_table(rows, cols)
    table += "\n\n## Recall@100 on trained keys of distinct histories\n\n" + markdown_table(
        recall_table, ["L", "num_subspaces", "combined", "bytes_per_behaviour", "recall_at_100",
                       "tie_aware_recall_at_100", "recall_at_100_rerank_top200",
                       "tie_aware_recall_at_100_rerank_top200",
                       "distinct_scores_in_exact_top100", "repeated_item_query_share"])
    table += "\n\n## PQ query part vs query vocabulary\n\n" + markdown_table(
        vq_rows, ["query_vocab", "L", "batch", "xla", "pq_ms"])
    write_results("pq_attention", payload, table, args.out)
    plot(recall_table, args.out)


def per_target_u(pqm, target):
    shape = tf.shape(target)
    u = pqm.esu.query_in_key_space(tf.reshape(target, [-1, shape[-1]]))
    return tf.reshape(u, tf.concat([shape[:-1], [-1]], 0))


def cached_scores(pqm, cache_keys, x, many):
    """Exact scores from cached fused float item keys + the exact query part."""
    from seminar_tf.layers.retrieval.base import masked_top_k
    keys = tf.gather(cache_keys, x["hist_items"])  # (B, L, d)
    query_vec, _ = pqm.pair_encoder.query_encoder(x["hist_query"])
    keys = keys + pqm.pair_encoder.pair_fusion.weight_of_query() * query_vec
    u = per_target_u(pqm, x["target"])
    if many:
        return masked_top_k(tf.einsum("bnd,bld->bnl", u, keys), x["mask"][:, None, :], K)
    return masked_top_k(tf.einsum("bd,bld->bl", u, keys), x["mask"], K)


def cached_gsu(pqm, cache_keys, x):
    return cached_scores(pqm, cache_keys, x, many=False)


def cached_gsu_many(pqm, cache_keys, x):
    return cached_scores(pqm, cache_keys, x, many=True)


def pq_with(pqm, scoring, x):
    pqm.gsu.rank_scoring = scoring
    return pqm.gsu.call_many(x)


def pq_lookup(pqm, x):
    return pq_with(pqm, "lookup", x)


def query_vocab_rows(args):
    """PQ per-target scoring time at query vocabularies of 10^4 and 10^6 (random weights):
    only the request's tokens are scored, so the time does not grow with the vocabulary."""
    from seminar_tf.config import SeminarConfig
    from seminar_tf.models.registry import build_model, model_config
    rows = []
    L, B, Q = min(args.Ls), args.batch, 6
    for vq in (10_000, 1_000_000):
        cfg = model_config("seminar", SeminarConfig()).replace(
            data=dict(max_seq_len=L, max_query_tokens=Q, query_vocab_size=vq,
                      item_vocab_size=20_000, attr_vocab_size=2_000, text_dim=32, image_dim=32),
            model=dict(gsu="pq", embedding_dim=64, top_k=K), pq=dict(num_subspaces=8))
        m = build_model(cfg)
        rng = np.random.default_rng(0)
        x = {"target": tf.constant(rng.normal(size=(B, 64)), tf.float32),
             "hist_items": tf.constant(rng.integers(2, 20_000, (B, L))),
             "hist_query": tf.constant(rng.integers(0, vq, (B, L, Q))),
             "mask": tf.ones((B, L), tf.bool)}
        for xla in (False, True):
            m.gsu.use_static_shapes(xla)
            ms = timed(lambda x: m.gsu(x), (x,), xla, args.repeats)
            rows.append({"query_vocab": vq, "L": L, "batch": B, "xla": xla, "pq_ms": ms})
            print(rows[-1], flush=True)
    return rows


def plot(recall_table, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for L in sorted({r["L"] for r in recall_table}):
        rs = sorted((r for r in recall_table if r["L"] == L),
                    key=lambda r: r["bytes_per_behaviour"])
        x = [r["bytes_per_behaviour"] for r in rs]
        ax.plot(x, [r["tie_aware_recall_at_100"] for r in rs], "o-", label=f"raw, L={L}")
        ax.plot(x, [r["tie_aware_recall_at_100_rerank_top200"] for r in rs], "s--",
                label=f"re-rank top-200, L={L}")
    ax.set_xlabel("code bytes per item key")
    ax.set_ylabel("tie-aware recall@100")
    ax.set_xscale("log", base=2)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "pq_recall_vs_bytes.png"), dpi=120)


if __name__ == "__main__":
    main()
