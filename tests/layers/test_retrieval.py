import numpy as np
import pytest
import tensorflow as tf

from seminar_tf.layers import retrieval as R
from seminar_tf.layers.attention import MultiHeadTargetAttention

from helpers import assert_round_trip

B, L, D, K, A = 6, 12, 8, 4, 2


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    lengths = [0, 2, 4, 7, 12, 12]  # fewer, equal and more real behaviours than K
    mask = np.zeros((B, L), bool)
    for b, n in enumerate(lengths):
        mask[b, L - n:] = True
    items = np.where(mask, rng.integers(2, 30, size=(B, L)), 0)
    hist_attrs = np.where(mask[..., None], rng.integers(1, 4, size=(B, L, A)), 0)
    return {"target": tf.constant(rng.normal(size=(B, D)), tf.float32),
            "keys": tf.constant(rng.normal(size=(B, L, D)), tf.float32),
            "mask": tf.constant(mask),
            "target_query": tf.constant(rng.normal(size=(B, D)), tf.float32),
            "target_item": tf.constant(rng.integers(2, 30, size=B)),
            "hist_items": tf.constant(items),
            "target_attrs": tf.constant(rng.integers(1, 4, size=(B, A))),
            "hist_attrs": tf.constant(hist_attrs)}


def _reference_top_k(scores, eligible, k):
    """float64 reference: per row, the set of the k best eligible positions."""
    out = []
    for s, m in zip(scores, eligible):
        idx = np.flatnonzero(m)
        out.append(set(idx[np.argsort(-s[idx], kind="stable")[:k]].tolist()))
    return out


def _check(out, ref_sets, mask):
    idx, valid = out["indices"].numpy(), out["valid"].numpy()
    for b in range(B):
        got = set(idx[b][valid[b]].tolist())
        assert got == ref_sets[b], (b, got, ref_sets[b])
        assert mask[b][idx[b][valid[b]]].all()  # never padding
        assert valid[b].sum() == min(K, len(ref_sets[b]) if ref_sets[b] else 0) or \
            valid[b].sum() == len(ref_sets[b])


def _head_mean_logits(att, x):
    wq, wk = (np.asarray(w, np.float64) for w in att.get_weights()[:2])
    t, k = np.asarray(x["target"], np.float64), np.asarray(x["keys"], np.float64)
    q = np.einsum("bd,dhk->bhk", t, wq)
    kk = np.einsum("bld,dhk->blhk", k, wk)
    return np.einsum("bhk,blhk->bhl", q, kk).mean(1) / np.sqrt(wq.shape[-1])


def test_masked_top_k_never_selects_padding_when_enough_real():
    scores = tf.constant([[9.0, 8.0, 1.0, 0.5], [9.0, 8.0, 1.0, 0.5]])
    mask = tf.constant([[False, False, True, True], [False, True, True, True]])
    out = R.masked_top_k(scores, mask, 2)
    assert sorted(out["indices"].numpy()[0].tolist()) == [2, 3]
    assert sorted(out["indices"].numpy()[1].tolist()) == [1, 2]
    assert out["valid"].numpy().all()


def test_exact_matches_reference(tmp_path):
    x = _inputs()
    att = MultiHeadTargetAttention(2, D, D)
    gsu = R.ExactTargetRetrieval(K, att)
    out = gsu(x)
    mask = x["mask"].numpy()
    _check(out, _reference_top_k(_head_mean_logits(att, x), mask, K), mask)
    assert_round_trip(gsu, lambda l, i: l(i), x, tmp_path)


def test_sim_hard_matches_reference(tmp_path):
    x = _inputs(1)
    gsu = R.SimHardRetrieval(K, attr_index=1)
    out = gsu(x)
    mask = x["mask"].numpy()
    match = (x["hist_attrs"].numpy()[:, :, 1] == x["target_attrs"].numpy()[:, None, 1]) & mask
    recency = np.tile(np.arange(L, dtype=float), (B, 1))
    _check(out, _reference_top_k(recency, match, K), mask)
    assert_round_trip(gsu, lambda l, i: l(i), x, tmp_path)


