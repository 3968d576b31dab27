"""Like-for-like model comparison on generated lifelong data, two regimes, many seeds.

Regimes (`seminar generate --regime`): "category" (the lifelong interest is a category:
SIM-hard's rule finds it by construction) and "semantic" (a semantic cluster across
categories that the text / image vectors reveal). Per regime: `--data-seeds` datasets x
`--model-seeds` model seeds, >= 1,000 candidate groups each (many users, short histories).

Rows (every model gets the same features it is listed with and the same optimizer budget):
  twin, sim_hard             as published: ids + attributes
  twin+mm, sim_soft+mm       the same GSUs with all modalities (id, attributes, text, image;
                             queries are part of every pair): separates "more features"
  seminar_no_pretrain        SEMINAR's encoder (all modalities, projections), no PSU
  seminar                    PSU pretraining (--pretrain-steps) + finetuning (--steps)
  ablations (first data seed): each PSU objective off; PSU frozen during finetuning.
Budget: a fixed number of optimizer steps, no early stopping; models without pretraining get
--steps + --pretrain-steps steps, so every row has the same number of optimizer steps.

Metrics: test impression AUC and NDCG@10 on the 1+99 candidate groups. Per (regime, model):
mean and std over runs, and a paired bootstrap 95% interval of the difference to SEMINAR,
resampling users within each data seed (scores averaged over model seeds), pooled over data
seeds. Runs are cached under --work (a rerun resumes); the JSON records the configuration
and lists the runs still missing.

Input modes: every row trains with `seminar train`'s default input (`train.input_mode: auto`,
timeline batches over the sequence store); `--input-modes examples` adds the core rows
trained from per-example batches (`<model>@examples`) with the paired interval of
(default - per-example).

    python benchmarks/compare_models.py [--regimes category semantic] [--max-minutes 60]
    python benchmarks/compare_models.py --regimes semantic --models twin seminar_no_pretrain \
        seminar --no-ablations --input-modes examples --name compare_input_modes
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

ALL_MODALITIES = ["id", "text", "image", "attr"]
PSU = {"alignment": 1.0, "next_pair": 1.0, "relevance": 1.0}
# name -> (registry model, model-section overrides, PSU objective weights or None, freeze)
CORE = {
    "twin": ("twin", {}, None, False),
    "twin+mm": ("twin", {"modalities": ALL_MODALITIES}, None, False),
    "sim_hard": ("sim_hard", {}, None, False),
    "sim_soft+mm": ("sim_soft", {"modalities": ALL_MODALITIES}, None, False),
    "seminar_no_pretrain": ("seminar", {}, None, False),
    "seminar": ("seminar", {}, PSU, False),
}
ABLATIONS = {
    "seminar_wo_alignment": ("seminar", {}, dict(PSU, alignment=0.0), False),
    "seminar_wo_next_pair": ("seminar", {}, dict(PSU, next_pair=0.0), False),
    "seminar_wo_relevance": ("seminar", {}, dict(PSU, relevance=0.0), False),
    "seminar_frozen_psu": ("seminar", {}, PSU, True),
}
VARIANTS = {**CORE, **ABLATIONS}


def prepare_data(work, regime, seed, args):
    from beam_pipelines import pipeline
    from seminar_tf.data import synthetic
    data = os.path.join(work, f"data-{regime}-{seed}")
    if os.path.exists(os.path.join(data, "stats.json")):
        return data
    raw = os.path.join(work, f"raw-{regime}-{seed}")
    synthetic.generate(raw, synthetic.SyntheticConfig(
        num_users=args.users, num_items=args.items, seq_len=args.seq_len, seed=seed,
        regime=regime))
    pipeline.run("kuaisar", raw, data, max_seq_len=args.L, num_candidates=100, seed=seed,
                 overwrite=True)  # a partial earlier run of this cache is replaced
    return data


def run_one(work, data, regime, data_seed, name, seed, args):
    from seminar_tf.workflows import training
    from seminar_tf.workflows.pretraining import pretrain
    path = os.path.join(work, "runs", f"{regime}-d{data_seed}", f"{name}-m{seed}")
    done = os.path.join(path, "result.json")
    if os.path.exists(done):
        with open(done) as f:
            return json.load(f)
    # "@examples": per-example batches; "@timelinesT": timeline batches of T targets;
    # "@pretrain-examples": per-example batches for pretraining only
    variant, _, mode = name.partition("@")
    pre_mode = "examples" if mode == "pretrain-examples" else None
    mode = "" if pre_mode else mode
    tl = {"targets_per_timeline": int(mode[9:])} if mode.startswith("timelines") and \
        len(mode) > 9 else {}
    mode = "timelines" if tl else mode
    model_name, overrides, psu_weights, freeze = VARIANTS[variant]
    model = dict(embedding_dim=args.dim, num_heads=args.heads, top_k=args.K,
                 short_term_len=10, **overrides)
    steps = args.steps if psu_weights is not None else args.steps + args.pretrain_steps
    train = dict(batch_size=args.batch, epochs=1, steps_per_epoch=steps, seed=seed,
                 learning_rate=args.lr, early_stopping_patience=10**6,
                 freeze_psu=freeze, input_mode=mode or "auto", **tl)
    cfg = training.config_for(model_name, data, model=model, train=train)
    t0 = time.time()
    init, pre_seconds = None, 0.0
    if psu_weights is not None:
        pcfg = cfg.replace(train={"objective_weights": psu_weights,
                                  **({"input_mode": pre_mode} if pre_mode else {})})
        pre = pretrain(data, os.path.join(path, "psu"), pcfg, verbose=0,
                       steps=args.pretrain_steps)
        pre_seconds, init = pre["seconds"], os.path.join(path, "psu")
    r = training.train(model_name, data, os.path.join(path, "model"), cfg, init_from=init,
                       verbose=0)
    m = training.evaluate(os.path.join(path, "model"), data, with_popularity=False)
    result = {"model": name, "regime": regime, "data_seed": data_seed, "model_seed": seed,
              "input_mode": r["input_mode"],
              "groups": m["candidates"]["groups"], "test_examples": m["test"]["examples"],
              "pretrain_steps": args.pretrain_steps if psu_weights is not None else 0,
              "train_steps": steps, "optimizer_steps": steps + (
                  args.pretrain_steps if psu_weights is not None else 0),
              "train_seconds": r["train_seconds"], "pretrain_seconds": pre_seconds,
              "wall_seconds": round(time.time() - t0, 1),
              **{k: m["test"][k] for k in ("auc", "gauc", "logloss")},
              **{k: m["candidates"][k] for k in ("hit@10", "ndcg@10", "mrr")}}
    with open(done, "w") as f:
        json.dump(result, f, indent=2)
    return result


def per_user(work, r):
    """(test users, labels, scores), (candidate users, NDCG@10 per group) of one run."""
    from seminar_tf.metrics import positive_ranks
    path = os.path.join(work, "runs", f"{r['regime']}-d{r['data_seed']}",
                        f"{r['model']}-m{r['model_seed']}", "model", "predictions.npz")
    z = np.load(path)
    ranks = positive_ranks(z["cand_group"], z["cand_label"], z["cand_score"])
    _, first = np.unique(z["cand_group"], return_index=True)
    users = z["cand_user"][first]
    ndcg = np.where(ranks <= 10, 1.0 / np.log2(1.0 + ranks), 0.0)
    return (z["test_user"], z["test_label"], z["test_score"]), (users, ndcg)


def bootstrap_vs_seminar(work, runs, regime, name, reps=1000, seed=0, ref="seminar"):
    """Paired bootstrap 95% intervals of (name - ref) AUC and NDCG@10, pooled over data
    seeds (users resampled within each data seed; scores averaged over model seeds)."""
    from seminar_tf.metrics import auc
    rng = np.random.default_rng(seed)
    diffs = {"auc": np.zeros(reps), "ndcg@10": np.zeros(reps)}
    seeds = sorted({r["data_seed"] for r in runs if r["regime"] == regime})
    used = 0
    for ds in seeds:
        pair = {}
        for model in (name, ref):
            rs = [r for r in runs if (r["regime"], r["data_seed"], r["model"]) == (
                regime, ds, model)]
            if not rs:
                break
            parts = [per_user(work, r) for r in rs]
            (tu, tl, _), (cu, _) = parts[0]
            ts = np.mean([p[0][2] for p in parts], 0)
            nd = np.mean([p[1][1] for p in parts], 0)
            pair[model] = (tu, tl, ts, cu, nd)
        if len(pair) < 2:
            continue
        used += 1
        tu, tl, ts_a, cu, nd_a = pair[name]
        _, _, ts_b, cu_b, nd_b = pair[ref]
        assert np.array_equal(cu, cu_b), "candidate groups differ between runs"
        users, inv = np.unique(np.concatenate([tu, cu]), return_inverse=True)
        t_user, c_user = inv[:len(tu)], inv[len(tu):]
        for b in range(reps):
            count = np.bincount(rng.integers(0, len(users), len(users)),
                                minlength=len(users))  # each user's multiplicity
            ti = np.repeat(np.arange(len(tu)), count[t_user])
            w = count[c_user].astype(float)
            diffs["auc"][b] += auc(tl[ti], ts_a[ti]) - auc(tl[ti], ts_b[ti])
            diffs["ndcg@10"][b] += (np.sum(w * nd_a) - np.sum(w * nd_b)) / w.sum()
    if not used:
        return None
    return {k: [float(np.percentile(v / used, 2.5)), float(np.percentile(v / used, 97.5))]
            for k, v in diffs.items()} | {"data_seeds": used}


def summarize(work, runs, regimes):
    rows = []
    for regime in regimes:
        names = list(VARIANTS) + sorted({r["model"] for r in runs if "@" in r["model"]})
        for name in names:
            rs = [r for r in runs if r["regime"] == regime and r["model"] == name]
            if not rs:
                continue
            row = {"regime": regime, "model": name, "runs": len(rs),
                   "groups_per_run": int(np.mean([r["groups"] for r in rs])),
                   "optimizer_steps": rs[0]["optimizer_steps"],
                   "wall_seconds": float(np.mean([r["wall_seconds"] for r in rs]))}
            for k in ("auc", "ndcg@10"):
                v = np.array([r[k] for r in rs], float)
                row[k] = float(v.mean())
                row[f"{k}_std"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
            if name != "seminar":
                ci = bootstrap_vs_seminar(work, runs, regime, name)
                if ci:
                    row["ci95_vs_seminar"] = ci
            if "@" in name:  # the default input against this one, paired per data seed
                ci = bootstrap_vs_seminar(work, runs, regime, name.split("@")[0], ref=name)
                if ci:
                    row["ci95_default_minus_this"] = ci
            rows.append(row)
    return rows


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    regimes = sorted({r["regime"] for r in rows})
    fig, axes = plt.subplots(len(regimes), 2, figsize=(12, 4 * len(regimes)), squeeze=False)
    for i, regime in enumerate(regimes):
        rs = [r for r in rows if r["regime"] == regime]
        for ax, metric in zip(axes[i], ("auc", "ndcg@10")):
            ax.bar(range(len(rs)), [r[metric] for r in rs],
                   yerr=[r[f"{metric}_std"] for r in rs], capsize=3,
                   color=["tab:red" if r["model"].startswith("seminar") else "tab:blue"
                          for r in rs])
            ax.set_ylim(max(0.0, min(r[metric] for r in rs) - 0.05), None)
            ax.set_xticks(range(len(rs)))
            ax.set_xticklabels([r["model"] for r in rs], rotation=45, ha="right", fontsize=8)
            ax.set_title(f"{regime}: {metric} (mean ± std over runs)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plan(args):
    """Every run of the grid, most informative first: the core rows of every regime on data
    seed 0, then the ablations (data seed 0), then the other data seeds."""
    core = [n for n in CORE if n in args.models] + [f"{n}@{m}" for m in args.input_modes
                                                    for n in CORE if n in args.models]
    out = [(regime, 0, name, ms) for regime in args.regimes for ms in range(args.model_seeds)
           for name in core]
    if args.ablations:
        out += [(regime, 0, name, ms) for regime in args.regimes
                for ms in range(args.model_seeds) for name in ABLATIONS]
    for ds in range(1, args.data_seeds):
        out += [(regime, ds, name, ms) for regime in args.regimes
                for ms in range(args.model_seeds) for name in core]
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", default=os.path.join(ROOT, "runs", "compare2"))
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    p.add_argument("--regimes", nargs="*", default=["category", "semantic"])
    p.add_argument("--users", type=int, default=1100)
    p.add_argument("--items", type=int, default=3000)
    p.add_argument("--seq-len", type=int, default=120)
    p.add_argument("--L", type=int, default=100)
    p.add_argument("--K", type=int, default=20)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--steps", type=int, default=300, help="finetuning optimizer steps")
    p.add_argument("--pretrain-steps", type=int, default=150)
    p.add_argument("--data-seeds", type=int, default=3)
    p.add_argument("--model-seeds", type=int, default=2)
    p.add_argument("--models", nargs="*", default=list(CORE), help="core rows to run")
    p.add_argument("--no-ablations", dest="ablations", action="store_false")
    p.add_argument("--input-modes", nargs="*", default=[],
                   help="also run the core rows with these train.input_mode values (rows "
                        "'<model>@<mode>', with the paired interval of default - this)")
    p.add_argument("--name", default="compare_models", help="results file name")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop starting new runs after this long (the rest stays missing)")
    args = p.parse_args()
    t0 = time.time()
    runs, missing = [], []
    for regime, ds, name, ms in plan(args):
        over = args.max_minutes is not None and time.time() - t0 > 60 * args.max_minutes
        cached = os.path.exists(os.path.join(args.work, "runs", f"{regime}-d{ds}",
                                             f"{name}-m{ms}", "result.json"))
        if over and not cached:
            missing.append({"regime": regime, "data_seed": ds, "model": name,
                            "model_seed": ms})
            continue
        data = prepare_data(args.work, regime, ds, args)
        r = run_one(args.work, data, regime, ds, name, ms, args)
        print(json.dumps(r), flush=True)
        runs.append(r)
    rows = summarize(args.work, runs, args.regimes)
    fmt = lambda r, k: f"{r[k]:.4f} ± {r[k + '_std']:.4f}"  # noqa: E731
    ci = lambda r, k: ("[{:+.4f}, {:+.4f}]".format(*r["ci95_vs_seminar"][k])  # noqa: E731
                       if "ci95_vs_seminar" in r else "")
    table_rows = [{"regime": r["regime"], "model": r["model"], "runs": r["runs"],
                   "groups/run": r["groups_per_run"], "steps": r["optimizer_steps"],
                   "AUC": fmt(r, "auc"), "AUC - SEMINAR (95% CI)": ci(r, "auc"),
                   "NDCG@10": fmt(r, "ndcg@10"),
                   "NDCG@10 - SEMINAR (95% CI)": ci(r, "ndcg@10"),
                   "NDCG@10 default - this (95% CI)": (
                       "[{:+.4f}, {:+.4f}]".format(*r["ci95_default_minus_this"]["ndcg@10"])
                       if "ci95_default_minus_this" in r else ""),
                   "wall s": f"{r['wall_seconds']:.0f}"} for r in rows]
    os.makedirs(args.out, exist_ok=True)
    if rows:
        plot(rows, os.path.join(args.out, f"{args.name}.png"))
    config = {k: v for k, v in vars(args).items() if k not in ("work", "out")}
    header = (f"Config: {json.dumps(config)}; {len(runs)} runs, {len(missing)} missing; "
              f"total wall {time.time() - t0:.0f} s\n\n")
    write_results(args.name, {"machine": machine(), "config": config, "runs": runs,
                                     "summary": rows, "missing": missing},
                  header + markdown_table(table_rows, list(table_rows[0]) if table_rows
                                          else ["model"]), args.out)


if __name__ == "__main__":
    main()
