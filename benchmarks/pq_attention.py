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
Recall@100 against the exact top-100 of the trained model's keys, for codebook layouts
(`--layouts` method:S:combined:whiten; methods of `seminar_tf.pq.quantizer`, FAISS-trained,
whitening from the dataset's training targets) of 4-64 bytes per behaviour, each with its
build time: set recall, tie-aware recall (share of the PQ top-100 whose exact score is >=
the exact 100th score), and both after an exact re-rank of the PQ top-200. The served layer
of the best layout at each budget is timed against the 32-byte PQ baseline (`served`).
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


def parse_layout(text):
    """"method:S:combined:whiten" -> (method, S, combined, whiten), e.g. "rq:16:1:w"."""
    method, S, combined, whiten = text.split(":")
    return method, int(S), bool(int(combined)), whiten == "w"


def layout_name(layout):
    method, S, combined, whiten = layout
    return f"{method}{'+w' if whiten else ''} S={S}{' combined' if combined else ''}"


def pq_model(model_dir, data, layout, rank_scoring="decode"):
    """(the trained model with the PQ GSU and 256-codeword codebooks of `layout`, the
    codebook build seconds); whitening estimates Σ from the dataset's training targets."""
    import time
    method, num_subspaces, combine, whiten = layout
    from seminar_tf.config import SeminarConfig
    from seminar_tf.workflows.model_dir import load_item_table, weights_path
    from seminar_tf.models.registry import build_model
    from seminar_tf.pq.build import build_codebooks
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        cfg = SeminarConfig.from_json(f.read())
    cfg = cfg.replace(model={"gsu": "pq"}, pq=dict(
        method=method, whiten=whiten, num_subspaces=num_subspaces, combine_parts=combine,
        num_codewords=256, rank_scoring=rank_scoring, sample_size=50_000, kmeans_iters=15))
    m = build_model(cfg)
    m.load_weights(weights_path(model_dir)).expect_partial()
    t0 = time.time()
    quant, codes = build_codebooks(m, load_item_table(data)["attrs"], cfg.pq, data_dir=data)
    seconds = time.time() - t0
    m.gsu.set_codebooks(quant.codebooks, codes)
    return m, int(np.prod(codes.shape[1:])), seconds


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
    p.add_argument("--layouts", default=",".join([
        "pq:4:1:n", "pq:8:1:n", "pq:16:1:n", "pq:32:1:n", "pq:64:1:n", "pq:4:0:n",
        "pq:16:1:w", "opq:16:1:n", "opq:16:1:w", "rq:8:1:n", "rq:16:1:n",
        "rq:4:1:w", "rq:8:1:w", "rq:16:1:w", "rq:32:1:w"]),
        help="method:S:combined:whiten codebook layouts for recall (bytes = parts x S)")
    p.add_argument("--timing-budget", default="pq:32:1:n",
                   help="the layout timed as the baseline (the previous default, 32 bytes)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--work", default=os.path.join(ROOT, "runs", "bench_pq"))
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = p.parse_args()
    if args.quick:
        args.Ls, args.Ns, args.users, args.items = [1000], [100], 120, 3000
        args.long_events, args.pretrain_steps, args.repeats = 3000, 20, 3
        args.layouts, args.timing_budget = "pq:16:1:n,rq:8:1:w", "pq:16:1:n"
        args.work += "_quick"
    from seminar_tf.workflows import training
    from seminar_tf.workflows.model_dir import load_item_table
    model_dir, data = trained_seminar(args.work, args.users, args.items, args.pretrain_steps)
    exact = training.load_model(model_dir, gsu="exact")
    attrs_table = load_item_table(data)["attrs"]
    cache_keys = tf.constant(item_key_cache(exact, data))
    budgets = [parse_layout(b) for b in args.layouts.split(",")]
    timing_budget = parse_layout(args.timing_budget)
    if timing_budget not in budgets:
        budgets.append(timing_budget)
    rows, recall_table, served_rows, models, build_seconds = [], [], [], {}, {}
    for layout in budgets:  # codebooks depend on the keys only, not on L: built once
        models[layout], _, build_seconds[layout] = pq_model(model_dir, data, layout)
        print(layout, "built in", round(build_seconds[layout], 1), "s", flush=True)
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
        for layout in budgets:
            m = models[layout]
            m.gsu.use_static_shapes(False)
            method, S, combined, whiten = layout
            r = recall_rows(exact_scores, m.gsu.scores_many(inputs).numpy(), mask)
            recall_table.append({"L": L, "method": method, "whiten": whiten,
                                 "num_subspaces": S, "combined": combined,
                                 "layout": layout_name(layout),
                                 "bytes_per_behaviour": int(np.prod(
                                     m.gsu.item_codes.shape[1:])),
                                 "build_seconds": round(build_seconds[layout], 2), **r, **stats})
            print(recall_table[-1], flush=True)
        pqm = models[timing_budget]
        nbytes = int(np.prod(pqm.gsu.item_codes.shape[1:]))
        rec = next(r for r in recall_table if r["L"] == L and r["layout"] == layout_name(
            timing_budget))
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
        served_rows += served_layer_rows(args, L, models, budgets, timing_budget,
                                         recall_table, many_inputs)
    vq_rows = query_vocab_rows(args)
    payload = {"machine": machine(), "K": K, "config": vars(args), "rows": rows,
               "recall": recall_table, "query_vocab": vq_rows,
               "timing_codebooks": layout_name(timing_budget), "served": served_rows}
    cols = ["L", "shape", "batch_or_n", "xla", "exact_ms", "cached_ms", "pq_ms", "pq_decode_ms",
            "pq_lookup_ms", "pq_over_cached", "bytes_per_behaviour", "cached_bytes_per_item"]
    table = "## GSU time (ms, median)\n\n" + markdown_table(rows, cols)
    table += "\n\n## Recall@100 on trained keys of distinct histories\n\n" + markdown_table(
        recall_table, ["L", "layout", "bytes_per_behaviour", "build_seconds", "recall_at_100",
                       "tie_aware_recall_at_100", "recall_at_100_rerank_top200",
                       "tie_aware_recall_at_100_rerank_top200",
                       "distinct_scores_in_exact_top100", "repeated_item_query_share"])
    table += ("\n\n## Served layer, best layout per budget vs the 32-byte PQ baseline "
              "(one history x N, ms)\n\n") + markdown_table(
        served_rows, ["L", "bytes_per_behaviour", "layout", "xla", "N", "decode_ms",
                      "lookup_ms", "best_ms", "baseline_ms", "over_baseline",
                      "tie_aware_recall_at_100"])
    table += "\n\n## PQ query part vs query vocabulary\n\n" + markdown_table(
        vq_rows, ["query_vocab", "L", "batch", "xla", "pq_ms"])
    write_results("pq_attention", payload, table, args.out)
    plot(recall_table, args.out)


def served_layer_rows(args, L, models, budgets, baseline, recall_table, many_inputs):
    """The served PQ layer (`call_many`, decode and lookup scoring) of the layout with the
    best raw tie-aware recall at each byte budget, against the baseline layout, XLA off/on."""
    best = {}
    for r in recall_table:
        b = r["bytes_per_behaviour"]
        if r["L"] == L and (b not in best or r["tie_aware_recall_at_100"]
                            > best[b]["tie_aware_recall_at_100"]):
            best[b] = r
    by_name = {layout_name(lay): lay for lay in budgets}
    out = []
    for xla in (False, True):
        for N in args.Ns:
            x, _ = many_inputs[N]

            def ms(m):
                m.gsu.use_static_shapes(xla)
                t = {k: timed(lambda y: pq_with(m, k, y), (x,), xla, args.repeats)
                     for k in ("decode", "lookup")}
                return t["decode"], t["lookup"], min(t.values())
            base = ms(models[baseline])[2]
            for b, r in sorted(best.items()):
                dec, look, top = ms(models[by_name[r["layout"]]])
                out.append({"L": L, "bytes_per_behaviour": b, "layout": r["layout"], "xla": xla,
                            "N": N, "decode_ms": dec, "lookup_ms": look, "best_ms": top,
                            "baseline": layout_name(baseline), "baseline_ms": base,
                            "over_baseline": top / base,
                            "tie_aware_recall_at_100": r["tie_aware_recall_at_100"]})
                print(out[-1], flush=True)
    return out


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
    """Tie-aware recall@100 (raw: solid, after re-ranking the top-200: dashed) against
    bytes per behaviour, one line per method, at the longest L."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    L = max(r["L"] for r in recall_table)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in sorted({(r["method"], r["whiten"]) for r in recall_table}):
        rs = sorted((r for r in recall_table if r["L"] == L and r["combined"]
                     and (r["method"], r["whiten"]) == method),
                    key=lambda r: r["bytes_per_behaviour"])
        if not rs:
            continue
        name = method[0] + ("+whiten" if method[1] else "")
        x = [r["bytes_per_behaviour"] for r in rs]
        line, = ax.plot(x, [r["tie_aware_recall_at_100"] for r in rs], "o-", label=name)
        ax.plot(x, [r["tie_aware_recall_at_100_rerank_top200"] for r in rs], "s--",
                color=line.get_color())
    ax.set_title(f"L={L}: raw (solid) and after re-ranking the top-200 (dashed)")
    ax.set_xlabel("code bytes per behaviour")
    ax.set_ylabel("tie-aware recall@100")
    ax.set_xscale("log", base=2)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "pq_recall_vs_bytes.png"), dpi=120)


if __name__ == "__main__":
    main()
