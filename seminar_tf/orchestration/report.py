"""`seminar report --run DIR`: report.md and PNG plots of a pipeline run directory.

Plots: training curves by step and validation metrics per model; model comparison with
error bars (bootstrap over users of the test impressions and candidate groups); PQ recall@K
against bytes per behaviour; GSU latency, exact vs PQ, against sequence length.
"""
from __future__ import annotations

import csv
import io
import os
from typing import Dict, List

import numpy as np

from seminar_tf import metrics as M
from seminar_tf import storage
from seminar_tf.tables import markdown_table


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _savefig(fig, path: str) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    storage.write_bytes(path, buf.getvalue())


def _read_csv(path: str) -> List[Dict[str, float]]:
    if not storage.exists(path):
        return []
    text = storage.read_text(path)
    return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(text))]


def bootstrap(model_dir: str, n: int = 200, seed: int = 0) -> Dict[str, Dict[str, float]]:
    """Mean and std of AUC (resampling users) and NDCG@10 (resampling candidate groups)."""
    path = os.path.join(model_dir, "predictions.npz")
    if not storage.exists(path):
        return {}
    z = storage.load_npz(path)
    rng = np.random.default_rng(seed)
    out = {}
    users = np.unique(z["test_user"])
    by_user = {u: np.flatnonzero(z["test_user"] == u) for u in users}
    aucs = []
    for _ in range(n):
        idx = np.concatenate([by_user[u] for u in rng.choice(users, len(users))])
        a = M.auc(z["test_label"][idx], z["test_score"][idx])
        if np.isfinite(a):
            aucs.append(a)
    out["auc"] = {"mean": M.auc(z["test_label"], z["test_score"]),
                  "std": float(np.std(aucs))}
    if "cand_user" in z and len(z["cand_user"]):
        groups = z["cand_user"].astype(np.int64) * 10**10 + z["cand_timestamp"].astype(np.int64)
        ranks = M.positive_ranks(groups, z["cand_label"], z["cand_score"])
        ndcg = np.where(ranks <= 10, 1.0 / np.log2(1.0 + ranks), 0.0)
        boots = [ndcg[rng.integers(0, len(ndcg), len(ndcg))].mean() for _ in range(n)]
        out["ndcg@10"] = {"mean": float(ndcg.mean()), "std": float(np.std(boots))}
    return out


