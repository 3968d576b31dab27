"""Model comparison on one generated lifelong dataset, over several seeds.

Every registry model (DIN, SIM-hard, SIM-soft, ETA, TWIN, QIN, full attention, SEMINAR) plus
SEMINAR ablations (no pretraining; pretraining without each objective in turn) is trained for
one epoch per seed on the same data and evaluated with the same protocol: AUC / GAUC / logloss
on the test impressions, HIT@10 / NDCG@10 / MRR on the fixed 1 + 99 candidate sets.

Writes `<out>/compare_models.{json,md,png}`; finished runs are cached under `--work` and
skipped on a rerun (a killed comparison resumes).

    python benchmarks/compare_models.py [--users 120 --seq-len 1500 --L 1000 --K 100]
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

from benchmarks.common import machine, markdown_table, write_results  # noqa: E402

METRICS = ("auc", "gauc", "logloss", "hit@10", "ndcg@10", "mrr")
BASELINES = ("din", "sim_hard", "sim_soft", "eta", "twin", "qin", "full_attention")
VARIANTS = {  # name -> (registry model, PSU objective weights or None for no pretraining)
    **{b: (b, None) for b in BASELINES},
    "seminar_no_pretrain": ("seminar", None),
    "seminar": ("seminar", dict(objective_weights={
        "alignment": 1.0, "next_pair": 1.0, "relevance": 1.0})),
    "seminar_wo_alignment": ("seminar", dict(objective_weights={
        "alignment": 0.0, "next_pair": 1.0, "relevance": 1.0})),
    "seminar_wo_next_pair": ("seminar", dict(objective_weights={
        "alignment": 1.0, "next_pair": 0.0, "relevance": 1.0})),
    "seminar_wo_relevance": ("seminar", dict(objective_weights={
        "alignment": 1.0, "next_pair": 1.0, "relevance": 0.0})),
}


def prepare_data(work, args):
    from beam_pipelines import pipeline
    from seminar_tf.data import synthetic
    data = os.path.join(work, "data")
    if os.path.exists(os.path.join(data, "stats.json")):
        return data
    raw = os.path.join(work, "raw")
    cfg = synthetic.SyntheticConfig(num_users=args.users, num_items=args.items,
                                    seq_len=args.seq_len, seed=args.data_seed)
    synthetic.generate(raw, cfg)
    start = synthetic.START_MS + int(args.target_window_start * cfg.days * 86_400_000)
    pipeline.run("kuaisar", raw, data, max_seq_len=args.L, min_target_time_ms=start,
                 num_candidates=100, beam_args=["--direct_running_mode=multi_processing",
                                                "--direct_num_workers=2"])
    return data


def run_one(work, data, name, seed, args):
    from seminar_tf import training
    from seminar_tf.pretraining import pretrain
    path = os.path.join(work, "runs", f"{name}-seed{seed}")
    done = os.path.join(path, "result.json")
    if os.path.exists(done):
        with open(done) as f:
            return json.load(f)
    model_name, psu_weights = VARIANTS[name]
    model = dict(embedding_dim=args.dim, num_heads=args.heads, top_k=args.K,
                 short_term_len=20,
                 gsu_options={"qin": {"first_k": min(2 * args.K, args.L)}})
    train = dict(batch_size=args.batch, epochs=1, seed=seed, learning_rate=args.lr)
    cfg = training.config_for(model_name, data, model=model, train=train)
    t0 = time.time()
    pre_seconds = 0.0
    init = None
    if psu_weights is not None:
        psu_dir = os.path.join(path, "psu")
        pcfg = cfg.replace(train={**psu_weights, "learning_rate": args.lr})
        pre = pretrain(data, psu_dir, pcfg, verbose=0)
        pre_seconds = pre["seconds"]
        init = psu_dir
    r = training.train(model_name, data, os.path.join(path, "model"), cfg, init_from=init,
                       verbose=0)
    m = training.evaluate(os.path.join(path, "model"), data, with_popularity=False)
    result = {"name": name, "seed": seed, "train_seconds": r["train_seconds"],
              "pretrain_seconds": pre_seconds, "wall_seconds": round(time.time() - t0, 1),
              **{k: m["test"][k] for k in ("auc", "gauc", "logloss")},
              **{k: m["candidates"][k] for k in ("hit@10", "ndcg@10", "mrr")}}
    os.makedirs(path, exist_ok=True)
    with open(done, "w") as f:
        json.dump(result, f, indent=2)
    return result


def summarize(results):
    rows = []
    for name in VARIANTS:
        rs = [r for r in results if r["name"] == name]
        if not rs:
            continue
        row = {"model": name, "seeds": len(rs)}
        for k in METRICS + ("train_seconds", "pretrain_seconds"):
            vals = np.array([r[k] for r in rs], float)
            row[k] = float(vals.mean())
            row[f"{k}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        rows.append(row)
    return rows


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    names = [r["model"] for r in rows]
    for ax, metric in zip(axes, ("auc", "ndcg@10")):
        ax.bar(range(len(rows)), [r[metric] for r in rows],
               yerr=[r[f"{metric}_std"] for r in rows], capsize=3,
               color=["tab:red" if n.startswith("seminar") else "tab:blue" for n in names])
        lo = min(r[metric] - 2 * r[f"{metric}_std"] for r in rows)
        ax.set_ylim(max(0.0, lo - 0.02), None)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
        ax.set_title(f"test {metric} (mean ± std over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", default=os.path.join(ROOT, "runs", "compare"))
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    p.add_argument("--users", type=int, default=120)
    p.add_argument("--items", type=int, default=4000)
    p.add_argument("--seq-len", type=int, default=1500)
    p.add_argument("--target-window-start", type=float, default=0.92)
    p.add_argument("--L", type=int, default=1000)
    p.add_argument("--K", type=int, default=100)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--models", nargs="*", default=list(VARIANTS))
    args = p.parse_args()
    os.makedirs(args.work, exist_ok=True)
    t0 = time.time()
    data = prepare_data(args.work, args)
    with open(os.path.join(data, "stats.json")) as f:
        stats = json.load(f)
    print(f"data ready in {time.time() - t0:.0f} s: {stats['examples']}", flush=True)
    results = []
    for seed in range(args.seeds):
        for name in args.models:
            r = run_one(args.work, data, name, seed, args)
            print(json.dumps(r), flush=True)
            results.append(r)
    rows = summarize(results)
    cols = ["model", "seeds"] + [f"{k}" for k in METRICS] + ["train_seconds",
                                                             "pretrain_seconds"]
    table_rows = [{**{c: r[c] for c in ("model", "seeds")},
                   **{k: f"{r[k]:.4f} ± {r[k + '_std']:.4f}" for k in METRICS},
                   "train_seconds": f"{r['train_seconds']:.0f}",
                   "pretrain_seconds": f"{r['pretrain_seconds']:.0f}"} for r in rows]
    os.makedirs(args.out, exist_ok=True)
    plot(rows, os.path.join(args.out, "compare_models.png"))
    config = {k: v for k, v in vars(args).items() if k not in ("work", "out")}
    header = (f"Config: {json.dumps(config)}; examples {stats['examples']}; "
              f"total wall {time.time() - t0:.0f} s\n\n")
    write_results("compare_models", {"machine": machine(), "config": config,
                                     "dataset": stats["examples"], "rows": rows,
                                     "runs": results},
                  header + markdown_table(table_rows, cols), args.out)


if __name__ == "__main__":
    main()
