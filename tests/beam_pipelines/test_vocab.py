"""The bounded sampler summary: top items by count plus one uniform tail."""
import numpy as np

from beam_pipelines.vocab import Sampler, Vocab


def test_summary_is_exact_for_small_vocabularies_and_bounded_for_large():
    vocab = Vocab.from_counts([("a", 50), ("b", 30), ("c", 5), ("d", 2), ("e", 1)])
    ids, counts, tail = Sampler.summary(vocab, top=10)
    assert ids == [2, 3, 4, 5, 6] and counts == [50, 30, 5, 2, 1] and tail[0] == tail[1]
    ids, counts, tail = Sampler.summary(vocab, top=2)
    assert ids == [2, 3] and counts == [50, 30] and tail == (4, 7, 8.0)


def test_tail_items_are_drawn_uniformly_with_their_total_weight():
    vocab = Vocab.from_counts([(f"i{k}", c) for k, c in enumerate([600, 300] + [1] * 100)])
    sampler = Sampler(*Sampler.summary(vocab, top=2), mode="popularity")
    draws = np.array(sampler.pool(np.random.default_rng(0), 2000, 10)).ravel()
    share = np.mean(draws >= 4)  # the 100 tail items carry 100 of 1000 counts
    assert abs(share - 0.1) < 0.01
    assert abs(np.mean(draws == 2) - 0.6) < 0.02
    tail = draws[draws >= 4]
    assert tail.min() == 4 and tail.max() == 103
    # exclusion and the fallback see the tail too
    out = sampler.draw(np.random.default_rng(1), 5, exclude={2, 3})
    assert len(set(out)) == 5 and not {2, 3} & set(out)
    uniform = Sampler(*Sampler.summary(vocab, top=2), mode="uniform")
    u = np.array(uniform.pool(np.random.default_rng(2), 2000, 10)).ravel()
    assert abs(np.mean(u == 2) - 1 / 102) < 0.004