def write_report(run_dir: str) -> str:
    plt = _plt()
    man = {}
    for stage in storage.listdir(run_dir):
        p = os.path.join(run_dir, stage, "manifest.json")
        if storage.exists(p):
            man[stage] = storage.read_json(p)
    figs = os.path.join(run_dir, "report")
    storage.makedirs(figs)
    shown = os.path.abspath(run_dir) if storage.is_local(run_dir) else run_dir
    lines = ["# SEMINAR-TF run report", "", f"Run directory: `{shown}`", ""]
    models = {s: man[s]["outputs"] for s in ("finetune", "baseline") if s in man}

    # 1. training curves
    if models:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for stage, out in models.items():
            rows = _read_csv(os.path.join(out["model_dir"], "batches.csv"))
            if rows:
                axes[0].plot([r["step"] for r in rows], [r["loss"] for r in rows],
                             label=f"{out['model']} train loss")
                axes[1].plot([r["step"] for r in rows], [r["auc"] for r in rows],
                             label=f"{out['model']} train AUC (running)")
            hist = _read_csv(os.path.join(out["model_dir"], "history.csv"))
            if hist:
                steps = [r["step"] for r in rows][-1:] * len(hist) if rows else list(
                    range(len(hist)))
                axes[0].scatter(steps[:len(hist)], [h.get("val_loss", np.nan) for h in hist],
                                marker="x", s=60, label=f"{out['model']} validation loss")
                axes[1].scatter(steps[:len(hist)], [h.get("val_auc", np.nan) for h in hist],
                                marker="x", s=60, label=f"{out['model']} validation AUC")
        for ax, t in zip(axes, ("loss", "AUC")):
            ax.set_xlabel("step")
            ax.set_title(t)
            ax.legend(fontsize=7)
        if "pretrain" in man:
            pass
        fig.tight_layout()
        _savefig(fig, os.path.join(figs, "training_curves.png"))
        plt.close(fig)
        lines += ["## Training", "", "![training curves](report/training_curves.png)", ""]

    # 2. comparison with error bars
    if models:
        stats = {out["model"]: bootstrap(out["model_dir"]) for out in models.values()}
        stats = {k: v for k, v in stats.items() if v}
        if stats:
            fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
            for ax, metric in zip(axes, ("auc", "ndcg@10")):
                names = [k for k in stats if metric in stats[k]]
                ax.bar(names, [stats[k][metric]["mean"] for k in names],
                       yerr=[stats[k][metric]["std"] for k in names], capsize=4,
                       color=["tab:red" if k == "seminar" else "tab:blue" for k in names])
                ax.set_title(f"test {metric} (bootstrap std over users)")
            fig.tight_layout()
            _savefig(fig, os.path.join(figs, "model_comparison.png"))
            plt.close(fig)
            lines += ["## Model comparison", "", "![comparison](report/model_comparison.png)",
                      ""]
    if "evaluate" in man:
        lines += [man["evaluate"]["outputs"]["table"], ""]

    # 3. PQ recall vs bytes, 4. latency vs L
    if "codebooks" in man:
        cb = man["codebooks"]["outputs"]
        sweep = cb.get("recall_sweep", [])
        if sweep:
            fig, ax = plt.subplots(figsize=(5, 3.6))
            ax.plot([r["bytes_per_behaviour"] for r in sweep], [r["recall_at_k"] for r in sweep],
                    marker="o")
            for r in sweep:
                ax.annotate(f"S={r['S']}", (r["bytes_per_behaviour"], r["recall_at_k"]))
            ax.set_xscale("log", base=2)
            ax.set_xlabel("bytes per behaviour")
            ax.set_ylabel(f"recall@{cb['top_k']} vs exact GSU")
            ax.set_title("PQ recall on the trained model")
            fig.tight_layout()
            _savefig(fig, os.path.join(figs, "pq_recall_vs_bytes.png"))
            plt.close(fig)
            lines += ["## Product quantization", "",
                      "![pq recall](report/pq_recall_vs_bytes.png)", ""]
        lat = cb.get("gsu_latency", [])
        if lat:
            fig, ax = plt.subplots(figsize=(5, 3.6))
            ax.plot([r["L"] for r in lat], [r["exact_ms"] for r in lat], marker="o",
                    label="exact (cached fused float keys)")
            ax.plot([r["L"] for r in lat], [r["pq_ms"] for r in lat], marker="o",
                    label="PQ lookup (fused codebook, XLA)")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("behaviours per request (L)")
            ax.set_ylabel("ms per call (batch 32)")
            ax.legend(fontsize=8)
            fig.tight_layout()
            _savefig(fig, os.path.join(figs, "gsu_latency.png"))
            plt.close(fig)
            lines += ["![gsu latency](report/gsu_latency.png)", "",
                      markdown_table(lat, ["L", "exact_ms", "pq_ms"]), ""]
    if "export" in man and "blessing" in man["export"]["outputs"]:
        e = man["export"]["outputs"]
        b = e["blessing"]
        verdict = ("published" if e.get("published") else "NOT published") + (
            " (forced past the gate)" if b.get("forced") else "")
        rows = [{"model": k, b["metric"]: v} for k, v in b["figures"].items()
                if k != "examples"]
        lines += ["## Blessing gate", "", f"Validation {b['metric']} on {b['figures']['examples']}"
                  f" {b['split']} examples; thresholds {b['thresholds']}: **{verdict}**.", "",
                  markdown_table(rows, ["model", b["metric"]], {b["metric"]: ".4f"}), ""]
        lines += [f"- {r}" for r in b["reasons"]] + ([""] if b["reasons"] else [])
    if "serve" in man and "latency_ms_p50" in man["serve"]["outputs"]:
        s = man["serve"]["outputs"]
        lines += ["## Serving", "", f"{s['requests']} gRPC Predict requests x "
                  f"{s['candidates_per_request']} candidates: p50 {s['latency_ms_p50']:.1f} ms,"
                  f" p99 {s['latency_ms_p99']:.1f} ms; max |served - in-process| "
                  f"{s['max_abs_diff_vs_in_process']:.1e}.", ""]
    lines += ["## Stage timings", "", markdown_table(
        [{"stage": k, "seconds": v["seconds"]} for k, v in man.items()], ["stage", "seconds"],
        {"seconds": ".1f"})]
    path = os.path.join(run_dir, "report.md")
    storage.write_text(path, "\n".join(lines) + "\n")
    return path
