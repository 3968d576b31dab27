"""Per-user example building: sampled training negatives exclude only the past."""
import tensorflow as tf

from beam_pipelines.records import Event
from beam_pipelines.sequences import BuildOptions, Sampler, Vocab, build_user_examples
from seminar_tf import features as F


def test_sampled_negatives_exclude_the_past_but_not_the_future():
    items = [f"i{k}" for k in range(6)]
    vocab = Vocab(items)
    events = [Event("u", 1000 * (t + 1), items[t], (), 1.0, 1) for t in range(6)]
    contract = F.FeatureContract(8, 2, 1, 2**62, 2**62, 2**62, 2**62)
    sampler = Sampler([vocab.id(i) for i in items], [1.0] * 6, mode="uniform")
    opts = BuildOptions(max_seq_len=8, max_query_tokens=2, num_attrs=1, neg_per_pos=3,
                        num_candidates=0, split="time", test_start_ms=10**9,
                        valid_start_ms=10**9)
    negatives = {}
    future_used = False
    for split, ex, _ in build_user_examples(3, events, item_vocab=vocab, token_vocab=Vocab([]),
                                            item_attrs={}, sampler=sampler, contract=contract,
                                            options=opts, has_negatives=False):
        parsed = F.to_numpy(contract.parse_examples(tf.constant([ex])))
        if parsed[F.LABEL][0] == 0.0:
            t = int(parsed[F.TIMESTAMP][0]) * 1000
            neg = int(parsed[F.TARGET_ITEM][0])
            past = {vocab.id(items[j]) for j in range(6) if 1000 * (j + 1) <= t}
            assert neg not in past, (t, neg)  # never an item interacted with before
            future_used |= neg in {vocab.id(i) for i in items} - past
            negatives.setdefault(t, []).append(neg)
    assert negatives and future_used  # later clicks are fair negatives at an earlier time


def test_time_split_session_with_two_clicks_gives_two_candidate_groups():
    from seminar_tf.workflows.evaluation import candidate_metrics
    items = [f"i{k}" for k in range(30)]
    vocab = Vocab(items)
    # history, then one search session at t=9000 with two clicked items (same timestamp)
    events = [Event("u", 1000 * (t + 1), items[t], (), 1.0, 1) for t in range(5)]
    events += [Event("u", 9000, items[10], ("q",), 1.0, 2),
               Event("u", 9000, items[11], ("q",), 1.0, 2)]
    contract = F.FeatureContract(8, 2, 1, 2**62, 2**62, 2**62, 2**62)
    sampler = Sampler([vocab.id(i) for i in items], [1.0] * 30, mode="uniform")
    opts = BuildOptions(max_seq_len=8, max_query_tokens=2, num_attrs=1, num_candidates=5,
                        split="time", valid_start_ms=8000, test_start_ms=9000)
    cands = [ex for split, ex, _ in build_user_examples(
        3, events, item_vocab=vocab, token_vocab=Vocab(["q"]), item_attrs={},
        sampler=sampler, contract=contract, options=opts, has_negatives=False)
        if split == "candidates"]
    parsed = F.to_numpy(contract.parse_examples(tf.constant(cands)))
    groups = parsed[F.GROUP_ID]
    assert len(cands) == 10 and len(set(groups.tolist())) == 2 and (groups != 0).all()
    for g in set(groups.tolist()):
        assert parsed[F.LABEL][groups == g].sum() == 1.0  # one positive per group
    p = {"group": groups, "user": parsed[F.USER_ID], "timestamp": parsed[F.TIMESTAMP],
         "label": parsed[F.LABEL], "score": parsed[F.LABEL]}  # a perfect scorer
    metrics = candidate_metrics(p)
    assert metrics["groups"] == 2 and metrics["hit@1"] == 1.0


def _labels_by_split(negatives, has_negatives=True):
    items = [f"i{k}" for k in range(40)]
    vocab = Vocab(items)
    # clicks and logged non-clicks alternate; the last events fall in the test window
    events = [Event("u", 1000 * (t + 1), items[t], (), float(t % 2 == 0), 1)
              for t in range(12)]
    contract = F.FeatureContract(8, 2, 1, 2**62, 2**62, 2**62, 2**62)
    sampler = Sampler([vocab.id(i) for i in items], [1.0] * 40, mode="uniform")
    opts = BuildOptions(max_seq_len=8, max_query_tokens=2, num_attrs=1, num_candidates=0,
                        neg_per_pos=0 if negatives == "observed" else 2, negatives=negatives,
                        split="time", valid_start_ms=9000, test_start_ms=10500)
    out = {}
    for split, ex, _ in build_user_examples(
            3, events, item_vocab=vocab, token_vocab=Vocab([]), item_attrs={},
            sampler=sampler, contract=contract, options=opts, has_negatives=has_negatives):
        parsed = F.to_numpy(contract.parse_examples(tf.constant([ex])))
        observed = int(parsed[F.TARGET_ITEM][0]) == vocab.id(items[parsed[F.TIMESTAMP][0] - 1])
        kind = "pos" if parsed[F.LABEL][0] else ("observed" if observed else "sampled")
        out.setdefault(split, []).append(kind)
    return out


def test_negatives_observed_sampled_both():
    obs = _labels_by_split("observed")
    assert "sampled" not in sum(obs.values(), []) and "observed" in obs["train"]
    smp = _labels_by_split("sampled")
    assert "observed" not in sum(smp.values(), [])
    assert smp["train"].count("sampled") == 2 * smp["train"].count("pos")
    assert "sampled" in smp["test"]  # no logged impressions: the test split needs sampled
    both = _labels_by_split("both")
    assert {"pos", "observed", "sampled"} <= set(both["train"])
    # the test split keeps logged impressions only, so its AUC is an impression AUC
    assert set(both["test"]) == {"pos", "observed"}


def test_negatives_defaults_and_refusals():
    import pytest
    from beam_pipelines.pipeline import resolve_negatives
    assert resolve_negatives("kuaisar", True, None, None) == ("both", 1)
    assert resolve_negatives("amazon", False, None, None) == ("sampled", 1)
    assert resolve_negatives("kuaisar", True, "observed", None) == ("observed", 0)
    with pytest.raises(ValueError, match="logs no non-clicks"):
        resolve_negatives("amazon", False, "observed", None)
    with pytest.raises(ValueError, match="--neg-per-pos needs"):
        resolve_negatives("kuaisar", True, "observed", 2)
