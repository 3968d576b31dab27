"""Evaluation of trained rankers: impression metrics (AUC, GAUC, logloss) on the test split,
candidate metrics (HIT/NDCG@K, MRR) on the fixed 1+99 candidate groups, and a popularity
baseline on the same examples."""
from __future__ import annotations

import os
import time
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from seminar_tf import features as F
from seminar_tf import metrics as M
from seminar_tf import storage
from seminar_tf.config import SeminarConfig
from seminar_tf.data.dataset import make_dataset, split_pattern
from seminar_tf.workflows.model_dir import contract_of, data_dir_of, load_model


def predict_split(model, data_dir: str, split: str, batch_size: int = 512) -> Dict[str, np.ndarray]:
    """Scores every example of a split; returns labels, scores, users, timestamps, sources."""
    contract = contract_of(model.config)
    ds = make_dataset(split_pattern(data_dir, split), contract, batch_size=batch_size,
                      deterministic=True)

    @tf.function(reduce_retracing=True, jit_compile=model.config.train.jit_compile or None)
    def score(batch):
        return model(batch, training=False)["score"]

    cols = {"label": [], "score": [], "user": [], "timestamp": [], "source": [], "item": [],
            "group": []}
    for batch in ds:
        cols["score"].append(score(batch).numpy())
        cols["label"].append(batch[F.LABEL].numpy())
        cols["user"].append(batch[F.USER_ID].numpy())
        cols["timestamp"].append(batch[F.TIMESTAMP].numpy())
        cols["source"].append(batch[F.TARGET_SOURCE].numpy())
        cols["item"].append(batch[F.TARGET_ITEM].numpy())
        cols["group"].append(batch[F.GROUP_ID].numpy())
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}


def predict_groups(model, data_dir: str, groups_per_batch: int = 16,
                   batch_ends: Optional[list] = None) -> Dict[str, np.ndarray]:
    """Scores the candidate groups through the shared-history path (`LifelongRanker.rank`,
    the `rank` signature's graph): each group's history is parsed and encoded once, and its
    N candidates are scored together. Reads the `candidate_lists` split (ranking records).

    Args:
        batch_ends: if given, gets `(time.perf_counter(), groups)` appended after each batch
            (for steady-state timing, `benchmarks/store_steps.py`).

    Returns:
        the columns of `predict_split` (one row per real candidate).
    """
    contract = contract_of(model.config)
    ds = make_dataset(split_pattern(data_dir, "candidate_lists"), contract,
                      batch_size=groups_per_batch, deterministic=True,
                      parse=contract.parse_ranking_records)

    @tf.function(reduce_retracing=True, jit_compile=model.config.train.jit_compile or None)
    def score(context, candidates):
        ctx = {k: context[k] for k in (F.USER_ID, F.TARGET_QUERY, F.TARGET_SOURCE,
                                       *F.HISTORY_FEATURES)}
        return model.rank(ctx, candidates, training=False)["score"]

    cols = {k: [] for k in ("label", "score", "user", "timestamp", "source", "item", "group")}
    for context, cands in ds:
        mask = cands[F.CANDIDATE_MASK].numpy()
        n = mask.shape[1]
        row = lambda x: np.repeat(x.numpy()[:, None], n, 1)[mask]  # noqa: E731
        cols["score"].append(score(context, cands).numpy()[mask])
        cols["label"].append(cands[F.LABEL].numpy()[mask])
        cols["item"].append(cands[F.TARGET_ITEM].numpy()[mask])
        cols["group"].append(cands[F.GROUP_ID].numpy()[mask])
        cols["user"].append(row(context[F.USER_ID]))
        cols["timestamp"].append(row(context[F.TIMESTAMP]))
        cols["source"].append(row(context[F.TARGET_SOURCE]))
        if batch_ends is not None:
            batch_ends.append((time.perf_counter(), mask.shape[0]))
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}


