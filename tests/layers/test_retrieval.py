import numpy as np
import pytest
import tensorflow as tf

from seminar_tf.layers import retrieval as R
from seminar_tf.layers.attention import MultiHeadTargetAttention
from seminar_tf.layers.retrieval import ties

from helpers import assert_round_trip, determined_rows, reference_select

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
    """float64 reference: per row, the set of the k best eligible positions under the tie
    rule (scores on the grid of `selection_keys`, ties to the later position)."""
    return reference_select(scores, eligible, k)


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


def test_masked_top_k_equals_the_float64_tie_rule_eager_and_xla():
    """Random scores with exact ties (repeated values), near ties (1e-7 apart) and padding:
    the selection equals the float64 reference, eagerly and under XLA."""
    rng = np.random.default_rng(0)
    R_, L_ = 64, 50
    s = rng.normal(size=(R_, L_))
    s[:, ::3] = s[:, 1::3][:, :s[:, ::3].shape[1]]  # exact copies
    s[:, 2::5] += 1e-7
    mask = rng.random((R_, L_)) < 0.8
    x = tf.constant(s, tf.float32)
    ref = reference_select(x.numpy(), mask, 10)
    for fn in (R.masked_top_k, tf.function(R.masked_top_k, jit_compile=True)):
        out = fn(x, tf.constant(mask), 10)
        for r in range(R_):
            got = set(out["indices"].numpy()[r][out["valid"].numpy()[r]].tolist())
            assert got == ref[r], r
        np.testing.assert_array_equal(  # raw scores of the picks, not grid values
            out["scores"].numpy(), np.where(out["valid"].numpy(), np.take_along_axis(
                x.numpy(), out["indices"].numpy(), 1), 0))


@pytest.mark.parametrize("L", [1300, 5111, 5200])
def test_chunked_top_k_equals_the_full_top_k(L):
    """Rows long enough for the chunked search (L >= 128 k; 5,111 leaves a ragged chunk):
    chunks of 16 and of 32) the same positions in the same order as one top_k over the
    reversed row, with heavy
    ties (few distinct keys), a row of one repeated key, and masked tails; eager and XLA."""
    rng = np.random.default_rng(L)
    k = 10
    keys = np.round(rng.normal(size=(3, 4, L)) * 3)  # ~20 distinct values: ties everywhere
    keys[0, 1] = 5.0
    keys[1, 2, L // 2:] = np.finfo(np.float32).min  # masked positions
    x = tf.constant(keys, tf.float32)
    _, rev = tf.math.top_k(tf.reverse(x, [-1]), k=k)
    want = (L - 1 - rev).numpy()
    for fn in (R.later_first_top_k, tf.function(R.later_first_top_k, jit_compile=True)):
        np.testing.assert_array_equal(fn(x, k).numpy(), want)
    np.testing.assert_array_equal(want[0, 1], np.arange(L - 1, L - 1 - k, -1))


def test_exact_ties_go_to_the_most_recent_position():
    """Equal scores (one item repeated through the history): the latest K are kept, on every
    GSU that scores. Before the tie rule, top_k kept the *oldest* copies."""
    x = _inputs()
    same = lambda v: tf.broadcast_to(v[:, -1:], tf.shape(v))  # noqa: E731
    x = dict(x, keys=same(x["keys"]), hist_items=tf.where(x["mask"], same(
        x["hist_items"]), 0), hist_attrs=same(x["hist_attrs"]))
    x["target_attrs"] = x["hist_attrs"][:, -1]
    att = MultiHeadTargetAttention(2, D, D)
    gsus = [R.ExactTargetRetrieval(K, att), R.SimSoftRetrieval(K, num_items=30, dim=D),
            R.SimHardRetrieval(K, attr_index=1), R.EtaRetrieval(K, D, bits=16),
            R.QinRetrieval(K, first_k=6, attention=att)]
    mask = x["mask"].numpy()
    for gsu in gsus:
        out = gsu(x)
        for b in range(B):
            n = min(K, mask[b].sum())
            got = set(out["indices"].numpy()[b][out["valid"].numpy()[b]].tolist())
            assert got == set(range(L - n, L)), (type(gsu).__name__, b, got)


def test_determined_rows_flags_only_rows_noise_can_change():
    s = np.array([[3.0, 2.0, 1.0, 0.5],       # clear gap at k=2
                  [3.0, 2.0, 2.0 - 1e-9, 0.5],  # near tie across the boundary, same grid cell
                  [3.0, 2.0, 2.0, 0.5]])      # exact tie: decided by position
    mask = np.ones_like(s, bool)
    assert determined_rows(s, mask, 2).tolist() == [True, True, True]
    step = 2.0 ** 2 * 2.0 ** -ties.TIE_BITS  # row scale 4 (max |score| 3)
    edge = 2.0 + step / 2  # a score on a rounding edge: noise decides its grid cell
    s2 = np.array([[3.0, edge, edge - step / 4, 0.5]])
    assert determined_rows(s2, mask[:1], 2).tolist() == [False]


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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sim_soft_matches_reference_and_has_summary(tmp_path, seed):
    """The reference scores as the layer does (scaled by 1/sqrt(dim): the tie rule's grid
    is relative to the row's power-of-two scale, so an unscaled reference rounds on other
    grid lines); the embedding's initialisation is seeded (it decided the outcome before)."""
    x = _inputs(2)
    tf.keras.utils.set_random_seed(seed)
    gsu = R.SimSoftRetrieval(K, num_items=30, dim=D)
    out = gsu(x)
    E = gsu.embedding.embeddings.numpy().astype(np.float64)
    s = np.einsum("bd,bld->bl", E[x["target_item"].numpy()],
                  E[x["hist_items"].numpy()]) / np.sqrt(D)
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


def test_union_positions_encode_each_read_position_once():
    """The union of N targets' picks and the short-term window, right-aligned; the indices
    mapped into it read the same positions."""
    from seminar_tf.layers.retrieval.base import union_positions
    rng = np.random.default_rng(0)
    B_, N_, K_, L_, S_ = 5, 3, 4, 30, 2
    idx = np.stack([np.stack([rng.choice(L_, K_, replace=False) for _ in range(N_)])
                    for _ in range(B_)]).astype(np.int32)
    valid = rng.random((B_, N_, K_)) < 0.8
    positions, mapped = union_positions(tf.constant(idx), tf.constant(valid), L_, S_)
    positions, mapped = positions.numpy(), mapped.numpy()
    U = positions.shape[1]
    for b in range(B_):
        union = sorted(set(idx[b][valid[b]].tolist()) | set(range(L_ - S_, L_)))
        assert positions[b, U - len(union):].tolist() == union
        assert positions[b, -S_:].tolist() == list(range(L_ - S_, L_))  # short-term last
        np.testing.assert_array_equal(positions[b][mapped[b]][valid[b]], idx[b][valid[b]])
    assert U == max(len(set(idx[b][valid[b]].tolist()) | set(range(L_ - S_, L_)))
                    for b in range(B_)) <= min(L_, N_ * K_ + S_)
