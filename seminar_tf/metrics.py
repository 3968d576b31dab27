"""Offline metrics, vectorised over all examples / candidates in one pass (numpy).

- `auc`: ROC AUC via the rank statistic, ties counted as half.
- `gauc`: per-user AUC weighted by the user's number of impressions; users with only one
  class are skipped.
- `logloss`: binary cross-entropy of probabilities (clipped to [1e-7, 1 - 1e-7]).
- `ranking_metrics`: the 1-positive-vs-N-sampled-negatives protocol: per group, the rank of
  the positive is 1 + #(negatives scored higher) + #(negatives scored equal) (ties count
  against the model, so a constant scorer gets no credit); HIT@K, NDCG@K = 1/log2(1+rank)
  when rank <= K, MRR = mean 1/rank.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np


def _average_ranks(groups: np.ndarray, scores: np.ndarray):
    """1-based ranks of `scores` within each group, ties averaged; also the sort order."""
    order = np.lexsort((scores, groups))
    g, s = groups[order], scores[order]
    n = len(s)
    new_block = np.ones(n, bool)
    new_block[1:] = (g[1:] != g[:-1]) | (s[1:] != s[:-1])
    block_id = np.cumsum(new_block) - 1
    pos = np.arange(n, dtype=np.float64)
    block_first = pos[new_block]
    block_last = np.append(block_first[1:] - 1, n - 1)
    new_group = np.ones(n, bool)
    new_group[1:] = g[1:] != g[:-1]
    group_start = pos[new_group][np.cumsum(new_group) - 1]
    avg = (block_first[block_id] + block_last[block_id]) / 2.0 - group_start + 1.0
    ranks = np.empty(n)
    ranks[order] = avg
    return ranks


def _grouped_auc(groups, labels, scores):
    labels = np.asarray(labels, np.float64) > 0.5
    scores = np.asarray(scores, np.float64)
    groups = np.asarray(groups)
    _, gid = np.unique(groups, return_inverse=True)
    ranks = _average_ranks(gid, scores)
    n_groups = gid.max() + 1 if len(gid) else 0
    pos = np.bincount(gid, weights=labels, minlength=n_groups)
    tot = np.bincount(gid, minlength=n_groups).astype(np.float64)
    neg = tot - pos
    rank_sum = np.bincount(gid, weights=ranks * labels, minlength=n_groups)
    ok = (pos > 0) & (neg > 0)
    auc = np.full(n_groups, np.nan)
    auc[ok] = (rank_sum[ok] - pos[ok] * (pos[ok] + 1) / 2.0) / (pos[ok] * neg[ok])
    return auc, tot, ok


def auc(labels: Sequence[float], scores: Sequence[float]) -> float:
    """ROC AUC; NaN when only one class is present."""
    a, _, ok = _grouped_auc(np.zeros(len(labels), np.int64), labels, scores)
    return float(a[0]) if len(a) and ok[0] else float("nan")


def gauc(users: Sequence, labels: Sequence[float], scores: Sequence[float]) -> float:
    """Impression-weighted mean of per-user AUC over users with both classes."""
    a, tot, ok = _grouped_auc(users, labels, scores)
    if not ok.any():
        return float("nan")
    return float(np.sum(a[ok] * tot[ok]) / np.sum(tot[ok]))


def logloss(labels: Sequence[float], probs: Sequence[float], eps: float = 1e-7) -> float:
    y = np.asarray(labels, np.float64)
    p = np.clip(np.asarray(probs, np.float64), eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def positive_ranks(groups: Sequence, labels: Sequence[float], scores: Sequence[float]):
    """Rank of the (single) positive in each group, ties counted against it."""
    groups = np.asarray(groups)
    labels = np.asarray(labels, np.float64) > 0.5
    scores = np.asarray(scores, np.float64)
    _, gid = np.unique(groups, return_inverse=True)
    n = gid.max() + 1
    n_pos = np.bincount(gid, weights=labels, minlength=n)
    if not np.all(n_pos == 1):
        bad = int(np.sum(n_pos != 1))
        raise ValueError(f"ranking protocol needs exactly one positive per group; {bad} "
                         "groups violate it")
    pos_score = np.zeros(n)
    pos_score[gid[labels]] = scores[labels]
    neg = ~labels
    above = np.bincount(gid[neg], weights=(scores[neg] >= pos_score[gid[neg]]), minlength=n)
    return 1.0 + above


def ranking_metrics(groups, labels, scores, ks=(1, 5, 10, 50)) -> Dict[str, float]:
    """HIT@K, NDCG@K for each K, and MRR over groups of 1 positive + sampled negatives."""
    ranks = positive_ranks(groups, labels, scores)
    out = {}
    for k in ks:
        hit = ranks <= k
        out[f"hit@{k}"] = float(np.mean(hit))
        out[f"ndcg@{k}"] = float(np.mean(np.where(hit, 1.0 / np.log2(1.0 + ranks), 0.0)))
    out["mrr"] = float(np.mean(1.0 / ranks))
    out["groups"] = int(len(ranks))
    return out
