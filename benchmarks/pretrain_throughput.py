"""PSU pretraining throughput, as `seminar pretrain` runs it.

Default (`--source store`): the steady-state steps of `seminar pretrain` on generated
sequence-store data (`benchmarks/store_steps.py`), L=1,000, T=8 scored positions per
target, d=64, H=4, batch 256, per path:
  default    `train.input_mode: auto`: shared windows over the store (a window of L +
             `targets_per_timeline` behaviours encoded once; the union of its targets' scored
             positions scored once)
  examples   per-example batches (each target's L-history encoded for its T positions): the
             baseline, in the same run
An example is one target with its T scored positions.

`--source memory`: the next-pair formulations on a random in-memory batch (history repeated
T times, the formulation before, against one projection per history with causal masks).

    python benchmarks/pretrain_throughput.py [--L 1000] [--batch 256] [--steps 8]
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import seminar_tf  # noqa: E402,F401
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.common import machine, markdown_table, median_seconds, write_results  # noqa
from helpers import random_batch, tiny_item_table  # noqa: E402  (random contract batches)
from seminar_tf.config import SeminarConfig  # noqa: E402
from seminar_tf.models.psu import PretrainingSearchUnit  # noqa: E402
from seminar_tf.models.registry import model_config  # noqa: E402
from seminar_tf.tasks.objectives import next_pair  # noqa: E402


def repeated(esu, targets, keys, mask, values=None):
    """The formulation before: every row's history copied T times, one target per copy."""
    values = keys if values is None else values
    B, T, d, L = tf.shape(targets)[0], targets.shape[1], targets.shape[-1], keys.shape[1]
    out = esu(tf.reshape(targets, [B * T, d]), tf.repeat(keys, T, axis=0),
              tf.reshape(mask, [B * T, L]), tf.repeat(values, T, axis=0))
    return tf.reshape(out, [B, T, -1])


def measure(cfg, batch_size, steps, formulation):
    psu = PretrainingSearchUnit(cfg)
    psu.set_item_table(tiny_item_table(cfg))
    if formulation == "repeat (before)":
        psu.esu.attend_many = lambda *a: repeated(psu.esu, *a)
    psu.build_all()
    psu.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    L = cfg.data.max_seq_len
    data = random_batch(cfg, batch=batch_size, seed=1, lengths=list(
        np.random.default_rng(0).integers(L // 4, L + 1, batch_size)))
    fn = psu.make_train_function()
    it = iter(tf.data.Dataset.from_tensors(data).repeat())
    sec = median_seconds(lambda: fn(it), steps)
    return {"formulation": formulation, "L": L, "T": cfg.train.psu_positions,
            "batch": batch_size, "ms_per_step": 1000 * sec,
            "examples_per_s": batch_size / sec}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", choices=["store", "memory"], default="store")
    p.add_argument("--L", type=int, default=1000)
    p.add_argument("--T", type=int, default=8, help="scored positions per target")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--users", type=int, default=160, help="store: generated users")
    p.add_argument("--events-per-user", type=int, default=1300)
    p.add_argument("--work", default=os.path.join(ROOT, "runs", "train_bench"))
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = p.parse_args()
    config = {k: v for k, v in vars(args).items() if k not in ("out", "work")}
    if args.source == "store":
        from benchmarks import store_steps
        data = store_steps.store_data(args.work, args.users, args.events_per_user, args.L)
        rows = [store_steps.pretrain_rate(data, args.L, args.batch, path, args.T,
                                          args.warmup, args.steps)
                for path in ("default", "examples")]
        rows[0]["x_examples"] = rows[0]["pretrain_ex_per_s"] / rows[1]["pretrain_ex_per_s"]
        for r in rows:
            print(r, flush=True)
        write_results("pretrain_throughput", {
            "machine": machine(), "rows": rows, "config": config, "source": "store",
            "data": store_steps.data_facts(data)}, markdown_table(rows, [
                "L", "T", "batch", "path", "input_mode", "pretrain_ex_per_s", "x_examples",
                "ms_per_step", "examples_per_step"]), args.out)
        return
    cfg = model_config("seminar", SeminarConfig().replace(
        data=dict(max_seq_len=args.L, item_vocab_size=50_000, query_vocab_size=5_000,
                  attr_vocab_size=2_000, user_vocab_size=10_000, text_dim=32, image_dim=32),
        model=dict(embedding_dim=64, num_heads=4, top_k=min(200, args.L)),
        train=dict(batch_size=args.batch, psu_positions=args.T)))
    rows = [measure(cfg, args.batch, args.steps, f)
            for f in ("repeat (before)", "causal mask (now)")]
    rows[1]["speedup"] = rows[0]["ms_per_step"] / rows[1]["ms_per_step"]
    for r in rows:
        print(r, flush=True)
    write_results("pretrain_throughput_memory", {
        "machine": machine(), "rows": rows, "config": config, "module": next_pair.__name__},
        markdown_table(rows, ["formulation", "L", "T", "batch", "ms_per_step",
                              "examples_per_s", "speedup"]), args.out)


if __name__ == "__main__":
    main()
