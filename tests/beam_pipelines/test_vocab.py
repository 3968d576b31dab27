"""Vocabulary order, per-shard rows and the bounded sampler summary (top items by count plus
a uniform sample of the tail)."""
import numpy as np

from beam_pipelines.vocab import IdRows, Sampler, Vocab, fingerprint


def test_ids_by_count_then_fingerprint():
    vocab = Vocab.from_counts([("a", 5), ("b", 9), ("c", 5), ("d", 5), ("", 9), ("e", 1)],
                              min_count=2)
    assert vocab.keys[0] == "b" and set(vocab.keys) == {"a", "b", "c", "d"}
    assert vocab.keys[1:] == sorted("acd", key=fingerprint)
    assert vocab.id("") == 0 and vocab.id("e") == 1 and vocab.id("b") == 2


def test_summary_is_exact_for_small_vocabularies_and_bounded_for_large():
    vocab = Vocab.from_counts([("a", 50), ("b", 30), ("c", 5), ("d", 2), ("e", 1)])
    s = Sampler.summary(vocab, top=10)
    assert s["item_ids"] == [2, 3, 4, 5, 6] and s["counts"] == [50, 30, 5, 2, 1]
    assert s["head"] == 5 and s["tail_size"] == 0
    s = Sampler.summary(vocab, top=2)
    assert s["item_ids"] == [2, 3, 4, 5, 6] and s["head"] == 2 and s["tail_mass"] == 8.0
    big = Vocab.from_counts([(f"i{k}", 1) for k in range(5000)])
    s = Sampler.summary(big, top=100, tail_sample=400)
    n_tail = len(s["item_ids"]) - 100
    assert s["tail_size"] == 4900 and 300 < n_tail < 500  # a ~400-item uniform sample
    assert s["item_ids"][:100] == list(range(2, 102)) and min(s["item_ids"][100:]) >= 102


def test_tail_sample_stands_for_the_whole_tail():
    counts = [600, 300] + [1] * 1000  # the tail carries 1000 of 1900 counts
    vocab = Vocab.from_counts([(f"i{k}", c) for k, c in enumerate(counts)])
    summary = Sampler.summary(vocab, top=2, tail_sample=100)
    sampler = Sampler(**summary, mode="popularity")
    draws = np.array(sampler.pool(np.random.default_rng(0), 4000, 10)).ravel()
    assert abs(np.mean(draws >= 4) - 1000 / 1900) < 0.01
    assert abs(np.mean(draws == 2) - 600 / 1900) < 0.01
    assert set(draws[draws >= 4].tolist()) <= set(summary["item_ids"][2:])
    # exclusion and the fallback see the tail sample too
    out = sampler.draw(np.random.default_rng(1), 5, exclude={2, 3})
    assert len(set(out)) == 5 and not {2, 3} & set(out)
    uniform = Sampler(**summary, mode="uniform")
    u = np.array(uniform.pool(np.random.default_rng(2), 4000, 10)).ravel()
    assert abs(np.mean(u == 2) - 1 / 1002) < 0.001
    assert abs(np.mean(u >= 4) - 1000 / 1002) < 0.002


def test_exact_summary_draws_like_a_plain_weighted_sampler():
    vocab = Vocab.from_counts([(f"i{k}", c) for k, c in enumerate([7, 3, 3, 1])])
    sampler = Sampler(**Sampler.summary(vocab), mode="popularity")
    draws = np.array(sampler.pool(np.random.default_rng(0), 20000, 1)).ravel()
    np.testing.assert_allclose(np.bincount(draws, minlength=6)[2:] / len(draws),
                               np.array([7, 3, 3, 1]) / 14, atol=0.01)


def test_id_rows_with_fallback():
    base = IdRows(np.array([9, 4]), np.array([[9, 9], [4, 4]]))
    rows = IdRows(np.array([7, 4]), np.array([[7, 0], [1, 2]]), fallback=base)
    np.testing.assert_array_equal(rows.of([4, 7, 9, 3]), [[1, 2], [7, 0], [9, 9], [0, 0]])
    np.testing.assert_array_equal(IdRows(np.zeros(0, np.int64), np.zeros((0, 3))).of([5]), [[0, 0, 0]])
