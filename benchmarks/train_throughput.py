"""Training and evaluation throughput of every registry model, as the commands run them.

Default (`--source store`): the steady-state steps of `seminar train` on generated
sequence-store data (`benchmarks/store_steps.py`: Beam-preprocessed at L, 1+99 candidate
groups), L=1,000, K=200, d=64, H=4, batch 256, every model, per path:
  default    what `seminar train` runs without options (`train.input_mode: auto`: timeline
             batches over the store, `seminar_tf.data.timelines`)
  examples   per-example batches (`train.input_mode: examples`, the default before): the
             baseline, in the same run
with `--xla` also `train.jit_compile: true` for `--xla-models`. An example is one target.
`profile_ms` (`--profile-models`): the default step's parts, each timed on its own.
`eval_users_per_s`: `seminar evaluate`'s candidate scoring (`predict_groups`, the
shared-history `rank` path, 16 groups per call) on the model as trained, steady state (from
the end of the first batch, which traces, to the end of the last full batch).

`--source memory`: the earlier form, kept for `input_throughput.py`: random in-memory
contract batches (the step alone, no input pipeline), both input modes on the same targets
(`--targets-per-timeline`), `eval_users_per_s` against the per-candidate path.

    python benchmarks/train_throughput.py [--models twin seminar] [--xla]
    python benchmarks/train_throughput.py --source memory [--configs 100:50,1000:200]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests"))

import seminar_tf  # noqa: E402,F401  (selects Keras 2 before TensorFlow)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.common import machine, markdown_table, median_seconds, write_results  # noqa
from helpers import random_batch, tiny_item_table  # noqa: E402
from seminar_tf import features as F  # noqa: E402
from seminar_tf.config import SeminarConfig  # noqa: E402
from seminar_tf.models.registry import MODELS, build_model, model_config  # noqa: E402

CONFIGS = [dict(L=100, K=50), dict(L=1000, K=200)]


def make_cfg(name, L, K, batch):
    base = SeminarConfig().replace(
        data=dict(max_seq_len=L, max_query_tokens=6, num_attrs=4, item_vocab_size=50_000,
                  query_vocab_size=5_000, attr_vocab_size=2_000, user_vocab_size=10_000,
                  text_dim=32, image_dim=32),
        model=dict(embedding_dim=64, num_heads=4, top_k=K, short_term_len=20,
                   gsu_options={"qin": {"first_k": min(2 * K, L)}}),
        train=dict(batch_size=batch))
    return model_config(name, base)


def measure(name, L, K, batch, steps, xla):
    cfg = make_cfg(name, L, K, batch)
    model = build_model(cfg, item_table=tiny_item_table(cfg))
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), jit_compile=xla)
    data = random_batch(cfg, batch=batch, seed=1,
                        lengths=list(np.random.default_rng(0).integers(L // 4, L + 1, batch)))
    train_fn = model.make_train_function()
    ds = iter(tf.data.Dataset.from_tensors(data).repeat())
    train_s = median_seconds(lambda: train_fn(ds), steps)
    tl_s = None
    if TIMELINES[0]:  # the same targets' work from shared windows (train.input_mode)
        tl_fn = model.make_train_function(force=True)
        # finished as `timeline_dataset` hands them over (targets expanded by tf.data,
        # which runs beside the step in training)
        from seminar_tf.data.timelines import finish
        tl_ds = iter(tf.data.Dataset.from_tensors(finish(
            F.FeatureContract.from_config(cfg.data),
            timeline_batch(cfg, batch, TIMELINES[0]))).repeat())
        tl_s = median_seconds(lambda: tl_fn(tl_ds), steps)
    eval_fn = tf.function(lambda b: model(b, training=False)["score"], jit_compile=xla)
    eval_s = median_seconds(lambda: eval_fn(data).numpy(), steps)
    row = {"model": name, "L": L, "K": K, "batch": batch, "xla": xla,
           "train_ex_per_s": batch / train_s, "eval_ex_per_s": batch / eval_s,
           "train_ms_per_step": 1000 * train_s, "eval_ms_per_batch": 1000 * eval_s}
    if tl_s is not None:
        row.update({"targets_per_timeline": TIMELINES[0],
                    "train_ex_per_s_timelines": batch / tl_s,
                    "timelines_speedup": train_s / tl_s})
    row.update(eval_users(model, cfg, steps, xla, users=EVAL_USERS[0]))
    if xla:
        plain = tf.function(lambda b: model(b, training=False)["score"])
        row["xla_max_abs_diff"] = float(np.max(np.abs(plain(data).numpy()
                                                      - eval_fn(data).numpy())))
    return row


EVAL_USERS = [16]
TIMELINES = [16]


def timeline_batch(cfg, batch, T, seed=1):
    """`batch` targets as batch // T full windows of W = L + T behaviours: T consecutive
    targets per window, each with a full history of L (lifelong users)."""
    rng = np.random.default_rng(seed)
    d = cfg.data
    L, Q, A, U = d.max_seq_len, d.max_query_tokens, d.num_attrs, batch // T
    W = L + T
    ends = np.broadcast_to(L + np.arange(T), (U, T))
    times = np.sort(rng.integers(0, 10**9, size=(U, W)), 1)
    c = tf.constant
    return {
        "tl_items": c(rng.integers(2, d.item_vocab_size, size=(U, W))),
        "tl_query": c(rng.integers(0, d.query_vocab_size, size=(U, W, Q))
                      * (rng.random((U, W, 1)) < 0.5)),
        "tl_attrs": c(rng.integers(1, d.attr_vocab_size, size=(U, W, A))),
        "tl_sources": c(rng.integers(1, 3, size=(U, W))),
        "tl_time_ms": c(times.astype(np.int64)),
        "user_id": c(np.repeat(rng.integers(2, d.user_vocab_size, size=(U, 1)), T, 1)),
        "t_time_ms": c(np.take_along_axis(times, ends, 1) + 1),
        "t_item": c(rng.integers(2, d.item_vocab_size, size=(U, T))),
        "t_query": c(rng.integers(0, d.query_vocab_size, size=(U, T, Q))),
        "t_attrs": c(rng.integers(1, d.attr_vocab_size, size=(U, T, A))),
        "t_source": c(rng.integers(1, 3, size=(U, T))),
        "t_label": c((rng.random((U, T)) < 0.5).astype(np.float32)),
        "t_group": c(np.zeros((U, T), np.int64)),
        "t_start": c((ends - L).astype(np.int64)), "t_end": c(ends.astype(np.int64)),
        "t_mask": c(np.ones((U, T), bool))}
CONTEXT = (F.USER_ID, F.TARGET_QUERY, F.TARGET_SOURCE) + F.HISTORY_FEATURES


def eval_users(model, cfg, steps, xla, users, n=100):
    """Users/s on 1+99 candidates: shared-history `rank` vs one example per candidate."""
    L = cfg.data.max_seq_len
    rng = np.random.default_rng(2)
    data = random_batch(cfg, batch=users, seed=3,
                        lengths=list(rng.integers(L // 4, L + 1, users)))
    context = {k: data[k] for k in CONTEXT}
    cands = {F.TARGET_ITEM: tf.constant(rng.integers(2, cfg.data.item_vocab_size,
                                                     (users, n))),
             F.TARGET_ATTRS: tf.constant(rng.integers(1, cfg.data.attr_vocab_size,
                                                      (users, n, cfg.data.num_attrs)))}
    rank_fn = tf.function(lambda c, x: model.rank(c, x, training=False)["score"],
                          jit_compile=xla)
    rank_s = median_seconds(lambda: rank_fn(context, cands).numpy(), steps)
    # the per-candidate path on 2 users (200 examples) per call
    per_users = 2
    flat = {k: tf.repeat(v[:per_users], n, axis=0) for k, v in context.items()}
    flat[F.TARGET_ITEM] = tf.reshape(cands[F.TARGET_ITEM][:per_users], [-1])
    flat[F.TARGET_ATTRS] = tf.reshape(cands[F.TARGET_ATTRS][:per_users],
                                      [per_users * n, -1])
    per_fn = tf.function(lambda b: model(b, training=False)["score"], jit_compile=xla)
    per_s = median_seconds(lambda: per_fn(flat).numpy(), max(2, steps // 2))
    same = np.max(np.abs(rank_fn(context, cands).numpy()[:per_users].reshape(-1)
                         - per_fn(flat).numpy()))
    return {"eval_users_per_s": users / rank_s,
            "eval_users_per_s_per_candidate": per_users / per_s,
            "eval_users_per_batch": users, "eval_candidates": n,
            "eval_rank_vs_per_candidate_max_abs_diff": float(same)}


def store_main(args):
    from benchmarks import store_steps
    L, K = (int(x) for x in args.configs.split(",")[-1].split(":"))
    data = store_data_dir(args, L)
    rows = []
    for name in args.models:
        for path in ("default", "examples"):
            for xla in ([False, True] if args.xla and name in args.xla_models else [False]):
                row = store_steps.train_rate(
                    name, data, L, K, args.batch, path, xla, args.warmup, args.steps,
                    args.eval_users, profile=not xla and name in args.profile_models)
                print(row, flush=True)
                rows.append(row)
    for r in rows:  # default against the per-example baseline of the same run
        base = [b for b in rows if (b["model"], b["xla"], b["path"]) == (
            r["model"], False, "examples")]
        if base:
            r["x_examples"] = r["train_ex_per_s"] / base[0]["train_ex_per_s"]
    cols = ["model", "L", "K", "batch", "path", "input_mode", "xla", "train_ex_per_s",
            "x_examples", "train_ms_per_step", "examples_per_step", "eval_users_per_s",
            "eval_users_per_s_encode_all"]
    write_results(args.name, {"machine": machine(), "rows": rows, "source": "store",
                              "data": store_steps.data_facts(data),
                              "config": {k: v for k, v in vars(args).items()
                                         if k not in ("out", "work")}},
                  markdown_table(rows, cols), args.out)


def store_data_dir(args, L):
    from benchmarks import store_steps
    return store_steps.store_data(args.work, args.users, args.events_per_user, L)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", choices=["store", "memory"], default="store")
    p.add_argument("--models", nargs="*", default=sorted(MODELS))
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps (default: 8 store, 5 memory)")
    p.add_argument("--warmup", type=int, default=3, help="store: untimed first steps")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--xla", action="store_true", help="also measure jit_compile=True")
    p.add_argument("--xla-models", nargs="*", default=["twin", "seminar"])
    p.add_argument("--profile-models", nargs="*", default=["twin", "seminar"],
                   help="store: also time the parts of their default step (profile_ms)")
    p.add_argument("--configs", default=None,
                   help="L:K pairs (default: 1000:200 store, 100:50,1000:200 memory)")
    p.add_argument("--eval-users", type=int, default=16, help="users per rank batch")
    p.add_argument("--users", type=int, default=160, help="store: generated users")
    p.add_argument("--events-per-user", type=int, default=1300)
    p.add_argument("--work", default=os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "runs", "train_bench"))
    p.add_argument("--targets-per-timeline", type=int, default=4,
                   help="memory: T of the timeline input mode (0: examples only)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    p.add_argument("--name", default="train_throughput", help="results file name")
    args = p.parse_args()
    if args.source == "store":
        args.steps = args.steps or 8
        args.configs = args.configs or "1000:200"
        return store_main(args)
    args.steps = args.steps or 5
    configs = [tuple(int(x) for x in c.split(":"))
               for c in (args.configs or "100:50,1000:200").split(",")]
    EVAL_USERS[0] = args.eval_users
    TIMELINES[0] = args.targets_per_timeline
    rows = []
    for L, K in configs:
        for name in args.models:
            for xla in ([False, True] if args.xla else [False]):
                row = measure(name, L, K, args.batch, args.steps, xla)
                print(row, flush=True)
                rows.append(row)
    cols = ["model", "L", "K", "batch", "xla", "train_ex_per_s", "train_ex_per_s_timelines",
            "timelines_speedup", "eval_ex_per_s",
            "train_ms_per_step", "eval_ms_per_batch", "eval_users_per_s",
            "eval_users_per_s_per_candidate"]
    write_results(args.name, {"machine": machine(), "rows": rows, "source": "memory",
                              "steps_median_of": args.steps},
                  markdown_table(rows, cols), args.out)


if __name__ == "__main__":
    main()