def test_sim_soft_matches_reference_and_has_summary(tmp_path):
    x = _inputs(2)
    gsu = R.SimSoftRetrieval(K, num_items=30, dim=D)
    out = gsu(x)
    E = gsu.embedding.embeddings.numpy().astype(np.float64)
    s = np.einsum("bd,bld->bl", E[x["target_item"].numpy()], E[x["hist_items"].numpy()])
    mask = x["mask"].numpy()
    _check(out, _reference_top_k(s, mask, K), mask)
    assert out["summary"].shape == (B, D)
    np.testing.assert_allclose(out["summary"][0], 0.0)  # empty history
    assert_round_trip(gsu, lambda l, i: {k: v for k, v in l(i).items()}, x, tmp_path)


def test_eta_matches_reference(tmp_path):
    x = _inputs(3)
    gsu = R.EtaRetrieval(K, D, bits=32, seed=1)
    out = gsu(x)
    H = gsu.hyperplanes.numpy().astype(np.float64)
    st = np.sign(x["target"].numpy() @ H + 1e-12)
    sh = np.sign(x["keys"].numpy() @ H + 1e-12)
    sim = np.einsum("bn,bln->bl", st, sh)
    mask = x["mask"].numpy()
    # Hamming similarity has ties: compare the multiset of selected similarities
    for b in range(B):
        sel = out["indices"].numpy()[b][out["valid"].numpy()[b]]
        ref = sorted(sim[b][mask[b]], reverse=True)[:K]
        assert sorted(sim[b][sel], reverse=True) == ref
        assert mask[b][sel].all()
    np.testing.assert_allclose(out["scores"].numpy()[out["valid"].numpy()],
                               np.take_along_axis(sim, out["indices"].numpy(), 1)[
                                   out["valid"].numpy()])
    assert gsu.trainable_variables == []
    assert_round_trip(gsu, lambda l, i: l(i), x, tmp_path, build_clone=lambda c: c.build())


def test_qin_two_stages_match_reference(tmp_path):
    x = _inputs(4)
    att = MultiHeadTargetAttention(2, D, D)
    gsu = R.QinRetrieval(K, first_k=6, attention=att)
    out = gsu(x)
    mask = x["mask"].numpy()
    s1 = np.einsum("bd,bld->bl", x["target_query"].numpy().astype(np.float64),
                   x["keys"].numpy().astype(np.float64))
    stage1 = _reference_top_k(s1, mask, 6)
    s2 = _head_mean_logits(att, x)
    elig = np.zeros_like(mask)
    for b, s in enumerate(stage1):
        elig[b, list(s)] = True
    _check(out, _reference_top_k(s2, elig, K), mask)
    assert_round_trip(gsu, lambda l, i: l(i), x, tmp_path)


def test_last_n(tmp_path):
    x = _inputs(5)
    gsu = R.LastNRetrieval(K)
    out = gsu(x)
    mask = x["mask"].numpy()
    ref = [set(np.flatnonzero(m)[-K:].tolist()) for m in mask]
    _check(out, ref, mask)
    assert_round_trip(gsu, lambda l, i: l(i), x, tmp_path)


def test_unknown_kind_and_options():
    with pytest.raises(ValueError, match="unknown GSU kind"):
        R.retriever_class("magic")
    with pytest.raises(ValueError, match="first_k"):
        R.retriever_options("qin", {"frist_k": 3})
    assert R.retriever_options("qin", {"first_k": 3}) == {"first_k": 3}


def test_legacy_flat_gsu_fields_migrate():
    from seminar_tf.config import ConfigError, SeminarConfig
    cfg = SeminarConfig.from_dict({"model": {"qin_query_k": 7, "eta_bits": 8}})
    assert cfg.model.gsu_options == {"qin": {"first_k": 7}, "eta": {"bits": 8}}
    with pytest.raises(ConfigError, match="gsu_options.qin"):
        SeminarConfig.from_dict({"model": {"gsu_options": {"qin": {"k": 1}}}})
