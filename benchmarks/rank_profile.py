"""Where one `rank` call's time goes: the served signature split into its stages.

The exported `rank` function runs, in order: parsing of the context and candidate Examples
(outside XLA), the candidates' pair encoding, the GSU (`LifelongRanker.forward_retrieve`; for a
GSU that scores float keys, after encoding the whole history), the history encoding the ESU
reads (`forward_history`: the union of the retrieved positions and the short-term window where
the GSU needs no float keys) and the ESU with the towers (`forward_interest`). Each stage here
is its own `tf.function` fed with the previous stage's outputs, timed as a median over
repeats (XLA off: the compiled export fuses the stages); `full` times the export's own
`rank` function in the same process. The staged scores are checked against `full`.

Used by `benchmarks/serving_load.py` for one request per shape; standalone:

    python benchmarks/rank_profile.py --model-dir runs/serving_bench/model-L10000 --gsu pq
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import seminar_tf  # noqa: E402,F401
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.common import median_seconds  # noqa: E402
from seminar_tf import features as F  # noqa: E402

STAGES = ("parse", "targets", "history_all", "retrieve", "history_read", "esu_towers")


def serving_module(model, item_attrs=None):
    """The export's `ServingModule` around `model` (XLA off), in this process."""
    import tempfile
    from seminar_tf.workflows.export import ServingModule
    path = os.path.join(tempfile.mkdtemp(), "config.json")
    with open(path, "w", encoding="utf-8") as f:
        f.write(model.config.to_json())
    return ServingModule(model, path, xla=False, item_attrs=item_attrs)


def stage_functions(module):
    """{stage: tf.function} of `STAGES` for the model of a `ServingModule`."""
    from seminar_tf.layers.retrieval.base import per_candidate
    from seminar_tf.workflows import signatures
    model = module.model

    def targets(ctx, cands):
        n = tf.shape(cands[F.TARGET_ITEM])[1]
        return per_candidate(model.pair_encoder, cands[F.TARGET_ITEM], cands[F.TARGET_ATTRS],
                             tf.repeat(ctx[F.TARGET_QUERY][:, None], n, axis=1))

    def gsu(ctx, cands, tenc, hist):
        feats = dict(ctx, **{F.TARGET_ITEM: cands[F.TARGET_ITEM],
                             F.TARGET_ATTRS: cands[F.TARGET_ATTRS]})
        return model.forward_retrieve(feats, tenc, hist)

    return {"parse": tf.function(lambda c, k: signatures.parse_rank(module, c, k)),
            "targets": tf.function(targets),
            "history_all": tf.function(lambda ctx: model.encode_behaviours(ctx)),
            "retrieve": tf.function(gsu),
            "history_read": tf.function(lambda ctx, hist, ret: model.forward_history(
                ctx, hist, ret)),
            "esu_towers": tf.function(lambda ctx, tenc, hist, idx, ret: model.forward_interest(
                ctx, tenc, hist, idx, ret))}


def _through_retrieval(fns, model, context, candidates):
    ctx, cands = fns["parse"](context, candidates)
    tenc = fns["targets"](ctx, cands)
    hist = fns["history_all"](ctx) if model.gsu.needs_keys else None
    return ctx, cands, tenc, hist, fns["retrieve"](ctx, cands, tenc, hist)


def union_sizes(module, contexts, candidates):
    """Behaviours encoded for the ESU (`forward_history`) per request (one row each)."""
    fns = stage_functions(module)
    out = []
    for c, k in zip(contexts, candidates):
        ctx, _, _, hist, ret = _through_retrieval(fns, module.model, tf.constant(c),
                                                  tf.constant(k))
        out.append(int(fns["history_read"](ctx, hist, ret)[0]["keys"].shape[1]))
    return out


def profile_rank(module, context, candidates, repeats=10):
    """Median ms per stage of one `rank` request (context (B,), candidates (B, N) serialized
    Examples; eager calls of a tf.function return when computed), the union size the ESU
    read, and the export function's own time (`full`)."""
    model = module.model
    fns = stage_functions(module)
    context, candidates = tf.constant(context), tf.constant(candidates)
    ms = {}

    def run(name, *args):
        out = fns[name](*args)
        ms[name] = 1000 * median_seconds(lambda: fns[name](*args), repeats)
        return out

    ctx, cands = run("parse", context, candidates)
    tenc = run("targets", ctx, cands)
    hist = run("history_all", ctx) if model.gsu.needs_keys else None
    ret = run("retrieve", ctx, cands, tenc, hist)
    if hist is None:
        hist_read, idx = run("history_read", ctx, hist, ret)
    else:  # already encoded: nothing to time
        hist_read, idx = fns["history_read"](ctx, hist, ret)
    out = run("esu_towers", ctx, tenc, hist_read, idx, ret)
    full_fn = module.signature_functions["rank"]
    full = full_fn(context, candidates)
    ms["full"] = 1000 * median_seconds(lambda: full_fn(context, candidates), repeats)
    mask = cands[F.CANDIDATE_MASK].numpy()
    diff = float(np.max(np.abs(np.where(mask, tf.sigmoid(out["logit"]).numpy(), 0.0)
                               - full["score"].numpy()), initial=0.0))
    return {"stages_ms": {k: round(v, 3) for k, v in ms.items()},
            "stages_sum_ms": round(sum(v for k, v in ms.items() if k != "full"), 3),
            "union_size": int(hist_read["keys"].shape[1]),
            "history_encoded": "all" if model.gsu.needs_keys or model.static_shapes
            else "union", "max_abs_diff_vs_full": diff}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-dir", required=True)
    p.add_argument("--gsu", default="pq")
    p.add_argument("--N", type=int, default=100)
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args()
    from seminar_tf.workflows.model_dir import load_model
    from serving.client import rank_request_from_events
    model = load_model(args.model_dir, gsu=args.gsu)
    d = model.config.data
    c = F.FeatureContract.from_config(d)
    rng = np.random.default_rng(0)
    L = d.max_seq_len
    history = [{"item": int(i), "attrs": [int(a) for a in rng.integers(1, d.attr_vocab_size,
                                                                        d.num_attrs)],
                "query": [int(t) for t in rng.integers(2, d.query_vocab_size, 2)],
                "source": 2, "age_seconds": float(L - k) * 60} for k, i in
               enumerate(rng.integers(2, d.item_vocab_size, L))]
    cands = [{"item": int(i), "attrs": [int(a) for a in rng.integers(
        1, d.attr_vocab_size, d.num_attrs)]} for i in rng.integers(2, d.item_vocab_size, args.N)]
    context, listed = rank_request_from_events(c, 3, history, cands, query=[7, 9], source=2)
    print(profile_rank(serving_module(model), np.array([context], dtype=object),
                       np.array([listed], dtype=object), args.repeats))


if __name__ == "__main__":
    main()
