import itertools

import numpy as np
import pytest

from seminar_tf import metrics as M


def brute_auc(y, s):
    pos = [a for a, l in zip(s, y) if l]
    neg = [a for a, l in zip(s, y) if not l]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auc_hand_computed_and_ties():
    assert M.auc([1, 0, 1, 0], [0.9, 0.1, 0.8, 0.3]) == 1.0
    assert M.auc([1, 0], [0.2, 0.8]) == 0.0
    assert M.auc([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5]) == 0.5
    # pairs: (0.8>0.3) (0.8>0.1) (0.4>0.3) (0.4>0.1) (0.3 vs 0.3 tie: not a pair here)
    assert M.auc([1, 1, 0, 0, 1], [0.8, 0.4, 0.3, 0.1, 0.3]) == pytest.approx(5.5 / 6)
    assert np.isnan(M.auc([1, 1], [0.1, 0.2]))


def test_auc_matches_pairwise_reference_on_random_data():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = rng.integers(2, 60)
        y = rng.random(n) < 0.4
        s = np.round(rng.random(n), 1)  # many ties
        if y.all() or not y.any():
            continue
        assert M.auc(y, s) == pytest.approx(brute_auc(y, s))


def test_gauc_weights_by_impressions_and_skips_single_class_users():
    users = [1, 1, 1, 1, 2, 2, 3, 3, 3]
    y = [1, 0, 0, 1, 1, 0, 1, 1, 1]
    s = [0.9, 0.1, 0.5, 0.2, 0.2, 0.6, 0.1, 0.2, 0.3]
    a1 = brute_auc(y[:4], s[:4])  # (0.9>0.1, 0.9>0.5, 0.2>0.1, 0.2<0.5) = 3/4
    a2 = 0.0
    assert M.gauc(users, y, s) == pytest.approx((4 * a1 + 2 * a2) / 6)
    assert a1 == 0.75


def test_logloss():
    assert M.logloss([1, 0], [0.5, 0.5]) == pytest.approx(np.log(2))
    assert np.isfinite(M.logloss([1, 0], [0.0, 1.0]))


def test_ranking_metrics_hand_computed():
    # group a: positive ranked 1st; group b: 3rd (two negatives above); group c: tie -> 2nd
    groups = ["a"] * 3 + ["b"] * 3 + ["c"] * 2
    labels = [1, 0, 0, 0, 1, 0, 0, 1]
    scores = [0.9, 0.5, 0.1, 0.8, 0.2, 0.7, 0.4, 0.4]
    r = M.positive_ranks(groups, labels, scores)
    assert r.tolist() == [1.0, 3.0, 2.0]
    out = M.ranking_metrics(groups, labels, scores, ks=(1, 2, 5))
    assert out["hit@1"] == pytest.approx(1 / 3)
    assert out["hit@2"] == pytest.approx(2 / 3)
    assert out["hit@5"] == 1.0
    assert out["ndcg@2"] == pytest.approx((1 + 1 / np.log2(3)) / 3)
    assert out["ndcg@5"] == pytest.approx((1 + 1 / np.log2(4) + 1 / np.log2(3)) / 3)
    assert out["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)


def test_constant_scorer_gets_no_credit():
    groups = np.repeat(np.arange(10), 100)
    labels = np.tile(np.r_[1, np.zeros(99)], 10)
    out = M.ranking_metrics(groups, labels, np.zeros(1000))
    assert out["hit@10"] == 0.0 and out["mrr"] == pytest.approx(0.01)


def test_ranking_requires_one_positive_per_group():
    with pytest.raises(ValueError, match="exactly one positive"):
        M.ranking_metrics([1, 1], [1, 1], [0.1, 0.2])
