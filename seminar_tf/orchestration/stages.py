"""The pipeline's stages as plain functions over directories: one implementation behind
`seminar demo`, `seminar run-pipeline` (`seminar_tf.orchestration.run_pipeline`) and
Kubeflow Pipelines (`seminar_tf.orchestration.kfp_pipeline`).

Each stage takes the pipeline config (the JSON of `seminar run-pipeline`, merged with
`pipeline.DEFAULTS`), the directories it reads and the directory it writes, and returns a
JSON-able dict of outputs.
"""
from __future__ import annotations

import os
from typing import Dict, Optional

from seminar_tf import storage


def generate(cfg: Dict, out: str) -> Dict:
    """Synthetic KuaiSAR-schema logs into `out`."""
    from seminar_tf.data import synthetic
    g = cfg["generate"]
    stats = synthetic.generate(out, synthetic.SyntheticConfig(
        num_users=g["users"], num_items=g["items"], seq_len=g["seq_len"], seed=g["seed"]))
    return {"raw": out, "stats": stats}


def preprocess(cfg: Dict, raw: str, out: str) -> Dict:
    """The Beam preprocessing job: raw logs -> the sequence store (or `format: examples`),
    vocabularies, item table."""
    from beam_pipelines import pipeline as beam_pipeline
    from beam_pipelines.options import PreprocessOptions
    p = dict(cfg["preprocess"])
    source = p.pop("source", "kuaisar")
    # the stage owns its directory: a rerun (changed inputs or config) replaces it whole
    stats = beam_pipeline.run(source, raw, out, PreprocessOptions.from_dict(p), progress=True,
                              overwrite=True)
    return {"data": out, "examples": stats["examples"], "events": stats["events"],
            "dead_letters": stats["dead_letters_total"]}


def model_config(cfg: Dict, data: str, model_name: str, **train):
    """The SeminarConfig of `model_name` on dataset `data` with the pipeline's sections."""
    from seminar_tf.workflows.model_dir import config_for
    return config_for(model_name, data, model=cfg["model"],
                      train={**cfg["train"], **train}, pq=cfg["pq"])


def pretrain(cfg: Dict, data: str, out: str, verbose: int = 2) -> Dict:
    """PSU pretraining on the training histories."""
    from seminar_tf.workflows.pretraining import pretrain as run
    result = run(data, out, model_config(cfg, data, "seminar", **cfg["pretrain"]),
                 verbose=verbose)
    return {"psu": out, "alignment_before": result["alignment_before"],
            "alignment_after": result["alignment_after"], "seconds": result["seconds"]}


def train(cfg: Dict, data: str, out: str, model_name: str, init_from: Optional[str] = None,
          verbose: int = 2) -> Dict:
    """Trains `model_name` (SEMINAR finetuning when `init_from` is a PSU directory)."""
    from seminar_tf.workflows import training
    r = training.train(model_name, data, out, model_config(cfg, data, model_name),
                       init_from=init_from, verbose=verbose)
    return {"model_dir": out, "model": model_name, "steps": r["steps"],
            "train_seconds": r["train_seconds"]}


def codebooks(cfg: Dict, model_dir: str, data: Optional[str] = None,
              out: Optional[str] = None) -> Dict:
    """PQ codebooks for a trained model (in place, or into a copy at `out`)."""
    from seminar_tf.workflows.codebook_build import build_for_model_dir, pq_recall
    if out is not None and out.rstrip("/") != model_dir.rstrip("/"):
        storage.copy_tree(model_dir, out)
        model_dir = out
    info = build_for_model_dir(model_dir, data, **cfg["pq"])
    recall = pq_recall(model_dir, data, with_metrics=False)
    return {"model_dir": model_dir, "pq_dir": os.path.join(model_dir, "pq"), "info": info,
            "recall_at_k": recall["recall_at_k"], "top_k": recall["top_k"]}


def evaluate(cfg: Dict, data: str, seminar_dir: str, baseline_dir: Optional[str],
             out: str) -> Dict:
    """Metrics of SEMINAR (exact and PQ GSU) and the baseline on the same test data."""
    from seminar_tf.workflows.evaluation import evaluate as run
    from seminar_tf.workflows.model_dir import model_info
    from seminar_tf.tables import metrics_table
    results = {}
    for model_dir in (seminar_dir, baseline_dir):
        if model_dir:
            results[model_info(model_dir)["model"]] = run(model_dir, data)
    results["seminar_pq"] = run(seminar_dir, data, gsu="pq", with_popularity=False)
    storage.write_json(os.path.join(out, "metrics.json"), results, sort_keys=True)
    return {"metrics": results, "table": metrics_table(results)}


def export(cfg: Dict, model_dir: str, data: str, out: str, name: str = "seminar",
           force: Optional[bool] = None) -> Dict:
    """The push step: a TF Serving SavedModel with the PQ GSU under `out/<name>/<version>`,
    published only if the blessing gate passes (`seminar_tf.workflows.blessing`: the
    pipeline's `push` section; `force` (default `push.force`) publishes anyway, recorded)."""
    from seminar_tf.workflows import blessing
    from seminar_tf.workflows.export import export_from_model_dir
    from seminar_tf.workflows.model_dir import load_model
    push = dict(cfg.get("push") or {})
    force = bool(push.get("force", False)) if force is None else force
    decision = blessing.evaluate_for_push(load_model(model_dir, gsu="pq"), data, out, name,
                                          blessing.Thresholds.from_dict(push))
    decision["forced"] = bool(force and not decision["blessed"])
    decision["record"] = blessing.record(out, name, decision)
    if not (decision["blessed"] or force):
        print(f"[export] not published: {'; '.join(decision['reasons'])} (--force-push "
              "publishes anyway)", flush=True)
        return {"base": out, "name": name, "published": False, "blessing": decision}
    report = export_from_model_dir(model_dir, out, name, gsu="pq", data_dir=data)
    return {"base": out, "name": name, "published": True, "blessing": decision, **report}
