"""`rank` with each distinct history item encoded once (`LifelongRanker.distinct_history`,
the default where the GSU reads the whole history's keys) against encoding every behaviour,
in the same process: the exact-GSU `rank` function of `seminar export` (XLA off), on the
trained SEMINAR of `serving_load.py` (d=64, K=100), 16 distinct generated lifelong
histories (their most recent L clicks), N=100 random candidates, 1 intra-op / 2 inter-op
threads, both variants interleaved request by request.

    python benchmarks/rank_distinct.py [--lengths 1000 10000]
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import seminar_tf  # noqa: E402,F401  (selects Keras 2 before TensorFlow)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import serving_load as SL  # noqa: E402
from benchmarks.common import machine, markdown_table, write_results  # noqa: E402
from seminar_tf import features as F  # noqa: E402


def measure(work, L, users, repeats):
    from seminar_tf.config import SeminarConfig
    from seminar_tf.workflows.model_dir import load_item_table, load_model
    trained_dir, data = SL.trained_seminar(work, top_k=SL.K)
    attrs = load_item_table(data)["attrs"]
    mdir = SL.model_dir_at(work, trained_dir, data, L, "exact")
    with open(os.path.join(mdir, "config.json"), encoding="utf-8") as f:
        cfg = SeminarConfig.from_json(f.read())
    ctx, _ = SL.long_histories(cfg.data, data, work, users, max(16000, int(1.6 * L)),
                               cfg.data.item_vocab_size, L)
    contract = F.FeatureContract.from_config(cfg.data)
    reqs = [(tf.constant([c]), tf.constant([k])) for c, k, _ in
            SL.user_requests(contract, ctx, attrs, 100, per_candidate_fits=False)]
    model = load_model(mdir, gsu="exact")
    fns = {}
    for distinct in (True, False):
        def score(c, k, distinct=distinct):  # the flag is read when traced
            model.distinct_history = distinct
            return model.rank(contract.parse_context(c), contract.parse_candidates(k))["score"]
        fns[distinct] = tf.function(score)
        fns[distinct](*reqs[0])
    model.distinct_history = True
    ms = {True: [], False: []}
    for _ in range(repeats):
        for distinct in (True, False):
            for c, k in reqs:
                t0 = time.perf_counter()
                fns[distinct](c, k).numpy()
                ms[distinct].append(1000 * (time.perf_counter() - t0))
    hist = ctx[F.HIST_ITEMS]
    share = float(np.mean([len(np.unique(h[h != 0])) / max(1, (h != 0).sum()) for h in hist]))
    d, a = float(np.median(ms[True])), float(np.median(ms[False]))
    return {"L": L, "N": 100, "users": users, "distinct_share": share,
            "distinct_ms": d, "encode_all_ms": a, "speedup": a / d}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", type=int, nargs="*", default=[1000, 10000])
    p.add_argument("--users", type=int, default=16)
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--work", default=os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "runs", "serving_bench"))
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = p.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    rows = [measure(args.work, L, args.users, args.repeats) for L in args.lengths]
    table = markdown_table(rows, ["L", "N", "users", "distinct_share", "distinct_ms",
                                  "encode_all_ms", "speedup"])
    write_results("rank_distinct", {"machine": machine(), "rows": rows,
                                    "threads": [1, 2]}, table, args.out)


if __name__ == "__main__":
    main()