def predict_candidates(model, data_dir: str, shared_history: bool = True):
    """The candidate groups' scores: through the shared-history path when the dataset has
    ranking records (`candidate_lists`), else (older datasets, or `shared_history=False`)
    one example per candidate. None if the dataset has no candidate groups."""
    for split, shared in (("candidate_lists", True), ("candidates", False)):
        if shared and not shared_history:
            continue
        try:
            return predict_groups(model, data_dir) if shared else predict_split(
                model, data_dir, split)
        except FileNotFoundError:
            continue
    return None


def impression_metrics(p: Dict[str, np.ndarray]) -> Dict[str, float]:
    out = {"auc": M.auc(p["label"], p["score"]),
           "gauc": M.gauc(p["user"], p["label"], p["score"]),
           "logloss": M.logloss(p["label"], p["score"]), "examples": int(len(p["label"]))}
    for name, src in (("ctr", F.SOURCE_REC), ("search", F.SOURCE_SEARCH)):
        sel = p["source"] == src
        if sel.any():
            out[f"{name}_auc"] = M.auc(p["label"][sel], p["score"][sel])
    return out


def candidate_metrics(p: Dict[str, np.ndarray]) -> Dict[str, float]:
    """HIT/NDCG@K and MRR over the candidate groups written by the pipeline (`group_id`);
    data written before group ids existed falls back to (user, timestamp)."""
    groups = p.get("group")
    if groups is None or not len(groups) or not np.all(groups != 0):
        groups = p["user"].astype(np.int64) * 10**10 + p["timestamp"].astype(np.int64)
    return M.ranking_metrics(groups, p["label"], p["score"])


def popularity_scores(data_dir: str, cfg: SeminarConfig, p: Dict[str, np.ndarray]):
    """The popularity baseline: an item's positive count in the training split."""
    contract = contract_of(cfg)
    counts = np.zeros(cfg.data.item_vocab_size)
    for batch in make_dataset(split_pattern(data_dir, "train"), contract, batch_size=2048,
                              deterministic=True):
        items, labels = batch[F.TARGET_ITEM].numpy(), batch[F.LABEL].numpy()
        np.add.at(counts, items, labels)
    return counts[p["item"].astype(np.int64)]


def evaluate(model_dir: str, data_dir: Optional[str] = None, *, model=None,
             with_popularity: bool = True, write: bool = True,
             gsu: Optional[str] = None, shared_history: bool = True) -> Dict:
    """Evaluates on the test split (AUC, GAUC, logloss) and the fixed candidate sets
    (HIT@K, NDCG@K, MRR); writes `metrics.json` into the model directory.

    Args:
        shared_history: score candidate groups through the shared-history `rank` path (one
            history encoding per group); False scores one example per candidate.
    """
    data_dir = data_dir_of(model_dir, data_dir)
    model = model or load_model(model_dir, gsu=gsu)
    test = predict_split(model, data_dir, "test")
    result = {"test": impression_metrics(test)}
    cand = predict_candidates(model, data_dir, shared_history)
    if cand is not None and len(cand["label"]):
        result["candidates"] = candidate_metrics(cand)
    if with_popularity:
        pop = dict(test, score=popularity_scores(data_dir, model.config, test))
        result["popularity_baseline"] = {"test": impression_metrics(pop)}
        if cand is not None and len(cand["label"]):
            popc = dict(cand, score=popularity_scores(data_dir, model.config, cand))
            result["popularity_baseline"]["candidates"] = candidate_metrics(popc)
    if write:
        suffix = "" if gsu is None else f"_{gsu}"
        storage.save_npz(os.path.join(model_dir, f"predictions{suffix}.npz"),
                         **{f"test_{k}": v for k, v in test.items()},
                         **({f"cand_{k}": v for k, v in cand.items()} if cand is not None
                            else {}))
        storage.write_json(os.path.join(model_dir, f"metrics{suffix}.json"), result,
                           sort_keys=True)
    return result


def format_metrics(result: Dict) -> str:
    """A Markdown table of the main metrics (model vs popularity baseline)."""
    from seminar_tf.tables import metrics_table
    return metrics_table({"model": result}, first="scorer")
