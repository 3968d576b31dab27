"""Input throughput at L=1,000: examples/s read, expanded, parsed and batched from both
formats (the sequence store and self-contained Examples; for the store also the timeline
batches of `train.input_mode: timelines`), against the SEMINAR training rate in both input
modes (L=1000, K=200, d=64, H=4, batch 256) measured in the same run.

Data: generated KuaiSAR-schema logs with long histories (`--users` x `--events-per-user`),
preprocessed once per format at max_seq_len=L. The input pipeline runs as training reads it
(parallel interleave over shards, parallel maps, prefetch; no shuffle) and is drained
for `--batches` batches after one warm-up pass over `--warmup` batches.

    python benchmarks/input_throughput.py [--users 12] [--events-per-user 2500] [--L 1000]
"""
import argparse
import json
import os
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import seminar_tf  # noqa: E402,F401  (selects Keras 2 before TensorFlow)

from benchmarks.common import machine, markdown_table, write_results  # noqa: E402


def contract_for(data_dir, L):
    from seminar_tf.data.dataset import dataset_contract
    return dataset_contract(data_dir, L)


def input_rate(data_dir, L, batch, batches, warmup, timelines_T=0):
    """Examples (targets) per second delivered by the training input."""
    from seminar_tf.data.dataset import make_dataset, split_pattern
    contract = contract_for(data_dir, L)
    pattern = split_pattern(data_dir, "train")
    if timelines_T:
        from seminar_tf.data.timelines import timeline_dataset
        ds = timeline_dataset(pattern, contract, targets_per_timeline=timelines_T,
                              batch_size=batch, repeat=True)
        count = lambda b: int(b["t_mask"].numpy().sum())  # noqa: E731
    else:
        ds = make_dataset(pattern, contract, batch_size=batch, repeat=True,
                          drop_remainder=True)
        count = lambda b: int(b["label"].shape[0])  # noqa: E731
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        n += count(next(it))
    return n / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=12)
    p.add_argument("--events-per-user", type=int, default=2500)
    p.add_argument("--L", type=int, default=1000)
    p.add_argument("--T", type=int, default=16, help="targets per timeline window")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--train-steps", type=int, default=5)
    p.add_argument("--work", default=os.path.join(ROOT, "runs", "input_bench"))
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = p.parse_args()
    from beam_pipelines import pipeline
    from seminar_tf.data import synthetic
    raw = os.path.join(args.work, "raw")
    if not os.path.exists(os.path.join(raw, "meta.json")):
        synthetic.generate(raw, synthetic.SyntheticConfig(
            num_users=args.users, num_items=20_000, seq_len=args.events_per_user, seed=2))
    rows = []
    for fmt in ("store", "examples"):
        out = os.path.join(args.work, f"data-{fmt}-L{args.L}")
        if not os.path.exists(os.path.join(out, "stats.json")):
            shutil.rmtree(out, ignore_errors=True)
            pipeline.run("kuaisar", raw, out, max_seq_len=args.L, num_candidates=0, fmt=fmt,
                         beam_args=["--direct_running_mode=multi_processing",
                                    "--direct_num_workers=2"])
        with open(os.path.join(out, "stats.json")) as f:
            stats = json.load(f)
        size = sum(os.path.getsize(os.path.join(out, n)) for n in os.listdir(out)
                   if n.endswith(".tfrecord.gz"))
        modes = [("make_dataset", 0)] + ([("timeline_dataset", args.T)] if fmt == "store"
                                         else [])
        for label, T in modes:
            rate = input_rate(out, args.L, args.batch, args.batches, args.warmup, T)
            rows.append({"input": f"{label} ({fmt})", "L": args.L, "batch": args.batch,
                         "examples_per_s": round(rate, 0), "train_examples":
                         stats["examples"]["train"], "output_mb": round(size / 2**20, 1)})
            print(json.dumps(rows[-1]), flush=True)
    from train_throughput import TIMELINES, measure
    TIMELINES[0] = args.T
    train = measure("seminar", args.L, 200, args.batch, args.train_steps, False)
    rates = {"examples": train["train_ex_per_s"],
             "timelines": train["train_ex_per_s_timelines"]}
    for mode, rate in rates.items():
        rows.append({"input": f"SEMINAR train step, input_mode={mode} (in-memory batch)",
                     "L": args.L, "batch": args.batch, "examples_per_s": round(rate, 0)})
    for r in rows[:-2]:
        for mode, rate in rates.items():
            r[f"x_seminar_{mode}"] = round(r["examples_per_s"] / rate, 2)
    cols = ["input", "L", "batch", "examples_per_s", "x_seminar_examples",
            "x_seminar_timelines", "train_examples", "output_mb"]
    write_results("input_throughput", {"machine": machine(), "rows": rows,
                                       "config": {k: v for k, v in vars(args).items()
                                                  if k not in ("work", "out")}},
                  markdown_table(rows, cols), args.out)


if __name__ == "__main__":
    main()
